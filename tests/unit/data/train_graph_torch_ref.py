#!/usr/bin/python3
"""PyTorch 1.13 oracle for engine/train_graph.c (meson test
train_graph_fixtures_match_pytorch).

For each fixture (lenet300, cnn, lenet5_bn, resnet_block, gelu_mlp) and the
tiny models of make_train_graph_models.py (every operator but Dropout): writes a batch x and loss weights w (numpy, fixed seed),
runs `test_train_graph oracle MODEL IN OUT` (nncd: inference forward, which it
also checks against exec_run to 1e-5, then one training-mode forward and
backward of loss = sum(y * w), and the BN running statistics written back),
and recomputes the same with torch.nn.functional ops on the ONNX graph with the
initializers as leaf tensors (autograd for the gradients, F.batch_norm with
training=True and momentum = 1 - ONNX momentum for the statistics).
Checks: forwards to 1e-5 relative, every parameter gradient to 1e-4 relative
(max |diff| / max |g|; a parameter whose true gradient is 0, a conv bias
before training-mode BN, with max |g| below 1e-3 of the model's largest
gradient, is measured against that largest gradient),
running statistics to 1e-5 relative; in the fixtures the parameter set is
every float initializer but the running statistics.
Usage: train_graph_torch_ref.py TEST_TRAIN_GRAPH FIXTURES_DIR TMP_DIR
"""
import os
import struct
import subprocess
import sys

import numpy as np
import onnx
import torch
import torch.nn.functional as F
from onnx import numpy_helper

torch.set_num_threads(1)
exe, fixtures, tmp = sys.argv[1], sys.argv[2], sys.argv[3]
os.makedirs(tmp, exist_ok=True)
data_dir = os.path.dirname(os.path.abspath(__file__))


def attr(node, name, default=None):
    for a in node.attribute:
        if a.name == name:
            return onnx.helper.get_attribute_value(a)
    return default


