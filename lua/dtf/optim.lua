-- dtf.optim: optimizers over a flat parameter buffer (or any range of it);
-- the update loops are C (optim.c), the same ones a ps shard runs.
local T = require 'dtf.tensor'

local optim = {}

local Optimizer = {}
Optimizer.__index = Optimizer

local nslots = { sgd = 1, adam = 2, adamw = 2 }

-- optim.new(kind, n, cfg): kind 'sgd' | 'adam' | 'adamw'; n parameters;
-- cfg: lr, momentum, nesterov, beta1, beta2, eps, weight_decay.
function optim.new(kind, n, cfg)
  if not nslots[kind] then error(string.format("optim: unknown optimizer '%s' (sgd, adam, adamw)", tostring(kind)), 2) end
  local o = setmetatable({ kind = kind, cfg = cfg or {}, t = 0, n = n }, Optimizer)
  o.slot0 = T.zeros(n)
  o.slot1 = nslots[kind] > 1 and T.zeros(n) or o.slot0
  return o
end

function optim.sgd(n, cfg) return optim.new('sgd', n, cfg) end
function optim.adam(n, cfg) return optim.new('adam', n, cfg) end
function optim.adamw(n, cfg) return optim.new('adamw', n, cfg) end

-- The optimizer settings a training script's hyperparameters give, with the
-- learning-rate schedule: the table ps.serve (a ps shard) and ps.local_shard
-- (one process) take. total: the global steps of the training (a cosine
-- schedule decays over them when lr_decay_steps is 0); 0 or nil: unknown.
function optim.config(hp, total)
  local schedule, warmup = hp.lr_schedule or 'constant', hp.warmup or 0
  local decay_steps = hp.lr_decay_steps or 0
  if schedule == 'cosine' and decay_steps == 0 then
    if not total or total == 0 then
      require('dtf').usage_error('lr_schedule=cosine needs lr_decay_steps when the training has no end (trainsteps=0)')
    end
    decay_steps = math.max(total - warmup, 1)
  elseif schedule == 'step' and decay_steps == 0 then
    require('dtf').usage_error('lr_schedule=step needs lr_decay_steps (the steps between decays)')
  end
  if schedule == 'step' and not (hp.lr_decay > 0 and hp.lr_decay <= 1) then
    require('dtf').usage_error('lr_decay=%g must be in (0, 1]', hp.lr_decay)
  end
  return { kind = hp.optimizer, lr = hp.learningrate, momentum = hp.momentum, beta1 = hp.beta1,
           beta2 = hp.beta2, eps = hp.eps, weight_decay = hp.weight_decay, schedule = schedule,
           warmup = warmup, decay_steps = decay_steps, decay = hp.lr_decay or 0.1 }
end

-- One update of params from grads (flat tensors of n elements). With net
-- (the nn.Sequential that owns grads) the update also zeroes grads in the
-- same pass, and net's next zero_grad() has nothing left to do.
function Optimizer:step(params, grads, net)
  self.t = self.t + 1
  T.optim_step(self.kind, params, grads, self.slot0, self.slot1, self.t, self.cfg, net ~= nil)
  if net then net:grads_zeroed() end
end

return optim
