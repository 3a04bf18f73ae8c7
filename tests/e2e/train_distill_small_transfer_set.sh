#!/usr/bin/env bash
# e2e_train_distill_beats_hard_labels (issue 6, acceptance 2), through the API.
# A 784-100-10 MLP student ({"hidden": [100]}, built and initialised by nncd) is distilled
# from the LeNet-300-100 fixture on the first 2,000 MNIST training digits: T 8, alpha 0.9,
# SGD Nesterov momentum 0.9 lr 0.05, cosine schedule, batch 64, 10 epochs, seed 7. The
# identical student (same seed: same initial weights, same batch order) trained on the hard
# labels alone (alpha 0) is the baseline. ONNX Runtime measures both artifacts on the 10,000
# test digits: the distilled one must be >= 2 points better. The same pair on the first 20,000
# training digits is reported (no threshold: the gain shrinks as labelled data grows).
# Each step's metrics must show 10 epoch rows over the right number of samples.
# usage: train_distill_small_transfer_set.sh NNCD SOURCE_ROOT ORACLE_DIR
set -euo pipefail
# Training jobs take tens of seconds (minutes under ASan): a longer poll limit than lib.sh's.
E2E_JOB_TIMEOUT=${E2E_JOB_TIMEOUT:-600}
source "$(dirname "$0")/lib.sh"
source "$(dirname "$0")/train_lib.sh"
train_init "$@"

mnist_npz "$WORK/train2k.npz" train 2000
mnist_npz "$WORK/train20k.npz" train 20000
start_daemon
upload "$SRC/tests/fixtures/lenet300.onnx" lenet300
LENET=$MODEL_ID
upload_dataset "$WORK/train2k.npz" mnist-train-2000 2000
DS2K=$DATASET_ID
upload_dataset "$WORK/train20k.npz" mnist-train-20000 20000
DS20K=$DATASET_ID

# The recipe of the acceptance, alpha and dataset varying.
recipe() { # recipe ALPHA DATASET_ID
	printf '{"model":"%s","dataset":%s,"steps":[{"op":"distill","student":{"hidden":[100]},"epochs":10,"batch_size":64,"temperature":8,"alpha":%s,"optimizer":{"name":"sgd","lr":0.05,"momentum":0.9,"nesterov":true},"schedule":{"name":"cosine"},"seed":7}]}' \
		"$LENET" "$(data_ref "$2")" "$1"
}

for n in 2k 20k; do
	ds=DS$(tr k K <<<"$n")
	run_job "kd$n" "$(recipe 0.9 "${!ds}")"
	run_job "hard$n" "$(recipe 0 "${!ds}")"
done
cp "$SRC/tests/fixtures/lenet300.onnx" "$WORK/teacher.onnx"
for f in teacher kd2k hard2k kd20k hard20k; do
	ort_acc "$f" >/dev/null
done

"$E2E_PY" - "$WORK" <<'PY' || fail "distillation acceptance check failed"
import json, sys
import onnx
work = sys.argv[1]
ok = True
def bad(msg):
    global ok
    print("FAIL:", msg)
    ok = False
acc = {f: json.load(open(f"{work}/{f}.acc.json")) for f in ("teacher", "kd2k", "hard2k", "kd20k", "hard20k")}
for f, a in acc.items():
    if a["n"] != 10000:
        bad(f"{f}: ORT evaluated {a['n']} images")
for f, samples, alpha in (("kd2k", 2000, 0.9), ("hard2k", 2000, 0), ("kd20k", 20000, 0.9), ("hard20k", 20000, 0)):
    job = json.load(open(f"{work}/{f}.job.json"))
    m = job["steps"][0]["metrics"]
    hist = m.get("history", [])
    if m.get("samples") != samples or len(hist) != 10 or m.get("epochs") != 10:
        bad(f"{f}: samples {m.get('samples')}, epochs {m.get('epochs')}, {len(hist)} history rows")
    if abs(m.get("alpha", -1) - alpha) > 1e-12 or m.get("temperature") != 8:
        bad(f"{f}: alpha {m.get('alpha')} temperature {m.get('temperature')}")
    lrs = [r["lr"] for r in hist]
    if hist and not (abs(lrs[0] - 0.05) < 1e-9 and all(a > b for a, b in zip(lrs, lrs[1:]))):
        bad(f"{f}: cosine lr per epoch expected to start at 0.05 and fall: {lrs}")
    model = onnx.load(f"{work}/{f}.onnx")
    onnx.checker.check_model(model)
    shapes = sorted(tuple(t.dims) for t in model.graph.initializer)
    if shapes != [(10,), (10, 100), (100,), (100, 784)]:
        bad(f"{f}: student initializers {shapes}, expected a 784-100-10 MLP")
    print(f"{f}: {samples} digits, loss by epoch {[round(r['loss'], 4) for r in hist]}, "
          f"{m.get('seconds', 0):.2f} s in the step")
t = acc["teacher"]["accuracy"]
k2, h2 = acc["kd2k"]["accuracy"], acc["hard2k"]["accuracy"]
k20, h20 = acc["kd20k"]["accuracy"], acc["hard20k"]["accuracy"]
print(f"ORT top-1 on the 10,000 test digits; teacher LeNet-300-100 {t:.4f}")
print(f"  2,000 digits:  distilled {k2:.4f}, hard labels {h2:.4f}, gain {(k2 - h2) * 100:+.2f} points (need >= 2)")
print(f"  20,000 digits: distilled {k20:.4f}, hard labels {h20:.4f}, gain {(k20 - h20) * 100:+.2f} points (reported)")
if k2 - h2 < 0.02:
    bad(f"distillation gained {(k2 - h2) * 100:.2f} points on 2,000 digits, expected >= 2")
sys.exit(0 if ok else 1)
PY
stop_daemon
log "PASS e2e_train_distill_beats_hard_labels"
