#!/usr/bin/python3
"""Writes the 16-bit models of test_quant_float:

cast16_f16.onnx, cast16_bf16.onnx: x (float [N]) -> Cast(to 16-bit) -> Cast(to
float) -> y, the runtime (not constant-folded) path of the executor's 16-bit
Cast (case cast_runtime_matches_onnxruntime).

f16_<rule>.onnx: small float16 graphs with float32 inputs/outputs (Cast at
entry and exit) exercising each rule by which the executor reproduces ONNX
Runtime's rounding of float16 graphs (engine/exec_f16.h; cases
exec_f16_lowering_rules and exec_f16_rounding_matches_onnxruntime):
  chain     Gemm -> Flatten -> Reshape -> Gemm: two float16-kernel nodes side by
            side run in float16, so the first Gemm's output is rounded;
  isolated  Gemm -> Flatten -> Gemm: an isolated Flatten runs in float32, no
            rounding anywhere (the entry Cast's rounding is dropped too);
  castflat  Cast -> Flatten -> Gemm: Flatten next to a Cast runs in float16,
            so the input is rounded;
  flatout   Gemm -> Flatten -> Cast(to float): the Gemm output is rounded;
  excluded  Gemm -> Cast(float) -> Relu -> Cast(float16) -> Gemm: the Cast
            pairs around a float32 node disappear, nothing is rounded;
  convbn    Conv -> BatchNormalization: folded in float16 arithmetic.
Weights are chosen so float16 rounding shows far above float32 noise.
Run: /usr/bin/python3 make_cast16_models.py OUTDIR"""
import sys

import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper

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

H, F = TensorProto.FLOAT16, TensorProto.FLOAT
rng = np.random.default_rng(7)
w = numpy_helper.from_array((rng.standard_normal((8, 8)) * 3).astype(np.float16), "w")
shape = numpy_helper.from_array(np.array([-1, 8], np.int64), "shape")


def cast(src, dst, to):
    return helper.make_node("Cast", [src], [dst], to=to, name=dst + "_cast")


def save(rule, nodes, inits, xshape, yshape):
    g = helper.make_graph(nodes, "f16_" + rule,
                          [helper.make_tensor_value_info("x", F, xshape)],
                          [helper.make_tensor_value_info("y", F, yshape)], inits)
    m = helper.make_model(g, opset_imports=[helper.make_opsetid("", 13)])
    m.ir_version = 7
    onnx.checker.check_model(m, full_check=True)
    onnx.save(m, f"{out}/f16_{rule}.onnx")


mm = lambda a, b: helper.make_node("Gemm", [a, "w"], [b], name=b)
save("chain", [cast("x", "h", H), mm("h", "g"),
               helper.make_node("Flatten", ["g"], ["f"], name="flat"),
               helper.make_node("Reshape", ["f", "shape"], ["r"], name="reshape"),
               mm("r", "g2"), cast("g2", "y", F)], [w, shape], ["N", 8], ["N", 8])
save("isolated", [cast("x", "h", H), mm("h", "g"),
                  helper.make_node("Flatten", ["g"], ["f"], name="flat"),
                  mm("f", "g2"), cast("g2", "y", F)], [w], ["N", 8], ["N", 8])
save("castflat", [cast("x", "h", H), helper.make_node("Flatten", ["h"], ["f"], name="flat"),
                  mm("f", "g"), cast("g", "y", F)], [w], ["N", 8], ["N", 8])
save("flatout", [cast("x", "h", H), mm("h", "g"),
                 helper.make_node("Flatten", ["g"], ["f"], name="flat"), cast("f", "y", F)],
     [w], ["N", 8], ["N", 8])
save("excluded", [cast("x", "h", H), mm("h", "g"), cast("g", "c", F),
                  helper.make_node("Relu", ["c"], ["r"], name="relu"), cast("r", "r16", H),
                  mm("r16", "g2"), cast("g2", "y", F)], [w], ["N", 8], ["N", 8])
cw = numpy_helper.from_array((rng.standard_normal((4, 2, 3, 3)) * 2).astype(np.float16), "cw")
cb = numpy_helper.from_array(rng.standard_normal(4).astype(np.float16), "cb")
bn = [numpy_helper.from_array(v.astype(np.float16), n) for n, v in (
    ("scale", rng.uniform(0.5, 2, 4)), ("bias", rng.standard_normal(4)),
    ("mean", rng.standard_normal(4)), ("var", rng.uniform(0.1, 3, 4)))]
save("convbn", [cast("x", "h", H), helper.make_node("Conv", ["h", "cw", "cb"], ["c"], name="conv"),
                helper.make_node("BatchNormalization", ["c", "scale", "bias", "mean", "var"],
                                 ["b"], name="bn", epsilon=1e-3),
                cast("b", "y", F)], [cw, cb] + bn, ["N", 2, 6, 6], ["N", 4, 4, 4])
