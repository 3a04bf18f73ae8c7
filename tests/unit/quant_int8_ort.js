#!/usr/bin/env node
// Runs int8 artifacts in ONNX Runtime on the inputs test_quant_int8 wrote and
// checks the first output matches nncd's executor to 1e-4 (exact numerics:
// graph optimisation 'basic' and qdq_matmulnbits_accuracy_level = 1, see
// /work/shared/perf-notes.md).
//
//   node quant_int8_ort.js NODE_MODULES MODEL:X.bin:DxD..:Y.bin ...
// Exit status: 0 all match, 1 a mismatch or load failure, 77 ORT missing.
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
  return new Float32Array(b.buffer.slice(b.byteOffset, b.byteOffset + b.length));
}
(async () => {
  let bad = 0;
  for (const arg of process.argv.slice(3)) {
    const [model, xf, shape, yf] = arg.split(':');
    try {
      const s = await ort.InferenceSession.create(model, {
        graphOptimizationLevel: 'basic',
        extra: { session: { qdq_matmulnbits_accuracy_level: '1' } },
      });
      const dims = shape.split('x').map(Number);
      const out = await s.run({ [s.inputNames[0]]: new ort.Tensor('float32', floats(xf), dims) });
      const got = out[s.outputNames[0]].data, want = floats(yf);
      let d = got.length === want.length ? 0 : Infinity;
      for (let i = 0; i < got.length && d !== Infinity; i++) d = Math.max(d, Math.abs(got[i] - want[i]));
      const ok = d <= 1e-4;
      if (!ok) bad++;
      console.log(`${ok ? 'ok  ' : 'FAIL'} ${path.basename(model)} max |ort - nncd| = ${d}`);
    } catch (e) {
      bad++;
      console.log(`FAIL ${model}: ${e.message}`);
    }
  }
  process.exit(bad ? 1 : 0);
})();