def run_torch(model, x, training, leaves, state):
    """Evaluates the ONNX graph with torch ops. leaves: initializer tensors
    (requires_grad for floats); state: running stats (updated in place)."""
    env = dict(leaves)
    env[model.graph.input[0].name] = x
    for n in model.graph.node:
        i = [env[k] if k else None for k in n.input]
        op = n.op_type
        if op == "Constant":
            out = torch.from_numpy(numpy_helper.to_array(attr(n, "value")).copy())
        elif op == "Identity":
            out = i[0]
        elif op == "Gemm":
            a, b = i[0], i[1]
            if attr(n, "transA", 0):
                a = a.t()
            if attr(n, "transB", 0):
                b = b.t()
            out = attr(n, "alpha", 1.0) * (a @ b)
            if len(i) > 2 and i[2] is not None:
                out = out + attr(n, "beta", 1.0) * i[2]
        elif op == "MatMul":
            out = i[0] @ i[1]
        elif op in ("Add", "Sub", "Mul", "Div"):
            out = {"Add": torch.add, "Sub": torch.sub, "Mul": torch.mul, "Div": torch.div}[op](i[0], i[1])
        elif op == "Relu":
            out = F.relu(i[0])
        elif op == "LeakyRelu":
            out = F.leaky_relu(i[0], attr(n, "alpha", 0.01))
        elif op == "Sigmoid":
            out = torch.sigmoid(i[0])
        elif op == "Tanh":
            out = torch.tanh(i[0])
        elif op == "Gelu":
            a = attr(n, "approximate", b"none")
            out = F.gelu(i[0], approximate=a.decode() if isinstance(a, bytes) else a)
        elif op == "HardSwish":
            out = F.hardswish(i[0])
        elif op == "HardSigmoid":
            out = torch.clamp(attr(n, "alpha", 0.2) * i[0] + attr(n, "beta", 0.5), 0.0, 1.0)
        elif op == "Clip":
            lo = attr(n, "min") if len(i) < 2 else (i[1] if i[1] is not None else None)
            hi = attr(n, "max") if len(i) < 3 else (i[2] if i[2] is not None else None)
            out = torch.clamp(i[0], None if lo is None else float(lo), None if hi is None else float(hi))
        elif op in ("Softmax", "LogSoftmax"):
            fn = F.softmax if op == "Softmax" else F.log_softmax
            out = fn(i[0], dim=attr(n, "axis", -1))
        elif op == "Transpose":
            out = i[0].permute(*attr(n, "perm"))
        elif op == "Shape":
            out = torch.tensor(list(i[0].shape), dtype=torch.int64)
        elif op == "Gather":
            out = torch.index_select(i[0], attr(n, "axis", 0), i[1].reshape(-1)).reshape(i[1].shape)
        elif op == "Unsqueeze":
            out = i[0]
            for a in sorted(i[1].tolist()):
                out = out.unsqueeze(a)
        elif op == "Concat":
            out = torch.cat(i, dim=attr(n, "axis"))
        elif op == "Reshape":
            out = i[0].reshape(*[int(v) for v in i[1].tolist()])
        elif op == "Erf":
            out = torch.erf(i[0])
        elif op == "Conv":
            p = attr(n, "pads", [0, 0, 0, 0])
            assert p[0] == p[2] and p[1] == p[3]
            out = F.conv2d(i[0], i[1], i[2] if len(i) > 2 else None, stride=attr(n, "strides", [1, 1]),
                           padding=(p[0], p[1]), dilation=attr(n, "dilations", [1, 1]),
                           groups=attr(n, "group", 1))
        elif op == "BatchNormalization":
            mom = 1.0 - attr(n, "momentum", 0.9)
            rm, rv = state[n.input[3]], state[n.input[4]]
            out = F.batch_norm(i[0], rm, rv, i[1], i[2], training=training, momentum=mom,
                               eps=attr(n, "epsilon", 1e-5))
        elif op == "MaxPool":
            p = attr(n, "pads", [0, 0, 0, 0])
            out = F.max_pool2d(i[0], attr(n, "kernel_shape"), attr(n, "strides"), (p[0], p[1]),
                               ceil_mode=bool(attr(n, "ceil_mode", 0)))
        elif op == "AveragePool":
            p = attr(n, "pads", [0, 0, 0, 0])
            out = F.avg_pool2d(i[0], attr(n, "kernel_shape"), attr(n, "strides"), (p[0], p[1]),
                               ceil_mode=bool(attr(n, "ceil_mode", 0)),
                               count_include_pad=bool(attr(n, "count_include_pad", 0)))
        elif op == "Pad":
            pads = [int(v) for v in env[n.input[1]].tolist()]
            assert attr(n, "mode", b"constant") in (b"constant", "constant")
            # ONNX [x1b, x2b, x3b, x4b, x1e, ...] -> F.pad (w_b, w_e, h_b, h_e)
            out = F.pad(i[0], (pads[3], pads[7], pads[2], pads[6]))
        elif op == "GlobalAveragePool":
            out = i[0].mean(dim=(2, 3), keepdim=True)
        elif op == "Flatten":
            out = torch.flatten(i[0], attr(n, "axis", 1))
        else:
            raise SystemExit("oracle: no torch mapping for " + op)
        env[n.output[0]] = out
    return env[model.graph.output[0].name]


def read_out(path):
    res = {}
    with open(path, "rb") as f:
        b = f.read()
    o = 0
    while o < len(b):
        (ln,) = struct.unpack_from("<I", b, o)
        o += 4
        name = b[o:o + ln].decode()
        o += ln
        (cnt,) = struct.unpack_from("<Q", b, o)
        o += 8
        res[name] = np.frombuffer(b, np.float32, cnt, o).copy()
        o += 4 * cnt
    return res


def rel(a, b, floor=1e-30):
    a = np.asarray(a, np.float64).ravel()
    b = np.asarray(b, np.float64).ravel()
    return np.max(np.abs(a - b)) / max(np.max(np.abs(b)), floor)


failures = 0
cases = [(os.path.join(fixtures, f + ".onnx"), f) for f in
         ["lenet300", "cnn", "lenet5_bn", "resnet_block", "gelu_mlp"]]
