// runner.mjs: a long-lived WebGPU job server for Go tests (package dawn).
//
// It reads JSON lines on stdin and answers one JSON line per job on stdout,
// in order. The webgpu module (Dawn for Node) is imported from the absolute
// path in $SMELT_WEBGPU_MODULE so this file may live anywhere.
//
// Jobs:
//   {"id":1,"op":"info"}
//     -> {"id":1,"ok":true,"adapter":{...},"features":[...],"limits":{...}}
//   {"id":2,"op":"validate","kernels":[{"code":"...","entry":"main"}],"features":["shader-f16"]}
//     Compiles each module on Dawn's null backend (Tint) and creates its
//     compute pipeline with the default WebGPU limits.
//     -> {"id":2,"ok":true,"results":[{"errors":["..."]}, ...]}
//   {"id":3,"op":"run","kernels":[{"code":"...","entry":"main"}],
//    "buffers":[{"size":64,"data":"<base64>","uniform":false}],
//    "dispatches":[{"kernel":0,"bindings":[0,1,2],"workgroups":[1,1,1]}],
//    "read":[1],"repeat":1,"limits":"default"|"adapter"}
//     Runs the dispatches in order (repeat times, timing the repeats) on the
//     Vulkan device and reads back the listed buffers.
//     -> {"id":3,"ok":true,"outputs":["<base64>"],"ms":1.23}
// Errors: {"id":n,"ok":false,"error":"..."}.
import { createInterface } from 'node:readline';

const mod = await import(process.env.SMELT_WEBGPU_MODULE);
const { create, globals } = mod;
Object.assign(globalThis, globals);

// Keep every create() result referenced for the process lifetime: when
// one is garbage-collected while its devices live, Node aborts.
const keep = [];

async function makeDevice(flags, wantLimits) {
  const gpu = create(flags);
  keep.push(gpu);
  const adapter = await gpu.requestAdapter();
  if (!adapter) throw new Error(`no WebGPU adapter for flags ${JSON.stringify(flags)}`);
  const requiredFeatures = ['shader-f16', 'subgroups', 'timestamp-query'].filter((f) => adapter.features.has(f));
  const requiredLimits = {};
  if (wantLimits === 'adapter') {
    for (const k of ['maxStorageBufferBindingSize', 'maxBufferSize', 'maxComputeWorkgroupStorageSize',
      'maxComputeInvocationsPerWorkgroup', 'maxComputeWorkgroupSizeX', 'maxComputeWorkgroupSizeY',
      'maxComputeWorkgroupSizeZ', 'maxStorageBuffersPerShaderStage', 'maxComputeWorkgroupsPerDimension']) {
      requiredLimits[k] = adapter.limits[k];
    }
  }
  const device = await adapter.requestDevice({ requiredFeatures, requiredLimits });
  const state = { adapter, device, lost: null, uncaptured: [] };
  device.lost.then((info) => { state.lost = `${info.reason}: ${info.message}`; });
  device.addEventListener('uncapturederror', (ev) => { state.uncaptured.push(ev.error.message); });
  return state;
}

const devices = {};
async function getDevice(kind) {
  if (!devices[kind]) {
    if (kind === 'null') devices[kind] = makeDevice(['backend=null'], 'default');
    else devices[kind] = makeDevice([], kind);
  }
  return devices[kind];
}

function b64ToBytes(s) {
  const b = Buffer.from(s, 'base64');
  return new Uint8Array(b.buffer, b.byteOffset, b.length);
}

function adapterInfo(a) {
  const i = a.info || {};
  return { vendor: i.vendor, architecture: i.architecture, device: i.device, description: i.description };
}

async function info(job) {
  const st = await getDevice(job.limits || 'default');
  const limits = {};
  for (const k in st.device.limits) limits[k] = st.device.limits[k];
  const alimits = {};
  for (const k in st.adapter.limits) alimits[k] = st.adapter.limits[k];
  return {
    adapter: adapterInfo(st.adapter), features: [...st.device.features].sort(), limits,
    adapterLimits: alimits,
  };
}

async function compile(device, k) {
  const errors = [];
  device.pushErrorScope('validation');
  const module = device.createShaderModule({ code: k.code });
  const ci = await module.getCompilationInfo();
  for (const m of ci.messages) {
    if (m.type === 'error') errors.push(`${m.lineNum}:${m.linePos}: ${m.message}`);
  }
  let pipeline = null;
  if (errors.length === 0) {
    try {
      pipeline = await device.createComputePipelineAsync({
        layout: 'auto', compute: { module, entryPoint: k.entry || 'main' },
      });
    } catch (e) {
      errors.push(`pipeline: ${e.message}`);
    }
  }
  const scopeErr = await device.popErrorScope();
  if (scopeErr && errors.length === 0) errors.push(scopeErr.message);
  return { errors, pipeline };
}

