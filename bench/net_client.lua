-- bench/net_client.lua -- PORT P SECONDS: pulls, then pushes, the whole
-- range of a single ps shard (tests/integration/ps_only.lua) for SECONDS
-- each. Prints "pull MB/s push MB/s pull_rtt_us" (the last: the median time
-- of one pull, meaningful for a small P).
local T = require 'dtf.tensor'
local ps = require 'dtf.ps'
local util = require 'dtf.util'

local port, P, secs = tonumber(arg[1]), math.tointeger(tonumber(arg[2])), tonumber(arg[3])
local c = assert(ps.connect { addrs = { '127.0.0.1:' .. port }, role = 'worker', index = 0, P = P,
                              layout_checksum = '00000000c0ffee00', connect_timeout = 10 })
local params, grads = T.zeros(P), T.zeros(P)

local function rate(fn)
  for _ = 1, 3 do fn() end
  local n, t0, times = 0, util.now(), {}
  repeat
    local t = util.now()
    fn()
    times[#times + 1] = util.now() - t
    n = n + 1
  until util.now() - t0 >= secs
  table.sort(times)
  return n * P * 4 / (util.now() - t0) / 1e6, times[(#times + 1) // 2]
end

local pull_mb, pull_med = rate(function() assert(c:pull(params)) end)
local push_mb = rate(function() assert(c:push(grads, 0)) end)
c:done()
c:close()
print(string.format('%.1f %.1f %.1f', pull_mb, push_mb, pull_med * 1e6))
