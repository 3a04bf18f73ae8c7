#!/usr/bin/env bash
# e2e_train_epoch_events_progress_cancel (issue 6, "Progress"), through the API.
#  - A 3-epoch distill job (lenet300 -> {"hidden": [100]}, 20,000 training digits, the 10,000
#    test digits as eval data) records one "epoch" job event per epoch, tagged with the step
#    (step 0, op distill), with epoch, loss, train_accuracy, eval_accuracy, lr and seconds, the
#    same rows as the step's metrics "history" in GET /v1/jobs/{id}; the events are read from
#    GET /v1/jobs/{id}/events, page by page, while the job runs.
#  - A long job (500 epochs of a 784-300-100-10 student) shows GET /v1/jobs/{id} "progress"
#    strictly between 0 and 1 and never decreasing while it trains; POST /v1/jobs/{id}/cancel
#    after its first epoch event stops it: state and step "canceled", no artifact, far fewer
#    epoch events than requested, within 30 s of the request (one batch takes ~1 ms).
# usage: train_events_progress_cancel.sh NNCD SOURCE_ROOT ORACLE_DIR
set -euo pipefail
# Training jobs take tens of seconds (minutes under ASan): a longer poll limit than lib.sh's.
E2E_JOB_TIMEOUT=${E2E_JOB_TIMEOUT:-600}
source "$(dirname "$0")/lib.sh"
source "$(dirname "$0")/train_lib.sh"
train_init "$@"

mnist_npz "$WORK/train.npz" train 20000
mnist_npz "$WORK/test.npz" t10k 10000
start_daemon
upload "$SRC/tests/fixtures/lenet300.onnx" lenet300
LENET=$MODEL_ID
upload_dataset "$WORK/train.npz" mnist-train-20000 20000
DS=$DATASET_ID
upload_dataset "$WORK/test.npz" mnist-test 10000
DS_TEST=$DATASET_ID

# events JOB_ID: the job's events as JSON lines {"type", "data"}, from GET /v1/jobs/{id}/events
# (every page, following "next").
events() {
	"$E2E_PY" - "$BASE" "$1" <<'PY'
import json, sys, urllib.request
base, job, after = sys.argv[1], sys.argv[2], None
while True:
    url = f"{base}/v1/jobs/{job}/events?limit=200" + (f"&after={after}" if after else "")
    page = json.load(urllib.request.urlopen(url, timeout=30))
    for ev in page["events"]:
        print(json.dumps({"type": ev["type"], "data": ev["data"]}))
    after = page["next"]
    if after is None:
        break
PY
}

log "== epoch events"
spec="{\"model\":\"$LENET\",\"dataset\":$(data_ref "$DS"),\"steps\":[{\"op\":\"distill\",\"student\":{\"hidden\":[100]},\"epochs\":3,\"temperature\":4,\"alpha\":0.5,\"optimizer\":{\"name\":\"sgd\",\"lr\":0.05,\"momentum\":0.9},\"schedule\":{\"name\":\"cosine\"},\"seed\":5}],\"eval\":{\"dataset\":$(data_ref "$DS_TEST"),\"metrics\":[\"accuracy\"]}}"
run_job short "$spec"
events "$JOB_ID" >"$WORK/short.events" || fail "cannot read the job events"
"$E2E_PY" - "$WORK/short.job.json" "$WORK/short.events" <<'PY' || fail "epoch events check failed"
import json, sys
job = json.load(open(sys.argv[1]))
events = [json.loads(l) for l in open(sys.argv[2])]
epochs = [e["data"] for e in events if e["type"] == "epoch"]
hist = job["steps"][0]["metrics"]["history"]
print("event types:", [e["type"] for e in events])
print("epoch events:", epochs)
problems = []
if len(epochs) != 3:
    problems.append(f"{len(epochs)} epoch events, expected 3")
for i, ev in enumerate(epochs):
    for k in ("epoch", "loss", "train_accuracy", "eval_accuracy", "lr", "seconds"):
        if not isinstance(ev.get(k), (int, float)):
            problems.append(f"epoch event {i}: field {k} = {ev.get(k)!r}")
    if ev.get("epoch") != i + 1 or ev.get("step") != 0 or ev.get("op") != "distill":
        problems.append(f"epoch event {i}: epoch {ev.get('epoch')} step {ev.get('step')} op {ev.get('op')}")
    # the same figures (the API prints reals with 15 significant digits, the event store 17)
    if i < len(hist) and any(not isinstance(ev.get(k), (int, float)) or
                             abs(ev[k] - v) > 1e-12 * max(1.0, abs(v)) for k, v in hist[i].items()):
        problems.append(f"epoch event {i} {ev} differs from history row {hist[i]}")
    if not 0.5 < ev.get("eval_accuracy", 0) <= 1 or not 0 < ev.get("train_accuracy", 0) <= 1:
        problems.append(f"epoch event {i}: accuracies {ev.get('train_accuracy')} / {ev.get('eval_accuracy')}")
