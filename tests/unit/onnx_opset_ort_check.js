// Checks onnx_raise_opset against ONNX Runtime: for every
// data/opset_*.onnx model that is not a rejection case, converts it to opset
// 13 and 18 (and 10-12 for Upsample/Resize) with onnx_raise_tool and requires
// bit-identical outputs from ORT on the original and the converted model, for
// deterministic inputs.
// Usage: node onnx_opset_ort_check.js TOOL DATA_DIR TMP_DIR
// Exits 77 (meson: skipped) when onnxruntime-node cannot be loaded.
'use strict';
const fs = require('fs');
const path = require('path');
const { execFileSync } = require('child_process');

let ort;
try {
  ort = require('onnxruntime-node');
} catch (e) {
  console.log('onnxruntime-node not installed: skipping');
  process.exit(77);
}

const [tool, dataDir, tmpDir] = process.argv.slice(2);

function input(meta) {
  const n = meta.shape.reduce((a, b) => a * b, 1);
  const data = new Float32Array(n);
  let s = 12345;
  for (let i = 0; i < n; i++) {
    s = (s * 1103515245 + 12345) & 0x7fffffff;
    data[i] = (s % 2000) / 1000 - 1; // [-1, 1)
  }
  return new ort.Tensor('float32', data, meta.shape);
}

async function run(file) {
  const sess = await ort.InferenceSession.create(file, { logSeverityLevel: 3 });
  const feeds = {};
  for (const m of sess.inputMetadata) feeds[m.name] = input(m);
  const out = await sess.run(feeds);
  const res = {};
  for (const k of sess.outputNames) res[k] = out[k];
  return res;
}

(async () => {
  let failed = 0, checked = 0;
  const files = fs.readdirSync(dataDir).filter(f => /^opset_.*\.onnx$/.test(f) && !/reject/.test(f));
  for (const f of files.sort()) {
    const src = path.join(dataDir, f);
    const a = await run(src);
    // 13 is what quantization needs; 18 moves Reduce* axes to inputs; the
    // Resize conversions also differ at 10, 11 and 12.
    const from = parseInt(f.match(/_(\d+)\.onnx$/)[1], 10);
    const targets = [13, 18].concat(/upsample|resize/.test(f) ? [10, 11, 12] : []);
    for (const to of targets.filter(t => t > from)) {
      const dst = path.join(tmpDir, f.replace('.onnx', `_to${to}.onnx`));
      execFileSync(tool, [src, dst, String(to)], { stdio: 'inherit' });
      const b = await run(dst);
      for (const k of Object.keys(a)) {
        const x = a[k], y = b[k];
        const same = y && x.type === y.type && JSON.stringify(x.dims) === JSON.stringify(y.dims) &&
          Buffer.compare(Buffer.from(x.data.buffer, x.data.byteOffset, x.data.byteLength),
                         Buffer.from(y.data.buffer, y.data.byteOffset, y.data.byteLength)) === 0;
        if (!same) {
          console.log(`${f}: output ${k} differs after raising the opset to ${to}`);
          failed++;
        }
        checked++;
      }
      fs.unlinkSync(dst);
      console.log(`${f} -> opset ${to}: ${Object.keys(a).length} outputs identical`);
    }
  }
  if (files.length === 0) failed++;
  console.log(`${checked} outputs checked, ${failed} failures`);
  process.exit(failed ? 1 : 0);
})().catch(e => { console.error(e); process.exit(1); });
