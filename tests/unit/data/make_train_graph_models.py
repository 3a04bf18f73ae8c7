#!/usr/bin/python3
"""Writes the tiny models test_train_graph.c gradient-checks (deterministic):
data/train_graph/tg_*.onnx. Each starts with a trainable Gemm/MatMul/Conv so the
gradient of its weight flows back through the operator under test.

  tg_gemm         Gemm alpha/beta/transB=1, then Gemm transB=0 with a scalar C
  tg_matmul3d     MatMul on [N,2,5] (PyTorch's Linear on 3-D input) + bias Add, Relu
  tg_bcast        Add/Sub/Mul/Div with numpy broadcasting, constant and activation operands
  tg_<unary>      Gemm -> op -> Gemm for Relu, LeakyRelu, Sigmoid, Tanh, Gelu (opset 20,
                  none and tanh), HardSwish, HardSigmoid, Clip (inputs and attributes),
                  the Erf pattern of PyTorch 1.13, Softmax / LogSoftmax at the end, Dropout
  tg_shape        Transpose (of the input, and on the gradient path), Reshape by PyTorch's Shape->Gather->Unsqueeze->Concat pattern,
                  Flatten, Concat, Identity
  tg_conv         Conv+bias, BatchNormalization, Relu, MaxPool, Conv (no bias), Pad,
                  AveragePool, GlobalAveragePool, Flatten, Gemm
  tg_conv_group   grouped dilated Conv, Sigmoid, AveragePool count_include_pad with pads
  tg_fixed1       batch fixed at 1 by the export: trains at any batch
  tg_fixed1_reshape  the same with a Reshape to [1, -1]: refused naming the node
  tg_two_inputs   refused: two graph inputs
  tg_exp          refused: an operator without a gradient (Exp)

Usage: /usr/bin/python3 make_train_graph_models.py [OUT_DIR]
"""
import os
import sys

import numpy as np
from onnx import TensorProto, checker, helper, numpy_helper, save

OUT = sys.argv[1] if len(sys.argv) > 1 else os.path.join(
    os.path.dirname(os.path.abspath(__file__)), "train_graph")
os.makedirs(OUT, exist_ok=True)
F = TensorProto.FLOAT
rng = np.random.default_rng(6)


def t(name, arr):
    return numpy_helper.from_array(np.asarray(arr), name)


def rnd(name, *shape, scale=0.5):
    return t(name, (rng.standard_normal(shape) * scale).astype(np.float32))


def write(name, nodes, in_shape, out_shape, inits, opset=13, inputs=None):
    ins = inputs or [helper.make_tensor_value_info("x", F, ["N"] + list(in_shape))]
    g = helper.make_graph(nodes, name, ins,
                          [helper.make_tensor_value_info("y", F, ["N"] + list(out_shape))],
                          initializer=list(inits))
    m = helper.make_model(g, opset_imports=[helper.make_opsetid("", opset)],
                          producer_name="make_train_graph_models")
    m.ir_version = 8 if opset < 19 else 9
    if opset < 19:  # Debian's checker predates opset 20 (Gelu)
        checker.check_model(m)
    save(m, os.path.join(OUT, name + ".onnx"))


N = helper.make_node

write("tg_gemm", [
    N("Gemm", ["x", "w1", "b1"], ["h"], alpha=0.7, beta=1.3, transB=1),
    N("Gemm", ["h", "w2", "c2"], ["y"], alpha=1.1, beta=0.5),
], [5], [3], [rnd("w1", 4, 5), rnd("b1", 4), rnd("w2", 4, 3), rnd("c2")])

write("tg_matmul3d", [
    N("MatMul", ["x", "w1"], ["m"]),
    N("Add", ["m", "b1"], ["a"]),
    N("Relu", ["a"], ["r"]),
    N("MatMul", ["r", "w2"], ["y"]),
], [2, 5], [2, 3], [rnd("w1", 5, 4), rnd("b1", 4), rnd("w2", 4, 3)])

write("tg_bcast", [
    N("Gemm", ["x", "w1", "b1"], ["h"], transB=1),
    N("Reshape", ["h", "shp"], ["h3"]),
    N("Add", ["h3", "c1"], ["a"]),          # [N,2,3] + [3]
    N("Mul", ["a", "c2"], ["m"]),           # [N,2,3] * [2,1]
    N("Sub", ["c3", "m"], ["s"]),           # [1] - [N,2,3]
    N("Div", ["s", "c4"], ["d"]),           # [N,2,3] / [2,3]
    N("Sigmoid", ["h3"], ["sg"]),
    N("Add", ["sg", "one"], ["den"]),
    N("Div", ["d", "den"], ["q"]),          # activation / activation
    N("Mul", ["q", "h3"], ["p"]),           # activation * activation
    N("Sub", ["p", "h3"], ["y0"]),
    N("Mul", ["y0", "rowscale"], ["y1"]),   # [N,2,3] * [1,2,1]
    N("Reshape", ["y1", "shp2"], ["y"]),
], [4], [6], [rnd("w1", 6, 4), rnd("b1", 6), t("shp", np.array([-1, 2, 3], np.int64)),
              rnd("c1", 3), rnd("c2", 2, 1), rnd("c3", 1),
              t("c4", (rng.uniform(1.0, 2.0, (2, 3))).astype(np.float32)),
              t("one", np.array(1.0, np.float32)),
              t("rowscale", np.array([[[0.5], [-1.5]]], np.float32)),
              t("shp2", np.array([-1, 6], np.int64))])


