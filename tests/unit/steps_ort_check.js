#!/usr/bin/env node
// Runs pairs of ONNX models in ONNX Runtime on the same deterministic input and
// checks their first outputs agree within a tolerance. Used by test_pipeline
// (case onnxruntime_outputs_close) to check that pruned/quantized artifacts
// load and compute what the float model they came from computes.
//
//   node steps_ort_check.js NODE_MODULES_DIR REF.onnx:CAND.onnx:DxDxD ...
//
// Tolerance: max |cand - ref| <= 0.03 * max |ref| + 1e-3 (int8 weights with
// per-channel or per-tensor scales on these small layers stay well inside it).
// Sessions use qdq_matmulnbits_accuracy_level = 1 so ORT does not quantize the
// activations as well (see /work/shared/perf-notes.md).
// Exit status: 0 all close, 1 a mismatch or a load failure, 77 ORT missing.
'use strict';

const path = require('path');

const modules = process.argv[2];
let ort;
try {
  ort = require(path.resolve(modules, 'onnxruntime-node'));
} catch (e) {
  process.stderr.write('onnxruntime-node not found under ' + modules + ': ' + e.message + '\n');
  process.exit(77);
}

function input(shape) {
  const n = shape.reduce((a, b) => a * b, 1);
  const data = new Float32Array(n);
  let s = 12345;
  for (let i = 0; i < n; i++) {
    s = (s * 1103515245 + 12345) % 2147483648;
    data[i] = (s / 2147483648) * 2 - 1;
  }
  return new ort.Tensor('float32', data, shape);
}

async function run(file, shape) {
  const sess = await ort.InferenceSession.create(file, {
    extra: { session: { qdq_matmulnbits_accuracy_level: '1' } },
  });
  const feeds = {};
  feeds[sess.inputNames[0]] = input(shape);
  const out = await sess.run(feeds);
  return out[sess.outputNames[0]].data;
}

async function main() {
  let failed = false;
  for (const arg of process.argv.slice(3)) {
    const [ref, cand, dims] = arg.split(':');
    const shape = dims.split('x').map(Number);
    const a = await run(ref, shape);
    const b = await run(cand, shape);
    let maxRef = 0, maxDiff = 0;
    for (let i = 0; i < a.length; i++) {
      maxRef = Math.max(maxRef, Math.abs(a[i]));
      maxDiff = Math.max(maxDiff, Math.abs(a[i] - b[i]));
    }
    const tol = 0.03 * maxRef + 1e-3;
    const ok = a.length === b.length && maxDiff <= tol;
    process.stdout.write(`${path.basename(cand)} vs ${path.basename(ref)}: ` +
      `max|diff| ${maxDiff.toExponential(3)} (tolerance ${tol.toExponential(3)}) ` +
      `${ok ? 'ok' : 'FAIL'}\n`);
    if (!ok) failed = true;
  }
  process.exit(failed ? 1 : 0);
}

main().catch((e) => {
  process.stderr.write('steps_ort_check: ' + (e && e.stack ? e.stack : e) + '\n');
  process.exit(1);
});
