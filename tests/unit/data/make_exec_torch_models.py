#!/usr/bin/python3
"""Writes small PyTorch-exported models (Debian's python3-torch, opset 13, dynamic
batch N) that test_exec runs against ONNX Runtime on MNIST digits; untrained, with
fixed seeds, so the files are the same on every run with the same torch build:

  exec_torch_gelu.onnx  MLP with nn.GELU (exported as the Div/Erf/Add/Mul pattern), Softmax
  exec_torch_res.onnx   Conv + BatchNorm (kept: TrainingMode.PRESERVE) residual block with
                        an Add skip, GlobalAveragePool, Flatten, Sigmoid/Tanh/HardSwish,
                        LogSoftmax
  exec_torch_mix.onnx   LeakyRelu, Clip, HardSigmoid, Mul, Reshape/Transpose/Concat with
                        the Shape/Gather/Unsqueeze/Concat batch pattern

Usage: /usr/bin/python3 make_exec_torch_models.py [OUT_DIR]  (default: this script's folder)
"""
import os
import sys

import torch
import torch.nn as nn
import torch.nn.functional as F

OUT = sys.argv[1] if len(sys.argv) > 1 else os.path.dirname(os.path.abspath(__file__))


class Gelu(nn.Module):
    def __init__(self):
        super().__init__()
        self.a, self.b, self.c = nn.Linear(784, 32), nn.Linear(32, 16), nn.Linear(16, 10)

    def forward(self, x):
        return torch.softmax(self.c(F.gelu(self.b(F.gelu(self.a(x))))), 1)


class Res(nn.Module):
    def __init__(self):
        super().__init__()
        self.c1, self.b1 = nn.Conv2d(1, 8, 3, padding=1), nn.BatchNorm2d(8)
        self.c2, self.b2 = nn.Conv2d(8, 8, 3, padding=1), nn.BatchNorm2d(8)
        self.c0, self.fc = nn.Conv2d(1, 8, 1), nn.Linear(8, 10)
        for b in (self.b1, self.b2):  # non-trivial running statistics
            b.running_mean.uniform_(-0.5, 0.5)
            b.running_var.uniform_(0.5, 2.0)
            b.weight.data.uniform_(0.5, 1.5)
            b.bias.data.uniform_(-0.2, 0.2)

    def forward(self, x):
        y = torch.relu(self.b1(self.c1(x)))
        y = torch.relu(self.b2(self.c2(y)) + self.c0(x))
        y = torch.flatten(F.adaptive_avg_pool2d(y, 1), 1)
        return torch.log_softmax(self.fc(torch.sigmoid(y) * torch.tanh(y) + F.hardswish(y)), 1)


class Mix(nn.Module):
    def __init__(self):
        super().__init__()
        self.a, self.b = nn.Linear(784, 20), nn.Linear(40, 10)

    def forward(self, x):
        y = torch.clamp(F.leaky_relu(self.a(x), 0.1), -0.5, 2.0)
        y = F.hardsigmoid(y) * y
        z = y.reshape(-1, 4, 5).transpose(1, 2).reshape(x.shape[0], -1)
        return self.b(torch.cat([z, y], 1))


torch.manual_seed(0)
for name, model, shape in (("gelu", Gelu(), (2, 784)), ("res", Res(), (2, 1, 28, 28)),
                           ("mix", Mix(), (2, 784))):
    model.eval()
    kw = {}
    if name == "res":
        kw = dict(training=torch.onnx.TrainingMode.PRESERVE, do_constant_folding=False)
    torch.onnx.export(model, torch.randn(*shape), os.path.join(OUT, "exec_torch_%s.onnx" % name),
                      input_names=["input"], output_names=["out"],
                      dynamic_axes={"input": {0: "N"}, "out": {0: "N"}}, opset_version=13, **kw)
