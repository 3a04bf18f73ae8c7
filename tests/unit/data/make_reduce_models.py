#!/usr/bin/python3
"""Writes the models test_ops_reduce.c runs (deterministic; run from anywhere): one graph
per file, input x, outputs named below.

  reduce_opset18.onnx  x [N, 3]: ReduceMax (opset 18, axes [1] as an initializer input,
                       keepdims 0) -> ymax; ReduceMin with no axes input and
                       noop_with_empty_axes 1 (identity) -> ynoop
  reduce_empty.onnx    x [N, 0]: ReduceSum (opset 13, axes [1] input) -> ysum, ReduceMean
                       (axes attribute [1]) -> ymean, ReduceMax -> ymax, ReduceMin -> ymin
                       (reductions over no elements)
  cast_saturate.onnx   x [N, 4]: Cast to uint8 -> yu8, to int8 -> yi8, to bool -> yb

Usage: /usr/bin/python3 make_reduce_models.py [OUT_DIR]   (default: this script's folder)
"""
import os
import sys

import numpy as np
from onnx import TensorProto, helper, numpy_helper, save

OUT = sys.argv[1] if len(sys.argv) > 1 else os.path.dirname(os.path.abspath(__file__))
F = TensorProto.FLOAT


def model(name, opset, nodes, inits, x_shape, outputs):
    g = helper.make_graph(nodes, name, [helper.make_tensor_value_info("x", F, x_shape)],
                          [helper.make_tensor_value_info(o, t, None) for o, t in outputs],
                          initializer=inits)
    m = helper.make_model(g, opset_imports=[helper.make_opsetid("", opset)],
                          producer_name="make_reduce_models")
    m.ir_version = 8
    save(m, os.path.join(OUT, name))


axes1 = numpy_helper.from_array(np.array([1], dtype=np.int64), "axes1")
model("reduce_opset18.onnx", 18, [
    helper.make_node("ReduceMax", ["x", "axes1"], ["ymax"], keepdims=0),
    helper.make_node("ReduceMin", ["x"], ["ynoop"], noop_with_empty_axes=1)],
    [axes1], ["N", 3], [("ymax", F), ("ynoop", F)])
model("reduce_empty.onnx", 13, [
    helper.make_node("ReduceSum", ["x", "axes1"], ["ysum"]),
    helper.make_node("ReduceMean", ["x"], ["ymean"], axes=[1]),
    helper.make_node("ReduceMax", ["x"], ["ymax"], axes=[1], keepdims=0),
    helper.make_node("ReduceMin", ["x"], ["ymin"], axes=[-1], keepdims=0)],
    [axes1], ["N", 0], [("ysum", F), ("ymean", F), ("ymax", F), ("ymin", F)])
model("cast_saturate.onnx", 13, [
    helper.make_node("Cast", ["x"], ["yu8"], to=TensorProto.UINT8),
    helper.make_node("Cast", ["x"], ["yi8"], to=TensorProto.INT8),
    helper.make_node("Cast", ["x"], ["yb"], to=TensorProto.BOOL)],
    [], ["N", 4], [("yu8", TensorProto.UINT8), ("yi8", TensorProto.INT8),
                   ("yb", TensorProto.BOOL)])
