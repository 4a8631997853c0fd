// tokenizer.js: Hugging Face tokenizer.json (BPE) for smelt's runtime, in
// the browser and in Node. Dependency-free ES module. It implements the
// same subset, with the same semantics, as smelt's Go package tokenizer
// (tokenizer/doc.go is the specification; a Go test runs this file under
// Node and compares ids with the Go tokenizer):
//
//   added tokens   matched in the raw text first (leftmost-longest,
//                  single_word, lstrip, rstrip); a literal "<s>" is BOS
//   normalizers    Sequence, Prepend, Replace (String/Regex), Strip, Lowercase
//   pre-tokenizers Sequence, ByteLevel, Split, Metaspace, Digits, WhitespaceSplit
//   model          BPE: ignore_merges, byte_fallback, unk/fuse_unk, merges
//                  lowest rank first, leftmost among equals
//   decoders       Sequence, Replace, ByteFallback, Fuse, Strip, ByteLevel, Metaspace
//   post-processor TemplateProcessing (single), ByteLevel, Sequence
//
// Anything else throws at load, naming the component type.
//
// Regexes are Oniguruma patterns in tokenizer.json; they run here as
// JavaScript regexes with the "u" flag after translation: (?i:...) groups
// are expanded to [xX] letter classes (no inline modifiers in older
// engines), and \s, \S, \d, \w get their Unicode meanings (\s is
// [\t-\r\x85\p{Z}], \d is \p{Nd}), as in Oniguruma and Go's regexp2.
//
// Usage:
//
//   import { loadTokenizer } from './tokenizer.js';
//   const tok = loadTokenizer(await (await fetch('tokenizer.json')).text());
//   const ids = tok.encode('Once upon a time', { addSpecial: true });
//   const dec = tok.streamDecoder();
//   for (const id of ids) out += dec.push(id);   // text as it completes
//   out += dec.flush();

// TokenizerError is thrown for unsupported or malformed tokenizer.json files
// and for text that is not well-formed Unicode.
export class TokenizerError extends Error {
  constructor(message) {
    super('tokenizer: ' + message);
    this.name = 'TokenizerError';
  }
}

// loadTokenizer parses tokenizer.json text. It returns the Tokenizer
// directly (await works on it too).
export function loadTokenizer(jsonText) {
  let spec;
  try {
    spec = JSON.parse(jsonText);
  } catch (e) {
    throw new TokenizerError('tokenizer.json: not JSON: ' + e.message);
  }
  return new Tokenizer(spec);
}

const isNull = (x) => x === undefined || x === null;

// ---------------------------------------------------------------- regexes

// translateRegex turns an Oniguruma pattern into a JavaScript "u" regex
// source with the same meaning for the constructs tokenizers use.
function translateRegex(src) {
  const S_IN = '\\t-\\r\\x85\\p{Z}';
  let out = '';
  let inClass = false;
  let ci = 0; // depth inside (?i: ... ) groups, counted by parentheses
  const ciStack = [];
  let depth = 0;
  for (let i = 0; i < src.length; i++) {
    const c = src[i];
    if (c === '\\') {
      const n = src[i + 1];
      i++;
      if (n === 's') out += inClass ? S_IN : `[${S_IN}]`;
      else if (n === 'S' && !inClass) out += `[^${S_IN}]`;
      else if (n === 'd') out += inClass ? '\\p{Nd}' : '[\\p{Nd}]';
      else if (n === 'D' && !inClass) out += '[^\\p{Nd}]';
      else if (n === 'w') out += inClass ? '\\p{L}\\p{Mn}\\p{Nd}\\p{Pc}' : '[\\p{L}\\p{Mn}\\p{Nd}\\p{Pc}]';
      else if (n === 'W' && !inClass) out += '[^\\p{L}\\p{Mn}\\p{Nd}\\p{Pc}]';
      else if (n === 'p' || n === 'P') {
        // \p{L} or \pL
        if (src[i + 1] === '{') {
          const end = src.indexOf('}', i);
          out += '\\' + n + src.slice(i + 1, end + 1);
          i = end;
        } else {
          out += '\\' + n + '{' + src[i + 1] + '}';
          i++;
        }
      } else if (n === undefined) throw new TokenizerError(`regex ${JSON.stringify(src)} ends with a backslash`);
      else if (/[A-Za-z0-9]/.test(n)) out += '\\' + n; // \n \t \r \x.. \u.. \b
      else if ('^$\\.*+?()[]{}|/'.includes(n) || (inClass && n === '-')) out += '\\' + n;
      else out += n; // other escaped punctuation is literal (and invalid as an escape in "u" mode)
      continue;
    }
    if (inClass) {
      if (c === ']') inClass = false;
      out += c;
      continue;
    }
    if (c === '[') {
      inClass = true;
      out += c;
      if (src[i + 1] === '^') { out += '^'; i++; }
      if (src[i + 1] === ']') { out += '\\]'; i++; }
      continue;
    }
    if (c === '(') {
      depth++;
      if (src.startsWith('(?i:', i)) {
        ciStack.push(depth);
        ci++;
        out += '(?:';
        i += 3;
        continue;
      }
      out += c;
      continue;
    }
    if (c === ')') {
      if (ciStack.length && ciStack[ciStack.length - 1] === depth) {
        ciStack.pop();
        ci--;
      }
      depth--;
      out += c;
      continue;
    }
    if (ci > 0 && /[A-Za-z]/.test(c)) {
      out += `[${c.toLowerCase()}${c.toUpperCase()}]`;
      continue;
    }
    out += c;
  }
  return out;
}

