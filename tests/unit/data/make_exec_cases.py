#!/usr/bin/python3
"""Writes the tiny models test_exec.c runs (deterministic; run from anywhere):

  exec_bcast.onnx     Add/Sub/Mul/Div with multidirectional broadcasting
  exec_matmul.onnx    MatMul: batched with broadcast batch dims, N-D x 2-D, 1-D rules
  exec_softmax13.onnx Softmax/LogSoftmax axis=1 at opset 13 (one axis)
  exec_softmax11.onnx the same at opset 11 (coerced to 2-D at axis 1)
  exec_flatten.onnx   PyTorch's flatten: Shape->Gather->Unsqueeze->Concat->Reshape->Gemm
  exec_chain.onnx     a chain of 8 element-wise ops (buffer planning)
  exec_passthrough.onnx a graph input that is also a graph output
  exec_alias.onnx     Identity/Flatten sharing their input buffer
  exec_quant.onnx     QuantizeLinear -> DequantizeLinear round trip, per-axis int8
                      DequantizeLinear weights feeding MatMul, DynamicQuantizeLinear,
                      MatMulInteger

Usage: /usr/bin/python3 make_exec_cases.py [OUT_DIR]   (default: this script's folder)
"""
import os
import sys

import numpy as np
from onnx import TensorProto, helper, numpy_helper, save

OUT = sys.argv[1] if len(sys.argv) > 1 else os.path.dirname(os.path.abspath(__file__))


def vi(name, dtype, shape):
    return helper.make_tensor_value_info(name, dtype, shape)


def write(name, nodes, inputs, outputs, inits=(), opset=13):
    g = helper.make_graph(nodes, name, inputs, outputs, initializer=list(inits))
    m = helper.make_model(g, opset_imports=[helper.make_opsetid("", opset)],
                          producer_name="make_exec_cases")
    m.ir_version = 7
    save(m, os.path.join(OUT, name + ".onnx"))


F = TensorProto.FLOAT
write("exec_bcast", [
    helper.make_node("Add", ["a", "b"], ["add"], name="add"),
    helper.make_node("Mul", ["a", "c"], ["mul"], name="mul"),
    helper.make_node("Sub", ["b", "c"], ["sub"], name="sub"),
    helper.make_node("Div", ["a", "b"], ["div"], name="div"),
], [vi("a", F, [2, 3, 4]), vi("b", F, [3, 1]), vi("c", F, [4])],
    [vi("add", F, [2, 3, 4]), vi("mul", F, [2, 3, 4]), vi("sub", F, [3, 4]),
     vi("div", F, [2, 3, 4])])

rng = np.random.default_rng(7)
w = rng.standard_normal((4, 5)).astype(np.float32)
write("exec_matmul", [
    helper.make_node("MatMul", ["a", "b"], ["batched"], name="batched"),
    helper.make_node("MatMul", ["a", "w"], ["nd2d"], name="nd2d"),
    helper.make_node("MatMul", ["m", "v"], ["mv"], name="mv"),
    helper.make_node("MatMul", ["v", "w"], ["vm"], name="vm"),
], [vi("a", F, [2, 1, 3, 4]), vi("b", F, [3, 4, 5]), vi("m", F, [3, 4]), vi("v", F, [4])],
    [vi("batched", F, [2, 3, 3, 5]), vi("nd2d", F, [2, 1, 3, 5]), vi("mv", F, [3]),
     vi("vm", F, [5])], [numpy_helper.from_array(w, "w")])

for opset in (13, 11):
    write("exec_softmax%d" % opset, [
        helper.make_node("Softmax", ["x"], ["sm"], name="sm", axis=1),
        helper.make_node("LogSoftmax", ["x"], ["lsm"], name="lsm", axis=1),
    ], [vi("x", F, [2, 3, 4])], [vi("sm", F, [2, 3, 4]), vi("lsm", F, [2, 3, 4])], opset=opset)

