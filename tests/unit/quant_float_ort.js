#!/usr/bin/env node
// Runs nncd's quantized artifacts in ONNX Runtime on the inputs nncd's executor
// ran and compares ORT's first output with the executor's (test_quant_float,
// case ort_matches_executor).
//
//   node quant_float_ort.js NODE_MODULES_DIR MODEL.onnx:INPUT.f32:EXPECTED.f32:DxDxD[:exact] ...
//
// INPUT/EXPECTED are raw little-endian float32. Sessions: graph optimisation
// 'basic' and qdq_matmulnbits_accuracy_level 1 (exact numerics, see
// /work/shared/perf-notes.md). Tolerance: max |ort - nncd| <= 1e-4 * max(1, max |nncd|);
// with ':exact' every element must be the same float (Object.is: -0, Inf, NaN too).
// Exit status: 0 all match, 1 a mismatch or a load failure, 77 ORT missing.
'use strict';

const fs = require('fs');
const path = require('path');

let ort;
try {
  ort = require(path.resolve(process.argv[2], 'onnxruntime-node'));
} catch (e) {
  process.stderr.write('onnxruntime-node not found: ' + e.message + '\n');
  process.exit(77);
}

function floats(file) {
  const b = fs.readFileSync(file);
  return new Float32Array(b.buffer, b.byteOffset, b.length / 4);
}

async function main() {
  let failed = false;
  for (const arg of process.argv.slice(3)) {
    const [model, inFile, expFile, dims, mode] = arg.split(':');
    const shape = dims.split('x').map(Number);
    const sess = await ort.InferenceSession.create(model, {
      graphOptimizationLevel: 'basic',
      extra: { session: { qdq_matmulnbits_accuracy_level: '1' } },
    });
    const feeds = {};
    feeds[sess.inputNames[0]] = new ort.Tensor('float32', floats(inFile), shape);
    const out = (await sess.run(feeds))[sess.outputNames[0]].data;
    const want = floats(expFile);
    if (mode === 'exact') {
      let bad = out.length === want.length ? 0 : 1, first = -1;
      for (let i = 0; i < want.length && i < out.length; i++) {
        if (!Object.is(want[i], out[i]) && !(Number.isNaN(want[i]) && Number.isNaN(out[i]))) {
          if (first < 0) first = i;
          bad++;
        }
      }
      process.stdout.write(`${path.basename(model)}: ${want.length} values, ${bad} differ` +
        (first >= 0 ? ` (first: x[${first}] ORT ${out[first]} nncd ${want[first]})` : '') +
        ` ${bad ? 'FAIL' : 'ok'}\n`);
      if (bad) failed = true;
      continue;
    }
    let maxRef = 0, maxDiff = 0;
    for (let i = 0; i < want.length; i++) {
      maxRef = Math.max(maxRef, Math.abs(want[i]));
      maxDiff = Math.max(maxDiff, Math.abs(want[i] - out[i]));
    }
    const tol = 1e-4 * Math.max(1, maxRef);
    const ok = out.length === want.length && maxDiff <= tol;
    process.stdout.write(`${path.basename(model)}: ORT vs nncd max|diff| ${maxDiff.toExponential(3)}` +
      ` (max|out| ${maxRef.toFixed(3)}, tolerance ${tol.toExponential(3)}) ${ok ? 'ok' : 'FAIL'}\n`);
    if (!ok) failed = true;
  }
  process.exit(failed ? 1 : 0);
}

main().catch((e) => {
  process.stderr.write('quant_float_ort: ' + (e && e.stack ? e.stack : e) + '\n');
  process.exit(1);
});