function compilePattern(p, what) {
  if (isNull(p) || typeof p !== 'object') throw new TokenizerError(`${what}: missing pattern`);
  const hasS = typeof p.String === 'string';
  const hasR = typeof p.Regex === 'string';
  if (hasS === hasR) throw new TokenizerError(`${what}: pattern must have exactly one of String and Regex`);
  if (hasS) {
    if (p.String === '') throw new TokenizerError(`${what}: empty String pattern`);
    return new RegExp(p.String.replace(/[.*+?^${}()|[\]\\/]/g, '\\$&'), 'gu');
  }
  try {
    return new RegExp(translateRegex(p.Regex), 'gu');
  } catch (e) {
    throw new TokenizerError(`${what}: pattern ${JSON.stringify(p.Regex)}: ${e.message}`);
  }
}

// ---------------------------------------------------------------- normalizers

function parseNormalizer(n) {
  switch (n.type) {
    case 'Sequence': {
      const parts = (n.normalizers || []).filter((x) => !isNull(x)).map(parseNormalizer);
      return (s) => parts.reduce((acc, f) => f(acc), s);
    }
    case 'Prepend': {
      const p = String(n.prepend ?? '');
      return (s) => (s === '' ? s : p + s);
    }
    case 'Replace': {
      const content = String(n.content ?? '');
      if (n.pattern && typeof n.pattern.String === 'string' && n.pattern.Regex === undefined) {
        if (n.pattern.String === '') throw new TokenizerError('Replace: empty String pattern');
        const lit = n.pattern.String;
        return (s) => s.split(lit).join(content);
      }
      const re = compilePattern(n.pattern, 'Replace');
      return (s) => s.replace(re, () => content);
    }
    case 'Strip': {
      const left = !!n.strip_left, right = !!n.strip_right;
      return (s) => {
        if (left) s = s.replace(/^[\t-\r\x85\p{Z}]+/u, '');
        if (right) s = s.replace(/[\t-\r\x85\p{Z}]+$/u, '');
        return s;
      };
    }
    case 'Lowercase':
      return (s) => s.toLowerCase();
  }
  throw new TokenizerError(`unsupported normalizer type ${JSON.stringify(n.type)} (supported: Sequence, Prepend, Replace, Strip, Lowercase)`);
}

// ---------------------------------------------------------------- pre-tokenizers

const GPT2_PATTERN = "'s|'t|'re|'ve|'m|'ll|'d| ?\\p{L}+| ?\\p{N}+| ?[^\\s\\p{L}\\p{N}]+|\\s+(?!\\S)|\\s+";

// spans of s cut at the matches of re: [{a, b, match}], covering s.
function regexSpans(s, re, invert) {
  const spans = [];
  let last = 0;
  re.lastIndex = 0;
  for (const m of s.matchAll(re)) {
    if (m[0].length === 0) continue;
    const a = m.index, b = a + m[0].length;
    if (last < a) spans.push({ a: last, b: a, match: invert });
    spans.push({ a, b, match: !invert });
    last = b;
  }
  if (last < s.length) spans.push({ a: last, b: s.length, match: invert });
  return spans;
}

