#!/bin/sh
# bench_quant_float: ONNX Runtime latency of the fp16, bf16, dynamic and kmeans
# artifacts of the MNIST fixtures against their fp32 model (issue 5, acceptance
# point 6, these four schemes), so that a quantized model slower than fp32 shows.
#
#   bench/bench_quant_float.sh NNCD [ROUNDS]
#
# NNCD is a built `nncd` (offline `nncd compress`). Each artifact and the fp32
# model are measured by bench/ort_bench.js (1 intra-op thread, ORT's default
# graph optimisation 'all': what users deploy) in ROUNDS (default 5)
# alternating rounds (default 5); the median of the rounds is printed:
#   b64_us  microseconds per batch of 64 (64e6 / tput_pre_ips: session.run alone)
#   b1_us   median batch-1 session.run latency
#   ratio   artifact / fp32 (> 1: the quantized model is slower)
# Machines are shared and noisy: read the ratios, not the times.
set -eu
NNCD=${1:?usage: bench_quant_float.sh NNCD [ROUNDS]}
ROUNDS=${2:-5}
ROOT=$(cd "$(dirname "$0")/.." && pwd)
MODULES="$ROOT/tests/oracle/node_modules"
WORK=$(mktemp -d "${TMPDIR:-/tmp}/nncd-bench-qfloat.XXXXXX")
trap 'rm -rf "$WORK"' EXIT

schemes="fp16 bf16 dynamic kmeans4 p90_kmeans5"
spec_of() {
	case $1 in
	fp16) echo '{"steps":[{"op":"quantize","scheme":"fp16"}]}' ;;
	bf16) echo '{"steps":[{"op":"quantize","scheme":"bf16"}]}' ;;
	dynamic) echo '{"steps":[{"op":"quantize","scheme":"dynamic"}]}' ;;
	kmeans4) echo '{"steps":[{"op":"quantize","scheme":"kmeans","bits":4}]}' ;;
	p90_kmeans5) echo '{"steps":[{"op":"prune","sparsity":0.9},{"op":"quantize","scheme":"kmeans","bits":5}]}' ;;
	esac
}

median() { sort -g | awk '{a[NR]=$1} END {print a[int((NR+1)/2)]}'; }

measure() { # model -> "b64_us b1_us" of one round
	node "$ROOT/bench/ort_bench.js" "$MODULES" "$1" 1 --batch 64 --passes 1 --lat-runs 1000 |
		/usr/bin/python3 -c 'import json,sys; r=json.load(sys.stdin); print(64e6/r["tput_pre_ips"], r["lat_us"])'
}

printf '%-10s %-12s %10s %10s %8s %8s %9s\n' model artifact b64_us b1_us b64_x b1_x bytes
for fx in lenet300 cnn; do
	cp "$ROOT/tests/fixtures/$fx.onnx" "$WORK/${fx}_fp32.onnx"
	for s in $schemes; do
		spec_of "$s" >"$WORK/spec.json"
		"$NNCD" compress "$ROOT/tests/fixtures/$fx.onnx" --spec "$WORK/spec.json" \
			-o "$WORK/${fx}_$s.onnx" >/dev/null 2>&1
	done
	for a in fp32 $schemes; do : >"$WORK/$a.b64"; : >"$WORK/$a.b1"; done
	r=0
	while [ $r -lt "$ROUNDS" ]; do
		for a in fp32 $schemes; do
			set -- $(measure "$WORK/${fx}_$a.onnx")
			echo "$1" >>"$WORK/$a.b64"
			echo "$2" >>"$WORK/$a.b1"
		done
		r=$((r + 1))
	done
	f64=$(median <"$WORK/fp32.b64")
	f1=$(median <"$WORK/fp32.b1")
	for a in fp32 $schemes; do
		m64=$(median <"$WORK/$a.b64")
		m1=$(median <"$WORK/$a.b1")
		printf '%-10s %-12s %10.1f %10.1f %8.2f %8.2f %9d\n' "$fx" "$a" "$m64" "$m1" \
			"$(echo "$m64 / $f64" | bc -l)" "$(echo "$m1 / $f1" | bc -l)" \
			"$(stat -c %s "$WORK/${fx}_$a.onnx")"
	done
done
