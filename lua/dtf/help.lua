-- dtf.help: the REPL's help(). Lua cannot tell a C function's parameters,
-- so the signatures and one-line docs of dtf's functions and methods live
-- here, in a table that tests/lua/test_help.lua checks against the modules
-- (every function documented, every entry a function that exists).
--
--   help()          the modules and their functions, one line each
--   help(x)         a function's signature and what it does; a module's
--                   functions; a layer's type and parameter shapes; a
--                   tensor's shape and methods; any other value, printed
--   help('name')    the entries whose name is or ends with it ('zeros')
local pretty = require 'dtf.pretty'

local help = {}

-- The modules help() lists, in this order: the REPL's globals for it,
-- the module, the prefix its entries have below, what it is for.
help.modules = {
  { 'T, tensor', 'dtf.tensor', 'T', 'float32 n-d tensors (views share storage) and their kernels' },
  { 'nn', 'dtf.nn', 'nn', 'layers and nn.Sequential over one flat parameter buffer' },
  { 'optim', 'dtf.optim', 'optim', 'optimizers over a flat buffer (the loops a ps shard runs)' },
  { 'data', 'dtf.data', 'data', 'IDX data sets (MNIST, Fashion-MNIST) and shuffled loaders' },
  { 'ps', 'dtf.ps', 'ps', 'the parameter server and its client' },
  { 'ckpt', 'dtf.ckpt', 'ckpt', 'safetensors files, written atomically' },
  { 'util', 'dtf.util', 'util', 'clocks, logging, hashing, addresses' },
  { 'json', 'dtf.json', 'json', 'JSON' },
  { 'log', 'dtf.log', 'log', "the seed's log lines, to stdout and deploy.log" },
  { 'dtf', 'dtf', 'dtf', 'every module (dtf.nn, dtf.hparams, ...) and the error helpers' },
  { 'cluster', nil, 'cluster', 'with dtf repl --ps: the running training' },
}

-- The classes whose methods are documented: prefix, how to find the method
-- table (nil when that module is absent), what its objects are.
local function registry_methods(name)
  local mt = debug.getregistry()[name]
  return type(mt) == 'table' and type(rawget(mt, '__index')) == 'table' and rawget(mt, '__index') or nil
end
local function req(name)
  local ok, m = pcall(require, name)
  return ok and m or nil
end
-- c's method table, once it can be found (its module may load later).
local found = {}
local function methods_of(c)
  if found[c] == nil then
    local ok, m = pcall(c[2])
    if ok and type(m) == 'table' then found[c] = m end
  end
  return found[c]
end
help.methods_of = methods_of

help.classes = {
  { 'Tensor', function() local T = req('dtf.tensor'); return T and T.Tensor end, 'a tensor (T.zeros, T.from, ...)' },
  { 'Rng', function() return registry_methods('dtf.Rng') end, 'a random generator (T.rng)' },
  { 'Dataset', function() return registry_methods('dtf.Dataset') end, 'a data set (data.mnist, data.load)' },
  { 'Loader', function() return registry_methods('dtf.Loader') end, 'shuffled batches of a data set (ds:loader)' },
  { 'Client', function() return registry_methods('dtf.ps.Client') end, 'a connection to the ps tasks (ps.connect)' },
  { 'Sequential', function() local nn = req('dtf.nn'); return nn and nn.Sequential end, 'a network (nn.Sequential)' },
  { 'Optimizer', function()
      local optim = req('dtf.optim')
      return optim and getmetatable(optim.new('sgd', 1)).__index
    end, 'an optimizer (optim.new)' },
}

