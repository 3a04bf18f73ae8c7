#!/usr/bin/python3
"""Writes the small ONNX models that tests/unit/test_onnx_io.c reads.

Deterministic: fixed seeds, fixed producer strings; rerunning it rewrites the
same bytes. Run with Debian's python3 (python3-onnx 1.12, python3-torch):
    /usr/bin/python3 tests/unit/data/make_onnx_cases.py tests/unit/data
"""
import io
import os
import sys

import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper

OUT = sys.argv[1] if len(sys.argv) > 1 else os.path.dirname(os.path.abspath(__file__))
rng = np.random.RandomState(1234)


def w(*shape):
    return rng.standard_normal(shape).astype(np.float32)


def tensor(name, arr, raw=True):
    if raw:
        return numpy_helper.from_array(arr, name)
    return helper.make_tensor(name, TensorProto.FLOAT, arr.shape, arr.flatten().tolist())


def save(model, name):
    model.producer_name = "nncd-tests"
    model.producer_version = "1"
    with open(os.path.join(OUT, name), "wb") as f:
        f.write(model.SerializeToString())


def mlp(raw):
    # x[N,16] -> Gemm(W1 [8,16], transB=1) -> Relu -> MatMul(W2 [8,4]) -> Add(b2) -> Softmax
    r = np.random.RandomState(7)  # same values for the raw and float_data variants
    a = [r.standard_normal(s).astype(np.float32) for s in [(8, 16), (8,), (8, 4), (4,)]]
    inits = [tensor("W1", a[0], raw), tensor("b1", a[1], raw),
             tensor("W2", a[2], raw), tensor("b2", a[3], raw)]
    nodes = [
        helper.make_node("Gemm", ["x", "W1", "b1"], ["h"], name="fc1", transB=1),
        helper.make_node("Relu", ["h"], ["hr"], name="relu1"),
        helper.make_node("MatMul", ["hr", "W2"], ["m"], name="fc2"),
        helper.make_node("Add", ["m", "b2"], ["logits"], name="bias2"),
        helper.make_node("Softmax", ["logits"], ["y"], name="softmax", axis=1),
    ]
    g = helper.make_graph(nodes, "mlp",
                          [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["N", 16])],
                          [helper.make_tensor_value_info("y", TensorProto.FLOAT, ["N", 4])],
                          inits)
    m = helper.make_model(g, opset_imports=[helper.make_opsetid("", 13)])
    m.ir_version = 7
    m.doc_string = "two-layer perceptron"
    helper.set_model_props(m, {"author": "nncd", "purpose": "unit test"})
    return m


def convnet():
    # x[1,1,8,8] -> Conv(Wc [4,1,3,3]) -> Relu -> Flatten -> Gemm(Wf [144,10], transB=0)
    #   -> MatMul(Wl [3,1] as input 0 is not shape-compatible, so: MatMul(A=Wa [2,10]^T?) ...
    # Instead: y2 = MatMul(Wa [5,1], y1 [1,10]) puts an initializer on the A side.
    # Wf is also consumed by a second Gemm, so it must be listed once.
    inits = [tensor("Wc", w(4, 1, 3, 3)), tensor("bc", w(4)), tensor("Wf", w(144, 10)),
             tensor("Wa", w(5, 1)), numpy_helper.from_array(np.array([1, 2], np.int64), "ints"),
             tensor("Wvec", w(10))]
    nodes = [
        helper.make_node("Conv", ["x", "Wc", "bc"], ["c"], name="conv1", pads=[0, 0, 0, 0]),
        helper.make_node("Relu", ["c"], ["cr"]),
        helper.make_node("Flatten", ["cr"], ["f"], axis=1),
        helper.make_node("Gemm", ["f", "Wf"], ["y1"], name="fc"),
        helper.make_node("Gemm", ["f", "Wf"], ["y1b"], name="fc_again"),
        helper.make_node("MatMul", ["Wa", "y1"], ["y2"], name="left"),
        helper.make_node("MatMul", ["y1b", "Wvec"], ["y3"], name="vec"),
    ]
    g = helper.make_graph(nodes, "convnet",
                          [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 1, 8, 8])],
                          [helper.make_tensor_value_info("y2", TensorProto.FLOAT, [5, 10]),
                           helper.make_tensor_value_info("y3", TensorProto.FLOAT, [1])],
                          inits)
    m = helper.make_model(g, opset_imports=[helper.make_opsetid("", 13),
                                            helper.make_opsetid("com.example", 1)])
    m.ir_version = 7
    return m