I64 = TensorProto.INT64
wf = rng.standard_normal((5, 24)).astype(np.float32)
bf = rng.standard_normal((5,)).astype(np.float32)
write("exec_flatten", [
    helper.make_node("Shape", ["x"], ["shp"], name="shape"),
    helper.make_node("Constant", [], ["zero"], name="c0",
                     value=helper.make_tensor("zero", I64, [], [0])),
    helper.make_node("Gather", ["shp", "zero"], ["n"], name="gather", axis=0),
    helper.make_node("Constant", [], ["ax"], name="c1", value_ints=[0]),
    helper.make_node("Unsqueeze", ["n", "ax"], ["n1"], name="unsqueeze"),
    helper.make_node("Constant", [], ["m1"], name="c2", value_ints=[-1]),
    helper.make_node("Concat", ["n1", "m1"], ["newshape"], name="concat", axis=0),
    helper.make_node("Reshape", ["x", "newshape"], ["flat"], name="reshape"),
    helper.make_node("Gemm", ["flat", "wf", "bf"], ["y"], name="fc", transB=1),
], [vi("x", F, ["N", 2, 3, 4])], [vi("y", F, ["N", 5])],
    [numpy_helper.from_array(wf, "wf"), numpy_helper.from_array(bf, "bf")])

chain_ops = ["Relu", "Sigmoid", "Tanh", "Erf", "HardSwish", "Sigmoid", "Relu", "Tanh"]
nodes, prev = [], "x"
for i, op in enumerate(chain_ops):
    out = "y" if i == len(chain_ops) - 1 else "t%d" % i
    nodes.append(helper.make_node(op, [prev], [out], name="n%d" % i))
    prev = out
write("exec_chain", nodes, [vi("x", F, ["N", 256])], [vi("y", F, ["N", 256])])

I8, U8, I32 = TensorProto.INT8, TensorProto.UINT8, TensorProto.INT32
wq = rng.integers(-127, 128, size=(4, 3)).astype(np.int8)
ws = np.array([0.5, 0.25, 0.125], dtype=np.float32)
bq = rng.integers(0, 256, size=(4, 3)).astype(np.uint8)
write("exec_quant", [
    helper.make_node("QuantizeLinear", ["x", "qs", "qz"], ["xq"], name="q"),
    helper.make_node("DequantizeLinear", ["xq", "qs", "qz"], ["xdq"], name="dq"),
    helper.make_node("DequantizeLinear", ["wq", "ws"], ["wf"], name="wdq", axis=1),
    helper.make_node("MatMul", ["x", "wf"], ["mm"], name="mm"),
    helper.make_node("DynamicQuantizeLinear", ["x"], ["dy", "dys", "dyz"], name="dyn"),
    helper.make_node("MatMulInteger", ["dy", "bq", "dyz", "bz"], ["mmi"], name="mmi"),
], [vi("x", F, [2, 4])],
    [vi("xq", I8, [2, 4]), vi("xdq", F, [2, 4]), vi("mm", F, [2, 3]), vi("dy", U8, [2, 4]),
     vi("dys", F, []), vi("dyz", U8, []), vi("mmi", I32, [2, 3])],
    [numpy_helper.from_array(np.array(0.1, dtype=np.float32), "qs"),
     numpy_helper.from_array(np.array(3, dtype=np.int8), "qz"),
     numpy_helper.from_array(wq, "wq"), numpy_helper.from_array(ws, "ws"),
     numpy_helper.from_array(bq, "bq"),
     numpy_helper.from_array(np.array(128, dtype=np.uint8), "bz")])

# a graph input that is also a graph output (the plan must copy it, not read it in place)
write("exec_passthrough", [helper.make_node("Relu", ["x"], ["r"], name="relu")],
      [vi("x", F, ["N", 3])], [vi("x", F, ["N", 3]), vi("r", F, ["N", 3])])

# Identity/Flatten outputs share their input's buffer: a, b and f are one buffer
write("exec_alias", [
    helper.make_node("Relu", ["x"], ["a"], name="relu"),
    helper.make_node("Identity", ["a"], ["b"], name="identity"),
    helper.make_node("Flatten", ["b"], ["f"], name="flatten", axis=1),
    helper.make_node("Add", ["a", "f"], ["y"], name="add"),
], [vi("x", F, ["N", 256])], [vi("y", F, ["N", 256])])
