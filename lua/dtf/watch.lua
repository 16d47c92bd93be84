-- dtf.watch: what train.lua calls so that a training can be watched
-- (README, "Watching a training"):
--   * Prometheus metrics on metrics_port (dtf.metrics; the ps's own come from
--     the ps loop's hooks, pswatch.h),
--   * TensorBoard scalars under LOGDIR/tensorboard/TASK (dtf.tfevents),
--   * the status line on a terminal (dtf.progress),
--   * evaluation every evalevery global steps, on the test set or on a
--     held-out tail of the training set (validation=N), save_best,
--   * deploy.log's rotation (logmax).
-- train.lua keeps to one call per hook, so that its own edits stay apart:
--   watch.schema              its hyperparameters (dtf.schema appends them)
--   watch.setup(hp, spec)     after log.open: logs, metrics endpoint, ps watch
--   watch.train_count(ds)     examples a worker trains on (less the held-out)
--   watch.begin{...}          once the data is loaded, before the first step
--   watch.timed(exchange)     the exchange function, timed for the metrics
--   watch.quiet()             true: step lines go to deploy.log only
--   watch.step(gstep, loss, n) after each step
--   watch.final(test)         worker 0 at the end: -> test accuracy, images
--   watch.saved_best()        true when save_best kept a model already
--   watch.finish()            at the end of every role: flushes, closes
local T = require 'dtf.tensor'
local nn = require 'dtf.nn'
local util = require 'dtf.util'
local log = require 'dtf.log'
local metrics = require 'dtf.metrics'
local tfevents = require 'dtf.tfevents'
local progress = require 'dtf.progress'
local usage_error = require('dtf').usage_error

local watch = {}

local env_port = tonumber(os.getenv('DTF_METRICS_PORT') or '')

watch.schema = {
  { name = 'metrics_port', type = 'int', default = env_port or 0, min = 0,
    help = 'serve Prometheus metrics at http://HOST:PORT/metrics; 0 = off (dtf local picks one per task)' },
  { name = 'progress', type = 'bool', default = true,
    help = 'on a terminal: one status line instead of the step lines' },
  { name = 'tensorboard', type = 'bool', default = true,
    help = 'worker 0 and every ps write TensorBoard scalars to logdir/tensorboard/TASK' },
  { name = 'evalevery', type = 'int', default = 0, min = 0,
    help = 'worker 0 evaluates every N global steps; 0 = only at the end' },
  { name = 'validation', type = 'int', default = 0, min = 0,
    help = 'hold the last N training examples out of every shard and evaluate on them' },
  { name = 'save_best', type = 'bool', default = false,
    help = 'with save: keep the model with the best evaluation accuracy' },
  { name = 'logmax', type = 'string', default = '64M',
    help = 'deploy.log rotates past this size (bytes, or 512K, 64M, 1G; one old file kept); 0 = never' },
}

-- The state of this task's watch: one per process, as the task is.
local S = {}

local units = { [''] = 1, K = 1024, M = 1024 ^ 2, G = 1024 ^ 3 }

function watch.parse_size(s)
  local num, unit = tostring(s):match('^%s*(%d+)%s*([KMGkmg]?)[iI]?[bB]?%s*$')
  if not num then return nil end
  return math.tointeger(tonumber(num) * units[unit:upper()])
end

local function task_name(spec)
  if spec.role == 'ps' then return 'ps' .. spec.index end
  return 'worker' .. (spec.index or 0)
end

local function listen_host(spec)
  local host = spec.address and spec.address:match('^(.*):%d+$')
  return host or 'localhost'
end

local function worker_metrics()
  local secs = { 0.0005, 0.001, 0.002, 0.005, 0.01, 0.02, 0.05, 0.1, 0.2, 0.5, 1, 2, 5 }
  return {
    steps = metrics.counter('dtf_worker_steps_total', 'Training steps this worker completed.'),
    examples = metrics.counter('dtf_worker_examples_total', 'Training examples this worker computed gradients on.'),
    loss = metrics.gauge('dtf_worker_loss', 'Loss of the last training step.'),
    gstep = metrics.gauge('dtf_worker_global_step', 'The global step the last exchange returned.'),
    step_s = metrics.histogram('dtf_worker_step_seconds', 'Seconds of a whole training step (data, forward, backward, exchange).', secs),
    exchange_s = metrics.histogram('dtf_worker_exchange_seconds', 'Seconds of the push/pull round trip of a step.', secs),
  }
end

-- After log.open: rotation, the build's metrics, the endpoint; a ps's watch.
function watch.setup(hp, spec)
  S = { hp = hp, spec = spec, task = task_name(spec), best = -1, last_eval = nil }
  local max = watch.parse_size(hp.logmax)
  if not max then
    usage_error("--set: logmax='%s' is not a size (bytes, or with K, M or G)", tostring(hp.logmax))
  end
  progress.log_max(max)
  if hp.metrics_port > 65535 then
    usage_error('--set: metrics_port=%d is not a port (0 to 65535)', hp.metrics_port)
  end
  local on = hp.metrics_port > 0
  if on then
    metrics.info('dtf_build_info', 'The dtf version and the BLAS kernels it runs on.',
                 { version = require('dtf.cli').version or '?', blas_core = metrics.blas_core() })
  end
  local tbdir = hp.tensorboard and (hp.logdir .. '/tensorboard/' .. S.task) or nil
  if spec.role == 'ps' then
    -- Registered whether or not the endpoint is on: the ps loop's hooks
    -- also write the TensorBoard scalars.
    local w, err = metrics.pswatch { dir = tbdir }
    if not w then
      log.warning('ps %d: no TensorBoard scalars: %s', spec.index, err)
      w = metrics.pswatch {} -- the metrics still
    end
    S.pswatch = w
  elseif on then
    S.m = worker_metrics()
  end
  if on then
    local port, err = metrics.serve { port = hp.metrics_port }
    if not port then error(err, 0) end
    log.info('metrics at http://%s:%d/metrics', listen_host(spec), port)
  end
end

function watch.train_count(ds)
  local v = S.hp.validation
  if v >= ds:count() then
    usage_error('--set: validation=%d leaves nothing to train on (%d training examples)', v, ds:count())
  end
  return ds:count() - v
end

-- ctx: net, worker, nworkers, train (the dataset), steps (0: no end),
-- first (global step at the start), load (split -> dataset), save
-- (function(meta, note): writes the model with extra metadata), lr (the
-- optimizer settings: the rate at a global step), replicas (gradients per
-- global step: 1 async, R sync).
function watch.begin(ctx)
  local hp = S.hp
  for k, v in pairs(ctx) do S[k] = v end
  S.chief = ctx.worker == 0
  local now = util.now()
  S.last_end, S.win_t, S.win_g, S.gstep = now, now, ctx.first, ctx.first
  S.loss_sum, S.loss_n, S.mean = 0, 0, nil
  S.last_flush = now
  S.quiet = hp.progress and util.isatty(1)
  if S.quiet then progress.start(ctx.steps) end
  if S.chief and hp.tensorboard then
    local w, err = tfevents.open(hp.logdir .. '/tensorboard/' .. S.task)
    if not w then log.warning('Worker %d: no TensorBoard scalars: %s', ctx.worker, err)
    else S.writer = w end
  end
end

function watch.timed(exchange)
  if not S.m then return exchange end
  local h = S.m.exchange_s
  return function(...)
    local t = util.now()
    local g = exchange(...)
    h:observe(util.now() - t)
    return g
  end
end

function watch.quiet() return S.quiet end

local function tb(tag, step, value)
  if not S.writer then return end
  local ok, err = S.writer:scalar(tag, step, value)
  if not ok then
    log.warning('TensorBoard: %s; no more scalars', err)
    S.writer:close()
    S.writer = nil
  end
end

local function flush()
  if S.writer then
    local ok, err = S.writer:flush()
    if not ok then log.warning('TensorBoard: %s', err) end
  end
  S.last_flush = util.now()
end

-- Accuracy, mean loss and count of the net over examples first .. first+n-1
-- of ds (all of it by default).
local function evaluate_on(ds, first, n)
  local net = S.net
  -- batches whose activations fit nn.EVAL_BUDGET (the CNN's pod has 125Mi)
  S.eval_bs = S.eval_bs or nn.eval_batchsize(net, ds)
  local correct, loss, seen = 0, 0, 0
  for x, y, k in ds:batches(S.eval_bs, first, n) do
    local logits = net:forward(x, true)
    loss = loss + T.cross_entropy(logits, y) * k
    correct = correct + T.accuracy(logits, y)
    seen = seen + k
  end
  seen = math.max(seen, 1)
  return correct / seen, loss / seen, seen
end

local function eval_set()
  local v = S.hp.validation
  if v > 0 then return S.train, S.train:count() - v + 1, v end
  S.test = S.test or S.load('test')
  return S.test
end

local function save_if_best(gstep, acc)
  local hp = S.hp
  if not (hp.save_best and hp.save ~= '' and acc > S.best) then return end
  S.best = acc
  S.save({ global_step = gstep, accuracy = string.format('%.4f', acc) },
         string.format(' (best accuracy so far, %.4f at global step %d)', acc, gstep))
  S.saved = true
end

local function record(gstep, acc, loss)
  S.last_eval = gstep
  tb('eval/accuracy', gstep, acc)
  tb('eval/loss', gstep, loss)
  flush()
  if S.m then
    -- registered at the first evaluation: absent before it, not a made-up 0
    S.m.eval_acc = S.m.eval_acc or metrics.gauge('dtf_eval_accuracy', 'Accuracy of the last evaluation.')
    S.m.eval_loss = S.m.eval_loss or metrics.gauge('dtf_eval_loss', 'Mean loss of the last evaluation.')
    S.m.eval_acc:set(acc)
    S.m.eval_loss:set(loss)
  end
  save_if_best(gstep, acc)
end

local function evaluate(gstep)
  local acc, loss, n = evaluate_on(eval_set())
  log.info('Evaluation at global step %d: accuracy %.4f, loss %.4f (%d images)', gstep, acc, loss, n)
  S.last_result = { acc, loss, n }
  record(gstep, acc, loss)
end

local function window(now, gstep)
  local hp = S.hp
  local mean = S.loss_sum / S.loss_n
  S.mean = mean
  local dt = now - S.win_t
  if S.writer and dt > 0 then
    local sps = (gstep - S.win_g) / dt
    tb('train/loss', gstep, mean)
    tb('train/steps_per_second', gstep, sps)
    tb('train/examples_per_second', gstep, sps * hp.batchsize * S.replicas)
    tb('train/learning_rate', gstep, S.lr and require('dtf.ps').lr_at(S.lr, gstep) or hp.learningrate)
    if now - S.last_flush >= 5 then flush() end
  end
  S.win_t, S.win_g = now, gstep
  S.loss_sum, S.loss_n = 0, 0
end

function watch.step(gstep, loss, n)
  local now = util.now()
  local m = S.m
  if m then
    m.steps:inc()
    m.examples:inc(n)
    m.loss:set(loss)
    m.gstep:set(gstep)
    m.step_s:observe(now - S.last_end)
  end
  S.last_end, S.gstep = now, gstep
  S.loss_sum, S.loss_n = S.loss_sum + loss, S.loss_n + 1
  if S.loss_n == S.hp.lossevery then window(now, gstep) end
  local every = S.hp.evalevery
  if S.chief and every > 0 and gstep // every > (S.last_eval or S.first) // every then
    evaluate(gstep)
  end
  if S.quiet then
    progress.update(gstep, (gstep - S.first) * S.hp.batchsize * S.replicas,
                    S.mean or S.loss_sum / math.max(S.loss_n, 1))
  end
end

-- Worker 0 at the end: the held-out set once more (validation), then the
-- test set, whose accuracy and count it returns for the seed's line. With
-- the test set as the evaluation set, its result is recorded as the last
-- evaluation (TensorBoard, metrics, save_best).
function watch.final(test)
  progress.finish()
  local g = S.gstep
  if S.hp.validation > 0 then
    if S.last_eval ~= g then evaluate(g) end
    local acc, _, n = evaluate_on(test)
    return acc, n
  end
  if S.last_eval == g then -- evalevery just evaluated these parameters on the test set
    return S.last_result[1], S.last_result[3]
  end
  local acc, loss, n = evaluate_on(test)
  record(g, acc, loss)
  return acc, n
end

function watch.saved_best() return S.saved == true end

function watch.finish()
  progress.finish()
  if S.writer then
    flush()
    S.writer:close()
    S.writer = nil
  end
  if S.pswatch then
    local ok, err = S.pswatch:close()
    if not ok then log.warning('ps %d: TensorBoard: %s', S.spec.index, err) end
    S.pswatch = nil
  end
end

return watch
