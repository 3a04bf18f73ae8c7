#!/usr/bin/python3
"""Writes the tiny ONNX models the replace_activation tests use (ract_*.onnx).

Run with Debian's python3-onnx: /usr/bin/python3 tests/unit/data/make_replace_act_models.py
The outputs are committed; rerunning reproduces them (fixed seed).

Every model is a chain of Gemm layers (transB=1, weights fcK.weight [8, 8] and
fcK.bias [8]) with one activation between consecutive layers, so
replace_act_check.py can compute any model's output in numpy from its
initializers and the list of activations it should hold (ACTS below).
"""
import os

import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper

HERE = os.path.dirname(os.path.abspath(__file__))
F = 8  # features of every layer

# The activation after each Gemm, in order (the last Gemm has none).
ACTS = {
    'ract_mix.onnx': ['gelu_erf', 'gelu_erf', 'gelu_tanh', 'sigmoid', 'tanh', 'silu', 'relu'],
    'ract_gelu20.onnx': ['gelu_erf', 'gelu_tanh'],
    'ract_old9.onnx': ['tanh', 'silu', 'gelu_tanh'],
}


def f32(name, value):
    return numpy_helper.from_array(np.array(value, dtype=np.float32), name)


class Builder:
    def __init__(self, seed):
        self.rng = np.random.default_rng(seed)
        self.nodes, self.inits, self.value_info, self.outputs = [], [], [], []
        self.layer = 0

    def const_node(self, prefix, value):
        out = prefix + '_output_0'
        self.nodes.append(helper.make_node('Constant', [], [out], name=prefix,
                                           value=f32(prefix + '_value', value)))
        return out

    def node(self, op, inputs, name, **attrs):
        out = name + '_output_0'
        self.nodes.append(helper.make_node(op, inputs, [out], name=name, **attrs))
        return out

    def gemm(self, x):
        k = self.layer
        self.layer += 1
        w = self.rng.normal(0, 0.9, size=(F, F)).astype(np.float32)
        b = self.rng.normal(0, 0.3, size=(F,)).astype(np.float32)
        self.inits += [numpy_helper.from_array(w, 'fc%d.weight' % k),
                       numpy_helper.from_array(b, 'fc%d.bias' % k)]
        return self.node('Gemm', [x, 'fc%d.weight' % k, 'fc%d.bias' % k], '/fc%d/Gemm' % k,
                         transB=1)

    # --- activations ---
    def gelu_erf_div(self, x, p):
        """PyTorch 1.13's export: Div by a Constant sqrt(2); m = x * a; y = m * 0.5."""
        d = self.node('Div', [x, self.const_node(p + '/Constant', 1.4142135381698608)], p + '/Div')
        e = self.node('Erf', [d], p + '/Erf')
        # a declared intermediate: its value_info must go with the pattern
        self.value_info.append(helper.make_tensor_value_info(e, TensorProto.FLOAT, ['N', F]))
        a = self.node('Add', [e, self.const_node(p + '/Constant_1', 1.0)], p + '/Add')
        m = self.node('Mul', [x, a], p + '/Mul')
        return self.node('Mul', [m, self.const_node(p + '/Constant_2', 0.5)], p + '/Mul_1')

    def gelu_erf_mul(self, x, p):
        """Mul by an initializer 1/sqrt(2) (constant first); h = 0.5 * x; y = a * h."""
        self.inits += [f32(p + '.rsqrt2', 0.7071067811865476), f32(p + '.one', 1.0),
                       f32(p + '.half', [0.5])]  # rank 1: fine, x's rank (2) is declared
        self.value_info.append(helper.make_tensor_value_info(x, TensorProto.FLOAT, ['N', F]))
        d = self.node('Mul', [p + '.rsqrt2', x], p + '/Mul')
        e = self.node('Erf', [d], p + '/Erf')
        a = self.node('Add', [p + '.one', e], p + '/Add')
        h = self.node('Mul', [p + '.half', x], p + '/Mul_1')
        return self.node('Mul', [a, h], p + '/Mul_2')

    def gelu_tanh(self, x, p):
        """PyTorch 1.13's export of gelu(approximate='tanh')."""
        sq = self.node('Mul', [x, x], p + '/Mul')
        cube = self.node('Mul', [x, sq], p + '/Mul_1')
        c = self.node('Mul', [self.const_node(p + '/Constant', 0.044715), cube], p + '/Mul_2')
        s = self.node('Add', [x, c], p + '/Add')
        t = self.node('Mul', [self.const_node(p + '/Constant_1', 0.7978845834732056), s],
                      p + '/Mul_3')
        th = self.node('Tanh', [t], p + '/Tanh')
        a = self.node('Add', [self.const_node(p + '/Constant_2', 1.0), th], p + '/Add_1')
        m = self.node('Mul', [x, a], p + '/Mul_4')
        return self.node('Mul', [self.const_node(p + '/Constant_3', 0.5), m], p + '/Mul_5')

    def silu(self, x, p):
        s = self.node('Sigmoid', [x], p + '/Sigmoid')
        return self.node('Mul', [x, s], p + '/Mul')

    def model(self, acts, opset, ir, graph_outputs=()):
        x = 'input'
        for i, act in enumerate(acts):
            x = self.gemm(x)
            p = '/act%d' % i
            x = act(x, p)
        y = self.gemm(x)
        outs = [helper.make_tensor_value_info(y, TensorProto.FLOAT, ['N', F])]
        outs += [helper.make_tensor_value_info(n, TensorProto.FLOAT, ['N', F]) for n in graph_outputs]
        g = helper.make_graph(self.nodes, 'ract', [
            helper.make_tensor_value_info('input', TensorProto.FLOAT, ['N', F])], outs,
            initializer=self.inits, value_info=self.value_info)
        m = helper.make_model(g, opset_imports=[helper.make_opsetid('', opset)],
                              producer_name='make_replace_act_models', producer_version='1')
        m.ir_version = ir
        return m


