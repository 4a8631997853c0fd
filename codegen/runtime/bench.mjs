// bench.mjs — decode and prefill tokens/s of a smelt bundle on WebGPU in
// Node with Dawn. Self-contained: needs only node (18+), the npm "webgpu"
// package (its index.js and dawn.node) and the bundle directory; it loads
// the bundle's own runtime/smelt.js, so it times what ships.
//
//   node bench.mjs BUNDLE_DIR [--webgpu PATH/TO/webgpu/index.js]
//        [--prefill 128] [--decode 64] [--repeat 3] [--profile]
//
// --webgpu defaults to $SMELT_WEBGPU_MODULE, else the "webgpu" package
// resolved from the current directory.
//
// Prefill: a prompt of --prefill token ids (BOS then ids 3.. cycling), timed
// from the first submit to the sampled token read back, best of --repeat.
// Decode: --decode greedy steps after a 16-token prompt, each step one
// command buffer (forward pass + argmax) and a 4-byte read back; tokens/s =
// steps / time, best of --repeat.
// --profile: also runs one prefill pass and one decode pass (at position 16)
// dispatch by dispatch, each in its own submit awaited with
// onSubmittedWorkDone, and prints the time per kernel (sum over its
// dispatches, most expensive first) — per-dispatch wall time including
// submit overhead, so the column shows where time goes, not kernel-only
// time.
import { readFile } from 'node:fs/promises';
import path from 'node:path';
import { pathToFileURL } from 'node:url';
import { createRequire } from 'node:module';

const args = process.argv.slice(2);
const opt = (name, def) => {
  const i = args.indexOf(name);
  return i >= 0 ? args[i + 1] : def;
};
const dir = path.resolve(args[0] || '.');
let mod = opt('--webgpu', process.env.SMELT_WEBGPU_MODULE);
if (!mod) mod = createRequire(path.join(process.cwd(), 'x.js')).resolve('webgpu');
const webgpu = await import(pathToFileURL(path.resolve(mod)).href);
Object.assign(globalThis, webgpu.globals);
const gpu = webgpu.create([]);
globalThis.__smeltKeepGPU = gpu; // Dawn aborts if the GPU object is collected while devices live
const adapter = await gpu.requestAdapter({ powerPreference: 'high-performance' });
if (!adapter) throw new Error('no WebGPU adapter (is a Vulkan driver installed? VK_ICD_FILENAMES / VK_DRIVER_FILES)');
const info = adapter.info || {};
const smelt = await import(pathToFileURL(path.join(dir, 'runtime', 'smelt.js')).href);
const source = { fetch: async (p) => new Response(await readFile(path.join(dir, p))) };
const t0 = performance.now();
const model = await smelt.loadBundle(source, { gpu });
const loadMs = performance.now() - t0;
const P = +opt('--prefill', 128), D = +opt('--decode', 64), R = +opt('--repeat', 3);
const V = model.program.vocab_size;
const ids = (n) => [model.program.bos >= 0 ? model.program.bos : 3, ...Array.from({ length: n - 1 }, (_, i) => 3 + (i % (V - 3)))];

const maxP = Math.min(P, model.contextLength - 1);
let best = Infinity;
await model.logits(ids(8)); // warm-up: first dispatches JIT-compile on some drivers
for (let r = 0; r < R; r++) {
  model.reset();
  const t = performance.now();
  await model.prefill(ids(maxP));
  best = Math.min(best, performance.now() - t);
}
const prefillTps = maxP / (best / 1000);

const steps = Math.min(D, model.contextLength - 17);
let bestD = Infinity;
for (let r = 0; r < R; r++) {
  model.reset();
  let id = await model.prefill(ids(16));
  const t = performance.now();
  for (let i = 0; i < steps; i++) id = await model.decode(id);
  bestD = Math.min(bestD, performance.now() - t);
}
const decodeTps = steps / (bestD / 1000);
const out = {
  bundle: dir, adapter: `${info.vendor || ''} ${info.architecture || ''} ${info.device || ''} ${info.description || ''}`.trim(),
  load_ms: +loadMs.toFixed(1),
  prefill_tokens: maxP, prefill_ms: +best.toFixed(2), prefill_tokens_per_s: +prefillTps.toFixed(1),
  decode_steps: steps, decode_ms: +bestD.toFixed(2), decode_tokens_per_s: +decodeTps.toFixed(1),
  dispatches_per_token: model.passes.decode.steps.length + model.passes.greedy.steps.length,
};
if (args.includes('--profile')) {
  out.profile = {
    prefill: await profile('prefill', Math.min(maxP, model.program.max_rows), 0),
    decode: await profile('decode', 1, 16),
  };
}
console.log(JSON.stringify(out, null, args.includes('--profile') ? 1 : 0));
model.destroy();
process.exit(0);

// profile runs one pass dispatch by dispatch and returns
// [{kernel, dispatches, ms}] sorted by ms, descending.
async function profile(name, rows, pos) {
  const dev = model.device;
  const pass = model.passes[name];
  const bi = pass.rows.findIndex((r) => r >= rows);
  dev.queue.writeBuffer(model.stepBuf, 0, new Uint32Array([rows, pos, 0, 0]));
  dev.queue.writeBuffer(model.idsBuf, 0, new Uint32Array(ids(rows)));
  await dev.queue.onSubmittedWorkDone();
  const byKernel = new Map();
  for (let rep = 0; rep < 2; rep++) { // the first round warms up
    for (const s of pass.steps) {
      const t = performance.now();
      const enc = dev.createCommandEncoder();
      const cp = enc.beginComputePass();
      cp.setPipeline(s.pipeline);
      cp.setBindGroup(0, s.group);
      cp.dispatchWorkgroups(...s.workgroups[bi]);
      cp.end();
      dev.queue.submit([enc.finish()]);
      await dev.queue.onSubmittedWorkDone();
      if (rep === 0) continue;
      const e = byKernel.get(s.kernel) || { kernel: s.kernel, dispatches: 0, ms: 0 };
      e.dispatches++;
      e.ms += performance.now() - t;
      byKernel.set(s.kernel, e);
    }
  }
  return [...byKernel.values()].sort((a, b) => b.ms - a.ms).map((e) => ({ ...e, ms: +e.ms.toFixed(2) }));
}
