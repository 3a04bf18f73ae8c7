#!/usr/bin/env node
// Loads models that structured/dead pruning wrote into ONNX Runtime, runs each
// on the input our executor ran and compares ORT's first output with ours.
// Used by test_structured (case onnxruntime_agrees).
//
//   node structured_ort_check.js NODE_MODULES_DIR MODEL.onnx:INPUT.f32:OURS.f32:DxDxD ...
//
// INPUT.f32 / OURS.f32 are raw little-endian float32 arrays. Tolerance:
// max |ours - ort| <= 1e-4 * max(1, max |ort|). Prints one line per model.
// Exit status: 0 all agree, 1 a mismatch or a load failure, 77 ORT missing.
'use strict';

const fs = require('fs');
const path = require('path');

const modules = process.argv[2];
let ort;
try {
  ort = require(path.resolve(modules, 'onnxruntime-node'));
} catch (e) {
  process.stderr.write('onnxruntime-node not found under ' + modules + ': ' + e.message + '\n');
  process.exit(77);
}

function f32(file) {
  const b = fs.readFileSync(file);
  return new Float32Array(b.buffer.slice(b.byteOffset, b.byteOffset + b.length));
}

async function check(spec) {
  const [model, inFile, oursFile, dims] = spec.split(':');
  const shape = dims.split('x').map(Number);
  const sess = await ort.InferenceSession.create(model, { graphOptimizationLevel: 'basic' });
  const feeds = {};
  feeds[sess.inputNames[0]] = new ort.Tensor('float32', f32(inFile), shape);
  const res = await sess.run(feeds);
  const got = res[sess.outputNames[0]].data;
  const ours = f32(oursFile);
  if (got.length !== ours.length)
    throw new Error(`${model}: ORT gives ${got.length} values, ours ${ours.length}`);
  let maxDiff = 0, maxRef = 0;
  for (let i = 0; i < got.length; i++) {
    maxDiff = Math.max(maxDiff, Math.abs(got[i] - ours[i]));
    maxRef = Math.max(maxRef, Math.abs(got[i]));
  }
  const ok = maxDiff <= 1e-4 * Math.max(1, maxRef);
  console.log(`${path.basename(model)}: ORT ran it, max |ours - ort| = ${maxDiff.toExponential(2)} ` +
              `(max |ort| ${maxRef.toFixed(3)}) ${ok ? 'ok' : 'MISMATCH'}`);
  return ok;
}

(async () => {
  let ok = true;
  for (const spec of process.argv.slice(3)) {
    try {
      ok = (await check(spec)) && ok;
    } catch (e) {
      console.log('FAIL ' + spec + ': ' + e.message);
      ok = false;
    }
  }
  process.exit(ok ? 0 : 1);
})();
