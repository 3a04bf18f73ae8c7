#!/usr/bin/python3
"""Writes the ONNX models the conv-family operator tests (test_ops_conv) use.

Run with Debian's python3-onnx: /usr/bin/python3 tests/unit/data/make_conv_models.py
The outputs (conv_*.onnx) are committed; rerunning reproduces them bit for bit
(fixed seed, fixed producer fields).

conv_ops.onnx exercises every attribute the adapters read, in 1-D, 2-D and
3-D, and is compared against ONNX Runtime; conv_bad_*.onnx are valid models
exec_check_support must refuse, naming the node and the attribute.
"""
import os

import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper

HERE = os.path.dirname(os.path.abspath(__file__))
rng = np.random.default_rng(20261128)


def save(model, name):
    model.producer_name = "nncd-tests"
    model.producer_version = "1"
    onnx.checker.check_model(model)
    onnx.save(model, os.path.join(HERE, name))


def init(name, shape):
    arr = rng.uniform(-1, 1, size=shape).astype(np.float32)
    return numpy_helper.from_array(arr, name)


def vinfo(name, shape, dt=TensorProto.FLOAT):
    return helper.make_tensor_value_info(name, dt, shape)


def rank_dims(name):
    """Symbolic dims of the output's rank (the checker wants a shape)."""
    rank = 3 if name.startswith(("y1", "i1")) else 5 if name.startswith(("y3", "i3")) else 4
    return ["%s_%d" % (name, i) for i in range(rank)]


