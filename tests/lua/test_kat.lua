-- test_kat: the known-answer test (llm.c's test_gpt2.c): the loss and every
-- parameter gradient of models/mnist.lua's MLP and CNN on a fixed batch with
-- fixed weights, and the parameters after three Adam steps, against a
-- PyTorch float64 answer stored in tests/kat/fixture.safetensors.
--
-- The fixture holds answers only: the batch is the first examples of
-- Fashion-MNIST's training set and the weights come from a formula that
-- tests/kat/make_fixture.py computes too (its docstring says what is stored
-- and how). `make kat-fixture` rewrites the fixture with python3-torch;
-- `make kat-fixture-check` proves that the script still gives the committed
-- bytes. This test needs no torch.
--
-- The answer is float64 rounded to float32, so the error measured is dtf's
-- own float32 rounding. Tolerances (every figure "seen" is the worst over the
-- whole fixture and six OpenBLAS kernel sets, OPENBLAS_CORETYPE unset (here
-- Prescott), Nehalem, Sandybridge, Haswell (= Zen, AMD's AVX2), SkylakeX;
-- each bound leaves a factor of 10 or more, while a real bug, a wrong index,
-- a missing term, a wrong constant, is off by 1e-3 or more):
--   loss, gradients, sums: per tensor, max |dtf - answer| <= RTOL * max
--     |answer| (the infinity-norm relative error, the yardstick for float
--     kernels whose summation orders differ). PyTorch's own float32 error on
--     these gradients is up to 1.5e-6 (make_fixture.py prints it).
--   Adam's update (after - before), per element: lr * (ADAM_ABS + ADAM_COND *
--     max|g| / |g[i]|), g the answer's gradient at the start (the second term
--     dropped where g[i] = 0). Adam divides each gradient by its own running
--     size, so where an element's gradients are small the gradient's absolute
--     rounding error (a share of max|g|, bounded above) comes out amplified
--     by max|g| / |g|: a normwise bound on the update fails on the few
--     elements whose gradient is 1e-3 of the largest (3.6e-3 lr seen in the
--     CNN's 4.weight), where Adam itself is ill-conditioned. The first
--     gradient is all the fixture knows of an element's three, hence ADAM_ABS
--     for the elements whose later gradients are the small ones. fc1's update
--     sums carry those elements' errors summed, hence their wider bound.
local check = require 'check'
local T = require 'dtf.tensor'
local optim = require 'dtf.optim'
local ps = require 'dtf.ps'
local ckpt = require 'dtf.ckpt'
local data = require 'dtf.data'
local nn = require 'dtf.nn'

local here = (arg and arg[0] or ''):match('^(.*)/[^/]*$') or '.'
local root = here .. '/../..'
local FIXTURE = root .. '/tests/kat/fixture.safetensors'
local DATADIR = '/usr/share/datasets/fashion-mnist'

local RTOL = {
  loss = 2e-6,        -- seen 1.6e-7 (the loss after the third Adam step)
  grad = 1e-5,        -- seen 4e-7
  sums = 2e-5,        -- seen 1.8e-6 (float32 sums of 1024 to 3136 values)
  adam_sums = 2e-3,   -- seen 1.5e-4
}
local ADAM_ABS = 2e-3   -- seen 1.5e-4 (CNN, Haswell kernels)
local ADAM_COND = 4e-4  -- seen 2.4e-5

local ref, meta = ckpt.load(FIXTURE)
if not ref then
  check.ok(false, 'cannot load the fixture: ' .. tostring(meta))
  check.done()
end
local BATCH = tonumber(meta.batch)
local STRIDE = tonumber(meta.sample_stride)

-- ---- the weights' formula (make_fixture.py's formula_weights) ----------------

local function lowbias32(x)
  x = x ~ (x >> 16)
  x = (x * 0x7feb352d) & 0xffffffff
  x = x ~ (x >> 15)
  x = (x * 0x846ca68b) & 0xffffffff
  return x ~ (x >> 16)
end

-- Element k (0-based) of the j-th tensor: (2u - 1) / sqrt(fan_in), u =
-- lowbias32((j << 24) + k) / 2^32, computed in double, stored as float32.
local function set_formula_weights(net)
  for j, e in ipairs(net.layout) do
    local flat = net.params:narrow(1, e.offset + 1, e.numel)
    local bound, base = 1 / math.sqrt(e.fan_in), j << 24
    for k = 0, e.numel - 1 do
      flat[k + 1] = (2 * (lowbias32(base + k) / 4294967296.0) - 1) * bound
    end
  end