function stringSpans(s, sep) {
  const spans = [];
  let last = 0;
  for (;;) {
    const i = s.indexOf(sep, last);
    if (i < 0) break;
    if (i > last) spans.push({ a: last, b: i, match: false });
    spans.push({ a: i, b: i + sep.length, match: true });
    last = i + sep.length;
  }
  if (last < s.length) spans.push({ a: last, b: s.length, match: false });
  return spans;
}

// applyBehavior: HF's SplitDelimiterBehavior (see the Go applyBehavior).
function applyBehavior(s, spans, behavior) {
  const out = [];
  let start = 0;
  switch (behavior) {
    case 'Removed':
      for (const sp of spans) if (!sp.match) out.push(s.slice(sp.a, sp.b));
      return out;
    case 'Isolated':
      for (const sp of spans) out.push(s.slice(sp.a, sp.b));
      return out;
    case 'MergedWithPrevious':
      for (const sp of spans) {
        if (sp.match) { out.push(s.slice(start, sp.b)); start = sp.b; }
      }
      break;
    case 'MergedWithNext':
      for (const sp of spans) {
        if (sp.match && sp.a > start) { out.push(s.slice(start, sp.a)); start = sp.a; }
      }
      break;
    case 'Contiguous':
      spans.forEach((sp, i) => {
        if (sp.match && i > 0 && spans[i - 1].match) return;
        if (sp.a > start) { out.push(s.slice(start, sp.a)); start = sp.a; }
      });
      break;
    default:
      throw new TokenizerError(`Split: unknown behavior ${JSON.stringify(behavior)}`);
  }
  if (start < s.length) out.push(s.slice(start));
  return out;
}

// BYTE_TO_RUNE is GPT-2's bytes_to_unicode; RUNE_TO_BYTE its inverse.
const BYTE_TO_RUNE = [];
const RUNE_TO_BYTE = new Map();
{
  let n = 0;
  for (let b = 0; b < 256; b++) {
    const printable = (b >= 0x21 && b <= 0x7e) || (b >= 0xa1 && b <= 0xac) || (b >= 0xae && b <= 0xff);
    const ch = String.fromCodePoint(printable ? b : 256 + n++);
    BYTE_TO_RUNE.push(ch);
    RUNE_TO_BYTE.set(ch, b);
  }
}
const utf8 = new TextEncoder();

function byteLevelEncode(s) {
  let out = '';
  for (const b of utf8.encode(s)) out += BYTE_TO_RUNE[b];
  return out;
}

function metaspaceOptions(p, what) {
  const replacement = p.replacement;
  if (typeof replacement !== 'string' || replacement === '') throw new TokenizerError(`${what}: empty replacement`);
  let prepend = 'always';
  if (!isNull(p.prepend_scheme)) {
    if (!['always', 'first', 'never'].includes(p.prepend_scheme)) {
      throw new TokenizerError(`${what}: unknown prepend_scheme ${JSON.stringify(p.prepend_scheme)}`);
    }
    prepend = p.prepend_scheme;
  } else if (p.add_prefix_space === false) prepend = 'never';
  return { replacement, prepend };
}

