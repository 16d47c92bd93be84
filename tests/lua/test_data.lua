-- dtf.data from Lua: loading, errors as nil, err, loaders (shards, epochs,
-- reproducibility), evaluation batches, and the real Fashion-MNIST.
local check = require 'check'
local T = require 'dtf.tensor'
local data = require 'dtf.data'

local dir = os.tmpname()
os.remove(dir)
assert(os.execute('mkdir -p ' .. dir))

local function write(name, bytes)
  local path = dir .. '/' .. name
  local f = assert(io.open(path, 'wb'))
  f:write(bytes)
  f:close()
  return path
end

-- n images of rows x cols, pixel k of image i = (i*7 + k) % 256 (0-based),
-- label i % 10.
local function images(n, rows, cols)
  local parts = { string.pack('>I4I4I4I4', 0x803, n, rows, cols) }
  for i = 0, n - 1 do
    local px = {}
    for k = 0, rows * cols - 1 do px[#px + 1] = string.char((i * 7 + k) % 256) end
    parts[#parts + 1] = table.concat(px)
  end
  return table.concat(parts)
end

local function labels(n)
  local l = {}
  for i = 0, n - 1 do l[#l + 1] = string.char(i % 10) end
  return string.pack('>I4I4', 0x801, n) .. table.concat(l)
end

local img = write('train-images-idx3-ubyte', images(100, 4, 3))
local lab = write('train-labels-idx1-ubyte', labels(100))
write('t10k-images-idx3-ubyte', images(10, 4, 3))
write('t10k-labels-idx1-ubyte', labels(10))

-- the example a row of x came from: pixel 0 = (i*7) % 256 pins i in 0..99
local inverse = {}
for i = 0, 99 do inverse[(i * 7) % 256] = i end
local function example_of(x, row)
  return inverse[math.floor(x:get(row, 1) * 255 + 0.5)]
end

check.case('load and inspect', function()
  local ds = assert(data.load(img, lab))
  check.eq(ds:count(), 100, 'count')
  check.eq(#ds, 100, '#ds')
  local r, c = ds:shape()
  check.eq(r, 4, 'rows'); check.eq(c, 3, 'cols')
  check.eq(ds:label(1), 0, 'label 1'); check.eq(ds:label(100), 9, 'label 100')
  local x, y = ds:example(43)          -- 0-based 42
  check.eq(y, 2, 'example label')
  check.eq(x:dim(), 2, 'example dims')
  check.near(x:get(1, 2), ((42 * 7 + 1) % 256) / 255, 1e-7, 'example pixel')
  check.raises(function() ds:label(0) end, 'out of range')
  check.raises(function() ds:label(101) end, 'out of range')
  check.ok(tostring(ds):find('100 examples of 4x3', 1, true), tostring(ds))
  local pi, pl = ds:paths()
  check.eq(pi, img, 'paths'); check.eq(pl, lab, 'paths')
end)

check.case('errors are nil, err naming the file', function()
  local ds, err = data.load(dir .. '/nope', lab)
  check.eq(ds, nil, 'missing')
  check.ok(err:find(dir .. '/nope: No such file', 1, true), err)
  ds, err = data.load(lab, img)
  check.eq(ds, nil, 'swapped')
  check.ok(err:find('bad magic 0x00000801 (expected an IDX images file, 0x00000803', 1, true), err)
  local short = write('short', images(100, 4, 3):sub(1, 100))
  ds, err = data.load(short, lab)
  check.ok(err and err:find('short: truncated: header says 100 images of 4x3', 1, true), err)
  local lab99 = write('lab99', labels(99))
  ds, err = data.load(img, lab99)
  check.ok(err and err:find('99 labels', 1, true) and err:find('100 images', 1, true), err)
  ds, err = data.mnist(dir .. '/none', 'test')
  check.ok(err and err:find('no t10k-images-idx3-ubyte or t10k-images-idx3-ubyte.gz', 1, true), err)
  check.raises(function() data.mnist(dir, 'validation') end, 'invalid option')
  check.raises(function() data.load(nil, lab) end, 'string expected')
end)

check.case('mnist finds the split in a directory', function()
  local tr = assert(data.mnist(dir, 'train'))
  local te = assert(data.mnist(dir, 'test'))
  check.eq(tr:count(), 100, 'train'); check.eq(te:count(), 10, 'test')
  check.eq(data.default_dir, '/usr/share/datasets/fashion-mnist', 'default dir')
end)

check.case('loader: batches, conversion, epochs', function()
  local ds = assert(data.load(img, lab))
  local ld = ds:loader { batchsize = 8, seed = 3 }
  check.eq(ld:batches_per_epoch(), 12, 'batches per epoch (drop_last)')
  check.eq(ld:epoch(), 1, 'epoch before')
  check.eq(ld:batchsize(), 8, 'batchsize')
  local x, y = T.zeros(8, 12), T.zeros(8)
  local seen = {}
  for _ = 1, 12 do
    local n = ld:next(x, y)
    check.eq(n, 8, 'full batch')
    for r = 1, 8 do
      local ex = example_of(x, r)
      check.ok(ex ~= nil and not seen[ex], 'distinct examples')
      if ex then
        seen[ex] = true
        check.eq(y:get(r), ex % 10, 'label matches image')
        check.near(x:get(r, 12), ((ex * 7 + 11) % 256) / 255, 1e-7, 'pixel')
      end
    end
  end
  check.eq(ld:epoch(), 1, 'still epoch 1 after its last batch')
  check.eq(ld:position(), 12, 'position')
  ld:next(x, y)
  check.eq(ld:epoch(), 2, 'rolled over')
  -- any tensor with the right element count, e.g. (B, 1, 4, 3)
  local x4 = T.zeros(8, 1, 4, 3)
  check.eq(ld:next(x4, y), 8, '4-d x')
  -- allocating form
  local n, xa, ya = ld:next()
  check.eq(n, 8, 'allocating next'); check.eq(xa:size(1), 8); check.eq(ya:numel(), 8)
  check.raises(function() ld:next(T.zeros(7, 12), y) end, 'has 84 elements')
  check.raises(function() ld:next(T.zeros(12, 8):t(), y) end, 'not contiguous')
  check.raises(function() ld:next(x, T.zeros(9)) end, 'the batch needs 8')
  check.raises(function() ds:loader { batch_size = 8 } end, "unknown option 'batch_size'")
  check.raises(function() ds:loader { shard = 2, shards = 2 } end, 'out of range')
  check.raises(function() ds:loader { batchsize = 0 } end, 'out of range')
  check.raises(function() ds:loader { batchsize = 64, shards = 2 } end, 'not one whole batch')
  check.raises(function() ds:loader { shuffle = 1 } end, 'must be a boolean')
end)

-- the examples a loader hands out over one epoch, in order
local function epoch_examples(ds, opts)
  local ld = ds:loader(opts)
  local out = {}
  local x, y = T.zeros(opts.batchsize, 12), T.zeros(opts.batchsize)
  for _ = 1, ld:batches_per_epoch() do
    local n = ld:next(x, y)
    for r = 1, n do out[#out + 1] = example_of(x, r) end
  end
  return out, ld
end

check.case('loader: reproducible shuffles, disjoint shards', function()
  local ds = assert(data.load(img, lab))
  local a = epoch_examples(ds, { batchsize = 10, seed = 1 })
  local b = epoch_examples(ds, { batchsize = 10, seed = 1 })
  local c = epoch_examples(ds, { batchsize = 10, seed = 2 })
  local d = epoch_examples(ds, { batchsize = 10, seed = 1, shuffle = false })
  check.eq(table.concat(a, ','), table.concat(b, ','), 'same seed, same order')
  check.ok(table.concat(a, ',') ~= table.concat(c, ','), 'other seed, other order')
  for i = 1, 100 do check.eq(d[i], i - 1, 'unshuffled order') end
  -- three workers, no drop_last: every example exactly once per epoch
  local count = {}
  for s = 0, 2 do
    local ex, ld = epoch_examples(ds, { batchsize = 8, seed = 9, shard = s, shards = 3, drop_last = false })
    check.eq(#ex, ld:shard_size(), 'shard fully seen')
    for _, e in ipairs(ex) do count[e] = (count[e] or 0) + 1 end
  end
  for i = 0, 99 do check.eq(count[i], 1, 'example ' .. i .. ' seen once') end
  -- a partial last batch: n < batchsize and zero padding
  local ld = ds:loader { batchsize = 30, shuffle = false, drop_last = false }
  local x, y = T.zeros(30, 12), T.zeros(30)
  local ns = {}
  for i = 1, 4 do ns[i] = ld:next(x, y) end
  check.eq(table.concat(ns, ','), '30,30,30,10', 'partial batch sizes')
  check.eq(x:get(11, 1), 0, 'padding zeroed')
  -- seek resumes exactly
  local l1 = ds:loader { batchsize = 10, seed = 4 }
  for _ = 1, 13 do l1:next(x:narrow(1, 1, 10), y:narrow(1, 1, 10)) end
  local x1 = T.zeros(10, 12)
  l1:next(x1, T.zeros(10))
  local l2 = ds:loader { batchsize = 10, seed = 4 }
  l2:seek(2, 3)
  local x2 = T.zeros(10, 12)
  l2:next(x2, T.zeros(10))
  check.eq(x1:sum(), x2:sum(), 'seek gives the same batch')
end)

check.case('batches: the whole set in order', function()
  local ds = assert(data.load(img, lab))
  local total, rows, last = 0, {}, nil
  for x, y, n in ds:batches(32) do
    check.eq(x:size(1), n, 'x rows'); check.eq(y:numel(), n, 'y rows')
    for r = 1, n do
      rows[#rows + 1] = example_of(x, r)
      check.eq(y:get(r), (total + r - 1) % 10, 'label in order')
    end
    total = total + n
    last = n
  end
  check.eq(total, 100, 'all examples'); check.eq(last, 4, 'last batch')
  for i = 1, 100 do check.eq(rows[i], i - 1, 'in order') end
  local k = 0
  for _, _, n in ds:batches(1000) do k = k + n end
  check.eq(k, 100, 'batch larger than the set')
end)

check.case('a held-out tail: loader limit, batches over a range', function()
  local ds = assert(data.load(img, lab))
  -- two shards over the first 80: every one of 0..79 once an epoch, never 80..99
  local count = {}
  for s = 0, 1 do
    for e = 1, 2 do
      local ld = ds:loader { batchsize = 8, seed = 5, shard = s, shards = 2, drop_last = false, limit = 80 }
      check.eq(ld:shard_size(), 40, 'a shard of the 80')
      local x, y = T.zeros(8, 12), T.zeros(8)
      for _ = 1, e * ld:batches_per_epoch() do
        local n = ld:next(x, y)
        for r = 1, n do
          local i = example_of(x, r)
          count[i] = (count[i] or 0) + 1
        end
      end
    end
  end
  for i = 0, 79 do check.eq(count[i], 3, 'example ' .. i .. ' in each of 3 epochs') end
  for i = 80, 99 do check.eq(count[i], nil, 'held-out example ' .. i .. ' never trained on') end
  check.raises(function() ds:loader { limit = 101 } end, 'out of range')
  -- the held-out 20, in order, 7 at a time
  local seen, sizes = {}, {}
  for x, y, n in ds:batches(7, 81, 20) do
    sizes[#sizes + 1] = n
    for r = 1, n do
      seen[#seen + 1] = example_of(x, r)
      check.eq(y:get(r), seen[#seen] % 10, 'its label')
    end
  end
  check.eq(table.concat(sizes, ','), '7,7,6', 'batch sizes')
  for k = 1, 20 do check.eq(seen[k], 79 + k, 'example ' .. (79 + k)) end
  local k = 0
  for _, _, n in ds:batches(1000, 91) do k = k + n end
  check.eq(k, 10, 'from 91 to the end')
  check.raises(function() ds:batches(10, 0) end, 'first example out of range')
  check.raises(function() ds:batches(10, 95, 7) end, 'count out of range')
end)

check.case('the real Fashion-MNIST', function()
  local ok = io.open(data.default_dir .. '/train-images-idx3-ubyte.gz', 'rb')
  if not ok then print('skip: Fashion-MNIST not installed'); return end
  ok:close()
  local tr = assert(data.mnist(nil, 'train'))
  local te = assert(data.mnist())
  check.eq(tr:count(), 60000, 'train count'); check.eq(te:count(), 60000, 'default split is train')
  te = assert(data.mnist(nil, 'test'))
  check.eq(te:count(), 10000, 'test count')
  check.eq(select(2, tr:shape()), 28, 'cols')
  local ld = tr:loader { batchsize = 64, seed = 1, shard = 1, shards = 2 }
  check.eq(ld:batches_per_epoch(), 468, '30000 // 64')
  local x, y = T.zeros(64, 1, 28, 28), T.zeros(64)
  ld:next(x, y)
  check.ok(x:max() <= 1 and (-x):max() <= 0, 'pixels in [0, 1]')
  check.ok(y:max() <= 9 and (-y):max() <= 0, 'labels in 0..9')
end)

os.execute('rm -rf ' .. dir)
check.done()
