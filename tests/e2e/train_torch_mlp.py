#!/usr/bin/python3
"""PyTorch reference for issue 6, acceptance 5: train the same MLP nncd trained, the same way.

    train_torch_mlp.py --init INIT.onnx --mnist DIR --train N [--teacher T.onnx] \
        [--epochs 10] [--batch 64] [--lr 0.05] [--momentum 0.9] [--nesterov] \
        [--temperature 8] [--alpha 0.9] [--seed 7] [--out TRAINED.onnx]

INIT.onnx is the student as nncd initialised it (a `distill` step with "epochs": 0 returns it),
so both sides start from the same weights. The model is rebuilt in torch from the ONNX graph
(Flatten / Gemm with transB=1 / Relu chains: what {"hidden": [...]} builds), trained with
torch.optim.SGD (momentum, nesterov, dampening 0, no weight decay) and
CosineAnnealingLR(T_max=epochs) stepped once per epoch, on the first N MNIST training digits
(bytes / 255). With --alpha > 0 the loss is Hinton's distillation loss as PyTorch users write it:
alpha * T^2 * KL(softmax(t/T) || softmax(s/T)) (reduction batchmean) + (1 - alpha) * CE, the
teacher's logits computed once with torch from TEACHER.onnx (same chain form).

The mini-batch order is nncd's, not torch.randperm's: the permutation of every epoch is
made here with the same generator engine/train.c uses (engine/rng.h: xoshiro256** seeded by
splitmix64, Lemire's unbiased bounded integers, Fisher-Yates), so both sides see the same
batches in the same order. Exact equality of the weights is not expected (different
summation orders in float32), only the same training.

Prints one JSON line: {"accuracy" (torch, 10,000 test digits), "correct", "loss" per epoch,
"seconds"}; --out writes the trained weights into a copy of INIT.onnx for ONNX Runtime.
"""

import argparse
import json
import os
import sys
import time

import numpy as np
import onnx
import torch
import torch.nn.functional as F
from onnx import numpy_helper

M64 = (1 << 64) - 1


class Rng:
    """engine/rng.h, bit for bit."""

    def __init__(self, seed):
        x = seed & M64
        self.s = []
        for _ in range(4):
            x = (x + 0x9E3779B97F4A7C15) & M64
            z = x
            z = ((z ^ (z >> 30)) * 0xBF58476D1CE4E5B9) & M64
            z = ((z ^ (z >> 27)) * 0x94D049BB133111EB) & M64
            self.s.append(z ^ (z >> 31))

    @staticmethod
    def _rotl(x, k):
        return ((x << k) | (x >> (64 - k))) & M64

    def next(self):
        s = self.s
        result = (self._rotl((s[1] * 5) & M64, 7) * 9) & M64
        t = (s[1] << 17) & M64
        s[2] ^= s[0]
        s[3] ^= s[1]
        s[1] ^= s[2]
        s[0] ^= s[3]
        s[2] ^= t
        s[3] = self._rotl(s[3], 45)
        return result

    def below(self, n):
        m = self.next() * n
        low = m & M64
        if low < n:
            threshold = ((1 << 64) - n) % n
            while low < threshold:
                m = self.next() * n
                low = m & M64
        return m >> 64

    def shuffle(self, idx):
        for i in range(len(idx), 1, -1):
            j = self.below(i)
            idx[i - 1], idx[j] = idx[j], idx[i - 1]


def nncd_orders(seed, n, epochs):
    """The sample order of every epoch as engine/train.c makes it: one stream seeded with the
    step's seed; the index array starts as 0..n-1 and is shuffled again (in place, from the
    previous epoch's order) at the start of every epoch."""
    rng = Rng(seed)
    idx = list(range(n))
    for _ in range(epochs):
        rng.shuffle(idx)
        yield np.array(idx, dtype=np.int64)


def load_mnist(d, kind, n):
    x = np.fromfile(f"{d}/{kind}-images-idx3-ubyte", dtype=np.uint8, offset=16).reshape(-1, 784)[:n]
    y = np.fromfile(f"{d}/{kind}-labels-idx1-ubyte", dtype=np.uint8, offset=8)[:n].astype(np.int64)
    return torch.from_numpy(x.astype(np.float32) / np.float32(255)), torch.from_numpy(y)


