-- dtf.schema: the hyperparameters of dtf's training loop (train.lua), in one
-- place for train.lua, the REPL and the chart's check. A model file adds its
-- own (dtf.model); a training script may add more to the list it gets.
-- Each entry: {name=, type='int'|'number'|'bool'|'string', default=, min=,
-- choices=, help=} (dtf.hparams reads them).
local data = require 'dtf.data'
local defaults = require('dtf.ps').defaults

local schema = {}

-- The list, with modelfile's default beside the script (script_dir); the
-- watching hyperparameters (dtf.watch: metrics, TensorBoard, evaluation,
-- the status line, deploy.log's size) at the end.
function schema.training(script_dir)
  local list = {
    { name = 'batchsize', type = 'int', default = 64, min = 1, help = 'examples per step (per worker)' },
    { name = 'learningrate', type = 'number', default = 0.003, min = 0, help = 'the optimizer\'s learning rate' },
    { name = 'trainsteps', type = 'int', min = 0, help = 'global steps to train; 0 = until stopped; default: epochs' },
    { name = 'epochs', type = 'number', default = 1, min = 0, help = 'passes over the training set when trainsteps is not set' },
    { name = 'modelfile', type = 'string', default = (script_dir or '.') .. '/models/mnist.lua', help = 'the Lua file that builds the model' },
    { name = 'datadir', type = 'string', default = data.default_dir, help = 'IDX files (train-*, t10k-*)' },
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
    { name = 'lr_schedule', type = 'string', default = 'constant', choices = { 'constant', 'step', 'cosine' }, help = 'the learning rate over the global steps (applied on the ps)' },
    { name = 'warmup', type = 'int', default = 0, min = 0, help = 'global steps of linear warmup to learningrate' },
    { name = 'lr_decay_steps', type = 'int', default = 0, min = 0, help = 'step: steps per decay; cosine: its length (0 = the whole training after warmup)' },
    { name = 'lr_decay', type = 'number', default = 0.1, min = 0, help = 'step: the factor per lr_decay_steps' },
    { name = 'sync', type = 'bool', default = false, help = 'average replicas_to_aggregate gradients per step' },
    { name = 'replicas_to_aggregate', type = 'int', default = 0, min = 0, help = 'sync: gradients per step; 0 = every worker' },
    { name = 'evaluate', type = 'bool', default = true, help = 'worker 0 reports test accuracy at the end' },
    { name = 'threads', type = 'int', min = 1,
      help = 'BLAS threads; default: the usable cores in one process, 1 in a ps or worker task' },
    { name = 'denormals', type = 'string', default = 'flush', choices = { 'flush', 'keep' },
      help = 'flush subnormal floats to zero (no slow assists) or keep them' },
    { name = 'connect_timeout', type = 'number', default = defaults.connect_timeout, min = 0, help = 'seconds a worker waits for the ps tasks' },
    { name = 'timeout', type = 'number', default = defaults.timeout, min = 0, help = 'seconds one request to a ps may take' },
    { name = 'reconnect_timeout', type = 'number', default = defaults.reconnect_timeout, min = 0, help = 'seconds a worker keeps reconnecting to a lost ps' },
    { name = 'start_timeout', type = 'number', default = 30, min = 0, help = 'async: seconds a worker waits for the other workers to join before it trains' },
    { name = 'keepalive', type = 'number', default = defaults.keepalive, min = 0, help = 'seconds after which a silent, half-open connection is dropped' },
    { name = 'sync_timeout', type = 'number', default = defaults.sync_timeout, min = 0, help = 'sync: seconds before a silent worker is dropped from a step; 0 = wait for ever' },
    { name = 'done_timeout', type = 'number', default = defaults.done_timeout, min = 0, help = 'once a worker is done: seconds the ps waits for a worker with no connection before it stops; 0 = wait for ever' },
    { name = 'bind', type = 'string', default = 'auto', help = 'where a ps listens: auto (its own address when a literal IP, else every address), all, or an address' },
    { name = 'save', type = 'string', default = '', help = 'worker 0 writes the trained model here (safetensors)' },
    { name = 'checkpoint_dir', type = 'string', default = '', help = 'checkpoints (ps, or one process) go here and are resumed from; empty = none' },
    { name = 'checkpoint_secs', type = 'number', default = defaults.checkpoint_secs, min = 0, help = 'seconds between ps checkpoints' },
    { name = 'checkpoint_steps', type = 'int', default = 0, min = 0, help = 'steps between ps checkpoints; 0 = by time only' },
    { name = 'overlap', type = 'bool', default = false, help = 'async: a step computes while the previous one\'s push and pull cross the link (parameters one round older); sync ignores it' },
    { name = 'wire_dtype', type = 'string', default = 'fp32', choices = { 'fp32', 'bf16' }, help = 'what pushes and pulls carry: fp32, or bf16 (half the bytes; the ps keeps fp32)' },
  }
  for _, e in ipairs(require('dtf.watch').schema) do list[#list + 1] = e end
  return list
end

return schema
