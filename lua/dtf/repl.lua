-- dtf.repl: what the interactive prompt starts with. Every dtf module is a
-- global (tensor/T, nn, optim, data, ps, ckpt, util, json, log); with --ps
-- the global `cluster` reaches a running training:
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

if cli.ps then
  local hparams = require 'dtf.hparams'
  local schema = {
    { name = 'model', type = 'string', default = 'mlp' },
    { name = 'hidden', type = 'int', default = 100 },
    { name = 'modelfile', type = 'string', default = 'models/mnist.lua' },
    { name = 'datadir', type = 'string', default = '/usr/share/datasets/fashion-mnist' },
    { name = 'seed', type = 'int', default = 1 },
    { name = 'wire_dtype', type = 'string', default = 'fp32', choices = { 'fp32', 'bf16' } },
  }
  local hp = hparams.parse(schema, cli)
  local c = {}
  local net, client
  -- Connects lazily, as a "repl" peer that never pushes.
  local function connect()
    if client then return client end
    net = dofile(hp.modelfile)(hp):build(hp.seed)
    local addrs = {}
    for a in cli.ps:gmatch('[^,]+') do addrs[#addrs + 1] = a end
    local tok = require('dtf.cluster').token(cli)
    local err
    client, err = _G.ps.connect { addrs = addrs, role = 'repl', index = 0, P = net.nparams,
                                  layout_checksum = net:checksum(), token = tok, connect_timeout = 10,
                                  wire_dtype = hp.wire_dtype }
    if not client then error(err, 2) end
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
