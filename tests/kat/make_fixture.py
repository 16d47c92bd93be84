#!/usr/bin/python3
"""make_fixture.py OUT: writes the known-answer fixture that tests/lua/test_kat.lua
checks dtf against (the llm.c test_gpt2.c idea: a PyTorch dump of the loss and
every gradient, here also three Adam steps).

Run once with Debian's python3-torch (PyTorch 1.13) by `make kat-fixture`;
`make kat-fixture-check` runs it again into a scratch file and compares the
bytes with the committed tests/kat/fixture.safetensors. The test itself needs
no torch.

What both sides compute, so that the fixture holds only answers:
  - the batch: the first BATCH examples of Fashion-MNIST's training set
    (/usr/share/datasets/fashion-mnist), pixels byte / 255 in float32, the way
    dtf.data converts them (also stored, as input/x and input/y, so that the
    test can tell a changed data set from a wrong gradient);
  - the weights: element k (0-based, row-major) of the j-th parameter tensor
    (1-based, dtf's layout order = PyTorch's state_dict order) is
    (2 * u - 1) / sqrt(fan_in) rounded to float32, with
    u = lowbias32((j << 24) + k) / 2^32 (Chris Wellons' 32-bit integer hash).
    That is PyTorch's default init range, U(-1/sqrt(fan_in), 1/sqrt(fan_in)).

The reference runs in float64 from those float32 inputs and is stored rounded
to float32, so what dtf (float32) is compared with is the exact answer, not
another float32 implementation's rounding.

Stored (safetensors, F32, every tensor name below prefixed by mlp/ or cnn/):
  loss                    (1)    softmax cross-entropy, mean over the batch
  grad/NAME               every parameter gradient, dtf's names and shapes
  init/NAME               a strided sample of the initial weights (formula check)
  adam/NAME               the parameters after three Adam steps (lr 0.003,
                          betas 0.9, 0.999, eps 1e-8: train.lua's defaults),
                          each step a forward/backward on the same batch
  adam/losses             (4)    the loss before each of the three steps and
                                 after the last
For the CNN's fc1 weight (8.weight, 1024x3136 = 3.2M values) grad/8.weight and
adam/8.weight are not stored whole; instead:
  .../8.weight.sample     every SAMPLE_STRIDE-th element of the flat tensor
  .../8.weight.rowsum     (1024) row sums   } of the gradient, or for adam/
  .../8.weight.colsum     (3136) column sums} of the update (after - before)
Row and column sums together see every element: a wrong element moves its
row's and its column's sum.
"""
import gzip
import json
import math
import struct
import sys

import numpy as np
import torch
import torch.nn as tnn
import torch.nn.functional as F

DATADIR = '/usr/share/datasets/fashion-mnist'
BATCH = 16
SAMPLE_STRIDE = 1009          # a prime: the sample walks over rows and columns
LR, BETAS, EPS = 0.003, (0.9, 0.999), 1e-8
ADAM_STEPS = 3
M32 = 0xffffffff


def lowbias32(x):
    x ^= x >> 16
    x = (x * 0x7feb352d) & M32
    x ^= x >> 15
    x = (x * 0x846ca68b) & M32
    x ^= x >> 16
    return x


def formula_weights(j, shape, fan_in):
    """The j-th tensor's initial values (float32), as test_kat.lua computes them."""
    n = int(np.prod(shape))
    k = np.arange(n, dtype=np.uint64)
    x = (np.uint64(j) << np.uint64(24)) + k
    m = np.uint64(M32)
    x ^= x >> np.uint64(16)
    x = (x * np.uint64(0x7feb352d)) & m
    x ^= x >> np.uint64(15)
    x = (x * np.uint64(0x846ca68b)) & m
    x ^= x >> np.uint64(16)
    u = x.astype(np.float64) / 4294967296.0
    bound = 1.0 / math.sqrt(fan_in)
    w = ((2.0 * u - 1.0) * bound).astype(np.float32)
    assert lowbias32((j << 24) + n - 1) == int(x[-1])   # numpy agrees with the scalar hash
    return w.reshape(shape)


def read_idx(path, count, header, item):
    with gzip.open(path, 'rb') as f:
        head = f.read(header)
        data = f.read(count * item)
    if len(data) != count * item:
        sys.exit(f'{path}: shorter than {count} examples')
    return head, np.frombuffer(data, dtype=np.uint8)


def load_batch():
    head, img = read_idx(f'{DATADIR}/train-images-idx3-ubyte.gz', BATCH, 16, 28 * 28)
    magic, _, rows, cols = struct.unpack('>IIII', head)
    if magic != 2051 or rows != 28 or cols != 28:
        sys.exit(f'{DATADIR}: not a 28x28 IDX image file')
    head, lab = read_idx(f'{DATADIR}/train-labels-idx1-ubyte.gz', BATCH, 8, 1)
    if struct.unpack('>II', head)[0] != 2049:
        sys.exit(f'{DATADIR}: not an IDX label file')
    # byte / 255 as a float32 division, the way data.c fills its table
    x = img.astype(np.float32).reshape(BATCH, 28 * 28) / np.float32(255.0)
    return x, lab.astype(np.float32)


def mlp():
    return tnn.Sequential(tnn.Linear(784, 100), tnn.ReLU(), tnn.Linear(100, 10))


def cnn():
    # Unflatten at 0 and Flatten at 7 hold no parameters but keep the indices,
    # so the state_dict names are dtf's (models/mnist.lua: View, ..., Flatten).
    return tnn.Sequential(
        tnn.Unflatten(1, (1, 28, 28)),
        tnn.Conv2d(1, 32, 5, 1, 2), tnn.ReLU(), tnn.MaxPool2d(2),
        tnn.Conv2d(32, 64, 5, 1, 2), tnn.ReLU(), tnn.MaxPool2d(2),
        tnn.Flatten(),
        tnn.Linear(64 * 7 * 7, 1024), tnn.ReLU(),
        tnn.Linear(1024, 10))


