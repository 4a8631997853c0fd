// smelt integrity: verify a bundle's signed manifest and fetch its files
// with Subresource Integrity, re-verifying cached copies.
//
// Dependency-free ES module for browsers and Node >= 20; WebCrypto only.
// The formats are specified in smelt's manifest package (manifest/doc.go):
//   manifest.sig  DSSE envelope {"payload","payloadType","signatures":[{"keyid","sig"}]}
//                 over PAE(payloadType, exact manifest.json bytes);
//                 Ed25519, or ECDSA P-256/SHA-256 with raw r||s signatures.
//   files[]       {path, nbytes, integrity: "sha384-<base64>"}.
// Every failure throws SmeltIntegrityError naming the file at fault, and
// nothing that fails verification is returned or left in the cache.

/** The DSSE payloadType of a smelt manifest. */
export const PAYLOAD_TYPE = 'application/vnd.smelt.manifest+json';

/** Default Cache API cache name used when {cache: true}. */
export const CACHE_NAME = 'smelt-bundles-v1';

/** An integrity or signature failure; .path names the file at fault. */
export class SmeltIntegrityError extends Error {
  constructor(path, message) {
    super(message);
    this.name = 'SmeltIntegrityError';
    this.path = path;
  }
}

const subtle = globalThis.crypto && globalThis.crypto.subtle;
const enc = new TextEncoder();

function needSubtle() {
  if (!subtle) {
    throw new Error('smelt: WebCrypto (crypto.subtle) is unavailable: serve the page over https or from localhost');
  }
}

function toBytes(x) {
  if (x instanceof Uint8Array) return x;
  if (x instanceof ArrayBuffer) return new Uint8Array(x);
  if (ArrayBuffer.isView(x)) return new Uint8Array(x.buffer, x.byteOffset, x.byteLength);
  if (typeof x === 'string') return enc.encode(x);
  throw new TypeError('smelt: expected bytes (Uint8Array, ArrayBuffer or string)');
}

function b64encode(bytes) {
  let s = '';
  for (let i = 0; i < bytes.length; i += 0x8000) {
    s += String.fromCharCode.apply(null, bytes.subarray(i, i + 0x8000));
  }
  return btoa(s);
}

// Strict standard base64: decodes and re-encodes to the same text.
function b64decodeStrict(s, what, path) {
  let bin;
  try {
    bin = atob(s);
  } catch (e) {
    throw new SmeltIntegrityError(path, `smelt: ${path}: ${what} is not valid base64`);
  }
  const out = new Uint8Array(bin.length);
  for (let i = 0; i < bin.length; i++) out[i] = bin.charCodeAt(i);
  if (b64encode(out) !== s) {
    throw new SmeltIntegrityError(path, `smelt: ${path}: ${what} is not canonical base64`);
  }
  return out;
}

function equalBytes(a, b) {
  if (a.length !== b.length) return false;
  let d = 0;
  for (let i = 0; i < a.length; i++) d |= a[i] ^ b[i];
  return d === 0;
}

function hex(bytes) {
  return Array.from(bytes, (b) => b.toString(16).padStart(2, '0')).join('');
}

/** PAE per DSSE: "DSSEv1 <len type> <type> <len body> <body>". */
export function pae(payloadType, body) {
  const head = enc.encode(`DSSEv1 ${enc.encode(payloadType).length} ${payloadType} ${body.length} `);
  const out = new Uint8Array(head.length + body.length);
  out.set(head, 0);
  out.set(body, head.length);
  return out;
}

/** SRI value "sha384-<base64>" of bytes. */
export async function sri(bytes) {
  needSubtle();
  const d = await subtle.digest('SHA-384', toBytes(bytes));
  return 'sha384-' + b64encode(new Uint8Array(d));
}

// importPublicKey returns {key, params, keyid} for a public JWK
// (OKP/Ed25519 or EC/P-256), keyid being "sha256:" + hex SHA-256 of SPKI.
async function importPublicKey(jwk) {
  needSubtle();
  if (typeof jwk === 'string') jwk = JSON.parse(jwk);
  let alg, params;
  if (jwk.kty === 'OKP' && jwk.crv === 'Ed25519') {
    alg = { name: 'Ed25519' };
    params = { name: 'Ed25519' };
  } else if (jwk.kty === 'EC' && jwk.crv === 'P-256') {
    alg = { name: 'ECDSA', namedCurve: 'P-256' };
    params = { name: 'ECDSA', hash: 'SHA-256' };
  } else {
    throw new Error(`smelt: unsupported public key (kty ${jwk.kty}, crv ${jwk.crv}); want OKP/Ed25519 or EC/P-256`);
  }
  const pub = { kty: jwk.kty, crv: jwk.crv, x: jwk.x };
  if (jwk.y !== undefined) pub.y = jwk.y;
  const key = await subtle.importKey('jwk', pub, alg, true, ['verify']);
  const spki = new Uint8Array(await subtle.exportKey('spki', key));
  const keyid = 'sha256:' + hex(new Uint8Array(await subtle.digest('SHA-256', spki)));
  if (jwk.kid !== undefined && jwk.kid !== keyid) {
    throw new Error(`smelt: public key kid ${jwk.kid} does not match the key (${keyid})`);
  }
  return { key, params, keyid };
}