async function validate(job) {
  const st = await getDevice('null');
  const results = [];
  for (const k of job.kernels) {
    const { errors } = await compile(st.device, k);
    results.push({ errors });
  }
  return { results };
}

async function run(job) {
  const st = await getDevice(job.limits || 'default');
  const { device } = st;
  if (st.lost) throw new Error(`device lost: ${st.lost}`);
  st.uncaptured.length = 0;
  st.pipelines ??= new Map();
  const pipes = [];
  for (const [i, k] of job.kernels.entries()) {
    // Pipelines are cached by source: lavapipe compiles each one at its
    // first dispatch, which costs far more than the dispatches of a test.
    const key = `${k.entry || 'main'}\n${k.code}`;
    let pipeline = st.pipelines.get(key);
    if (!pipeline) {
      const c = await compile(device, k);
      if (c.errors.length) throw new Error(`kernel ${i}: ${c.errors.join('; ')}`);
      pipeline = c.pipeline;
      st.pipelines.set(key, pipeline);
    }
    pipes.push(pipeline);
  }
  device.pushErrorScope('validation');
  device.pushErrorScope('out-of-memory');
  const bufs = job.buffers.map((b) => {
    const size = Math.max(4, Math.ceil(b.size / 4) * 4);
    const usage = (b.uniform ? GPUBufferUsage.UNIFORM : GPUBufferUsage.STORAGE)
      | GPUBufferUsage.COPY_DST | GPUBufferUsage.COPY_SRC;
    const buf = device.createBuffer({ size, usage });
    if (b.data) {
      const bytes = b64ToBytes(b.data);
      const padded = new Uint8Array(Math.ceil(bytes.length / 4) * 4);
      padded.set(bytes);
      device.queue.writeBuffer(buf, 0, padded);
    }
    return buf;
  });
  const groups = job.dispatches.map((d) => device.createBindGroup({
    layout: pipes[d.kernel].getBindGroupLayout(0),
    entries: d.bindings.map((bi, i) => ({ binding: i, resource: { buffer: bufs[bi] } })),
  }));
  const encodeAll = () => {
    const enc = device.createCommandEncoder();
    for (const [i, d] of job.dispatches.entries()) {
      const pass = enc.beginComputePass();
      pass.setPipeline(pipes[d.kernel]);
      pass.setBindGroup(0, groups[i]);
      pass.dispatchWorkgroups(...d.workgroups);
      pass.end();
    }
    return enc.finish();
  };
  device.queue.submit([encodeAll()]);
  await device.queue.onSubmittedWorkDone();
  let ms = 0;
  const repeat = job.repeat || 0;
  if (repeat > 0) {
    const t0 = performance.now();
    for (let r = 0; r < repeat; r++) device.queue.submit([encodeAll()]);
    await device.queue.onSubmittedWorkDone();
    ms = (performance.now() - t0) / repeat;
  }
  const reads = (job.read || []).map((bi) => {
    const src = bufs[bi];
    const dst = device.createBuffer({ size: src.size, usage: GPUBufferUsage.MAP_READ | GPUBufferUsage.COPY_DST });
    return { src, dst };
  });
  const enc = device.createCommandEncoder();
  for (const r of reads) enc.copyBufferToBuffer(r.src, 0, r.dst, 0, r.src.size);
  device.queue.submit([enc.finish()]);
  const outputs = [];
  for (const r of reads) {
    await r.dst.mapAsync(GPUMapMode.READ);
    outputs.push(Buffer.from(r.dst.getMappedRange().slice(0)).toString('base64'));
    r.dst.unmap();
    r.dst.destroy();
  }
  const oom = await device.popErrorScope();
  const val = await device.popErrorScope();
  for (const b of bufs) b.destroy();
  const errs = [oom, val].filter(Boolean).map((e) => e.message).concat(st.uncaptured);
  if (st.lost) errs.push(`device lost: ${st.lost}`);
  if (errs.length) throw new Error(errs.join('; '));
  return { outputs, ms };
}

const ops = { info, validate, run };
const rl = createInterface({ input: process.stdin, crlfDelay: Infinity });
for await (const line of rl) {
  if (!line.trim()) continue;
  let id = null;
  let reply;
  try {
    const job = JSON.parse(line);
    id = job.id;
    const f = ops[job.op];
    if (!f) throw new Error(`unknown op ${JSON.stringify(job.op)}`);
    reply = { id, ok: true, ...(await f(job)) };
  } catch (e) {
    reply = { id, ok: false, error: String(e && e.message ? e.message : e) };
  }
  process.stdout.write(JSON.stringify(reply) + '\n');
}
process.exit(0);
