#!/usr/bin/env node
// Runs one ONNX model in ONNX Runtime on inputs given as raw float32 and writes
// every output, for test_ops_conv to compare with the executor.
//
//   node ops_conv_ort.js NODE_MODULES_DIR MODEL.onnx IN.bin OUT.bin NAME:DxDxD ...
//
// IN.bin holds the inputs' float32 data back to back, in argument order.
// OUT.bin gets, for each output in the session's order, float64 values:
// ndim, the dims, then the data (int64 outputs converted exactly: the values
// here are far below 2^53). Default session options, as a user runs ORT.
// Exit status: 0 ok, 1 error, 77 onnxruntime-node missing.
'use strict';

const fs = require('fs');
const path = require('path');

let ort;
try {
  ort = require(path.resolve(process.argv[2], 'onnxruntime-node'));
} catch (e) {
  process.stderr.write('onnxruntime-node not found under ' + process.argv[2] + ': ' +
                       e.message + '\n');
  process.exit(77);
}

async function main() {
  const [model, inFile, outFile] = process.argv.slice(3, 6);
  const raw = fs.readFileSync(inFile);
  const all = new Float32Array(raw.buffer, raw.byteOffset, raw.length / 4);
  const feeds = {};
  let off = 0;
  for (const arg of process.argv.slice(6)) {
    const i = arg.lastIndexOf(':');
    const name = arg.slice(0, i);
    const shape = arg.slice(i + 1).split('x').map(Number);
    const n = shape.reduce((a, b) => a * b, 1);
    if (off + n > all.length) throw new Error('IN.bin too short for ' + arg);
    feeds[name] = new ort.Tensor('float32', all.slice(off, off + n), shape);
    off += n;
  }
  if (off !== all.length) throw new Error('IN.bin has ' + (all.length - off) + ' extra floats');
  const sess = await ort.InferenceSession.create(model);
  const out = await sess.run(feeds);
  const parts = [];
  for (const name of sess.outputNames) {
    const t = out[name];
    const vals = new Float64Array(1 + t.dims.length + t.data.length);
    vals[0] = t.dims.length;
    t.dims.forEach((d, k) => { vals[1 + k] = d; });
    for (let k = 0; k < t.data.length; k++) vals[1 + t.dims.length + k] = Number(t.data[k]);
    parts.push(Buffer.from(vals.buffer));
  }
  fs.writeFileSync(outFile, Buffer.concat(parts));
}

main().catch((e) => {
  process.stderr.write('ops_conv_ort: ' + (e && e.stack ? e.stack : e) + '\n');
  process.exit(1);
});
