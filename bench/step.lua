-- One training step of models/mnist.lua in dtf, as train.lua runs it
-- (forward, softmax cross-entropy, backward, Adam), on fixed random inputs.
-- usage: dtf run bench/step.lua -- MODEL BATCH SECONDS  -> "samples_per_s steps_per_s"
local T = require 'dtf.tensor'
local nn = require 'dtf.nn'
local optim = require 'dtf.optim'
local util = require 'dtf.util'

local model, batch, seconds = arg[1], math.tointeger(tonumber(arg[2])), tonumber(arg[3])
local here = arg[0]:match('^(.*)/[^/]*$') or '.'
local net = dofile(here .. '/../models/mnist.lua') { model = model, hidden = 100 }
net:build(1)
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
  opt:step(params, grads)
end

for _ = 1, 5 do step() end
local n, t0 = 0, util.now()
local el
repeat
  step()
  n = n + 1
  el = util.now() - t0
until el >= seconds and n >= 3
print(string.format('%.1f %.2f', n * batch / el, n / el))
