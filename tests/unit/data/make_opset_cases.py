#!/usr/bin/python3
"""Writes the models tests/unit/test_opset_check.c and tests/api/api_jobs.c use to
check the summary's "opset_upgrade" verdict and the quantize-step check built on it.

Deterministic: fixed seed, fixed producer strings; rerunning it rewrites the same
bytes. Run with Debian's python3 (python3-onnx 1.12):
    /usr/bin/python3 tests/unit/data/make_opset_cases.py tests/unit/data
"""
import os
import sys

import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper

OUT = sys.argv[1] if len(sys.argv) > 1 else os.path.dirname(os.path.abspath(__file__))
rng = np.random.RandomState(2026)


def w(name, *shape):
    return numpy_helper.from_array(rng.standard_normal(shape).astype(np.float32), name)


def vi(name, shape, dt=TensorProto.FLOAT):
    return helper.make_tensor_value_info(name, dt, shape)


def save(name, nodes, inputs, outputs, inits, opset=11, value_info=()):
    g = helper.make_graph(nodes, name, inputs, outputs, inits, value_info=list(value_info))
    m = helper.make_model(g, opset_imports=[helper.make_opsetid("", opset)])
    m.ir_version = 6
    m.producer_name = "nncd-tests"
    m.producer_version = "1"
    onnx.checker.check_model(m, full_check=True)
    with open(os.path.join(OUT, name + ".onnx"), "wb") as f:
        f.write(m.SerializeToString())


def main():
    # Not convertible: Softmax-11 over axis 1 of a rank-4 tensor means "flatten
    # [1:] and normalise over C*H*W"; Softmax-13 with axis 1 would normalise over
    # C only. The Conv weight makes a quantize step otherwise valid.
    save("opset_quant_reject_softmax4d_11", [
        helper.make_node("Conv", ["x", "Wc", "bc"], ["c"], name="conv"),
        helper.make_node("Softmax", ["c"], ["y"], name="sm_channels", axis=1),
    ], [vi("x", [1, 3, 4, 4])], [vi("y", [1, 2, 4, 4])], [w("Wc", 2, 3, 1, 1), w("bc", 2)])

    # Convertible: Unsqueeze's axes attribute becomes an input at 13; the
    # Softmax works on the last axis of the 3-D MatMul output (its rank known
    # only from graph.value_info, as the forward pass does not follow
    # Unsqueeze), which means the same at 11 and 13.
    save("opset_quant_unsqueeze_11", [
        helper.make_node("Unsqueeze", ["x"], ["u"], name="unsq", axes=[0]),
        helper.make_node("MatMul", ["u", "Wm"], ["m"], name="fc"),
        helper.make_node("Softmax", ["m"], ["y"], name="sm_last", axis=2),
    ], [vi("x", [2, 3])], [vi("y", [1, 2, 4])], [w("Wm", 3, 4)],
        value_info=[vi("m", [1, 2, 4])])

    # Not convertible, inside a subgraph: the If branches hold a LogSoftmax over
    # an outer value of unknown rank. The top graph's Gemm is the weight.
    then_g = helper.make_graph(
        [helper.make_node("LogSoftmax", ["h"], ["t"], name="branch_logsoftmax")],
        "then", [], [vi("t", [2, 4])])
    else_g = helper.make_graph(
        [helper.make_node("Identity", ["h"], ["e"], name="branch_identity")],
        "else", [], [vi("e", [2, 4])])
    save("opset_quant_reject_if_11", [
        helper.make_node("Gemm", ["x", "Wg"], ["g"], name="fc", transB=1),
        helper.make_node("Reshape", ["g", "shape"], ["h"], name="reshape"),
        helper.make_node("If", ["cond"], ["y"], name="branch", then_branch=then_g,
                         else_branch=else_g),
    ], [vi("x", [2, 3]), vi("cond", [], TensorProto.BOOL), vi("shape", [None], TensorProto.INT64)],
        [vi("y", [2, 4])], [w("Wg", 4, 3)])


if __name__ == "__main__":
    main()
