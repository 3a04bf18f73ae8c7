#!/usr/bin/env node
// Runs nncd's quantized artifacts in ONNX Runtime on the inputs nncd's executor
// ran and compares ORT's first output with the executor's (test_quant_float,
// case ort_matches_executor).
//
//   node quant_float_ort.js NODE_MODULES_DIR MODEL.onnx:INPUT.f32:EXPECTED.f32:DxDxD[:MODES] ...
//
// INPUT/EXPECTED are raw little-endian float32. Sessions: graph optimisation
// 'basic' and qdq_matmulnbits_accuracy_level 1 (exact numerics, see
// /work/shared/perf-notes.md). Tolerance: max |ort - nncd| <= 1e-4 * max(1, max |nncd|).
// MODES, comma-separated:
//   exact     every element must be the same float (Object.is: -0, Inf, NaN too);
//   rel=X     tolerance X * max(1, max |nncd|) instead of 1e-4;
//   f16io     the model's input and output are float16: INPUT holds float16 values
//             (fed as float16, exactly), and each output element may differ from nncd's
//             by one float16 step at its magnitude (a float32 difference of ~1e-6 in
//             the last layer can move the final rounding to the neighbouring float16);
//   argmax=W  rows of W outputs must also agree on their argmax (every row).
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

// float32 -> float16 bits, round to nearest even (inputs are float16 values: exact).
const f32 = new Float32Array(1), u32 = new Uint32Array(f32.buffer);
function toHalf(v) {
  f32[0] = v;
  const b = u32[0], s = (b >>> 16) & 0x8000;
  let a = b & 0x7fffffff;
  if (a > 0x7f800000) return s | 0x7e00;
  if (a >= 0x477ff000) return s | 0x7c00;
  if (a < 0x38800000) {
    u32[0] = a;
    f32[0] = f32[0] + 0.5;
    return s | (u32[0] - 0x3f000000);
  }
  a = (a + 0xc8000fff + ((a >>> 13) & 1)) >>> 0;
  return s | (a >>> 13);
}
function fromHalf(h) {
  const s = h & 0x8000 ? -1 : 1, e = (h >> 10) & 31, m = h & 1023;
  if (e === 31) return m ? NaN : s * Infinity;
  if (e === 0) return s * m * 2 ** -24;
  return s * (1 + m / 1024) * 2 ** (e - 15);
}
// One float16 step at |v|'s magnitude (the spacing of float16 values there).
function halfUlp(v) {
  const a = Math.abs(v);
  if (a < 2 ** -14) return 2 ** -24;
  return 2 ** (Math.floor(Math.log2(a)) - 10);
}

async function main() {
  let failed = false;
  for (const arg of process.argv.slice(3)) {
    const [model, inFile, expFile, dims, modeStr] = arg.split(':');
    const modes = (modeStr || '').split(',').filter((m) => m);
    const mode = modes.includes('exact') ? 'exact' : '';
    const f16io = modes.includes('f16io');
    const relMode = modes.find((m) => m.startsWith('rel='));
    const rel = relMode ? Number(relMode.slice(4)) : 1e-4;
    const amMode = modes.find((m) => m.startsWith('argmax='));
    const width = amMode ? Number(amMode.slice(7)) : 0;
    const shape = dims.split('x').map(Number);
    const sess = await ort.InferenceSession.create(model, {
      graphOptimizationLevel: 'basic',
      extra: { session: { qdq_matmulnbits_accuracy_level: '1' } },
    });
    const feeds = {};
    feeds[sess.inputNames[0]] = f16io
      ? new ort.Tensor('float16', Uint16Array.from(floats(inFile), toHalf), shape)
      : new ort.Tensor('float32', floats(inFile), shape);
    const res = (await sess.run(feeds))[sess.outputNames[0]];
    let out = res.data;
    if (res.type === 'float16') {
      const bits = out instanceof Uint16Array ? out : new Uint16Array(out.buffer, out.byteOffset, out.length);
      out = Float64Array.from(bits, fromHalf);
    }
    const want = floats(expFile);
    let argmaxBad = 0;
    if (width > 0) {
      for (let r = 0; r * width < want.length; r++) {
        let a = 0, b = 0;
        for (let j = 1; j < width; j++) {
          if (want[r * width + j] > want[r * width + a]) a = j;
          if (out[r * width + j] > out[r * width + b]) b = j;
        }
        if (a !== b) argmaxBad++;
      }
    }
    const amText = width > 0 ? `, argmax differs on ${argmaxBad} of ${want.length / width} rows` : '';
    if (argmaxBad) failed = true;
    if (f16io) {
      let maxDiff = 0, steps = 0, bad = 0;
      for (let i = 0; i < want.length; i++) {
        const d = Math.abs(want[i] - out[i]);
        maxDiff = Math.max(maxDiff, d);
        if (d > 0) steps++;
        if (!(d <= halfUlp(want[i]))) bad++;
      }
      const ok = out.length === want.length && bad === 0;
      process.stdout.write(`${path.basename(model)}: ORT vs nncd (float16 io) max|diff| ` +
        `${maxDiff.toExponential(3)}, ${steps} of ${want.length} differ (by one float16 step), ` +
        `${bad} beyond${amText} ${ok && !argmaxBad ? 'ok' : 'FAIL'}\n`);
      if (!ok) failed = true;
      continue;
    }
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
    const tol = rel * Math.max(1, maxRef);
    const ok = out.length === want.length && maxDiff <= tol;
    process.stdout.write(`${path.basename(model)}: ORT vs nncd max|diff| ${maxDiff.toExponential(3)}` +
      ` (max|out| ${maxRef.toFixed(3)}, tolerance ${tol.toExponential(3)}${amText}) ` +
      `${ok && !argmaxBad ? 'ok' : 'FAIL'}\n`);
    if (!ok) failed = true;
  }
  process.exit(failed ? 1 : 0);
}

main().catch((e) => {
  process.stderr.write('quant_float_ort: ' + (e && e.stack ? e.stack : e) + '\n');
  process.exit(1);
});
