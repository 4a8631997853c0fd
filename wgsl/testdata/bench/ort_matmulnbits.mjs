// ort_matmulnbits.mjs: yardstick for smelt's int4 GEMV. Times onnxruntime-web's
// com.microsoft MatMulNBits (bits 4, block 128, asymmetric, f32 scales; M=1)
// on its WebGPU execution provider, with Dawn for Node as navigator.gpu, on
// the shapes of gemv_plan.json.
//
// The one-node ONNX model is written here by a minimal protobuf encoder, with
// random weights. Each shape gets --sets sessions (distinct weights, rotated)
// so that, on a GPU, more than the L2 cache is read; the output stays on the
// GPU (preferredOutputLocation 'gpu-buffer'), so a run costs the kernel plus
// ORT's per-run overhead (input upload of K floats, JS dispatch) — which is
// what an application using ORT pays per MatMulNBits.
//
// Usage:
//   node wgsl/testdata/bench/ort_matmulnbits.mjs [--webgpu PATH/webgpu/index.js]
//        [--ort PATH/onnxruntime-web/dist] [--iters 50] [--mb 256] [--filter S] [--json OUT]
import { readFileSync, writeFileSync } from 'node:fs';
import { dirname, join, resolve } from 'node:path';
import { fileURLToPath, pathToFileURL } from 'node:url';

const here = dirname(fileURLToPath(import.meta.url));
const args = Object.fromEntries(process.argv.slice(2).reduce((acc, a, i, all) => {
  if (a.startsWith('--')) acc.push([a.slice(2), all[i + 1] && !all[i + 1].startsWith('--') ? all[i + 1] : 'true']);
  return acc;
}, []));
const webgpuPath = args.webgpu || resolve(here, '../../../node_modules/webgpu/index.js');
const ortDir = args.ort || resolve(here, '../../../node_modules/onnxruntime-web/dist');
const { create, globals } = await import(pathToFileURL(webgpuPath).href);
Object.assign(globalThis, globals);
const gpu = create([]); // keep referenced for the process lifetime
// ORT's wasm heap is a SharedArrayBuffer; Dawn for Node rejects views of
// one in writeBuffer ("Invalid argument"), so copy such data first.
const origWrite = GPUQueue.prototype.writeBuffer;
GPUQueue.prototype.writeBuffer = function (buffer, offset, data, dataOffset = 0, size) {
  if (ArrayBuffer.isView(data) && data.buffer instanceof SharedArrayBuffer) {
    const el = data.BYTES_PER_ELEMENT || 1;
    const n = size === undefined ? data.length - dataOffset : size;
    const copy = new Uint8Array(n * el);
    copy.set(new Uint8Array(data.buffer, data.byteOffset + dataOffset * el, n * el));
    return origWrite.call(this, buffer, offset, copy, 0, n * el);
  }
  if (data instanceof SharedArrayBuffer) {
    const copy = new Uint8Array(data.slice(dataOffset, size === undefined ? undefined : dataOffset + size));
    return origWrite.call(this, buffer, offset, copy, 0, copy.length);
  }
  return origWrite.call(this, buffer, offset, data, dataOffset, size);
};
Object.defineProperty(globalThis, 'navigator', { value: { gpu, userAgent: 'node' }, configurable: true });
const ort = await import(pathToFileURL(join(ortDir, 'ort.webgpu.min.mjs')).href);
ort.env.wasm.wasmPaths = pathToFileURL(ortDir + '/').href;
ort.env.wasm.numThreads = 1;
ort.env.logLevel = 'error';

