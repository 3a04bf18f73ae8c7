#!/usr/bin/python3
"""PyTorch side of the train_conv timing (issue 6 acceptance 6): forward +
backward of the cnn fixture's two convs and two MaxPools at batch 64 on one
thread, as `test_train_conv bench` times them in nncd. Layer 1 computes no input
gradient (it is the first layer), layer 2 does. Prints thread CPU ms per iteration
(median and minimum of REPS) and, given the nncd binary, runs it in the same process
run and prints the ratios PyTorch / nncd (> 1: nncd faster).
Usage: train_conv_bench_torch.py [TEST_TRAIN_CONV_BINARY] [REPS]"""
import re
import subprocess
import sys
import time

import torch
import torch.nn.functional as F


def bench_layer(n, c, h, w, m, k, need_dx, reps):
    torch.manual_seed(0)
    x = torch.randn(n, c, h, w, requires_grad=need_dx)
    wt = (torch.randn(m, c, k, k) * 0.1).requires_grad_(True)
    b = (torch.randn(m) * 0.1).requires_grad_(True)
    with torch.no_grad():
        dy = torch.randn_like(F.conv2d(x, wt, b))
    fw, tot = [], []
    for _ in range(reps + 3):
        wt.grad = None
        b.grad = None
        x.grad = None
        t0 = time.thread_time()
        y = F.conv2d(x, wt, b)
        t1 = time.thread_time()
        y.backward(dy)
        t2 = time.thread_time()
        fw.append((t1 - t0) * 1e3)
        tot.append((t2 - t0) * 1e3)
    fw, tot = sorted(fw[3:]), sorted(tot[3:])
    return fw[len(fw) // 2], tot[len(tot) // 2], tot[0]


def bench_pool(n, c, h, reps):
    torch.manual_seed(0)
    x = torch.randn(n, c, h, h, requires_grad=True)
    with torch.no_grad():
        dy = torch.randn_like(F.max_pool2d(x, 2, 2))
    tot = []
    for _ in range(reps + 3):
        x.grad = None
        t0 = time.thread_time()
        F.max_pool2d(x, 2, 2).backward(dy)
        tot.append((time.thread_time() - t0) * 1e3)
    tot = sorted(tot[3:])
    return tot[len(tot) // 2], tot[0]


def main():
    torch.set_num_threads(1)
    binary = sys.argv[1] if len(sys.argv) > 1 else None
    reps = int(sys.argv[2]) if len(sys.argv) > 2 else 31
    pools = [("maxpool 2x2 s2 8x24x24", (64, 8, 24)), ("maxpool 2x2 s2 16x8x8", (64, 16, 8))]
    layers = [("conv1 1->8 5x5 28x28", (64, 1, 28, 28, 8, 5, False)),
              ("conv2 8->16 5x5 12x12", (64, 8, 12, 12, 16, 5, True))]
    torch_ms = {}
    for name, p in layers:
        f, t, tmin = bench_layer(*p, reps)
        torch_ms[name] = (t, tmin)
        print(f"torch {name} batch 64: forward {f:.3f} ms total {t:.3f} ms (min {tmin:.3f})")
    for name, p in pools:
        t, tmin = bench_pool(*p, reps)
        torch_ms[name] = (t, tmin)
        print(f"torch {name} batch 64: total {t:.3f} ms (min {tmin:.3f})")
    if not binary:
        return
    out = subprocess.run([binary, "bench", str(reps)], check=True, capture_output=True,
                         text=True, env={"OPENBLAS_NUM_THREADS": "1"}).stdout
    print(out, end="")
    tot_t = [0.0, 0.0]
    tot_n = [0.0, 0.0]
    for name, _ in layers + pools:
        mt = re.search(re.escape(name) + r" batch 64: .*total ([0-9.]+) ms \(min ([0-9.]+)\)",
                       out)
        ms = (float(mt.group(1)), float(mt.group(2)))
        for k in range(2):
            tot_t[k] += torch_ms[name][k]
            tot_n[k] += ms[k]
        print(f"ratio torch/nncd {name}: median {torch_ms[name][0] / ms[0]:.2f}, "
              f"min {torch_ms[name][1] / ms[1]:.2f}")
    print(f"ratio torch/nncd all four: median {tot_t[0] / tot_n[0]:.2f}, "
          f"min {tot_t[1] / tot_n[1]:.2f}")


if __name__ == "__main__":
    main()
