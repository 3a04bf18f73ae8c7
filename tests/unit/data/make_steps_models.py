#!/usr/bin/python3
"""Writes the tiny ONNX models the prune/quantize/spec/pipeline unit tests use.

Run with Debian's python3-onnx: /usr/bin/python3 tests/unit/data/make_steps_models.py
The outputs (steps_*.onnx) are committed; rerunning reproduces them bit for bit
(fixed seed, fixed producer fields).
"""
import os

import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper

HERE = os.path.dirname(os.path.abspath(__file__))


def save(model, name):
    onnx.checker.check_model(model)
    onnx.save(model, os.path.join(HERE, name))


def init(name, arr):
    return numpy_helper.from_array(np.ascontiguousarray(arr, dtype=np.float32), name)


def mlp():
    """MatMul(x, foo) + fc.weight -> Relu -> Gemm(transB=1).

    'fc.weight' is named like a weight but feeds an Add: not prunable.
    'foo' feeds a MatMul: prunable. foo holds exact zeros and exact ties.
    """
    rng = np.random.default_rng(1)
    foo = rng.normal(0, 0.2, size=(16, 32)).astype(np.float32)
    flat = foo.reshape(-1)
    flat[rng.choice(flat.size, 40, replace=False)] = 0.0          # already pruned
    ties = rng.choice(flat.size, 24, replace=False)
    flat[ties] = np.where(np.arange(24) % 2 == 0, 0.0625, -0.0625)  # |w| ties
    fcw = rng.normal(0, 0.1, size=(32,)).astype(np.float32)
    gw = rng.normal(0, 0.3, size=(8, 32)).astype(np.float32)
    gb = rng.normal(0, 0.1, size=(8,)).astype(np.float32)
    nodes = [
        helper.make_node("MatMul", ["x", "foo"], ["h0"], name="mm0"),
        helper.make_node("Add", ["h0", "fc.weight"], ["h1"], name="add0"),
        helper.make_node("Relu", ["h1"], ["h2"], name="relu0"),
        helper.make_node("Gemm", ["h2", "g.w", "g.b"], ["y"], name="gemm0", transB=1),
    ]
    graph = helper.make_graph(
        nodes, "steps_mlp",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["N", 16])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, ["N", 8])],
        [init("foo", foo), init("fc.weight", fcw), init("g.w", gw), init("g.b", gb)])
    m = helper.make_model(graph, producer_name="nncd-tests", producer_version="1",
                          opset_imports=[helper.make_opsetid("", 13)])
    m.ir_version = 7
    save(m, "steps_mlp.onnx")


def cnn11():
    """Opset 11: Conv -> Relu -> Flatten -> MatMul -> MatMul(S) -> MatMul(S) -> Softmax.

    S is one initializer consumed by two MatMuls (quantized once). Softmax's
    semantics change at opset 13, so raising the opset must convert it.
    """
    rng = np.random.default_rng(2)
    w = rng.normal(0, 0.3, size=(4, 1, 3, 3)).astype(np.float32)
    w[2] = 0.0                                    # an all-zero output channel
    b = rng.normal(0, 0.1, size=(4,)).astype(np.float32)
    w1 = rng.normal(0, 0.1, size=(144, 10)).astype(np.float32)
    s = rng.normal(0, 0.3, size=(10, 10)).astype(np.float32)
    nodes = [
        helper.make_node("Conv", ["x", "conv.w", "conv.b"], ["c"], name="conv0",
                         kernel_shape=[3, 3]),
        helper.make_node("Relu", ["c"], ["r"], name="relu0"),
        helper.make_node("Flatten", ["r"], ["f"], name="flat0", axis=1),
        helper.make_node("MatMul", ["f", "w1"], ["h1"], name="mm1"),
        helper.make_node("MatMul", ["h1", "shared"], ["h2"], name="mm2"),
        helper.make_node("MatMul", ["h2", "shared"], ["h3"], name="mm3"),
        helper.make_node("Softmax", ["h3"], ["y"], name="softmax0", axis=1),
    ]
    graph = helper.make_graph(
        nodes, "steps_cnn11",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 1, 8, 8])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, [1, 10])],
        [init("conv.w", w), init("conv.b", b), init("w1", w1), init("shared", s)])
    m = helper.make_model(graph, producer_name="nncd-tests", producer_version="1",
                          opset_imports=[helper.make_opsetid("", 11)])
    m.ir_version = 6
    save(m, "steps_cnn11.onnx")


def noweights():
    """Add of an input and a constant: nothing to prune or quantize."""
    c = np.arange(4, dtype=np.float32)
    graph = helper.make_graph(
        [helper.make_node("Add", ["x", "c"], ["y"], name="add0")], "steps_noweights",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, [4])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, [4])],
        [init("c", c)])
    m = helper.make_model(graph, producer_name="nncd-tests", producer_version="1",
                          opset_imports=[helper.make_opsetid("", 13)])
    m.ir_version = 7
    save(m, "steps_noweights.onnx")


if __name__ == "__main__":
    mlp()
    cnn11()
    noweights()
