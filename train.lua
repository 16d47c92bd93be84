-- train.lua: the training loop every dtf task runs.
--
--   dtf run train.lua                       one process: trains and evaluates
--   dtf run train.lua --role=ps ...         holds a shard of the parameters
--   dtf run train.lua --role=worker ...     computes gradients, pushes them
--   dtf local train.lua --ps=2 --workers=2  all of it on this machine
--
-- Hyperparameters come from --config FILE and --set KEY=VALUE (see the schema
-- below, or `dtf run train.lua --set help=true`).
local T = require 'dtf.tensor'
local nn = require 'dtf.nn'
local optim = require 'dtf.optim'
local data = require 'dtf.data'
local log = require 'dtf.log'
local util = require 'dtf.util'
local hparams = require 'dtf.hparams'
local cluster = require 'dtf.cluster'
local cli = require 'dtf.cli'

local script_dir = (arg and arg[0] or ''):match('^(.*)/[^/]*$') or '.'

local schema = {
  { name = 'batchsize', type = 'int', default = 64, min = 1, help = 'examples per step (per worker)' },
  { name = 'learningrate', type = 'number', default = 0.003, min = 0, help = 'the optimizer\'s learning rate' },
  { name = 'trainsteps', type = 'int', min = 0, help = 'global steps to train; 0 = until stopped; default: epochs' },
  { name = 'epochs', type = 'number', default = 1, min = 0, help = 'passes over the training set when trainsteps is not set' },
  { name = 'model', type = 'string', default = 'mlp', help = 'the model the model file builds (mlp, cnn)' },
  -- No default here: the model file owns it (models/mnist.lua: hp.hidden or 100),
  -- so editing the model file changes the model.
  { name = 'hidden', type = 'int', min = 1, help = 'hidden units of the mlp (models/mnist.lua: 100)' },
  { name = 'modelfile', type = 'string', default = script_dir .. '/models/mnist.lua', help = 'the Lua file that builds the model' },
  { name = 'datadir', type = 'string', default = '/usr/share/datasets/fashion-mnist', help = 'IDX files (train-*, t10k-*)' },
  { name = 'logdir', type = 'string', default = '/tmp/mnist-log', help = 'deploy.log goes here' },
  { name = 'logevery', type = 'int', default = 1, min = 1, help = 'print every Nth step line to stdout (deploy.log gets all)' },
  { name = 'lossevery', type = 'int', default = 100, min = 1, help = 'log the mean loss every N steps' },
  { name = 'seed', type = 'int', default = 1, help = 'initialisation and shuffling seed' },
  { name = 'optimizer', type = 'string', default = 'adam', choices = { 'sgd', 'adam', 'adamw' }, help = 'sgd, adam or adamw' },
  { name = 'momentum', type = 'number', default = 0, min = 0, help = 'sgd momentum' },
  { name = 'beta1', type = 'number', default = 0.9, min = 0, help = 'adam beta1' },
  { name = 'beta2', type = 'number', default = 0.999, min = 0, help = 'adam beta2' },
  { name = 'eps', type = 'number', default = 1e-8, min = 0, help = 'adam epsilon' },
  { name = 'weight_decay', type = 'number', default = 0, min = 0, help = 'L2 (sgd, adam) or decoupled (adamw)' },
  { name = 'sync', type = 'bool', default = false, help = 'average replicas_to_aggregate gradients per step' },
  { name = 'replicas_to_aggregate', type = 'int', default = 0, min = 0, help = 'sync: gradients per step; 0 = every worker' },
  { name = 'evaluate', type = 'bool', default = true, help = 'worker 0 reports test accuracy at the end' },
  { name = 'threads', type = 'int', default = 1, min = 1, help = 'BLAS threads per task' },
  { name = 'connect_timeout', type = 'number', default = 120, min = 0, help = 'seconds a worker waits for the ps tasks' },
  { name = 'timeout', type = 'number', default = 60, min = 0, help = 'seconds one request to a ps may take' },
  { name = 'reconnect_timeout', type = 'number', default = 60, min = 0, help = 'seconds a worker keeps reconnecting to a lost ps' },
  { name = 'start_timeout', type = 'number', default = 30, min = 0, help = 'async: seconds a worker waits for the other workers to join before it trains' },
  { name = 'keepalive', type = 'number', default = 25, min = 0, help = 'seconds after which a silent, half-open connection is dropped' },
  { name = 'sync_timeout', type = 'number', default = 30, min = 0, help = 'sync: seconds before a silent worker is dropped from a step; 0 = wait for ever' },
  { name = 'done_timeout', type = 'number', default = 600, min = 0, help = 'once a worker is done: seconds the ps waits for a worker with no connection before it stops; 0 = wait for ever' },
  { name = 'save', type = 'string', default = '', help = 'worker 0 writes the trained model here (safetensors)' },
  { name = 'checkpoint_dir', type = 'string', default = '', help = 'ps checkpoints go here; empty = none' },
  { name = 'checkpoint_secs', type = 'number', default = 30, min = 0, help = 'seconds between ps checkpoints' },
  { name = 'checkpoint_steps', type = 'int', default = 0, min = 0, help = 'steps between ps checkpoints; 0 = by time only' },
  { name = 'wire_dtype', type = 'string', default = 'fp32', choices = { 'fp32', 'bf16' }, help = 'what pushes and pulls carry: fp32, or bf16 (half the bytes; the ps keeps fp32)' },
}