-- name -> { signature, what it does }
local docs = {
  -- dtf.tensor
  ['T.zeros'] = { 'T.zeros(d1, d2, ... | {shape}) -> tensor', 'a new tensor of zeros' },
  ['T.ones'] = { 'T.ones(d1, d2, ... | {shape}) -> tensor', 'a new tensor of ones' },
  ['T.full'] = { 'T.full({shape}, v) -> tensor', 'a new tensor filled with v' },
  ['T.from'] = { 'T.from(nested_table) -> tensor', 'a tensor of a rectangular nested table of numbers' },
  ['T.rng'] = { 'T.rng([seed]) -> rng', 'a random generator: rng:uniform(), rng:normal(), rng:below(n)' },
  ['T.matmul'] = { 'T.matmul(out|nil, a, b [, alpha, beta]) -> out',
                   'out = alpha * a@b + beta * out (sgemm; transposed views need no copy)' },
  ['T.relu'] = { 'T.relu(out|nil, x) -> out', 'max(x, 0)' },
  ['T.relu_backward'] = { 'T.relu_backward(dx|nil, dy, x) -> dx', 'dy where x > 0, else 0' },
  ['T.softmax'] = { 'T.softmax(out|nil, x) -> out', 'softmax of each row' },
  ['T.log_softmax'] = { 'T.log_softmax(out|nil, x) -> out', 'log-softmax of each row' },
  ['T.cross_entropy'] = { 'T.cross_entropy(logits, labels [, dlogits]) -> loss',
                          'mean softmax cross-entropy against class labels 0..C-1; fills dlogits' },
  ['T.accuracy'] = { 'T.accuracy(logits, labels) -> count', 'how many rows have their label as the largest logit' },
  ['T.bias_backward'] = { 'T.bias_backward(db, dy) -> db', 'db += the column sums of dy' },
  ['T.conv2d'] = { 'T.conv2d(out|nil, x, w, b, stride, pad) -> out', '2-d convolution of x (N, C, H, W) by w (O, C, k, k)' },
  ['T.conv2d_backward'] = { 'T.conv2d_backward(dx|nil, dw, db, dy, x, w, stride, pad) -> dx',
                            "the convolution's gradients (dw, db accumulate)" },
  ['T.maxpool2d'] = { 'T.maxpool2d(out|nil, x [, idx]) -> out', '2x2 max pooling, stride 2; idx keeps where each max was' },
  ['T.maxpool2d_backward'] = { 'T.maxpool2d_backward(dx|nil, dy, idx) -> dx', "max pooling's input gradient" },
  ['T.optim_step'] = { 'T.optim_step(kind, param, grad, slot0, slot1, step, cfg [, zero_grad])',
                       'one sgd/adam/adamw update in place (what optim and a ps shard run); zero_grad zeroes grad as it reads it' },
  ['T.linear'] = { 'T.linear(y|nil, x, w, b [, relu]) -> y', 'y = x w^T + b (w is out x in), ReLU\'d when relu: one pass' },
  ['T.linear_backward'] = { 'T.linear_backward(dx, dw, db, dy, x, w [, y, dym]) -> dx',
                            "a linear layer's gradients (nil or false skips dx, dw, db); y and dym for one with ReLU" },
  ['T.conv2d_relu_pool'] = { 'T.conv2d_relu_pool(y|nil, x, w, b, stride, pad [, idx [, ws]]) -> y, idx',
                             'conv2d, ReLU and 2x2 max pooling fused; idx nil computes no indices (inference)' },
  ['T.conv2d_relu_pool_backward'] = { 'T.conv2d_relu_pool_backward(dx, dw, db, dy, y, idx, x, w, stride, pad [, ws]) -> dx, dw, db',
                                      "the fused block's gradients" },
  ['T.gemm_trace'] = { 'T.gemm_trace(fn, ...) -> trace, n', 'runs fn(...) and records every sgemm the kernels call (bench/step.lua)' },
  ['T.gemm_replay'] = { 'T.gemm_replay(trace)', 'runs the recorded sgemm calls alone: the matmul-only bound of a step' },
  ['T.blas_info'] = { 'T.blas_info() -> line, core', "'OpenBLAS 0.3.21, core SkylakeX (OpenBLAS picked Prescott)' and the core" },
  ['T.denormals'] = { "T.denormals(['flush'|'keep']) -> mode", 'sets whether subnormal floats flush to zero; returns the mode in force' },
  ['T.usable_cores'] = { 'T.usable_cores() -> n', 'the cores this process may keep busy (affinity mask, cgroup quota)' },
  ['T.checksum'] = { 'T.checksum(t) -> hex string', "a hash of t's shape and values" },
  ['T.set_num_threads'] = { 'T.set_num_threads(n)', 'BLAS threads for this process' },
  ['T.is_tensor'] = { 'T.is_tensor(v) -> boolean', 'whether v is a tensor' },
  -- tensor methods
  ['Tensor:normal_'] = { 't:normal_(rng|seed, mean, std) -> t', 'fills t from a normal distribution' },
  ['Tensor:uniform_'] = { 't:uniform_(rng|seed, lo, hi) -> t', 'fills t uniformly from [lo, hi)' },
  ['Tensor:fill'] = { 't:fill(v) -> t', 'sets every element to v' },
  ['Tensor:zero'] = { 't:zero() -> t', 'sets every element to 0' },
  ['Tensor:copy'] = { 't:copy(src) -> t', 'copies src (same number of elements) into t' },
  ['Tensor:dim'] = { 't:dim() -> n', 'the number of dimensions' },
  ['Tensor:size'] = { 't:size([d]) -> {sizes} | size', 'the shape, or the size of dimension d' },
  ['Tensor:numel'] = { 't:numel() -> n', 'the number of elements (#t too)' },
  ['Tensor:stride'] = { 't:stride([d]) -> {strides} | stride', 'the strides, in elements' },
  ['Tensor:is_contiguous'] = { 't:is_contiguous() -> boolean', 'whether the elements are dense, in row-major order' },
  ['Tensor:totable'] = { 't:totable() -> nested table', 'the values as nested Lua tables' },
  ['Tensor:get'] = { 't:get(i, j, ...) -> number', 'one element (1-based indices)' },
  ['Tensor:set'] = { 't:set(i, j, ..., v)', 'sets one element (1-based indices)' },
  ['Tensor:view'] = { 't:view(d1, d2, ...) -> view', 'the same storage in another shape (-1: inferred)' },
  ['Tensor:reshape'] = { 't:reshape(d1, d2, ...) -> tensor', 'a view when t is contiguous, else a copy' },
  ['Tensor:narrow'] = { 't:narrow(dim, start, len) -> view', 'len entries of dim from start' },
  ['Tensor:select'] = { 't:select(dim, i) -> view', 'index i of dim, that dimension removed' },
  ['Tensor:transpose'] = { 't:transpose(d1, d2) -> view', 'dimensions d1 and d2 swapped' },
  ['Tensor:t'] = { 't:t() -> view', 'the transpose of a 2-d tensor' },
  ['Tensor:contiguous'] = { 't:contiguous() -> tensor', 't itself when contiguous, else a dense copy' },
  ['Tensor:clone'] = { 't:clone() -> tensor', 'a dense copy with storage of its own' },
  ['Tensor:add'] = { 't:add(x [, alpha]) -> tensor', 't + alpha * x (x: same shape, a row vector or a number)' },
  ['Tensor:sub'] = { 't:sub(x) -> tensor', 't - x' },
  ['Tensor:mul'] = { 't:mul(x) -> tensor', 't * x, element-wise' },
  ['Tensor:div'] = { 't:div(x) -> tensor', 't / x, element-wise' },
  ['Tensor:add_'] = { 't:add_(x [, alpha]) -> t', 't += alpha * x, in place' },
  ['Tensor:sub_'] = { 't:sub_(x) -> t', 't -= x, in place' },
  ['Tensor:mul_'] = { 't:mul_(x) -> t', 't *= x, in place' },
  ['Tensor:div_'] = { 't:div_(x) -> t', 't /= x, in place' },
  ['Tensor:sum'] = { 't:sum([dim]) -> number | tensor', 'the sum of all elements, or along dim' },
  ['Tensor:mean'] = { 't:mean([dim]) -> number | tensor', 'the mean of all elements, or along dim' },
  ['Tensor:max'] = { 't:max([dim]) -> number | values, indices', 'the largest element, or the maxima along dim and where' },
  ['Tensor:argmax'] = { 't:argmax([dim]) -> index | tensor', 'where the largest element is, or the maxima along dim' },
  ['Tensor:checksum'] = { 't:checksum() -> hex string', "a hash of t's shape and values" },
  ['Rng:uniform'] = { 'rng:uniform() -> number', 'uniform in [0, 1)' },
  ['Rng:normal'] = { 'rng:normal() -> number', 'standard normal' },
  ['Rng:below'] = { 'rng:below(n) -> integer', 'uniform in 0..n-1' },
  -- dtf.nn
  ['nn.Linear'] = { 'nn.Linear(in, out)', 'y = x W^T + b: weight (out, in), bias (out); input (N, in)' },
  ['nn.ReLU'] = { 'nn.ReLU()', 'max(x, 0), element-wise' },
  ['nn.Conv2d'] = { 'nn.Conv2d(in, out, k [, stride, pad])', 'convolution: weight (out, in, k, k), bias (out); input (N, in, H, W)' },
  ['nn.MaxPool2d'] = { 'nn.MaxPool2d()', '2x2 max pooling, stride 2' },
  ['nn.View'] = { 'nn.View(d1, d2, ...)', 'reshapes each example, keeping the batch: nn.View(1, 28, 28)' },
  ['nn.Flatten'] = { 'nn.Flatten()', '(N, ...) -> (N, rest)' },
  ['nn.SoftmaxCrossEntropy'] = { 'nn.SoftmaxCrossEntropy()', 'the criterion: crit:forward(logits, labels) -> loss, crit:backward() -> dlogits' },
  ['nn.Sequential'] = { 'nn.Sequential{layer, ...}', 'layers in a row; net:build(seed) allocates the flat parameter buffer' },
  ['nn.Module'] = { 'nn.Module', 'the base class of the layers' },
  ['nn.classes'] = { 'nn.classes(scores) -> classes', 'the class of each row of (N, C) scores, 0-based like the labels' },
  ['nn.evaluate'] = { 'nn.evaluate(net, dataset [, batchsize | {budget = bytes}]) -> accuracy, count',
                      'the share of the data set net classifies right, in batches that fit nn.EVAL_BUDGET by default' },
  ['nn.eval_batchsize'] = { 'nn.eval_batchsize(net, dataset [, budget]) -> n',
                            "the evaluation batch whose activations fit budget bytes (nn.EVAL_BUDGET, 16 MiB)" },
  ['nn.layer_name'] = { 'nn.layer_name(layer) -> string', "a layer's name, one line, as errors give it" },
  ['nn.shapes_of'] = { 'nn.shapes_of(layer) -> string, count', '"weight 100x784, bias 100" and the number of parameters' },
  ['Layer:forward'] = { 'layer:forward(x) -> y', "the layer's output (a buffer it reuses)" },
  ['Layer:backward'] = { 'layer:backward(x, dy) -> dx', 'accumulates parameter gradients, returns the input gradient' },
  ['Layer:param_specs'] = { 'layer:param_specs() -> {{name=, shape=, fan_in=}, ...}', "the layer's parameters, in layout order" },
  ['Sequential:build'] = { 'net:build(seed) -> net', 'allocates the flat parameters and gradients, initialised from seed' },
  ['Sequential:parameters'] = { 'net:parameters() -> params, grads, layout', 'the flat buffers and each tensor\'s name, offset, shape' },
  ['Sequential:forward'] = { 'net:forward(x) -> output', 'every layer in turn; an error names the layer' },
  ['Sequential:backward'] = { 'net:backward(x, dy) -> dx', 'backward through every layer; parameter gradients accumulate' },
  ['Sequential:zero_grad'] = { 'net:zero_grad()', 'clears the gradient buffer' },
  ['Sequential:checksum'] = { 'net:checksum() -> integer', 'a hash of the layout: equal exactly when two tasks run the same model' },
  ['Sequential:named_tensors'] = { 'net:named_tensors() -> {{name=, tensor=}, ...}', 'the parameters as views, for ckpt.save' },
  ['Sequential:load'] = { 'net:load(tensors) -> net', 'copies name -> tensor (ckpt.load\'s first result) into the parameters; raises on any mismatch, naming the tensor' },
  ['Sequential:predict'] = { 'net:predict(x) -> classes', 'the predicted class (0-based) of each input row' },
  -- dtf.optim
  ['optim.new'] = { "optim.new('sgd'|'adam'|'adamw', n, cfg) -> opt", 'an optimizer for n parameters; cfg: lr, momentum, beta1, beta2, eps, weight_decay' },
  ['optim.sgd'] = { 'optim.sgd(n, cfg) -> opt', "optim.new('sgd', n, cfg)" },
  ['optim.adam'] = { 'optim.adam(n, cfg) -> opt', "optim.new('adam', n, cfg)" },
  ['optim.adamw'] = { 'optim.adamw(n, cfg) -> opt', "optim.new('adamw', n, cfg)" },
  ['optim.config'] = { 'optim.config(hp [, total_steps]) -> cfg', 'the optimizer settings and learning-rate schedule of training hyperparameters' },
  ['Optimizer:step'] = { 'opt:step(params, grads)', 'one update of params from grads' },
  -- dtf.data
  ['data.mnist'] = { "data.mnist([dir [, 'train'|'test']]) -> dataset | nil, err", 'the IDX files of MNIST or Fashion-MNIST in dir' },
  ['data.load'] = { 'data.load(images [, labels]) -> dataset | nil, err', 'a data set of IDX files (plain or gzip); without labels, the images alone' },
  ['data.mnist_count'] = { "data.mnist_count([dir [, 'train'|'test']]) -> n | nil, err", 'the number of examples, read from the labels alone' },
  ['Dataset:count'] = { 'ds:count() -> n', 'the number of examples (#ds too)' },
  ['Dataset:shape'] = { 'ds:shape() -> rows, cols', "one example's shape" },
  ['Dataset:label'] = { 'ds:label(i) -> class', "example i's label (0-based class)" },
  ['Dataset:example'] = { 'ds:example(i) -> x, label', 'example i as a (rows, cols) tensor in [0, 1]' },
  ['Dataset:paths'] = { 'ds:paths() -> images, labels', 'the files it was read from' },
  ['Dataset:loader'] = { 'ds:loader{batchsize, seed, shard, shards, shuffle, drop_last} -> loader', 'shuffled batches; shard s of S takes a disjoint slice' },
  ['Dataset:batches'] = { 'ds:batches([batchsize]) -> iterator of x, y, n', 'for x, y, n in ds:batches(1000) do ... end, in order' },
  ['Loader:next'] = { 'loader:next([x, y]) -> n, x, y', 'the next batch (into x and y when given)' },
  ['Loader:epoch'] = { 'loader:epoch() -> e', 'the epoch the next batch comes from (1-based)' },
  ['Loader:position'] = { 'loader:position() -> b', 'batches taken from this epoch' },
  ['Loader:batches_per_epoch'] = { 'loader:batches_per_epoch() -> n', 'batches in one epoch of this shard' },
  ['Loader:shard_size'] = { 'loader:shard_size() -> n', "examples in this loader's shard" },
  ['Loader:batchsize'] = { 'loader:batchsize() -> n', 'examples per batch' },
  ['Loader:seek'] = { 'loader:seek(epoch [, batch])', 'goes to a batch of an epoch (resuming a training)' },
  -- dtf.ps
  ['ps.serve'] = { 'ps.serve{port, index, nps, workers, params, optimizer, ...} -> stats | nil, err', 'runs a ps shard until the workers are done or SIGTERM' },
  ['ps.connect'] = { 'ps.connect{addrs, role, index, P, layout_checksum, token, ...} -> client | nil, err', 'a client of every ps task' },
  ['ps.shard_range'] = { 'ps.shard_range(P, n, i) -> offset, count', "shard i's (0-based) range of P parameters over n ps tasks" },
  ['ps.lr_at'] = { 'ps.lr_at(optimizer, step) -> rate', "the learning rate of update step (0-based) under optim.config's schedule" },
  ['ps.local_shard'] = { 'ps.local_shard{params, optimizer, checkpoint_dir, ...} -> shard | nil, err', "one process's optimizer, schedule and checkpoints: a ps shard over its own parameters" },
  ['ps.merge_checkpoints'] = { 'ps.merge_checkpoints(dir [, layout]) -> params, info | nil, err', "the newest complete set of a dir's ps checkpoints as one flat tensor" },
  ['Client:pull'] = { 'c:pull(params) -> step | nil, err', 'fills params from every ps shard' },
  ['Client:push'] = { 'c:push(grads [, step]) -> step | nil, err', 'sends each shard its slice of grads' },
  ['Client:push_pull'] = { 'c:push_pull(grads, params [, step]) -> step | nil, err', 'push then pull, one round trip' },
  ['Client:exchange_start'] = { 'c:exchange_start(grads, params, step) -> true | nil, err', 'async overlap: sends a pull into params and the push of a copy of grads, and returns at once; the client\'s own thread moves the round while the caller computes' },
  ['Client:exchange_finish'] = { 'c:exchange_finish() -> step | nil, err', 'waits for the round exchange_start sent (params then hold the pulled values)' },
  ['Client:global_step'] = { 'c:global_step() -> step | nil, err', 'the global step (ps 0)' },
  ['Client:done'] = { 'c:done() -> true | nil, err', 'tells the ps tasks this worker is finished' },
  ['Client:stats'] = { 'c:stats() -> {{mode=, updates=, ...}, ...} | nil, err', "each ps's counters" },
  ['Client:ranges'] = { 'c:ranges() -> {{offset=, count=}, ...}', "each ps's range of the parameters" },
  ['Client:is_sync'] = { 'c:is_sync() -> boolean', 'whether the ps tasks train synchronously' },
  ['Client:close'] = { 'c:close()', 'closes the connections' },
  -- dtf.ckpt
  ['ckpt.save'] = { 'ckpt.save(path, {{name=, tensor=}, ...} [, meta]) -> true | nil, err', 'a safetensors file, written atomically' },
  ['ckpt.load'] = { 'ckpt.load(path) -> tensors, meta, names | nil, err', 'a safetensors file: name -> tensor, its metadata, the names in order' },
  ['ckpt.name'] = { 'ckpt.name(step, shard, nps) -> file name', "a ps checkpoint's file name" },
  ['ckpt.parse_name'] = { 'ckpt.parse_name(name) -> step, shard, nps | nil', "the fields of a ps checkpoint's file name" },
  ['ckpt.list'] = { 'ckpt.list(dir [, shard]) -> {paths} | nil, err', 'the ps checkpoints in dir, oldest first' },
  ['ckpt.latest'] = { 'ckpt.latest(dir, shard) -> path, step | nil', "shard's newest checkpoint in dir" },
  ['ckpt.prune'] = { 'ckpt.prune(dir, shard, keep) -> removed | nil, err', "removes all but shard's keep newest checkpoints" },
  -- dtf.util
  ['util.now'] = { 'util.now() -> seconds', 'a monotonic clock' },
  ['util.wallclock'] = { 'util.wallclock() -> seconds', 'the time since the epoch' },
  ['util.log'] = { "util.log(level, msg [, to_stdout])", "writes one log line ('debug', 'info', 'warning', 'error')" },
  ['util.log_open'] = { 'util.log_open(dir) -> true | nil, err', 'also log to dir/deploy.log' },
  ['util.log_close'] = { 'util.log_close()', 'closes deploy.log' },
  ['util.fnv1a'] = { 'util.fnv1a(s) -> integer', 'the FNV-1a hash of a string' },
  ['util.sleep'] = { 'util.sleep(seconds)', 'waits' },
  ['util.getpid'] = { 'util.getpid() -> pid', "this process's id" },
  ['util.hostname'] = { 'util.hostname() -> name', "this machine's host name" },
  ['util.isatty'] = { 'util.isatty(fd) -> boolean', 'whether fd is a terminal' },
  ['util.trap_signals'] = { 'util.trap_signals()', 'from now on SIGTERM and SIGINT only set a flag (a training stops at a step boundary)' },
  ['util.stop_signal'] = { 'util.stop_signal() -> number, name | nil', 'the signal that asked to stop, once util.trap_signals ran' },
  ['util.ready'] = { 'util.ready()', 'tells dtf local this task is up (a ps serving, a worker past its first step)' },
  ['util.split_address'] = { 'util.split_address(addr) -> host, port | nil, err', 'HOST:PORT or [IPV6]:PORT' },
  -- dtf.json
  ['json.encode'] = { 'json.encode(v) -> string', 'JSON of a value (objects with sorted keys)' },
  ['json.decode'] = { 'json.decode(s) -> v | nil, err', 'a value of JSON text; json.null stands for null' },
  -- dtf.log
  ['log.info'] = { 'log.info(fmt, ...)', 'an INFO line (string.format)' },
  ['log.debug'] = { 'log.debug(fmt, ...)', 'a DEBUG line' },
  ['log.warning'] = { 'log.warning(fmt, ...)', 'a WARNING line' },
  ['log.error'] = { 'log.error(fmt, ...)', 'an ERROR line' },
  ['log.file'] = { 'log.file(fmt, ...)', 'an INFO line to deploy.log only' },
  ['log.open'] = { 'log.open(dir) -> ok', 'also log to dir/deploy.log' },
  ['log.sink'] = { 'log.sink(level, msg)', 'what C modules log through' },
  -- dtf
  ['dtf.usage_error'] = { 'dtf.usage_error(fmt, ...)', 'raises a usage error: one line, exit status 2' },
  ['dtf.fail'] = { 'dtf.fail(fmt, ...)', 'raises an expected runtime error: one line, exit status 1, no traceback' },
  ['dtf.stopped'] = { 'dtf.stopped(sig, fmt, ...)', 'ends the script stopped by signal sig: one line, exit status 128 + sig' },
  -- the REPL's cluster (dtf repl --ps=...)
  ['cluster.step'] = { 'cluster.step() -> step', 'the global step (ps 0)' },
  ['cluster.stats'] = { 'cluster.stats() -> {{...}, ...}', "each ps's counters: mode, updates, stale, bytes_in, ..." },
  ['cluster.pull'] = { 'cluster.pull() -> net', 'the current parameters, in a local copy of the model' },
  ['cluster.evaluate'] = { 'cluster.evaluate([n]) -> accuracy, count', 'test accuracy of the current parameters' },
  -- the REPL itself
  ['help'] = { 'help([x])', 'this help: the modules, or what x is and does' },
}
help.docs = docs

