#!/usr/bin/python3
"""replace_activation outputs against independent references.

  replace_act_check.py TEST_EXE DATA_DIR FIXTURES_DIR NODE NODE_MODULES ORT_JS OUT_DIR

TEST_EXE (test_replace_act) writes each replaced model, an input and nncd's
executor output (case `write`). For every case this script checks:
  - python3-onnx's checker accepts the replaced model (onnx 1.12 knows opsets
    up to 17: the opset-20 Gelu model is checked by ONNX Runtime alone);
  - nncd's output equals a numpy reference computed from the ORIGINAL
    model's initializers with the activations the replacement should leave
    (e.g. gelu_mlp after Gelu -> Relu = the MLP with relu), and
  - ONNX Runtime's output on the replaced model equals the same reference.
Exit 0 all good, 1 a mismatch, 77 when ONNX Runtime is not installed.
"""
import math
import os
import subprocess
import sys

import numpy as np
import onnx
from onnx import numpy_helper

ROWS = 16
TOL = 2e-6  # relative to max |reference|, plus the same absolute (observed: <= 3e-7)


def relu(x):
    return np.maximum(x, 0)


_erf = np.vectorize(math.erf)


ACT = {
    'relu': relu,
    'gelu_erf': lambda x: 0.5 * x * (1 + _erf(x / math.sqrt(2))),
    'gelu_tanh': lambda x: 0.5 * x * (1 + np.tanh(math.sqrt(2 / math.pi) * (x + 0.044715 * x ** 3))),
    'sigmoid': lambda x: 1 / (1 + np.exp(-x)),
    'hardsigmoid': lambda x: np.clip(x / 6 + 0.5, 0, 1),  # PyTorch's, alpha 1/6
    'tanh': np.tanh,
    'hardtanh': lambda x: np.clip(x, -1, 1),
    'silu': lambda x: x / (1 + np.exp(-x)),
    'x_hardsigmoid': lambda x: x * np.clip(x / 6 + 0.5, 0, 1),  # Swish after Sigmoid -> HardSigmoid
    'hardswish': lambda x: x * np.clip(x + 3, 0, 6) / 6,
    'leaky0.2': lambda x: np.where(x >= 0, x, 0.2 * x),
}

MIX = ['gelu_erf', 'gelu_erf', 'gelu_tanh', 'sigmoid', 'tanh', 'silu', 'relu']
# case: (original model, activations expected after the replacement)
CASES = {
    'mix_gelu_relu': ('ract_mix.onnx',
                      ['relu', 'relu', 'relu', 'sigmoid', 'tanh', 'silu', 'relu']),
    'mix_sigmoid_hardsigmoid': ('ract_mix.onnx', ['gelu_erf', 'gelu_erf', 'gelu_tanh',
                                                  'hardsigmoid', 'tanh', 'x_hardsigmoid',
                                                  'relu']),
    # the tanh-GELU's own Tanh is a Tanh too
    'mix_tanh_hardtanh': ('ract_mix.onnx', ['gelu_erf', 'gelu_erf', 'gelu_hardtanh',
                                            'sigmoid', 'hardtanh', 'silu', 'relu']),
    'mix_swish_hardswish': ('ract_mix.onnx', ['gelu_erf', 'gelu_erf', 'gelu_tanh', 'sigmoid',
                                              'tanh', 'hardswish', 'relu']),
    'mix_relu_leakyrelu': ('ract_mix.onnx', MIX[:6] + ['leaky0.2']),
    'mix_gelu_relu_nodes': ('ract_mix.onnx', ['gelu_erf', 'relu', 'relu'] + MIX[3:]),
    'gelu20_gelu_relu': ('ract_gelu20.onnx', ['relu', 'relu']),
    'old9_tanh_hardtanh': ('ract_old9.onnx', ['hardtanh', 'silu', 'gelu_hardtanh']),
    'old9_swish_hardswish': ('ract_old9.onnx', ['tanh', 'hardswish', 'gelu_tanh']),
    'old9_gelu_relu': ('ract_old9.onnx', ['tanh', 'silu', 'relu']),
    'gelu_mlp_gelu_relu': ('gelu_mlp.onnx', ['relu', 'relu']),
}
ACT['gelu_hardtanh'] = lambda x: 0.5 * x * (1 + np.clip(
    math.sqrt(2 / math.pi) * (x + 0.044715 * x ** 3), -1, 1))