// --- minimal protobuf writer ---
function varint(n) {
  const out = [];
  let v = BigInt(n);
  while (v > 127n) { out.push(Number(v & 127n) | 128); v >>= 7n; }
  out.push(Number(v));
  return out;
}
const enc = new TextEncoder();
function field(num, wire, payload) { return [...varint((num << 3) | wire), ...payload]; }
function fInt(num, v) { return field(num, 0, varint(v)); }
function fBytes(num, bytes) { return field(num, 2, [...varint(bytes.length), ...bytes]); }
function fStr(num, s) { return fBytes(num, [...enc.encode(s)]); }
function fMsg(num, parts) { return fBytes(num, parts.flat()); }
function tensor(name, dtype, dims, raw) {
  // TensorProto: dims=1, data_type=2, name=8, raw_data=9 (raw as Uint8Array kept out of arrays for speed)
  return { name, dtype, dims, raw };
}
function tensorBytes(t) {
  const head = new Uint8Array([...dims(t.dims), ...fInt(2, t.dtype), ...fStr(8, t.name)]);
  const rawHdr = new Uint8Array([...varint((9 << 3) | 2), ...varint(t.raw.length)]);
  const body = new Uint8Array(head.length + rawHdr.length + t.raw.length);
  body.set(head, 0); body.set(rawHdr, head.length); body.set(t.raw, head.length + rawHdr.length);
  return body;
  function dims(ds) { return ds.flatMap((d) => fInt(1, d)); }
}
function valueInfo(name, elemType, shape) {
  const dimsMsg = shape.map((d) => fMsg(1, [fInt(1, d)]));
  return [...fStr(1, name), ...fMsg(2, [fMsg(1, [fInt(1, elemType), fMsg(2, dimsMsg)])])];
}
function concat(chunks) {
  const n = chunks.reduce((a, c) => a + c.length, 0);
  const out = new Uint8Array(n);
  let o = 0;
  for (const c of chunks) { out.set(c, o); o += c.length; }
  return out;
}
function lenDelim(num, body) { return concat([new Uint8Array(varint((num << 3) | 2)), new Uint8Array(varint(body.length)), body]); }

function matmulNBitsModel(K, N, block, rng) {
  const nb = K / block;
  const blob = block / 2;
  const B = new Uint8Array(N * nb * blob);
  for (let i = 0; i < B.length; i++) B[i] = rng() & 255;
  const scales = new Float32Array(N * nb);
  for (let i = 0; i < scales.length; i++) scales[i] = 0.01 + 0.1 * (rng() / 2 ** 32);
  const zrb = Math.ceil(nb * 4 / 8);
  const Z = new Uint8Array(N * zrb);
  for (let i = 0; i < Z.length; i++) Z[i] = rng() & 255;
  const FLOAT = 1; const UINT8 = 2;
  const inits = [
    tensor('B', UINT8, [N, nb, blob], B),
    tensor('scales', FLOAT, [N * nb], new Uint8Array(scales.buffer)),
    tensor('zeros', UINT8, [N * zrb], Z),
  ];
  const attr = (name, v) => [...fStr(1, name), ...fInt(3, v), ...fInt(20, 2)];
  const node = [
    ...fStr(1, 'A'), ...fStr(1, 'B'), ...fStr(1, 'scales'), ...fStr(1, 'zeros'), ...fStr(2, 'Y'),
    ...fStr(3, 'mm'), ...fStr(4, 'MatMulNBits'), ...fStr(7, 'com.microsoft'),
    ...fMsg(5, [attr('K', K)]), ...fMsg(5, [attr('N', N)]), ...fMsg(5, [attr('bits', 4)]), ...fMsg(5, [attr('block_size', block)]),
  ];
  const graph = concat([
    lenDelim(1, new Uint8Array(node)),
    new Uint8Array(fStr(2, 'g')),
    ...inits.map((t) => lenDelim(5, tensorBytes(t))),
    lenDelim(11, new Uint8Array(valueInfo('A', FLOAT, [1, K]))),
    lenDelim(12, new Uint8Array(valueInfo('Y', FLOAT, [1, N]))),
  ]);
  const model = concat([
    new Uint8Array(fInt(1, 8)),
    lenDelim(8, new Uint8Array([...fStr(1, ''), ...fInt(2, 17)])),
    lenDelim(8, new Uint8Array([...fStr(1, 'com.microsoft'), ...fInt(2, 1)])),
    lenDelim(7, graph),
  ]);
  const weightBytes = B.length + scales.byteLength + Z.length;
  // reference with smelt's layout semantics (wgsl/ref.Matrix.At): low nibble
  // first, zero point of block j at bits (j*4)%8 of byte j*4/8 of its row.
  const reference = (x) => {
    const y = new Float64Array(N);
    for (let n = 0; n < N; n++) {
      let acc = 0;
      for (let k = 0; k < K; k++) {
        const j = (k / block) | 0;
        const byte = B[n * nb * blob + (k >> 1)];
        const q = (k & 1) ? byte >> 4 : byte & 15;
        const zb = Z[n * zrb + (j >> 1)];
        const z = (j & 1) ? zb >> 4 : zb & 15;
        acc += x[k] * Math.fround((q - z) * scales[n * nb + j]);
      }
      y[n] = acc;
    }
    return y;
  };
  return { model, weightBytes, reference };
}

