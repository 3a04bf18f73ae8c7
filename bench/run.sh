#!/bin/sh
# Builds nncd in release mode and runs the benchmarks of issue 2 (acceptance
# point 7): quantize/prune throughput against the streaming limit, artifact
# download against a plain sendfile server; and of issue 3 (acceptance point
# 5): the executor against ONNX Runtime (needs node and tests/oracle/node_modules;
# skipped with a note if they are missing). Prints each bench's table and a
# short summary. Ratios below target do not fail the script; a failed
# correctness check or a build error does.
#
# usage: bench/run.sh [BUILD_DIR]      (default: build-bench in the repository)
# env:   BENCH_REPS=N  repetitions per measurement (default 7, at least 5)
#        TMPDIR        where bench_download puts its ~1.6 GB of temporary data
#        NODE          node binary for bench_exec's ONNX Runtime side (default: node)
set -eu

root=$(cd "$(dirname "$0")/.." && pwd)
build=${1:-$root/build-bench}
reps=${BENCH_REPS:-7}

if [ -f "$build/build.ninja" ]; then
	meson configure "$build" -Dbuildtype=release >/dev/null
else
	meson setup "$build" "$root" -Dbuildtype=release >/dev/null
fi
ninja -C "$build" bench/bench_compress bench/bench_download bench/bench_exec daemon/nncd >/dev/null

out_c=$(mktemp)
out_d=$(mktemp)
out_e=$(mktemp)
trap 'rm -f "$out_c" "$out_d" "$out_e"' EXIT
status=0

echo "== bench_compress (quantize / prune vs the streaming limit) =="
"$build/bench/bench_compress" --reps "$reps" >"$out_c" || status=1
cat "$out_c"
echo
echo "== bench_download (GET /v1/artifacts/{id} vs a plain sendfile server) =="
"$build/bench/bench_download" --reps "$reps" --nncd "$build/daemon/nncd" >"$out_d" || status=1
cat "$out_d"
echo
echo "== bench_exec (executor vs ONNX Runtime, MNIST MLP and CNN; PyTorch exports for information) =="
node=${NODE:-node}
if command -v "$node" >/dev/null 2>&1 && [ -d "$root/tests/oracle/node_modules/onnxruntime-node" ]; then
	"$build/bench/bench_exec" --reps "$reps" --node "$node" >"$out_e" || status=1
	cat "$out_e"
else
	echo "skipped: needs node and tests/oracle/node_modules (cd tests/oracle && ONNXRUNTIME_NODE_INSTALL=skip npm ci)"
fi
echo
echo "== summary ($(uname -n), $(nproc) CPUs, load $(cut -d' ' -f1-3 /proc/loadavg)) =="
grep '^summary' "$out_c" "$out_d" "$out_e" | sed 's/^[^:]*:summary: /  /' || true
[ "$status" -eq 0 ] || echo "run.sh: a benchmark reported an error (see above)" >&2
exit "$status"