if len(hist) != 3:
    problems.append(f"{len(hist)} history rows")
if job["progress"] != 1:
    problems.append(f"finished job progress {job['progress']}")
for p in problems:
    print("FAIL:", p)
sys.exit(1 if problems else 0)
PY

log "== progress and cancel"
submit_job "{\"model\":\"$LENET\",\"dataset\":$(data_ref "$DS"),\"steps\":[{\"op\":\"distill\",\"student\":{\"hidden\":[300,100]},\"epochs\":500,\"alpha\":0.9,\"optimizer\":{\"name\":\"sgd\",\"lr\":0.01,\"momentum\":0.9},\"seed\":2}]}"
LONG=$JOB_ID
: >"$WORK/progress"
start=$SECONDS
n_epochs=0
while :; do
	http GET "/v1/jobs/$LONG"
	expect_status 200 "GET /v1/jobs/$LONG"
	state=$(jget "$WORK/body" 'd["state"]')
	[[ $state == queued || $state == running ]] || fail "long job ended $state before the cancel: $(cat "$WORK/body")"
	[[ $state == running ]] && jget "$WORK/body" 'd["progress"]' >>"$WORK/progress"
	n_epochs=$(events "$LONG" | grep -c '"type": "epoch"' || true)
	((n_epochs >= 1)) && break
	((SECONDS - start < 120)) || fail "no epoch event within 120 s: $(cat "$WORK/body")"
	sleep 0.1
done
# A few more progress readings within the second epoch, then cancel.
for _ in 1 2 3 4 5; do
	sleep 0.25
	http GET "/v1/jobs/$LONG"
	jget "$WORK/body" 'd["progress"]' >>"$WORK/progress"
done
http POST "/v1/jobs/$LONG/cancel"
expect_status 200 "POST /v1/jobs/$LONG/cancel"
cancel_at=$SECONDS
while :; do
	http GET "/v1/jobs/$LONG"
	state=$(jget "$WORK/body" 'd["state"]')
	[[ $state == canceled ]] && break
	[[ $state == running ]] || fail "long job is $state after the cancel, expected canceled: $(cat "$WORK/body")"
	((SECONDS - cancel_at < 30)) || fail "long job still running 30 s after the cancel request"
	sleep 0.1
done
cp "$WORK/body" "$WORK/long.job.json"
events "$LONG" >"$WORK/long.events" || fail "cannot read the job events"
"$E2E_PY" - "$WORK/long.job.json" "$WORK/long.events" "$WORK/progress" "$((SECONDS - cancel_at))" <<'PY' || fail "progress / cancel check failed"
import json, sys
job = json.load(open(sys.argv[1]))
events = [json.loads(l) for l in open(sys.argv[2])]
progress = [float(l) for l in open(sys.argv[3]) if l.strip()]
epochs = [e for e in events if e["type"] == "epoch"]
problems = []
print(f"progress readings while training: {progress}")
print(f"canceled after {len(epochs)} of 500 epochs, {sys.argv[4]} s or less after the request; "
      f"event types {sorted(set(e['type'] for e in events))}; step state {job['steps'][0]['state']}")
inside = [p for p in progress if 0 < p < 1]
if len(inside) < 3:
    problems.append(f"progress never strictly between 0 and 1 three times: {progress}")
if any(b < a for a, b in zip(progress, progress[1:])):
    problems.append(f"progress went backwards: {progress}")
if job["state"] != "canceled" or job["steps"][0]["state"] != "canceled":
    problems.append(f"job {job['state']}, step {job['steps'][0]['state']}")
if job.get("artifacts"):
    problems.append(f"a canceled job has artifacts {job['artifacts']}")
if not 1 <= len(epochs) < 100:
    problems.append(f"{len(epochs)} epoch events before the cancel took effect")
if not any(e["type"] == "canceled" for e in events):
    problems.append("no canceled event")
for p in problems:
    print("FAIL:", p)
sys.exit(1 if problems else 0)
PY
stop_daemon
log "PASS e2e_train_epoch_events_progress_cancel"