// A pre-tokenizer maps (words, atStart) to words.
function parsePreTokenizer(p) {
  const eachWord = (f) => (words) => words.flatMap(f);
  switch (p.type) {
    case 'Sequence': {
      const parts = (p.pretokenizers || []).map(parsePreTokenizer);
      return (words, atStart) => parts.reduce((w, f) => f(w, atStart), words);
    }
    case 'ByteLevel': {
      const addPrefix = !!p.add_prefix_space;
      const re = p.use_regex === false ? null : new RegExp(translateRegex(GPT2_PATTERN), 'gu');
      return eachWord((w) => {
        if (addPrefix && !w.startsWith(' ')) w = ' ' + w;
        const parts = re ? applyBehavior(w, regexSpans(w, re, false), 'Isolated') : [w];
        return parts.map(byteLevelEncode);
      });
    }
    case 'Split': {
      const re = compilePattern(p.pattern, 'Split');
      const behavior = p.behavior;
      applyBehavior('', [], behavior); // validates the behavior
      const invert = !!p.invert;
      return eachWord((w) => applyBehavior(w, regexSpans(w, re, invert), behavior));
    }
    case 'Metaspace': {
      const { replacement, prepend } = metaspaceOptions(p, 'Metaspace');
      const split = p.split !== false;
      return (words, atStart) => words.flatMap((w, i) => {
        w = w.split(' ').join(replacement);
        if ((prepend === 'always' || (prepend === 'first' && atStart && i === 0)) && !w.startsWith(replacement)) {
          w = replacement + w;
        }
        return split ? applyBehavior(w, stringSpans(w, replacement), 'MergedWithNext') : [w];
      });
    }
    case 'Digits': {
      const individual = !!p.individual_digits;
      return eachWord((w) => {
        const out = [];
        let cur = '';
        let prevDigit = false;
        for (const ch of w) {
          const d = /\p{Nd}/u.test(ch);
          if (cur !== '' && (d !== prevDigit || (d && individual))) { out.push(cur); cur = ''; }
          cur += ch;
          prevDigit = d;
        }
        if (cur !== '') out.push(cur);
        return out;
      });
    }
    case 'WhitespaceSplit':
      return eachWord((w) => w.split(/[\t-\r\x85\p{Z}]+/u).filter((x) => x !== ''));
  }
  throw new TokenizerError(`unsupported pre-tokenizer type ${JSON.stringify(p.type)} (supported: Sequence, ByteLevel, Split, Metaspace, Digits, WhitespaceSplit)`);
}

// ---------------------------------------------------------------- BPE model

const MAX_VOCAB = 1 << 24;

// Merge candidates are numbers rank * 2^32 + pos in a binary min-heap:
// the lowest rank first, the leftmost among equals.
const POS = 2 ** 32;
const MAX_MERGES = 1 << 20; // keeps rank * 2^32 + pos exact in a double

function heapPush(h, x) {
  h.push(x);
  let i = h.length - 1;
  while (i > 0) {
    const p = (i - 1) >> 1;
    if (h[p] <= x) break;
    h[i] = h[p];
    i = p;
  }
  h[i] = x;
}

function heapPop(h) {
  const top = h[0];
  const x = h.pop();
  const n = h.length;
  if (n > 0) {
    let i = 0;
    for (;;) {
      let m = 2 * i + 1;
      if (m >= n) break;
      if (m + 1 < n && h[m + 1] < h[m]) m++;
      if (h[m] >= x) break;
      h[i] = h[m];
      i = m;
    }
    h[i] = x;
  }
  return top;
}

class BPE {
  constructor(m) {
    if (m.type !== 'BPE' && !(m.type === undefined && Array.isArray(m.merges))) {
      throw new TokenizerError(`unsupported model type ${JSON.stringify(m.type)} (supported: BPE)`);
    }
    if (!isNull(m.dropout) && m.dropout !== 0) throw new TokenizerError(`model: BPE dropout ${m.dropout} is not supported`);
    if (m.continuing_subword_prefix) throw new TokenizerError('model: BPE continuing_subword_prefix is not supported');
    if (m.end_of_word_suffix) throw new TokenizerError('model: BPE end_of_word_suffix is not supported');
    if (isNull(m.vocab) || typeof m.vocab !== 'object' || Array.isArray(m.vocab)) throw new TokenizerError('model: vocab is not an object');
    this.vocab = new Map();
    for (const [tok, id] of Object.entries(m.vocab)) {
      if (!Number.isInteger(id) || id < 0 || id >= MAX_VOCAB) throw new TokenizerError(`model: token ${JSON.stringify(tok)}: id ${id} out of range`);
      this.vocab.set(tok, id);
    }
    if (this.vocab.size === 0) throw new TokenizerError('model: empty vocab');
    this.unk = -1;
    if (!isNull(m.unk_token)) {
      if (!this.vocab.has(m.unk_token)) throw new TokenizerError(`model: unk_token ${JSON.stringify(m.unk_token)} is not in the vocab`);
      this.unk = this.vocab.get(m.unk_token);
    }
    this.byteFallback = !!m.byte_fallback;
    this.fuseUnk = !!m.fuse_unk;
    this.ignoreMerges = !!m.ignore_merges;
    this.byteIds = [];
    for (let b = 0; b < 256; b++) {
      const id = this.vocab.get('<0x' + b.toString(16).toUpperCase().padStart(2, '0') + '>');
      this.byteIds.push(id === undefined ? -1 : id);
    }
    // mergesByLeft[left].get(right) = [rank, merged id]
    this.mergesByLeft = [];
    if ((m.merges || []).length > MAX_MERGES) throw new TokenizerError(`model: ${m.merges.length} merges, more than ${MAX_MERGES}`);
    (m.merges || []).forEach((mg, rank) => {
      let left, right;
      if (typeof mg === 'string') {
        const parts = mg.split(' ');
        if (parts.length !== 2) throw new TokenizerError(`model: merge ${rank} ${JSON.stringify(mg)} is not two tokens separated by one space`);
        [left, right] = parts;
      } else if (Array.isArray(mg) && mg.length === 2) {
        [left, right] = mg;
      } else throw new TokenizerError(`model: merge ${rank} is neither "a b" nor ["a", "b"]`);
      const a = this.vocab.get(left), b = this.vocab.get(right), id = this.vocab.get(left + right);
      if (a === undefined || b === undefined || id === undefined) {
        const missing = [left, right, left + right].find((t) => !this.vocab.has(t));
        throw new TokenizerError(`model: merge ${rank} (${JSON.stringify(left)}, ${JSON.stringify(right)}): token ${JSON.stringify(missing)} not in the vocab`);
      }
      const byRight = this.mergesByLeft[a] || (this.mergesByLeft[a] = new Map());
      if (!byRight.has(b)) byRight.set(b, [rank, id]);
    });
    // Byte and unk symbols split a word into independent runs when no
    // merge involves them (see the Go bpeModel.barrierFree).
    const barrier = new Set(this.byteIds.filter((id) => id >= 0));
    if (this.unk >= 0) barrier.add(this.unk);
    this.barrierFree = true;
    this.mergesByLeft.forEach((byRight, left) => {
      if (barrier.has(left)) this.barrierFree = false;
      for (const right of byRight.keys()) if (barrier.has(right)) this.barrierFree = false;
    });
  }

