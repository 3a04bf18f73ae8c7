#!/usr/bin/python3
"""Reads an nncd int4 artifact with python3-onnx (onnx.load only: onnx 1.12's
checker rejects IR 10 and knows no INT4) and prints, one line per initializer
of data_type 21 (UINT4) or 22 (INT4): name, data_type, dims and the sha256 of
raw_data, so test_quant_int4 can check python reads the bytes nncd wrote.
usage: quant_int4_raw.py MODEL.onnx"""
import hashlib
import sys

import onnx

m = onnx.load(sys.argv[1])
for t in m.graph.initializer:
    if t.data_type in (21, 22):
        dims = "x".join(str(d) for d in t.dims)
        print(t.name, t.data_type, dims, len(t.raw_data), hashlib.sha256(t.raw_data).hexdigest())
