#!/usr/bin/python3
"""PyTorch 1.13 references for engine/train_conv (tests/unit/test_train_conv.c).

For every case: random inputs (fixed seed), the forward output and the
gradients of sum(y * r) for a random r, from F.conv2d, F.max_pool2d,
F.avg_pool2d, F.batch_norm (training=True/False) and F.pad. Written as .npy
files under data/train_conv/<case>_<array>.npy, with the case's parameters in
<case>_params.npy (int64) so the C test reads its shapes from here and the
two cannot drift apart. Asymmetric pads (which F.conv2d cannot take) are an
F.pad in front of the op, so the gradient w.r.t. the unpadded x is the
reference. Regenerate with: /usr/bin/python3 make_train_conv_ref.py
"""
import os

import numpy as np
import torch
import torch.nn.functional as F

OUT = os.path.join(os.path.dirname(os.path.abspath(__file__)), "train_conv")

# name, n, c, h, w, m, kh, kw, sh, sw, dh, dw, pt, pl, pb, pr, group, bias
CONV_CASES = [
    ("conv_basic", 2, 3, 7, 6, 4, 3, 3, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1),
    ("conv_stride2_asym_pads", 2, 3, 9, 8, 5, 3, 2, 2, 2, 1, 1, 1, 0, 2, 1, 1, 1),
    ("conv_stride_hw_differ", 2, 2, 8, 9, 3, 2, 3, 2, 1, 1, 1, 0, 1, 1, 0, 1, 1),
    ("conv_dilation2", 2, 2, 10, 9, 3, 3, 3, 1, 1, 2, 2, 2, 2, 2, 2, 1, 1),
    ("conv_dilation_stride", 1, 3, 11, 10, 2, 3, 2, 2, 3, 2, 3, 1, 2, 1, 2, 1, 0),
    ("conv_group2", 2, 4, 6, 6, 6, 3, 3, 2, 2, 1, 1, 1, 1, 1, 1, 2, 1),
    ("conv_depthwise", 2, 4, 7, 7, 4, 3, 3, 1, 1, 1, 1, 1, 1, 1, 1, 4, 1),
    ("conv_depthwise_mult2_stride2", 2, 3, 8, 7, 6, 3, 3, 2, 2, 1, 1, 1, 1, 1, 1, 3, 1),
    ("conv_pointwise", 3, 5, 4, 5, 3, 1, 1, 1, 1, 1, 1, 0, 0, 0, 0, 1, 1),
    ("conv_pointwise_group", 2, 4, 3, 3, 6, 1, 1, 1, 1, 1, 1, 0, 0, 0, 0, 2, 0),
    ("conv_1x1_stride2", 2, 3, 7, 6, 4, 1, 1, 2, 2, 1, 1, 0, 0, 0, 0, 1, 1),
    ("conv_no_bias", 2, 3, 6, 6, 2, 2, 2, 1, 1, 1, 1, 0, 0, 0, 0, 1, 0),
    ("conv_big_pad", 1, 2, 3, 4, 2, 3, 3, 1, 1, 1, 1, 3, 2, 3, 3, 1, 1),
    ("conv_cnn_layer1", 4, 1, 28, 28, 8, 5, 5, 1, 1, 1, 1, 0, 0, 0, 0, 1, 1),
    ("conv_cnn_layer2", 4, 8, 12, 12, 16, 5, 5, 1, 1, 1, 1, 0, 0, 0, 0, 1, 1),
]

# name, n, c, h, w, kh, kw, sh, sw, dh, dw, pt, pl, pb, pr, ceil, count_include_pad,
# ties (inputs drawn from a few integers so windows hold equal maxima)
MAXPOOL_CASES = [
    ("maxpool_2x2_s2", 2, 3, 8, 8, 2, 2, 2, 2, 1, 1, 0, 0, 0, 0, 0, 0, 0),
    ("maxpool_3x3_s2_pad1", 2, 2, 9, 8, 3, 3, 2, 2, 1, 1, 1, 1, 1, 1, 0, 0, 0),
    ("maxpool_ceil", 2, 2, 8, 9, 3, 3, 2, 2, 1, 1, 0, 0, 0, 0, 1, 0, 0),
    ("maxpool_ceil_pad", 1, 2, 7, 7, 3, 2, 2, 3, 1, 1, 1, 1, 1, 1, 1, 0, 0),
    ("maxpool_dilation2", 2, 2, 9, 9, 3, 2, 1, 2, 2, 2, 1, 1, 1, 1, 0, 0, 0),
    ("maxpool_overlap_ties", 2, 3, 7, 7, 3, 3, 1, 1, 1, 1, 1, 1, 1, 1, 0, 0, 1),
    ("maxpool_s2_ties", 2, 2, 8, 8, 2, 2, 2, 2, 1, 1, 0, 0, 0, 0, 0, 0, 1),
]