-- ---- names --------------------------------------------------------------

local std_libs = { 'string', 'table', 'math', 'io', 'os', 'coroutine', 'utf8', 'debug', 'package' }

-- An index of what has a name: function or table -> its name ('T.zeros',
-- 'Tensor:view', 'module dtf.nn', 'class nn.Linear', 'string.format').
-- Built on each call, from the modules loaded now.
function help.index()
  local idx = {}
  local function put(v, name) if idx[v] == nil then idx[v] = name end end
  local loaded = package.loaded
  for _, m in ipairs(help.modules) do
    local mod = m[2] and loaded[m[2]] or (m[2] == nil and rawget(_G, m[3]))
    if type(mod) == 'table' then
      put(mod, 'module ' .. (m[2] or m[3]))
      for k, v in pairs(mod) do
        if type(k) == 'string' and type(v) == 'function' then put(v, m[3] .. '.' .. k) end
        if m[2] == 'dtf.nn' and type(v) == 'table' and rawget(v, '__index') == v then put(v, 'class nn.' .. k) end
      end
    end
  end
  for _, c in ipairs(help.classes) do
    local methods = methods_of(c)
    if methods then
      put(methods, 'methods ' .. c[1])
      for k, v in pairs(methods) do
        if type(k) == 'string' and type(v) == 'function' then put(v, c[1] .. ':' .. k) end
      end
    end
  end
  -- the layers' methods, under their class: Linear:forward
  local nn = loaded['dtf.nn']
  if type(nn) == 'table' then
    for cname, cls in pairs(nn) do
      if type(cls) == 'table' and rawget(cls, '__index') == cls then
        for k, v in pairs(cls) do
          if type(k) == 'string' and type(v) == 'function' then put(v, cname .. ':' .. k) end
        end
      end
    end
  end
  -- Lua's own functions by name; a user's global function by where it is
  for k, v in pairs(_G) do
    if type(v) == 'function' and debug.getinfo(v, 'S').what == 'C' then put(v, k) end
  end
  for _, lib in ipairs(std_libs) do
    local t = rawget(_G, lib)
    if type(t) == 'table' then
      put(t, 'module ' .. lib)
      for k, v in pairs(t) do if type(v) == 'function' then put(v, lib .. '.' .. k) end end
    end
  end
  return idx
