// bench.mjs — decode and prefill tokens/s of a smelt bundle on WebGPU in
// Node with Dawn. Self-contained: needs node, the npm "webgpu" package and
// the bundle directory (it loads the bundle's own runtime/smelt.js).
//
//   node bench.mjs BUNDLE_DIR [--webgpu PATH/TO/node_modules/webgpu/index.js]
//        [--prefill 128] [--decode 64] [--repeat 3]
//
// Prefill: a prompt of --prefill token ids (BOS then ids 3.. cycling), timed
// from submit to the sampled token read back, best of --repeat runs.
// Decode: --decode greedy steps after a 16-token prompt, each step one
// forward pass + argmax + 4-byte readback; tokens/s = steps / time.
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
const webgpu = await import(pathToFileURL(mod).href);
Object.assign(globalThis, webgpu.globals);
const gpu = webgpu.create([]);
globalThis.__smeltKeepGPU = gpu;
const adapter = await gpu.requestAdapter({ powerPreference: 'high-performance' });
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
};
console.log(JSON.stringify(out));
model.destroy();
process.exit(0);
