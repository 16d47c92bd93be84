-- dtf.nn: layers over the C kernels, in the Torch7 nn spirit.
--
-- A model's parameters live in ONE flat float32 buffer and its gradients in
-- a second one laid out the same way (llm.c's malloc_and_point_parameters,
-- nn's Module:getParameters): every layer's weight and bias are views into
-- them, so a checkpoint or a ps shard is just a range of the flat buffer.
--
-- Each layer keeps its output and input-gradient buffers between calls and
-- reallocates them only when the batch size changes, so a training step
-- allocates nothing. Parameter gradients accumulate (+=); Sequential:zero_grad()
-- clears them. Input gradients are overwritten.
local T = require 'dtf.tensor'
local util = require 'dtf.util'

local nn = {}

-- ---- classes ---------------------------------------------------------------

local function class(name, parent)
  local c = {}
  c.__index = c
  c.__name = name
  if parent then setmetatable(c, { __index = parent }) end
  c.new = function(...)
    local o = setmetatable({}, c)
    o:init(...)
    return o
  end
  setmetatable(c, { __index = parent, __call = function(_, ...) return c.new(...) end })
  -- Metamethods are not inherited through __index: a layer without a
  -- __tostring of its own prints as its parent does ('nn.ReLU').
  if parent then c.__tostring = parent.__tostring end
  nn[name] = c
  return c
end

local Module = class('Module')

function Module:init() end
-- {name=, shape=, fan_in=} for each parameter tensor, in layout order.
function Module:param_specs() return {} end
function Module:__tostring() return 'nn.' .. getmetatable(self).__name end

-- A buffer cached by name, of shape (n, ...), also kept as self[name]. Its
-- storage only grows: a smaller n (the last, partial batch of an
-- evaluation) gets a view of the first n rows instead of a second
-- allocation, so training and evaluation at different batch sizes share
-- one set of buffers. Shapes are compared on the Lua side, with no C call
-- and no new string in the steady state.
function Module:buffer(name, n, ...)
  local bufs = self._bufs
  if not bufs then bufs = {}; self._bufs = bufs end
  local e = bufs[name]
  local k = select('#', ...)
  if e then
    local shp = e.shape
    if shp[1] == n and #shp == k + 1 then
      local same = true
      for i = 1, k do
        if shp[i + 1] ~= select(i, ...) then same = false; break end
      end
      if same then return e.t end
    end
    local cshp = e.capshape
    local fits = #cshp == k + 1 and cshp[1] >= n
    for i = 1, k do
      if not fits then break end
      fits = cshp[i + 1] == select(i, ...)
    end
    if fits then
      e.t, e.shape = n == cshp[1] and e.cap or e.cap:narrow(1, 1, n), { n, ... }
      self[name] = e.t
      return e.t
    end
  end
  local b = T.zeros(n, ...)
  bufs[name] = { t = b, shape = { n, ... }, cap = b, capshape = { n, ... } }
  self[name] = b
  return b
end

-- ---- Linear ----------------------------------------------------------------

local Linear = class('Linear', Module)

-- weight (out, in) and bias (out), PyTorch's layout and default init:
-- U(-1/sqrt(in), 1/sqrt(in)) for both.
function Linear:init(nin, nout)
  assert(math.type(nin) == 'integer' and nin > 0, 'nn.Linear: in features must be a positive integer')
  assert(math.type(nout) == 'integer' and nout > 0, 'nn.Linear: out features must be a positive integer')
  self.nin, self.nout = nin, nout
end

function Linear:param_specs()
  return { { name = 'weight', shape = { self.nout, self.nin }, fan_in = self.nin },
           { name = 'bias', shape = { self.nout }, fan_in = self.nin } }
end

-- y = x W^T + b in one C call; with a ReLU fused into it (Sequential does
-- that for Linear followed by ReLU) the output is already max(y, 0).
function Linear:forward(x)
  return T.linear(self:buffer('output', x:size(1), self.nout), x, self.weight, self.bias, self.relu)
end

-- One C call: the gradient masked by the ReLU's output (when fused), the
-- bias and weight gradients accumulated, the input gradient overwritten.
function Linear:backward(x, dy)
  local n = x:size(1)
  local dx = not self.skip_input_grad and self:buffer('grad_input', n, self.nin) or nil
  local y, dym = nil, nil
  if self.relu then y, dym = self.output, self:buffer('grad_masked', n, self.nout) end
  T.linear_backward(dx, self.gweight, self.gbias, dy, x, self.weight, y, dym)
  return dx
end

function Linear:__tostring() return string.format('nn.Linear(%d -> %d)', self.nin, self.nout) end

-- ---- ReLU ------------------------------------------------------------------

local ReLU = class('ReLU', Module)

-- Fused into the layer before it (Sequential:build): the input is already
-- max(x, 0) and that layer masks the gradient, so both ways pass through.
function ReLU:forward(x)
  if self.fused then return x end
  return T.relu(self:buffer('output', table.unpack(x:size())), x)
end

function ReLU:backward(x, dy)
  if self.fused then return dy end
  if self.skip_input_grad then return nil end
  return T.relu_backward(self:buffer('grad_input', table.unpack(x:size())), dy, x)
end

-- ---- Conv2d ----------------------------------------------------------------

local Conv2d = class('Conv2d', Module)

-- weight (out, in, k, k), bias (out); input (N, in, H, W).
function Conv2d:init(cin, cout, k, stride, pad)
  self.cin, self.cout, self.k = cin, cout, k
  self.stride, self.pad = stride or 1, pad or 0
end

function Conv2d:param_specs()
  local fan = self.cin * self.k * self.k
  return { { name = 'weight', shape = { self.cout, self.cin, self.k, self.k }, fan_in = fan },
           { name = 'bias', shape = { self.cout }, fan_in = fan } }
end

function Conv2d:out_size(h, w)
  return (h + 2 * self.pad - self.k) // self.stride + 1, (w + 2 * self.pad - self.k) // self.stride + 1
end

function Conv2d:forward(x, inference)
  if x:dim() ~= 4 or x:size(2) ~= self.cin then
    error(string.format('%s: input must be (N, %d, H, W), got %s', tostring(self), self.cin,
                        table.concat(x:size(), 'x')), 2)
  end
  local n, oh, ow = x:size(1), self:out_size(x:size(3), x:size(4))
  -- The im2col workspace is cached inside dtf.tensor, shared by every conv.
  if self.block then
    -- conv + bias + ReLU + 2x2 max-pool in one kernel (Sequential:build)
    local y = self:buffer('output', n, self.cout, oh // 2, ow // 2)
    local idx = not inference and self:buffer('indices', n, self.cout, oh // 2, ow // 2) or nil
    T.conv2d_relu_pool(y, x, self.weight, self.bias, self.stride, self.pad, idx)
    return y
  end
  local y = self:buffer('output', n, self.cout, oh, ow)
  T.conv2d(y, x, self.weight, self.bias, self.stride, self.pad)
  return y
end

function Conv2d:backward(x, dy)
  local dx = nil
  if not self.skip_input_grad then dx = self:buffer('grad_input', table.unpack(x:size())) end
  if self.block then
    T.conv2d_relu_pool_backward(dx, self.gweight, self.gbias, dy, self.output, self.indices, x,
                                self.weight, self.stride, self.pad)
    return dx
  end
  T.conv2d_backward(dx, self.gweight, self.gbias, dy, x, self.weight, self.stride, self.pad)
  return dx
end

function Conv2d:__tostring()
  return string.format('nn.Conv2d(%d -> %d, %dx%d, stride %d, pad %d)', self.cin, self.cout,
                       self.k, self.k, self.stride, self.pad)
end

-- ---- MaxPool2d (2x2, stride 2) -----------------------------------------------

local MaxPool2d = class('MaxPool2d', Module)

function MaxPool2d:forward(x)
  if self.fused then return x end
  local n, c, h, w = x:size(1), x:size(2), x:size(3), x:size(4)
  local y = self:buffer('output', n, c, h // 2, w // 2)
  local idx = self:buffer('indices', n, c, h // 2, w // 2)
  T.maxpool2d(y, x, idx)
  return y
end

function MaxPool2d:backward(x, dy)
  if self.fused then return dy end
  if self.skip_input_grad then return nil end
  return T.maxpool2d_backward(self:buffer('grad_input', table.unpack(x:size())), dy, self.indices)
end

-- ---- View / Flatten --------------------------------------------------------

-- View(d1, d2, ...) reshapes each example, keeping the batch dimension:
-- View(1, 28, 28) turns (N, 784) into (N, 1, 28, 28). Views share storage.
local View = class('View', Module)

function View:init(...) self.shape = { ... } end

function View:forward(x)
  return x:view(x:size(1), table.unpack(self.shape))
end

function View:backward(x, dy)
  if self.skip_input_grad then return nil end
  return dy:view(table.unpack(x:size()))
end

function View:__tostring() return 'nn.View(' .. table.concat(self.shape, ', ') .. ')' end

local Flatten = class('Flatten', View)
function Flatten:init() self.shape = { -1 } end
function Flatten:__tostring() return 'nn.Flatten()' end

-- ---- SoftmaxCrossEntropy ---------------------------------------------------

-- Mean cross-entropy of softmax(logits) against class labels (floats 0..C-1).
-- forward computes the gradient in the same pass; backward hands it out.
local SoftmaxCrossEntropy = class('SoftmaxCrossEntropy', Module)

function SoftmaxCrossEntropy:forward(logits, labels)
  local d = self:buffer('grad_input', logits:size(1), logits:size(2))
  self.loss = T.cross_entropy(logits, labels, d)
  return self.loss
end

function SoftmaxCrossEntropy:backward()
  return self.grad_input
end

-- ---- Sequential: the flat buffers ------------------------------------------

local Sequential = class('Sequential', Module)

-- Sequential{layer, layer, ...} or Sequential(layer, layer, ...)
function Sequential:init(...)
  local layers = select('#', ...) == 1 and getmetatable((...)) == nil and (...) or { ... }
  self.layers = {}
  for i, l in ipairs(layers) do
    if type(l) ~= 'table' or not l.forward then
      error(string.format('nn.Sequential: layer %d is not a module', i), 3)
    end
    self.layers[i] = l
  end
end

-- Allocates the flat parameter and gradient buffers, points every layer's
-- tensors into them, and initialises the parameters from seed.
function Sequential:build(seed)
  local layout, P = {}, 0
  for i, l in ipairs(self.layers) do
    for _, s in ipairs(l:param_specs()) do
      local n = 1
      for _, d in ipairs(s.shape) do n = n * d end
      -- Names like PyTorch's nn.Sequential state_dict: "0.weight".
      layout[#layout + 1] = { name = (l.name or tostring(i - 1)) .. '.' .. s.name, layer = l,
                              key = s.name, shape = s.shape, offset = P, numel = n, fan_in = s.fan_in }
      P = P + n
    end
  end
  self.nparams = P
  self.params = T.zeros(math.max(P, 1))
  self.grads = T.zeros(math.max(P, 1))
  local rng = T.rng(seed or 1)
  for _, e in ipairs(layout) do
    local p = self.params:narrow(1, e.offset + 1, e.numel):view(table.unpack(e.shape))
    local g = self.grads:narrow(1, e.offset + 1, e.numel):view(table.unpack(e.shape))
    local bound = 1 / math.sqrt(e.fan_in or 1)
    p:uniform_(rng, -bound, bound)
    e.layer[e.key], e.layer['g' .. e.key] = p, g
  end
  for _, l in ipairs(self.layers) do
    if l.bound then l:bound() end
  end
  -- The first layer's input is the data: no gradient needed for it, nor
  -- for the layers up to the first with parameters (a View in front).
  for _, l in ipairs(self.layers) do
    l.skip_input_grad = true
    if #l:param_specs() > 0 then break end
  end
  self.layout = layout
  self:fuse()
  return self
end

-- Fuses what runs faster as one kernel, the layers' parameters and results
-- unchanged: Conv2d, ReLU, MaxPool2d into one block (the full-size
-- activation never exists), and Linear, ReLU into one layer (no second
-- buffer and pass). The fused followers pass through.
function Sequential:fuse()
  local L = self.layers
  for i, l in ipairs(L) do
    local a, b = L[i + 1], L[i + 2]
    local mt, ma, mb = getmetatable(l), a and getmetatable(a), b and getmetatable(b)
    if mt == nn.Conv2d and ma == nn.ReLU and mb == nn.MaxPool2d and not a.fused then
      l.block, a.fused, b.fused = true, true, true
    elseif mt == nn.Linear and ma == nn.ReLU and not a.fused then
      l.relu, a.fused = true, true
    end
  end
end

function Sequential:parameters()
  assert(self.params, 'nn.Sequential: call build(seed) first')
  return self.params, self.grads, self.layout
end

-- A checksum of the layout (names, shapes, offsets): two tasks agree on it
-- exactly when they run the same model.
function Sequential:checksum()
  local parts = {}
  for _, e in ipairs(self.layout) do
    parts[#parts + 1] = string.format('%s:%s@%d', e.name, table.concat(e.shape, 'x'), e.offset)
  end
  return util.fnv1a(table.concat(parts, ';'))
end

function Sequential:zero_grad()
  if self.zeroed then
    self.zeroed = false
    return
  end
  self.grads:zero()
end

-- A layer's name in messages: its __tostring, one line ('nn.Sequential'
-- for a nested one), or its name field for a plain-table layer.
local function layer_name(l)
  if getmetatable(l) == Sequential then return 'nn.Sequential' end
  local mt = getmetatable(l)
  if type(mt) == 'table' and mt.__tostring then return tostring(l) end
  return type(l.name) == 'string' and l.name or 'a custom layer'
end
nn.layer_name = layer_name

-- The position Lua puts before an error raised in this file (a kernel
-- called by a built-in layer): dropped, since the layer's name says more.
local here = debug.getinfo(1, 'S').short_src .. ':'

-- A string error of layer i becomes "layer i (NAME): message"; an error
-- object that is not a string (dtf.fail's table) goes through untouched.
local function layer_error(i, l, err)
  if type(err) ~= 'string' then return err end
  if err:sub(1, #here) == here then err = err:sub(#here + 1):gsub('^%d+: ', '', 1) end
  return string.format('layer %d (%s): %s', i, layer_name(l), err)
end

-- The flat gradients are all zero already (an optimizer cleared them as it
-- read them): the next zero_grad() skips its pass.
function Sequential:grads_zeroed()
  self.zeroed = true
end

-- Each layer runs under pcall so that an error names the layer (its index
-- in self.layers, 1-based like the Lua table, and its type); a pcall costs
-- well under a microsecond, next to a step's hundreds. inference = true: no
-- backward will follow (layers may keep less).
function Sequential:forward(x, inference)
  local inputs, layers = self.inputs, self.layers
  if not inputs then inputs = {}; self.inputs = inputs end
  for i = 1, #layers do
    local l = layers[i]
    inputs[i] = x
    local ok, y = pcall(l.forward, l, x, inference)
    if not ok then error(layer_error(i, l, y), 0) end
    x = y
  end
  self.output = x
  return x
end

function Sequential:backward(x, dy)
  local inputs, layers = self.inputs, self.layers
  for i = #layers, 1, -1 do
    local l = layers[i]
    local ok, dx = pcall(l.backward, l, inputs[i], dy)
    if not ok then error(layer_error(i, l, dx), 0) end
    dy = dx
  end
  return dy
end

-- "weight 100x784, bias 100" for a layer's parameters ('' for none).
local function shapes_of(l)
  local parts, n = {}, 0
  for _, s in ipairs(l:param_specs()) do
    local k = 1
    for _, d in ipairs(s.shape) do k = k * d end
    parts[#parts + 1] = s.name .. ' ' .. table.concat(s.shape, 'x')
    n = n + k
  end
  return table.concat(parts, ', '), n
end
nn.shapes_of = shapes_of

-- One line per layer, [index] as in self.layers, then its parameters'
-- shapes; the total counts every parameter (built or not).
function Sequential:__tostring()
  local rows, width, total = {}, 0, 0
  for i, l in ipairs(self.layers) do
    local name = getmetatable(l) == Sequential and tostring(l):gsub('\n', '\n    ') or layer_name(l)
    local shapes, n = '', 0
    if type(l.param_specs) == 'function' then shapes, n = shapes_of(l) end
    rows[i] = { string.format('  [%d] %s', i, name), shapes }
    if shapes ~= '' and not name:find('\n') then width = math.max(width, #rows[i][1]) end
    total = total + n
  end
  local lines = { 'nn.Sequential {' }
  for _, r in ipairs(rows) do
    if r[2] == '' then lines[#lines + 1] = r[1]
    else lines[#lines + 1] = r[1] .. string.rep(' ', width - #r[1] + 2) .. r[2] end
  end
  local count = self.nparams or total
  lines[#lines + 1] = string.format('} %d parameter%s%s', count, count == 1 and '' or 's',
                                    self.nparams and '' or ' (not built: net:build(seed))')
  return table.concat(lines, '\n')
end

-- The parameter tensors in layout order: { {name=, tensor=}, ... }, views
-- into the flat buffer (what dtf.ckpt.save takes).
function Sequential:named_tensors()
  local out = {}
  for _, e in ipairs(self.layout) do out[#out + 1] = { name = e.name, tensor = e.layer[e.key] } end
  return out
end

local function shape_str(t)
  local d = {}
  for i = 1, t:dim() do d[i] = t:size(i) end
  return table.concat(d, 'x')
end

-- Copies tensors (name -> tensor, e.g. from dtf.ckpt.load) into the model.
-- Raises on any mismatch, naming the tensor: a missing one, one of another
-- shape (78400 elements are not a 50x784 weight), or a name the model does
-- not have (one ps shard's file holds "params", not the layers). Nothing is
-- copied unless everything matches. Returns the model.
function Sequential:load(tensors)
  assert(self.layout, 'nn.Sequential: call build(seed) first')
  if type(tensors) ~= 'table' then error('load: expected a table of tensors (dtf.ckpt.load), got ' .. type(tensors), 2) end
  local want = {}
  for _, e in ipairs(self.layout) do want[e.name] = true end
  local extra = {}
  for name in pairs(tensors) do if not want[name] then extra[#extra + 1] = tostring(name) end end
  table.sort(extra)
  if #extra > 0 then
    error(string.format("load: the file has tensor%s %s, which this model does not (a ps shard's "
                        .. "checkpoint? `dtf export` merges the shards into one model file)",
                        #extra > 1 and 's' or '', table.concat(extra, ', ')), 2)
  end
  for _, e in ipairs(self.layout) do
    local t = tensors[e.name]
    if not t then
      error(string.format("load: the file has no tensor '%s' (%s)", e.name, table.concat(e.shape, 'x')), 2)
    end
    local same = t:dim() == #e.shape
    for i = 1, #e.shape do same = same and t:size(i) == e.shape[i] end
    if not same then
      error(string.format("load: tensor '%s' is %s (%d elements), the model's is %s (%d)", e.name,
                          shape_str(t), t:numel(), table.concat(e.shape, 'x'), e.numel), 2)
    end
  end
  for _, e in ipairs(self.layout) do e.layer[e.key]:copy(tensors[e.name]) end
  return self
end

-- The classes of a batch of scores (N, C): a tensor of N class numbers,
-- 0-based like the data set's labels (tensor indices are 1-based, Lua's).
function nn.classes(scores)
  local _, idx = scores:max(2)
  return idx:view(idx:numel()):add(-1)
end

-- The predicted classes (0-based) of a batch of inputs x (N, features).
function Sequential:predict(x)
  return nn.classes(self:forward(x))
end

-- What an evaluation may hold for activations: its batch size is what
-- fits (the CNN at batch 1000 held 500 MB).
nn.EVAL_BUDGET = 16 * 2 ^ 20

-- Floats the forward pass keeps per example (the input and every buffer the
-- layers hold for it), probed with one example in inference.
local function floats_per_example(net, dataset)
  local x = dataset:batches(1)()
  net:forward(x, true)
  local total = x:numel() + 1
  for _, l in ipairs(net.layers) do
    for _, e in pairs(l._bufs or {}) do
      if e.shape[1] == 1 then
        local n = 1
        for _, d in ipairs(e.shape) do n = n * d end
        total = total + n
      end
    end
  end
  return total
end

-- The evaluation batch size that keeps net's activations within budget
-- bytes (nn.EVAL_BUDGET): at least 1, at most the set.
function nn.eval_batchsize(net, dataset, budget)
  local per = floats_per_example(net, dataset) * 4
  local bs = math.floor((budget or nn.EVAL_BUDGET) / per)
  return math.max(1, math.min(bs, dataset:count()))
end

-- Accuracy of net over a dataset (dtf.data), in batches: correct / count.
-- how: a batch size, or { budget = bytes } (default nn.EVAL_BUDGET).
function nn.evaluate(net, dataset, how)
  local bs = how
  if type(how) ~= 'number' then bs = nn.eval_batchsize(net, dataset, how and how.budget) end
  local correct, seen = 0, 0
  for x, y, n in dataset:batches(bs) do
    correct = correct + T.accuracy(net:forward(x, true), y)
    seen = seen + n
  end
  return correct / math.max(seen, 1), seen
end

return nn
