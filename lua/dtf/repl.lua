-- dtf.repl: what the interactive prompt starts with. Every dtf module is a
-- global (tensor/T, nn, optim, data, ps, ckpt, util, json, log), and help()
-- (dtf.help) tells what they hold; the REPL prints what a statement returns
-- through show() below (dtf.pretty). With --ps the global `cluster` reaches
-- a running training:
--   cluster.step()          the global step (ps 0)
--   cluster.stats()         each ps's counters
--   cluster.pull()          the current parameters, in a local copy of the model
--   cluster.evaluate([n])   test accuracy of the current parameters
local cli = require 'dtf.cli'

local names = { tensor = 'dtf.tensor', nn = 'dtf.nn', optim = 'dtf.optim', data = 'dtf.data',
                ps = 'dtf.ps', ckpt = 'dtf.ckpt', util = 'dtf.util', json = 'dtf.json', log = 'dtf.log' }
for global, mod in pairs(names) do
  local ok, m = pcall(require, mod)
  if ok then _G[global] = m end
end
_G.T = _G.tensor
_G.dtf = require 'dtf'
_G.help = require('dtf.help').help

local repl = {}

-- What the prompt prints for `expr` and `=expr` (src/repl.c calls it with
-- the statement's values): each value readably, tab-separated; a string as
-- itself, as Lua's own REPL does.
function repl.show(...)
  local pretty = require 'dtf.pretty'
  local name_of = require('dtf.help').namer()
  local parts = {}
  for i = 1, select('#', ...) do
    local v = select(i, ...)
    parts[i] = type(v) == 'string' and v or pretty.format(v, { name_of = name_of })
  end
  io.write(table.concat(parts, '\t'), '\n')
end

if cli.ps then
  -- The training's own hyperparameters (lua/dtf/schema.lua and the model
  -- file's, with their defaults), from --config (the file the pods mount;
  -- keys the REPL does not need are skipped) and --set.
  local hparams = require 'dtf.hparams'
  local model = require 'dtf.model'
  local schema = require('dtf.schema').training('.')
  local m = model.load(hparams.peek(schema, cli, 'modelfile'))
  schema = model.schema(schema, m)
  local hp = hparams.parse(schema, cli, { ignore_unknown = true })
  local c = {}
  local net, client
  -- Connects lazily, as a "repl" peer that never pushes.
  local function connect()
    if client then return client end
    net = model.build(m, hp, schema, hp.seed)
    local addrs = {}
    for a in cli.ps:gmatch('[^,]+') do addrs[#addrs + 1] = a end
    local tok = require('dtf.cluster').token(cli)
    local err
    client, err = _G.ps.connect { addrs = addrs, role = 'repl', index = 0, P = net.nparams,
                                  layout_checksum = net:checksum(), token = tok, connect_timeout = 10,
                                  wire_dtype = hp.wire_dtype }
    -- an unreachable ps, a wrong token or another model: one line, no traceback
    if not client then
      _G.dtf.fail('%s (attach with the training\'s own --config FILE and --set flags)', err)
    end
    return client
  end
  function c.step() return connect():global_step() end
  function c.stats() return connect():stats() end
  function c.pull()
    local cl = connect()
    assert(cl:pull(net.params))
    return net
  end
  function c.evaluate(n)
    c.pull()
    local ds = assert(_G.data.mnist(hp.datadir, 'test'))
    local acc, seen = _G.nn.evaluate(net, ds, n or 1000)
    return acc, seen
  end
  _G.cluster = c
end

return repl