end

-- ---- comparisons ---------------------------------------------------------------

local function flat(t) return t:contiguous():view(-1) end
local function count(t) return type(t) == 'table' and #t or t:numel() end

local function max_abs(v)
  local m = 0
  for i = 1, count(v) do m = math.max(m, math.abs(v[i])) end
  return m
end

-- Compares flat got with flat want (tensors or lists) element by element,
-- |got[i] - want[i]| <= tol(i); prints the worst element's share of its
-- tolerance (the margin), and fails naming the worst element.
local function within(what, got, want, tol)
  local n = count(want)
  if not check.eq(count(got), n, what .. ': element count') then return end
  local worst, wi, err = -1, 1, 0
  for i = 1, n do
    local d = math.abs(got[i] - want[i])
    local r = d ~= d and math.huge or d / tol(i)
    if r > worst then worst, wi, err = r, i, d end
  end
  print(string.format('  %-34s max |answer| %-9.4g worst error %-9.3g = %.3g of its tolerance',
                      what, max_abs(want), err, worst))
  check.ok(worst <= 1, string.format('%s: element %d: dtf %.9g, answer %.9g: error %.3g is over the tolerance %.3g',
                                     what, wi, got[wi], want[wi], err, tol(wi)))
end

-- The infinity-norm relative error: max |got - want| <= rtol * max |want|.
local function normwise(what, got, want, rtol)
  local bound = rtol * max_abs(want)
  within(what, got, want, function() return bound end)
end

-- Adam's update, element by element: lr * (ADAM_ABS + ADAM_COND * max|g| / |g[i]|)
-- where g is the answer's first gradient (see the top of the file).
local function adam_update(what, got, want, g, lr)
  local gmax = max_abs(g)
  within(what, got, want, function(i)
    local gi = math.abs(g[i])
    return lr * (ADAM_ABS + (gi > 0 and ADAM_COND * gmax / gi or 0))
  end)
end

