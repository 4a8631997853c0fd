// smelt.js — runs a smelt bundle on WebGPU.
//
// An ES module with no dependencies beyond its two siblings (integrity.js:
// manifest signatures and Subresource Integrity; tokenizer.js: the
// tokenizer, imported when the bundle has one). It works on a page's main thread, in a Web Worker, and in
// Node with Dawn (npm "webgpu": the caller passes {gpu: create([])} or a
// device; this module never imports it).
//
//   import { loadBundle } from './runtime/smelt.js';
//   const model = await loadBundle('https://example.org/bundle/', {
//     publicKeyJwk,                       // optional: verify manifest.sig first
//     onProgress: (p) => console.log(p),  // {phase, loaded, total, file}
//   });
//   for await (const piece of model.stream('Once upon a time', { maxTokens: 32 })) out += piece;
//
// What it does, in order: fetch manifest.json (and manifest.sig, verified
// with the public key when one is given; any mismatch throws), fetch every
// file it uses with its integrity value (a corrupted or substituted file
// throws, naming it), upload the shards holding the program's weights into
// one GPU buffer each (tensors are bound in place at their 256-aligned
// offsets), compile the kernels, and run the manifest's dispatch program
// (codegen/doc.go): prefill in chunks of program.max_rows tokens, decode one
// token at a time against the KV cache on the GPU, and sample on the GPU —
// only the chosen token id (4 bytes) is read back per step.
import * as integrity from './integrity.js';

const PROGRAM_VERSION = 2;

// SmeltError is what every failure of this module throws; .file names the
// bundle file involved when there is one.
export class SmeltError extends Error {
  constructor(message, file) {
    super(file ? `smelt: ${file}: ${message}` : `smelt: ${message}`);
    this.name = 'SmeltError';
    this.file = file;
  }
}

// makeFetcher turns a base URL or an object with fetch(path) into
// {baseUrl, fetchImpl}: fetchImpl(url, init) -> Promise<Response>, for URLs
// under baseUrl (integrity.js resolves file paths against baseUrl).
function makeFetcher(source) {
  if (typeof source === 'string' || source instanceof URL) {
    let base = String(source);
    if (!base.endsWith('/')) base += '/';
    if (globalThis.location) base = new URL(base, globalThis.location.href).href;
    return { baseUrl: base, fetchImpl: (url, init) => fetch(url, init) };
  }
  if (source && typeof source.fetch === 'function') {
    const base = 'smelt-bundle://bundle/';
    return {
      baseUrl: base,
      fetchImpl: (url, init) => source.fetch(decodeURI(String(url).slice(base.length)), init),
    };
  }
  throw new SmeltError('loadBundle needs a base URL or an object with a fetch(path) method');
}

async function fetchBytes(src, path) {
  let res;
  try {
    res = await src.fetchImpl(new URL(path, src.baseUrl).href, { cache: 'no-store' });
  } catch (e) {
    throw new SmeltError(`fetch failed: ${e.message}`, path);
  }
  if (!res.ok) throw new SmeltError(`HTTP ${res.status}`, path);
  return new Uint8Array(await res.arrayBuffer());
}

