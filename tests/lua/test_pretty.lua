-- dtf.pretty: tables nested, sorted and truncated, cycles marked, layers and
-- tensors by what they are; dtf.help's names for functions and modules.
local check = require 'check'
local pretty = require 'dtf.pretty'
local T = require 'dtf.tensor'
local nn = require 'dtf.nn'

local fmt = pretty.format

check.case('scalars', function()
  check.eq(fmt(42), '42', 'an integer')
  check.eq(fmt(1.5), '1.5', 'a float')
  check.eq(fmt(true), 'true', 'a boolean')
  check.eq(fmt(nil), 'nil', 'nil')
  check.eq(fmt('a\nb"c\\'), '"a\\nb\\"c\\\\"', 'a string is quoted and escaped')
  check.eq(fmt('\1x'), '"\\001x"', 'a control character as a decimal escape')
end)

check.case('arrays and keys', function()
  check.eq(fmt({}), '{}', 'an empty table')
  check.eq(fmt({ 1, 2, 3 }), '{1, 2, 3}', 'an array prints as an array')
  check.eq(fmt({ b = 2, a = 1, [3] = 'x', [1.5] = true, [false] = 0 }),
           '{[1.5] = true, [3] = "x", a = 1, b = 2, [false] = 0}',
           'keys sorted: numbers, strings, booleans')
  check.eq(fmt({ 'x', 'y', n = 2 }), '{"x", "y", n = 2}', 'the array part first, then the keys')
  check.eq(fmt({ ['a b'] = 1, ['end'] = 2, _ok = 3 }), '{_ok = 3, ["a b"] = 1, ["end"] = 2}',
           'non-identifier and keyword keys are bracketed')
  check.eq(fmt({ key10 = 1, key2 = 2, key1 = 3 }), '{key1 = 3, key2 = 2, key10 = 1}',
           'strings in natural order')
  check.eq(fmt({ 1, nil, 3 }), '{1, [3] = 3}', 'a hole ends the array part')
end)

check.case('nesting and depth', function()
  check.eq(fmt({ a = { b = { 1, 2 } } }), '{a = {b = {1, 2}}}', 'nested tables on one line when they fit')
  local deep = { l1 = { l2 = { l3 = { l4 = { l5 = 1 } } } } }
  check.eq(fmt(deep), '{l1 = {l2 = {l3 = {l4 = {...1 entry}}}}}', 'past the depth limit, only a count')
  check.eq(fmt(deep, { depth = 2 }), '{l1 = {l2 = {...1 entry}}}', 'opts.depth')
  check.eq(fmt({ { {}, { x = 1, y = 2 } } }, { depth = 2 }), '{{{}, {...2 entries}}}',
           'an empty table shows as {} at any depth')
end)