function xorshift(seed) {
  let s = seed >>> 0 || 1;
  return () => { s ^= s << 13; s >>>= 0; s ^= s >>> 17; s ^= s << 5; s >>>= 0; return s; };
}

const plan = JSON.parse(readFileSync(join(here, 'gemv_plan.json'), 'utf8'));
const shapes = [...new Map(plan.map((e) => [e.shape, e])).values()];
const iters = Number(args.iters || 50);
const totalBytes = Number(args.mb || 256) * 1e6;
const results = [];
for (const s of shapes) {
  if (args.filter && !s.shape.includes(args.filter)) continue;
  if (!s.kernel.includes('int4g128asym')) continue; // MatMulNBits here: asymmetric, f32 scales
  const rng = xorshift(s.k * 31 + s.n);
  const first = matmulNBitsModel(s.k, s.n, 128, rng);
  const sets = Math.max(1, Math.min(Number(args.sets || 64), Math.ceil(totalBytes / first.weightBytes)));
  const sessions = [];
  for (let i = 0; i < sets; i++) {
    const m = i === 0 ? first : matmulNBitsModel(s.k, s.n, 128, rng);
    sessions.push(await ort.InferenceSession.create(m.model, {
      executionProviders: ['webgpu'], preferredOutputLocation: 'gpu-buffer', graphOptimizationLevel: 'disabled',
    }));
  }
  const a = new ort.Tensor('float32', Float32Array.from({ length: s.k }, () => Math.random() - 0.5), [1, s.k]);
  // correctness smoke check on CPU-side readback once
  const probe = await sessions[0].run({ A: a });
  const got = await probe.Y.getData(true);
  const want = first.reference(a.data);
  let maxErr = 0; let maxRef = 0;
  for (let i = 0; i < s.n; i++) { maxErr = Math.max(maxErr, Math.abs(got[i] - want[i])); maxRef = Math.max(maxRef, Math.abs(want[i])); }
  const layoutOK = maxErr <= 1e-3 * maxRef;
  if (!layoutOK) console.log(`LAYOUT MISMATCH: ORT output differs from smelt's layout semantics by ${maxErr} (max |y| ${maxRef})`);
  for (let i = 0; i < Math.min(sets, 5); i++) { const o = await sessions[i].run({ A: a }); o.Y.dispose(); }
  const t0 = performance.now();
  let last;
  for (let i = 0; i < iters; i++) {
    const o = await sessions[i % sets].run({ A: a });
    if (last) last.dispose();
    last = o.Y;
  }
  await last.getData(true); // waits for the GPU queue
  const ms = (performance.now() - t0) / iters;
  const r = { shape: s.shape, k: s.k, n: s.n, sets, weightMB: first.weightBytes * sets / 1e6, msPerRun: ms, GBps: first.weightBytes / ms / 1e6, layoutOK, maxErr };
  results.push(r);
  console.log(`ort MatMulNBits ${s.shape.padEnd(16)} K=${s.k} N=${s.n}: ${ms.toFixed(4)} ms/run  ${r.GBps.toFixed(3)} GB/s  (${sets} sessions, ${r.weightMB.toFixed(0)} MB; layout check max|diff| ${maxErr.toExponential(2)} of max|y| ${maxRef.toFixed(2)})`);
  for (const ss of sessions) await ss.release();
}
if (args.json) writeFileSync(args.json, JSON.stringify({ results }, null, 2));
process.exit(0);
