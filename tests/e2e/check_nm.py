#!/usr/bin/python3
"""N:M check of an ONNX model read back by python3-onnx (issue 4, acceptance 3).

usage: check_nm.py MODEL.onnx N M [--dense NAME ...]

For every float32 initializer that a Gemm (B), MatMul (an initializer operand) or Conv (W)
consumes, the weight is viewed with its input (reduction) dimension as rows of groups, the
same rule nncd documents (docs/internals/prune.md):
  Gemm B [K,N] (transB=0): groups run down each column (along K); [N,K] (transB=1): along rows
  MatMul B [..,K,N]: along K (axis -2); MatMul A [..,M,K]: along K (last axis)
  Conv W [M,C/g,kh,kw]: along the flattened C/g*kh*kw of each output channel
and every run of M consecutive elements (the last one may be shorter) must hold at most N
non-zeros. Weights named with --dense must be untouched instead (keep_first_last), which is
checked by comparing against ORIGINAL given with --original.
Prints one JSON line per weight and exits 1 on the first violation."""
import json
import sys

import numpy as np
import onnx
from onnx import numpy_helper


def main(argv):
    if len(argv) < 4:
        print(__doc__, file=sys.stderr)
        return 2
    path, n, m = argv[1], int(argv[2]), int(argv[3])
    dense, original = set(), None
    rest = argv[4:]
    while rest:
        if rest[0] == "--dense" and len(rest) > 1:
            dense.add(rest[1])
            rest = rest[2:]
        elif rest[0] == "--original" and len(rest) > 1:
            original = onnx.load(rest[1])
            rest = rest[2:]
        else:
            print(__doc__, file=sys.stderr)
            return 2
    model = onnx.load(path)
    g = model.graph
    inits = {t.name: t for t in g.initializer}
    orig = {t.name: numpy_helper.to_array(t) for t in original.graph.initializer} if original else {}
    seen, checked = set(), 0
    for node in g.node:
        if node.domain not in ("", "ai.onnx") or node.op_type not in ("Gemm", "MatMul", "Conv"):
            continue
        slots = [1, 0] if node.op_type == "MatMul" else [1]
        for slot in slots:
            if slot >= len(node.input) or node.input[slot] not in inits:
                continue
            t = inits[node.input[slot]]
            if t.data_type != onnx.TensorProto.FLOAT or t.name in seen:
                continue
            w = numpy_helper.to_array(t)
            if node.op_type == "Gemm":
                if w.ndim != 2:
                    continue
                trans_b = any(a.name == "transB" and a.i for a in node.attribute)
                rows = w if trans_b else w.T                 # [N, K]
            elif node.op_type == "MatMul":
                if w.ndim < 2:
                    continue
                if slot == 1:
                    rows = np.swapaxes(w, -1, -2).reshape(-1, w.shape[-2])  # [..*N, K]
                else:
                    rows = w.reshape(-1, w.shape[-1])         # [..*M, K]
            else:
                if w.ndim < 3:
                    continue
                rows = w.reshape(w.shape[0], -1)              # [M, C*kh*kw]
            seen.add(t.name)
            checked += 1
            k = rows.shape[1]
            nz = rows != 0
            worst, tail_worst = 0, 0
            full = k // m * m
            if full:
                worst = int(nz[:, :full].reshape(rows.shape[0], -1, m).sum(axis=2).max())
            if k > full:
                tail_worst = int(nz[:, full:].sum(axis=1).max())
            info = {"name": t.name, "op": node.op_type, "shape": list(w.shape), "K": k,
                    "max_nonzeros_per_group": worst, "tail": k - full,
                    "max_nonzeros_tail": tail_worst,
                    "sparsity": round(1.0 - float(nz.mean()), 6)}
            print(json.dumps(info))
            if t.name in dense:
                if t.name not in orig or not np.array_equal(orig[t.name], w):
                    print(f"FAIL: {t.name} should be untouched (keep_first_last)", file=sys.stderr)
                    return 1
                continue
            if worst > n or tail_worst > min(n, k - full):
                print(f"FAIL: {t.name}: a group of {m} consecutive input weights holds "
                      f"{max(worst, tail_worst)} non-zeros (> {n})", file=sys.stderr)
                return 1
    if checked == 0:
        print("FAIL: no prunable weights found", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
