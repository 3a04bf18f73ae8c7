#!/usr/bin/python3
"""Generates ONNX's own backend test cases (model.onnx + test_data_set_*/{input,output}_*.pb)
into a directory, in-process, with Debian's python3-onnx.

Usage: generate.py OUT_DIR [--stamp FILE]

onnx 1.12's case modules still use the numpy aliases that numpy 1.24 removed (np.float,
np.int, np.bool, np.object); they are restored (as the builtins they always were) before
onnx's generator is imported. The cases seed numpy's RNG themselves, so the output is
byte-identical from run to run (checked: two runs diff clean). OUT_DIR is emptied first so
a case onnx no longer generates cannot linger. With --stamp, FILE is written last (it
holds the onnx version and the case count), so a build system can depend on it.
"""
import argparse
import os
import shutil
import sys
import time
import warnings


def restore_numpy_aliases():
    import numpy as np
    with warnings.catch_warnings():
        # numpy 1.24 warns when these names are *read* (FutureWarning) before raising;
        # hasattr reads them, so keep that quiet.
        warnings.simplefilter("ignore")
        for name, value in (("float", float), ("int", int), ("bool", bool), ("object", object)):
            try:
                getattr(np, name)
            except AttributeError:
                setattr(np, name, value)


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("out")
    ap.add_argument("--stamp")
    args = ap.parse_args()

    restore_numpy_aliases()
    import onnx
    from onnx.backend.test import cmd_tools

    out = os.path.abspath(args.out)
    if os.path.exists(out):
        shutil.rmtree(out)
    os.makedirs(out)
    t0 = time.monotonic()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        # The same function `python3 -m onnx.backend.test.cmd_tools generate-data -o DIR`
        # calls, with the namespace its argument parser would build (all operators).
        cmd_tools.generate_data(argparse.Namespace(output=out, op_type=None))
    elapsed = time.monotonic() - t0

    count = 0
    for kind in ("node", "simple"):
        d = os.path.join(out, kind)
        if os.path.isdir(d):
            count += len(os.listdir(d))
    print(f"generate.py: onnx {onnx.__version__}: {count} cases in {elapsed:.1f} s into {out}")
    if args.stamp:
        with open(args.stamp + ".tmp", "w") as f:
            f.write(f"onnx {onnx.__version__}\ncases {count}\n")
        os.replace(args.stamp + ".tmp", args.stamp)
    return 0


if __name__ == "__main__":
    sys.exit(main())
