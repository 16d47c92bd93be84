-- dtf.ckpt from Lua: save/load round trips (list and map forms, views,
-- strided tensors, metadata), errors as nil, err, names, list, latest, prune.
local check = require 'check'
local T = require 'dtf.tensor'
local ckpt = require 'dtf.ckpt'

local dir = os.tmpname()
os.remove(dir)
assert(os.execute('mkdir -p ' .. dir))

local function same(a, b)
  if a:numel() ~= b:numel() or a:dim() ~= b:dim() then return false end
  for d = 1, a:dim() do if a:size(d) ~= b:size(d) then return false end end
  local fa, fb = a:contiguous():view(-1), b:contiguous():view(-1)
  for i = 1, fa:numel() do if fa[i] ~= fb[i] then return false end end
  return true
end

check.case('round trip, list form', function()
  local flat = T.zeros(20):normal_(1, 0, 1)
  local w = flat:narrow(1, 1, 12):view(3, 4)     -- views into one flat buffer
  local b = flat:narrow(1, 13, 4)
  local wt = T.zeros(4, 3):normal_(2, 0, 1):t()  -- strided: saved contiguous
  local s = T.full({}, 7) -- a scalar, if the tensor module makes one
  local path = dir .. '/a.safetensors'
  local entries = { { name = 'fc.weight', tensor = w }, { name = 'fc.bias', tensor = b },
                    { name = 'wt', tensor = wt } }
  if T.is_tensor(s) then entries[#entries + 1] = { name = 'scalar', tensor = s } end
  local ok, err = ckpt.save(path, entries, { step = 1200, model = 'mnist', flag = true, lr = 0.5 })
  check.eq(ok, true, err)
  local t, meta, names = ckpt.load(path)
  check.ok(t ~= nil, meta)
  if not t then return end
  check.ok(same(t['fc.weight'], w), 'weight')
  check.ok(same(t['fc.bias'], b), 'bias')
  check.ok(same(t.wt, wt), 'strided tensor')
  check.eq(names[1], 'fc.weight', 'file order'); check.eq(names[3], 'wt', 'file order')
  check.eq(meta.step, '1200', 'integer metadata'); check.eq(meta.model, 'mnist')
  check.eq(meta.flag, 'true', 'boolean'); check.eq(tonumber(meta.lr), 0.5, 'float')
  if T.is_tensor(s) then check.eq(t.scalar:dim(), s:dim(), 'scalar dims') end
end)

check.case('round trip, map form', function()
  local path = dir .. '/b.safetensors'
  local a, z = T.zeros(2, 2):fill(1.5), T.zeros(3)
  check.eq(ckpt.save(path, { z = z, a = a }), true)
  local t, meta, names = ckpt.load(path)
  check.eq(names[1], 'a', 'map saved sorted'); check.eq(names[2], 'z')
  check.ok(same(t.a, a) and same(t.z, z), 'values')
  check.eq(next(meta), nil, 'no metadata')
end)

check.case('errors', function()
  local ok, err = ckpt.save(dir .. '/no/such/x.safetensors', { a = T.zeros(1) })
  check.eq(ok, nil); check.ok(err:find('x.safetensors', 1, true) and err:find('No such file', 1, true), err)
  local t
  t, err = ckpt.load(dir .. '/missing.safetensors')
  check.eq(t, nil); check.ok(err:find('missing.safetensors: No such file', 1, true), err)
  -- a truncated file
  local path = dir .. '/c.safetensors'
  ckpt.save(path, { a = T.zeros(100) })
  local f = assert(io.open(path, 'rb')); local bytes = f:read('a'); f:close()
  f = assert(io.open(path, 'wb')); f:write(bytes:sub(1, #bytes - 1)); f:close()
  t, err = ckpt.load(path)
  check.eq(t, nil); check.ok(err:find('truncated', 1, true), err)
  -- not a checkpoint at all
  f = assert(io.open(path, 'wb')); f:write('hello, world: not a checkpoint'); f:close()
  t, err = ckpt.load(path)
  check.eq(t, nil); check.ok(err:find(path, 1, true), err)
  -- misuse raises
  check.raises(function() ckpt.save(path, { { name = 'a', tensor = 5 } }) end, 'is not a tensor')
  check.raises(function() ckpt.save(path, { { tensor = T.zeros(1) } }) end, 'name is not a string')
  check.raises(function() ckpt.save(path, { a = T.zeros(1) }, { k = {} }) end, 'metadata.k')
  check.raises(function() ckpt.save(path, { [1.5] = T.zeros(1) }) end, 'names (strings)')
  ok, err = ckpt.save(path, { { name = 'a', tensor = T.zeros(1) }, { name = 'a', tensor = T.zeros(1) } })
  check.eq(ok, nil); check.ok(err and err:find("'a'", 1, true) and err:find('twice', 1, true), err)
end)

check.case('names, list, latest, prune', function()
  check.eq(ckpt.name(1200, 0, 2), 'ckpt-00001200-ps0-of-2.safetensors', 'name')
  local st, sh, n = ckpt.parse_name('/x/y/ckpt-00001200-ps3-of-4.safetensors')
  check.eq(st, 1200); check.eq(sh, 3); check.eq(n, 4)
  check.eq(ckpt.parse_name('.ckpt-00001200-ps3-of-4.safetensors.tmp.77'), nil, 'temporary files')
  local d = dir .. '/ck'
  os.execute('mkdir -p ' .. d)
  check.eq(ckpt.latest(d, 0), nil, 'none yet')
  check.eq(#ckpt.list(d .. '/absent'), 0, 'missing dir is empty')
  for _, step in ipairs { 30, 100, 5 } do
    for shard = 0, 1 do
      assert(ckpt.save(d .. '/' .. ckpt.name(step, shard, 2), { w = T.full({ 2 }, step) }, { step = step }))
    end
  end
  -- a crash mid-save leaves a temporary: never listed, latest still loads
  local f = assert(io.open(d .. '/.' .. ckpt.name(200, 0, 2) .. '.tmp.4242', 'wb')); f:write('\0\0'); f:close()
  local all = ckpt.list(d)
  check.eq(#all, 6, 'all shards')
  local l0 = ckpt.list(d, 0)
  check.eq(#l0, 3, 'shard 0')
  check.ok(l0[1]:find('ckpt-00000005-ps0', 1, true) and l0[3]:find('ckpt-00000100-ps0', 1, true), 'oldest first')
  local p, step = ckpt.latest(d, 1)
  check.eq(step, 100, 'latest step'); check.ok(p:find('ps1', 1, true), p)
  local t, meta = ckpt.load(p)
  check.eq(meta.step, '100'); check.eq(t.w[1], 100)
  check.eq(ckpt.prune(d, 0, 1), 2, 'pruned')
  check.eq(#ckpt.list(d, 0), 1); check.eq(#ckpt.list(d, 1), 3, 'other shard kept')
  check.raises(function() ckpt.name(-1, 0, 1) end, 'step')
  check.raises(function() ckpt.latest(d, -1) end, 'shard')
end)

os.execute('rm -rf ' .. dir)
check.done()
