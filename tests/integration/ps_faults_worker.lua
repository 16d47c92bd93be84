-- ps_faults_worker.lua: a worker for ps_faults.sh.
--   dtf run tests/integration/ps_faults_worker.lua -- KEY=VALUE ...
-- keys: ps (comma-separated host:port), index (0), P (1000), steps (20),
--       sleep (s between steps, 0), reconnect (reconnect_timeout, 0),
--       die_after (exit 3 without WORKER_DONE after that many steps), lr (0.1),
--       keepalive (s, default 25), timeout (10), progress (true: log each
--       step, "worker I: at global step S", for the test to wait on),
--       overlap (true: each step's round goes out with exchange_start and
--       the previous one is collected with exchange_finish, as train.lua's
--       overlap=true)
-- Pushes gradients of ones; with one async worker and SGD over ps_only.lua's
-- initial parameters 0, 1, ..., params must equal (i - 1) - lr * step.
local T = require 'dtf.tensor'
local ps = require 'dtf.ps'
local log = require 'dtf.log'
local util = require 'dtf.util'

local o = {}
for i = 1, #arg do
  local k, v = arg[i]:match('^([%w_]+)=(.*)$')
  assert(k, 'bad argument ' .. arg[i])
  o[k] = v
end
local addrs = {}
for a in o.ps:gmatch('[^,]+') do addrs[#addrs + 1] = a end
local index, P, steps = tonumber(o.index or 0), tonumber(o.P or 1000), tonumber(o.steps or 20)
local pause, lr = tonumber(o.sleep or 0), tonumber(o.lr or 0.1)

local c, err = ps.connect { addrs = addrs, index = index, P = P, layout_checksum = '00000000c0ffee00',
                            connect_timeout = 20, timeout = tonumber(o.timeout or 10), wait_timeout = 30,
                            reconnect_timeout = tonumber(o.reconnect or 0),
                            keepalive = tonumber(o.keepalive), log = log.sink }
if not c then print('worker: error: ' .. err); os.exit(4) end
local params, grads = T.zeros(P), T.ones(P)
local step = assert(c:pull(params))
local incoming, in_flight = o.overlap == 'true' and T.zeros(P), false
local function exchange()
  if not incoming then return c:push_pull(grads, params, step) end
  local s, perr = step, nil
  if in_flight then
    s, perr = c:exchange_finish()
    if not s then return nil, perr end
    params:copy(incoming)
  end
  local ok, serr = c:exchange_start(grads, incoming, step)
  if not ok then return nil, serr end
  in_flight = true
  return s
end
for i = 1, steps do
  local s, perr = exchange()
  if not s then print('worker: error: ' .. perr); os.exit(4) end
  step = s
  if o.progress == 'true' then log.info('worker %d: at global step %d', index, step) end
  if pause > 0 then util.sleep(pause) end
  if tonumber(o.die_after) == i then print('worker: dying after step ' .. i); os.exit(3) end
end
if in_flight then assert(c:exchange_finish()) end
step = assert(c:pull(params))
local worst = 0
for i = 1, P do worst = math.max(worst, math.abs(params[i] - ((i - 1) - lr * step))) end
print(string.format('worker %d: finished at global step %d, max deviation %.6f', index, step, worst))
assert(c:done())
c:close()
