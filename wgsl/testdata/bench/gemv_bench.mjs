// gemv_bench.mjs: weight bandwidth of smelt's int4 GEMV kernels on a real GPU.
//
// Standalone (no Go needed): reads gemv_plan.json (written by
// `go test ./wgsl -run TestBenchPlan -update`) and the rendered kernels it
// names (wgsl/testdata/golden/*.wgsl). For each kernel it allocates enough
// sets of distinct weight buffers that together they exceed --mb megabytes
// (default 256, so the GPU's L2 cache cannot hold them), runs --iters
// dispatches rotating through the sets, and reports ms per dispatch and
// GB/s of weight bytes read (qweight + scales + zeros).
//
// Usage:
//   node wgsl/testdata/bench/gemv_bench.mjs [--webgpu PATH/TO/webgpu/index.js]
//        [--mb 256] [--iters 400] [--reps 3] [--warm-ms 300] [--filter SUBSTRING]
//        [--json OUT.json]
// Each kernel is warmed up for --warm-ms of GPU work, then timed --reps
// times; the fastest run is reported (all runs are in the JSON).
// The webgpu module defaults to the repository's node_modules/webgpu.
import { readFileSync, writeFileSync } from 'node:fs';
import { dirname, join, resolve } from 'node:path';
import { fileURLToPath, pathToFileURL } from 'node:url';

const here = dirname(fileURLToPath(import.meta.url));
const args = Object.fromEntries(process.argv.slice(2).reduce((acc, a, i, all) => {
  if (a.startsWith('--')) acc.push([a.slice(2), all[i + 1] && !all[i + 1].startsWith('--') ? all[i + 1] : 'true']);
  return acc;
}, []));
const webgpuPath = args.webgpu || resolve(here, '../../../node_modules/webgpu/index.js');
const { create, globals } = await import(pathToFileURL(webgpuPath).href);
Object.assign(globalThis, globals);
const gpu = create([]); // keep referenced for the process lifetime
const adapter = await gpu.requestAdapter({ powerPreference: 'high-performance' });
if (!adapter) throw new Error('no WebGPU adapter');
const features = ['shader-f16', 'subgroups', 'timestamp-query'].filter((f) => adapter.features.has(f));
const device = await adapter.requestDevice({
  requiredFeatures: features,
  requiredLimits: {
    maxStorageBufferBindingSize: adapter.limits.maxStorageBufferBindingSize,
    maxBufferSize: adapter.limits.maxBufferSize,
  },
});
device.addEventListener('uncapturederror', (e) => { console.error('uncaptured:', e.error.message); });
const info = adapter.info || {};
console.log(`adapter: ${info.vendor} ${info.architecture} ${info.device} ${info.description}; features: ${features.join(',')}`);

const plan = JSON.parse(readFileSync(join(here, 'gemv_plan.json'), 'utf8'));
const totalBytes = Number(args.mb || 256) * 1e6;
const iters = Number(args.iters || 400);
const results = [];
const hasTS = features.includes('timestamp-query');

function randomFill(buf, size) {
  const chunk = new Uint32Array(Math.min(size, 1 << 22) / 4);
  for (let i = 0; i < chunk.length; i++) chunk[i] = (Math.random() * 2 ** 32) >>> 0;
  for (let off = 0; off < size; off += chunk.byteLength) {
    const n = Math.min(chunk.byteLength, size - off);
    device.queue.writeBuffer(buf, off, chunk.buffer, 0, n);
  }
}