  merge(left, right) {
    const byRight = this.mergesByLeft[left];
    return byRight === undefined ? undefined : byRight.get(right);
  }

  // encodeWord: see the Go bpeModel.encodeWord.
  encodeWord(w) {
    if (this.ignoreMerges && this.vocab.has(w)) return [this.vocab.get(w)];
    const out = [];
    let run = [];
    const emit = (id) => { if (this.barrierFree) out.push(id); else run.push(id); };
    let lastUnk = false;
    for (const ch of w) {
      const id = this.vocab.get(ch);
      if (id !== undefined) { run.push(id); lastUnk = false; continue; }
      if (this.barrierFree && run.length > 0) { this.mergeRun(run, out); run = []; }
      if (this.byteFallback) {
        const bytes = utf8.encode(ch);
        if (bytes.every((b) => this.byteIds[b] >= 0)) {
          for (const b of bytes) emit(this.byteIds[b]);
          lastUnk = false;
          continue;
        }
      }
      if (this.unk < 0) continue; // dropped, as in HF
      if (!(this.fuseUnk && lastUnk)) { emit(this.unk); lastUnk = true; }
    }
    this.mergeRun(run, out);
    return out;
  }

  // mergeRun applies the merges to the symbol ids of run; appends to out.
  // A popped candidate is stale unless the pair now at its position has
  // the same rank (ranks identify pairs).
  mergeRun(run, out) {
    const n = run.length;
    if (n === 0) return;
    const id = Int32Array.from(run);
    const prev = new Int32Array(n), next = new Int32Array(n);
    for (let i = 0; i < n; i++) { prev[i] = i - 1; next[i] = i + 1; }
    next[n - 1] = -1;
    const h = [];
    const consider = (pos) => {
      const nx = next[pos];
      if (nx < 0) return;
      const m = this.merge(id[pos], id[nx]);
      if (m !== undefined) heapPush(h, m[0] * POS + pos);
    };
    for (let i = 0; i + 1 < n; i++) consider(i);
    while (h.length > 0) {
      const c = heapPop(h);
      const rank = Math.floor(c / POS), p = c - rank * POS;
      const nx = next[p];
      if (id[p] < 0 || nx < 0) continue;
      const m = this.merge(id[p], id[nx]);
      if (m === undefined || m[0] !== rank) continue;
      id[p] = m[1];
      id[nx] = -1; // dead
      next[p] = next[nx];
      if (next[p] >= 0) prev[next[p]] = p;
      if (prev[p] >= 0) consider(prev[p]);
      consider(p);
    }
    for (let i = 0; i >= 0; i = next[i]) out.push(id[i]);
  }
}

