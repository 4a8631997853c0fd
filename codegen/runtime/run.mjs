// run.mjs — runs a smelt bundle in Node with Dawn (npm "webgpu"), for
// `smelt run` and tests. It loads the bundle's own runtime/smelt.js (the
// file a browser would run), so what runs here is what ships.
//
//   SMELT_WEBGPU_MODULE=/path/to/node_modules/webgpu/index.js \
//     node run.mjs '<request JSON>'
//
// Request: {"bundle": DIR, "pubkey_jwk": {...}?, "limits": "default"|"adapter",
//           "jobs": [{"prompt": "text"} | {"ids": [1, 2]}, with
//                     "max_tokens", "temperature", "top_k", "top_p", "seed",
//                     "ignore_eos", "logits": true (last-position logits
//                     instead of generation), "trace": true (a "step" event
//                     per generated token with the logits the sampler saw
//                     and its uniform draw)]}
// Output, one JSON object per line: {"event":"progress",...},
// {"event":"loaded","ms":..}, per job {"event":"token","job":i,"id":..,"text":".."}
// then {"event":"done","job":i,"prompt_ids":[..],"ids":[..],"text":"..",
// "prefill_ms":..,"decode_ms":..} or {"event":"logits","job":i,"data":"<base64 f32>"};
// traced jobs also print {"event":"step","job":i,"id":..,"rand":r|null,"data":"<base64 f32>"};
// on failure {"event":"error","message":".."} and exit status 1.
import { readFile } from 'node:fs/promises';
import path from 'node:path';
import { pathToFileURL } from 'node:url';

const emit = (o) => process.stdout.write(JSON.stringify(o) + '\n');

async function main() {
  const req = JSON.parse(process.argv[2] || '{}');
  const dir = path.resolve(req.bundle);
  const webgpu = await import(pathToFileURL(process.env.SMELT_WEBGPU_MODULE).href);
  Object.assign(globalThis, webgpu.globals);
  const gpu = webgpu.create([]);
  globalThis.__smeltKeepGPU = gpu; // Dawn aborts if the GPU object is collected while devices live
  const smelt = await import(pathToFileURL(path.join(dir, 'runtime', 'smelt.js')).href);
  const source = {
    fetch: async (p) => {
      const full = path.resolve(dir, p);
      if (!full.startsWith(dir + path.sep)) return new Response(null, { status: 404 });
      try {
        return new Response(await readFile(full));
      } catch {
        return new Response(null, { status: 404 });
      }
    },
  };
  let device;
  if (req.limits === 'adapter') {
    const adapter = await gpu.requestAdapter();
    const requiredLimits = {};
    for (const k of ['maxStorageBufferBindingSize', 'maxBufferSize', 'maxComputeWorkgroupStorageSize', 'maxComputeInvocationsPerWorkgroup']) requiredLimits[k] = adapter.limits[k];
    device = await adapter.requestDevice({ requiredFeatures: [...adapter.features].filter((f) => f === 'shader-f16'), requiredLimits });
  }
  const t0 = performance.now();
  let last = 0;
  const model = await smelt.loadBundle(source, {
    gpu, device, publicKeyJwk: req.pubkey_jwk,
    onProgress: (p) => {
      const now = performance.now();
      if (req.progress && (now - last > 500 || p.phase === 'ready')) {
        last = now;
        emit({ event: 'progress', ...p });
      }
    },
  });
  emit({ event: 'loaded', ms: performance.now() - t0 });
  for (const [i, job] of (req.jobs || []).entries()) {
    const ids = job.ids || model.encode(job.prompt ?? '');
    if (job.logits) {
      const l = await model.logits(ids);
      emit({ event: 'logits', job: i, prompt_ids: ids, data: Buffer.from(l.buffer, l.byteOffset, l.byteLength).toString('base64') });
      continue;
    }
    const opts = {
      maxTokens: job.max_tokens ?? 32, temperature: job.temperature ?? 0, topK: job.top_k ?? 0,
      topP: job.top_p ?? 1, seed: job.seed ?? 0, ignoreEOS: !!job.ignore_eos,
    };
    if (job.trace) {
      opts.onStep = ({ token, logits, rand }) => emit({
        event: 'step', job: i, id: token, rand,
        data: Buffer.from(logits.buffer, logits.byteOffset, logits.byteLength).toString('base64'),
      });
    }
    const out = [];
    const dec = model.tokenizer ? model.textDecoder(ids, opts) : null;
    let all = '';
    const t1 = performance.now();
    let tFirst = 0;
    for await (const id of model.generateIds(ids, opts)) {
      if (out.length === 0) tFirst = performance.now();
      out.push(id);
      const text = dec ? dec.push(id) : '';
      all += text;
      emit({ event: 'token', job: i, id, text });
    }
    const t2 = performance.now();
    const rest = dec ? dec.flush() : '';
    if (rest) emit({ event: 'token', job: i, id: -1, text: rest });
    all += rest;
    emit({
      event: 'done', job: i, prompt_ids: ids, ids: out, text: all,
      prefill_ms: tFirst - t1, decode_ms: t2 - tFirst,
    });
  }
  model.destroy();
}

main().then(() => process.exit(0), (e) => {
  emit({ event: 'error', message: e && e.message ? e.message : String(e) });
  process.exit(1);
});
