-- dtf.checkpoint: a ps shard's checkpoints (save, restore with the newest
-- readable one, refusals) and `dtf export`'s merge, without a running ps.
-- (A ps killed and restarted is in tests/integration/faults.sh.)
local check = require 'check'
local T = require 'dtf.tensor'
local ckpt = require 'dtf.ckpt'
local checkpoint = require 'dtf.checkpoint'
local util = require 'dtf.util'

local dir = string.format('/tmp/dtf-test-checkpoint.%d', util.getpid())
os.execute('rm -rf ' .. dir .. ' && mkdir -p ' .. dir)

-- A model of two tensors, w (2x3) and b (4): P = 10, sharded over 2 ps.
local layout = { { name = 'w', offset = 0, shape = { 2, 3 } }, { name = 'b', offset = 6, shape = { 4 } } }
local LAYOUT = '00000000c0ffee00'

local function state(shard, step, base)
  local off = shard == 0 and 0 or 5
  local p = T.zeros(5)
  for i = 1, 5 do p[i] = base + off + i - 1 end
  return { params = p, slot0 = T.zeros(5), step = step, shard = shard, nps = 2, offset = off, count = 5,
           P = 10, layout = LAYOUT, layout_json = checkpoint.layout_json(layout), optimizer = 'adam' }
end

local function truncate(path)
  local f = assert(io.open(path, 'rb'))
  local data = f:read('a')
  f:close()
  f = assert(io.open(path, 'wb'))
  f:write(data:sub(1, #data // 2))
  f:close()
end

check.case('save and restore the newest', function()
  check.eq(checkpoint.restore(dir, 0), nil, 'none yet')
  assert(checkpoint.save(dir, state(0, 5, 0)))
  local path = assert(checkpoint.save(dir, state(0, 10, 100)))
  check.ok(path:match('ckpt%-00000010%-ps0%.safetensors$'), 'named by step and shard: ' .. path)
  local st, skipped = checkpoint.restore(dir, 0, { layout = LAYOUT, nps = 2, shard = 0, optimizer = 'adam' })
  check.eq(st.step, 10, 'newest step')
  check.eq(st.params[1], 100, 'its parameters')
  check.eq(#skipped, 0, 'nothing skipped')
end)

check.case('an unreadable newest checkpoint falls back to the one before', function()
  truncate(dir .. '/' .. ckpt.name(10, 0))
  local st, skipped = checkpoint.restore(dir, 0, { layout = LAYOUT, nps = 2, shard = 0 })
  check.eq(st.step, 5, 'the previous step')
  check.eq(#skipped, 1, 'one skipped')
  check.ok(skipped[1].err:find('ckpt-00000010-ps0.safetensors', 1, true), 'the skipped one is named: ' .. skipped[1].err)
end)

check.case('refusals', function()
  check.raises(function() checkpoint.restore(dir, 0, { layout = '00000000deadbeef' }) end, 'belongs to another model')
  check.raises(function() checkpoint.restore(dir, 0, { nps = 3 }) end, 'belongs to another sharding: 2 ps tasks, this cluster has 3')
  check.raises(function() checkpoint.restore(dir, 0, { optimizer = 'sgd' }) end, 'was written with optimizer adam')
  truncate(dir .. '/' .. ckpt.name(5, 0))
  -- files there but none readable: never a silent start from scratch
  check.raises(function() checkpoint.restore(dir, 0) end, 'none of the 2 checkpoints of ps 0')
end)

check.case("each worker's latest push travels through the checkpoint", function()
  local d = dir .. '/pushes'
  os.execute('mkdir -p ' .. d)
  local st = state(0, 3, 0)
  st.pushes = '0:7:-1 1:4294967295:250'
  assert(checkpoint.save(d, st))
  check.eq(checkpoint.restore(d, 0).pushes, '0:7:-1 1:4294967295:250', 'metadata pushes')
  -- ps.serve restores it; a malformed one stops the ps with a message
  -- instead of a silent start without it.
  local ps = require 'dtf.ps'
  local function serve(pushes)
    os.execute('rm -rf ' .. d .. ' && mkdir -p ' .. d)
    local s2 = state(0, 3, 0)
    s2.nps, s2.count, s2.P, s2.pushes = 1, 5, 5, pushes
    assert(checkpoint.save(d, s2))
    return ps.serve { port = 0, host = '127.0.0.1', params = T.zeros(5), workers = 2, optimizer = { kind = 'adam' },
                      layout_checksum = LAYOUT, checkpoint_dir = d, handle_signals = false }
  end
  for _, bad in ipairs { 'x', '0:7', '0:7:', '0:-7:1', '0:4294967296:1', '0:7:1x', '99999999999:1:1' } do
    local stats, err = serve(bad)
    check.eq(stats, nil, 'pushes "' .. bad .. '" refused')
    check.ok(tostring(err):find("checkpoint metadata 'pushes' is malformed", 1, true), tostring(err))
  end
  os.execute('rm -rf ' .. d)
end)

check.case('export merges the shards under the layer names', function()
  os.execute('rm -f ' .. dir .. '/*')
  assert(checkpoint.save(dir, state(0, 7, 0)))
  assert(checkpoint.save(dir, state(1, 8, 0)))
  local out = dir .. '/model.safetensors'
  local n, steps = checkpoint.export(dir, out)
  check.eq(n, 2, 'two tensors')
  check.eq(steps, 'ps0@7 ps1@8', 'the steps it merged')
  local t = assert(ckpt.load(out))
  check.eq(t.w:size(1), 2, 'w is 2x3'); check.eq(t.w:size(2), 3, 'w is 2x3')
  check.eq(t.w[2][3], 5, 'w[2][3] is flat element 6')
  check.eq(t.b[4], 9, 'b[4] is flat element 10')
  os.remove(dir .. '/' .. ckpt.name(8, 1))
  check.raises(function() checkpoint.export(dir, out) end, 'no checkpoint of ps 1 of 2')
end)

os.execute('rm -rf ' .. dir)
check.done()