def reference(model_path, acts, x):
    """Gemm chain (transB=1) of the original model with the given activations,
    in float64."""
    m = onnx.load(model_path)
    inits = {t.name: numpy_helper.to_array(t).astype(np.float64) for t in m.graph.initializer}
    gemms = [n for n in m.graph.node if n.op_type == 'Gemm']
    assert len(gemms) == len(acts) + 1, (model_path, len(gemms))
    h = x.astype(np.float64)
    for i, g in enumerate(gemms):
        h = h @ inits[g.input[1]].T + inits[g.input[2]]
        if i < len(acts):
            h = ACT[acts[i]](h)
    return h


def close(name, what, got, ref):
    err = float(np.max(np.abs(got - ref)))
    tol = TOL * float(np.max(np.abs(ref))) + TOL
    ok = got.shape == ref.shape and err <= tol
    print('%-26s %-22s max|diff| %.3e (tolerance %.3e) %s' % (name, what, err, tol,
                                                              'ok' if ok else 'FAIL'))
    return ok


def main():
    exe, data, fixtures, node, modules, ort_js, out = sys.argv[1:8]
    probe = os.path.join(modules, 'onnxruntime-node')
    if not node or not os.access(node, os.X_OK) or not os.path.isdir(probe):
        print('ONNX Runtime not installed under %s: skipped' % modules)
        return 77
    os.makedirs(out, exist_ok=True)
    subprocess.run([exe, 'write', data, fixtures, out], check=True)
    ok = True
    for name, (src, acts) in CASES.items():
        src_path = os.path.join(fixtures if not src.startswith('ract_') else data, src)
        path = os.path.join(out, name + '.onnx')
        model = onnx.load(path)
        opset = max(o.version for o in model.opset_import if o.domain in ('', 'ai.onnx'))
        if opset <= onnx.defs.onnx_opset_version():
            onnx.checker.check_model(model)
            print('%-26s onnx checker           ok' % name)
        x = np.fromfile(os.path.join(out, name + '.in.bin'), dtype=np.float32).reshape(ROWS, -1)
        ours = np.fromfile(os.path.join(out, name + '.out.bin'), dtype=np.float32).reshape(ROWS, -1)
        ref = reference(src_path, acts, x)
        ort_out = os.path.join(out, name + '.ort.bin')
        subprocess.run([node, ort_js, modules, path, os.path.join(out, name + '.in.bin'),
                        str(ROWS), ort_out], check=True)
        theirs = np.fromfile(ort_out, dtype=np.float32).reshape(ROWS, -1)
        ok &= close(name, 'nncd vs numpy', ours, ref)
        ok &= close(name, 'onnxruntime vs numpy', theirs, ref)
        # the replacement changed something: the original activations differ
        orig = reference(src_path, CASES_ORIGINAL[src], x)
        if np.max(np.abs(orig - ref)) <= TOL * np.max(np.abs(ref)):
            print('%-26s reference equals the original model: nothing tested' % name)
            ok = False
    return 0 if ok else 1


CASES_ORIGINAL = {
    'ract_mix.onnx': MIX,
    'ract_gelu20.onnx': ['gelu_erf', 'gelu_tanh'],
    'ract_old9.onnx': ['tanh', 'silu', 'gelu_tanh'],
    'gelu_mlp.onnx': ['gelu_erf', 'gelu_erf'],
}

if __name__ == '__main__':
    sys.exit(main())