def unary(name, nodes, inits=(), opset=13, out=None):
    body = [N("Gemm", ["x", "w1", "b1"], ["h"], transB=1)] + nodes
    last = out or body[-1].output[0]
    body.append(N("Gemm", [last, "w2", "b2"], ["y"], transB=1))
    write(name, body, [5], [3],
          [rnd("w1", 6, 5, scale=0.8), rnd("b1", 6), rnd("w2", 3, 6), rnd("b2", 3)]
          + list(inits), opset=opset)


unary("tg_relu", [N("Relu", ["h"], ["u"])])
unary("tg_leakyrelu", [N("LeakyRelu", ["h"], ["u"], alpha=0.1)])
unary("tg_sigmoid", [N("Sigmoid", ["h"], ["u"])])
unary("tg_tanh", [N("Tanh", ["h"], ["u"])])
unary("tg_gelu", [N("Gelu", ["h"], ["u"])], opset=20)
unary("tg_gelu_tanh", [N("Gelu", ["h"], ["u"], approximate="tanh")], opset=20)
unary("tg_hardswish", [N("HardSwish", ["h"], ["u"])], opset=14)
unary("tg_hardsigmoid", [N("HardSigmoid", ["h"], ["u"], alpha=0.3, beta=0.4)])
unary("tg_clip", [N("Clip", ["h", "lo", "hi"], ["u"])],
      [t("lo", np.array(-0.5, np.float32)), t("hi", np.array(0.7, np.float32))])
unary("tg_clip6", [N("Clip", ["h"], ["u"], min=-0.4, max=0.6)], opset=6)
unary("tg_erf", [
    N("Constant", [], ["k"], value=t("kv", np.array(1.4142135, np.float32))),
    N("Div", ["h", "k"], ["dv"]),
    N("Erf", ["dv"], ["ef"]),
    N("Constant", [], ["o"], value=t("ov", np.array(1.0, np.float32))),
    N("Add", ["ef", "o"], ["ad"]),
    N("Mul", ["h", "ad"], ["ml"]),
    N("Constant", [], ["hf"], value=t("hv", np.array(0.5, np.float32))),
    N("Mul", ["ml", "hf"], ["u"]),
])
unary("tg_dropout", [N("Dropout", ["h", "ratio"], ["u"])],
      [t("ratio", np.array(0.3, np.float32))])
write("tg_softmax", [N("Gemm", ["x", "w1", "b1"], ["h"], transB=1),
                     N("Softmax", ["h"], ["y"], axis=-1)], [5], [6],
      [rnd("w1", 6, 5), rnd("b1", 6)])
write("tg_logsoftmax", [N("Gemm", ["x", "w1", "b1"], ["h"], transB=1),
                        N("LogSoftmax", ["h"], ["y"], axis=1)], [5], [6],
      [rnd("w1", 6, 5), rnd("b1", 6)])

write("tg_shape", [
    N("Transpose", ["x"], ["xt"], perm=[0, 2, 1]),          # [N,4,3]
    N("MatMul", ["xt", "w1"], ["m"]),                        # [N,4,5]
    N("Transpose", ["m"], ["mt"], perm=[0, 2, 1]),           # [N,5,4] (on the gradient path)
    N("Shape", ["mt"], ["sh"]),
    N("Gather", ["sh", "zero"], ["b"], axis=0),
    N("Unsqueeze", ["b", "ax0"], ["bu"]),
    N("Concat", ["bu", "minus1"], ["shp"], axis=0),
    N("Reshape", ["mt", "shp"], ["f"]),                      # [N,20]
    N("Flatten", ["x"], ["xf"], axis=1),                     # [N,12] (no gradient)
    N("Tanh", ["f"], ["ft"]),
    N("Identity", ["ft"], ["fi"]),
    N("Concat", ["fi", "xf", "f"], ["cat"], axis=1),         # [N,52]
    N("Gemm", ["cat", "w2", "b2"], ["y"], transB=1),
], [3, 4], [3], [rnd("w1", 3, 5), t("zero", np.array(0, np.int64)),
                 t("ax0", np.array([0], np.int64)), t("minus1", np.array([-1], np.int64)),
                 rnd("w2", 3, 52, scale=0.3), rnd("b2", 3)])

