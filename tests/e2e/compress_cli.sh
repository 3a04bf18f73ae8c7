#!/usr/bin/env bash
# e2e_compress_cli: `nncd compress IN --spec SPEC -o OUT` (offline, no server) runs the same
# engine as a daemon job. Its output passes the same checks as the daemon's artifact, and,
# because the pipeline is deterministic (same input bytes + same spec => same output bytes:
# no timestamps, random ids or thread-order effects in the written model), its sha256 equals
# the sha256 of the artifact a daemon job with the same spec produced from the same upload.
# Two offline runs also give identical bytes. Usage errors exit 2, bad input exits 1 with a
# message on stderr and leaves no output file.
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
