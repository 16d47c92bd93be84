-- dtf.model: a model file, the Lua script a user edits (models/mnist.lua).
--
-- A model file returns either a table
--   { hyperparams = { {name=, type=, default=, help=, ...}, ... },
--     build = function(hp) return nn.Sequential {...} end }
-- whose hyperparameters join the training script's schema (help, types,
-- defaults, refusal of unknown keys), or, as before, a plain function(hp).
-- Either way `hp` is read-only to the model and reading a key that is no
-- hyperparameter raises, naming it: a misspelt hp.hiden must not quietly
-- take a default.
local nn = require 'dtf.nn'
local util = require 'dtf.util'
local dtf = require 'dtf'

local model = {}

local function read_all(path)
  local f, err = io.open(path, 'rb')
  if not f then return nil, err end
  local s = f:read('a')
  f:close()
  return s
end

-- A hash of the model file's text, recorded beside saved models.
function model.hash(source) return util.fnv1a(source) end

local function check_entry(path, i, e)
  if type(e) ~= 'table' or type(e.name) ~= 'string' or e.name == '' then
    dtf.fail('model file %s: hyperparams[%d] must be a table with a name', path, i)
  end
  local types = { int = true, number = true, bool = true, string = true }
  if not types[e.type] then
    dtf.fail("model file %s: hyperparameter '%s' has type '%s' (int, number, bool, string)", path,
             e.name, tostring(e.type))
  end
end

-- Loads a model file from path (or from source, its text, when given).
-- Returns { path=, source=, hash=, hyperparams = {...}, build = fn }; a file
-- that cannot be read or does not return a model fails with its name.
function model.load(path, source)
  local err
  if not source then
    source, err = read_all(path)
    if not source then dtf.fail('model file %s cannot be read: %s (set modelfile=PATH)', path, err) end
  end
  local chunk, perr = load(source, '@' .. path, 't')
  if not chunk then error('model file: ' .. perr, 0) end
  local ret = chunk()
  local m = { path = path, source = source, hash = model.hash(source), hyperparams = {} }
  if type(ret) == 'function' then
    m.build = ret
  elseif type(ret) == 'table' and type(ret.build) == 'function' then
    m.build = ret.build
    m.hyperparams = ret.hyperparams or {}
    if type(m.hyperparams) ~= 'table' then dtf.fail('model file %s: hyperparams must be a list', path) end
    for i, e in ipairs(m.hyperparams) do check_entry(path, i, e) end
  else
    dtf.fail('model file %s must return a function(hp) or a table { build = function(hp), hyperparams = {...} }', path)
  end
  return m
end

-- The training script's schema joined with the model file's hyperparameters.
function model.schema(base, m)
  local out, seen = {}, {}
  for _, e in ipairs(base) do out[#out + 1] = e; seen[e.name] = 'the training script' end
  for _, e in ipairs(m.hyperparams) do
    if seen[e.name] then
      dtf.fail("model file %s declares hyperparameter '%s', which %s already has", m.path, e.name, seen[e.name])
    end
    local c = {}
    for k, v in pairs(e) do c[k] = v end
    c.help = (c.help or '') .. ' [' .. m.path:match('[^/]*$') .. ']'
    out[#out + 1] = c
    seen[e.name] = 'the model file'
  end
  return out
end

-- A read-only view of hp for the model: an unknown key raises.
function model.view(hp, schema, path)
  local known = {}
  for _, e in ipairs(schema) do known[e.name] = true end
  return setmetatable({}, {
    __index = function(_, k)
      if not known[k] then
        local names = {}
        for _, e in ipairs(schema) do names[#names + 1] = e.name end
        error(string.format("model file %s reads hp.%s, which is no hyperparameter (known: %s); "
                            .. 'declare it in the model file\'s hyperparams', path, tostring(k),
                            table.concat(names, ', ')), 2)
      end
      return hp[k]
    end,
    __newindex = function(_, k) error(string.format('model file %s: hp.%s is read-only', path, tostring(k)), 2) end,
    __pairs = function() return next, hp, nil end,
  })
end

-- Builds the network: m.build(hp) must give an nn.Sequential, whose
-- parameters are then allocated and initialised from seed.
function model.build(m, hp, schema, seed)
  local net = m.build(model.view(hp, schema, m.path))
  if type(net) ~= 'table' or getmetatable(net) ~= nn.Sequential then
    dtf.fail('model file %s: build(hp) must return an nn.Sequential, not %s', m.path, type(net))
  end
  return net:build(seed)
end

-- The hyperparameters a saved model records: every one the model's schema
-- has (train.lua's and the model file's), as JSON.
function model.record(hp, schema)
  local t = {}
  for _, e in ipairs(schema) do if hp[e.name] ~= nil then t[e.name] = hp[e.name] end end
  return require('dtf.json').encode(t)
end

return model