/**
 * verifyManifest checks that sigEnvelopeText (manifest.sig) holds a valid
 * signature by publicKeyJwk over exactly manifestBytes (manifest.json), and
 * returns the parsed manifest. Throws SmeltIntegrityError naming
 * manifest.sig or manifest.json.
 */
export async function verifyManifest(manifestBytes, sigEnvelopeText, publicKeyJwk) {
  const mb = toBytes(manifestBytes);
  const text = typeof sigEnvelopeText === 'string' ? sigEnvelopeText : new TextDecoder().decode(toBytes(sigEnvelopeText));
  const SIG = 'manifest.sig';
  let env;
  try {
    env = JSON.parse(text);
  } catch (e) {
    throw new SmeltIntegrityError(SIG, `smelt: ${SIG} is not valid JSON`);
  }
  const sigs = env && Array.isArray(env.signatures) ? env.signatures : null;
  if (!sigs || typeof env.payload !== 'string' || env.payloadType !== PAYLOAD_TYPE || sigs.length < 1 || sigs.length > 16 ||
      !sigs.every((s) => s && typeof s.keyid === 'string' && typeof s.sig === 'string')) {
    throw new SmeltIntegrityError(SIG, `smelt: ${SIG} is not a smelt DSSE envelope`);
  }
  // The envelope is canonical JSON: any other spelling is refused, as smelt verify does.
  const canonical = JSON.stringify({
    payload: env.payload, payloadType: env.payloadType,
    signatures: sigs.map((s) => ({ keyid: s.keyid, sig: s.sig })),
  });
  if (canonical !== text) {
    throw new SmeltIntegrityError(SIG, `smelt: ${SIG} is not in canonical form`);
  }
  const payload = b64decodeStrict(env.payload, 'payload', SIG);
  const { key, params, keyid } = await importPublicKey(publicKeyJwk);
  const msg = pae(env.payloadType, payload);
  let ok = false;
  for (const s of sigs) {
    if (s.keyid !== keyid) continue;
    const sig = b64decodeStrict(s.sig, 'signature', SIG);
    if (sig.length === 64 && await subtle.verify(params, key, sig, msg)) {
      ok = true;
      break;
    }
  }
  if (!ok) {
    throw new SmeltIntegrityError(SIG, `smelt: signature verification failed for ${SIG} (no valid signature by key ${keyid})`);
  }
  if (!equalBytes(payload, mb)) {
    throw new SmeltIntegrityError('manifest.json', 'smelt: integrity mismatch for manifest.json (it differs from the signed payload in manifest.sig)');
  }
  return JSON.parse(new TextDecoder().decode(mb));
}

async function openCache(cache) {
  if (!cache) return null;
  if (cache === true) {
    if (!globalThis.caches) return null;
    return globalThis.caches.open(CACHE_NAME);
  }
  return cache;
}

// toFetcher turns a base URL, a function (path, init) -> Promise<Response>
// or an object with fetch(path, init) into such a function.
function toFetcher(source, fetchImpl) {
  if (typeof source === 'function') return source;
  if (source && typeof source.fetch === 'function') return (path, init) => source.fetch(path, init);
  let base = String(source);
  if (!base.endsWith('/')) base += '/';
  const f = fetchImpl || globalThis.fetch;
  return (path, init) => f(new URL(path, base).href, init);
}

// cacheKey keys cache entries by content: a changed file never matches an
// old entry, and identical files share one.
function cacheKey(integrity) {
  return 'https://smelt.invalid/sha384/' + encodeURIComponent(integrity.slice('sha384-'.length));
}

async function readBody(resp, onProgress) {
  if (!onProgress || !resp.body || !resp.body.getReader) {
    const b = new Uint8Array(await resp.arrayBuffer());
    if (onProgress) onProgress(b.length);
    return b;
  }
  const reader = resp.body.getReader();
  const chunks = [];
  let n = 0;
  for (;;) {
    const { done, value } = await reader.read();
    if (done) break;
    chunks.push(value);
    n += value.length;
    onProgress(value.length);
  }
  const out = new Uint8Array(n);
  let off = 0;
  for (const c of chunks) {
    out.set(c, off);
    off += c.length;
  }
  return out;
}

