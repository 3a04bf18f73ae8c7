#!/usr/bin/python3
"""Writes nm_layouts.onnx: one prunable weight in every layout N:M pruning handles.

Run with Debian's python3-onnx: /usr/bin/python3 tests/unit/data/make_nm_models.py
The output is committed; rerunning reproduces it bit for bit (fixed seed, fixed
producer fields). test_prune's nm_layouts case knows each weight's [outer, K, inner]
view independently of the engine and prunes a copy with a sorting reference.

  g0.w    Gemm transB=0, B [K=10, N=6]      groups down columns, tail 2 (m=4)
  g1.w    Gemm transB=1, B [N=5, K=10]      groups along rows, tail 2
  mm.b    MatMul input 1, B [K=11, N=70]    down columns, 70 = one 64-column tile + 6
  mm.a    MatMul input 0, A [M=3, K=10]     along rows
  bmm.b   MatMul input 1, B [2, K=9, N=5]   batched, tail 1
  conv.w  Conv W [6, 3, 3, 3]               along C*kh*kw = 27, tail 3
Values are multiples of 1/4 in [-1, 1] (many exact ties and zeros) except conv.w and
mm.b, drawn from a normal distribution.
"""
import os

import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper

HERE = os.path.dirname(os.path.abspath(__file__))


def init(name, arr):
    return numpy_helper.from_array(np.ascontiguousarray(arr, dtype=np.float32), name)


def main():
    rng = np.random.default_rng(44)

    def coarse(*shape):
        return (rng.integers(-4, 5, size=shape) / 4.0).astype(np.float32)

    g0 = coarse(10, 6)
    g1 = coarse(5, 10)
    mmb = rng.normal(0, 0.2, size=(11, 70)).astype(np.float32)
    mma = coarse(3, 10)
    bmm = coarse(2, 9, 5)
    conv = rng.normal(0, 0.3, size=(6, 3, 3, 3)).astype(np.float32)
    f = TensorProto.FLOAT
    nodes = [
        helper.make_node("Gemm", ["x1", "g0.w"], ["y1"], name="gemm_n", transB=0),
        helper.make_node("Gemm", ["x1", "g1.w"], ["y2"], name="gemm_t", transB=1),
        helper.make_node("MatMul", ["x5", "mm.b"], ["y3"], name="matmul_b"),
        helper.make_node("MatMul", ["mm.a", "x2"], ["y4"], name="matmul_a"),
        helper.make_node("MatMul", ["x4", "bmm.b"], ["y5"], name="matmul_batched"),
        helper.make_node("Conv", ["x3", "conv.w"], ["y6"], name="conv", kernel_shape=[3, 3]),
    ]
    graph = helper.make_graph(
        nodes, "nm_layouts",
        [helper.make_tensor_value_info("x1", f, ["N", 10]),
         helper.make_tensor_value_info("x5", f, ["N", 11]),
         helper.make_tensor_value_info("x2", f, [10, "N"]),
         helper.make_tensor_value_info("x4", f, [2, "N", 9]),
         helper.make_tensor_value_info("x3", f, ["N", 3, 5, 5])],
        [helper.make_tensor_value_info("y1", f, ["N", 6]),
         helper.make_tensor_value_info("y2", f, ["N", 5]),
         helper.make_tensor_value_info("y3", f, ["N", 70]),
         helper.make_tensor_value_info("y4", f, [3, "N"]),
         helper.make_tensor_value_info("y5", f, [2, "N", 5]),
         helper.make_tensor_value_info("y6", f, ["N", 6, 3, 3])],
        [init("g0.w", g0), init("g1.w", g1), init("mm.b", mmb), init("mm.a", mma),
         init("bmm.b", bmm), init("conv.w", conv)])
    m = helper.make_model(graph, producer_name="nncd-tests", producer_version="1",
                          opset_imports=[helper.make_opsetid("", 13)])
    m.ir_version = 7
    onnx.checker.check_model(m)
    onnx.save(m, os.path.join(HERE, "nm_layouts.onnx"))


if __name__ == "__main__":
    main()
