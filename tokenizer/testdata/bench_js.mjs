// Encode throughput of codegen/runtime/tokenizer.js (MB/s of input text),
// the JS counterpart of BenchmarkEncode:
//
//   node tokenizer/testdata/bench_js.mjs ../shared/models/ref29m/tokenizer.json ../shared/models/data/ref29m_calib.txt
import { loadTokenizer } from '../../codegen/runtime/tokenizer.js';
import { readFileSync } from 'node:fs';

const [tokPath, textPath, runs = '10'] = process.argv.slice(2);
const tok = loadTokenizer(readFileSync(tokPath, 'utf8'));
const text = readFileSync(textPath, 'utf8');
const bytes = Buffer.byteLength(text);
let best = Infinity;
let n = 0;
for (let i = 0; i < Number(runs); i++) {
  const t0 = performance.now();
  n = tok.encode(text).length;
  best = Math.min(best, performance.now() - t0);
}
console.log(`${tokPath}: ${bytes} bytes -> ${n} ids, best of ${runs}: ${best.toFixed(1)} ms, ${(bytes / 1e3 / best).toFixed(2)} MB/s`);
