#!/usr/bin/env bash
# e2e_compress_lenet_and_cnn: the issue's user story on both trained fixtures, with curl.
# Upload, submit prune magnitude 0.8 global + quantize int8 per_channel, poll to success,
# check the job's metrics, download the artifact (sha256 = ETag = job record), then let the
# oracles judge it: onnx.checker accepts it, every Gemm/Conv weight is int8 through
# DequantizeLinear with per-output-channel scales and 80% (+/-0.5%) zeros, and ONNX Runtime's
# top-1 accuracy on the 10,000 MNIST test images is within 1 point of the original's.
# usage: compress_lenet_and_cnn.sh NNCD SOURCE_ROOT ORACLE_DIR
set -euo pipefail
source "$(dirname "$0")/lib.sh"
e2e_init "$@"
start_daemon

STEPS='[{"op":"prune","method":"magnitude","sparsity":0.8,"scope":"global"},{"op":"quantize","scheme":"int8","granularity":"per_channel"}]'
for fx in lenet300 cnn; do
	log "== $fx"
	model="$SRC/tests/fixtures/$fx.onnx"
	upload "$model" "$fx"
	cp "$WORK/body" "$WORK/$fx.model.json"
	spec="{\"model\":\"$MODEL_ID\",\"steps\":$STEPS}"
	printf '%s' "$spec" >"$WORK/$fx.spec.json"
	submit_job "$spec"
	[[ "$(jget "$WORK/body" 'd["state"]')" == queued ]] || fail "202 body state is not queued: $(cat "$WORK/body")"
	wait_job "$JOB_ID" "$WORK/$fx.job.json"
	"$E2E_PY" "$E2E_HERE/check_job.py" "$WORK/$fx.job.json" "$WORK/$fx.model.json" "$WORK/$fx.spec.json" ||
		fail "$fx: job record check failed: $(cat "$WORK/$fx.job.json")"
	download_artifact "$WORK/$fx.job.json" "$WORK/$fx.art.onnx"
	check_compressed "$model" "$WORK/$fx.art.onnx" "$fx"
done
stop_daemon
log "PASS e2e_compress_lenet_and_cnn"