for t in ["tg_gemm", "tg_matmul3d", "tg_bcast", "tg_relu", "tg_leakyrelu", "tg_sigmoid",
          "tg_tanh", "tg_gelu", "tg_gelu_tanh", "tg_hardswish", "tg_hardsigmoid", "tg_clip",
          "tg_clip6", "tg_erf", "tg_softmax", "tg_logsoftmax", "tg_shape", "tg_conv",
          "tg_conv_group"]:
    cases.append((os.path.join(data_dir, "train_graph", t + ".onnx"), t))
for path, name in cases:
    model = onnx.load(path)
    inits = {t.name: numpy_helper.to_array(t).copy() for t in model.graph.initializer}
    dims = [d.dim_value for d in model.graph.input[0].type.tensor_type.shape.dim][1:]
    n = 16
    r = np.random.default_rng(7)
    x = r.standard_normal([n] + dims).astype(np.float32)
    if name in ("cnn", "lenet5_bn", "resnet_block"):
        x = np.abs(x)  # image-like
    # output shape from a torch eval run
    running = {k for nd in model.graph.node if nd.op_type == "BatchNormalization" for k in nd.input[3:5]}
    leaves = {k: torch.from_numpy(v.copy()) for k, v in inits.items()}
    for k, v in leaves.items():
        if v.dtype == torch.float32 and k not in running:
            v.requires_grad_(True)
    state = {k: torch.from_numpy(inits[k].copy()) for k in running}
    with torch.no_grad():
        y_eval = run_torch(model, torch.from_numpy(x), False, leaves, state).numpy()
    w = r.standard_normal(y_eval.shape).astype(np.float32)
    inp = os.path.join(tmp, name + ".in")
    outp = os.path.join(tmp, name + ".out")
    with open(inp, "wb") as f:
        f.write(struct.pack("<q", n))
        f.write(x.tobytes())
        f.write(w.tobytes())
    p = subprocess.run([exe, "oracle", path, inp, outp], capture_output=True, text=True)
    sys.stdout.write(p.stdout)
    if p.returncode != 0:
        print(name, "nncd oracle mode failed:", p.stderr)
        failures += 1
        continue
    got = read_out(outp)
    y_train = run_torch(model, torch.from_numpy(x), True, leaves, state)
    (y_train * torch.from_numpy(w)).sum().backward()
    checks = [("forward inference", rel(got["out_infer"], y_eval), 1e-5),
              ("forward training", rel(got["out_train"], y_train.detach().numpy()), 1e-5)]
    params = [k[5:] for k in got if k.startswith("grad:")]
    # A conv bias right before training-mode BN has a true gradient of 0 (the
    # batch mean removes it): both sides are rounding noise there, so such a
    # parameter (max |g| below 1e-3 of the model's largest gradient) is
    # compared against the model's largest gradient instead.
    gmax = max(float(leaves[k].grad.abs().max()) for k in params)
    for k in params:
        g = leaves[k].grad
        zero = float(g.abs().max()) < 1e-3 * gmax
        checks.append(("grad " + k, rel(got["grad:" + k], g.numpy(), gmax if zero else 0.0), 1e-4))
    # in the fixtures every float initializer but the running statistics is a
    # parameter (the tiny models also hold constants, which are not)
    trainable = {k for k, v in leaves.items() if v.requires_grad}
    if not name.startswith("tg_") and set(params) != trainable:
        print(name, "parameter set differs: nncd", sorted(params), "torch", sorted(trainable))
        failures += 1
    for k in running:
        checks.append(("running " + k, rel(got["state:" + k], state[k].numpy()), 1e-5))
    worst = max(c[1] for c in checks)
    for what, v, tol in checks:
        if v > tol or not np.isfinite(v):
            print(f"{name}: {what}: relative difference {v:.3e} > {tol:g}")
            failures += 1
    print(f"{name}: {len(params)} parameter gradients, {len(running)} running statistics; "
          f"worst relative difference {worst:.2e}")
sys.exit(1 if failures else 0)
