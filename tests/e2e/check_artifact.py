#!/usr/bin/python3
"""Checks an int8 per-channel pruned artifact against its original, from inspect.py reports.

    check_artifact.py ORIGINAL.json ARTIFACT.json TARGET_SPARSITY TOLERANCE

Passes (exit 0) when the artifact has the original's Gemm/MatMul/Conv nodes in the same order,
each reading a weight of the original's shape stored as int8 through DequantizeLinear with
per-output-channel scales, and the overall sparsity of those weights (zeros after
dequantization) is within TOLERANCE of TARGET_SPARSITY. Prints one line per weight.
"""

import json
import sys


def main(argv):
    if len(argv) != 5:
        sys.stderr.write(__doc__)
        return 2
    orig = json.load(open(argv[1]))
    art = json.load(open(argv[2]))
    target, tol = float(argv[3]), float(argv[4])
    problems = []

    ow, aw = orig["weights"], art["weights"]
    if [(w["op"], w["node"]) for w in ow] != [(w["op"], w["node"]) for w in aw]:
        problems.append("weight-consuming nodes differ: original "
                        f"{[(w['op'], w['node']) for w in ow]}, artifact "
                        f"{[(w['op'], w['node']) for w in aw]}")
    for o, a in zip(ow, aw):
        dq = a.get("dequantize") or {}
        print(f"  {a['op']:7} {a['node']:14} {str(a.get('shape')):18} {a.get('stored_dtype')!s:6} "
              f"via {a['source']:16} scale {dq.get('scale_shape')} axis {dq.get('axis')} "
              f"per_channel={dq.get('per_channel')} sparsity {a.get('sparsity', float('nan')):.4f}")
        where = f"{a['op']} {a['node']} weight {a['name']}"
        if a["source"] != "DequantizeLinear":
            problems.append(f"{where}: comes from {a['source']}, not DequantizeLinear")
        if a.get("stored_dtype") != "int8":
            problems.append(f"{where}: stored as {a.get('stored_dtype')}, not int8")
        if not dq.get("per_channel"):
            problems.append(f"{where}: scale shape {dq.get('scale_shape')} on axis {dq.get('axis')} "
                            f"is not per output channel (axis {dq.get('output_channel_axis')})")
        if a.get("shape") != o.get("shape"):
            problems.append(f"{where}: shape {a.get('shape')}, original {o.get('shape')}")

    if art["weight_parameters"] != orig["weight_parameters"]:
        problems.append(f"weight parameters {art['weight_parameters']}, original "
                        f"{orig['weight_parameters']}")
    sp = art["weight_sparsity"]
    print(f"  overall weight sparsity {sp:.5f} (target {target} +/- {tol}); "
          f"size {orig['size']} -> {art['size']} bytes; opset {art['opset']}; ops {art['ops']}")
    if abs(sp - target) > tol:
        problems.append(f"overall weight sparsity {sp:.5f} not within {tol} of {target}")
    if art["size"] >= orig["size"]:
        problems.append(f"artifact ({art['size']} bytes) is not smaller than the original "
                        f"({orig['size']} bytes)")
    for p in problems:
        print(f"  problem: {p}")
    return 1 if problems else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
