#!/usr/bin/env bash
# e2e_quant_int8_lenet300: issue 5 acceptance 2 for int8 through the API. Upload the trained
# LeNet-300-100, submit quantize int8 per_channel, poll to success, download the artifact and
# check: >= 3.9x smaller than the input; ONNX Runtime's top-1 on the 10,000 MNIST test images
# drops <= 0.1 point (exact-numerics session and ORT's default session); the job record has the
# per-layer report (scheme, bits, scale range, mse, max abs error) and the verified artifact
# (runtime nncd, opset 13, IR version, no contrib ops).
# usage: quant_int8_lenet300.sh NNCD SOURCE_ROOT ORACLE_DIR
set -euo pipefail
source "$(dirname "$0")/lib.sh"
e2e_init "$@"
start_daemon

model="$SRC/tests/fixtures/lenet300.onnx"
upload "$model" lenet300
submit_job "{\"model\":\"$MODEL_ID\",\"steps\":[{\"op\":\"quantize\",\"scheme\":\"int8\",\"granularity\":\"per_channel\"}]}"
wait_job "$JOB_ID" "$WORK/job.json"
download_artifact "$WORK/job.json" "$WORK/art.onnx"
http GET "/v1/jobs/$JOB_ID/report"
expect_status 200 "GET /v1/jobs/$JOB_ID/report"
[[ "$(jget "$WORK/body" 'd["artifact_runtime"]["opset"]')" == 13 ]] ||
	fail "report lacks artifact_runtime: $(cat "$WORK/body")"
ort_accuracy "$model" "$WORK/orig.acc.json"
ort_accuracy "$WORK/art.onnx" "$WORK/art.acc.json"
"$E2E_PY" - "$WORK/job.json" "$WORK/orig.acc.json" "$WORK/art.acc.json" "$model" "$WORK/art.onnx" <<'PY' ||
import json, os, sys
job, o, a = (json.load(open(p)) for p in sys.argv[1:4])
ratio = os.path.getsize(sys.argv[4]) / os.path.getsize(sys.argv[5])
ok = True
print(f"lenet300 int8 per_channel: {ratio:.3f}x smaller; ORT top-1 original {o['accuracy']:.4f}, "
      f"artifact {a['accuracy']:.4f} (ORT default session {a['accuracy_default']:.4f})")
if ratio < 3.9:
    print(f"only {ratio:.3f}x smaller (< 3.9)"); ok = False
for key in ("accuracy", "accuracy_default"):
    drop = o[key] - a[key]
    if drop > 0.001 + 1e-12:
        print(f"{key} dropped {drop * 100:.2f} points (> 0.1)"); ok = False
m = job["steps"][0]["metrics"]
for l in m["layers"]:
    for k in ("name", "op", "scheme", "bits", "scale_min", "scale_max", "mse", "max_abs_error"):
        if k not in l:
            print(f"layer {l.get('name')} lacks {k}"); ok = False
    if l.get("scheme") != "int8" or l.get("bits") != 8:
        print(f"layer {l.get('name')}: scheme/bits {l.get('scheme')}/{l.get('bits')}"); ok = False
art = m.get("artifact") or {}
print("artifact:", json.dumps(art))
if art.get("opset") != 13 or art.get("contrib_ops") != [] or not art.get("ir_version"):
    print("artifact description wrong"); ok = False
if (art.get("verified") or {}).get("runtime") != "nncd":
    print("artifact not verified by the executor"); ok = False
sys.exit(0 if ok else 1)
PY
	fail "int8 acceptance check failed"
stop_daemon
log "PASS e2e_quant_int8_lenet300"
