-- nn.Sequential: an error inside a layer names its index and type (error
-- objects that are not strings pass untouched); a network prints each
-- layer with its index, type and parameter shapes, and the total.
local check = require 'check'
local T = require 'dtf.tensor'
local nn = require 'dtf.nn'
local dtf = require 'dtf'

local function mlp(hidden_in)
  return nn.Sequential { nn.Linear(784, 128), nn.ReLU(), nn.Linear(hidden_in, 10) }:build(1)
end

local function err_of(f, ...)
  local ok, err = pcall(f, ...)
  check.ok(not ok, 'an error is raised')
  return err
end

check.case('a shape error in forward names the layer', function()
  local net = mlp(256)
  local err = err_of(net.forward, net, T.zeros(64, 784))
  check.eq(err, 'layer 3 (nn.Linear(256 -> 10)): linear: input (64x128) and weight (10x256, out x in) do not match',
           'the message names the index, the type and both shapes')
end)

check.case('a shape error in backward names the layer', function()
  local net = nn.Sequential { nn.Linear(4, 3), nn.ReLU(), nn.Linear(3, 2) }:build(1)
  net:forward(T.zeros(5, 4))
  local err = err_of(net.backward, net, T.zeros(5, 4), T.zeros(5, 7))
  check.ok(type(err) == 'string' and err:find('^layer 3 %(nn%.Linear%(3 %-> 2%)%): ') ~= nil,
           'backward names layer 3: ' .. tostring(err))
  check.ok(not err:find('nn.lua:', 1, true), 'without the position inside nn.lua: ' .. err)
end)

check.case('a custom layer keeps its own position', function()
  local custom = { name = 'my.Double', param_specs = function() return {} end,
                   forward = function(_, x) error('double: needs a 2-d input') end,
                   backward = function(_, _, dy) return dy end }
  local net = nn.Sequential { nn.ReLU(), custom }:build(1)
  local err = err_of(net.forward, net, T.zeros(2, 2))
  check.ok(err:find('^layer 2 %(my%.Double%): .*test_sequential%.lua:%d+: double: needs a 2%-d input$') ~= nil,
           'a layer named by its name field, its error position kept: ' .. err)
  local anon = { forward = function() error({ code = 7 }) end, backward = function() end }
  local net2 = nn.Sequential { anon }
  local obj = err_of(net2.forward, net2, T.zeros(1))
  check.ok(type(obj) == 'table' and obj.code == 7, 'a table error object passes untouched')
end)

check.case('dtf.fail and dtf.usage_error inside a layer pass untouched', function()
  local failing = { forward = function() dtf.fail('no data in %s', '/x') end, backward = function() end }
  local net = nn.Sequential { nn.ReLU(), failing }
  local e = err_of(net.forward, net, T.zeros(2))
  check.ok(type(e) == 'table' and e.exit == 1 and e.msg == 'no data in /x', 'dtf.fail keeps its table')
  local usage = { forward = function() dtf.usage_error('bad') end, backward = function() end }
  local u = err_of(nn.Sequential { usage }.forward, nn.Sequential { usage }, T.zeros(2))
  check.ok(type(u) == 'table' and u.exit == 2 and u.msg == 'bad', 'dtf.usage_error keeps its table')
end)

check.case('a nested Sequential names both levels on one line', function()
  local inner = nn.Sequential { nn.ReLU(), nn.View(5, 5) }
  local net = nn.Sequential { nn.ReLU(), inner }:build(1)
  local err = err_of(net.forward, net, T.zeros(2, 3))
  check.ok(err:find('^layer 2 %(nn%.Sequential%): layer 2 %(nn%.View%(5, 5%)%): ') ~= nil,
           'the outer and the inner layer: ' .. err)
end)

check.case('forward and backward still compute', function()
  local net = nn.Sequential { nn.Linear(3, 2) }:build(4)
  local x = T.from({ { 1, 2, 3 } })
  local y = net:forward(x)
  local w, b = net.layers[1].weight, net.layers[1].bias
  local want = w:get(1, 1) * 1 + w:get(1, 2) * 2 + w:get(1, 3) * 3 + b[1]
  check.near(y:get(1, 1), want, 1e-5, 'the output through the pcall')
  net:zero_grad()
  net:backward(x, T.from({ { 1, 0 } }))
  check.near(net.layers[1].gweight:get(1, 3), 3, 1e-6, 'the gradient through the pcall')
end)

check.case('a network prints its layers with shapes', function()
  local net = nn.Sequential { nn.Linear(784, 100), nn.ReLU(), nn.Linear(100, 10) }
  local s = tostring(net)
  check.eq(s, table.concat({
    'nn.Sequential {',
    '  [1] nn.Linear(784 -> 100)  weight 100x784, bias 100',
    '  [2] nn.ReLU',
    '  [3] nn.Linear(100 -> 10)   weight 10x100, bias 10',
    '} 79510 parameters (not built: net:build(seed))' }, '\n'), 'before build')
  net:build(1)
  check.ok(tostring(net):find('\n} ' .. net.nparams .. ' parameters$') ~= nil, 'after build: the total, ' .. tostring(net))
  check.eq(tostring(nn.Sequential {}), 'nn.Sequential {\n} 0 parameters (not built: net:build(seed))', 'an empty one')
  check.eq(tostring(nn.Conv2d(1, 32, 5, 1, 2)), 'nn.Conv2d(1 -> 32, 5x5, stride 1, pad 2)', 'a Conv2d')
  check.eq(tostring(nn.SoftmaxCrossEntropy()), 'nn.SoftmaxCrossEntropy', 'the criterion')
  check.eq(tostring(nn.View(1, 28, 28)), 'nn.View(1, 28, 28)', 'a View')
end)

check.done()