def ir3_inputs():
    # IR 3 style: initializers are also listed as graph inputs.
    W = tensor("W", w(3, 2))
    g = helper.make_graph([helper.make_node("MatMul", ["x", "W"], ["y"])], "ir3",
                          [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 3]),
                           helper.make_tensor_value_info("W", TensorProto.FLOAT, [3, 2])],
                          [helper.make_tensor_value_info("y", TensorProto.FLOAT, [1, 2])], [W])
    m = helper.make_model(g, opset_imports=[helper.make_opsetid("", 8)])
    m.ir_version = 3
    return m


def external():
    W = TensorProto()
    W.name, W.data_type = "W_ext", TensorProto.FLOAT
    W.dims.extend([4, 4])
    W.data_location = TensorProto.EXTERNAL
    e = W.external_data.add()
    e.key, e.value = "location", "weights.bin"
    g = helper.make_graph([helper.make_node("MatMul", ["x", "W_ext"], ["y"])], "ext",
                          [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 4])],
                          [helper.make_tensor_value_info("y", TensorProto.FLOAT, [1, 4])], [W])
    m = helper.make_model(g, opset_imports=[helper.make_opsetid("", 13)])
    m.ir_version = 7
    return m


def sparse():
    # A sparse initializer: dense shape [3, 4], two stored values.
    values = numpy_helper.from_array(np.array([1.5, -2.0], np.float32), "S")
    indices = numpy_helper.from_array(np.array([1, 10], np.int64), "S_indices")
    sp = helper.make_sparse_tensor(values, indices, [3, 4])
    g = helper.make_graph([helper.make_node("MatMul", ["x", "S"], ["y"], name="mm")], "sparse",
                          [helper.make_tensor_value_info("x", TensorProto.FLOAT, [2, 3])],
                          [helper.make_tensor_value_info("y", TensorProto.FLOAT, [2, 4])])
    g.sparse_initializer.extend([sp])
    m = helper.make_model(g, opset_imports=[helper.make_opsetid("", 13)])
    m.ir_version = 7
    return m


def vi(name, shape, dt=TensorProto.FLOAT):
    return helper.make_tensor_value_info(name, dt, shape)


def opset_model(name, opset, nodes, inputs, outputs, inits=(), ir=None):
    ir = ir or {7: 3, 8: 3, 9: 4, 10: 5, 11: 6, 12: 7}[opset]
    if ir < 4:  # IR 3 lists initializers among the graph inputs
        inputs = inputs + [vi(t.name, list(t.dims), t.data_type) for t in inits]
    g = helper.make_graph(nodes, name, inputs, outputs, list(inits))
    m = helper.make_model(g, opset_imports=[helper.make_opsetid("", opset)])
    m.ir_version = ir
    save(m, "opset_%s.onnx" % name)


