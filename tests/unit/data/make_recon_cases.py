#!/usr/bin/python3
"""Cases for test_prune_recon: two small models, their calibration inputs and
the weights a float64 numpy implementation of the reconstruction gives,
written without looking at engine/prune_recon.c beyond its documented rule
(prune_recon.h): per layer in graph order, H = X^T X over the inputs the
model with the earlier layers already reconstructed produces,
lambda = 0.01 * mean(diag H), dead columns (H_jj = 0) get 1 on the
diagonal, U = upper Cholesky factor of (H + lambda I)^-1, and for each
column j in order each row whose weight j is pruned takes the OBS step
w[j+1:] -= w_j / U_jj * U[j, j+1:], w_j = 0; a row whose output error
d^T H d (d = new - original, undamped H) is larger than with the mask alone
keeps its masked original weights.

recon_mlp: Gemm(transB=1, [12, 20]) -> Relu -> MatMul([12, 6]) -> Add(bias).
recon_cnn: Conv(3 -> 4, 3x3, group 1, stride 2, pads 1) -> Relu ->
           Conv(4 -> 6, 3x3, group 2, dilation 2) -> Relu -> Conv(6 -> 2, 1x1).
Masks: the 60% smallest |w| of each weight pruned (ties impossible in
random floats). Files: recon_<m>.onnx (original weights), recon_<m>_x.npy
(calibration inputs), recon_<m>_<weight>.npy (expected weights after
pruning + reconstruction; zero exactly where pruned).
Run: /usr/bin/python3 make_recon_cases.py (writes next to itself)."""
import os
import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper

here = os.path.dirname(os.path.abspath(__file__))
rng = np.random.default_rng(11)
f = TensorProto.FLOAT


def save(name, nodes, inits, xshape, yshape):
    g = helper.make_graph(nodes, name, [helper.make_tensor_value_info('x', f, xshape)],
                          [helper.make_tensor_value_info('y', f, yshape)],
                          [numpy_helper.from_array(a, n) for n, a in inits])
    m = helper.make_model(g, opset_imports=[helper.make_opsetid('', 13)])
    m.ir_version = 7
    onnx.checker.check_model(m)
    onnx.save(m, os.path.join(here, name + '.onnx'))


def mask_of(w):
    k = int(round(0.6 * w.size))
    t = np.sort(np.abs(w).ravel())[k - 1]
    return np.abs(w) > t


def obs(w_rows, keep_rows, h):
    """w_rows [N, K] (float64), keep_rows bool [N, K], h [K, K]."""
    k = h.shape[0]
    mean = np.mean(np.diag(h))
    lam = 0.01 * mean
    hd = h.copy()
    d = np.diag(h)
    for j in range(k):
        hd[j, j] = d[j] + lam if d[j] > 0 else 1.0
    u = np.linalg.cholesky(np.linalg.inv(hd)).T  # upper, inv = u^T u
    w = w_rows.copy()
    for j in range(k):
        pr = ~keep_rows[:, j]
        err = w[pr, j] / u[j, j]
        w[np.ix_(pr, np.arange(j + 1, k))] -= np.outer(err, u[j, j + 1:])
        w[pr, j] = 0
    w = np.where(keep_rows, w, 0.0)
    masked = np.where(keep_rows, w_rows, 0.0)
    for i in range(w.shape[0]):
        da, dm = w[i] - w_rows[i], masked[i] - w_rows[i]
        if da @ h @ da > dm @ h @ dm:
            w[i] = masked[i]
    return w


def im2col(x, kh, kw, stride, pad, dil, group):
    """x [n, c, h, w] -> per group [n * oh * ow, c/group * kh * kw]."""
    n, c, h, wd = x.shape
    xp = np.pad(x, ((0, 0), (0, 0), (pad, pad), (pad, pad)))
    oh = (h + 2 * pad - dil * (kh - 1) - 1) // stride + 1
    ow = (wd + 2 * pad - dil * (kw - 1) - 1) // stride + 1
    cols = np.empty((n, oh, ow, c, kh, kw))
    for i in range(kh):
        for j in range(kw):
            cols[:, :, :, :, i, j] = xp[:, :, i * dil: i * dil + stride * (oh - 1) + 1: stride,
                                        j * dil: j * dil + stride * (ow - 1) + 1: stride].transpose(0, 2, 3, 1)
    cg = c // group
    return [cols[:, :, :, g * cg:(g + 1) * cg].reshape(n * oh * ow, -1) for g in range(group)], oh, ow


