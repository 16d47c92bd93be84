#!/usr/bin/env python3
"""The peer: one training step of the same networks in PyTorch, one thread.

usage: torch_step.py MODEL BATCH SECONDS  ->  prints "samples_per_s STEPS_PER_S CORE"
MODEL is mlp (784-100-10, Adam) or cnn (conv5x5x32, pool, conv5x5x64, pool,
fc1024, fc10, Adam). Inputs are fixed random tensors, as in bench/step.lua.
CORE is the OpenBLAS core its matmuls run on (Debian's torch uses the
system OpenBLAS; OPENBLAS_CORETYPE chooses it as for dtf). Time is the
process's CPU time (one thread), as in bench/step.lua: time spent
descheduled by other processes does not count.
"""
import ctypes
import sys
import time

import torch

torch.set_num_threads(1)
torch.manual_seed(1)

model, batch, seconds = sys.argv[1], int(sys.argv[2]), float(sys.argv[3])
if model == "mlp":
    net = torch.nn.Sequential(torch.nn.Linear(784, 100), torch.nn.ReLU(), torch.nn.Linear(100, 10))
    x = torch.rand(batch, 784)
else:
    net = torch.nn.Sequential(
        torch.nn.Conv2d(1, 32, 5, padding=2), torch.nn.ReLU(), torch.nn.MaxPool2d(2),
        torch.nn.Conv2d(32, 64, 5, padding=2), torch.nn.ReLU(), torch.nn.MaxPool2d(2),
        torch.nn.Flatten(), torch.nn.Linear(64 * 7 * 7, 1024), torch.nn.ReLU(), torch.nn.Linear(1024, 10))
    x = torch.rand(batch, 1, 28, 28)
y = torch.randint(0, 10, (batch,))
opt = torch.optim.Adam(net.parameters(), lr=0.001)
loss_fn = torch.nn.CrossEntropyLoss()


def step():
    opt.zero_grad(set_to_none=False)
    loss = loss_fn(net(x), y)
    loss.backward()
    opt.step()


for _ in range(5):
    step()
n, t0 = 0, time.process_time()
while True:
    step()
    n += 1
    el = time.process_time() - t0
    if el >= seconds and n >= 3:
        break
try:
    blas = ctypes.CDLL("libopenblas.so.0")
    blas.openblas_get_corename.restype = ctypes.c_char_p
    core = blas.openblas_get_corename().decode()
except (OSError, AttributeError):
    core = "?"
print(f"{n * batch / el:.1f} {n / el:.2f} {core}")