local hp = hparams.parse(schema, cli)
local spec = cluster.resolve(cli)
T.set_num_threads(hp.threads)
log.open(hp.logdir)

-- ---- the model ---------------------------------------------------------------

local function build_model()
  local chunk, err = loadfile(hp.modelfile)
  if not chunk then error('model file: ' .. err, 0) end
  local builder = chunk()
  if type(builder) ~= 'function' then
    error(string.format('model file %s must return a function(hp) that builds the model', hp.modelfile), 0)
  end
  local net = builder(hp)
  if type(net) ~= 'table' or not net.build then
    error(string.format('model file %s: the builder must return an nn.Sequential', hp.modelfile), 0)
  end
  return net:build(hp.seed)
end

local net = build_model()
local params, grads, layout = net:parameters()
local checksum = net:checksum()

local function token() return cluster.token(cli) end

-- ---- data ----------------------------------------------------------------------

local function load(split)
  local ds, err = data.mnist(hp.datadir, split)
  if not ds then error(err, 0) end
  return ds
end

local function total_steps(train)
  if hp.trainsteps then return hp.trainsteps end
  return math.ceil(hp.epochs * train:count() / hp.batchsize)
end

-- ---- one training step ---------------------------------------------------------

local criterion = nn.SoftmaxCrossEntropy()

local function compute_gradients(x, y)
  net:zero_grad()
  local loss = criterion:forward(net:forward(x), y)
  net:backward(x, criterion:backward())
  return loss
end

local function report_end(worker, t0, train_end)
  log.info('Training ends @ %f', util.wallclock())
  log.info('Training elapsed time: %f s', train_end - t0)
  if worker == 0 and hp.save ~= '' then
    local ok, err = require('dtf.ckpt').save(hp.save, net:named_tensors(),
      { model = hp.model, layout = checksum, format = 'dtf' })
    if not ok then error('save: ' .. tostring(err), 0) end
    log.info('Model saved to %s', hp.save)
  end
  if worker == 0 and hp.evaluate then
    local acc, n = nn.evaluate(net, load('test'), 1000)
    log.info('Test accuracy: %.4f (%d images)', acc, n)
  end
end

-- A worker's loop; `exchange(step)` sends the gradients and brings back the
-- parameters, returning the global step (one process: applies them itself).
-- `start()`, called once the data is loaded, returns the first global step.
local function train_loop(worker, nworkers, steps, exchange, start)
  local train = load('train')
  steps = steps or total_steps(train)
  local loader = train:loader { batchsize = hp.batchsize, seed = hp.seed, shard = worker, shards = nworkers }
  local rows, cols = train:shape()
  local x, y = T.zeros(hp.batchsize, rows * cols), T.zeros(hp.batchsize)
  log.info('Worker %d: %d parameters, %d training examples in its shard, %s steps, batch %d',
           worker, net.nparams, train:count() // nworkers, steps == 0 and 'unlimited' or tostring(steps),
           hp.batchsize)
  local first = start and start() or 0
  local t0 = util.now()
  local gstep, step, losses, nloss = first, 0, 0, 0
  while steps == 0 or gstep < steps do
    loader:next(x, y)
    local loss = compute_gradients(x, y)
    gstep = exchange(gstep)
    step = step + 1
    losses, nloss = losses + loss, nloss + 1
    local line = string.format('Worker %d: training step %d done (global step: %d)', worker, step, gstep)
    -- stdout gets every logevery-th line and always the last one.
    if step % hp.logevery == 0 or (steps > 0 and gstep >= steps) then log.info('%s', line) else log.file('%s', line) end
    if nloss == hp.lossevery then
      log.info('Worker %d: mean loss %.4f over steps %d-%d', worker, losses / nloss, step - nloss + 1, step)
      losses, nloss = 0, 0
    end
  end
  return t0, util.now(), step
