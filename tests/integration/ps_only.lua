-- ps_only.lua: serves one ps shard directly, without the training loop, for
-- the ps tests (hostile_peer.sh).
--   dtf run tests/integration/ps_only.lua -- PORT [KEY=VALUE ...]
-- keys: P (parameters, default 1000), workers (1), nps (1), index (0),
--       sync (false), token, checksum (hex), lr (0.1), optimizer (sgd),
--       hello_timeout, idle_timeout, sync_timeout, max_frame, replicas,
--       checkpoint_dir, checkpoint_steps, checkpoint_secs, keepalive, max_connections,
--       wire_dtype
-- The parameters start as 0, 1, 2, ... (P - 1) so a client can check what
-- it pulls. Prints the stats as "stat KEY=VALUE" lines at the end.
local T = require 'dtf.tensor'
local ps = require 'dtf.ps'
local log = require 'dtf.log'

local port = assert(tonumber(arg[1]), 'usage: ps_only.lua PORT [KEY=VALUE ...]')
local o = {}
for i = 2, #arg do
  local k, v = arg[i]:match('^([%w_]+)=(.*)$')
  assert(k, 'bad argument ' .. arg[i])
  o[k] = v
end

local P = tonumber(o.P or 1000)
local params = T.zeros(P)
for i = 1, P do params[i] = i - 1 end

local stats, err = ps.serve {
  port = port, host = '127.0.0.1', index = tonumber(o.index or 0), nps = tonumber(o.nps or 1),
  params = params, workers = tonumber(o.workers or 1), sync = o.sync == 'true',
  optimizer = { kind = o.optimizer or 'sgd', lr = tonumber(o.lr or 0.1) },
  layout_checksum = o.checksum or '00000000c0ffee00', token = o.token,
  hello_timeout = tonumber(o.hello_timeout or 10), idle_timeout = tonumber(o.idle_timeout or 0),
  sync_timeout = tonumber(o.sync_timeout or 0), max_frame = tonumber(o.max_frame),
  replicas_to_aggregate = tonumber(o.replicas), checkpoint_dir = o.checkpoint_dir,
  checkpoint_steps = tonumber(o.checkpoint_steps), checkpoint_secs = tonumber(o.checkpoint_secs),
  keepalive = tonumber(o.keepalive), max_connections = tonumber(o.max_connections), log = log.sink,
  wire_dtype = o.wire_dtype,
}
if not stats then
  io.stderr:write('ps_only: ', err, '\n')
  os.exit(1)
end
local keys = {}
for k in pairs(stats) do if k ~= 'worker' then keys[#keys + 1] = k end end
table.sort(keys)
for _, k in ipairs(keys) do print(string.format('stat %s=%s', k, tostring(stats[k]))) end
for _, w in ipairs(stats.worker) do
  print(string.format('stat worker%d step=%s pushes=%s done=%s', w.index, w.step, w.pushes, w.done))
end
