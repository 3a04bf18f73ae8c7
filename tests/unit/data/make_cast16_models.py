#!/usr/bin/python3
"""Writes cast16_f16.onnx and cast16_bf16.onnx: x (float [N]) -> Cast(to 16-bit)
-> Cast(to float) -> y, the runtime (not constant-folded) path of the
executor's 16-bit Cast (test_quant_float case cast_runtime_matches_onnxruntime).
Run: /usr/bin/python3 make_cast16_models.py OUTDIR"""
import sys

import onnx
from onnx import TensorProto, helper

out = sys.argv[1] if len(sys.argv) > 1 else "."
for name, dt in (("f16", TensorProto.FLOAT16), ("bf16", TensorProto.BFLOAT16)):
    g = helper.make_graph(
        [helper.make_node("Cast", ["x"], ["h"], to=dt, name="to16"),
         helper.make_node("Cast", ["h"], ["y"], to=TensorProto.FLOAT, name="to32")],
        "cast16_" + name,
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["N"])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, ["N"])])
    m = helper.make_model(g, opset_imports=[helper.make_opsetid("", 13)])
    m.ir_version = 7
    onnx.checker.check_model(m)
    onnx.save(m, f"{out}/cast16_{name}.onnx")