def fan_in(shape):
    # dtf's param_specs: a bias has its layer's weight's fan-in
    return int(np.prod(shape[1:]))


def set_formula_weights(net):
    """Returns {name: float32 array} of the initial weights and loads them."""
    init, fans = {}, {}
    sd = net.state_dict()
    names = list(sd.keys())
    for j, name in enumerate(names, start=1):
        shape = tuple(sd[name].shape)
        layer = name.rsplit('.', 1)[0]
        fans[name] = fan_in(shape) if name.endswith('weight') else fans[layer + '.weight']
        init[name] = formula_weights(j, shape, fans[name])
    net.load_state_dict({k: torch.from_numpy(v.astype(np.float64)) for k, v in init.items()})
    return init


def loss_of(net, x, y):
    return F.cross_entropy(net(x), y, reduction='mean')


def run(build, x32, y, dtype):
    net = build().to(dtype)
    init = set_formula_weights(net)       # replaces every random initial value
    x = torch.from_numpy(x32).to(dtype)
    loss = loss_of(net, x, y)
    net.zero_grad()
    loss.backward()
    grads = {n: p.grad.detach().clone() for n, p in net.named_parameters()}
    opt = torch.optim.Adam(net.parameters(), lr=LR, betas=BETAS, eps=EPS)
    losses = []
    for _ in range(ADAM_STEPS):
        opt.zero_grad()
        l = loss_of(net, x, y)
        losses.append(l.item())
        l.backward()
        opt.step()
    with torch.no_grad():
        losses.append(loss_of(net, x, y).item())
    after = {n: p.detach().clone() for n, p in net.named_parameters()}
    return init, loss.item(), grads, losses, after


def f32(t):
    return np.ascontiguousarray(np.asarray(t, dtype=np.float64).astype(np.float32))


def summarise(out, prefix, g, before=None):
    """A 2-D tensor too big to store: sample, row sums, column sums (float64)."""
    a = g.numpy().astype(np.float64)
    d = a - before if before is not None else a
    out[prefix + '.sample'] = f32(a.reshape(-1)[::SAMPLE_STRIDE])
    out[prefix + '.rowsum'] = f32(d.sum(axis=1))
    out[prefix + '.colsum'] = f32(d.sum(axis=0))


def init_sample(w):
    flat = w.reshape(-1)
    return np.ascontiguousarray(flat[::max(1, flat.size // 64)])


def model_tensors(tag, build, x, y, big):
    init, loss, grads, losses, after = run(build, x, y, torch.float64)
    out = {f'{tag}/loss': f32([loss]), f'{tag}/adam/losses': f32(losses)}
    for name in init:
        out[f'{tag}/init/{name}'] = init_sample(init[name])
        if name in big:
            summarise(out, f'{tag}/grad/{name}', grads[name])
            summarise(out, f'{tag}/adam/{name}', after[name], init[name].astype(np.float64))
        else:
            out[f'{tag}/grad/{name}'] = f32(grads[name].numpy())
            out[f'{tag}/adam/{name}'] = f32(after[name].numpy())
    report_f32_error(tag, build, x, y, loss, grads)
    return out


def report_f32_error(tag, build, x, y, loss64, grads64):
    """PyTorch's own float32 error against the float64 answer, for the record:
    the yardstick for test_kat.lua's tolerance (printed, not stored)."""
    _, loss, grads, _, _ = run(build, x, y, torch.float32)
    print(f'{tag}: loss {loss64:.9g}; torch float32 loss error {abs(loss - loss64):.3g}')
    for n, g in grads.items():
        ref = grads64[n].numpy()
        err = np.abs(g.numpy().astype(np.float64) - ref).max()
        print(f'  {n:10s} max|g| {np.abs(ref).max():.4g}  torch f32 error / max|g| {err / np.abs(ref).max():.3g}')


def write_safetensors(path, tensors, metadata):
    """safetensors by hand: u64 little-endian header length, JSON header
    (padded with spaces to 8 bytes), then the data in header order."""
    header, blobs, off = {'__metadata__': metadata}, [], 0
    for name, a in tensors.items():
        a = np.ascontiguousarray(a, dtype='<f4')
        header[name] = {'dtype': 'F32', 'shape': list(a.shape), 'data_offsets': [off, off + a.nbytes]}
        blobs.append(a.tobytes())
        off += a.nbytes
    h = json.dumps(header, separators=(',', ':')).encode()
    h += b' ' * (-(8 + len(h)) % 8)
    with open(path, 'wb') as f:
        f.write(struct.pack('<Q', len(h)))
        f.write(h)
        for b in blobs:
            f.write(b)


def main():
    if len(sys.argv) != 2:
        sys.exit('usage: make_fixture.py OUT.safetensors')
    torch.set_num_threads(1)      # one reduction order: the same bytes each run
    x, y = load_batch()
    yl = torch.from_numpy(y.astype(np.int64))
    tensors = {'input/x': x, 'input/y': y}
    tensors.update(model_tensors('mlp', mlp, x, yl, big=()))
    tensors.update(model_tensors('cnn', cnn, x, yl, big=('8.weight',)))
    meta = {'format': 'dtf-kat', 'batch': str(BATCH), 'sample_stride': str(SAMPLE_STRIDE),
            'lr': str(LR), 'beta1': str(BETAS[0]), 'beta2': str(BETAS[1]), 'eps': str(EPS),
            'adam_steps': str(ADAM_STEPS), 'torch': torch.__version__}
    write_safetensors(sys.argv[1], tensors, meta)


if __name__ == '__main__':
    main()