def conv(x, w, stride, pad, dil, group):
    m = w.shape[0]
    cols, oh, ow = im2col(x, w.shape[2], w.shape[3], stride, pad, dil, group)
    mg = m // group
    outs = [cols[g] @ w[g * mg:(g + 1) * mg].reshape(mg, -1).T for g in range(group)]
    y = np.concatenate(outs, axis=1)
    return y.reshape(x.shape[0], oh, ow, m).transpose(0, 3, 1, 2)


def recon_conv(x, w, stride, pad, dil, group):
    cols, _, _ = im2col(x, w.shape[2], w.shape[3], stride, pad, dil, group)
    m = w.shape[0]
    mg = m // group
    keep = mask_of(w).reshape(m, -1)
    rows = w.reshape(m, -1).astype(np.float64)
    out = np.empty_like(rows)
    for g in range(group):
        h = cols[g].T @ cols[g]
        out[g * mg:(g + 1) * mg] = obs(rows[g * mg:(g + 1) * mg], keep[g * mg:(g + 1) * mg], h)
    return out.reshape(w.shape)


# ---- MLP ----
# correlated inputs, so H is far from diagonal and the update has work to do
x = (rng.normal(0, 1, (300, 20)) @ rng.normal(0, 0.5, (20, 20))).astype(np.float32)
x[:, 3] = 0  # a dead input column: H_33 = 0
w1 = rng.normal(0, 0.4, (12, 20)).astype(np.float32)
b1 = rng.normal(0, 0.1, 12).astype(np.float32)
w2 = rng.normal(0, 0.4, (12, 6)).astype(np.float32)
b2 = rng.normal(0, 0.1, 6).astype(np.float32)
save('recon_mlp', [helper.make_node('Gemm', ['x', 'W1', 'B1'], ['h'], name='fc1', transB=1),
                   helper.make_node('Relu', ['h'], ['r'], name='relu'),
                   helper.make_node('MatMul', ['r', 'W2'], ['mm'], name='fc2'),
                   helper.make_node('Add', ['mm', 'B2'], ['y'], name='bias2')],
     [('W1', w1), ('B1', b1), ('W2', w2), ('B2', b2)], ['N', 20], ['N', 6])
xd = x.astype(np.float64)
r1 = obs(w1.astype(np.float64), mask_of(w1), xd.T @ xd)
h = np.maximum(xd @ r1.T + b1, 0)
r2 = obs(w2.T.astype(np.float64), mask_of(w2).T, h.T @ h).T
np.save(os.path.join(here, 'recon_mlp_x.npy'), x)
np.save(os.path.join(here, 'recon_mlp_W1.npy'), r1.astype(np.float32))
np.save(os.path.join(here, 'recon_mlp_W2.npy'), np.ascontiguousarray(r2, dtype=np.float32))

# ---- CNN ----
x = np.cumsum(rng.normal(0, 1, (40, 3, 9, 9)), axis=3)
x = (x + 0.5 * x[:, ::-1]).astype(np.float32)  # neighbours and channels correlated
c1 = rng.normal(0, 0.4, (4, 3, 3, 3)).astype(np.float32)
c2 = rng.normal(0, 0.4, (6, 2, 3, 3)).astype(np.float32)
c3 = rng.normal(0, 0.4, (2, 6, 1, 1)).astype(np.float32)
save('recon_cnn', [helper.make_node('Conv', ['x', 'C1'], ['a'], name='conv1', strides=[2, 2], pads=[1, 1, 1, 1]),
                   helper.make_node('Relu', ['a'], ['ar'], name='relu1'),
                   helper.make_node('Conv', ['ar', 'C2'], ['b'], name='conv2', group=2, dilations=[2, 2]),
                   helper.make_node('Relu', ['b'], ['br'], name='relu2'),
                   helper.make_node('Conv', ['br', 'C3'], ['y'], name='conv3')],
     [('C1', c1), ('C2', c2), ('C3', c3)], ['N', 3, 9, 9], ['N', 2, 1, 1])
xd = x.astype(np.float64)
r1 = recon_conv(xd, c1, 2, 1, 1, 1)
a = np.maximum(conv(xd, r1, 2, 1, 1, 1), 0)
r2 = recon_conv(a, c2, 1, 0, 2, 2)
b = np.maximum(conv(a, r2, 1, 0, 2, 2), 0)
r3 = recon_conv(b, c3, 1, 0, 1, 1)
np.save(os.path.join(here, 'recon_cnn_x.npy'), x)
for n, r in (('C1', r1), ('C2', r2), ('C3', r3)):
    np.save(os.path.join(here, f'recon_cnn_{n}.npy'), r.astype(np.float32))
