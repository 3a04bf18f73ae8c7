#!/usr/bin/python3
"""Tiny models for test_quant_int8 (int8 options and bias correction):
q8_gemm (Gemm transB=1, no bias), q8_matmul (MatMul), q8_conv (Conv with
bias, padded) -- single layers, so the model's output is the layer's output --
and q8_embed (float ids -> Cast -> Gather of a [50,16] embedding table ->
Reshape -> Gemm), for Gather quantization. Weights carry a few outliers so a
per-tensor scale is coarse and rounding errors are large.
Run: /usr/bin/python3 make_q8_models.py (writes next to itself)."""
import os
import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper

here = os.path.dirname(os.path.abspath(__file__))
rng = np.random.default_rng(5)


def weights(shape):
    w = rng.normal(0, 0.2, shape).astype(np.float32)
    w.flat[rng.integers(0, w.size, 3)] = [2.5, -2.0, 1.7]
    return w


def save(name, nodes, inits, x, y):
    g = helper.make_graph(nodes, name, [x], [y], [numpy_helper.from_array(a, n) for n, a in inits])
    m = helper.make_model(g, opset_imports=[helper.make_opsetid('', 13)])
    m.ir_version = 7
    onnx.checker.check_model(m)
    onnx.save(m, os.path.join(here, name + '.onnx'))


f = TensorProto.FLOAT
save('q8_gemm', [helper.make_node('Gemm', ['x', 'W'], ['y'], name='fc', transB=1)],
     [('W', weights((8, 16)))], helper.make_tensor_value_info('x', f, ['N', 16]),
     helper.make_tensor_value_info('y', f, ['N', 8]))
save('q8_matmul', [helper.make_node('MatMul', ['x', 'W'], ['y'], name='mm')],
     [('W', weights((16, 8)))], helper.make_tensor_value_info('x', f, ['N', 16]),
     helper.make_tensor_value_info('y', f, ['N', 8]))
save('q8_conv', [helper.make_node('Conv', ['x', 'W', 'B'], ['y'], name='conv', pads=[1, 1, 1, 1])],
     [('W', weights((4, 2, 3, 3))), ('B', rng.normal(0, 0.1, 4).astype(np.float32))],
     helper.make_tensor_value_info('x', f, ['N', 2, 6, 6]),
     helper.make_tensor_value_info('y', f, ['N', 4, 6, 6]))
save('q8_embed', [
    helper.make_node('Cast', ['x'], ['ids'], name='to_ids', to=TensorProto.INT64),
    helper.make_node('Gather', ['table', 'ids'], ['emb'], name='embed'),
    helper.make_node('Reshape', ['emb', 'flat'], ['h'], name='flatten'),
    helper.make_node('Gemm', ['h', 'W', 'b'], ['y'], name='head', transB=1)],
    [('table', weights((50, 16))), ('flat', np.array([-1, 64], np.int64)),
     ('W', weights((10, 64))), ('b', rng.normal(0, 0.1, 10).astype(np.float32))],
    helper.make_tensor_value_info('x', f, ['N', 4]),
    helper.make_tensor_value_info('y', f, ['N', 10]))
