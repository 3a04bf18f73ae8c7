#!/usr/bin/python3
"""Independent numpy references for engine/calib.c (acceptance 3 of issue 5).

Usage: calib_reference.py TEST_CALIB_EXE WORKDIR

Draws deterministic samples (numpy seed 5) from known distributions, writes
them as raw float32, runs test_calib on them and checks that every method's
chosen range (and the scale/zero point derived from it) equals the one
computed here with numpy: numpy.histogram on float64 data, the percentile cut
of ONNX Runtime's HistogramCalibrater, its KL-divergence (entropy) threshold
search written with numpy arrays, and the MSE search vectorised over bins.
"""
import os
import subprocess
import sys

import numpy as np

BINS = 2048
QBINS = 128


def hist(x, absolute):
    t = max(abs(float(x.min())), abs(float(x.max())))
    v = np.abs(x) if absolute else x
    lo = 0.0 if absolute else -t
    return np.histogram(v, bins=BINS, range=(lo, t))


def clip(lo, hi, mn, mx):
    return max(lo, mn), min(hi, mx)


def qparams(lo, hi, sym):
    rmin, rmax = min(lo, 0.0), max(hi, 0.0)
    if sym:
        a = max(abs(rmin), abs(rmax))
        sc = np.float32(2.0 * a / 254.0)
        if not (sc > 0 and np.isfinite(sc) and sc >= np.finfo(np.float32).tiny):
            return np.float32(1.0), 0
        return sc, 0
    sc = np.float32((rmax - rmin) / 255.0)
    if not (sc > 0 and sc >= np.finfo(np.float32).tiny):
        return np.float32(1.0), 0
    zp = int(np.clip(np.round(-rmin / float(sc)), 0, 255))
    return sc, zp


def percentile(x, pct, sym, mn, mx):
    h, edges = hist(x, sym)
    cdf = np.cumsum(h / h.sum())
    if sym:
        i = min(np.searchsorted(cdf, pct / 100.0), BINS - 1)
        return clip(-float(edges[i]), float(edges[i]), mn, mx)
    cut = (100.0 - pct) / 200.0
    il = min(np.searchsorted(cdf, cut), BINS - 1)
    ir = min(np.searchsorted(cdf, 1.0 - cut), BINS - 1)
    return clip(float(edges[il]), float(edges[ir]), mn, mx)


def smooth(p, eps=0.0001):
    z = p == 0
    nz = (~z).sum()
    if nz == 0:
        return None
    eps1 = eps * z.sum() / nz
    return p + np.where(z, eps, -eps1)


def entropy(x, mn, mx):
    h, edges = hist(x, False)
    zero, half = BINS // 2, QBINS // 2
    best, thr = np.inf, None
    for i in range(half, zero + 1):
        s, e = zero - i, min(zero + i + 1, BINS)
        sl = h[s:e].astype(np.float64)
        p = sl.copy()
        p[0] += h[:s].sum()
        p[-1] += h[e:].sum()
        merged = sl.size // QBINS
        qb = sl[: QBINS * merged].reshape(QBINS, merged).sum(axis=1)
        qb[-1] += sl[QBINS * merged:].sum()
        nzm = (p[: QBINS * merged] != 0).reshape(QBINS, merged)
        norm = nzm.sum(axis=1)
        per = np.where(norm > 0, np.trunc(qb / np.maximum(norm, 1)), 0.0)
        q = np.zeros(p.size)
        q[: QBINS * merged] = np.repeat(per, merged)
        ps, qs = smooth(p), smooth(q)
        if ps is None or qs is None:
            d = np.inf
        else:
            a, b = ps / ps.sum(), qs / qs.sum()
            d = float(np.sum(a * np.log(a / b)))
        if d < best:
            best, thr = d, (float(edges[s]), float(edges[e]))
    return clip(thr[0], thr[1], mn, mx)


def mse(x, sym, mn, mx):
    h, edges = hist(x, False)
    zero = BINS // 2
    centres = (edges[:-1] + edges[1:]) / 2
    keep = h > 0
    c, w = centres[keep], h[keep].astype(np.float64)
    qmin, qmax = (-127, 127) if sym else (0, 255)
    best, rng = np.inf, (mn, mx)
    for k in range(1, zero + 1):
        a, b = clip(float(edges[zero - k]), float(edges[zero + k]), mn, mx)
        sc, zp = qparams(a, b, sym)
        q = np.clip(np.round(c / float(sc)) + zp, qmin, qmax)
        err = float(np.sum(w * ((q - zp) * float(sc) - c) ** 2))
        if err < best:
            best, rng = err, (a, b)
    return rng


def distributions():
    rng = np.random.default_rng(5)
    yield "normal", rng.normal(0.3, 1.5, 60000)
    yield "relu_normal", np.maximum(rng.normal(0.0, 2.0, 60000), 0.0)
    yield "uniform", rng.uniform(-0.5, 3.0, 40000)
    yield "laplace_outliers", np.concatenate(
        [rng.laplace(0.0, 0.4, 50000), [25.0, -18.0, 40.0]])
    yield "bimodal", np.concatenate([rng.normal(-2, 0.3, 20000), rng.normal(5, 0.5, 30000)])


def main():
    exe, work = sys.argv[1], sys.argv[2]
    os.makedirs(work, exist_ok=True)
    files, data = [], {}
    for name, x in distributions():
        x = x.astype(np.float32)
        path = os.path.join(work, name + ".f32")
        x.tofile(path)
        files.append(path)
        data[path] = (name, x.astype(np.float64))
    out = subprocess.run([exe] + files, check=True, capture_output=True, text=True).stdout
    failures, lines = 0, 0
    for line in out.splitlines():
        path, method, pct, sym, lo, hi, sc, zp = line.split()
        name, x = data[path]
        pct, sym = float(pct), sym == "1"
        lo, hi, sc, zp = float(lo), float(hi), float(sc), int(zp)
        mn, mx = float(x.min()), float(x.max())
        if method == "minmax":
            want = (mn, mx)
        elif method == "percentile":
            want = percentile(x, pct, sym, mn, mx)
        elif method == "entropy":
            want = entropy(x, mn, mx)
        else:
            want = mse(x, sym, mn, mx)
        wsc, wzp = qparams(want[0], want[1], sym)
        ok = (np.isclose(lo, want[0], rtol=1e-12, atol=1e-12) and
              np.isclose(hi, want[1], rtol=1e-12, atol=1e-12) and
              np.isclose(sc, float(wsc), rtol=1e-6) and zp == wzp)
        lines += 1
        print("%-4s %-17s %-10s %-6g sym=%d  C [%.6g, %.6g]  numpy [%.6g, %.6g]  scale %.6g zp %d"
              % ("ok" if ok else "FAIL", name, method, pct, sym, lo, hi, want[0], want[1], sc, zp))
        failures += not ok
    if lines != len(files) * 10:
        print("expected %d result lines, got %d" % (len(files) * 10, lines))
        return 1
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())
