-- The ps's checkpoints from Lua: what ps.serve restores (and refuses), and
-- `dtf export`'s merge (dtf.checkpoint.export over ps.merge_checkpoints).
-- The C rules (newest readable, resharding, pruning, other models) are
-- tests/unit/test_ps_ckpt.c's; a ps killed and restarted is
-- tests/integration/faults.sh's.
local check = require 'check'
local T = require 'dtf.tensor'
local ckpt = require 'dtf.ckpt'
local checkpoint = require 'dtf.checkpoint'
local ps = require 'dtf.ps'
local util = require 'dtf.util'

local dir = string.format('/tmp/dtf-test-checkpoint.%d', util.getpid())
os.execute('rm -rf ' .. dir .. ' && mkdir -p ' .. dir)

-- A model of two tensors, w (2x3) and b (4): P = 10.
local layout = { { name = 'w', offset = 0, shape = { 2, 3 } }, { name = 'b', offset = 6, shape = { 4 } } }
local LAYOUT = '00000000c0ffee00'

-- Writes the file a ps writes: shard `shard` of `nps` at `step`, its
-- params the flat buffer's base + index.
local function write_shard(d, shard, nps, step, base, meta)
  local off, count = ps.shard_range(10, nps, shard)
  local p = T.zeros(count)
  for i = 1, count do p[i] = base + off + i - 1 end
  local m = { format = 'dtf-ps-shard-1', layout = LAYOUT, layout_json = checkpoint.layout_json(layout),
              shard = shard, nps = nps, offset = off, count = count, P = 10, step = step, optimizer = 'adam',
              pushes = '' }
  for k, v in pairs(meta or {}) do m[k] = v end
  assert(ckpt.save(d .. '/' .. ckpt.name(step, shard, nps), { { name = 'params', tensor = p } }, m))
end

check.case('names carry the sharding', function()
  check.eq(ckpt.name(1200, 1, 3), 'ckpt-00001200-ps1-of-3.safetensors', 'name')
  local step, shard, nps = ckpt.parse_name('/x/ckpt-00001200-ps1-of-3.safetensors')
  check.eq(step, 1200); check.eq(shard, 1); check.eq(nps, 3)
  check.eq(select(3, ckpt.parse_name('ckpt-00000005-ps0.safetensors')), 0, 'the older name: nps from the metadata')
  check.raises(function() ckpt.name(1, 2, 2) end, 'nps must be > shard')
end)

check.case("ps.serve refuses a checkpoint whose 'pushes' is malformed", function()
  -- A malformed one stops the ps with a message instead of a silent start
  -- without it (a re-sent gradient would then be applied twice).
  local d = dir .. '/pushes'
  for _, bad in ipairs { 'x', '0:7', '0:7:', '0:-7:1', '0:4294967296:1', '0:7:1x', '99999999999:1:1' } do
    os.execute('rm -rf ' .. d .. ' && mkdir -p ' .. d)
    write_shard(d, 0, 1, 3, 0, { pushes = bad })
    local stats, err = ps.serve { port = 0, host = '127.0.0.1', params = T.zeros(10), workers = 2,
                                  optimizer = { kind = 'adam' }, layout_checksum = LAYOUT, checkpoint_dir = d,
                                  handle_signals = false, log = function() end }
    check.eq(stats, nil, 'pushes "' .. bad .. '" refused')
    check.ok(tostring(err):find("checkpoint metadata 'pushes' is malformed", 1, true), tostring(err))
  end
end)

check.case('export merges the newest complete set under the layer names', function()
  local d = dir .. '/export'
  os.execute('rm -rf ' .. d .. ' && mkdir -p ' .. d)
  write_shard(d, 0, 2, 7, 0)
  write_shard(d, 1, 2, 8, 0)
  local out = dir .. '/model.safetensors'
  local n, steps = checkpoint.export(d, out)
  check.eq(n, 2, 'two tensors')
  check.eq(steps, 'ps0@7 ps1@8', 'the steps it merged')
  local t, meta = assert(ckpt.load(out))
  check.eq(meta.layout, LAYOUT, 'the layout is recorded')
  check.eq(t.w:size(1), 2, 'w is 2x3'); check.eq(t.w:size(2), 3, 'w is 2x3')
  check.eq(t.w[2][3], 5, 'w[2][3] is flat element 6')
  check.eq(t.b[4], 9, 'b[4] is flat element 10')
  -- a newer 3-ps set of the same model wins
  for i = 0, 2 do write_shard(d, i, 3, 20, 100) end
  n, steps = checkpoint.export(d, out)
  check.eq(steps, 'ps0@20 ps1@20 ps2@20', 'the 3-ps set')
  check.eq(assert(ckpt.load(out)).b[4], 109, 'its values')
  os.execute('rm -f ' .. d .. '/*-of-3.safetensors ' .. d .. '/' .. ckpt.name(8, 1, 2))
  check.raises(function() checkpoint.export(d, out) end, 'no complete set of ps checkpoints')
  check.raises(function() checkpoint.export(dir .. '/absent', out) end, 'no complete set of ps checkpoints')
end)

os.execute('rm -rf ' .. dir)
check.done()
