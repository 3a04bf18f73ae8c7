#!/usr/bin/python3
"""Structural oracle for nncd's artifacts, built on Debian's python3-onnx (1.12).

    /usr/bin/python3 tests/oracle/inspect.py MODEL.onnx

Runs onnx.checker.check_model (exit 1 with the checker's message if it fails), then prints
one JSON object:

  {"file", "size", "ir_version", "opset": {"": 13, ...}, "producer", "ops": {"Gemm": 3, ...},
   "nodes", "initializers",
   "weights": [{"node", "op", "name", "shape", "stored_dtype", "source",
                "dequantize": null | {"node", "scale_shape", "axis", "zero_point_dtype",
                                      "per_channel", "output_channel_axis"},
                "parameters", "zeros", "sparsity"}],
   "weight_parameters", "weight_zeros", "weight_sparsity"}

A "weight" is the second input of every Gemm, MatMul and Conv node, found from the graph,
not from names. Its "source" is "initializer" when the node reads a stored tensor directly,
"DequantizeLinear" when the node reads the output of a DequantizeLinear whose input is a
stored tensor, otherwise the producing op (or "graph_input"). Sparsity counts zeros of the
dequantized value: for a DequantizeLinear weight, q == zero_point (a scale is never zero
for a valid model; a zero scale is counted as zeros too). "per_channel" is true when the
scale has as many elements as the weight's output-channel dimension and the
DequantizeLinear axis names that dimension (Conv: 0; Gemm: 0 with transB=1, else 1;
MatMul: last).
"""

import os
import sys

# This file is named like the standard library's "inspect" module, which numpy imports:
# drop the script's own folder from the module path before importing anything else.
_HERE = os.path.dirname(os.path.abspath(__file__))
sys.path[:] = [p for p in sys.path if os.path.abspath(p or os.curdir) != _HERE]

import json  # noqa: E402

import numpy as np  # noqa: E402
import onnx  # noqa: E402
from onnx import numpy_helper  # noqa: E402

WEIGHT_OPS = ("Gemm", "MatMul", "Conv")


def attr(node, name, default):
    for a in node.attribute:
        if a.name == name:
            return onnx.helper.get_attribute_value(a)
    return default


def output_channel_axis(node, rank):
    """Axis of the weight that indexes output channels, or None when not defined."""
    if node.op_type == "Conv":
        return 0
    if node.op_type == "Gemm":
        return 0 if attr(node, "transB", 0) else 1
    if node.op_type == "MatMul":
        return rank - 1 if rank >= 2 else None
    return None


def along(v, q, axis, dq):
    """Broadcastable view of a DequantizeLinear scale or zero point over the quantized q."""
    if v.ndim == 0:
        return v
    if v.ndim == 1:
        shape = [1] * q.ndim
        shape[axis] = -1
        return v.reshape(shape)
    if v.ndim == q.ndim:  # blocked (opset 21): repeat each block's value along the axis
        block = attr(dq, "block_size", 0)
        if block <= 0:
            return v
        return np.repeat(v, block, axis=axis).take(range(q.shape[axis]), axis=axis)
    raise ValueError(f"DequantizeLinear {dq.name}: parameter rank {v.ndim} vs input rank {q.ndim}")


def dtype_name(elem_type):
    try:
        return onnx.TensorProto.DataType.Name(elem_type).lower()
    except ValueError:
        return f"type_{elem_type}"