def mix():
    b = Builder(61)
    acts = [b.gelu_erf_div, b.gelu_erf_mul, b.gelu_tanh,
            lambda x, p: b.node('Sigmoid', [x], p + '/Sigmoid'),
            lambda x, p: b.node('Tanh', [x], p + '/Tanh'),
            b.silu,
            lambda x, p: b.node('Relu', [x], p + '/Relu')]
    m = b.model(acts, 13, 7)
    onnx.checker.check_model(m)
    return m


def gelu20():
    """The opset-20 Gelu operator, both approximate modes (onnx 1.12 knows
    opsets up to 17: no checker here; ONNX Runtime loads it)."""
    b = Builder(62)
    acts = [lambda x, p: b.node('Gelu', [x], p + '/Gelu'),
            lambda x, p: b.node('Gelu', [x], p + '/Gelu', approximate='tanh')]
    return b.model(acts, 20, 9)


def old9():
    """Opset 9: Clip takes min/max as attributes; HardSwish needs opset 14;
    a tanh-GELU at opset 9."""
    b = Builder(63)
    acts = [lambda x, p: b.node('Tanh', [x], p + '/Tanh'), b.silu,
            b.gelu_tanh]
    m = b.model(acts, 9, 4)
    onnx.checker.check_model(m)
    return m


def lookalike():
    """Nothing here is a GELU or a Swish nncd may replace: x/2 instead of
    x/sqrt(2); an Erf pattern whose Add output is also a graph output; a
    Sigmoid whose output is read by another node besides x * s."""
    b = Builder(64)

    def erf_half(x, p):
        d = b.node('Div', [x, b.const_node(p + '/Constant', 2.0)], p + '/Div')
        e = b.node('Erf', [d], p + '/Erf')
        a = b.node('Add', [e, b.const_node(p + '/Constant_1', 1.0)], p + '/Add')
        m = b.node('Mul', [x, a], p + '/Mul')
        return b.node('Mul', [m, b.const_node(p + '/Constant_2', 0.5)], p + '/Mul_1')

    def silu_shared(x, p):
        s = b.node('Sigmoid', [x], p + '/Sigmoid')
        m = b.node('Mul', [x, s], p + '/Mul')
        z = b.node('Mul', [s, b.const_node(p + '/Constant', 0.0)], p + '/Zero')
        return b.node('Add', [m, z], p + '/Add')  # = x * sigmoid(x)

    acts = [erf_half, b.gelu_erf_div, silu_shared]
    m = b.model(acts, 13, 7, graph_outputs=['/act1/Add_output_0'])
    onnx.checker.check_model(m)
    return m


def main():
    for name, fn in [('ract_mix.onnx', mix), ('ract_gelu20.onnx', gelu20),
                     ('ract_old9.onnx', old9), ('ract_lookalike.onnx', lookalike)]:
        onnx.save(fn(), os.path.join(HERE, name))


if __name__ == '__main__':
    main()
