-- bench/hook_cost.lua off|on [N]: the time train.lua's watch hooks take per
-- step (watch.timed around the exchange, watch.step after it), without the
-- step itself: off = metrics_port 0 and no TensorBoard; on = the endpoint
-- serving on a free port (PORT, the second argument) and TensorBoard scalars
-- every 100 steps. Prints microseconds per step.
local watch = require 'dtf.watch'
local util = require 'dtf.util'
local mode, port, n = arg[1] or 'on', tonumber(arg[2]) or 0, 200000
local dir = os.tmpname()
os.remove(dir)
local hp = { logmax = '64M', metrics_port = mode == 'on' and port or 0, tensorboard = mode == 'on',
             logdir = dir, progress = false, validation = 0, evalevery = 0, lossevery = 100,
             batchsize = 64, learningrate = 0.003, save_best = false, save = '' }
require('dtf.log').open(dir)
watch.setup(hp, {})
watch.begin { worker = 0, nworkers = 1, steps = 0, first = 0, checksum = 'x', replicas = 1 }
local exchange = watch.timed(function(g) return g + 1 end)
local t, g = util.now(), 0
for _ = 1, n do
  g = exchange(g)
  watch.step(g, 0.5, 64)
end
print(string.format('%.2f', (util.now() - t) / n * 1e6))
watch.finish()
os.execute('rm -rf ' .. dir)