check.case('width limits', function()
  local big = {}
  for i = 1, 100 do big[i] = i end
  local s = fmt(big)
  check.ok(s:find('20,') ~= nil and s:find('21') == nil, 'the first 20 items only: ' .. s)
  check.ok(s:find('... 80 more', 1, true) ~= nil, 'the rest counted: ' .. s)
  check.ok(fmt(big, { items = 5 }):find('... 95 more', 1, true) ~= nil, 'opts.items')
  for line in s:gmatch('[^\n]+') do check.ok(#line <= 80, 'a line of at most 80 columns: ' .. line) end
  check.ok(s:find('\n  1, 2, 3, 4', 1, true) ~= nil, 'numbers are packed on lines: ' .. s)
  local long = {}
  for i = 1, 8 do long['field' .. i] = string.rep('v', 10) end
  local l = fmt(long)
  check.ok(l:find('^{\n  field1 = "vvvvvvvvvv",\n  field2 = ') ~= nil, 'a long table has one entry a line: ' .. l)
  check.ok(l:find('\n}$') ~= nil, 'and its brace on a line of its own')
  local nested = fmt({ outer = long })
  check.ok(nested:find('\n  outer = {\n    field1 = ', 1, true) ~= nil, 'nested entries are indented: ' .. nested)
  check.ok(nested:find('\n  }\n}$') ~= nil, 'the nested brace at its own indentation')
  local grid = {}
  for i = 1, 30 do grid[i] = {}; for j = 1, 30 do grid[i][j] = j end end
  local g = fmt(grid, { items = 1000, total = 100 })
  local numbers = 0
  for _ in g:gmatch('%d+,') do numbers = numbers + 1 end
  check.ok(numbers <= 100, 'at most opts.total entries in all: ' .. numbers)
  check.ok(g:find('\n  %.%.%. %d+ more\n}$') ~= nil, 'the outer table counts what the budget left out: ' .. g:sub(-200))
  local str = fmt({ s = string.rep('x', 300) })
  check.ok(str:find('(300 bytes)', 1, true) ~= nil and #str < 200, 'a long string in a table is cut: ' .. str)
  check.eq(fmt({ s = 'abcdef' }, { strlen = 3 }), '{s = "abc..." (6 bytes)}', 'opts.strlen')
end)

check.case('cycles', function()
  local t = { name = 'root' }
  t.self = t
  check.eq(fmt(t), '{name = "root", self = <cycle: top>}', 'a table inside itself is marked')
  local a = { b = {} }
  a.b.back = a.b
  a.b.list = { a }
  check.eq(fmt(a), '{b = {back = <cycle: top.b>, list = {<cycle: top>}}}', 'the mark names the path')
  local shared = { 1 }
  check.eq(fmt({ shared, shared }), '{{1}, {1}}', 'a table seen twice, not inside itself, prints twice')
end)

check.case('layers, tensors, functions', function()
  check.eq(fmt(nn.Linear(784, 100)), 'nn.Linear(784 -> 100)', 'a Linear layer')
  check.eq(fmt(nn.ReLU()), 'nn.ReLU', 'a ReLU, not its address')
  check.eq(fmt(nn.MaxPool2d()), 'nn.MaxPool2d', 'a layer without a __tostring of its own')
  check.eq(fmt({ l = nn.ReLU() }), '{l = nn.ReLU}', 'a layer inside a table')
  check.eq(fmt({ x = T.zeros(3, 4) }), '{x = [dtf.Tensor 3x4]}', 'a tensor inside a table shows its shape')
  check.eq(fmt(T.zeros(2)), tostring(T.zeros(2)), 'a tensor at the top prints its values')
  local net = nn.Sequential { nn.Linear(4, 3), nn.ReLU() }
  local s = fmt({ net = net })
  check.ok(s:find('net = nn.Sequential {\n    [1] nn.Linear(4 -> 3)', 1, true) ~= nil,
           'a Sequential inside a table keeps its lines, indented: ' .. s)
  check.ok(fmt(print) == 'builtin function', 'a C function without a name')
  local f = function() end
  check.ok(fmt(f):match('^function <.*test_pretty%.lua:%d+>$') ~= nil, 'a Lua function by where it is: ' .. fmt(f))
  check.eq(fmt({ f = T.zeros }, { name_of = function(v) return v == T.zeros and 'T.zeros' or nil end }),
           '{f = function T.zeros}', 'opts.name_of names a function')
  local bad = setmetatable({}, { __tostring = function() error('broken') end })
  check.ok(fmt(bad):find('__tostring failed', 1, true) ~= nil, 'a __tostring that raises: ' .. fmt(bad))
  local odd = setmetatable({ a = 1 }, { __pairs = function() error('no pairs') end })
  check.eq(fmt(odd), '{a = 1}', 'a __pairs that raises: the raw entries')
end)

check.case('names from dtf.help', function()
  local help = require 'dtf.help'
  local name_of = help.namer()
  check.eq(fmt(T.zeros, { name_of = name_of }), 'function T.zeros', 'a tensor function by its name')
  check.eq(fmt(T.Tensor.view, { name_of = name_of }), 'function Tensor:view', 'a tensor method by its name')
  check.eq(fmt({ m = nn }, { name_of = name_of }), '{m = <module dtf.nn>}', 'a module inside a table')
  check.eq(fmt({ c = nn.Linear }, { name_of = name_of }), '{c = <class nn.Linear>}', 'a layer class inside a table')
  check.eq(fmt(string.format, { name_of = name_of }), 'function string.format', 'a standard function')
  check.ok(fmt(nn, { name_of = name_of }):find('^module dtf.nn {') ~= nil, 'a module at the top, with its entries')
end)

check.done()
