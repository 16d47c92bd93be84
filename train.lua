-- train.lua: the training loop every dtf task runs.
--
--   dtf run train.lua                       one process: trains and evaluates
--   dtf run train.lua --role=ps ...         holds a shard of the parameters
--   dtf run train.lua --role=worker ...     computes gradients, pushes them
--   dtf local train.lua --ps=2 --workers=2  all of it on this machine
--
-- Hyperparameters come from --config FILE and --set KEY=VALUE (lua/dtf/
-- schema.lua, the model file's, or `dtf run train.lua --set help=true`).
local T = require 'dtf.tensor'
local nn = require 'dtf.nn'
local optim = require 'dtf.optim'
local data = require 'dtf.data'
local log = require 'dtf.log'
local util = require 'dtf.util'
local hparams = require 'dtf.hparams'
local cluster = require 'dtf.cluster'
local cli = require 'dtf.cli'
local model = require 'dtf.model'
local ps = require 'dtf.ps'
local watch = require 'dtf.watch'
local dtf = require 'dtf'

local script_dir = (arg and arg[0] or ''):match('^(.*)/[^/]*$') or '.'

-- The hyperparameters (lua/dtf/schema.lua; add your own to this list), then
-- the model file's (models/mnist.lua: model, hidden), which join the schema
-- before anything is parsed.
local schema = require('dtf.schema').training(script_dir)
local modelfile = model.load(hparams.peek(schema, cli, 'modelfile'))
schema = model.schema(schema, modelfile)
local hp = hparams.parse(schema, cli)
if not hp.trainsteps and hp.epochs <= 0 then
  dtf.usage_error('epochs=%g trains nothing (trainsteps=0 is the way to train until stopped)', hp.epochs)
end
local spec = cluster.resolve(cli)
-- ps and worker tasks share their machine: one BLAS thread each unless set.
local threads = hp.threads or (spec.role and 1 or T.usable_cores())
T.set_num_threads(threads)
log.open(hp.logdir)
watch.setup(hp, spec) -- deploy.log's rotation, the metrics endpoint, a ps's watch

local function plural(n, word) return string.format('%d %s%s', n, word, n == 1 and '' or 's') end
log.info('BLAS: %s, %d thread%s; denormals %s', T.blas_info(), threads, threads > 1 and 's' or '',
         T.denormals(hp.denormals))

-- ---- the model ---------------------------------------------------------------

local net = model.build(modelfile, hp, schema, hp.seed)
local params, grads, layout = net:parameters()
local checksum = net:checksum()
local layout_json = require('dtf.checkpoint').layout_json(layout)
local criterion = nn.SoftmaxCrossEntropy()

local function compute_gradients(x, y)
  net:zero_grad()
  local loss = criterion:forward(net:forward(x), y)
  net:backward(x, criterion:backward())
  return loss
end

-- ---- data ----------------------------------------------------------------------

local function load(split)
  local ds, err = data.mnist(hp.datadir, split)
  if not ds then dtf.fail('%s', err) end
  return ds
end

-- Global steps to train: trainsteps, or epochs over count examples (those
-- a worker trains on: validation holds some out).
local function total_steps(count)
  if hp.trainsteps then return hp.trainsteps end
  return math.ceil(hp.epochs * count / hp.batchsize)
end

-- ---- before step 1: what the end of the run needs -------------------------------

local function check_writable(path)
  local dir = path:match('^(.*)/[^/]*$') or '.'
  local probe = string.format('%s/.dtf-write-check.%d', dir, util.getpid())
  local f, err = io.open(probe, 'w')
  if not f then
    dtf.fail('save=%s: cannot write in %s (%s); fix it now, or the trained model is lost at the end', path, dir, err)
  end
  f:close()
  os.remove(probe)
end

-- Fails now, not after the last step: the save path, the test set, and one
-- forward and backward pass of a real batch (the model's shapes against the
-- data's; an error names the layer).
local function check_before_training(worker, loader, x, y)
  if worker == 0 and hp.save ~= '' then check_writable(hp.save) end
  if worker == 0 and hp.evaluate then
    load('test') -- read whole (a truncated file fails here), then dropped until the end
    collectgarbage()
  end
  loader:next(x, y)
  compute_gradients(x, y)
  net:zero_grad()
  loader:seek(1, 0)
end

-- ---- the end ---------------------------------------------------------------------

-- Writes the model to hp.save with what rebuilds it (dtf predict): the
-- hyperparameters, the model file's path, hash and source; extra metadata
-- (save_best's step and accuracy) and a note for the log line.
local function save_model(extra, note)
  local meta = { format = 'dtf', layout = checksum, hyperparams = model.record(hp, schema),
                 model_file = modelfile.path, model_hash = modelfile.hash, model_source = modelfile.source }
  for k, v in pairs(extra or {}) do meta[k] = v end
  local ok, err = require('dtf.ckpt').save(hp.save, net:named_tensors(), meta)
  if not ok then dtf.fail('save: %s', tostring(err)) end
  log.info('Model saved to %s%s', hp.save, note or '')
end

local function report_end(worker, t0, train_end)
  local now = util.wallclock()
  log.info('Training ends @ %f (%s)', now, os.date('!%Y-%m-%dT%H:%M:%SZ', math.floor(now)))
  log.info('Training elapsed time: %f s', train_end - t0)
  local acc, n
  if worker == 0 and hp.evaluate then
    collectgarbage() -- the training set goes before the test set comes
    acc, n = watch.final(load('test'))
  end
  if worker == 0 and hp.save ~= '' and not watch.saved_best() then save_model() end
  if acc then log.info('Test accuracy: %.4f (%d images)', acc, n) end
  watch.finish()
end

-- ---- the loop ----------------------------------------------------------------------

-- A worker's loop. start(steps, loader) is called once the data is loaded
-- and checked, and returns the first global step; exchange(step) sends the
-- gradients and brings back the parameters (one process: applies them),
-- returning the global step.
local function train_loop(worker, nworkers, start, exchange)
  local train = load('train')
  local count = watch.train_count(train)
  local steps = total_steps(count)
  local loader = train:loader { batchsize = hp.batchsize, seed = hp.seed, shard = worker, shards = nworkers,
                                limit = count }
  local rows, cols = train:shape()
  local x, y = T.zeros(hp.batchsize, rows * cols), T.zeros(hp.batchsize)
  check_before_training(worker, loader, x, y)
  log.info('Worker %d: %d parameters, %s in its shard, %s, batch %d', worker, net.nparams,
           plural(count // nworkers, 'training example'),
           steps == 0 and 'steps until stopped' or plural(steps, 'step'), hp.batchsize)
  local first = start(steps, loader)
  watch.begin { net = net, worker = worker, nworkers = nworkers, train = train, steps = steps, first = first,
                load = load, save = save_model, lr = optim.config(hp, steps),
                replicas = hp.sync and (hp.replicas_to_aggregate > 0 and hp.replicas_to_aggregate or nworkers) or 1 }
  exchange = watch.timed(exchange)
  util.trap_signals() -- SIGTERM, SIGINT: stop at the next step boundary
  local t0 = util.now()
  local gstep, step, losses, nloss = first, 0, 0, 0
  local stopped
  local function log_loss()
    log.info('Worker %d: mean loss %.4f over steps %d-%d', worker, losses / nloss, step - nloss + 1, step)
    losses, nloss = 0, 0
  end
  while steps == 0 or gstep < steps do
    local sig, name = util.stop_signal()
    if sig then
      log.warning('Worker %d: %s at global step %d; stopping after %s', worker, name, gstep, plural(step, 'step'))
      stopped = sig
      break
    end
    loader:next(x, y)
    local loss = compute_gradients(x, y)
    gstep = exchange(gstep)
    step = step + 1
    if step == 1 then util.ready() end
    losses, nloss = losses + loss, nloss + 1
    local line = string.format('Worker %d: training step %d done (global step: %d)', worker, step, gstep)
    -- stdout gets every logevery-th line and always the last one (none
    -- under the status line on a terminal); deploy.log gets them all.
    if not watch.quiet() and (step % hp.logevery == 0 or (steps > 0 and gstep >= steps)) then
      log.info('%s', line)
    else
      log.file('%s', line)
    end
    if nloss == hp.lossevery then log_loss() end
    watch.step(gstep, loss, hp.batchsize)
  end
  if nloss > 0 then log_loss() end -- the last, partial window
  return t0, util.now(), step, stopped, gstep
end

-- ---- one process -------------------------------------------------------------------

-- Trains through a shard of its own (ps.local_shard): the ps's optimizer,
-- schedule and checkpoints, so checkpoint_dir resumes here too.
if not spec.role then
  log.info('Training %s (%d parameters, layout %s) in one process', modelfile.path, net.nparams, checksum)
  local shard
  local t0, t1, _, stopped, gstep = train_loop(0, 1, function(steps, loader)
    local err
    shard, err = ps.local_shard {
      params = params, optimizer = optim.config(hp, steps), layout_checksum = checksum,
      layout_json = layout_json, checkpoint_dir = hp.checkpoint_dir ~= '' and hp.checkpoint_dir or nil,
      checkpoint_secs = hp.checkpoint_secs, checkpoint_steps = hp.checkpoint_steps, log = log.sink,
    }
    if not shard then dtf.fail('%s', err) end
    local first = shard:restored()
    local bpe = loader:batches_per_epoch()
    if first > 0 then loader:seek(first // bpe + 1, first % bpe) end
    return first
  end, function() return shard:apply(grads) end)
  shard:close() -- the last checkpoint, when there is a checkpoint_dir
  if stopped then
    watch.finish()
    dtf.stopped(stopped, 'stopped at global step %d%s', gstep,
                hp.checkpoint_dir ~= '' and ' (checkpoint_dir resumes it)' or '')
  end
  report_end(0, t0, t1)
  return
end

-- ---- ps ----------------------------------------------------------------------------

local function token() return cluster.token(cli) end

-- Where a ps listens: the host of its own address when that is a literal
-- IP address (dtf local: loopback), every address for a name (a pod's) or
-- with bind=all, or the address bind names.
local function listen_host(addr)
  if hp.bind == 'all' then return nil end
  if hp.bind ~= 'auto' then return hp.bind end
  local host = assert(util.split_address(addr))
  if host:match('^%d+%.%d+%.%d+%.%d+$') or host:find(':', 1, true) then return host end
  return nil
end

if spec.role == 'ps' then
  local steps = hp.trainsteps
  if not steps and hp.lr_schedule == 'cosine' and hp.lr_decay_steps == 0 then
    local n, err = data.mnist_count(hp.datadir, 'train') -- the decay's length: the training's
    if not n then dtf.fail('%s', err) end
    steps = total_steps(n)
  end
  local stats, serr = ps.serve {
    host = listen_host(spec.address), port = cluster.port(spec.address), index = spec.index,
    params = params, nps = #spec.ps, workers = #spec.workers, layout_checksum = checksum,
    token = token(), optimizer = optim.config(hp, steps), sync = hp.sync,
    replicas_to_aggregate = hp.replicas_to_aggregate > 0 and hp.replicas_to_aggregate or nil,
    checkpoint_dir = hp.checkpoint_dir ~= '' and hp.checkpoint_dir or nil,
    checkpoint_secs = hp.checkpoint_secs, checkpoint_steps = hp.checkpoint_steps, layout_json = layout_json,
    sync_timeout = hp.sync_timeout, done_timeout = hp.done_timeout, keepalive = hp.keepalive,
    log = log.sink, on_ready = util.ready, wire_dtype = hp.wire_dtype,
  }
  if not stats then dtf.fail('%s', serr) end
  log.info('ps %d: stopped (%s) at step %d', spec.index,
           stats.reason == 'signal' and 'signal' or
           stats.reason == 'done_timeout' and 'done_timeout: not every worker said done' or
           'every worker is done', stats.step)
  watch.finish()
  return
end

-- ---- worker ------------------------------------------------------------------------

-- A worker joins the ps tasks (HELLO) once its data is loaded, so that a
-- joined worker is one ready to train.
local client

-- A client call failed: a trapped SIGTERM or SIGINT ended its wait (a worker
-- whose ps is gone stops now, not after reconnect_timeout: a pod has 30 s),
-- or the error, which names the ps.
local function client_failed(perr)
  local sig, name = util.stop_signal()
  if sig then
    watch.finish()
    dtf.stopped(sig, 'worker %d stopped by %s while it waited for the ps tasks', spec.index, name)
  end
  dtf.fail('%s', perr)
end

local function connect()
  local c, err = ps.connect {
    addrs = spec.ps, role = 'worker', index = spec.index, P = net.nparams, layout_checksum = checksum,
    token = token(), connect_timeout = hp.connect_timeout, timeout = hp.timeout,
    reconnect_timeout = hp.reconnect_timeout, keepalive = hp.keepalive,
    -- A sync pull waits for the slowest replica, which the ps drops after
    -- sync_timeout: wait that long (twice, for a restart) beyond a request's.
    wait_timeout = hp.timeout + 2 * hp.sync_timeout, log = log.sink, wire_dtype = hp.wire_dtype,
  }
  if not c then client_failed(err) end
  return c
end

-- In async mode nothing holds a fast worker back: one that starts first
-- could run a short training alone before the others are ready. Wait (a
-- bounded time: a worker may never come) until every worker has joined ps 0.
local function wait_for_workers()
  if hp.sync or #spec.workers < 2 then return end
  local deadline, said = util.now() + hp.start_timeout, false
  while true do
    local stats, serr = client:stats()
    if not stats then dtf.fail('%s', serr) end
    local joined = stats[1].workers_joined or #spec.workers
    if joined >= #spec.workers then return end
    if util.now() >= deadline then
      log.warning('Worker %d: %d of %s joined after %g s; training without the others',
                  spec.index, joined, plural(#spec.workers, 'worker'), hp.start_timeout)
      return
    end
    if not said then
      log.info('Worker %d: waiting for %s to join (up to %g s)', spec.index,
               plural(#spec.workers - joined, 'more worker'), hp.start_timeout)
      said = true
    end
    util.sleep(0.002)
  end
end

-- overlap (async only; sync stays exactly push_pull): each exchange sends
-- this step's round (a pull into a landing buffer, then the push) and
-- returns at once, after collecting the previous round, so the next step's
-- compute runs while its round crosses the link both ways. A step then
-- computes on parameters one round older than push_pull's: they lack this
-- worker's last two gradients instead of none. Two landing buffers: the
-- round just collected goes into params after the next one is on its way.
local overlap = hp.overlap and not hp.sync
local landing = overlap and { T.zeros(net.nparams), T.zeros(net.nparams) } or nil
local next_landing, in_flight = 1, nil
local function finish_round() -- -> the global step and the buffer the pull landed in
  if not in_flight then return nil end
  local landed = in_flight
  in_flight = nil
  local g, perr = client:exchange_finish()
  if not g then client_failed(perr) end
  return g, landed
end

local t0, t1, _, stopped, last = train_loop(spec.index, #spec.workers, function()
  client = connect()
  wait_for_workers()
  local g, perr = client:pull(params)
  if not g then client_failed(perr) end
  return g
end, function(step)
  if overlap and not client:is_sync() then
    local g, landed = finish_round()
    local buf = landing[next_landing]
    next_landing = 3 - next_landing
    local ok, perr = client:exchange_start(grads, buf, step)
    if not ok then client_failed(perr) end
    in_flight = buf -- the client's exchange thread moves it while the next step computes
    if landed then params:copy(landed) end
    return g or step
  end
  local g, perr = client:push_pull(grads, params, step)
  if not g then client_failed(perr) end
  return g
end)
do -- the last push lands before done (and worker 0's final pull)
  local _, landed = finish_round()
  if landed then params:copy(landed) end
end
if stopped then -- not done: a worker of the next pods goes on
  client:close()
  watch.finish()
  dtf.stopped(stopped, 'worker %d stopped at global step %d', spec.index, last)
end
if spec.index == 0 then assert(client:pull(params)) end
client:done()
client:close()
report_end(spec.index, t0, t1)
