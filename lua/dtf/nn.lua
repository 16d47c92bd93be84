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
  nn[name] = c
  return c
end

local Module = class('Module')

function Module:init() end
-- {name=, shape=, fan_in=} for each parameter tensor, in layout order.
function Module:param_specs() return {} end
function Module:__tostring() return 'nn.' .. getmetatable(self).__name end

-- A buffer cached by name; reallocated when its shape changes.
function Module:buffer(name, ...)
  local b = self[name]
  if b then
    local n, same = select('#', ...), b:dim() == select('#', ...)
    for i = 1, n do
      if not same then break end
      same = b:size(i) == select(i, ...)
    end
    if same then return b end
  end
  b = T.zeros(...)
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

function Linear:bound()
  self.weight_t = self.weight:t()
end

function Linear:forward(x)
  local y = self:buffer('output', x:size(1), self.nout)
  T.matmul(y, x, self.weight_t)
  y:add_(self.bias)
  return y
end

function Linear:backward(x, dy)
  T.matmul(self.gweight, dy:t(), x, 1, 1)
  T.bias_backward(self.gbias, dy)
  if self.skip_input_grad then return nil end
  local dx = self:buffer('grad_input', x:size(1), self.nin)
  return T.matmul(dx, dy, self.weight)
end

function Linear:__tostring() return string.format('nn.Linear(%d -> %d)', self.nin, self.nout) end

-- ---- ReLU ------------------------------------------------------------------

local ReLU = class('ReLU', Module)

function ReLU:forward(x)
  return T.relu(self:buffer('output', table.unpack(x:size())), x)
end

function ReLU:backward(x, dy)
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

function Conv2d:forward(x)
  if x:dim() ~= 4 or x:size(2) ~= self.cin then
    error(string.format('%s: input must be (N, %d, H, W), got %s', tostring(self), self.cin,
                        table.concat(x:size(), 'x')), 2)
  end
  local oh, ow = self:out_size(x:size(3), x:size(4))
  local y = self:buffer('output', x:size(1), self.cout, oh, ow)
  -- The im2col workspace is cached inside dtf.tensor, shared by every conv.
  T.conv2d(y, x, self.weight, self.bias, self.stride, self.pad)
  return y
end

function Conv2d:backward(x, dy)
  local dx = nil
  if not self.skip_input_grad then dx = self:buffer('grad_input', table.unpack(x:size())) end
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
  local n, c, h, w = x:size(1), x:size(2), x:size(3), x:size(4)
  local y = self:buffer('output', n, c, h // 2, w // 2)
  local idx = self:buffer('indices', n, c, h // 2, w // 2)
  T.maxpool2d(y, x, idx)
  return y
end

function MaxPool2d:backward(x, dy)
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
  -- The first layer's input is the data: no gradient needed for it.
  if self.layers[1] then self.layers[1].skip_input_grad = true end
  self.layout = layout
  return self
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
  self.grads:zero()
end

function Sequential:forward(x)
  self.inputs = self.inputs or {}
  for i, l in ipairs(self.layers) do
    self.inputs[i] = x
    x = l:forward(x)
  end
  self.output = x
  return x
end

function Sequential:backward(x, dy)
  for i = #self.layers, 1, -1 do
    dy = self.layers[i]:backward(self.inputs[i], dy)
  end
  return dy
end

function Sequential:__tostring()
  local lines = { 'nn.Sequential {' }
  for i, l in ipairs(self.layers) do lines[#lines + 1] = string.format('  (%d) %s', i - 1, tostring(l)) end
  if self.nparams then lines[#lines + 1] = string.format('} %d parameters', self.nparams)
  else lines[#lines + 1] = '}' end
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

-- Accuracy of net over a dataset (dtf.data), in batches: correct / count.
function nn.evaluate(net, dataset, batchsize)
  local correct, seen = 0, 0
  for x, y, n in dataset:batches(batchsize or 1000) do
    correct = correct + T.accuracy(net:forward(x), y)
    seen = seen + n
  end
  return correct / math.max(seen, 1), seen
end

return nn
