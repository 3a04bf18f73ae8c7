#!/usr/bin/python3
"""Writes the models test_exec_fusion.c runs (deterministic; run from anywhere):

  fusion_gelu_div.onnx    GELU as torch exports it: Div(x, sqrt2) -> Erf -> Add(., 1)
                          -> Mul(x, .) -> Mul(., 0.5)                       (fused)
  fusion_gelu_mul.onnx    the other association: h = Mul(0.5, x); Mul(x, 1/sqrt2) -> Erf
                          -> Add(1, .) -> Mul(., h), operands swapped        (fused)
  fusion_gelu_not.onnx    the same chain dividing by 2.0: not GELU           (not fused)
  fusion_gelu_shared.onnx the torch chain whose Erf output is also a graph output
                                                                              (not fused)
  fusion_conv_bn.onnx     Conv(x, W, B) 1x1 -> BatchNormalization (epsilon 1e-3) (folded)
  fusion_conv_nobias_bn.onnx Conv(x, W) 3x3, pads 1, stride 2 -> BatchNormalization
                                                                             (folded)
  fusion_conv_bn_shared.onnx Conv(x, W, B) 1x1 -> BatchNormalization, the Conv output
                          also a graph output                               (not folded)
  fusion_conv_bn_relu.onnx Conv(x, W, B) 3x3, pads 1 -> BatchNormalization -> Relu
                          (BN folded, then the Relu fused into the Conv)

Every model has input x; outputs y (and e / c for the shared variants). Weights come
from numpy's RandomState(7); BN variances are positive.

Usage: /usr/bin/python3 make_fusion_models.py [OUT_DIR]   (default: this script's folder)
"""
import os
import sys

import numpy as np
from onnx import TensorProto, helper, numpy_helper, save

OUT = sys.argv[1] if len(sys.argv) > 1 else os.path.dirname(os.path.abspath(__file__))
F = TensorProto.FLOAT


def const(name, value):
    return helper.make_node("Constant", [], [name],
                            value=numpy_helper.from_array(np.array(value, dtype=np.float32),
                                                          name))


def model(name, nodes, inits, x_shape, outputs):
    g = helper.make_graph(nodes, name, [helper.make_tensor_value_info("x", F, x_shape)],
                          [helper.make_tensor_value_info(o, F, None) for o in outputs],
                          initializer=inits)
    m = helper.make_model(g, opset_imports=[helper.make_opsetid("", 13)],
                          producer_name="make_fusion_models")
    m.ir_version = 7
    save(m, os.path.join(OUT, name))


def gelu_torch(divisor, extra_out=False, name="fusion_gelu_div.onnx"):
    nodes = [const("k", divisor), helper.make_node("Div", ["x", "k"], ["d"]),
             helper.make_node("Erf", ["d"], ["e"]), const("one", 1.0),
             helper.make_node("Add", ["e", "one"], ["a"]),
             helper.make_node("Mul", ["x", "a"], ["m"]), const("half", 0.5),
             helper.make_node("Mul", ["m", "half"], ["y"])]
    model(name, nodes, [], ["N", 8], ["y", "e"] if extra_out else ["y"])


gelu_torch(1.4142135623730951)
gelu_torch(2.0, name="fusion_gelu_not.onnx")
gelu_torch(1.4142135623730951, extra_out=True, name="fusion_gelu_shared.onnx")
model("fusion_gelu_mul.onnx", [
    const("half", 0.5), helper.make_node("Mul", ["half", "x"], ["h"]),
    const("r", 0.7071067811865476), helper.make_node("Mul", ["x", "r"], ["d"]),
    helper.make_node("Erf", ["d"], ["e"]), const("one", 1.0),
    helper.make_node("Add", ["one", "e"], ["a"]),
    helper.make_node("Mul", ["a", "h"], ["y"])], [], ["N", 8], ["y"])

rs = np.random.RandomState(7)


def bn_params(c):
    return [numpy_helper.from_array(rs.uniform(0.5, 1.5, c).astype(np.float32), "s"),
            numpy_helper.from_array(rs.uniform(-0.5, 0.5, c).astype(np.float32), "bb"),
            numpy_helper.from_array(rs.uniform(-0.3, 0.3, c).astype(np.float32), "mu"),
            numpy_helper.from_array(rs.uniform(0.2, 2.0, c).astype(np.float32), "var")]


def conv_bn(name, bias, shared, pads, strides, k, relu=False):
    inits = [numpy_helper.from_array(rs.uniform(-0.5, 0.5, (6, 3, k, k)).astype(np.float32),
                                     "W")]
    ins = ["x", "W"]
    if bias:
        inits.append(numpy_helper.from_array(rs.uniform(-0.5, 0.5, 6).astype(np.float32), "B"))
        ins.append("B")
    inits += bn_params(6)
    nodes = [helper.make_node("Conv", ins, ["c"], kernel_shape=[k, k], pads=pads,
                              strides=strides),
             helper.make_node("BatchNormalization", ["c", "s", "bb", "mu", "var"],
                              ["n" if relu else "y"], epsilon=1e-3)]
    if relu:
        nodes.append(helper.make_node("Relu", ["n"], ["y"]))
    model(name, nodes, inits, ["N", 3, 12, 12], ["y", "c"] if shared else ["y"])


conv_bn("fusion_conv_bn.onnx", True, False, [0, 0, 0, 0], [1, 1], 1)
conv_bn("fusion_conv_nobias_bn.onnx", False, False, [1, 1, 1, 1], [2, 2], 3)
conv_bn("fusion_conv_bn_shared.onnx", True, True, [0, 0, 0, 0], [1, 1], 1)
conv_bn("fusion_conv_bn_relu.onnx", True, False, [1, 1, 1, 1], [1, 1], 3, relu=True)
