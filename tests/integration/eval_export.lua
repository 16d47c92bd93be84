-- eval_export.lua FILE.safetensors [KEY=VALUE ...]: loads what `dtf export`
-- wrote into the model models/mnist.lua builds (keys: model (mlp), hidden,
-- datadir) with nn's Sequential:load, and prints its Fashion-MNIST test
-- accuracy: "export accuracy: 0.8512 (10000 images)".
local ckpt = require 'dtf.ckpt'
local data = require 'dtf.data'
local nn = require 'dtf.nn'

local file = assert(arg[1], 'usage: eval_export.lua FILE.safetensors [KEY=VALUE ...]')
local hp = { model = 'mlp', datadir = '/usr/share/datasets/fashion-mnist' }
for i = 2, #arg do
  local k, v = arg[i]:match('^([%w_]+)=(.*)$')
  assert(k, 'bad argument ' .. arg[i])
  hp[k] = math.tointeger(tonumber(v)) or v
end
local root = (arg[0]:match('^(.*)/tests/integration/[^/]*$') or '.')
local model = require 'dtf.model'
local m = model.load(root .. '/models/mnist.lua')
local schema = model.schema({ { name = 'datadir', type = 'string' } }, m)
for _, e in ipairs(schema) do if hp[e.name] == nil then hp[e.name] = e.default end end
local net = model.build(m, hp, schema, 1)
local tensors, meta = ckpt.load(file)
if not tensors then error(meta, 0) end
net:load(tensors) -- raises on any mismatch, naming the tensor
print(string.format('export layout %s, model layout %s', tostring(meta.layout), net:checksum()))
local test, derr = data.mnist(hp.datadir, 'test')
if not test then error(derr, 0) end
local acc, n = nn.evaluate(net, test, 1000)
print(string.format('export accuracy: %.4f (%d images)', acc, n))
