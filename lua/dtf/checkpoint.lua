-- dtf.checkpoint: a ps shard's checkpoints and `dtf export`.
--
-- Each ps writes CHECKPOINT_DIR/ckpt-<step>-ps<i>.safetensors (dtf.ckpt's
-- names; written atomically: temporary file, fsync, rename, fsync of the
-- directory) holding the tensors "params" (its range of the flat buffer) and
-- the optimizer slots "slot0"/"slot1" where the optimizer has them, with
-- metadata: format, layout (the model's layout checksum), layout_json (names,
-- offsets and shapes), shard, nps, offset, count, P, step, optimizer, and
-- pushes: each worker's latest async push as "worker:id:tag" items, so a
-- restarted ps still knows a re-sent gradient it had already applied.
local ckpt = require 'dtf.ckpt'
local json = require 'dtf.json'

local checkpoint = {}

checkpoint.FORMAT = 'dtf-ps-shard-1'
checkpoint.KEEP = 3 -- checkpoints kept per shard

-- The layout as JSON: [{"name":..,"offset":..,"shape":[..]}, ...]
function checkpoint.layout_json(layout)
  local out = {}
  for i, e in ipairs(layout) do out[i] = { name = e.name, offset = e.offset, shape = e.shape } end
  return json.encode(out)
end

