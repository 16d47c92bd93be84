-- One training step of models/mnist.lua in dtf, as train.lua runs it
-- (forward, softmax cross-entropy, backward, Adam), on fixed random inputs,
-- and the step's matmul-only bound: the same sgemm calls (recorded from one
-- step: shapes, transposes, leading dimensions) replayed alone. Steps and
-- replays alternate, best round of each, so load on the machine hits both.
-- usage: dtf run bench/step.lua -- MODEL BATCH SECONDS
--   -> "samples_per_s step_us bound_us core"
local T = require 'dtf.tensor'
local nn = require 'dtf.nn'
local optim = require 'dtf.optim'

local model, batch, seconds = arg[1], math.tointeger(tonumber(arg[2])), tonumber(arg[3])
local here = arg[0]:match('^(.*)/[^/]*$') or '.'
-- models/mnist.lua as train.lua builds it (dtf.model), its other hyperparameters at their defaults
local dtf_model = require 'dtf.model'
local mfile = dtf_model.load(here .. '/../models/mnist.lua')
local schema = dtf_model.schema({}, mfile)
local hp = { model = model, hidden = 100 }
for _, e in ipairs(schema) do if hp[e.name] == nil then hp[e.name] = e.default end end
local net = dtf_model.build(mfile, hp, schema, 1)
T.set_num_threads(1)
local params, grads = net:parameters()
local opt = optim.adam(net.nparams, { lr = 0.001 })
local crit = nn.SoftmaxCrossEntropy()
local x = T.zeros(batch, 784):uniform_(1, 0, 1)
local y = T.zeros(batch)
local rng = T.rng(2)
for i = 1, batch do y[i] = rng:below(10) end

local function step()
  net:zero_grad()
  crit:forward(net:forward(x), y)
  net:backward(x, crit:backward())
  opt:step(params, grads, net)
end

for _ = 1, 5 do step() end
local trace = T.gemm_trace(step)
T.gemm_replay(trace)

-- Seconds per call of fn, over a slice of `budget` seconds (at least 3 calls).
local function per_call(fn, budget)
  local n, t0, el = 0, os.clock(), 0
  repeat
    fn(trace)
    n = n + 1
    el = os.clock() - t0
  until el >= budget and n >= 3
  return el / n
end

local rounds = 4
local best_step, best_bound = math.huge, math.huge
for _ = 1, rounds do
  best_step = math.min(best_step, per_call(step, seconds / rounds / 2))
  best_bound = math.min(best_bound, per_call(T.gemm_replay, seconds / rounds / 2))
end
local _, core = T.blas_info()
print(string.format('%.1f %.1f %.1f %s', batch / best_step, best_step * 1e6, best_bound * 1e6, core))
