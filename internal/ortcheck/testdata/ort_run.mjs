// ort_run.mjs: runs ONNX models with onnxruntime-node (CPU execution
// provider) for smelt's Go tests (package internal/ortcheck).
//
// Usage: node ort_run.mjs NODE_MODULES_DIR REQUEST_JSON
//
// REQUEST_JSON: {"jobs": [{"model": PATH, "inputs": [{"name", "type",
// "dims", "file"}], "outputs": [NAME, ...], "prefix": PATH}]}; each input's
// data is the raw little-endian bytes in "file". For job i, output j is
// written to PREFIX + "." + j + ".bin" and the reply (stdout, JSON) lists
// {"outputs": [{"name", "type", "dims", "file"}]} per job, plus the
// onnxruntime-node version.
import { readFileSync, writeFileSync } from 'node:fs';
import { createRequire } from 'node:module';
import { join } from 'node:path';

const [nodeModules, requestPath] = process.argv.slice(2);
const require = createRequire(join(nodeModules, 'noop.js'));
const ort = require('onnxruntime-node');
const { version } = require('onnxruntime-node/package.json');

const arrays = {
  float32: Float32Array, float16: Uint16Array, int64: BigInt64Array, int32: Int32Array,
  uint8: Uint8Array, int8: Int8Array, uint32: Uint32Array,
};

function view(type, buf) {
  const A = arrays[type];
  if (!A) throw new Error(`ort_run: unsupported tensor type ${type}`);
  const copy = new Uint8Array(buf.length);
  copy.set(buf);
  return new A(copy.buffer, 0, copy.length / A.BYTES_PER_ELEMENT);
}

const req = JSON.parse(readFileSync(requestPath, 'utf8'));
const reply = { version, jobs: [] };
for (const job of req.jobs) {
  const session = await ort.InferenceSession.create(job.model, {
    executionProviders: ['cpu'],
    intraOpNumThreads: 1,
    interOpNumThreads: 1,
    logSeverityLevel: 3,
  });
  const feeds = {};
  for (const inp of job.inputs) {
    feeds[inp.name] = new ort.Tensor(inp.type, view(inp.type, readFileSync(inp.file)), inp.dims);
  }
  const res = await session.run(feeds, job.outputs);
  const outs = job.outputs.map((name, j) => {
    const t = res[name];
    const file = `${job.prefix}.${j}.bin`;
    writeFileSync(file, new Uint8Array(t.data.buffer, t.data.byteOffset, t.data.byteLength));
    return { name, type: t.type, dims: t.dims.map(Number), file };
  });
  await session.release();
  reply.jobs.push({ outputs: outs });
}
process.stdout.write(JSON.stringify(reply));
