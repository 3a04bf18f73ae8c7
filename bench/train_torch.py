#!/usr/bin/python3
"""PyTorch side of bench/bench_train: one training epoch at a time, on request.

    train_torch.py MNIST_DIR FIXTURES_DIR IMAGES BATCH THREADS

bench_train starts this once and talks to it over stdin/stdout, so that torch's import and
start-up stay out of every sample and each sample is one epoch timed inside the process.
Each request is one line "MODEL LR" (MODEL: mlp | student | cnn); the answer is one JSON line
{"seconds": epoch wall time, "loss": mean loss, "accuracy": running train top-1}. The first
request for a model builds it (mlp and cnn load the fixtures' weights, as bench_train trains
the fixtures themselves; student is nn.Linear's default init) and runs one untimed warm-up
epoch. "quit" ends the process.

An epoch is what nncd's training loop does in one epoch: a fresh permutation, mini-batches of
BATCH rows gathered by index (the last one smaller), forward, cross-entropy, backward,
torch.optim.SGD (momentum 0.9, Nesterov) step, the running loss and accuracy read per batch.
torch.set_num_threads(THREADS), like OpenBLAS's thread count on the nncd side.
"""

import json
import sys
import time

import numpy as np
import onnx
import torch
import torch.nn as nn
import torch.nn.functional as F
from onnx import numpy_helper


class MLP(nn.Module):
    def __init__(self, sizes):
        super().__init__()
        self.fcs = nn.ModuleList(nn.Linear(a, b) for a, b in zip(sizes, sizes[1:]))

    def forward(self, x):
        for i, fc in enumerate(self.fcs):
            x = fc(x)
            if i + 1 < len(self.fcs):
                x = F.relu(x)
        return x


class CNN(nn.Module):
    """tests/fixtures/cnn.onnx."""

    def __init__(self):
        super().__init__()
        self.conv1 = nn.Conv2d(1, 8, 5)
        self.conv2 = nn.Conv2d(8, 16, 5)
        self.fc1 = nn.Linear(256, 64)
        self.fc2 = nn.Linear(64, 10)

    def forward(self, x):
        x = F.max_pool2d(F.relu(self.conv1(x)), 2)
        x = F.max_pool2d(F.relu(self.conv2(x)), 2)
        x = F.relu(self.fc1(torch.flatten(x, 1)))
        return self.fc2(x)


def load_weights(model, path, names):
    init = {t.name: numpy_helper.to_array(t) for t in onnx.load(path).graph.initializer}
    with torch.no_grad():
        for p, name in zip(model.parameters(), names):
            p.copy_(torch.from_numpy(init[name].copy()))


def main():
    mnist, fixtures, images, batch, threads = sys.argv[1], sys.argv[2], int(sys.argv[3]), \
        int(sys.argv[4]), int(sys.argv[5])
    torch.set_num_threads(threads)
    torch.manual_seed(0)
    raw = np.fromfile(f"{mnist}/train-images-idx3-ubyte", dtype=np.uint8, offset=16)
    x = torch.from_numpy(raw.reshape(-1, 784)[:images].astype(np.float32) / np.float32(255))
    y = torch.from_numpy(np.fromfile(f"{mnist}/train-labels-idx1-ubyte", dtype=np.uint8,
                                     offset=8)[:images].astype(np.int64))
    x4 = x.reshape(-1, 1, 28, 28).contiguous()
    gen = torch.Generator().manual_seed(1)
    models = {}

    def epoch(model, opt, data):
        model.train()
        n = data.shape[0]
        perm = torch.randperm(n, generator=gen)
        total = 0.0
        correct = 0
        t0 = time.perf_counter()
        for i in range(0, n, batch):
            idx = perm[i:i + batch]
            xb, yb = data[idx], y[idx]
            opt.zero_grad()
            out = model(xb)
            loss = F.cross_entropy(out, yb)
            loss.backward()
            opt.step()
            total += loss.item() * idx.shape[0]
            correct += int((out.argmax(1) == yb).sum())
        return time.perf_counter() - t0, total / n, correct / n

    for line in sys.stdin:
        parts = line.split()
        if not parts or parts[0] == "quit":
            break
        name, lr = parts[0], float(parts[1])
        if name not in models:
            if name == "mlp":
                model = MLP([784, 300, 100, 10])
                load_weights(model, f"{fixtures}/lenet300.onnx",
                             ["fc1.weight", "fc1.bias", "fc2.weight", "fc2.bias", "fc3.weight", "fc3.bias"])
                data = x
            elif name == "student":
                model, data = MLP([784, 100, 10]), x
            elif name == "cnn":
                model = CNN()
                load_weights(model, f"{fixtures}/cnn.onnx",
                             ["conv1.weight", "conv1.bias", "conv2.weight", "conv2.bias",
                              "fc1.weight", "fc1.bias", "fc2.weight", "fc2.bias"])
                data = x4
            else:
                print(json.dumps({"error": f"unknown model {name}"}), flush=True)
                continue
            opt = torch.optim.SGD(model.parameters(), lr=lr, momentum=0.9, nesterov=True)
            models[name] = (model, opt, data)
            epoch(model, opt, data)  # warm-up, untimed
        model, opt, data = models[name]
        seconds, loss, acc = epoch(model, opt, data)
        print(json.dumps({"seconds": seconds, "loss": loss, "accuracy": acc}), flush=True)


if __name__ == "__main__":
    main()
