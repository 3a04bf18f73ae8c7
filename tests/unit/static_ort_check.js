#!/usr/bin/env node
// Runs static QDQ artifacts in ONNX Runtime and compares them with nncd's
// executor, QuantizeLinear by QuantizeLinear. Used by test_quant_static
// (case onnxruntime_agrees).
//
//   node static_ort_check.js NODE_MODULES MODEL.onnx:INPUT.f32:DxD:OURS.bin ...
//
// MODEL has as graph outputs its first output followed by the output of every
// QuantizeLinear (uint8 or int8); OURS.bin holds our executor's values of the
// same outputs, concatenated in that order (float32, then one byte each).
// ORT runs with graph optimisation 'basic' (no QDQ fusion: the float
// simulation the QDQ format defines). A float computed in a different order
// may fall on the other side of a rounding boundary before a QuantizeLinear:
// the check allows such flips in at most 0.5% of the quantized values, by at
// most 2 (a flip of 1 in a Gemm/Conv output shows as 2 in the Relu after it,
// whose range [0, max] has about half the scale), and requires the first output of every sample whose quantized
// values all agree to match within 1e-4 * max(1, max |ort|). With ORT's
// default options (QDQ fused into QLinear/QGemm integer kernels) the
// difference is printed, not checked.
// Exit status: 0 agree, 1 mismatch or load failure, 77 ORT missing.
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

function f32(buf) {
  return new Float32Array(buf.buffer.slice(buf.byteOffset, buf.byteOffset + buf.length));
}

async function check(spec) {
  const [model, inFile, dims, oursFile] = spec.split(':');
  const shape = dims.split('x').map(Number);
  const batch = shape[0];
  const input = f32(fs.readFileSync(inFile));
  const ours = fs.readFileSync(oursFile);
  const sess = await ort.InferenceSession.create(model, { graphOptimizationLevel: 'basic' });
  const feeds = {};
  feeds[sess.inputNames[0]] = new ort.Tensor('float32', input, shape);
  const res = await sess.run(feeds);
  const y = res[sess.outputNames[0]].data;
  const oursY = f32(ours.subarray(0, y.length * 4));
  let at = y.length * 4;
  let qTotal = 0, qDiff = 0, qWorst = 0;
  const sampleFlipped = new Array(batch).fill(false);
  for (let k = 1; k < sess.outputNames.length; k++) {
    const q = res[sess.outputNames[k]].data;
    const per = q.length / batch;
    for (let i = 0; i < q.length; i++) {
      const o = q instanceof Int8Array ? (ours[at + i] << 24) >> 24 : ours[at + i];
      const d = Math.abs(o - q[i]);
      if (d) {
        qDiff++;
        sampleFlipped[Math.floor(i / per)] = true;
        qWorst = Math.max(qWorst, d);
      }
    }
    qTotal += q.length;
    at += q.length;
  }
  if (at !== ours.length) throw new Error(`${model}: ${ours.length} bytes of ours, ORT gives ${at}`);
  let maxAbs = 0;
  for (const v of y) maxAbs = Math.max(maxAbs, Math.abs(v));
  const tol = 1e-4 * Math.max(1, maxAbs);
  const per = y.length / batch;
  let worstClean = 0, worstAll = 0, clean = 0;
  for (let s = 0; s < batch; s++) {
    let w = 0;
    for (let i = s * per; i < (s + 1) * per; i++) w = Math.max(w, Math.abs(y[i] - oursY[i]));
    worstAll = Math.max(worstAll, w);
    if (!sampleFlipped[s]) {
      clean++;
      worstClean = Math.max(worstClean, w);
    }
  }
  const dflt = await ort.InferenceSession.create(model);
  const yd = (await dflt.run(feeds))[dflt.outputNames[0]].data;
  let maxDefault = 0;
  for (let i = 0; i < yd.length; i++) maxDefault = Math.max(maxDefault, Math.abs(yd[i] - oursY[i]));
  const ok = qWorst <= 2 && qDiff <= 0.005 * qTotal && worstClean <= tol;
  const name = path.basename(model);
  console.log(`${name}: ${qTotal} quantized values, ${qDiff} differ (by at most ${qWorst}); ` +
    `${clean}/${batch} samples with identical quantized values, max |ours - ort| there ` +
    `${worstClean.toExponential(2)} (all samples ${worstAll.toExponential(2)}); ` +
    `ORT default options: max |ours - ort| ${maxDefault.toExponential(2)} ${ok ? 'ok' : 'MISMATCH'}`);
  return ok;
}

(async () => {
  let ok = true;
  for (const spec of process.argv.slice(3)) {
    try {
      ok = (await check(spec)) && ok;
    } catch (e) {
      console.log(`${spec.split(':')[0]}: ${e.message}`);
      ok = false;
    }
  }
  process.exit(ok ? 0 : 1);
})();
