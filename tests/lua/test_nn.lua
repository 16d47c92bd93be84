-- dtf.nn: finite-difference gradient checks for every layer, the flat
-- parameter buffer, the layout and its checksum, loading tensors.
local check = require 'check'
local T = require 'dtf.tensor'
local nn = require 'dtf.nn'

-- loss(x) = sum(forward(x) .* r) for a fixed random r: dloss/dout = r.
local function loss_of(net, x, r)
  local out = net:forward(x)
  local flat_out, flat_r = out:contiguous():view(-1), r:view(-1)
  local s = 0
  for i = 1, flat_out:numel() do s = s + flat_out[i] * flat_r[i] end
  return s
end

-- Compares analytic and central-difference gradients on `samples` entries
-- of tensor `t` (a parameter view or the input), in float32.
-- eps: the step (1e-2); through max-pooling a smaller one (a weight moves
-- every window, and a step across a window's tie is not a derivative).
local function fd_check(name, net, x, r, t, analytic, samples, eps)
  local flat, grad = t:view(-1), analytic:contiguous():view(-1)
  local rng = T.rng(7)
  local worst = 0
  eps = eps or 1e-2
  for _ = 1, samples do
    local i = rng:below(flat:numel()) + 1
    local old = flat[i]
    flat[i] = old + eps
    local lp = loss_of(net, x, r)
    flat[i] = old - eps
    local lm = loss_of(net, x, r)
    flat[i] = old
    local num = (lp - lm) / (2 * eps)
    local err = math.abs(num - grad[i]) / math.max(1, math.abs(num), math.abs(grad[i]))
    worst = math.max(worst, err)
  end
  check.ok(worst < 2e-2, string.format('%s: finite differences disagree (worst relative error %.3g)', name, worst))
end

local function gradcheck(name, layer, in_shape, net, eps)
  net = net or nn.Sequential { layer }:build(3)
  layer.skip_input_grad = false -- check the input gradient too
  local x = T.zeros(table.unpack(in_shape)):normal_(11, 0, 1)
  local out = net:forward(x)
  local r = T.zeros(table.unpack(out:size())):normal_(13, 0, 1)
  net:zero_grad()
  net:forward(x)
  local dx = net:backward(x, r):clone()
  local _, grads = net:parameters()
  local g = grads:clone()
  fd_check(name .. ' input', net, x, r, x, dx, 20, eps)
  for _, e in ipairs(net.layout) do
    local p = e.layer[e.key]
    local ga = g:narrow(1, e.offset + 1, e.numel)
    fd_check(name .. ' ' .. e.name, net, x, r, p, ga, 20, eps)
  end
end

check.case('Linear gradients', function() gradcheck('Linear', nn.Linear(7, 5), { 4, 7 }) end)
check.case('ReLU gradients', function() gradcheck('ReLU', nn.ReLU(), { 4, 9 }) end)
check.case('Conv2d gradients', function() gradcheck('Conv2d', nn.Conv2d(2, 3, 3, 1, 1), { 2, 2, 6, 6 }) end)
check.case('Conv2d stride 2 gradients', function() gradcheck('Conv2d/2', nn.Conv2d(1, 2, 3, 2, 0), { 2, 1, 7, 7 }) end)
check.case('MaxPool2d gradients', function() gradcheck('MaxPool2d', nn.MaxPool2d(), { 2, 3, 4, 4 }) end)
check.case('View gradients', function() gradcheck('View', nn.View(2, 3), { 4, 6 }) end)

-- Sequential fuses Conv2d, ReLU, MaxPool2d into one block and Linear, ReLU
-- into one layer: the gradients stay those of the layers.
check.case('fused conv block gradients', function()
  local conv = nn.Conv2d(2, 3, 3, 1, 1)
  local net = nn.Sequential { conv, nn.ReLU(), nn.MaxPool2d() }:build(3)
  check.ok(conv.block and net.layers[2].fused and net.layers[3].fused, 'conv, relu, pool fused')
  gradcheck('Conv2d+ReLU+MaxPool2d', conv, { 2, 2, 6, 6 }, net, 1e-3)
end)

check.case('fused conv block, odd sizes and stride 2', function()
  local conv = nn.Conv2d(1, 2, 3, 2, 1)
  local net = nn.Sequential { conv, nn.ReLU(), nn.MaxPool2d() }:build(4)
  gradcheck('block/2', conv, { 3, 1, 9, 11 }, net, 1e-3)
end)

check.case('fused Linear+ReLU gradients', function()
  local fc = nn.Linear(7, 5)
  local net = nn.Sequential { fc, nn.ReLU() }:build(5)
  check.ok(fc.relu and net.layers[2].fused, 'linear and relu fused')
  gradcheck('Linear+ReLU', fc, { 4, 7 }, net)
end)

-- The MNIST CNN's shape, small: every parameter's gradient through the
-- fused blocks, the flattening and the fused linear layer.
check.case('small CNN gradients through Sequential', function()
  local net = nn.Sequential {
    nn.View(1, 8, 8), nn.Conv2d(1, 3, 3, 1, 1), nn.ReLU(), nn.MaxPool2d(),
    nn.Conv2d(3, 4, 3, 1, 1), nn.ReLU(), nn.MaxPool2d(), nn.Flatten(),
    nn.Linear(16, 6), nn.ReLU(), nn.Linear(6, 3),
  }:build(6)
  check.ok(net.layers[2].skip_input_grad, 'no input gradient for the first conv behind a View')
  local x = T.zeros(3, 64):normal_(1, 0, 1)
  local r = T.zeros(3, 3):normal_(2, 0, 1)
  net:zero_grad()
  net:forward(x)
  net:backward(x, r)
  local params, grads = net:parameters()
  fd_check('cnn params', net, x, r, params, grads:clone(), 80, 1e-3)
end)

-- Fused and unfused layers give the same outputs and gradients.
check.case('fusion changes no result', function()
  local function run(fuse)
    local net = nn.Sequential {
      nn.View(1, 10, 10), nn.Conv2d(1, 4, 3, 1, 1), nn.ReLU(), nn.MaxPool2d(), nn.Flatten(),
      nn.Linear(100, 8), nn.ReLU(), nn.Linear(8, 4),
    }
    if not fuse then net.fuse = function() end end
    net:build(8)
    local x = T.zeros(5, 100):normal_(3, 0, 1)
    net:zero_grad()
    local out = net:forward(x):clone()
    net:backward(x, T.zeros(5, 4):normal_(4, 0, 1))
    return out, net.grads:clone()
  end
  local o1, g1 = run(true)
  local o2, g2 = run(false)
  check.ok((o1 - o2):max() < 1e-5 and (o2 - o1):max() < 1e-5, 'same outputs')
  check.ok((g1 - g2):max() < 1e-5 and (g2 - g1):max() < 1e-5, 'same gradients')
end)

-- Evaluation at another batch size reuses the buffers' storage.
check.case('a smaller batch reuses the buffers', function()
  local net = nn.Sequential { nn.Linear(4, 3), nn.ReLU(), nn.Linear(3, 2) }:build(1)
  local big = net:forward(T.zeros(8, 4):normal_(1, 0, 1))
  local cap = net.layers[3].output
  local small = net:forward(T.zeros(3, 4):normal_(1, 0, 1))
  check.eq(small:size(1), 3, 'the output has the small batch')
  small:set(1, 1, 123)
  check.eq(cap:get(1, 1), 123, 'and shares the big buffer')
  check.eq(#big, 8, 'the big view is intact')
end)

check.case('SoftmaxCrossEntropy gradient', function()
  local crit = nn.SoftmaxCrossEntropy()
  local logits = T.zeros(5, 4):normal_(3, 0, 1)
  local labels = T.from { 0, 3, 1, 2, 3 }
  crit:forward(logits, labels)
  local d = crit:backward():clone()
  local worst = 0
  for i = 1, 5 do
    for j = 1, 4 do
      local old = logits:get(i, j)
      logits:set(i, j, old + 1e-2)
      local lp = crit:forward(logits, labels)
      logits:set(i, j, old - 1e-2)
      local lm = crit:forward(logits, labels)
      logits:set(i, j, old)
      worst = math.max(worst, math.abs((lp - lm) / 2e-2 - d:get(i, j)))
    end
  end
  check.ok(worst < 1e-3, 'cross-entropy gradient off by ' .. worst)
end)

check.case('whole MLP gradient through Sequential', function()
  local net = nn.Sequential { nn.Linear(6, 5), nn.ReLU(), nn.Linear(5, 3) }:build(5)
  local x = T.zeros(4, 6):normal_(1, 0, 1)
  local r = T.zeros(4, 3):normal_(2, 0, 1)
  net:zero_grad()
  net:forward(x)
  net:backward(x, r)
  local params, grads = net:parameters()
  fd_check('mlp params', net, x, r, params, grads:clone(), 40)
end)

check.case('flat buffers: layer tensors are views', function()
  local net = nn.Sequential { nn.Linear(784, 100), nn.ReLU(), nn.Linear(100, 10) }:build(1)
  local params, grads, layout = net:parameters()
  check.eq(params:numel(), 784 * 100 + 100 + 100 * 10 + 10, 'parameter count')
  check.eq(grads:numel(), params:numel(), 'gradient buffer size')
  check.eq(#layout, 4, 'layout entries')
  check.eq(layout[1].name, '0.weight', 'first name')
  check.eq(layout[4].name, '2.bias', 'last name')
  check.eq(layout[3].offset, 78500, 'offset of 2.weight')
  -- writing through the flat buffer shows in the layer's view, and back
  params[78501] = 42
  check.eq(net.layers[3].weight:get(1, 1), 42, 'flat -> view')
  net.layers[1].bias[3] = -7
  check.eq(params[78400 + 3], -7, 'view -> flat')
  grads:fill(1)
  net:zero_grad()
  check.eq(grads:sum(), 0, 'zero_grad clears the flat gradients')
end)

check.case('initialisation is seeded', function()
  local a = nn.Sequential { nn.Linear(10, 4) }:build(9)
  local b = nn.Sequential { nn.Linear(10, 4) }:build(9)
  local c = nn.Sequential { nn.Linear(10, 4) }:build(10)
  check.eq(T.checksum(a.params), T.checksum(b.params), 'same seed, same parameters')
  check.ok(T.checksum(a.params) ~= T.checksum(c.params), 'another seed, other parameters')
  local bound = 1 / math.sqrt(10)
  check.ok(a.params:max() <= bound and a.params:max() > -bound, 'weights within PyTorch init bound')
end)

check.case('layout checksum names the model', function()
  local a = nn.Sequential { nn.Linear(784, 100), nn.ReLU(), nn.Linear(100, 10) }:build(1)
  local b = nn.Sequential { nn.Linear(784, 100), nn.ReLU(), nn.Linear(100, 10) }:build(2)
  local c = nn.Sequential { nn.Linear(784, 128), nn.ReLU(), nn.Linear(128, 10) }:build(1)
  check.eq(a:checksum(), b:checksum(), 'the seed does not change the layout')
  check.ok(a:checksum() ~= c:checksum(), 'another hidden size changes the checksum')
  check.eq(#a:checksum(), 16, 'checksum is 16 hex digits')
end)

check.case('load copies named tensors and refuses mismatches', function()
  local a = nn.Sequential { nn.Linear(3, 2) }:build(1)
  local b = nn.Sequential { nn.Linear(3, 2) }:build(2)
  check.ok(b:load { ['0.weight'] = a.layers[1].weight, ['0.bias'] = a.layers[1].bias }, 'load works')
  check.eq(T.checksum(a.params), T.checksum(b.params), 'parameters equal after load')
  check.raises(function() b:load { ['0.weight'] = a.layers[1].weight } end,
               "load: the file has no tensor '0.bias' (2)")
  check.raises(function() b:load { ['0.weight'] = T.zeros(6), ['0.bias'] = T.zeros(2) } end,
               "load: tensor '0.weight' is 6 (6 elements), the model's is 2x3 (6)")
  check.raises(function() b:load { params = T.zeros(8) } end,
               "load: the file has tensor params, which this model does not (a ps shard's checkpoint?")
  -- a refused load changes nothing
  local before = T.checksum(b.params)
  pcall(b.load, b, { ['0.weight'] = T.ones(2, 3), ['0.bias'] = T.ones(3) })
  check.eq(T.checksum(b.params), before, 'nothing copied from a mismatched file')
end)

local function ints(t)
  local out = {}
  for i, v in ipairs(t:totable()) do out[i] = math.tointeger(v) end
  return table.concat(out, ',')
end

check.case('classes are 0-based like the labels', function()
  check.eq(ints(nn.classes(T.from { { 0.1, 0.9, 0.0 }, { 2, 1, 0 }, { 0, 0, 5 } })), '1,0,2', 'argmax - 1')
  local net = nn.Sequential { nn.Linear(2, 3) }:build(1)
  net:load { ['0.weight'] = T.from { { 1, 0 }, { 0, 1 }, { -1, -1 } }, ['0.bias'] = T.zeros(3) }
  check.eq(ints(net:predict(T.from { { 5, 1 }, { 1, 5 }, { -3, -3 } })), '0,1,2', 'predict')
end)

check.case('Sequential rejects a non-module', function()
  check.raises(function() nn.Sequential { nn.Linear(2, 2), 42 } end, 'layer 2 is not a module')
end)

check.done()
