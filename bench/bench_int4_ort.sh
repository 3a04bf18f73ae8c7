#!/usr/bin/env bash
# bench_int4_ort: ONNX Runtime latency of nncd's int4 artifacts of LeNet-300-100
# against the fp32 model (issue 5, acceptance 6), so a slower quantized model is
# visible. Artifacts: `nncd compress` with int4 block 32 in both formats (opset-21
# DequantizeLinear, com.microsoft MatMulNBits). Each round runs bench/ort_bench.js
# (one thread, ORT's default optimisation level 'all', as users deploy) on every model
# in turn, rotating the order; figures are medians over the rounds, and ratios are to
# the fp32 model measured in the same rounds.
#   batch 64: microseconds per batch of 64 (64 / images per second, tensors pre-created)
#   batch 1:  median session.run microseconds of one image
# usage: bench/bench_int4_ort.sh NNCD [ROUNDS (default 7)]
set -euo pipefail
NNCD=${1:?usage: bench_int4_ort.sh NNCD [ROUNDS]}
ROUNDS=${2:-7}
ROOT=$(cd "$(dirname "$0")/.." && pwd)
MODULES="$ROOT/tests/oracle/node_modules"
[[ -d "$MODULES/onnxruntime-node" ]] || { echo "bench_int4_ort: no $MODULES/onnxruntime-node" >&2; exit 1; }
WORK=$(mktemp -d)
trap 'rm -rf "$WORK"' EXIT
cp "$ROOT/tests/fixtures/lenet300.onnx" "$WORK/fp32.onnx"
for f in onnx matmulnbits; do
	echo "{\"steps\":[{\"op\":\"quantize\",\"scheme\":\"int4\",\"block_size\":32,\"format\":\"$f\"}]}" >"$WORK/$f.json"
	"$NNCD" compress "$WORK/fp32.onnx" --spec "$WORK/$f.json" -o "$WORK/int4_$f.onnx" >/dev/null 2>"$WORK/err" ||
		{ cat "$WORK/err" >&2; exit 1; }
done
models=(fp32 int4_onnx int4_matmulnbits)
for ((r = 0; r < ROUNDS; r++)); do
	for ((i = 0; i < ${#models[@]}; i++)); do
		m=${models[$(((i + r) % ${#models[@]}))]}
		node "$ROOT/bench/ort_bench.js" "$MODULES" "$WORK/$m.onnx" 1 --batch 64 --passes 1 --lat-runs 2000 \
			| sed "s/^/$m /" >>"$WORK/results"
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
print("ORT 1.30 (1 thread, default optimisation 'all'), lenet300 int4 block 32 vs fp32, "
      "medians of %d rounds" % len(rows["fp32"]))
print("%-18s %10s %14s %8s %14s %8s" % ("model", "bytes", "b64 us/batch", "ratio", "b1 us", "ratio"))
f64 = 64e6 / med("fp32", "tput_pre_ips"); f1 = med("fp32", "lat_us")
for name in ("fp32", "int4_onnx", "int4_matmulnbits"):
    b64 = 64e6 / med(name, "tput_pre_ips"); b1 = med(name, "lat_us")
    size = os.path.getsize(os.path.join(sys.argv[2], name + ".onnx"))
    print("%-18s %10d %14.1f %8.2f %14.1f %8.2f%s" % (name, size, b64, b64 / f64, b1, b1 / f1,
          "  SLOWER than fp32" if b64 > f64 * 1.05 or b1 > f1 * 1.05 else ""))
PY
