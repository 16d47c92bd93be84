-- bench/scrape_cost.lua N: the CPU one scrape of /metrics costs the task
-- (its metrics thread renders the text and reads /proc): a task with the
-- worker's metrics registered is scraped N times over one keep-alive
-- connection by a Python client; the task's CPU time before and after
-- (/proc/self/stat: every thread) gives microseconds per scrape.
local metrics = require 'dtf.metrics'
local n = tonumber(arg[1]) or 2000
metrics.info('dtf_build_info', 'build', { version = '0', blas_core = metrics.blas_core() })
for _, name in ipairs { 'dtf_worker_steps_total', 'dtf_worker_examples_total' } do metrics.counter(name, name):inc(1e6) end
metrics.gauge('dtf_worker_loss', 'loss'):set(0.4)
local secs = { 0.0005, 0.001, 0.002, 0.005, 0.01, 0.02, 0.05, 0.1, 0.2, 0.5, 1, 2, 5 }
for _, name in ipairs { 'dtf_worker_step_seconds', 'dtf_worker_exchange_seconds' } do
  metrics.histogram(name, name, secs):observe(0.003)
end
local port = assert(metrics.serve { host = '127.0.0.1', port = 0 })
local function cpu()
  local f = assert(io.open('/proc/self/stat'))
  local fields = f:read('a'):match('%) (.*)')
  f:close()
  local t = {}
  for x in fields:gmatch('%S+') do t[#t + 1] = tonumber(x) end
  return (t[12] + t[13]) / 100 -- utime + stime, clock ticks of 10 ms
end
local c0 = cpu()
assert(os.execute(string.format([[python3 -c '
import http.client
c = http.client.HTTPConnection("127.0.0.1", %d)
for i in range(%d):
    c.request("GET", "/metrics"); r = c.getresponse(); r.read(); assert r.status == 200
']], port, n)))
print(string.format('%.0f', (cpu() - c0) / n * 1e6))
