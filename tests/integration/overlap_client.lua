-- overlap_client.lua: exchange_start / exchange_finish against ps_only.lua
-- (overlap.sh).   dtf run tests/integration/overlap_client.lua -- PORT P [WIRE_DTYPE LR]
-- (the ps with the same wire_dtype and lr; bf16 with lr=1 and P < 256
-- keeps every value exact)
-- ps_only.lua starts the parameters as 0, 1, ..., P - 1 (sgd, lr 0.1). Two
-- rounds of a gradient of 1 everywhere: the first round's pull went ahead
-- of its push, so it carries the parameters untouched; the second's carries
-- the first push applied (i - 0.1) and not its own; a plain pull after it
-- sees both (i - 0.2). A third round moves while this thread leaves the
-- client alone: with P large enough that the sockets cannot take a round at
-- once (overlap.sh passes 3M floats, 12 MB each way), an observer sees its
-- push applied before exchange_finish, which only the client's exchange
-- thread can have sent. Misuse: a finish with nothing in flight, and any
-- other call while a round is in flight, answer nil and a message. One
-- "ok"/"not ok" line each.
local T = require 'dtf.tensor'
local ps = require 'dtf.ps'
local util = require 'dtf.util'

local port, P = tonumber(arg[1]), math.tointeger(tonumber(arg[2]))
local dtype, lr = arg[3] or 'fp32', tonumber(arg[4] or 0.1)
local function connect(role)
  return assert(ps.connect { addrs = { '127.0.0.1:' .. port }, role = role, index = 0, P = P,
                             layout_checksum = '00000000c0ffee00', connect_timeout = 10,
                             wire_dtype = dtype })
end
local c = connect('worker')
local failed = 0
local function report(ok, what)
  if not ok then failed = failed + 1 end
  print((ok and 'ok ' or 'not ok ') .. what)
end
local function off_by(t, pushes) -- nil when t[i] == i - 1 - pushes * lr everywhere (float32 rounding)
  local d = pushes * lr
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
local s1 = assert(c:exchange_finish())
local bad = off_by(incoming, 0)
report(not bad, 'round 1: the pull went ahead of its push (parameters untouched)' .. (bad and ': ' .. bad or ''))

grads:fill(1)
assert(c:exchange_start(grads, incoming, s1))
local s2 = assert(c:exchange_finish())
bad = off_by(incoming, 1)
report(not bad, 'round 2: the pull carries round 1\'s push, not its own' .. (bad and ': ' .. bad or ''))
report(s2 >= s1, string.format('the global step goes on (%d then %d)', s1, s2))
assert(c:pull(params))
bad = off_by(params, 2)
report(not bad, 'a pull after round 2 sees both pushes' .. (bad and ': ' .. bad or ''))

local obs = connect('observer')
local before = assert(obs:stats())[1].step
assert(c:exchange_start(grads, incoming, s2))
local deadline, seen = util.now() + 20, nil
repeat
  local st = assert(obs:stats())[1]
  if st.step > before then seen = st.step; break end
  util.sleep(0.005)
until util.now() > deadline
report(seen, string.format('round 3\'s push of %d bytes lands while this thread leaves the client alone ' ..
                           '(ps step %d, then %s)', 4 * P, before, tostring(seen)))
assert(c:exchange_finish())
bad = off_by(incoming, 2)
report(not bad, 'round 3: the pull carries rounds 1 and 2' .. (bad and ': ' .. bad or ''))

-- Tags: a worker copies each round's pull into its parameters right after
-- exchange_finish, so the gradient of the round after is one computed
-- before that, on the pull before. Round 5's came from round 3's pull,
-- answered at ps step 2 (ahead of round 3's push): tagged 2, not 3.
for _ = 4, 5 do
  assert(c:exchange_start(grads, incoming, 0))
  assert(c:exchange_finish())
end
local st = assert(obs:stats())[1]
report(st.step == 5 and st.worker[1].step == 2,
       string.format('round 5\'s gradient is tagged with the step of the parameters it came from ' ..
                     '(ps step %d, latest tag %d; want 5 and 2)', st.step, st.worker[1].step))
obs:close()
c:done()
c:close()
os.exit(failed == 0 and 0 or 1)