end

-- A name_of for dtf.pretty: names without their 'module '/'class ' tag for
-- functions, with it for tables.
function help.namer()
  local idx = help.index()
  return function(v) return idx[v] end
end

-- The doc entry of a name: its own, or a layer method's generic one.
local function doc_of(name)
  if docs[name] then return docs[name] end
  local method = name and name:match('^%w+:([%w_]+)$')
  if method and docs['Layer:' .. method] then return docs['Layer:' .. method] end
  return nil
end
help.doc_of = doc_of

-- ---- output -------------------------------------------------------------

-- help.stream: where help writes (io.stdout; a test may put any :write there).
local function out(fmt, ...)
  local f = help.stream or io.stdout
  f:write(select('#', ...) > 0 and string.format(fmt, ...) or fmt, '\n')
end

-- Words joined by sep, wrapped at width with a hanging indent.
local function wrap(head, words, sep, width, indent)
  local lines, cur = {}, head
  for i, w in ipairs(words) do
    local piece = w .. (i < #words and sep or '')
    if #cur + #piece > width and #cur > indent then
      lines[#lines + 1] = cur:gsub('%s+$', '')
      cur = string.rep(' ', indent)
    end
    cur = cur .. piece
  end
  lines[#lines + 1] = cur
  return table.concat(lines, '\n')
end

-- The documented names under a prefix ('T.', 'Tensor:'), in a stable order.
local function names_under(prefix)
  local list = {}
  for name in pairs(docs) do
    if name:sub(1, #prefix) == prefix then list[#list + 1] = name end
  end
  table.sort(list)
  return list
end

-- "  T.zeros(d1, ...) -> tensor    a new tensor of zeros", aligned.
local function print_entries(names)
  local width = 0
  for _, n in ipairs(names) do width = math.max(width, #docs[n][1]) end
  width = math.min(width, 44)
  for _, n in ipairs(names) do
    local d = docs[n]
    if #d[1] > width then out('  %s\n  %s  %s', d[1], string.rep(' ', width), d[2])
    else out('  %-' .. width .. 's  %s', d[1], d[2]) end
  end
end

local function overview()
  out('dtf: every module is a global here. help(x) tells more: a module, a function, a layer, a value;')
  out("help('name') finds a function by name. Tab completes names, t.field and t:method.")
  for _, m in ipairs(help.modules) do
    local mod = m[2] and package.loaded[m[2]] or rawget(_G, m[3])
    if m[2] == 'dtf' or type(mod) == 'table' then
      local names = {}
      for _, n in ipairs(names_under(m[3] .. '.')) do names[#names + 1] = n:sub(#m[3] + 2) end
      if m[3] == 'dtf' then names = { 'nn', 'hparams', 'model', 'cluster', '...', 'usage_error', 'fail' } end
      local head = string.format('  %-10s %s: ', m[1], m[4])
      out(wrap(head, names, ' ', 100, 13))
    end
  end
  out('  %-10s %s', 'methods', "help(T.Tensor) (or help(t) for a tensor t), help(net), help(ds), help(opt)")
end

local function signature_of_lua(f)
  local info = debug.getinfo(f, 'Su')
  local params = {}
  for i = 1, info.nparams do params[i] = debug.getlocal(f, i) end
  if info.isvararg then params[#params + 1] = '...' end
  return string.format('function(%s), defined at %s:%d', table.concat(params, ', '), info.short_src,
                       info.linedefined)
end

local function help_function(f, idx)
  local name = idx[f]
  local d = doc_of(name)
  if d then
    out('%s', d[1])
    out('  %s', d[2])
    return
  end
  local info = debug.getinfo(f, 'S')
  if info.what == 'C' then
    if name then out('%s: a Lua standard function (see the Lua 5.4 manual)', name)
    else out('a builtin function (no help for it)') end
    return
  end
  out('%s%s', name and name .. ': ' or '', signature_of_lua(f))
end

local function help_module(mod, name)
  local m
  for _, e in ipairs(help.modules) do if e[2] == name or (e[2] == nil and rawget(_G, e[3]) == mod) then m = e end end
  if not m then
    local keys = {}
    for k in pairs(mod) do if type(k) == 'string' then keys[#keys + 1] = k end end
    table.sort(keys)
    out(wrap((name or 'module') .. ': ', keys, ', ', 100, 2))
    return
  end
  out('%s (%s): %s', m[2] or m[3], m[1], m[4])
  print_entries(names_under(m[3] .. '.'))
  if m[2] == 'dtf.tensor' then out('  methods of a tensor t: help(T.Tensor)') end
end

local function help_methods(prefix, what)
  out('%s: %s; its methods:', prefix, what)
  print_entries(names_under(prefix .. ':'))
end

local function param_lines(l)
  local nn = require 'dtf.nn'
  if type(l.param_specs) ~= 'function' then return end
  local shapes, n = nn.shapes_of(l)
  if shapes == '' then out('  no parameters')
  else out('  parameters: %s (%d)%s', shapes, n, l.weight and '' or '; not built yet') end
end

local function help_layer(l, cls_name)
  local nn = require 'dtf.nn'
  if getmetatable(l) == nn.Sequential then
    out('%s', tostring(l))
    if l.layout then
      out('layout (net:parameters(); names as in PyTorch, layer index - 1):')
      for _, e in ipairs(l.layout) do
        out('  %-14s %-12s offset %d', e.name, table.concat(e.shape, 'x'), e.offset)
      end
    end
    help_methods('Sequential', 'a network')
    return
  end
  local d = docs['nn.' .. cls_name]
  out('%s: %s', nn.layer_name(l), d and d[2] or 'a layer')
  param_lines(l)
  out('  methods: forward(x) -> y, backward(x, dy) -> dx, param_specs()')
end

-- Which documented class v is an object of, if any.
local function class_of(v)
  local mt = getmetatable(v)
  if type(mt) ~= 'table' then return nil end
  for _, c in ipairs(help.classes) do
    local methods = methods_of(c)
    if methods and (rawget(mt, '__index') == methods or rawget(mt, 'methods') == methods) then
      return c
    end
  end
  return nil
end

local function help_string(s)
  local hits = {}
  for name in pairs(docs) do
    if name == s or name:match('[.:]([%w_]+)$') == s or name:lower():find(s:lower(), 1, true) then
      hits[#hits + 1] = name
    end
  end
  table.sort(hits)
  for _, m in ipairs(help.modules) do
    if m[3] == s or m[2] == s or ('dtf.' .. s) == m[2] then
      local mod = m[2] and package.loaded[m[2]] or rawget(_G, m[3])
      if mod then return help_module(mod, m[2]) end
    end
  end
  if #hits == 0 then
    out("no help for '%s'; help() lists the modules", s)
  else
    print_entries(hits)
  end
end

function help.help(...)
  if select('#', ...) == 0 then return overview() end
  local x = ...
  local idx = help.index()
  local name, tx = idx[x], type(x)
  local mt = getmetatable(x)
  local nn = package.loaded['dtf.nn']
  local c = class_of(x)
  if tx == 'nil' then
    out('help: the value is nil (a misspelt name?); help() lists the modules')
  elseif tx == 'string' then
    help_string(x)
  elseif tx == 'function' then
    help_function(x, idx)
  elseif name and name:match('^module ') then
    help_module(x, name:match('^module (.*)$'))
  elseif name and name:match('^class nn%.') then
    local cname = name:match('^class nn%.(.*)$')
    local d = docs['nn.' .. cname]
    out('%s', d and d[1] or name)
    out('  %s', d and d[2] or 'a layer class')
    if cname == 'Sequential' then print_entries(names_under('Sequential:')) end
  elseif name and name:match('^methods ') then
    local prefix = name:match('^methods (.*)$')
    for _, k in ipairs(help.classes) do if k[1] == prefix then help_methods(prefix, k[3]) end end
  elseif tx == 'table' and type(mt) == 'table' and type(mt.__name) == 'string' and nn
      and rawget(nn, mt.__name) == mt then
    help_layer(x, mt.__name)
  elseif c and c[1] == 'Tensor' then
    out('[dtf.Tensor %s]: strides %s, %s', table.concat(x:size(), 'x'), table.concat(x:stride(), 'x'),
        x:is_contiguous() and 'contiguous' or 'not contiguous')
    help_methods(c[1], c[3])
  elseif c then
    local mtx = getmetatable(x)
    if rawget(mtx, '__tostring') or tx ~= 'table' then out('%s', tostring(x))
    else out('%s', pretty.format(x, { name_of = help.namer(), depth = 2, items = 12 })) end
    help_methods(c[1], c[3])
  else
    out('%s: %s', tx, pretty.format(x, { name_of = help.namer(), depth = 2 }))
  end
end

return help
