#!/usr/bin/python3
"""onnx.checker (python3-onnx, full check with shape inference) accepts every
model onnx_raise_opset produces from tests/unit/data/opset_*.onnx at opsets 13
and 17 (the highest python3-onnx 1.12 knows).
Usage: onnx_opset_checker.py TOOL DATA_DIR TMP_DIR"""
import glob
import os
import subprocess
import sys

try:
    import onnx
except ImportError:
    print("python3-onnx not installed: skipping")
    sys.exit(77)

tool, data, tmp = sys.argv[1:4]
failed = checked = 0
for src in sorted(glob.glob(os.path.join(data, "opset_*.onnx"))):
    if "reject" in src:
        continue
    for to in (13, 17):
        dst = os.path.join(tmp, "checker_%s_%d.onnx" % (os.path.basename(src)[:-5], to))
        subprocess.run([tool, src, dst, str(to)], check=True)
        try:
            m = onnx.load(dst)
            onnx.checker.check_model(m, full_check=True)
            assert m.opset_import[0].version == to
            print("ok %s -> %d" % (os.path.basename(src), to))
        except Exception as e:  # report every model, then fail
            print("FAIL %s -> %d: %s" % (os.path.basename(src), to, e))
            failed += 1
        checked += 1
        os.unlink(dst)
print("%d converted models checked, %d failures" % (checked, failed))
sys.exit(1 if failed or not checked else 0)
