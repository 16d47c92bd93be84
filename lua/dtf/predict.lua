-- dtf predict MODEL.safetensors IMAGES [--labels LABELS] [--modelfile F]
-- (called by main.c): rebuilds the network a saved model file records (its
-- model file's source and hyperparameters, or --modelfile), loads its
-- tensors, and prints one line per image, "INDEX CLASS", both 0-based as
-- the labels are; with --labels a last line "accuracy A (N images)".
local T = require 'dtf.tensor'
local nn = require 'dtf.nn'
local ckpt = require 'dtf.ckpt'
local data = require 'dtf.data'
local json = require 'dtf.json'
local model = require 'dtf.model'
local dtf = require 'dtf'

-- The schema of the recorded hyperparameters: the model file's entries,
-- and any other recorded key (train.lua's) as it is.
local function recorded_schema(m, hp)
  local schema, seen = model.schema({}, m), {}
  for _, e in ipairs(schema) do seen[e.name] = true end
  for k, v in pairs(hp) do
    if not seen[k] then schema[#schema + 1] = { name = k, type = math.type(v) and 'number' or type(v) } end
  end
  return schema
end

local function rebuild(path, modelfile)
  local tensors, meta = ckpt.load(path)
  if not tensors then dtf.fail('%s', meta) end
  if meta.format ~= 'dtf' then
    dtf.fail("%s is not a dtf model file (format '%s'); a ps checkpoint? `dtf export` merges one", path,
             tostring(meta.format))
  end
  local m
  if modelfile then m = model.load(modelfile)
  elseif meta.model_source then m = model.load(meta.model_file or path, meta.model_source)
  else dtf.fail('%s records no model file (saved by an older dtf, or exported from checkpoints): give --modelfile', path) end
  local hp = {}
  if meta.hyperparams then
    local t, err = json.decode(meta.hyperparams)
    if type(t) ~= 'table' then dtf.fail("%s: metadata 'hyperparams' is not JSON (%s)", path, tostring(err)) end
    hp = t
  end
  local schema = recorded_schema(m, hp)
  for _, e in ipairs(schema) do if hp[e.name] == nil then hp[e.name] = e.default end end
  local net = model.build(m, hp, schema, 1)
  local ok, err = pcall(net.load, net, tensors)
  if not ok then dtf.fail('%s: %s (the model file %s builds another network)', path, tostring(err), m.path) end
  if meta.layout and meta.layout ~= net:checksum() then
    dtf.fail('%s: layout %s, but the rebuilt model is %s', path, meta.layout, net:checksum())
  end
  return net
end

return function(path, images, labels, modelfile)
  local net = rebuild(path, modelfile)
  local ds, err = data.load(images, labels)
  if not ds then dtf.fail('%s', err) end
  local rows, cols = ds:shape()
  local out, correct, index = {}, 0, 0
  for x, y, n in ds:batches(256) do
    local ok, classes = pcall(net.predict, net, x)
    if not ok then dtf.fail('%s holds %dx%d images, which this model cannot take: %s', images, rows, cols, tostring(classes)) end
    for i = 1, n do
      local c = math.tointeger(classes[i])
      out[#out + 1] = string.format('%d %d', index, c)
      if labels and c == math.tointeger(y[i]) then correct = correct + 1 end
      index = index + 1
    end
    if #out >= 4096 then io.write(table.concat(out, '\n'), '\n'); out = {} end
  end
  if #out > 0 then io.write(table.concat(out, '\n'), '\n') end
  if labels then io.write(string.format('accuracy %.4f (%d images)\n', correct / math.max(index, 1), index)) end
end