class OnnxMLP(torch.nn.Module):
    """A Flatten / Gemm(transB=1) / Relu chain read from an ONNX graph, parameters named after
    the initializers so the trained values can be written back."""

    def __init__(self, model):
        super().__init__()
        inits = {t.name: numpy_helper.to_array(t) for t in model.graph.initializer}
        self.ops = []
        self.params = torch.nn.ParameterDict()
        self.names = {}
        for node in model.graph.node:
            if node.op_type == "Gemm":
                attrs = {a.name: onnx.helper.get_attribute_value(a) for a in node.attribute}
                if attrs.get("transB", 0) != 1 or attrs.get("transA", 0) != 0 or \
                        attrs.get("alpha", 1.0) != 1.0 or attrs.get("beta", 1.0) != 1.0:
                    sys.exit(f"unsupported Gemm attributes {attrs} in node {node.name}")
                w, b = node.input[1], node.input[2] if len(node.input) > 2 else None
                kw = f"p{len(self.names)}"
                self.names[kw] = w
                self.params[kw] = torch.nn.Parameter(torch.from_numpy(inits[w].copy()))
                kb = None
                if b:
                    kb = f"p{len(self.names)}"
                    self.names[kb] = b
                    self.params[kb] = torch.nn.Parameter(torch.from_numpy(inits[b].copy()))
                self.ops.append(("gemm", kw, kb))
            elif node.op_type == "Relu":
                self.ops.append(("relu",))
            elif node.op_type == "Flatten":
                self.ops.append(("flatten",))
            else:
                sys.exit(f"unsupported op {node.op_type} (node {node.name})")

    def forward(self, x):
        for op in self.ops:
            if op[0] == "gemm":
                x = F.linear(x, self.params[op[1]], self.params[op[2]] if op[2] else None)
            elif op[0] == "relu":
                x = F.relu(x)
            else:
                x = torch.flatten(x, 1)
        return x

    def write_back(self, model):
        values = {self.names[k]: p.detach().numpy() for k, p in self.params.items()}
        for i, t in enumerate(model.graph.initializer):
            if t.name in values:
                model.graph.initializer[i].CopyFrom(numpy_helper.from_array(values[t.name], t.name))


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--init", required=True)
    ap.add_argument("--teacher")
    ap.add_argument("--mnist", required=True)
    ap.add_argument("--train", type=int, required=True)
    ap.add_argument("--epochs", type=int, default=10)
    ap.add_argument("--batch", type=int, default=64)
    ap.add_argument("--lr", type=float, default=0.05)
    ap.add_argument("--momentum", type=float, default=0.9)
    ap.add_argument("--nesterov", action="store_true")
    ap.add_argument("--temperature", type=float, default=8.0)
    ap.add_argument("--alpha", type=float, default=0.0)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--out")
    a = ap.parse_args()

    torch.set_num_threads(a.threads)
    torch.use_deterministic_algorithms(True)
    x, y = load_mnist(a.mnist, "train", a.train)
    xt, yt = load_mnist(a.mnist, "t10k", 10000)
    init = onnx.load(a.init)
    model = OnnxMLP(init)
    teacher_logits = None
    if a.alpha > 0:
        if not a.teacher:
            sys.exit("--alpha > 0 needs --teacher")
        teacher = OnnxMLP(onnx.load(a.teacher))
        with torch.no_grad():
            teacher_logits = teacher(x)
    opt = torch.optim.SGD(model.parameters(), lr=a.lr, momentum=a.momentum, nesterov=a.nesterov)
    sched = torch.optim.lr_scheduler.CosineAnnealingLR(opt, T_max=a.epochs)
    T = a.temperature
    losses = []
    t0 = time.time()
    for order in nncd_orders(a.seed, x.shape[0], a.epochs):
        model.train()
        order = torch.from_numpy(order)
        total = 0.0
        for i in range(0, order.shape[0], a.batch):
            idx = order[i:i + a.batch]
            opt.zero_grad()
            s = model(x[idx])
            loss = F.cross_entropy(s, y[idx])
            if teacher_logits is not None:
                kl = F.kl_div(F.log_softmax(s / T, dim=1), F.softmax(teacher_logits[idx] / T, dim=1),
                              reduction="batchmean")
                loss = a.alpha * T * T * kl + (1 - a.alpha) * loss
            total += float(loss) * idx.shape[0]
            loss.backward()
            opt.step()
        sched.step()
        losses.append(total / x.shape[0])
    seconds = time.time() - t0
    model.eval()
    with torch.no_grad():
        correct = int((model(xt).argmax(1) == yt).sum())
    if a.out:
        model.write_back(init)
        onnx.save(init, a.out)
    print(json.dumps({"accuracy": correct / 10000, "correct": correct, "loss": losses,
                      "seconds": seconds, "train": a.train, "alpha": a.alpha}))


if __name__ == "__main__":
    sys.dont_write_bytecode = True
    main()