AVGPOOL_CASES = [
    ("avgpool_2x2_s2", 2, 3, 8, 8, 2, 2, 2, 2, 1, 1, 0, 0, 0, 0, 0, 1, 0),
    ("avgpool_pad_include", 2, 2, 7, 8, 3, 3, 2, 2, 1, 1, 1, 1, 1, 1, 0, 1, 0),
    ("avgpool_pad_exclude", 2, 2, 7, 8, 3, 3, 2, 2, 1, 1, 1, 1, 1, 1, 0, 0, 0),
    ("avgpool_ceil_include", 2, 2, 8, 7, 3, 3, 2, 2, 1, 1, 1, 1, 1, 1, 1, 1, 0),
    ("avgpool_ceil_exclude", 2, 2, 8, 7, 3, 3, 2, 2, 1, 1, 1, 1, 1, 1, 1, 0, 0),
    ("avgpool_ceil_nopad", 1, 3, 9, 8, 2, 3, 2, 2, 1, 1, 0, 0, 0, 0, 1, 1, 0),
    ("avgpool_rect_stride", 2, 2, 9, 10, 2, 3, 1, 2, 1, 1, 1, 1, 1, 1, 0, 1, 0),
]

# name, n, c, h, w, momentum (ONNX meaning), epsilon
BN_CASES = [
    ("bn_4x3x5x5", 4, 3, 5, 5, 0.9, 1e-5),
    ("bn_2x5x3x4_mom0.7", 2, 5, 3, 4, 0.7, 1e-3),
    ("bn_8x4x1x1", 8, 4, 1, 1, 0.9, 1e-5),
]

# name, n, c, h, w, pt, pl, pb, pr, value
PAD_CASES = [
    ("pad_zero", 2, 3, 5, 4, 1, 2, 2, 1, 0.0),
    ("pad_value_crop", 2, 2, 6, 7, -1, 2, 1, -2, 0.5),
]

GAP_CASES = [("gap_3x4x5x6", 3, 4, 5, 6)]


def save(case, name, arr):
    np.save(os.path.join(OUT, f"{case}_{name}.npy"), np.ascontiguousarray(arr))


def t(arr, grad=False):
    return torch.tensor(arr, dtype=torch.float32, requires_grad=grad)


