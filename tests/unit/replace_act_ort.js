#!/usr/bin/env node
// Runs one ONNX model in ONNX Runtime on a raw float32 input and writes its
// first output as raw float32: replace_act_check.py compares it with nncd's
// executor and a numpy reference.
//
//   node replace_act_ort.js NODE_MODULES_DIR MODEL.onnx IN.bin ROWS OUT.bin
//
// Graph optimisation level 'disabled' so ORT computes each node as written
// (no activation fusions with their own approximations).
// Exit status: 0 written, 1 a load or run failure, 77 ORT missing.
'use strict';

const fs = require('fs');
const path = require('path');

const [modules, model, inFile, rows, outFile] = process.argv.slice(2);
let ort;
try {
  ort = require(path.resolve(modules, 'onnxruntime-node'));
} catch (e) {
  process.stderr.write('onnxruntime-node not found under ' + modules + ': ' + e.message + '\n');
  process.exit(77);
}

async function main() {
  const buf = fs.readFileSync(inFile);
  const data = new Float32Array(buf.buffer, buf.byteOffset, buf.length / 4);
  const n = Number(rows);
  const sess = await ort.InferenceSession.create(model, { graphOptimizationLevel: 'disabled' });
  const feeds = {};
  feeds[sess.inputNames[0]] = new ort.Tensor('float32', Float32Array.from(data),
    [n, data.length / n]);
  const out = await sess.run(feeds);
  const y = out[sess.outputNames[0]].data;
  fs.writeFileSync(outFile, Buffer.from(y.buffer, y.byteOffset, y.byteLength));
}

main().catch((e) => {
  process.stderr.write('replace_act_ort: ' + (e && e.stack ? e.stack : e) + '\n');
  process.exit(1);
});