write("tg_conv", [
    N("Conv", ["x", "cw1", "cb1"], ["c1"], kernel_shape=[3, 3], pads=[1, 1, 1, 1]),
    N("BatchNormalization", ["c1", "bn_s", "bn_b", "bn_m", "bn_v"], ["bn"],
      epsilon=1e-5, momentum=0.9),
    N("Relu", ["bn"], ["r"]),
    N("MaxPool", ["r"], ["mp"], kernel_shape=[2, 2], strides=[2, 2], ceil_mode=1),  # 4x4
    N("Conv", ["mp", "cw2"], ["c2"], kernel_shape=[2, 2]),                          # 3x3
    N("Add", ["c2", "cb2"], ["c2b"]),
    N("Pad", ["c2b", "pads"], ["pd"], mode="constant"),                              # 5x5
    N("AveragePool", ["pd"], ["ap"], kernel_shape=[2, 2], strides=[1, 1]),          # 4x4
    N("GlobalAveragePool", ["ap"], ["gp"]),
    N("Flatten", ["gp"], ["fl"]),
    N("Gemm", ["fl", "fw", "fb"], ["y"], transB=1),
], [2, 7, 7], [3], [rnd("cw1", 4, 2, 3, 3), rnd("cb1", 4),
                    t("bn_s", rng.uniform(0.5, 1.5, 4).astype(np.float32)), rnd("bn_b", 4),
                    rnd("bn_m", 4, scale=0.1),
                    t("bn_v", rng.uniform(0.5, 1.5, 4).astype(np.float32)),
                    rnd("cw2", 3, 4, 2, 2), t("cb2", (rng.standard_normal((1, 3, 1, 1)) * 0.5).astype(np.float32)),
                    t("pads", np.array([0, 0, 1, 1, 0, 0, 1, 1], np.int64)),
                    rnd("fw", 3, 3, scale=1.0), rnd("fb", 3)])

write("tg_conv_group", [
    N("Conv", ["x", "cw"], ["c"], kernel_shape=[3, 3], pads=[2, 2, 2, 2], group=2,
      dilations=[2, 2], strides=[1, 1]),                                              # [N,4,6,6]
    N("Sigmoid", ["c"], ["s"]),
    N("AveragePool", ["s"], ["ap"], kernel_shape=[3, 3], strides=[2, 2], pads=[1, 1, 1, 1],
      count_include_pad=1),                                                           # 3x3
    N("Flatten", ["ap"], ["fl"]),
    N("Gemm", ["fl", "fw", "fb"], ["y"], transB=1),
], [4, 6, 6], [2], [rnd("cw", 4, 2, 3, 3), rnd("fw", 2, 36, scale=0.5), rnd("fb", 2)])

write("tg_two_inputs", [N("Add", ["x", "x2"], ["y"])], [3], [3], [],
      inputs=[helper.make_tensor_value_info("x", F, ["N", 3]),
              helper.make_tensor_value_info("x2", F, ["N", 3])])
unary("tg_exp", [N("Exp", ["h"], ["u"])])

# a wide Dropout for the measured drop fraction
write("tg_dropout_wide", [N("Dropout", ["x", "ratio"], ["y"])], [4000], [4000],
      [t("ratio", np.array(0.3, np.float32))])


# an export with its batch fixed at 1 (PyTorch without dynamic axes): trains at any
# batch; the same with a Reshape to [1, -1] is refused by node name
def fixed1(name, nodes, inits):
    g = helper.make_graph(nodes, name, [helper.make_tensor_value_info("x", F, [1, 5])],
                          [helper.make_tensor_value_info("y", F, [1, 3])], initializer=inits)
    m = helper.make_model(g, opset_imports=[helper.make_opsetid("", 13)],
                          producer_name="make_train_graph_models")
    m.ir_version = 8
    checker.check_model(m)
    save(m, os.path.join(OUT, name + ".onnx"))


fixed1("tg_fixed1", [N("Gemm", ["x", "w1", "b1"], ["h"], transB=1), N("Relu", ["h"], ["u"]),
                     N("Gemm", ["u", "w2", "b2"], ["y"], transB=1)],
       [rnd("w1", 6, 5), rnd("b1", 6), rnd("w2", 3, 6), rnd("b2", 3)])
fixed1("tg_fixed1_reshape", [N("Gemm", ["x", "w1", "b1"], ["h"], transB=1),
                             N("Reshape", ["h", "shp"], ["r"], name="reshape_to_batch_1"),
                             N("Gemm", ["r", "w2", "b2"], ["y"], transB=1)],
       [rnd("w1", 6, 5), rnd("b1", 6), t("shp", np.array([1, -1], np.int64)),
        rnd("w2", 3, 6), rnd("b2", 3)])