// Copy roof: device-to-device copyBufferToBuffer of --mb megabytes, counted
// as bytes read + bytes written.
{
  const size = Math.min(Math.floor(totalBytes / 4) * 4, device.limits.maxBufferSize);
  const usage = GPUBufferUsage.COPY_SRC | GPUBufferUsage.COPY_DST | GPUBufferUsage.STORAGE;
  const a = device.createBuffer({ size, usage });
  const b = device.createBuffer({ size, usage });
  const copies = 20;
  const go = async () => {
    const enc = device.createCommandEncoder();
    for (let i = 0; i < copies; i++) enc.copyBufferToBuffer(i % 2 ? b : a, 0, i % 2 ? a : b, 0, size);
    const t0 = performance.now();
    device.queue.submit([enc.finish()]);
    await device.queue.onSubmittedWorkDone();
    return performance.now() - t0;
  };
  await go();
  const ms = await go();
  const gbs = (2 * size * copies) / (ms / 1e3) / 1e9;
  results.push({ copyMB: size / 1e6, copyGBps: gbs });
  console.log(`copy roof: ${(size / 1e6).toFixed(0)} MB buffer-to-buffer, ${gbs.toFixed(1)} GB/s (read + write, wall clock)`);
  // Read roof: a compute kernel that only streams the buffer (vec4<u32>
  // loads, grid-stride), timed with timestamp queries when available.
  const code = `
@group(0) @binding(0) var<storage, read> a: array<vec4u>;
@group(0) @binding(1) var<storage, read_write> o: array<u32>;
@compute @workgroup_size(256)
fn main(@builtin(global_invocation_id) g: vec3u, @builtin(num_workgroups) nwg: vec3u) {
  let n = arrayLength(&a);
  let stride = nwg.x * 256u;
  var acc = vec4u(0u);
  for (var i = g.x; i < n; i += stride) { acc ^= a[i]; }
  if (acc.x == 0x12345678u && acc.y == 0x9abcdef0u) { o[0] = acc.z; }
}`;
  const pipe = await device.createComputePipelineAsync({ layout: 'auto', compute: { module: device.createShaderModule({ code }), entryPoint: 'main' } });
  const o = device.createBuffer({ size: 16, usage: GPUBufferUsage.STORAGE });
  const bindSize = Math.min(size, device.limits.maxStorageBufferBindingSize);
  const bgs = [a, b].map((buf) => device.createBindGroup({ layout: pipe.getBindGroupLayout(0), entries: [
    { binding: 0, resource: { buffer: buf, size: bindSize } }, { binding: 1, resource: { buffer: o } }] }));
  const qs = hasTS ? device.createQuerySet({ type: 'timestamp', count: 2 }) : null;
  const qb = hasTS ? device.createBuffer({ size: 16, usage: GPUBufferUsage.QUERY_RESOLVE | GPUBufferUsage.COPY_SRC }) : null;
  const qr = hasTS ? device.createBuffer({ size: 16, usage: GPUBufferUsage.MAP_READ | GPUBufferUsage.COPY_DST }) : null;
  const reads = 20;
  const once = async () => {
    const enc = device.createCommandEncoder();
    const pass = enc.beginComputePass(hasTS ? { timestampWrites: { querySet: qs, beginningOfPassWriteIndex: 0, endOfPassWriteIndex: 1 } } : {});
    pass.setPipeline(pipe);
    for (let i = 0; i < reads; i++) { pass.setBindGroup(0, bgs[i % 2]); pass.dispatchWorkgroups(8192); }
    pass.end();
    if (hasTS) { enc.resolveQuerySet(qs, 0, 2, qb, 0); enc.copyBufferToBuffer(qb, 0, qr, 0, 16); }
    const t0 = performance.now();
    device.queue.submit([enc.finish()]);
    await device.queue.onSubmittedWorkDone();
    let ms = performance.now() - t0;
    if (hasTS) {
      await qr.mapAsync(GPUMapMode.READ);
      const ts = new BigUint64Array(qr.getMappedRange().slice(0));
      qr.unmap();
      if (ts[1] > ts[0]) ms = Number(ts[1] - ts[0]) / 1e6;
    }
    return ms;
  };
  await once();
  const rms = await once();
  const rgbs = (bindSize * reads) / (rms / 1e3) / 1e9;
  results.push({ readMB: bindSize / 1e6, readGBps: rgbs });
  console.log(`read roof: ${(bindSize / 1e6).toFixed(0)} MB streamed by a compute kernel, ${rgbs.toFixed(1)} GB/s`);
  a.destroy(); b.destroy();
}

