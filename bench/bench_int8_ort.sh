#!/usr/bin/env bash
# bench_int8_ort: ONNX Runtime latency of nncd's int8 weight-only artifacts against the
# fp32 models (issue 5, acceptance 6), so a slower quantized model is visible. Models:
# LeNet-300-100 and the CNN fixture, each as fp32, int8 per_channel (symmetric, the default),
# int8 per_tensor and int8 per_channel asymmetric (uint8 + zero point), made with
# `nncd compress`. Each round runs bench/ort_bench.js (one thread, ORT's default optimisation
# level 'all', as users deploy) on every model of a fixture in turn, rotating the order;
# figures are medians over the rounds, ratios are to the fp32 model in the same rounds.
#   batch 64: microseconds per batch of 64 (64 / images per second, tensors pre-created)
#   batch 1:  median session.run microseconds of one image
# usage: bench/bench_int8_ort.sh NNCD [ROUNDS (default 7)]
set -euo pipefail
NNCD=${1:?usage: bench_int8_ort.sh NNCD [ROUNDS]}
ROUNDS=${2:-7}
ROOT=$(cd "$(dirname "$0")/.." && pwd)
MODULES="$ROOT/tests/oracle/node_modules"
[[ -d "$MODULES/onnxruntime-node" ]] || { echo "bench_int8_ort: no $MODULES/onnxruntime-node" >&2; exit 1; }
WORK=$(mktemp -d)
trap 'rm -rf "$WORK"' EXIT
declare -A SPECS=(
	[int8_channel]='{"op":"quantize","scheme":"int8"}'
	[int8_tensor]='{"op":"quantize","scheme":"int8","granularity":"per_tensor"}'
	[int8_asym]='{"op":"quantize","scheme":"int8","symmetric":false}'
)
variants=(fp32 int8_channel int8_tensor int8_asym)
for fx in lenet300 cnn; do
	cp "$ROOT/tests/fixtures/$fx.onnx" "$WORK/${fx}_fp32.onnx"
	for v in int8_channel int8_tensor int8_asym; do
		echo "{\"steps\":[${SPECS[$v]}]}" >"$WORK/$v.json"
		"$NNCD" compress "$WORK/${fx}_fp32.onnx" --spec "$WORK/$v.json" -o "$WORK/${fx}_$v.onnx" \
			>/dev/null 2>"$WORK/err" || { cat "$WORK/err" >&2; exit 1; }
	done
	for ((r = 0; r < ROUNDS; r++)); do
		for ((i = 0; i < ${#variants[@]}; i++)); do
			m=${fx}_${variants[$(((i + r) % ${#variants[@]}))]}
			node "$ROOT/bench/ort_bench.js" "$MODULES" "$WORK/$m.onnx" 1 --batch 64 --passes 1 \
				--lat-runs 2000 | sed "s/^/$m /" >>"$WORK/results"
		done
	done
done
/usr/bin/python3 - "$WORK/results" "$WORK" <<'PY'
import json, os, statistics, sys
rows = {}
for line in open(sys.argv[1]):
    name, js = line.split(" ", 1)
    rows.setdefault(name, []).append(json.loads(js))
def med(name, key):
    return statistics.median(r[key] for r in rows[name])
print("ORT 1.30 (1 thread, default optimisation 'all'), int8 weight-only vs fp32, medians of "
      "%d rounds" % len(rows["lenet300_fp32"]))
print("%-22s %10s %14s %8s %14s %8s" % ("model", "bytes", "b64 us/batch", "ratio", "b1 us", "ratio"))
for fx in ("lenet300", "cnn"):
    f64 = 64e6 / med(fx + "_fp32", "tput_pre_ips"); f1 = med(fx + "_fp32", "lat_us")
    for v in ("fp32", "int8_channel", "int8_tensor", "int8_asym"):
        name = fx + "_" + v
        b64 = 64e6 / med(name, "tput_pre_ips"); b1 = med(name, "lat_us")
        size = os.path.getsize(os.path.join(sys.argv[2], name + ".onnx"))
        print("%-22s %10d %14.1f %8.2f %14.1f %8.2f%s" % (name, size, b64, b64 / f64, b1, b1 / f1,
              "  SLOWER than fp32" if b64 > f64 * 1.05 or b1 > f1 * 1.05 else ""))
PY