-- Every stride-th element of a flat tensor from the first (Python's [::stride]).
local function sample(t, stride)
  local f, out = flat(t), {}
  for i = 1, f:numel(), stride do out[#out + 1] = f[i] end
  return out
end

local function minus(a, b)
  local out = {}
  for i = 1, count(a) do out[i] = a[i] - b[i] end
  return out
end

local function fixture(name)
  local t = ref[name]
  if not check.ok(t ~= nil, 'the fixture has no tensor ' .. name) then error('fixture incomplete: ' .. name, 0) end
  return t
end

-- ---- the batch ---------------------------------------------------------------

local x, y = fixture('input/x'), fixture('input/y')

check.case('the batch is the data set\'s first examples, as dtf.data converts them', function()
  local ds, err = data.mnist(DATADIR, 'train')
  if not check.ok(ds, 'data.mnist: ' .. tostring(err)) then return end
  local same, labels = true, true
  for i = 1, BATCH do
    local xi, label = ds:example(i)
    local fi, row = flat(xi), x:select(1, i)
    for k = 1, fi:numel() do
      if fi[k] ~= row[k] then same = false end
    end
    if label ~= y[i] then labels = false end
  end
  check.ok(same, 'pixels differ from input/x: the data set changed or dtf.data converts differently')
  check.ok(labels, 'labels differ from input/y')
end)

-- ---- one model -----------------------------------------------------------------

-- The parameter names the fixture has gradients of, for model tag.
local function fixture_params(tag)
  local names = {}
  for name in pairs(ref) do
    local p = name:match('^' .. tag .. '/grad/(.+)$')
    if p and not p:match('%.rowsum$') and not p:match('%.colsum$') then names[p:gsub('%.sample$', '')] = true end
  end
  return names
end

-- The model's parameters are the fixture's, with the same shapes (fc1's
-- through its sample and sums' element counts).
local function check_layout(tag, net)
  local extra = fixture_params(tag)
  for _, e in ipairs(net.layout) do
    local full = ref[tag .. '/grad/' .. e.name]
    if full then
      check.eq(table.concat(full:size(), 'x'), table.concat(e.shape, 'x'), tag .. ' ' .. e.name .. ' shape')
    else
      check.ok(ref[tag .. '/grad/' .. e.name .. '.sample'], tag .. ': the fixture has no gradient of ' .. e.name)
    end
    extra[e.name] = nil
  end
  for name in pairs(extra) do check.ok(false, tag .. ': the model has no parameter ' .. name .. ' of the fixture') end
end

local function check_init(tag, net)
  local exact = true
  for _, e in ipairs(net.layout) do
    local want = fixture(tag .. '/init/' .. e.name)
    local got = sample(net.params:narrow(1, e.offset + 1, e.numel), math.max(1, e.numel // 64))
    for i = 1, want:numel() do
      if got[i] ~= want[i] then exact = false end
    end
  end
  check.ok(exact, tag .. ': the formula weights differ from make_fixture.py\'s (init/ samples)')
end

-- The gradient of e: stored whole, or (fc1) as a sample and row and column sums.
local function compare_grad(tag, e)
  local base, got = tag .. '/grad/' .. e.name, e.layer['g' .. e.key]
  if ref[base] then return normwise(base, flat(got), flat(ref[base]), RTOL.grad) end
  normwise(base .. '.sample', sample(got, STRIDE), fixture(base .. '.sample'), RTOL.grad)
  normwise(base .. '.rowsum', got:sum(2), fixture(base .. '.rowsum'), RTOL.sums)
  normwise(base .. '.colsum', got:sum(1), fixture(base .. '.colsum'), RTOL.sums)
end

-- The update (after - before) of e by the Adam steps, the same two ways.
local function compare_update(tag, e, before, lr)
  local base, p = tag .. '/adam/' .. e.name, e.layer[e.key]
  local p0 = before:narrow(1, e.offset + 1, e.numel):view(table.unpack(e.shape))
  local delta = p:sub(p0)
  if ref[base] then
    return adam_update(base .. ' (update)', flat(delta), flat(ref[base]:sub(p0)),
                       flat(fixture(tag .. '/grad/' .. e.name)), lr)
  end
  local s0 = sample(p0, STRIDE)
  adam_update(base .. '.sample (update)', minus(sample(p, STRIDE), s0),
              minus(fixture(base .. '.sample'), s0), fixture(tag .. '/grad/' .. e.name .. '.sample'), lr)
  normwise(base .. '.rowsum', delta:sum(2), fixture(base .. '.rowsum'), RTOL.adam_sums)
  normwise(base .. '.colsum', delta:sum(1), fixture(base .. '.colsum'), RTOL.adam_sums)
end

-- models/mnist.lua as train.lua builds it (dtf.model), hp over its defaults.
local function build_model(hp)
  local model = require 'dtf.model'
  local m = model.load(root .. '/models/mnist.lua')
  local schema = model.schema({}, m)
  for _, e in ipairs(schema) do if hp[e.name] == nil then hp[e.name] = e.default end end
  return model.build(m, hp, schema, 1)
end

local function known_answer(tag, hp)
  local net = build_model(hp)
  local params, grads = net:parameters()
  check_layout(tag, net)
  set_formula_weights(net)
  check_init(tag, net)
  local before = params:clone()
  local criterion = nn.SoftmaxCrossEntropy()
  local function loss_and_grads()
    net:zero_grad()
    local loss = criterion:forward(net:forward(x), y)
    net:backward(x, criterion:backward())
    return loss
  end

  normwise(tag .. '/loss', { loss_and_grads() }, fixture(tag .. '/loss'), RTOL.loss)
  for _, e in ipairs(net.layout) do compare_grad(tag, e) end

  -- Three Adam steps with train.lua's defaults (the fixture's metadata)
  -- through the shard one process trains with (ps.local_shard: the ps's own
  -- loop and schedule code); the same batch each step.
  local lr = tonumber(meta.lr)
  local shard = assert(ps.local_shard { params = params, optimizer = optim.config({
    optimizer = 'adam', learningrate = lr, beta1 = tonumber(meta.beta1), beta2 = tonumber(meta.beta2),
    eps = tonumber(meta.eps), momentum = 0, weight_decay = 0 }, 0) })
  local losses = {}
  for i = 1, tonumber(meta.adam_steps) do
    losses[i] = loss_and_grads()
    shard:apply(grads)
  end
  shard:close()
  losses[#losses + 1] = criterion:forward(net:forward(x), y)
  normwise(tag .. '/adam/losses', losses, fixture(tag .. '/adam/losses'), RTOL.loss)
  for _, e in ipairs(net.layout) do compare_update(tag, e, before, lr) end
end

check.case('MLP 784-100-10: loss, gradients, three Adam steps', function()
  known_answer('mlp', { model = 'mlp' })
end)

check.case('CNN: loss, gradients, three Adam steps', function()
  known_answer('cnn', { model = 'cnn' })
end)

check.done()