def conv_ops():
    inits = [
        init("wa", (6, 4, 3, 3)), init("ba", (6,)),
        init("wb", (4, 2, 3, 3)), init("bb", (4,)),
        init("wc", (4, 1, 4, 2)),
        init("wd", (5, 4, 1, 1)),
        init("we", (3, 4, 2, 5)), init("be", (3,)),
        init("bn_scale", (6,)), init("bn_bias", (6,)), init("bn_mean", (6,)),
        numpy_helper.from_array(rng.uniform(0.1, 2, size=(6,)).astype(np.float32), "bn_var"),
        init("w1", (2, 3, 4)), init("b1", (2,)),
        init("w3", (3, 2, 2, 3, 2)), init("b3", (3,)),
    ]
    N = helper.make_node
    nodes = [
        N("Conv", ["x", "wa", "ba"], ["ya"], name="conv_pads_strides_dilations",
          strides=[2, 1], pads=[1, 0, 2, 1], dilations=[1, 2]),
        N("Conv", ["x", "wb", "bb"], ["yb"], name="conv_group2_same_upper",
          group=2, auto_pad="SAME_UPPER", strides=[2, 2], kernel_shape=[3, 3]),
        N("Conv", ["x", "wc"], ["yc"], name="conv_depthwise_same_lower",
          group=4, auto_pad="SAME_LOWER", strides=[1, 3]),
        N("Conv", ["x", "wd"], ["yd"], name="conv_pointwise", auto_pad=""),
        N("Conv", ["x", "we", "be"], ["ye"], name="conv_valid", auto_pad="VALID",
          strides=[3, 2]),
        N("BatchNormalization", ["ya", "bn_scale", "bn_bias", "bn_mean", "bn_var"], ["ybn"],
          name="bn", epsilon=1e-3),
        N("MaxPool", ["ybn"], ["ymp", "imp"], name="maxpool_ceil_indices_colmajor",
          kernel_shape=[3, 3], strides=[2, 2], pads=[1, 1, 1, 1], ceil_mode=1,
          storage_order=1),
        N("MaxPool", ["x"], ["ymd", "imd"], name="maxpool_dilated", kernel_shape=[2, 2],
          dilations=[2, 2]),
        N("MaxPool", ["yb"], ["yms"], name="maxpool_same_lower", kernel_shape=[2, 3],
          strides=[2, 2], auto_pad="SAME_LOWER"),
        N("AveragePool", ["yb"], ["yap"], name="avgpool_include_pad_ceil", kernel_shape=[3, 3],
          strides=[2, 2], pads=[1, 1, 1, 1], ceil_mode=1, count_include_pad=1),
        N("AveragePool", ["x"], ["yas"], name="avgpool_same_upper", kernel_shape=[3, 3],
          strides=[2, 2], auto_pad="SAME_UPPER"),
        N("AveragePool", ["ya"], ["yae"], name="avgpool_exclude_pad", kernel_shape=[2, 4],
          pads=[1, 2, 0, 1], strides=[1, 3]),
        N("GlobalAveragePool", ["yc"], ["ygap"], name="gap"),
        N("GlobalMaxPool", ["yd"], ["ygmp"], name="gmp"),
        N("Conv", ["x1", "w1", "b1"], ["y1"], name="conv1d", strides=[3], pads=[2, 1],
          dilations=[2]),
        N("MaxPool", ["x1"], ["y1p"], name="maxpool1d", kernel_shape=[3], strides=[2],
          pads=[1, 1]),
        N("AveragePool", ["x1"], ["y1a"], name="avgpool1d", kernel_shape=[4], strides=[3],
          ceil_mode=1),
        N("Conv", ["x3", "w3", "b3"], ["y3"], name="conv3d", pads=[1, 0, 1, 0, 1, 1],
          strides=[1, 2, 1]),
        N("MaxPool", ["x3"], ["y3p", "i3p"], name="maxpool3d", kernel_shape=[2, 2, 3],
          strides=[1, 2, 2]),
        N("BatchNormalization", ["x3", "s3", "o3", "m3", "v3"], ["y3bn"], name="bn3d",
          epsilon=1e-2),
        N("GlobalAveragePool", ["x3"], ["y3gap"], name="gap3d"),
        N("AveragePool", ["x3"], ["y3a"], name="avgpool3d_include_pad_ceil",
          kernel_shape=[3, 2, 3], strides=[2, 2, 2], pads=[1, 0, 1, 1, 1, 0], ceil_mode=1,
          count_include_pad=1),
        N("AveragePool", ["x3"], ["y3e"], name="avgpool3d_exclude_pad",
          kernel_shape=[2, 3, 2], strides=[1, 2, 3], pads=[1, 1, 1, 0, 1, 1]),
    ]
    inits += [init("s3", (2,)), init("o3", (2,)), init("m3", (2,)),
              numpy_helper.from_array(np.array([0.5, 1.5], dtype=np.float32), "v3")]
    outs = ["ya", "yb", "yc", "yd", "ye", "ybn", "ymp", "imp", "ymd", "imd", "yms", "yap",
            "yas", "yae", "ygap", "ygmp", "y1", "y1p", "y1a", "y3", "y3p", "i3p", "y3bn",
            "y3gap", "y3a", "y3e"]
    ints = {"imp", "imd", "i3p"}
    graph = helper.make_graph(
        nodes, "conv_ops",
        [vinfo("x", ["N", 4, 11, 13]), vinfo("x1", ["N", 3, 17]), vinfo("x3", ["N", 2, 4, 5, 6])],
        [vinfo(o, rank_dims(o), TensorProto.INT64 if o in ints else TensorProto.FLOAT)
         for o in outs],
        inits)
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 13)])
    model.ir_version = 7
    save(model, "conv_ops.onnx")


def bad(name, node, inits, x_shape, extra_outputs=()):
    graph = helper.make_graph([node], name, [vinfo("x", x_shape)],
                              [vinfo("y", x_shape)] + [vinfo(o, [x_shape[1]])
                                                       for o in extra_outputs], inits)
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 15)])
    model.ir_version = 8
    save(model, name + ".onnx")


def bad_models():
    bn_inits = [init(n, (3,)) for n in ("s", "b", "m")]
    bn_inits.append(numpy_helper.from_array(np.ones(3, dtype=np.float32), "v"))
    bad("conv_bad_bn_training", helper.make_node(
        "BatchNormalization", ["x", "s", "b", "m", "v"], ["y", "rm", "rv"], name="bn_train",
        training_mode=1), bn_inits, [1, 3, 4, 4], ("rm", "rv"))
    bad("conv_bad_pool_auto_pad", helper.make_node(
        "AveragePool", ["x"], ["y"], name="pool_bad_pad", kernel_shape=[2, 2],
        auto_pad="SAME_MIDDLE"), [], [1, 3, 4, 4])


if __name__ == "__main__":
    conv_ops()
    bad_models()
