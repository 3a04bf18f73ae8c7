#!/usr/bin/env bash
# e2e_train_prune95_finetune_recovers (issue 6, acceptance 3), through the API.
# LeNet-300-100 is pruned by global magnitude to 95% sparsity and fine-tuned on the 60,000
# MNIST training digits (labels only): SGD Nesterov momentum 0.9, lr 0.02, cosine per epoch,
# batch 64, 4 epochs, seed 1. A second job prunes alone (the same deterministic threshold), so
# its artifact says exactly which weights pruning zeroed. Checked:
#  - ONNX Runtime on the 10,000 test digits: the fine-tuned model is within 1 point of the
#    unpruned one (the pruned-only accuracy is reported);
#  - every weight that is 0 in the pruned-only artifact is exactly 0 (bits) in the fine-tuned
#    one, read with python3-onnx, and the weights' sparsity is still >= 95%;
#  - the step's metrics: masked weights = the pruned zeros, 4 history rows.
# usage: train_prune_finetune.sh NNCD SOURCE_ROOT ORACLE_DIR
set -euo pipefail
# Training jobs take tens of seconds (minutes under ASan): a longer poll limit than lib.sh's.
E2E_JOB_TIMEOUT=${E2E_JOB_TIMEOUT:-600}
source "$(dirname "$0")/lib.sh"
source "$(dirname "$0")/train_lib.sh"
train_init "$@"

mnist_npz "$WORK/train.npz" train 60000
mnist_npz "$WORK/test.npz" t10k 10000
start_daemon
upload "$SRC/tests/fixtures/lenet300.onnx" lenet300
LENET=$MODEL_ID
upload_dataset "$WORK/train.npz" mnist-train 60000
DS=$DATASET_ID
upload_dataset "$WORK/test.npz" mnist-test 10000
DS_TEST=$DATASET_ID

PRUNE='{"op":"prune","method":"magnitude","sparsity":0.95,"scope":"global"}'
FINETUNE='{"op":"finetune","epochs":4,"batch_size":64,"optimizer":{"name":"sgd","lr":0.02,"momentum":0.9,"nesterov":true},"schedule":{"name":"cosine"},"seed":1}'
run_job pruned "{\"model\":\"$LENET\",\"steps\":[$PRUNE]}"
run_job finetuned "{\"model\":\"$LENET\",\"dataset\":$(data_ref "$DS"),\"steps\":[$PRUNE,$FINETUNE],\"eval\":{\"dataset\":$(data_ref "$DS_TEST"),\"metrics\":[\"accuracy\",\"size\"]}}"
cp "$SRC/tests/fixtures/lenet300.onnx" "$WORK/orig.onnx"
for f in orig pruned finetuned; do
	ort_acc "$f" >/dev/null
done

"$E2E_PY" - "$WORK" <<'PY' || fail "prune + finetune acceptance check failed"
import json, sys
import numpy as np
import onnx
from onnx import numpy_helper
work = sys.argv[1]
ok = True
def bad(msg):
    global ok
    print("FAIL:", msg)
    ok = False
acc = {f: json.load(open(f"{work}/{f}.acc.json"))["accuracy"] for f in ("orig", "pruned", "finetuned")}

def gemm_weights(path):
    m = onnx.load(path)
    onnx.checker.check_model(m)
    init = {t.name: numpy_helper.to_array(t) for t in m.graph.initializer}
    return {n.input[1]: init[n.input[1]] for n in m.graph.node if n.op_type == "Gemm"}
p, f = gemm_weights(f"{work}/pruned.onnx"), gemm_weights(f"{work}/finetuned.onnx")
if sorted(p) != sorted(f):
    bad(f"weights differ: {sorted(p)} vs {sorted(f)}")
total = zeros_p = zeros_f = kept_zero = changed = 0
for name in p:
    wp, wf = p[name], f[name]
    if wp.shape != wf.shape:
        bad(f"{name}: shape {wp.shape} -> {wf.shape}")
        continue
    mask = wp == 0
    total += wp.size
    zeros_p += int(mask.sum())
    zeros_f += int((wf == 0).sum())
    # exactly zero: the float32 bit pattern (a -0.0 would be zero too, but say so)
    bits = wf.view(np.uint32)[mask]
    kept_zero += int((bits == 0).sum())
    if not np.all(wf[mask] == 0):
        bad(f"{name}: {int((wf[mask] != 0).sum())} pruned weights are non-zero after finetune")
    changed += int((wf[~mask] != wp[~mask]).sum())
print(f"weights {total}: pruned zeros {zeros_p} ({zeros_p / total:.4f}), zeros after finetune {zeros_f}, "
      f"pruned weights still +0.0 bit for bit {kept_zero}/{zeros_p}, kept weights changed by training {changed}")
if zeros_p / total < 0.95 - 1e-6:
    bad(f"pruned sparsity {zeros_p / total:.4f} < 0.95")
if changed < (total - zeros_p) // 2:
    bad("finetune barely changed the kept weights")
job = json.load(open(f"{work}/finetuned.job.json"))
s0, s1 = job["steps"][0]["metrics"], job["steps"][1]["metrics"]
hist = s1.get("history", [])
if len(hist) != 4 or s1.get("samples") != 60000:
    bad(f"finetune metrics: {len(hist)} history rows, samples {s1.get('samples')}")
if s1.get("masked") != zeros_p:
    bad(f"finetune masked {s1.get('masked')} weights, pruning zeroed {zeros_p}")
nncd_pruned = s0.get("eval", {}).get("accuracy")
print(f"ORT top-1 on the 10,000 test digits: unpruned {acc['orig']:.4f}, pruned 95% {acc['pruned']:.4f} "
      f"(nncd's eval of step 0: {nncd_pruned}), fine-tuned {acc['finetuned']:.4f} "
      f"({(acc['finetuned'] - acc['orig']) * 100:+.2f} points vs unpruned, need >= -1)")
print("finetune epochs:", [{k: (round(v, 4) if isinstance(v, float) else v) for k, v in r.items()} for r in hist])
if acc["finetuned"] < acc["orig"] - 0.01:
    bad(f"fine-tuned accuracy {acc['finetuned']:.4f} more than 1 point below {acc['orig']:.4f}")
sys.exit(0 if ok else 1)
PY
stop_daemon
log "PASS e2e_train_prune95_finetune_recovers"
