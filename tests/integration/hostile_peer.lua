-- hostile_peer.lua: the well-behaved client of hostile_peer.sh.
--   dtf run tests/integration/hostile_peer.lua -- PORT TOKEN P CHECKSUM
-- Pulls (the ps starts with params 0, 1, ..., P-1), pushes ones three times
-- with SGD lr 0.1, checks the values, says done. Exits non-zero on failure.
local T = require 'dtf.tensor'
local ps = require 'dtf.ps'
local log = require 'dtf.log'

local port, token, P, checksum = arg[1], arg[2], tonumber(arg[3]), arg[4]
local c, err = ps.connect { addrs = { '127.0.0.1:' .. port }, role = 'worker', index = 0, P = P,
                            layout_checksum = checksum, token = token, connect_timeout = 10,
                            timeout = 10, log = log.sink }
if not c then error('connect: ' .. err, 0) end
local params, grads = T.zeros(P), T.ones(P)
local step = assert(c:pull(params))
assert(step == 0, 'step ' .. step)
for i = 1, P do assert(params[i] == i - 1, 'params[' .. i .. '] = ' .. params[i]) end
for _ = 1, 3 do step = assert(c:push_pull(grads, params, step)) end
assert(step == 3, 'step ' .. step)
for i = 1, P do
  -- three float32 subtractions of 0.1: a few ulps at i - 1
  assert(math.abs(params[i] - (i - 1 - 0.3)) < 1e-3 + 4e-7 * i, 'params[' .. i .. '] = ' .. params[i])
end
local st = assert(c:stats())[1]
print(string.format('client: stats: step %d, bad_peers %d, connections %d', st.step, st.bad_peers,
                    st.connections))
assert(c:done())
c:close()
print('client: ok')
