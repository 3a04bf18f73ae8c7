#!/usr/bin/env bash
# e2e_roundtrip_bit_identical: a job with no steps is load -> save through the engine. Its
# artifact must be the same model: onnx.checker accepts it, the ModelProto equals the
# original's field by field (graph, initializers, opset imports, metadata), and ONNX Runtime's
# outputs on 1000 MNIST test images are bit-identical to the original's.
# usage: roundtrip_bit_identical.sh NNCD SOURCE_ROOT ORACLE_DIR
set -euo pipefail
source "$(dirname "$0")/lib.sh"
e2e_init "$@"
start_daemon

for fx in lenet300 cnn; do
	log "== $fx"
	model="$SRC/tests/fixtures/$fx.onnx"
	upload "$model" "$fx"
	cp "$WORK/body" "$WORK/$fx.model.json"
	printf '{"model":"%s","steps":[]}' "$MODEL_ID" >"$WORK/$fx.spec.json"
	submit_job "$(cat "$WORK/$fx.spec.json")"
	wait_job "$JOB_ID" "$WORK/$fx.job.json"
	"$E2E_PY" "$E2E_HERE/check_job.py" "$WORK/$fx.job.json" "$WORK/$fx.model.json" "$WORK/$fx.spec.json" ||
		fail "$fx: job record check failed: $(cat "$WORK/$fx.job.json")"
	download_artifact "$WORK/$fx.job.json" "$WORK/$fx.art.onnx"
	inspect_model "$WORK/$fx.art.onnx" "$WORK/$fx.art.inspect.json"
	"$E2E_PY" "$E2E_HERE/same_model.py" "$model" "$WORK/$fx.art.onnx" ||
		fail "$fx: the no-step artifact is not the same ModelProto as the original"
	for opt in all basic; do
		ort_compare "$model" "$WORK/$fx.art.onnx" "$WORK/$fx.cmp.$opt.json" --n 1000 --opt "$opt"
		log "$fx ($opt): $(cat "$WORK/$fx.cmp.$opt.json")"
		[[ "$(jget "$WORK/$fx.cmp.$opt.json" 'd["bit_identical"] and d["n"] == 1000')" == true ]] ||
			fail "$fx: ONNX Runtime outputs of the artifact differ from the original's (opt $opt)"
	done
	if cmp -s "$model" "$WORK/$fx.art.onnx"; then
		log "$fx: artifact bytes are identical to the upload"
	else
		log "$fx: artifact bytes differ from the upload (same ModelProto, different encoding)"
	fi
done
stop_daemon
log "PASS e2e_roundtrip_bit_identical"
