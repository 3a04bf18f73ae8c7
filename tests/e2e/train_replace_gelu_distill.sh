#!/usr/bin/env bash
# e2e_train_gelu_to_relu_distill_recovers (issue 6, acceptance 4), through the API.
# The GELU MLP fixture (784-256-128-10, GELU as PyTorch's Erf pattern) gets
# replace_activation Gelu -> Relu, then `distill` with the current model as the student and
# the job's input model (the GELU original) as the teacher, on the 60,000 MNIST training
# digits: T 4, alpha 0.9, Adam lr 0.001, cosine per epoch, batch 64, 3 epochs, seed 3.
# ONNX Runtime on the 10,000 test digits: within 1 point of the original (the accuracy right
# after the swap, nncd's eval of step 0, is reported); the student's argmax agreement with the
# teacher (nncd's fidelity eval) must be higher after distill than right after the swap. The
# artifact has Relu and no Erf, and the same weight shapes as the original.
# usage: train_replace_gelu_distill.sh NNCD SOURCE_ROOT ORACLE_DIR
set -euo pipefail
# Training jobs take tens of seconds (minutes under ASan): a longer poll limit than lib.sh's.
E2E_JOB_TIMEOUT=${E2E_JOB_TIMEOUT:-600}
source "$(dirname "$0")/lib.sh"
source "$(dirname "$0")/train_lib.sh"
train_init "$@"

mnist_npz "$WORK/train.npz" train 60000
mnist_npz "$WORK/test.npz" t10k 10000
start_daemon
upload "$SRC/tests/fixtures/gelu_mlp.onnx" gelu_mlp
GELU=$MODEL_ID
upload_dataset "$WORK/train.npz" mnist-train 60000
DS=$DATASET_ID
upload_dataset "$WORK/test.npz" mnist-test 10000
DS_TEST=$DATASET_ID

REPLACE='{"op":"replace_activation","from":"Gelu","to":"Relu"}'
DISTILL='{"op":"distill","epochs":3,"batch_size":64,"temperature":4,"alpha":0.9,"optimizer":{"name":"adam","lr":0.001},"schedule":{"name":"cosine"},"seed":3}'
run_job relu "{\"model\":\"$GELU\",\"dataset\":$(data_ref "$DS"),\"steps\":[$REPLACE,$DISTILL],\"eval\":{\"dataset\":$(data_ref "$DS_TEST"),\"metrics\":[\"accuracy\",\"fidelity\"]}}"
cp "$SRC/tests/fixtures/gelu_mlp.onnx" "$WORK/orig.onnx"
for f in orig relu; do
	ort_acc "$f" >/dev/null
done

"$E2E_PY" - "$WORK" <<'PY' || fail "Gelu -> Relu + distill acceptance check failed"
import json, sys
import onnx
work = sys.argv[1]
ok = True
def bad(msg):
    global ok
    print("FAIL:", msg)
    ok = False
acc = {f: json.load(open(f"{work}/{f}.acc.json"))["accuracy"] for f in ("orig", "relu")}
orig, art = onnx.load(f"{work}/orig.onnx"), onnx.load(f"{work}/relu.onnx")
onnx.checker.check_model(art)
ops = [n.op_type for n in art.graph.node]
if "Erf" in ops or ops.count("Relu") != 2:
    bad(f"artifact ops {ops}: expected two Relu and no Erf")
shape = lambda m: sorted((t.name, tuple(t.dims)) for t in m.graph.initializer if len(t.dims) == 2)
if shape(orig) != shape(art):
    bad(f"weights {shape(art)} differ from the original's {shape(orig)}")
job = json.load(open(f"{work}/relu.job.json"))
e0, e1 = (job["steps"][i]["metrics"].get("eval", {}) for i in (0, 1))
swap = e0.get("accuracy")
d = job["steps"][1]["metrics"]
hist = d.get("history", [])
if len(hist) != 3 or d.get("samples") != 60000:
    bad(f"distill metrics: {len(hist)} history rows, samples {d.get('samples')}")
print("distill epochs:", [{k: (round(v, 4) if isinstance(v, float) else v) for k, v in r.items()} for r in hist])
print(f"ORT top-1 on the 10,000 test digits: GELU original {acc['orig']:.4f}; after Gelu -> Relu "
      f"{swap} (nncd's eval of step 0); after distill {acc['relu']:.4f} "
      f"({(acc['relu'] - acc['orig']) * 100:+.2f} points, need >= -1)")
print(f"argmax agreement with the GELU teacher (nncd eval): after the swap {e0.get('agreement')}, "
      f"after distill {e1.get('agreement')} (must rise)")
if not (isinstance(e0.get("agreement"), float) and isinstance(e1.get("agreement"), float)
        and e1["agreement"] > e0["agreement"]):
    bad("distillation did not bring the student closer to its teacher")
if acc["relu"] < acc["orig"] - 0.01:
    bad(f"distilled Relu model {acc['relu']:.4f} more than 1 point below the original {acc['orig']:.4f}")
sys.exit(0 if ok else 1)
PY
stop_daemon
log "PASS e2e_train_gelu_to_relu_distill_recovers"
