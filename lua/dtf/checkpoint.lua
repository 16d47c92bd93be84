-- dtf.checkpoint: `dtf export` and the layout a ps keeps in its checkpoints.
--
-- The ps's checkpoints themselves are written, restored and resharded by the
-- C core (src/ps_ckpt.c): CHECKPOINT_DIR/ckpt-<step>-ps<i>-of-<n>.safetensors.
local ckpt = require 'dtf.ckpt'
local json = require 'dtf.json'
local ps = require 'dtf.ps'

local checkpoint = {}

-- The layout as the JSON a ps keeps beside its shard (ps.serve's layout_json):
-- [{"name":..,"offset":..,"shape":[..]}, ...]
function checkpoint.layout_json(layout)
  local out = {}
  for i, e in ipairs(layout) do out[i] = { name = e.name, offset = e.offset, shape = e.shape } end
  return json.encode(out)
end

-- dtf export DIR OUT: the newest complete set of ps checkpoints in DIR (of
-- the newest model there, whatever number of ps tasks wrote it) merged into
-- one safetensors file holding the model's tensors under their layer names.
-- Returns the number of tensors and the shards it took ("ps0@1200 ps1@1200").
function checkpoint.export(dir, out)
  local flat, info = ps.merge_checkpoints(dir)
  if not flat then error(info, 0) end
  local layout, err = json.decode(info.layout_json or '')
  if type(layout) ~= 'table' then
    error(string.format('%s: the checkpoints hold no usable layout_json (%s)', dir, tostring(err)), 0)
  end
  local tensors = {}
  for _, e in ipairs(layout) do
    local n = 1
    for _, d in ipairs(e.shape) do n = n * d end
    if e.offset + n > info.P then
      error(string.format("%s: layout_json puts '%s' past the %d parameters", dir, e.name, info.P), 0)
    end
    tensors[#tensors + 1] = { name = e.name, tensor = flat:narrow(1, e.offset + 1, n):view(table.unpack(e.shape)) }
  end
  local ok, serr = ckpt.save(out, tensors, { layout = info.layout, format = 'dtf', shards = info.shards })
  if not ok then error(serr, 0) end
  return #tensors, info.shards
end

return checkpoint