// mulberry32 is the seeded generator of the sample pass's uniform r.
function mulberry32(seed) {
  let a = seed >>> 0;
  return () => {
    a = (a + 0x6d2b79f5) >>> 0;
    let t = a;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}

const BUFFER_USAGE = () => ({
  uniform: GPUBufferUsage.UNIFORM | GPUBufferUsage.COPY_DST,
  input: GPUBufferUsage.STORAGE | GPUBufferUsage.COPY_DST,
  activation: GPUBufferUsage.STORAGE,
  kv: GPUBufferUsage.STORAGE | GPUBufferUsage.COPY_DST,
  output: GPUBufferUsage.STORAGE | GPUBufferUsage.COPY_SRC | GPUBufferUsage.COPY_DST,
  const: GPUBufferUsage.STORAGE | GPUBufferUsage.COPY_DST,
});

// base64Bytes decodes a base64 string (how JSON carries a const buffer's data).
function base64Bytes(s) {
  const bin = atob(s);
  const out = new Uint8Array(bin.length);
  for (let i = 0; i < bin.length; i++) out[i] = bin.charCodeAt(i);
  return out;
}

const round4 = (n) => Math.ceil(n / 4) * 4;

// loadBundle loads a bundle and returns a Model.
//
// source: the bundle's base URL, or {fetch(path) -> Promise<Response>}.
// opts:
//   gpu           a GPU object (navigator.gpu, or Dawn's create([])); default navigator.gpu
//   device        an existing GPUDevice (then gpu is not used)
//   publicKeyJwk  verify manifest.sig with this key before anything else
//   cache         a Cache (or true: the Cache API cache integrity.CACHE_NAME);
//                 cached copies are re-verified before use
//   onProgress    called with {phase: 'manifest'|'download'|'compile'|'ready', loaded, total, file}
export async function loadBundle(source, opts = {}) {
  const src = makeFetcher(source);
  const progress = opts.onProgress || (() => {});
  progress({ phase: 'manifest', loaded: 0, total: 0, file: 'manifest.json' });
  const manifestBytes = await fetchBytes(src, 'manifest.json');
  if (opts.publicKeyJwk) {
    const sig = await fetchBytes(src, 'manifest.sig');
    // Throws integrity.SmeltIntegrityError naming manifest.sig or manifest.json.
    await integrity.verifyManifest(manifestBytes, sig, opts.publicKeyJwk);
  }
  let manifest;
  try {
    manifest = JSON.parse(new TextDecoder().decode(manifestBytes));
  } catch (e) {
    throw new SmeltError(`not JSON: ${e.message}`, 'manifest.json');
  }
  const program = manifest.program;
  if (!program || program.version !== PROGRAM_VERSION) {
    throw new SmeltError(`no dispatch program of version ${PROGRAM_VERSION} (run smelt codegen on the bundle)`, 'manifest.json');
  }
  const files = new Map((manifest.files || []).map((f) => [f.path, f]));
  const fileEntry = (path) => {
    const f = files.get(path);
    if (!f) throw new SmeltError('not listed in the manifest', path);
    return f;
  };
  // getFile fetches a listed file and checks its integrity and size
  // (integrity.js throws SmeltIntegrityError naming the file on mismatch).
  const getFile = async (path, onBytes) => {
    const f = fileEntry(path);
    const bytes = await integrity.fetchVerified(src.baseUrl, path, f.integrity, { fetch: src.fetchImpl, cache: opts.cache });
    if (bytes.byteLength !== f.nbytes) {
      throw new integrity.SmeltIntegrityError(path, `smelt: integrity mismatch for ${path} (${bytes.byteLength} bytes, want ${f.nbytes})`);
    }
    if (onBytes) onBytes(bytes.byteLength);
    return bytes;
  };

  const device = opts.device || (await requestDevice(opts.gpu || globalThis.navigator?.gpu, manifest.requirements || {}));
  const errors = [];
  if (device.addEventListener) {
    device.addEventListener('uncapturederror', (ev) => errors.push(ev.error.message));
  }

  // Tokenizer and kernels.
  let tokenizer = null;
  if (manifest.tokenizer) {
    // Imported only for bundles that have a tokenizer.
    const { loadTokenizer } = await import('./tokenizer.js');
    tokenizer = loadTokenizer(new TextDecoder().decode(await getFile(manifest.tokenizer)));
  }

  // Which shards hold the weights the program binds, and how many bytes to fetch.
  const tensors = new Map((manifest.tensors || []).map((t) => [t.name, t]));
  const shardIdx = new Set();
  for (const w of program.weights) {
    const t = tensors.get(w.tensor);
    if (!t) throw new SmeltError(`program binds tensor "${w.tensor}", which the manifest does not list`, 'manifest.json');
    for (const p of t.parts && t.parts.length ? t.parts : [{ shard: t.shard }]) shardIdx.add(p.shard);
  }
  const shardList = [...shardIdx].sort((a, b) => a - b);
  const kernelFiles = manifest.kernels || [];
  let total = 0;
  for (const s of shardList) total += fileEntry(manifest.shards[s]).nbytes;
  for (const k of kernelFiles) total += fileEntry(k.path).nbytes;
  let loaded = 0;
  const bump = (file) => (n) => {
    loaded += n;
    progress({ phase: 'download', loaded, total, file });
  };

  // Shards: one GPU buffer each, padded to a multiple of 4 bytes.
  const shardBufs = new Map();
  await Promise.all(shardList.map(async (s) => {
    const path = manifest.shards[s];
    const bytes = await getFile(path, bump(path));
    const buf = device.createBuffer({ label: path, size: Math.max(4, round4(bytes.byteLength)), usage: GPUBufferUsage.STORAGE | GPUBufferUsage.COPY_DST | GPUBufferUsage.COPY_SRC });
    writePadded(device, buf, bytes);
    shardBufs.set(s, buf);
  }));

  // Weights: bound in place in their shard when aligned, else copied into
  // their own buffer (split tensors, or a misaligned layout).
  const align = device.limits.minStorageBufferOffsetAlignment || 256;
  const weightLoc = new Map();
  for (const w of program.weights) {
    const t = tensors.get(w.tensor);
    const parts = t.parts && t.parts.length ? t.parts : [{ shard: t.shard, offset: t.offset, nbytes: t.nbytes }];
    if (parts.length === 1 && parts[0].offset % align === 0) {
      weightLoc.set(w.tensor, { buffer: shardBufs.get(parts[0].shard), offset: parts[0].offset, nbytes: t.nbytes });
      continue;
    }
    const own = device.createBuffer({ label: w.tensor, size: Math.max(4, round4(t.nbytes)), usage: GPUBufferUsage.STORAGE | GPUBufferUsage.COPY_DST });
    const enc = device.createCommandEncoder();
    let at = 0;
    for (const p of parts) {
      // copyBufferToBuffer needs 4-byte multiples; shards are padded to 4.
      const n = round4(p.nbytes);
      const src = shardBufs.get(p.shard);
      if (p.offset % 4 !== 0 || at % 4 !== 0) throw new SmeltError(`tensor "${w.tensor}" part at offset ${p.offset} is not 4-byte aligned`, manifest.shards[p.shard]);
      enc.copyBufferToBuffer(src, p.offset, own, at, Math.min(n, src.size - p.offset, own.size - at));
      at += p.nbytes;
    }
    device.queue.submit([enc.finish()]);
    weightLoc.set(w.tensor, { buffer: own, offset: 0, nbytes: t.nbytes });
  }

  // Kernels: explicit layouts from the manifest's binding list.
  const pipelines = new Map();
  let compiled = 0;
  await Promise.all(kernelFiles.map(async (k) => {
    const code = new TextDecoder().decode(await getFile(k.path, bump(k.path)));
    const module = device.createShaderModule({ label: k.name, code });
    const layout = device.createBindGroupLayout({
      label: k.name,
      entries: (k.bindings || []).map((b) => ({
        binding: b.binding,
        visibility: GPUShaderStage.COMPUTE,
        buffer: { type: b.type },
      })),
    });
    let pipeline;
    try {
      pipeline = await device.createComputePipelineAsync({
        label: k.name,
        layout: device.createPipelineLayout({ bindGroupLayouts: [layout] }),
        compute: { module, entryPoint: k.entry },
      });
    } catch (e) {
      let detail = '';
      if (module.getCompilationInfo) {
        const info = await module.getCompilationInfo();
        detail = info.messages.map((m) => `${m.type} at ${m.lineNum}:${m.linePos}: ${m.message}`).join('; ');
      }
      throw new SmeltError(`pipeline creation failed: ${detail || e.message}`, k.path);
    }
    pipelines.set(k.name, { pipeline, layout });
    compiled++;
    progress({ phase: 'compile', loaded: compiled, total: kernelFiles.length, file: k.path });
  }));

  // Program buffers.
  const usage = BUFFER_USAGE();
  const bufs = new Map();
  for (const b of program.buffers) {
    if (!(b.kind in usage)) throw new SmeltError(`program buffer "${b.name}" has unknown kind "${b.kind}"`, 'manifest.json');
    const buf = device.createBuffer({ label: b.name, size: b.size, usage: usage[b.kind] });
    if (b.kind === 'const') {
      const data = base64Bytes(b.data || '');
      if (data.byteLength !== b.size) throw new SmeltError(`const buffer "${b.name}" has ${data.byteLength} bytes of data, want ${b.size}`, 'manifest.json');
      device.queue.writeBuffer(buf, 0, data);
    }
    bufs.set(b.name, buf);
  }

  // Bind groups, made once per step.
  const prepare = (name, pass) => {
    if (!pass) return null;
    return {
      rows: pass.rows,
      steps: pass.steps.map((s, i) => {
        const p = pipelines.get(s.kernel);
        if (!p) throw new SmeltError(`pass ${name} step ${i} (${s.node}) uses kernel "${s.kernel}", which the manifest does not list`, 'manifest.json');
        const entries = s.bindings.map((b, j) => {
          if (b.buffer) {
            const buf = bufs.get(b.buffer);
            if (!buf) throw new SmeltError(`pass ${name} step ${i}: unknown buffer "${b.buffer}"`, 'manifest.json');
            return { binding: j, resource: { buffer: buf, offset: b.offset, size: b.size } };
          }
          const w = weightLoc.get(b.tensor);
          if (!w) throw new SmeltError(`pass ${name} step ${i}: tensor "${b.tensor}" is not in the program's weight list`, 'manifest.json');
          if (b.offset + b.size > round4(w.nbytes)) throw new SmeltError(`pass ${name} step ${i}: binding [${b.offset}, +${b.size}) outside tensor "${b.tensor}" of ${w.nbytes} bytes`, 'manifest.json');
          return { binding: j, resource: { buffer: w.buffer, offset: w.offset + b.offset, size: b.size } };
        });
        const group = device.createBindGroup({ label: `${name}:${s.node}`, layout: p.layout, entries });
        return { pipeline: p.pipeline, group, workgroups: s.workgroups, node: s.node, kernel: s.kernel };
      }),
    };
  };
  const passes = {
    prefill: prepare('prefill', program.prefill),
    decode: prepare('decode', program.decode),
    greedy: prepare('greedy', program.greedy),
    sample: prepare('sample', program.sample),
  };
  await device.queue.onSubmittedWorkDone();
  if (errors.length) throw new SmeltError(`WebGPU errors while loading: ${errors.join('; ')}`);
  progress({ phase: 'ready', loaded: total, total, file: '' });
  return new Model({ manifest, program, device, tokenizer, bufs, passes, errors });
}

function writePadded(device, buf, bytes) {
  const n = bytes.byteLength;
  const whole = n & ~3;
  const CHUNK = 16 << 20;
  for (let off = 0; off < whole; off += CHUNK) {
    const len = Math.min(CHUNK, whole - off);
    device.queue.writeBuffer(buf, off, bytes.buffer, bytes.byteOffset + off, len);
  }
  if (n !== whole) {
    const tail = new Uint8Array(4);
    tail.set(bytes.subarray(whole));
    device.queue.writeBuffer(buf, whole, tail);
  }
}

const DEFAULT_LIMITS = {
  maxStorageBufferBindingSize: 128 << 20,
  maxComputeWorkgroupStorageSize: 16384,
  maxComputeInvocationsPerWorkgroup: 256,
  maxBufferSize: 256 << 20,
};

async function requestDevice(gpu, req) {
  if (!gpu) throw new SmeltError('WebGPU is not available (no navigator.gpu and no gpu option)');
  const adapter = await gpu.requestAdapter({ powerPreference: 'high-performance' });
  if (!adapter) throw new SmeltError('no WebGPU adapter');
  const requiredFeatures = [];
  for (const f of req.features || []) {
    if (!adapter.features.has(f)) throw new SmeltError(`the bundle needs the WebGPU feature "${f}", which this adapter lacks`);
    requiredFeatures.push(f);
  }
  const requiredLimits = {};
  for (const [k, v] of Object.entries(req.limits || {})) {
    if (adapter.limits[k] < v) throw new SmeltError(`the bundle needs limit ${k} >= ${v}; this adapter offers ${adapter.limits[k]}`);
    requiredLimits[k] = v;
  }
  // Ask for larger buffers when the adapter has them (KV caches, shards).
  for (const k of ['maxBufferSize', 'maxStorageBufferBindingSize']) {
    if (!(k in requiredLimits) && adapter.limits[k] > DEFAULT_LIMITS[k]) requiredLimits[k] = adapter.limits[k];
  }
  return adapter.requestDevice({ requiredFeatures, requiredLimits });
}

// Model is a loaded bundle with one sequence (KV cache) at a time.
export class Model {
  constructor(s) {
    Object.assign(this, s);
    this.pos = 0;
    const p = this.program;
    this.stepBuf = this.bufs.get(p.io.step);
    this.idsBuf = this.bufs.get(p.io.ids);
    this.logitsBuf = this.bufs.get(p.io.logits);
    this.tokenBuf = this.bufs.get(p.io.token);
    this.paramsBuf = p.io.sample_params ? this.bufs.get(p.io.sample_params) : null;
    this.tokenRead = this.device.createBuffer({ label: 'token-read', size: 16, usage: GPUBufferUsage.MAP_READ | GPUBufferUsage.COPY_DST });
    this.logitsRead = null;
    this.busy = null;
  }

  // contextLength is the KV cache capacity in tokens.
  get contextLength() { return this.program.context_length; }

  // reset empties the KV cache (positions restart at 0).
  reset() { this.pos = 0; }

  // encode tokenizes text the way generation does (and smelt generate):
  // with the tokenizer's special tokens (BOS first for Llama-style files).
  encode(text) {
    if (!this.tokenizer) throw new SmeltError('the bundle has no tokenizer');
    const ids = Array.from(this.tokenizer.encode(text, { addSpecial: true }));
    if (ids.length === 0) throw new SmeltError('the prompt is empty and the tokenizer adds no BOS');
    return ids;
  }

  // textDecoder returns {push(id) -> string, flush() -> string} turning
  // generated ids into text as smelt generate does: the decoder sees the
  // prompt first (so the first token keeps its leading space), a token
  // that ends inside a UTF-8 sequence gives "" until it completes, and an
  // end-of-sequence id that stops generation gives "".
  textDecoder(promptIds, { ignoreEOS = false } = {}) {
    if (!this.tokenizer) throw new SmeltError('the bundle has no tokenizer');
    const dec = this.tokenizer.streamDecoder();
    for (const id of promptIds) dec.push(id);
    const eos = new Set(this.program.eos || []);
    return {
      push: (id) => (!ignoreEOS && eos.has(id) ? '' : dec.push(id)),
      flush: () => dec.flush(),
    };
  }

  // _encodePass records one forward pass over ids at this.pos into enc.
  _record(cp, name, rows) {
    const pass = this.passes[name];
    let bi = pass.rows.findIndex((r) => r >= rows);
    if (bi < 0) throw new SmeltError(`pass ${name}: ${rows} rows exceed the largest bucket ${pass.rows[pass.rows.length - 1]}`);
    for (const s of pass.steps) {
      cp.setPipeline(s.pipeline);
      cp.setBindGroup(0, s.group);
      const [x, y, z] = s.workgroups[bi];
      cp.dispatchWorkgroups(x, y, z);
    }
  }

  _forward(enc, ids) {
    const T = ids.length;
    const q = this.device.queue;
    if (this.pos + T > this.contextLength) {
      throw new SmeltError(`${this.pos + T} tokens exceed the context length ${this.contextLength}`);
    }
    q.writeBuffer(this.stepBuf, 0, new Uint32Array([T, this.pos, 0, 0]));
    q.writeBuffer(this.idsBuf, 0, new Uint32Array(ids));
    const cp = enc.beginComputePass();
    this._record(cp, T === 1 ? 'decode' : 'prefill', T);
    cp.end();
    this.pos += T;
  }

  // _run feeds ids (in chunks of max_rows), then samples per opts and
  // returns the token id; with wantLogits it returns the last logits too.
  async _run(ids, sampling, wantLogits) {
    if (this.busy) await this.busy;
    let release;
    this.busy = new Promise((r) => { release = r; });
    try {
      const max = this.program.max_rows;
      for (let i = 0; i < ids.length; i += max) {
        const chunk = ids.slice(i, i + max);
        const last = i + max >= ids.length;
        const enc = this.device.createCommandEncoder();
        // Each chunk's step uniform must be visible to its own dispatches:
        // writeBuffer is ordered before the submit that follows it.
        this._forward(enc, chunk);
        if (!last) {
          this.device.queue.submit([enc.finish()]);
          continue;
        }
        let token = -1;
        if (sampling) {
          const name = this._samplePass(sampling);
          const cp = enc.beginComputePass();
          this._record(cp, name, 1);
          cp.end();
          enc.copyBufferToBuffer(this.tokenBuf, 0, this.tokenRead, 0, 16);
        }
        let logits = null;
        if (wantLogits) {
          if (!this.logitsRead) {
            this.logitsRead = this.device.createBuffer({ label: 'logits-read', size: this.logitsBuf.size, usage: GPUBufferUsage.MAP_READ | GPUBufferUsage.COPY_DST });
          }
          enc.copyBufferToBuffer(this.logitsBuf, 0, this.logitsRead, 0, this.logitsBuf.size);
        }
        this.device.queue.submit([enc.finish()]);
        if (sampling) {
          await this.tokenRead.mapAsync(GPUMapMode.READ);
          token = new Uint32Array(this.tokenRead.getMappedRange())[0];
          this.tokenRead.unmap();
        }
        if (wantLogits) {
          await this.logitsRead.mapAsync(GPUMapMode.READ);
          logits = new Float32Array(this.logitsRead.getMappedRange().slice(0, 4 * this.program.vocab_size));
          this.logitsRead.unmap();
        }
        if (this.errors.length) throw new SmeltError(`WebGPU error: ${this.errors.join('; ')}`);
        return { token, logits };
      }
      throw new SmeltError('no tokens to run');
    } finally {
      this.busy = null;
      release();
    }
  }

  // _samplePass writes the sample uniform and picks the pass to run.
  _samplePass(s) {
    const greedy = !(s.temperature > 0) || s.topK === 1 || !this.passes.sample;
    if (greedy) return 'greedy';
    const maxK = this.program.sample_max_k;
    const topK = s.topK > 0 ? Math.min(s.topK, maxK) : maxK;
    const topP = s.topP > 0 && s.topP < 1 ? s.topP : 1;
    const buf = new ArrayBuffer(16);
    new Float32Array(buf, 0, 1)[0] = s.temperature;
    new Uint32Array(buf, 4, 1)[0] = topK;
    new Float32Array(buf, 8, 1)[0] = topP;
    new Float32Array(buf, 12, 1)[0] = s.rand();
    this.device.queue.writeBuffer(this.paramsBuf, 0, buf);
    return 'sample';
  }

  // logits runs ids from position 0 (resetting the cache) and returns the
  // logits of the last position as a Float32Array of vocab_size values.
  async logits(ids) {
    this.reset();
    const { logits } = await this._run(ids, null, true);
    return logits;
  }

  // prefill appends ids to the sequence and returns the next token chosen
  // per sampling ({temperature, topK, topP, rand}; greedy by default).
  async prefill(ids, sampling = { temperature: 0 }) {
    return (await this._run(ids, normSampling(sampling), false)).token;
  }

  // decode appends one token and returns the next one.
  async decode(id, sampling = { temperature: 0 }) {
    return (await this._run([id], normSampling(sampling), false)).token;
  }

  // generateIds runs a prompt of ids and yields up to maxTokens new ids,
  // stopping after an EOS id unless opts.ignoreEOS. opts.onStep, when set,
  // is called after every step with {token, logits, rand}: the logits the
  // sampler saw (read back only then, for tests and debugging) and the
  // uniform draw of the sample pass (null for a greedy step).
  async *generateIds(promptIds, opts = {}) {
    const s = normSampling(opts);
    const maxTokens = opts.maxTokens ?? 32;
    const eos = new Set(this.program.eos || []);
    this.reset();
    if (promptIds.length === 0) throw new SmeltError('empty prompt');
    if (maxTokens <= 0) return;
    const step = async (ids) => {
      s.last = null;
      const r = await this._run(ids, s, !!opts.onStep);
      if (opts.onStep) opts.onStep({ token: r.token, logits: r.logits, rand: s.last });
      return r.token;
    };
    let id = await step(promptIds);
    for (let n = 1; ; n++) {
      yield id;
      if ((!opts.ignoreEOS && eos.has(id)) || n >= maxTokens) return;
      id = await step([id]);
    }
  }

  // stream tokenizes prompt and yields the text of each new token as it is
  // generated (see textDecoder), then what the decoder held back. opts:
  // maxTokens, temperature, topK, topP, seed, ignoreEOS, onToken(id, text).
  async *stream(prompt, opts = {}) {
    const ids = this.encode(prompt);
    const dec = this.textDecoder(ids, opts);
    for await (const id of this.generateIds(ids, opts)) {
      const piece = dec.push(id);
      if (opts.onToken) opts.onToken(id, piece);
      yield piece;
    }
    const rest = dec.flush();
    if (rest) yield rest;
  }

  // generate runs stream to the end and returns {promptIds, ids, text,
  // prefillMs, decodeMs} (prefillMs ends at the first token).
  async generate(prompt, opts = {}) {
    const promptIds = this.encode(prompt);
    const dec = this.textDecoder(promptIds, opts);
    const t0 = performance.now();
    const ids = [];
    let first = 0;
    let text = '';
    for await (const id of this.generateIds(promptIds, opts)) {
      if (ids.length === 0) first = performance.now();
      ids.push(id);
      const piece = dec.push(id);
      text += piece;
      if (opts.onToken) opts.onToken(id, piece);
    }
    text += dec.flush();
    const t1 = performance.now();
    return { promptIds, ids, text, prefillMs: first - t0, decodeMs: t1 - first };
  }

  // destroy frees the GPU buffers (the device stays).
  destroy() {
    for (const b of this.bufs.values()) b.destroy();
    this.tokenRead.destroy();
    if (this.logitsRead) this.logitsRead.destroy();
  }
}

// normSampling fills in sampling options: temperature (0: greedy), topK
// (0: the bundle's sample_max_k), topP (1: all), and rand, the uniform
// generator in [0, 1) — by default mulberry32 seeded with the low 32 bits of
// seed. The last draw is kept in .last.
function normSampling(o = {}) {
  if (o.normalized) return o;
  const temperature = o.temperature ?? 0;
  const base = o.rand || mulberry32(o.seed ?? 0);
  const s = { normalized: true, temperature, topK: o.topK ?? 0, topP: o.topP ?? 1, last: null };
  s.rand = () => (s.last = base());
  return s;
}