// ---------------------------------------------------------------- decoders

function parseByteToken(t) {
  const m = /^<0x([0-9A-Fa-f]{2})>$/.exec(t);
  return m ? parseInt(m[1], 16) : -1;
}

const strictUTF8 = new TextDecoder('utf-8', { fatal: true, ignoreBOM: true });
const lossyUTF8 = new TextDecoder('utf-8', { ignoreBOM: true }); // maximal-subpart replacement, as Rust's from_utf8_lossy

// A decoder maps a list of token strings to a list of strings.
function parseDecoder(d) {
  switch (d.type) {
    case 'Sequence': {
      const parts = (d.decoders || []).map(parseDecoder);
      return (toks) => parts.reduce((t, f) => f(t), toks);
    }
    case 'Replace': {
      const content = String(d.content ?? '');
      if (d.pattern && typeof d.pattern.String === 'string' && d.pattern.Regex === undefined) {
        if (d.pattern.String === '') throw new TokenizerError('Replace: empty String pattern');
        const lit = d.pattern.String;
        return (toks) => toks.map((t) => t.split(lit).join(content));
      }
      const re = compilePattern(d.pattern, 'Replace');
      return (toks) => toks.map((t) => t.replace(re, () => content));
    }
    case 'ByteFallback':
      return (toks) => {
        const out = [];
        let buf = [];
        const flush = () => {
          if (buf.length === 0) return;
          try {
            out.push(strictUTF8.decode(Uint8Array.from(buf)));
          } catch {
            for (let i = 0; i < buf.length; i++) out.push('\uFFFD');
          }
          buf = [];
        };
        for (const t of toks) {
          const b = parseByteToken(t);
          if (b >= 0) { buf.push(b); continue; }
          flush();
          out.push(t);
        }
        flush();
        return out;
      };
    case 'Fuse':
      return (toks) => [toks.join('')];
    case 'Strip': {
      const content = d.content;
      if (typeof content !== 'string' || [...content].length !== 1 || !(d.start >= 0) || !(d.stop >= 0)) {
        throw new TokenizerError(`Strip: want one content character and start, stop >= 0`);
      }
      return (toks) => toks.map((t) => {
        let cs = [...t];
        let a = 0, b = cs.length;
        while (a < d.start && a < b && cs[a] === content) a++;
        let k = 0;
        while (k < d.stop && b > a && cs[b - 1] === content) { b--; k++; }
        return cs.slice(a, b).join('');
      });
    }
    case 'ByteLevel':
      return (toks) => {
        const bytes = [];
        for (const t of toks) {
          const mine = [];
          let ok = true;
          for (const ch of t) {
            const b = RUNE_TO_BYTE.get(ch);
            if (b === undefined) { ok = false; break; }
            mine.push(b);
          }
          if (ok) bytes.push(...mine);
          else bytes.push(...utf8.encode(t));
        }
        return [lossyUTF8.decode(Uint8Array.from(bytes))];
      };
    case 'Metaspace': {
      const { replacement, prepend } = metaspaceOptions(d, 'Metaspace');
      return (toks) => toks.map((t, i) => {
        if (i === 0 && prepend !== 'never' && t.startsWith(replacement)) t = t.slice(replacement.length);
        return t.split(replacement).join(' ');
      });
    }
  }
  throw new TokenizerError(`unsupported decoder type ${JSON.stringify(d.type)} (supported: Sequence, Replace, ByteFallback, Fuse, Strip, ByteLevel, Metaspace)`);
}

// ---------------------------------------------------------------- post-processor