for (const e of plan) {
  if (args.filter && !e.kernel.includes(args.filter) && !e.shape.includes(args.filter)) continue;
  const needs = e.features.filter((f) => !features.includes(f));
  if (needs.length) { console.log(`${e.kernel}: skipped, adapter lacks ${needs.join(',')}`); continue; }
  const code = readFileSync(join(here, e.file), 'utf8');
  device.pushErrorScope('validation');
  const module = device.createShaderModule({ code });
  const pipeline = await device.createComputePipelineAsync({ layout: 'auto', compute: { module, entryPoint: 'main' } });
  const sets = Math.max(2, Math.ceil(totalBytes / e.weightBytes));
  const step = device.createBuffer({ size: 16, usage: GPUBufferUsage.UNIFORM | GPUBufferUsage.COPY_DST });
  device.queue.writeBuffer(step, 0, new Uint32Array([1, 0, 0, 0]));
  const shared = {};
  const groups = [];
  const owned = [step];
  for (let s = 0; s < sets; s++) {
    const entries = e.bindings.map((b, i) => {
      if (b.name === 'step') return { binding: i, resource: { buffer: step } };
      if (b.name === 'x' && shared.x) return { binding: i, resource: { buffer: shared.x } };
      const size = Math.ceil(b.bytes / 16) * 16;
      const buf = device.createBuffer({ size, usage: GPUBufferUsage.STORAGE | GPUBufferUsage.COPY_DST });
      owned.push(buf);
      if (b.access === 'read') randomFill(buf, size);
      if (b.name === 'x') shared.x = buf;
      return { binding: i, resource: { buffer: buf } };
    });
    groups.push(device.createBindGroup({ layout: pipeline.getBindGroupLayout(0), entries }));
  }
  const err = await device.popErrorScope();
  if (err) throw new Error(`${e.kernel}: ${err.message}`);
  await device.queue.onSubmittedWorkDone();

  const qs = hasTS ? device.createQuerySet({ type: 'timestamp', count: 2 }) : null;
  const qbuf = hasTS ? device.createBuffer({ size: 16, usage: GPUBufferUsage.QUERY_RESOLVE | GPUBufferUsage.COPY_SRC }) : null;
  const qread = hasTS ? device.createBuffer({ size: 16, usage: GPUBufferUsage.MAP_READ | GPUBufferUsage.COPY_DST }) : null;
  const runOnce = async (n, timed) => {
    const enc = device.createCommandEncoder();
    const pass = enc.beginComputePass(timed && hasTS ? { timestampWrites: { querySet: qs, beginningOfPassWriteIndex: 0, endOfPassWriteIndex: 1 } } : {});
    pass.setPipeline(pipeline);
    for (let i = 0; i < n; i++) {
      pass.setBindGroup(0, groups[i % sets]);
      pass.dispatchWorkgroups(...e.workgroups);
    }
    pass.end();
    if (timed && hasTS) {
      enc.resolveQuerySet(qs, 0, 2, qbuf, 0);
      enc.copyBufferToBuffer(qbuf, 0, qread, 0, 16);
    }
    const t0 = performance.now();
    device.queue.submit([enc.finish()]);
    await device.queue.onSubmittedWorkDone();
    const wall = performance.now() - t0;
    let gpuMs = null;
    if (timed && hasTS) {
      await qread.mapAsync(GPUMapMode.READ);
      const ts = new BigUint64Array(qread.getMappedRange().slice(0));
      qread.unmap();
      gpuMs = Number(ts[1] - ts[0]) / 1e6;
    }
    return { wall, gpuMs };
  };
  // Warm up for at least --warm-ms of GPU work (the GPU clocks down while
  // the CPU fills the buffers), then time --reps runs of --iters dispatches
  // and keep the fastest.
  const warmMs = Number(args['warm-ms'] || 300);
  for (let t0 = performance.now(); performance.now() - t0 < warmMs;) await runOnce(Math.min(iters, 4 * sets), false);
  let wall = Infinity, gpuMs = null, all = [];
  for (let rep = 0; rep < Number(args.reps || 3); rep++) {
    const r = await runOnce(iters, true);
    const m = r.gpuMs && r.gpuMs > 0 ? r.gpuMs : r.wall;
    all.push(m / iters);
    if (m < (gpuMs ?? wall)) { wall = r.wall; gpuMs = r.gpuMs && r.gpuMs > 0 ? r.gpuMs : null; }
  }
  const ms = (gpuMs ?? wall) / iters;
  const gbs = e.weightBytes / ms / 1e6;
  const r = {
    shape: e.shape, kernel: e.kernel, k: e.k, n: e.n, sets, weightMB: (e.weightBytes * sets) / 1e6,
    msPerDispatch: ms, msPerDispatchReps: all, GBps: gbs, timer: gpuMs && gpuMs > 0 ? 'timestamp' : 'wall', wallMsPerDispatch: wall / iters,
  };
  results.push(r);
  console.log(`${e.shape.padEnd(16)} ${e.kernel.padEnd(56)} ${ms.toFixed(4)} ms  ${gbs.toFixed(3)} GB/s  (${sets} sets, ${r.weightMB.toFixed(0)} MB, ${r.timer}; reps ${all.map((v) => v.toFixed(4)).join(' ')})`);
  for (const b of owned) b.destroy();
}
if (args.json) writeFileSync(args.json, JSON.stringify({ adapter: info, features, results }, null, 2));
process.exit(0);