def conv_case(rng, p):
    name, n, c, h, w, m, kh, kw, sh, sw, dh, dw, pt, pl, pb, pr, group, bias = p
    x = rng.standard_normal((n, c, h, w)).astype(np.float32)
    wt = (rng.standard_normal((m, c // group, kh, kw)) * 0.5).astype(np.float32)
    b = rng.standard_normal(m).astype(np.float32)
    xt, wtt, bt = t(x, True), t(wt, True), t(b, True)
    xp = F.pad(xt, (pl, pr, pt, pb))
    y = F.conv2d(xp, wtt, bt if bias else None, stride=(sh, sw), dilation=(dh, dw), groups=group)
    r = rng.standard_normal(tuple(y.shape)).astype(np.float32)
    (y * t(r)).sum().backward()
    save(name, "params", np.array(p[1:], dtype=np.int64))
    save(name, "x", x)
    save(name, "w", wt)
    save(name, "b", b)
    save(name, "r", r)
    save(name, "y", y.detach().numpy())
    save(name, "dx", xt.grad.numpy())
    save(name, "dw", wtt.grad.numpy())
    save(name, "db", bt.grad.numpy() if bias else np.zeros(m, np.float32))


def pool_case(rng, p, kind):
    name, n, c, h, w, kh, kw, sh, sw, dh, dw, pt, pl, pb, pr, ceil, cip, ties = p
    if ties:
        x = rng.integers(0, 3, (n, c, h, w)).astype(np.float32)
    else:
        x = rng.standard_normal((n, c, h, w)).astype(np.float32)
    xt = t(x, True)
    # PyTorch pools take symmetric pads only: every case here is symmetric.
    assert pt == pb and pl == pr
    if kind == "max":
        y = F.max_pool2d(xt, (kh, kw), (sh, sw), (pt, pl), (dh, dw), ceil_mode=bool(ceil))
    else:
        assert dh == 1 and dw == 1
        y = F.avg_pool2d(xt, (kh, kw), (sh, sw), (pt, pl), ceil_mode=bool(ceil),
                         count_include_pad=bool(cip))
    r = rng.standard_normal(tuple(y.shape)).astype(np.float32)
    (y * t(r)).sum().backward()
    save(name, "params", np.array(p[1:], dtype=np.int64))
    save(name, "x", x)
    save(name, "r", r)
    save(name, "y", y.detach().numpy())
    save(name, "dx", xt.grad.numpy())


def bn_case(rng, p):
    name, n, c, h, w, mom, eps = p
    x = (rng.standard_normal((n, c, h, w)) * 2.0 + 0.7).astype(np.float32)
    scale = rng.standard_normal(c).astype(np.float32)
    bias = rng.standard_normal(c).astype(np.float32)
    rmean = rng.standard_normal(c).astype(np.float32)
    rvar = rng.uniform(0.5, 2.0, c).astype(np.float32)
    save(name, "params", np.array([n, c, h, w], dtype=np.int64))
    save(name, "hyper", np.array([mom, eps], dtype=np.float32))
    save(name, "x", x)
    save(name, "scale", scale)
    save(name, "bias", bias)
    save(name, "rmean", rmean)
    save(name, "rvar", rvar)
    # training: PyTorch's momentum is 1 - ONNX's
    xt, st, bt = t(x, True), t(scale, True), t(bias, True)
    rm, rv = t(rmean), t(rvar)
    y = F.batch_norm(xt, rm, rv, st, bt, training=True, momentum=1.0 - mom, eps=eps)
    r = rng.standard_normal(tuple(y.shape)).astype(np.float32)
    (y * t(r)).sum().backward()
    save(name, "r", r)
    save(name, "train_y", y.detach().numpy())
    save(name, "train_rmean", rm.numpy())
    save(name, "train_rvar", rv.numpy())
    save(name, "train_dx", xt.grad.numpy())
    save(name, "train_dscale", st.grad.numpy())
    save(name, "train_dbias", bt.grad.numpy())
    # inference with the original running statistics
    xt, st, bt = t(x, True), t(scale, True), t(bias, True)
    y = F.batch_norm(xt, t(rmean), t(rvar), st, bt, training=False, eps=eps)
    (y * t(r)).sum().backward()
    save(name, "infer_y", y.detach().numpy())
    save(name, "infer_dx", xt.grad.numpy())
    save(name, "infer_dscale", st.grad.numpy())
    save(name, "infer_dbias", bt.grad.numpy())


def pad_case(rng, p):
    name, n, c, h, w, pt, pl, pb, pr, value = p
    x = rng.standard_normal((n, c, h, w)).astype(np.float32)
    xt = t(x, True)
    y = F.pad(xt, (pl, pr, pt, pb), mode="constant", value=value)
    r = rng.standard_normal(tuple(y.shape)).astype(np.float32)
    (y * t(r)).sum().backward()
    save(name, "params", np.array(p[1:9], dtype=np.int64))
    save(name, "value", np.array([value], dtype=np.float32))
    save(name, "x", x)
    save(name, "r", r)
    save(name, "y", y.detach().numpy())
    save(name, "dx", xt.grad.numpy())


def pad_avgpool_case(rng):
    """What PyTorch exports for AvgPool2d(3, 2, padding=1, count_include_pad=True)
    as Pad + AveragePool: F.pad then an unpadded pool, checked against the padded
    pool so tc_pad + tc_avgpool is seen to reproduce the PyTorch layer."""
    name = "pad_then_avgpool"
    x = rng.standard_normal((2, 3, 7, 6)).astype(np.float32)
    xt = t(x, True)
    y = F.avg_pool2d(xt, 3, 2, 1, count_include_pad=True)
    r = rng.standard_normal(tuple(y.shape)).astype(np.float32)
    (y * t(r)).sum().backward()
    save(name, "params", np.array([2, 3, 7, 6, 1, 1, 1, 1], dtype=np.int64))
    save(name, "x", x)
    save(name, "r", r)
    save(name, "y", y.detach().numpy())
    save(name, "dx", xt.grad.numpy())


def gap_case(rng, p):
    name, n, c, h, w = p
    x = rng.standard_normal((n, c, h, w)).astype(np.float32)
    xt = t(x, True)
    y = xt.mean(dim=(2, 3))
    r = rng.standard_normal(tuple(y.shape)).astype(np.float32)
    (y * t(r)).sum().backward()
    save(name, "params", np.array(p[1:], dtype=np.int64))
    save(name, "x", x)
    save(name, "r", r)
    save(name, "y", y.detach().numpy())
    save(name, "dx", xt.grad.numpy())


def main():
    os.makedirs(OUT, exist_ok=True)
    torch.set_num_threads(1)
    rng = np.random.default_rng(20261129)
    for p in CONV_CASES:
        conv_case(rng, p)
    for p in MAXPOOL_CASES:
        pool_case(rng, p, "max")
    for p in AVGPOOL_CASES:
        pool_case(rng, p, "avg")
    for p in BN_CASES:
        bn_case(rng, p)
    for p in PAD_CASES:
        pad_case(rng, p)
    pad_avgpool_case(rng)
    for p in GAP_CASES:
        gap_case(rng, p)
    with open(os.path.join(OUT, "cases.txt"), "w") as f:
        for group, cases in (("conv", CONV_CASES), ("maxpool", MAXPOOL_CASES),
                             ("avgpool", AVGPOOL_CASES), ("bn", BN_CASES),
                             ("pad", PAD_CASES), ("gap", GAP_CASES)):
            for p in cases:
                f.write(f"{group} {p[0]}\n")
        f.write("pad_avgpool pad_then_avgpool\n")


if __name__ == "__main__":
    main()