function parsePostProcessor(p) {
  switch (p.type) {
    case 'ByteLevel':
      return { prefix: [], suffix: [] };
    case 'Sequence': {
      let out = { prefix: [], suffix: [] };
      for (const q of p.processors || []) {
        const t = parsePostProcessor(q);
        if (t.prefix.length + t.suffix.length > 0) {
          if (out.prefix.length + out.suffix.length > 0) throw new TokenizerError('post_processor: more than one template in a Sequence');
          out = t;
        }
      }
      return out;
    }
    case 'TemplateProcessing': {
      const out = { prefix: [], suffix: [] };
      let seen = false;
      for (const piece of p.single || []) {
        if (piece.Sequence) {
          if (seen) throw new TokenizerError('TemplateProcessing: single template has two sequences');
          seen = true;
        } else if (piece.SpecialToken) {
          const st = (p.special_tokens || {})[piece.SpecialToken.id];
          if (!st) throw new TokenizerError(`TemplateProcessing: special token ${JSON.stringify(piece.SpecialToken.id)} not in special_tokens`);
          (seen ? out.suffix : out.prefix).push(...st.ids);
        } else throw new TokenizerError('TemplateProcessing: template piece is neither SpecialToken nor Sequence');
      }
      if (!seen) throw new TokenizerError('TemplateProcessing: single template has no sequence');
      return out;
    }
  }
  throw new TokenizerError(`unsupported post-processor type ${JSON.stringify(p.type)} (supported: TemplateProcessing, ByteLevel, Sequence)`);
}

// ---------------------------------------------------------------- added tokens

const WORD_CHAR = /[\p{L}\p{N}\p{M}\p{Pc}]/u;
const SPACE = /[\t-\r\x85\p{Z}]/u;

class AddedMatcher {
  constructor(tokens) {
    this.tokens = tokens.slice().sort((a, b) => b.content.length - a.content.length);
    this.firstChars = new Set(tokens.map((t) => t.content[0]));
  }

  // split cuts s into {text, id} segments; base: s's offset in the input.
  split(s, base) {
    if (this.tokens.length === 0 || s === '') return [{ text: s, id: -1, start: base }];
    const out = [];
    let last = 0, pos = 0;
    while (pos < s.length) {
      let found = null, at = -1;
      for (let i = pos; i < s.length && !found; i++) {
        if (!this.firstChars.has(s[i])) continue;
        for (const t of this.tokens) {
          if (s.startsWith(t.content, i)) { found = t; at = i; break; }
        }
      }
      if (!found) break;
      let start = at, stop = at + found.content.length;
      pos = stop;
      if (found.single_word) {
        const before = start > 0 ? [...s.slice(0, start)].pop() : '';
        const after = stop < s.length ? [...s.slice(stop, stop + 2)][0] : '';
        if ((before && WORD_CHAR.test(before)) || (after && WORD_CHAR.test(after))) continue;
      }
      if (found.lstrip) {
        let a = start;
        while (a > 0 && SPACE.test(s[a - 1])) a--;
        start = Math.max(a, last);
      }
      if (found.rstrip) {
        while (stop < s.length && SPACE.test(s[stop])) stop++;
        pos = stop;
      }
      if (last < start) out.push({ text: s.slice(last, start), id: -1, start: base + last });
      out.push({ text: s.slice(start, stop), id: found.id, start: base + start });
      last = stop;
    }
    if (last < s.length) out.push({ text: s.slice(last), id: -1, start: base + last });
    return out;
  }
}

// ---------------------------------------------------------------- Tokenizer

// Tokenizer encodes text to ids and decodes ids to text.
export class Tokenizer {
  constructor(spec) {
    if (isNull(spec) || typeof spec !== 'object') throw new TokenizerError('tokenizer.json: not an object');
    if (isNull(spec.model)) throw new TokenizerError('tokenizer.json: no model');
    this.bpe = new BPE(spec.model);
    this.normalizer = isNull(spec.normalizer) ? null : parseNormalizer(spec.normalizer);
    this.preTokenizer = isNull(spec.pre_tokenizer) ? null : parsePreTokenizer(spec.pre_tokenizer);
    this.decoder = isNull(spec.decoder) ? null : parseDecoder(spec.decoder);
    this.template = isNull(spec.post_processor) ? { prefix: [], suffix: [] } : parsePostProcessor(spec.post_processor);

    this.idToToken = [];
    this.special = [];
    this.tokenIds = new Map(this.bpe.vocab);
    for (const [tok, id] of this.bpe.vocab) this.idToToken[id] = tok;
    const raw = [], normalized = [];
    for (const a of spec.added_tokens || []) {
      if (!Number.isInteger(a.id) || a.id < 0 || a.id >= MAX_VOCAB) throw new TokenizerError(`added token ${JSON.stringify(a.content)}: id ${a.id} out of range`);
      if (typeof a.content !== 'string' || a.content === '') throw new TokenizerError(`added token ${a.id} has empty content`);
      this.idToToken[a.id] = a.content;
      this.special[a.id] = !!a.special;
      this.tokenIds.set(a.content, a.id);
      const t = { content: a.content, id: a.id, single_word: !!a.single_word, lstrip: !!a.lstrip, rstrip: !!a.rstrip };
      if (!a.normalized) raw.push(t);
      else {
        if (this.normalizer) t.content = this.normalizer(t.content);
        if (t.content !== '') normalized.push(t);
      }
    }
    this.rawAdded = new AddedMatcher(raw);
    this.normalizedAdded = new AddedMatcher(normalized);
    this.cache = new Map();
  }

