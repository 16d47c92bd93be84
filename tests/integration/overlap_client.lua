-- overlap_client.lua: exchange_start / exchange_finish against ps_only.lua
-- (overlap.sh).   dtf run tests/integration/overlap_client.lua -- PORT P
-- ps_only.lua starts the parameters as 0, 1, ..., P - 1 (sgd, lr 0.1). Two
-- rounds of a gradient of 1 everywhere: the first round's pull went ahead
-- of its push, so it carries the parameters untouched; the second's carries
-- the first push applied (i - 0.1) and not its own; a plain pull after it
-- sees both (i - 0.2). Misuse: a finish with nothing in flight, and any
-- other call while a round is in flight, answer nil and a message. One
-- "ok"/"not ok" line each.
local T = require 'dtf.tensor'
local ps = require 'dtf.ps'

local port, P = tonumber(arg[1]), math.tointeger(tonumber(arg[2]))
local c = assert(ps.connect { addrs = { '127.0.0.1:' .. port }, role = 'worker', index = 0, P = P,
                              layout_checksum = '00000000c0ffee00', connect_timeout = 10 })
local failed = 0
local function report(ok, what)
  if not ok then failed = failed + 1 end
  print((ok and 'ok ' or 'not ok ') .. what)
end
local function off_by(t, d) -- nil when t[i] == i - 1 - d everywhere (float32 rounding)
  for i = 1, P do
    local want = i - 1 - d
    if math.abs(t[i] - want) > 1e-5 * math.abs(want) + 1e-6 then
      return string.format('[%d] = %.9g, want %.9g', i, t[i], want)
    end
  end
end

local incoming, grads, params = T.zeros(P), T.zeros(P), T.zeros(P)
local g, err = c:exchange_finish()
report(g == nil and tostring(err):find('no exchange in flight', 1, true),
       'exchange_finish with nothing in flight: ' .. tostring(err))

grads:fill(1)
assert(c:exchange_start(grads, incoming, 0))
grads:fill(1000) -- the worker's own buffer is rewritten: the copy was pushed
local pg, perr = c:pull(params)
report(pg == nil and tostring(perr):find('exchange is in flight', 1, true),
       'a pull while a round is in flight is refused: ' .. tostring(perr))
c:progress()
local s1 = assert(c:exchange_finish())
local bad = off_by(incoming, 0)
report(not bad, 'round 1: the pull went ahead of its push (parameters untouched)' .. (bad and ': ' .. bad or ''))

grads:fill(1)
assert(c:exchange_start(grads, incoming, s1))
local s2 = assert(c:exchange_finish())
bad = off_by(incoming, 0.1)
report(not bad, 'round 2: the pull carries round 1\'s push, not its own' .. (bad and ': ' .. bad or ''))
report(s2 >= s1, string.format('the global step goes on (%d then %d)', s1, s2))
assert(c:pull(params))
bad = off_by(params, 0.2)
report(not bad, 'a pull after round 2 sees both pushes' .. (bad and ': ' .. bad or ''))
c:done()
c:close()
os.exit(failed == 0 and 0 or 1)