def inspect(path):
    model = onnx.load(path)
    try:
        onnx.checker.check_model(model, full_check=False)
    except onnx.checker.ValidationError as e:
        raise CheckFailed(str(e)) from None

    g = model.graph
    inits = {t.name: t for t in g.initializer}
    producers = {}
    for n in g.node:
        for o in n.output:
            producers[o] = n
    # Constant nodes count as stored tensors, as PyTorch sometimes emits them.
    consts = {}
    for n in g.node:
        if n.op_type == "Constant" and n.output:
            v = attr(n, "value", None)
            if isinstance(v, onnx.TensorProto):
                consts[n.output[0]] = v

    def stored(name):
        return inits.get(name) or consts.get(name)

    ops = {}
    for n in g.node:
        ops[n.op_type] = ops.get(n.op_type, 0) + 1

    weights = []
    total = 0
    total_zeros = 0
    for n in g.node:
        if n.op_type not in WEIGHT_OPS or len(n.input) < 2:
            continue
        wname = n.input[1]
        entry = {"node": n.name, "op": n.op_type, "name": wname, "dequantize": None}
        t = stored(wname)
        if t is not None:
            arr = numpy_helper.to_array(t)
            entry["source"] = "initializer"
            entry["stored_dtype"] = dtype_name(t.data_type)
            zeros = int(np.count_nonzero(arr == 0))
        elif wname in producers and producers[wname].op_type == "DequantizeLinear":
            dq = producers[wname]
            qt = stored(dq.input[0])
            if qt is None:
                entry["source"] = "DequantizeLinear(non-constant)"
                entry["stored_dtype"] = None
                weights.append(entry)
                continue
            arr = numpy_helper.to_array(qt)
            st = stored(dq.input[1]) if len(dq.input) > 1 else None
            zt = stored(dq.input[2]) if len(dq.input) > 2 and dq.input[2] else None
            scale = numpy_helper.to_array(st) if st is not None else None
            zp = numpy_helper.to_array(zt) if zt is not None else None
            entry["source"] = "DequantizeLinear"
            entry["stored_dtype"] = dtype_name(qt.data_type)
            axis_attr = attr(dq, "axis", 1)
            axis = axis_attr + arr.ndim if axis_attr < 0 else axis_attr
            oc = output_channel_axis(n, arr.ndim)
            per_channel = (scale is not None and scale.ndim == 1 and oc is not None
                           and axis == oc and scale.shape[0] == arr.shape[oc])
            entry["dequantize"] = {
                "node": dq.name,
                "scale_shape": list(scale.shape) if scale is not None else None,
                "scale_dtype": dtype_name(st.data_type) if st is not None else None,
                "axis": axis if scale is not None and scale.ndim == 1 else None,
                "zero_point_dtype": dtype_name(zt.data_type) if zt is not None else None,
                "per_channel": bool(per_channel),
                "output_channel_axis": oc,
            }
            # Zero after dequantization: q == zero point, or a zero scale on that slice.
            q = arr.astype(np.int64)
            zpv = np.zeros((), dtype=np.int64) if zp is None else along(zp.astype(np.int64), q, axis, dq)
            scv = np.ones(()) if scale is None else along(scale.astype(np.float64), q, axis, dq)
            zeros = int(np.count_nonzero((q == zpv) | (scv == 0)))
        else:
            src = producers.get(wname)
            entry["source"] = src.op_type if src is not None else "graph_input"
            entry["stored_dtype"] = None
            weights.append(entry)
            continue
        entry["shape"] = list(arr.shape)
        entry["parameters"] = int(arr.size)
        entry["zeros"] = zeros
        entry["sparsity"] = zeros / arr.size if arr.size else 0.0
        total += int(arr.size)
        total_zeros += zeros
        weights.append(entry)

    return {
        "file": path,
        "size": os.path.getsize(path),
        "ir_version": model.ir_version,
        "opset": {imp.domain: imp.version for imp in model.opset_import},
        "producer": {"name": model.producer_name, "version": model.producer_version},
        "ops": ops,
        "nodes": len(g.node),
        "initializers": len(g.initializer),
        "weights": weights,
        "weight_parameters": total,
        "weight_zeros": total_zeros,
        "weight_sparsity": total_zeros / total if total else 0.0,
    }


class CheckFailed(Exception):
    pass


def main(argv):
    if len(argv) != 2 or argv[1].startswith("-"):
        sys.stderr.write("usage: inspect.py MODEL.onnx\n")
        return 2
    try:
        result = inspect(argv[1])
    except CheckFailed as e:
        sys.stderr.write(f"inspect.py: onnx.checker rejected {argv[1]}: {e}\n")
        return 1
    except Exception as e:  # unreadable file, protobuf error: report, don't trace back
        sys.stderr.write(f"inspect.py: {argv[1]}: {type(e).__name__}: {e}\n")
        return 1
    json.dump(result, sys.stdout)
    sys.stdout.write("\n")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