  // vocabSize is the largest id plus one.
  get vocabSize() { return this.idToToken.length; }

  // bos is the first id the template puts in front, else the id of <s>,
  // <|begin_of_text|> or <bos>; -1 if none.
  get bos() {
    if (this.template.prefix.length > 0) return this.template.prefix[0];
    for (const t of ['<s>', '<|begin_of_text|>', '<bos>']) if (this.tokenIds.has(t)) return this.tokenIds.get(t);
    return -1;
  }

  // tokenToId returns the id of a token string, or -1.
  tokenToId(tok) { return this.tokenIds.has(tok) ? this.tokenIds.get(tok) : -1; }

  // encode tokenizes text; with addSpecial the post-processor template's
  // tokens (BOS for Llama-style files) are added.
  encode(text, { addSpecial = false } = {}) {
    if (typeof text !== 'string') throw new TokenizerError('encode: text is not a string');
    if (text.isWellFormed ? !text.isWellFormed() : /\p{Cs}/u.test(text)) {
      throw new TokenizerError('encode: text is not well-formed Unicode (lone surrogate)');
    }
    const ids = addSpecial ? [...this.template.prefix] : [];
    for (const seg of this.rawAdded.split(text, 0)) {
      if (seg.id >= 0) { ids.push(seg.id); continue; }
      const norm = this.normalizer ? this.normalizer(seg.text) : seg.text;
      for (const nseg of this.normalizedAdded.split(norm, seg.start)) {
        if (nseg.id >= 0) { ids.push(nseg.id); continue; }
        const words = this.preTokenizer ? this.preTokenizer([nseg.text], nseg.start === 0) : [nseg.text];
        for (const w of words) {
          if (w === '') continue;
          let wids = w.length <= 64 ? this.cache.get(w) : undefined;
          if (wids === undefined) {
            wids = this.bpe.encodeWord(w);
            if (w.length <= 64) {
              if (this.cache.size >= 65536) this.cache.clear();
              this.cache.set(w, wids);
            }
          }
          for (const id of wids) ids.push(id);
        }
      }
    }
    if (addSpecial) ids.push(...this.template.suffix);
    return ids;
  }

  // decode turns ids into text; special tokens are left out unless
  // skipSpecial is false, unknown ids always.
  decode(ids, { skipSpecial = true } = {}) {
    const toks = [];
    for (const id of ids) {
      const t = this.idToToken[id];
      if (t === undefined) continue;
      if (skipSpecial && this.special[id]) continue;
      toks.push(t);
    }
    return (this.decoder ? this.decoder(toks) : toks).join('');
  }

  isByteToken(id) {
    const t = this.idToToken[id];
    return t !== undefined && parseByteToken(t) >= 0;
  }

  // streamDecoder returns {push(id) -> string, flush() -> string}: push
  // returns the text that id completes (byte tokens are held until their
  // UTF-8 character is whole); everything returned, flush included, joins
  // to decode(all ids). Same protocol as the Go StreamDecoder.
  streamDecoder() {
    let win = [];
    let prefix = '';
    const push = (id) => {
      win.push(id);
      const text = this.decode(win);
      if (text.length <= prefix.length || text.endsWith('\uFFFD')) return '';
      let out = text.slice(prefix.length);
      if (!text.startsWith(prefix)) {
        let n = 0;
        while (n < text.length && n < prefix.length && text[n] === prefix[n]) n++;
        out = text.slice(n);
      }
      let keep = win.length - 1;
      while (keep > 0 && this.isByteToken(win[keep])) keep--;
      win = win.slice(keep);
      prefix = this.decode(win);
      return out;
    };
    const flush = () => {
      const text = this.decode(win);
      const out = text.length > prefix.length && text.startsWith(prefix) ? text.slice(prefix.length) : '';
      win = [];
      prefix = '';
      return out;
    };
    return { push, next: push, flush };
  }
}
