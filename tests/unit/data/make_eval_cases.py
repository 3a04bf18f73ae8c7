#!/usr/bin/python3
"""Writes the small, exactly predictable cases of tests/unit/test_eval.c.

eval_identity.onnx: y = MatMul(x, I4), x float32 [N,4]: the logits are the
inputs, so accuracy and fidelity are known by construction.
eval_scaled.onnx: y = MatMul(x, 0.5 * I4): agrees on every argmax with
eval_identity, with a known absolute error.
eval_unsupported.onnx: Hardmax(MatMul(x, I4)): prunable, not executable.
eval_dq.onnx: y = MatMul(x, DequantizeLinear(Wq, 0.1, zp=128)) with Wq a
uint8 [4,4] holding zp (a zero weight) in 10 places: 6 non-zeros + 2 for
the scale and zero point.
Arrays: eval_x.npy float32 [10,4] (argmax = i % 4), eval_y.npy int64 [10]
(7 of them equal to the argmax), eval_x_u8.npy uint8 [10,2,2] (per-sample 4,
argmax as eval_x), eval_y_float.npy (float labels: refused),
eval_y_short.npy int64 [9] (mismatched N). Deterministic; run with
/usr/bin/python3 from this folder."""
import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper


def model(name, weight_nodes, inits):
    x = helper.make_tensor_value_info("x", TensorProto.FLOAT, ["N", 4])
    y = helper.make_tensor_value_info("y", TensorProto.FLOAT, ["N", 4])
    nodes = weight_nodes + [helper.make_node("MatMul", ["x", "w"], ["y"], name="mm")]
    g = helper.make_graph(nodes, name, [x], [y], inits)
    m = helper.make_model(g, opset_imports=[helper.make_opsetid("", 13)],
                          producer_name="make_eval_cases")
    m.ir_version = 7
    onnx.checker.check_model(m)
    onnx.save(m, name + ".onnx")


eye = np.eye(4, dtype=np.float32)
model("eval_identity", [], [numpy_helper.from_array(eye, "w")])
model("eval_scaled", [], [numpy_helper.from_array(0.5 * eye, "w")])
wq = np.full((4, 4), 128, dtype=np.uint8)
wq[0, 0], wq[1, 1], wq[2, 2], wq[3, 3], wq[0, 1], wq[2, 3] = 138, 118, 148, 108, 129, 127
model("eval_dq", [helper.make_node("DequantizeLinear", ["wq", "s", "zp"], ["w"], name="dq")],
      [numpy_helper.from_array(wq, "wq"),
       numpy_helper.from_array(np.array(0.1, dtype=np.float32), "s"),
       numpy_helper.from_array(np.array(128, dtype=np.uint8), "zp")])

# A model the executor cannot run (Hardmax) but whose weight can be pruned.
model("eval_unsupported", [], [numpy_helper.from_array(eye, "w")])
m = onnx.load("eval_unsupported.onnx")
m.graph.node[0].output[0] = "mm_out"
m.graph.node.append(helper.make_node("Hardmax", ["mm_out"], ["y"], name="pick_max", axis=1))
onnx.checker.check_model(m)
onnx.save(m, "eval_unsupported.onnx")

x = np.zeros((10, 4), dtype=np.float32)
for i in range(10):
    x[i] = [0.1, 0.2, 0.3, 0.4]
    x[i, i % 4] = 0.9
y = np.array([i % 4 for i in range(10)], dtype=np.int64)
y[[1, 4, 8]] = (y[[1, 4, 8]] + 1) % 4  # 3 wrong labels: accuracy 0.7
np.save("eval_x.npy", x)
np.save("eval_y.npy", y)
np.save("eval_x_u8.npy", np.round(x * 255).astype(np.uint8).reshape(10, 2, 2))
np.save("eval_y_float.npy", y.astype(np.float32))
np.save("eval_y_short.npy", y[:9])
