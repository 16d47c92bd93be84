-- dtf.cluster, dtf.hparams and dtf.json: every source of the cluster spec
-- and its errors; hyperparameter typing; the JSON decoder.
local check = require 'check'
local cluster = require 'dtf.cluster'
local hparams = require 'dtf.hparams'
local json = require 'dtf.json'

local function env(t) return function(k) return t[k] end end
local function usage_msg(fn)
  local ok, e = pcall(fn)
  if ok then return nil end
  return type(e) == 'table' and e.usage and e.msg or ('not a usage error: ' .. tostring(e))
end

check.case('flags win', function()
  local s = cluster.resolve({ role = 'ps', index = '1', ps = 'a:1,b:2', workers = 'c:3' },
                            env { DTF_CLUSTER = '{"ps":["x:1"],"worker":["y:2"]}' })
  check.eq(s.source, 'flags'); check.eq(s.role, 'ps'); check.eq(s.index, 1)
  check.eq(#s.ps, 2); check.eq(s.address, 'b:2'); check.eq(cluster.port(s.address), 2)
end)

check.case('DTF_CLUSTER with the hostname ordinal', function()
  local s = cluster.resolve({ role = 'ps' }, env {
    DTF_CLUSTER = '{"ps":["mnist-ps-0.mnist-ps:8000","mnist-ps-1.mnist-ps:8000"],"worker":["w-0:9000"]}',
    HOSTNAME = 'mnist-ps-1' })
  check.eq(s.source, 'DTF_CLUSTER'); check.eq(s.index, 1); check.eq(s.index_source, "hostname 'mnist-ps-1'")
end)

check.case('JOB_COMPLETION_INDEX before the hostname', function()
  local s = cluster.resolve({ role = 'worker' }, env {
    DTF_CLUSTER = '{"ps":["p:1"],"worker":["w-0:9","w-1:9","w-2:9"]}', JOB_COMPLETION_INDEX = '2',
    HOSTNAME = 'mnist-worker-0-abcde' })
  check.eq(s.index, 2); check.eq(s.index_source, 'JOB_COMPLETION_INDEX')
end)

check.case('TF_CONFIG as Kubeflow sets it', function()
  local s = cluster.resolve({}, env {
    TF_CONFIG = '{"cluster":{"ps":["p0:2222","p1:2222"],"worker":["w0:2222"]},"task":{"type":"ps","index":1}}' })
  check.eq(s.source, 'TF_CONFIG'); check.eq(s.role, 'ps'); check.eq(s.index, 1); check.eq(s.address, 'p1:2222')
end)

check.case('no cluster: one process', function()
  local s = cluster.resolve({}, env {})
  check.eq(s.role, nil)
end)

check.case('errors name their source', function()
  local m = usage_msg(function() cluster.resolve({ role = 'ps', index = '2', ps = 'a:1,b:2', workers = 'c:3' }, env {}) end)
  check.ok(m and m:find('index 2 (from --index) is outside the 2 ps', 1, true), m)
  m = usage_msg(function() cluster.resolve({ role = 'worker' }, env { DTF_CLUSTER = '{"ps":["a:1"],"worker":["b:2"]}', HOSTNAME = 'laptop' }) end)
  check.ok(m and m:find("hostname 'laptop' has no ordinal", 1, true), m)
  m = usage_msg(function() cluster.resolve({ role = 'worker', index = '0' }, env {}) end)
  check.ok(m and m:find('needs the ps addresses', 1, true), m)
  m = usage_msg(function() cluster.resolve({}, env { TF_CONFIG = '{"cluster": [' }) end)
  check.ok(m and m:find('TF_CONFIG is not valid JSON', 1, true), m)
  m = usage_msg(function() cluster.resolve({ ps = 'a:b' }, env {}) end)
  check.ok(m and m:find("'a:b' is not HOST:PORT", 1, true), m)
  m = usage_msg(function() cluster.resolve({ ps = 'a:1', workers = 'b:2' }, env {}) end)
  check.ok(m and m:find("not this task's role", 1, true), m)
end)

check.case('token: --token-file, then DTF_TOKEN', function()
  local path = os.tmpname()
  local f = assert(io.open(path, 'w')); f:write('s3cret\n'); f:close()
  check.eq(cluster.token({ token_file = path }, env { DTF_TOKEN = 'other' }), 's3cret', 'the file wins, trimmed')
  check.eq(cluster.token({}, env { DTF_TOKEN = 'other' }), 'other', 'else the environment')
  check.eq(cluster.token({}, env { DTF_TOKEN = '' }), nil, 'an empty DTF_TOKEN is no token')
  os.remove(path)
  local m = usage_msg(function() cluster.token({ token_file = path }, env {}) end)
  check.ok(m and m:find('--token-file', 1, true), 'an unreadable token file is a usage error')
end)

local schema = {
  { name = 'batchsize', type = 'int', default = 64, min = 1 },
  { name = 'learningrate', type = 'number', default = 0.001, max = 1 },
  { name = 'sync', type = 'bool', default = false },
  { name = 'optimizer', type = 'string', default = 'adam', choices = { 'sgd', 'adam' } },
  { name = 'trainsteps', type = 'int', min = 0 },
}

check.case('hparams: defaults, --set, types', function()
  local hp = hparams.parse(schema, { set = { 'batchsize=20', 'learningrate=1e-2', 'sync=true', 'trainsteps=0' } })
  check.eq(hp.batchsize, 20); check.eq(math.type(hp.batchsize), 'integer')
  check.eq(hp.learningrate, 0.01); check.eq(hp.sync, true); check.eq(hp.trainsteps, 0)
  check.eq(hp.optimizer, 'adam')
end)

check.case('hparams: bad values are usage errors naming the key', function()
  check.ok((usage_msg(function() hparams.parse(schema, { set = { 'batchsize=abc' } }) end) or ''):find("batchsize='abc' is not a number", 1, true))
  check.ok((usage_msg(function() hparams.parse(schema, { set = { 'batchsize=2.5' } }) end) or ''):find('not an integer', 1, true))
  check.ok((usage_msg(function() hparams.parse(schema, { set = { 'batchsize=0' } }) end) or ''):find('below its minimum', 1, true))
  check.ok((usage_msg(function() hparams.parse(schema, { set = { 'learningrate=2' } }) end) or ''):find('learningrate=2 is above its maximum 1', 1, true))
  check.ok((usage_msg(function() hparams.parse(schema, { set = { 'sync=maybe' } }) end) or ''):find('not true or false', 1, true))
  check.ok((usage_msg(function() hparams.parse(schema, { set = { 'optimizer=rmsprop' } }) end) or ''):find('not one of sgd, adam', 1, true))
  check.ok((usage_msg(function() hparams.parse(schema, { set = { 'batchsiz=3' } }) end) or ''):find("unknown hyperparameter 'batchsiz'", 1, true))
end)

check.case('hparams: --config file, then --set', function()
  local path = os.tmpname()
  local f = assert(io.open(path, 'w'))
  f:write('return { batchsize = 20, learningrate = 0.001, trainsteps = 0, sync = true }')
  f:close()
  local hp = hparams.parse(schema, { config = path, set = { 'batchsize=30' } })
  check.eq(hp.batchsize, 30, '--set wins over --config'); check.eq(hp.trainsteps, 0, 'a 0 survives'); check.eq(hp.sync, true)
  f = assert(io.open(path, 'w')); f:write('return { batchsize = "many" }'); f:close()
  check.ok((usage_msg(function() hparams.parse(schema, { config = path }) end) or ''):find('--config ' .. path, 1, true), 'config errors name the file')
  f = assert(io.open(path, 'w')); f:write('return {'); f:close()
  check.ok(usage_msg(function() hparams.parse(schema, { config = path }) end) ~= nil, 'syntax error is a usage error')
  os.remove(path)
end)

check.case('json', function()
  local v = json.decode(' {"a": [1, 2.5, "x\\n\\u0041"], "b": {"c": true, "d": null}} ')
  check.eq(v.a[1], 1); check.eq(v.a[2], 2.5); check.eq(v.a[3], 'x\nA'); check.eq(v.b.c, true); check.eq(v.b.d, json.null)
  for _, bad in ipairs { '', '{', '[1,]', '{"a" 1}', '"abc', 'tru', '{"a":1} x', '[1 2]' } do
    local r, err = json.decode(bad)
    check.ok(r == nil and type(err) == 'string', 'rejects ' .. bad)
  end
  check.eq(json.encode { ps = { 'a:1' }, worker = {} }, '{"ps":["a:1"],"worker":[]}')
end)

check.done()
