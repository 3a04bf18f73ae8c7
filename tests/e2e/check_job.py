#!/usr/bin/python3
"""Checks the final JSON of a finished nncd job against its model and spec.

    check_job.py JOB.json MODEL.json SPEC.json

MODEL.json is the 201 body of the model upload (for its "prunable" list), SPEC.json the job
spec that was posted. Checks the job view of docs/API.md: state succeeded, progress 1, no
error, timestamps, one step record per spec step, each succeeded with metrics; for a prune
step the measured sparsity of the prunable weights is within 0.005 of the target and the
counts add up; for a quantize step the weights got smaller. Prints the step metrics it read.
"""

import json
import sys


def main(argv):
    if len(argv) != 4:
        sys.stderr.write(__doc__)
        return 2
    job = json.load(open(argv[1]))
    model = json.load(open(argv[2]))
    spec = json.load(open(argv[3]))
    problems = []

    def need(cond, msg):
        if not cond:
            problems.append(msg)

    need(job.get("state") == "succeeded", f"state {job.get('state')}")
    need(job.get("error") is None, f"error {job.get('error')}")
    need(job.get("progress") == 1, f"progress {job.get('progress')}, expected 1")
    need(job.get("model") == model["id"], f"model {job.get('model')}, expected {model['id']}")
    for key in ("created_at", "started_at", "finished_at"):
        need(isinstance(job.get(key), str) and job[key], f"{key} is {job.get(key)!r}")
    need(isinstance(job.get("spec"), dict) and job["spec"].get("steps") == spec["steps"],
         f"spec echoed as {job.get('spec')}")

    steps = job.get("steps") or []
    need(len(steps) == len(spec["steps"]), f"{len(steps)} step records for {len(spec['steps'])} steps")
    prunable = model.get("prunable") or []
    prunable_params = sum(p["parameters"] for p in prunable)
    for i, (st, sp) in enumerate(zip(steps, spec["steps"])):
        where = f"steps[{i}]"
        need(st.get("op") == sp["op"], f"{where}.op {st.get('op')}, expected {sp['op']}")
        need(st.get("state") == "succeeded", f"{where}.state {st.get('state')}")
        m = st.get("metrics")
        if not isinstance(m, dict):
            problems.append(f"{where}.metrics is {m!r}")
            continue
        if sp["op"] == "prune":
            print(f"  prune: target {m.get('sparsity_target')} sparsity {m.get('sparsity')} "
                  f"threshold {m.get('threshold')} parameters {m.get('parameters')} "
                  f"nonzeros {m.get('nonzeros_before')} -> {m.get('nonzeros')} "
                  f"bytes {m.get('bytes_before')} -> {m.get('bytes_after')} ({m.get('seconds')} s)")
            need(m.get("method") == sp.get("method", "magnitude"), f"{where} method {m.get('method')}")
            need(m.get("scope") == sp.get("scope"), f"{where} scope {m.get('scope')}")
            need(m.get("sparsity_target") == sp["sparsity"],
                 f"{where} sparsity_target {m.get('sparsity_target')}")
            sparsity = m.get("sparsity")
            need(isinstance(sparsity, (int, float)) and abs(sparsity - sp["sparsity"]) <= 0.005,
                 f"{where} sparsity {sparsity} not within 0.005 of {sp['sparsity']}")
            need(m.get("parameters") == prunable_params,
                 f"{where} parameters {m.get('parameters')}, the model's prunable weights hold "
                 f"{prunable_params}")
            nz = m.get("nonzeros")
            if isinstance(nz, int) and prunable_params:
                need(abs((1 - nz / prunable_params) - (sparsity or 0)) < 1e-6,
                     f"{where} sparsity {sparsity} disagrees with nonzeros {nz}/{prunable_params}")
            layers = m.get("layers") or []
            need(sorted(l.get("name") for l in layers) == sorted(p["name"] for p in prunable),
                 f"{where} layers {[l.get('name') for l in layers]}, prunable "
                 f"{[p['name'] for p in prunable]}")
            if isinstance(nz, int):
                need(sum(l.get("nonzeros", 0) for l in layers) == nz,
                     f"{where} per-layer nonzeros do not add up to {nz}")
        elif sp["op"] == "quantize":
            print(f"  quantize: {m.get('scheme')} {m.get('granularity')} symmetric "
                  f"{m.get('symmetric')} parameters {m.get('parameters')} "
                  f"bytes {m.get('bytes_before')} -> {m.get('bytes_after')} opset {m.get('opset')} "
                  f"({m.get('seconds')} s)")
            need(m.get("scheme") == sp["scheme"], f"{where} scheme {m.get('scheme')}")
            need(m.get("granularity") == sp.get("granularity"),
                 f"{where} granularity {m.get('granularity')}")
            bb, ba = m.get("bytes_before"), m.get("bytes_after")
            need(isinstance(bb, int) and isinstance(ba, int) and ba < bb,
                 f"{where} bytes_after {ba} is not below bytes_before {bb}")
            need(m.get("parameters") == prunable_params,
                 f"{where} parameters {m.get('parameters')}, expected {prunable_params}")
            layers = m.get("layers") or []
            need(len(layers) == len(prunable), f"{where} {len(layers)} layers, expected {len(prunable)}")
            for l in layers:
                need(l.get("granularity") == sp.get("granularity"),
                     f"{where} layer {l.get('name')} granularity {l.get('granularity')}")
    for p in problems:
        print(f"  problem: {p}")
    return 1 if problems else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