def opset_cases():
    # Each is run by ONNX Runtime before and after onnx_raise_opset(13).
    opset_model("unsqueeze_squeeze_11", 11, [
        helper.make_node("Unsqueeze", ["x"], ["u"], axes=[0, 3]),
        helper.make_node("Squeeze", ["u"], ["s"], axes=[0]),
        helper.make_node("Unsqueeze", ["x"], ["s2"], axes=[0]),
        helper.make_node("Squeeze", ["s2"], ["y2"]),
        helper.make_node("Identity", ["s"], ["y"]),
    ], [vi("x", [2, 3])], [vi("y", [2, 3, 1]), vi("y2", [2, 3])])
    opset_model("split_reducesum_11", 11, [
        helper.make_node("Split", ["x"], ["a", "b"], axis=1, split=[1, 3]),
        helper.make_node("ReduceSum", ["b"], ["r"], axes=[1], keepdims=1),
        helper.make_node("ReduceSum", ["a"], ["r2"], keepdims=0),
        helper.make_node("ReduceMean", ["x"], ["r3"], axes=[0], keepdims=0),  # input at 18
    ], [vi("x", [2, 4])], [vi("r", [2, 1]), vi("r2", []), vi("r3", [4])])
    opset_model("softmax_11", 11, [
        helper.make_node("Softmax", ["x"], ["y"]),                    # rank 2, default axis 1
        helper.make_node("LogSoftmax", ["x3"], ["y3"], axis=-1),      # rank 3, last axis
        helper.make_node("Hardmax", ["x3"], ["y4"], axis=2),          # rank 3, last axis
        helper.make_node("Gemm", ["x", "x"], ["g"], transB=1),
        helper.make_node("Softmax", ["g"], ["y5"]),                   # Gemm output is 2-D
    ], [vi("x", [2, 5]), vi("x3", [2, 3, 4])],
        [vi("y", [2, 5]), vi("y3", [2, 3, 4]), vi("y4", [2, 3, 4]), vi("y5", [2, 2])])
    opset_model("clip_slice_pad_topk_9", 9, [
        helper.make_node("Clip", ["x"], ["c"], min=-0.5, max=0.75),
        helper.make_node("Clip", ["x"], ["c2"], max=0.25),
        helper.make_node("Slice", ["c"], ["s"], starts=[1, 0], ends=[3, 100], axes=[0, 1]),
        helper.make_node("Pad", ["s"], ["p"], pads=[0, 1, 1, 0], value=2.5),
        helper.make_node("Pad", ["c2"], ["p2"], pads=[1, 1, 0, 0], mode="edge"),
        helper.make_node("TopK", ["x"], ["tv", "ti"], k=2, axis=1),
        helper.make_node("Dropout", ["x"], ["d"], ratio=0.3),
    ], [vi("x", [4, 5])],
        [vi("p", [3, 6]), vi("p2", [5, 6]), vi("tv", [4, 2]), vi("ti", [4, 2], TensorProto.INT64),
         vi("d", [4, 5])])
    bn = [numpy_helper.from_array(a, n) for a, n in [
        (w(3), "scale"), (w(3), "bias"), (w(3), "mean"),
        (np.abs(w(3)) + 0.5, "var")]]
    opset_model("batchnorm_7", 7, [
        helper.make_node("BatchNormalization", ["x", "scale", "bias", "mean", "var"], ["y"],
                         spatial=1, epsilon=1e-3),
    ], [vi("x", [2, 3, 4, 4])], [vi("y", [2, 3, 4, 4])], bn)
    # Rejected: Softmax over axis 1 of a 3-D tensor meant "flatten [1:]" before 13.
    opset_model("reject_softmax_11", 11, [
        helper.make_node("Softmax", ["x"], ["y"], name="sm3d"),
    ], [vi("x", [2, 3, 4])], [vi("y", [2, 3, 4])])
    # Upsample (removed at 10) and Resize-10 become Resize-13 (asymmetric, floor).
    scales = numpy_helper.from_array(np.array([1, 1, 2, 3], np.float32), "scales")
    opset_model("upsample_9", 9, [
        helper.make_node("Upsample", ["x", "scales"], ["y"], name="up", mode="nearest"),
        helper.make_node("Upsample", ["x", "scales"], ["y2"], name="up_lin", mode="linear"),
    ], [vi("x", [1, 2, 3, 4])], [vi("y", [1, 2, 6, 12]), vi("y2", [1, 2, 6, 12])], [scales])
    opset_model("upsample_7", 7, [
        helper.make_node("Upsample", ["x"], ["y"], name="up7", scales=[1.0, 1.0, 3.0, 2.0]),
    ], [vi("x", [1, 2, 3, 4])], [vi("y", [1, 2, 9, 8])])
    opset_model("resize_10", 10, [
        helper.make_node("Resize", ["x", "scales"], ["y"], name="rs"),
        helper.make_node("Resize", ["x", "scales"], ["y2"], name="rs_lin", mode="linear"),
    ], [vi("x", [1, 2, 3, 4])], [vi("y", [1, 2, 6, 12]), vi("y2", [1, 2, 6, 12])], [scales])
    # Rejected: Dropout's mask output changed type (T -> bool) at opset 10.
    opset_model("reject_dropout_mask_9", 9, [
        helper.make_node("Dropout", ["x"], ["y", "mask"], name="drop"),
    ], [vi("x", [2, 3])], [vi("y", [2, 3]), vi("mask", [2, 3])])


def torch_mlp():
    try:
        import torch
    except ImportError:
        return
    torch.manual_seed(0)
    net = torch.nn.Sequential(torch.nn.Linear(12, 6), torch.nn.ReLU(), torch.nn.Linear(6, 3))
    buf = io.BytesIO()
    torch.onnx.export(net, torch.zeros(1, 12), buf, input_names=["x"], output_names=["y"],
                      dynamic_axes={"x": {0: "batch"}, "y": {0: "batch"}}, opset_version=13)
    with open(os.path.join(OUT, "torch_mlp.onnx"), "wb") as f:
        f.write(buf.getvalue())


save(mlp(True), "mlp_raw.onnx")
save(mlp(False), "mlp_float_data.onnx")
save(convnet(), "convnet.onnx")
save(ir3_inputs(), "ir3_inputs.onnx")
save(external(), "external_data.onnx")
save(sparse(), "sparse_init.onnx")
# A serialized TensorProto and NodeProto: valid protobuf, not models.
with open(os.path.join(OUT, "not_a_model_tensor.pb"), "wb") as f:
    f.write(tensor("t", w(3, 3)).SerializeToString())
with open(os.path.join(OUT, "not_a_model_node.pb"), "wb") as f:
    f.write(helper.make_node("Relu", ["a"], ["b"], name="n").SerializeToString())
opset_cases()
torch_mlp()
