-- wire_client.lua: a worker's client of ps_only.lua over a chosen wire
-- dtype (wire_dtype.sh).
--   dtf run tests/integration/wire_client.lua -- PORT P DTYPE
-- ps_only.lua starts the parameters as 0, 1, ..., P - 1 (sgd, lr 0.1). The
-- client pulls them, pushes a gradient of 0.5 everywhere (each parameter
-- moves down by 0.05 on the ps, in float32), pulls again and says done.
-- Checks, one "ok"/"not ok" line each: the first pull is exactly what the
-- wire carries (fp32: i; bf16: i rounded to nearest even, from the float's
-- bits here), the second is bf16-representable and within half a unit of
-- i - 0.05 (fp32: within float rounding). A refused connection prints
-- "refused: MESSAGE" and exits 3.
local T = require 'dtf.tensor'
local ps = require 'dtf.ps'

local port, P, dtype = tonumber(arg[1]), math.tointeger(tonumber(arg[2])), arg[3]
local c, err = ps.connect { addrs = { '127.0.0.1:' .. port }, role = 'worker', index = 0, P = P,
                            layout_checksum = '00000000c0ffee00', connect_timeout = 10,
                            wire_dtype = dtype }
if not c then
  print('refused: ' .. err)
  os.exit(3)
end

local function bits(x) return (string.unpack('<I4', string.pack('<f', x))) end
local function float(u) return (string.unpack('<f', string.pack('<I4', u))) end
-- float32 rounded to bfloat16, nearest even (no NaNs here)
local function bf16(x)
  local u = bits(x)
  return float(((u + 0x7fff + ((u >> 16) & 1)) >> 16) << 16)
end

local failed = 0
local function report(ok, what)
  if not ok then failed = failed + 1 end
  print((ok and 'ok ' or 'not ok ') .. what)
end

local params, grads = T.zeros(P), T.zeros(P)
assert(c:pull(params))
local bad
for i = 1, P do
  local want = dtype == 'bf16' and bf16(i - 1) or i - 1
  if params[i] ~= want then bad = bad or string.format('[%d] = %.9g, want %.9g', i, params[i], want) end
end
report(not bad, dtype .. ' pull of 0..P-1 carries exactly the ' .. dtype .. ' values' .. (bad and ': ' .. bad or ''))

grads:fill(0.5)
assert(c:push(grads, 0))
assert(c:pull(params))
bad = nil
for i = 1, P do
  local want, got = i - 1 - 0.05, params[i]
  local tol = dtype == 'bf16' and math.max(math.abs(want) / 256, 2 ^ -12) or 1e-5 * math.abs(want) + 1e-7
  local representable = dtype ~= 'bf16' or bits(got) & 0xffff == 0
  if math.abs(got - want) > tol or not representable then
    bad = bad or string.format('[%d] = %.9g, want %.9g', i, got, want)
  end
end
report(not bad, dtype .. ' push of 0.5s applied and pulled back' .. (bad and ': ' .. bad or ''))
c:done()
c:close()
os.exit(failed == 0 and 0 or 1)
