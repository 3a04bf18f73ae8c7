#!/usr/bin/env bash
# e2e_train_matches_pytorch (issue 6, acceptance 5), through the API.
# nncd and PyTorch (Debian python3-torch, one thread) train the same 784-100-10 MLP from the
# SAME initial weights with the same recipe (acceptance 2's: SGD Nesterov momentum 0.9 lr 0.05,
# cosine per epoch, batch 64, 10 epochs, on the first 2,000 MNIST training digits), once
# distilled from LeNet-300-100 (T 8, alpha 0.9) and once on hard labels (alpha 0):
#  - the initial weights: a distill job with "epochs": 0 returns nncd's initialised student
#    (seed 7); its weights must lie within nn.Linear's U(-1/sqrt(fan_in), 1/sqrt(fan_in));
#  - the batch order: tests/e2e/train_torch_mlp.py makes every epoch's permutation with
#    engine/rng.h's generator and the loop's shuffle, so both see the same batches;
#  - ONNX Runtime measures nncd's artifacts and PyTorch's trained weights (written into a copy
#    of the initial model) on the 10,000 test digits: within 1 point of each other, both runs.
# usage: train_matches_pytorch.sh NNCD SOURCE_ROOT ORACLE_DIR
set -euo pipefail
# Training jobs take tens of seconds (minutes under ASan): a longer poll limit than lib.sh's.
E2E_JOB_TIMEOUT=${E2E_JOB_TIMEOUT:-600}
source "$(dirname "$0")/lib.sh"
source "$(dirname "$0")/train_lib.sh"
train_init "$@"
"$E2E_PY" -c 'import torch' 2>/dev/null || fail "$E2E_PY cannot import torch (apt-get install python3-torch)"

mnist_npz "$WORK/train2k.npz" train 2000
start_daemon
upload "$SRC/tests/fixtures/lenet300.onnx" lenet300
LENET=$MODEL_ID
upload_dataset "$WORK/train2k.npz" mnist-train-2000 2000
DS=$DATASET_ID

recipe() { # recipe EPOCHS ALPHA
	printf '{"model":"%s","dataset":%s,"steps":[{"op":"distill","student":{"hidden":[100]},"epochs":%s,"batch_size":64,"temperature":8,"alpha":%s,"optimizer":{"name":"sgd","lr":0.05,"momentum":0.9,"nesterov":true},"schedule":{"name":"cosine"},"seed":7}]}' \
		"$LENET" "$(data_ref "$DS")" "$1" "$2"
}
run_job init "$(recipe 0 0.9)"
run_job nncd_kd "$(recipe 10 0.9)"
run_job nncd_hard "$(recipe 10 0)"

"$E2E_PY" - "$WORK/init.onnx" <<'PY' || fail "initial student check failed"
import sys
import numpy as np
import onnx
from onnx import numpy_helper
m = onnx.load(sys.argv[1])
onnx.checker.check_model(m)
w = {t.name: numpy_helper.to_array(t) for t in m.graph.initializer}
gemms = [n for n in m.graph.node if n.op_type == "Gemm"]
if len(gemms) != 2:
    sys.exit(f"{len(gemms)} Gemm nodes in the initial student, expected 2")
for g in gemms:
    W, b = w[g.input[1]], w[g.input[2]]
    bound = 1 / np.sqrt(W.shape[1])
    if np.abs(W).max() > bound or np.abs(b).max() > bound or W.std() < bound / 2:
        sys.exit(f"{g.input[1]}: |w| max {np.abs(W).max()}, std {W.std()}: not U(-{bound}, {bound})")
print("initial student:", [(g.input[1], list(w[g.input[1]].shape)) for g in gemms])
PY

for alpha in 0.9 0; do
	label=torch_kd
	[[ $alpha == 0 ]] && label=torch_hard
	"$E2E_PY" "$E2E_HERE/train_torch_mlp.py" --init "$WORK/init.onnx" \
		--teacher "$SRC/tests/fixtures/lenet300.onnx" --mnist "$MNIST_DIR" --train 2000 \
		--epochs 10 --batch 64 --lr 0.05 --momentum 0.9 --nesterov --temperature 8 \
		--alpha "$alpha" --seed 7 --threads 1 --out "$WORK/$label.onnx" >"$WORK/$label.json" ||
		fail "PyTorch reference (alpha $alpha) failed"
done
for f in init nncd_kd nncd_hard torch_kd torch_hard; do
	ort_acc "$f" >/dev/null
done

"$E2E_PY" - "$WORK" <<'PY' || fail "nncd vs PyTorch check failed"
import json, sys
import numpy as np
import onnx
from onnx import numpy_helper
work = sys.argv[1]
def weights(f):
    return {t.name: numpy_helper.to_array(t) for t in onnx.load(f"{work}/{f}.onnx").graph.initializer}
acc = {f: json.load(open(f"{work}/{f}.acc.json"))["accuracy"]
       for f in ("init", "nncd_kd", "nncd_hard", "torch_kd", "torch_hard")}
ok = True
print(f"ORT top-1 on the 10,000 test digits; untrained student {acc['init']:.4f}")
for kind, name in (("kd", "distilled (T 8, alpha 0.9)"), ("hard", "hard labels (alpha 0)")):
    n, t = acc[f"nncd_{kind}"], acc[f"torch_{kind}"]
    job = json.load(open(f"{work}/nncd_{kind}.job.json"))
    nl = [round(r["loss"], 4) for r in job["steps"][0]["metrics"]["history"]]
    tl = [round(x, 4) for x in json.load(open(f"{work}/torch_{kind}.json"))["loss"]]
    wn, wt = weights(f"nncd_{kind}"), weights(f"torch_{kind}")
    dmax = max(float(np.abs(wn[k] - wt[k]).max()) for k in wt)
    wmax = max(float(np.abs(wt[k]).max()) for k in wt)
    print(f"  {name}: nncd {n:.4f}, PyTorch {t:.4f}, difference {(n - t) * 100:+.2f} points (need |d| <= 1); "
          f"trained weights differ by at most {dmax:.3g} (largest |w| {wmax:.3g})")
    print(f"    loss by epoch: nncd {nl}")
    print(f"                   torch {tl}")
    if abs(n - t) > 0.01:
        print(f"FAIL: {name}: nncd and PyTorch differ by {abs(n - t) * 100:.2f} points")
        ok = False
sys.exit(0 if ok else 1)
PY
stop_daemon
log "PASS e2e_train_matches_pytorch"
