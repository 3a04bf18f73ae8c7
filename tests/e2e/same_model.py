#!/usr/bin/python3
"""same_model.py A.onnx B.onnx: exit 0 when the two files parse to equal ModelProtos.

Protobuf message equality compares every field, including unknown ones, so this is the
"load -> save is lossless" check: same graph, nodes, initializers (values and encoding),
opset imports, IR version, producer and metadata. On a difference it names the top-level
fields (and, inside the graph, the first differing node or initializer) that differ.
"""
import os
import sys

_HERE = os.path.dirname(os.path.abspath(__file__))
sys.path[:] = [p for p in sys.path if os.path.abspath(p or os.curdir) != _HERE]

import onnx  # noqa: E402


def main(argv):
    if len(argv) != 3:
        sys.stderr.write(__doc__)
        return 2
    a, b = onnx.load(argv[1]), onnx.load(argv[2])
    if a == b:
        print(f"  same ModelProto: {argv[1]} == {argv[2]}")
        return 0
    for field in a.DESCRIPTOR.fields:
        if getattr(a, field.name) != getattr(b, field.name):
            print(f"  model field '{field.name}' differs")
    if a.graph != b.graph:
        for field in a.graph.DESCRIPTOR.fields:
            va, vb = getattr(a.graph, field.name), getattr(b.graph, field.name)
            if va == vb:
                continue
            print(f"  graph field '{field.name}' differs")
            if field.label == field.LABEL_REPEATED:
                if len(va) != len(vb):
                    print(f"    {len(va)} entries vs {len(vb)}")
                for i, (x, y) in enumerate(zip(va, vb)):
                    if x != y:
                        name = getattr(x, "name", "")
                        print(f"    first difference at [{i}] {name!r}:\n"
                              f"      A: {str(x)[:300]!r}\n      B: {str(y)[:300]!r}")
                        break
    return 1


if __name__ == "__main__":
    sys.exit(main(sys.argv))