-- Saves one shard's state: st = {params=, slot0=, slot1=, step=, shard=, nps=,
-- offset=, count=, P=, layout=, layout_json=, optimizer=, pushes=}. Returns the path,
-- or nil, err.
function checkpoint.save(dir, st)
  local tensors = { { name = 'params', tensor = st.params } }
  if st.slot0 then tensors[#tensors + 1] = { name = 'slot0', tensor = st.slot0 } end
  if st.slot1 then tensors[#tensors + 1] = { name = 'slot1', tensor = st.slot1 } end
  local path = dir .. '/' .. ckpt.name(st.step, st.shard)
  local ok, err = ckpt.save(path, tensors, {
    format = checkpoint.FORMAT, layout = st.layout, layout_json = st.layout_json,
    shard = st.shard, nps = st.nps, offset = st.offset, count = st.count, P = st.P,
    step = st.step, optimizer = st.optimizer or '', pushes = st.pushes,
  })
  if not ok then return nil, err end
  ckpt.prune(dir, st.shard, checkpoint.KEEP)
  return path
end

local function num(meta, key, path)
  local v = math.tointeger(tonumber(meta[key]))
  if not v then error(string.format("%s: metadata '%s' is missing or not an integer", path, key), 0) end
  return v
end

-- Reads a shard checkpoint: the state table, or nil, err when the file
-- cannot be read or is not a well-formed dtf shard checkpoint.
local function read_shard(path)
  local t, meta = ckpt.load(path)
  if not t then return nil, meta end
  if meta.format ~= checkpoint.FORMAT then
    return nil, string.format("%s is not a dtf ps checkpoint (format '%s')", path, tostring(meta.format))
  end
  local ok, st = pcall(function()
    return { path = path, params = t.params, slot0 = t.slot0, slot1 = t.slot1, layout = meta.layout,
             layout_json = meta.layout_json, optimizer = meta.optimizer, pushes = meta.pushes,
             step = num(meta, 'step', path), shard = num(meta, 'shard', path), nps = num(meta, 'nps', path),
             offset = num(meta, 'offset', path), count = num(meta, 'count', path), P = num(meta, 'P', path) }
  end)
  if not ok then return nil, st end
  if not st.params or st.params:numel() ~= st.count then
    return nil, string.format('%s: tensor params does not hold its %d parameters', path, st.count)
  end
  return st
end

-- Raises when st does not belong to what this task runs (expect = {layout=,
-- nps=, shard=, optimizer=}, each optional).
local function check(st, expect)
  if not expect then return st end
  local path = st.path
  if expect.layout and st.layout ~= expect.layout then
    error(string.format('%s belongs to another model: layout %s, this task runs %s', path,
                        tostring(st.layout), expect.layout), 0)
  end
  if expect.nps and st.nps ~= expect.nps then
    error(string.format('%s belongs to another sharding: %d ps tasks, this cluster has %d', path,
                        st.nps, expect.nps), 0)
  end
  if expect.shard and st.shard ~= expect.shard then
    error(string.format('%s is the checkpoint of ps %d, not ps %d', path, st.shard, expect.shard), 0)
  end
  if expect.optimizer and st.optimizer ~= '' and st.optimizer ~= expect.optimizer then
    error(string.format('%s was written with optimizer %s, this task runs %s', path, st.optimizer,
                        expect.optimizer), 0)
  end
  return st
end

-- Loads a shard checkpoint file and checks it against what this task runs
-- (expect = {layout=, nps=, shard=, optimizer=}). Returns the state table, or
-- raises an error saying why it cannot be read or does not belong here.
function checkpoint.load_shard(path, expect)
  local st, err = read_shard(path)
  if not st then error(err, 0) end
  return check(st, expect)
end

-- The newest readable checkpoint of shard `shard` in dir, checked against
-- expect; nil when there is none. A newest file that cannot be read (a disk
-- that lost it, a file truncated by hand: the atomic writer never leaves
-- one) is skipped for the one before; the skipped ones come back as a
-- second result { {path=, err=}, ... }. Files that exist but none of which
-- can be read raise: starting from the initial parameters then would
-- silently throw the training away. A checkpoint of another model or
-- sharding raises at once.
function checkpoint.restore(dir, shard, expect)
  local paths, err = ckpt.list(dir, shard)
  if not paths then error(err, 0) end
  local skipped = {}
  for i = #paths, 1, -1 do
    local st, rerr = read_shard(paths[i])
    if st then return check(st, expect), skipped end
    skipped[#skipped + 1] = { path = paths[i], err = rerr }
  end
  if #skipped > 0 then
    local why = {}
    for _, e in ipairs(skipped) do why[#why + 1] = e.err end
    error(string.format('none of the %d checkpoints of ps %d in %s can be read: %s', #skipped, shard,
                        dir, table.concat(why, '; ')), 0)
  end
  return nil, skipped
end

-- dtf export DIR OUT: merges the newest checkpoint of every shard into one
-- safetensors file holding the model's tensors under their layer names.
function checkpoint.export(dir, out)
  local first = checkpoint.restore(dir, 0)
  if not first then error(string.format('%s: no checkpoint of ps 0 (ckpt-*-ps0.safetensors)', dir), 0) end
  local T = require 'dtf.tensor'
  local flat = T.zeros(first.P)
  local steps = {}
  for i = 0, first.nps - 1 do
    local st = i == 0 and first or checkpoint.restore(dir, i, { layout = first.layout, nps = first.nps, shard = i })
    if not st then error(string.format('%s: no checkpoint of ps %d of %d', dir, i, first.nps), 0) end
    flat:narrow(1, st.offset + 1, st.count):copy(st.params)
    steps[#steps + 1] = string.format('ps%d@%d', i, st.step)
  end
  local layout, err = json.decode(first.layout_json or '')
  if type(layout) ~= 'table' then error(string.format('%s: bad layout_json (%s)', first.path, tostring(err)), 0) end
  local tensors = {}
  for _, e in ipairs(layout) do
    local n = 1
    for _, d in ipairs(e.shape) do n = n * d end
    tensors[#tensors + 1] = { name = e.name, tensor = flat:narrow(1, e.offset + 1, n):view(table.unpack(e.shape)) }
  end
  local ok, serr = ckpt.save(out, tensors, { layout = first.layout, format = 'dtf', shards = table.concat(steps, ' ') })
  if not ok then error(serr, 0) end
  return #tensors, table.concat(steps, ' ')
end

return checkpoint
