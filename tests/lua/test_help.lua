-- dtf.help: every function of dtf's modules and classes has its signature
-- and doc, every doc names a function that exists; help() and help(x)
-- print what they promise.
local check = require 'check'
local help = require 'dtf.help'
local T = require 'dtf.tensor'
local nn = require 'dtf.nn'
require 'dtf.optim'
require 'dtf.data'
require 'dtf.ps'
require 'dtf.ckpt'
require 'dtf.util'
require 'dtf.json'
require 'dtf.log'

-- Runs help(...) and returns what it wrote.
local function help_text(...)
  local buf = {}
  help.stream = { write = function(_, ...) for i = 1, select('#', ...) do buf[#buf + 1] = select(i, ...) end end }
  local ok, err = pcall(help.help, ...)
  help.stream = nil
  if not ok then error(err, 0) end
  return table.concat(buf)
end

local function has(text, s, what)
  check.ok(text:find(s, 1, true) ~= nil, string.format("%s: no '%s' in:\n%s", what, s, text))
end

check.case('every function is documented, every doc exists', function()
  local seen = {}
  local function want(prefix, tbl, sep)
    for k, v in pairs(tbl) do
      if type(k) == 'string' and type(v) == 'function' then
        local name = prefix .. sep .. k
        seen[name] = true
        check.ok(help.docs[name] ~= nil, 'no doc for ' .. name)
      end
    end
  end
  for _, m in ipairs(help.modules) do
    if m[2] then want(m[3], require(m[2]), '.') end
  end
  for _, c in ipairs(help.classes) do
    local methods = help.methods_of(c)
    check.ok(methods ~= nil, 'the methods of ' .. c[1] .. ' are found')
    if c[1] == 'Sequential' then
      -- the public methods; the class's own (init, new, __tostring) are not
      for name in pairs(help.docs) do
        local method = name:match('^Sequential:(.*)$')
        if method then seen[name] = true; check.ok(type(methods[method]) == 'function', name .. ' exists') end
      end
    elseif methods then
      want(c[1], methods, ':')
    end
  end
  for name in pairs(help.docs) do
    local generic = name:match('^Layer:') or name:match('^cluster%.') or name == 'help'
    local class = name:match('^nn%.(%u%w*)$')
    if class then check.ok(type(nn[class]) == 'table', name .. ' is a class of dtf.nn')
    elseif not generic then check.ok(seen[name], 'the doc ' .. name .. ' names a function that exists') end
    check.ok(#help.docs[name] == 2 and #help.docs[name][1] > 0 and #help.docs[name][2] > 0, name .. ' has a signature and a doc')
  end
end)

check.case('help() lists the modules and their functions', function()
  local text = help_text()
  for _, m in ipairs({ 'T, tensor', 'nn', 'optim', 'data', 'ps', 'ckpt', 'util', 'json', 'log' }) do
    check.ok(text:find('\n  ' .. m .. ' ', 1, true) ~= nil, 'help() has a line for ' .. m)
  end
  has(text, 'zeros', 'the tensor functions')
  has(text, 'Linear', 'the layers')
  has(text, 'help(T.Tensor)', 'where the methods are')
  for line in text:gmatch('[^\n]+') do check.ok(#line <= 100, 'a line of at most 100 columns: ' .. line) end
end)

check.case('help(x)', function()
  local z = help_text(T.zeros)
  has(z, 'T.zeros(d1, d2, ... | {shape}) -> tensor', 'help(T.zeros) gives the signature')
  has(z, 'zeros', 'and what it does')
  has(help_text(T.Tensor.view), 't:view(d1, d2, ...) -> view', 'a method')
  has(help_text(nn.Linear), 'nn.Linear(in, out)', 'a layer class')
  local l = help_text(nn.Linear(784, 100))
  has(l, 'nn.Linear(784 -> 100)', "a layer's type")
  has(l, 'weight 100x784, bias 100 (78500)', "a layer's parameter shapes")
  local net = nn.Sequential { nn.Linear(784, 100), nn.ReLU(), nn.Linear(100, 10) }:build(1)
  local n = help_text(net)
  has(n, '[3] nn.Linear(100 -> 10)', "a network's layers")
  has(n, '2.weight', "a network's layout")
  has(n, 'net:build(seed) -> net', "a network's methods")
  local m = help_text(nn)
  has(m, 'nn.evaluate(net, dataset [, batchsize | {budget = bytes}]) -> accuracy, count', "a module's functions")
  local t = help_text(T.zeros(2, 3):t())
  has(t, '[dtf.Tensor 3x2]', "a tensor's shape")
  has(t, 'not contiguous', 'and layout')
  has(t, 't:numel() -> n', 'and methods')
  has(help_text('numel'), 't:numel()', 'help by name')
  has(help_text('nosuchthing'), "no help for 'nosuchthing'", 'an unknown name')
  has(help_text(nil), 'nil', 'help(nil)')
  has(help_text(function(alpha, beta, ...) end), 'function(alpha, beta, ...), defined at', "a Lua function's parameters")
  has(help_text({ 1, 2 }), '{1, 2}', 'another value prints')
end)

check.done()