end

-- ---- roles -----------------------------------------------------------------------

if not spec.role then
  local opt = optim.new(hp.optimizer, net.nparams, optim.config(hp))
  log.info('Training %s (%d parameters, layout %s) in one process', hp.model, net.nparams, checksum)
  local t0, t1 = train_loop(0, 1, nil, function(gstep)
    opt:step(params, grads)
    return gstep + 1
  end)
  report_end(0, t0, t1)
  return
end

local ps = require 'dtf.ps'

if spec.role == 'ps' then
  local stats, serr = ps.serve {
    port = cluster.port(spec.address), index = spec.index, params = params,
    nps = #spec.ps, workers = #spec.workers, layout_checksum = checksum, token = token(),
    optimizer = { kind = hp.optimizer, lr = hp.learningrate, momentum = hp.momentum, beta1 = hp.beta1,
                  beta2 = hp.beta2, eps = hp.eps, weight_decay = hp.weight_decay },
    sync = hp.sync, replicas_to_aggregate = hp.replicas_to_aggregate > 0 and hp.replicas_to_aggregate or nil,
    checkpoint_dir = hp.checkpoint_dir ~= '' and hp.checkpoint_dir or nil,
    checkpoint_secs = hp.checkpoint_secs, checkpoint_steps = hp.checkpoint_steps, layout = layout,
    sync_timeout = hp.sync_timeout, done_timeout = hp.done_timeout, keepalive = hp.keepalive,
    log = log.sink, wire_dtype = hp.wire_dtype,
  }
  if not stats then error(serr, 0) end
  log.info('ps %d: stopped (%s) at step %d', spec.index,
           stats.reason == 'signal' and 'signal' or
           stats.reason == 'done_timeout' and 'done_timeout: not every worker said done' or
           'every worker is done', stats.step)
  return
end

-- worker
-- A worker joins the ps tasks (HELLO) once its data is loaded, so that a
-- joined worker is one ready to train.
local client
local function connect()
  local c, err = ps.connect {
    addrs = spec.ps, role = 'worker', index = spec.index, P = net.nparams, layout_checksum = checksum,
    token = token(), connect_timeout = hp.connect_timeout, timeout = hp.timeout,
    reconnect_timeout = hp.reconnect_timeout, keepalive = hp.keepalive,
    -- A sync pull waits for the slowest replica, which the ps drops after
    -- sync_timeout: wait that long (twice, for a restart) beyond a request's.
    wait_timeout = hp.timeout + 2 * hp.sync_timeout, log = log.sink, wire_dtype = hp.wire_dtype,
  }
  if not c then error(err, 0) end
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
    if not stats then error(serr, 0) end
    local joined = stats[1].workers_joined or #spec.workers
    if joined >= #spec.workers then return end
    if util.now() >= deadline then
      log.warning('Worker %d: %d of %d workers joined after %g s; training without the others',
                  spec.index, joined, #spec.workers, hp.start_timeout)
      return
    end
    if not said then
      log.info('Worker %d: waiting for %d more worker(s) to join (up to %g s)', spec.index,
               #spec.workers - joined, hp.start_timeout)
      said = true
    end
    util.sleep(0.002)
  end
end

local t0, t1 = train_loop(spec.index, #spec.workers, nil, function(step)
  local g, perr = client:push_pull(grads, params, step)
  if not g then error(perr, 0) end
  return g
end, function()
  client = connect()
  wait_for_workers()
  local g, perr = client:pull(params)
  if not g then error(perr, 0) end
  return g
end)
if spec.index == 0 then assert(client:pull(params)) end
client:done()
client:close()
report_end(spec.index, t0, t1)