/**
 * fetchVerified fetches path and returns its bytes (Uint8Array) only if
 * their SHA-384 matches integrity ("sha384-<base64>") and, when
 * opts.nbytes is given, their length matches it. source is the bundle's
 * base URL, a function (path, init) -> Promise<Response>, or an object
 * with fetch(path, init). integrity is passed to fetch (the browser's own
 * SRI check) and the digest is re-checked here. With opts.cache (a Cache,
 * or true for the Cache API cache CACHE_NAME) a cached copy, keyed by its
 * integrity, is used only after its digest is re-checked; a bad copy is
 * deleted and fetched again, and only verified bytes are stored.
 * opts.onProgress(n) is called with the bytes received as they arrive.
 * Throws SmeltIntegrityError ("smelt: integrity mismatch for
 * shards/00001.bin") on mismatch, Error on network failures.
 */
export async function fetchVerified(source, path, integrity, opts = {}) {
  needSubtle();
  if (typeof integrity !== 'string' || !integrity.startsWith('sha384-')) {
    throw new SmeltIntegrityError(path, `smelt: ${path}: integrity ${integrity} is not sha384-<base64>`);
  }
  const fetchPath = toFetcher(source, opts.fetch);
  const check = async (bytes) => (opts.nbytes === undefined || bytes.length === opts.nbytes) && await sri(bytes) === integrity;
  const cache = await openCache(opts.cache);
  const key = cacheKey(integrity);
  if (cache) {
    const hit = await cache.match(key);
    if (hit) {
      const bytes = new Uint8Array(await hit.arrayBuffer());
      if (await check(bytes)) {
        if (opts.onProgress) opts.onProgress(bytes.length);
        return bytes;
      }
      await cache.delete(key); // corrupt copy: never trust it again
    }
  }
  let resp;
  try {
    resp = await fetchPath(path, { integrity, cache: 'no-cache' });
  } catch (e) {
    // A failed SRI check and a network error look alike (TypeError): fetch
    // again without integrity to tell them apart and name the file.
    let again;
    try {
      again = await fetchPath(path, { cache: 'no-store' });
    } catch (e2) {
      throw new Error(`smelt: fetching ${path} failed: ${e2.message}`);
    }
    if (again.ok && !(await check(new Uint8Array(await again.arrayBuffer())))) {
      throw new SmeltIntegrityError(path, `smelt: integrity mismatch for ${path}`);
    }
    throw new Error(`smelt: fetching ${path} failed: ${e.message}`);
  }
  if (!resp.ok) {
    throw new Error(`smelt: fetching ${path} failed: HTTP ${resp.status}`);
  }
  const bytes = await readBody(resp, opts.onProgress);
  if (!(await check(bytes))) {
    const got = opts.nbytes !== undefined && bytes.length !== opts.nbytes ? ` (${bytes.length} bytes, want ${opts.nbytes})` : '';
    throw new SmeltIntegrityError(path, `smelt: integrity mismatch for ${path}${got}`);
  }
  if (cache) {
    await cache.put(key, new Response(bytes, { headers: { 'content-type': 'application/octet-stream' } }));
  }
  return bytes;
}

/**
 * openVerifiedBundle fetches and verifies source's manifest.json and
 * manifest.sig with publicKeyJwk and returns {manifest, fetchFile(path),
 * verifyAll()}: fetchFile fetches a listed file through fetchVerified
 * (size and digest checked); verifyAll fetches every listed file and
 * fails on the first mismatch. opts are passed to fetchVerified.
 */
export async function openVerifiedBundle(source, publicKeyJwk, opts = {}) {
  const fetchPath = toFetcher(source, opts.fetch);
  const get = async (name) => {
    let r;
    try {
      r = await fetchPath(name, { cache: 'no-store' });
    } catch (e) {
      throw new Error(`smelt: fetching ${name} failed: ${e.message}`);
    }
    if (!r.ok) throw new SmeltIntegrityError(name, `smelt: fetching ${name} failed: HTTP ${r.status}`);
    return new Uint8Array(await r.arrayBuffer());
  };
  const [mb, sb] = await Promise.all([get('manifest.json'), get('manifest.sig')]);
  const manifest = await verifyManifest(mb, sb, publicKeyJwk);
  const files = new Map((manifest.files || []).map((f) => [f.path, f]));
  const fetchFile = async (path) => {
    const f = files.get(path);
    if (!f) throw new SmeltIntegrityError(path, `smelt: ${path} is not listed in manifest.json`);
    return fetchVerified(fetchPath, path, f.integrity, { ...opts, nbytes: f.nbytes });
  };
  const verifyAll = async () => {
    for (const f of files.values()) await fetchFile(f.path);
  };
  return { manifest, fetchFile, verifyAll };
}
