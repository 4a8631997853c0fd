// Shared by the browser page and the Node run of TestBrowserVerify: runs
// every case of cases.json against integrity.js and returns the results.

// MemCache is a minimal Cache API stand-in (match/put/delete/keys).
class MemCache {
  constructor() { this.m = new Map(); }
  async match(k) { const b = this.m.get(String(k)); return b ? new Response(b.slice()) : undefined; }
  async put(k, resp) { this.m.set(String(k), new Uint8Array(await resp.arrayBuffer())); }
  async delete(k) { return this.m.delete(String(k)); }
  async keys() { return [...this.m.keys()].map((url) => ({ url })); }
}

export async function runCases(lib, server, { realCache = false } = {}) {
  const cases = await (await fetch(`${server}/cases.json`)).json();
  const results = {};
  for (const c of cases) {
    const base = `${server}/b/${c.name}/`;
    try {
      const b = await lib.openVerifiedBundle(base, c.jwk);
      await b.verifyAll();
      results[c.name] = { ok: true, id: b.manifest.id, files: b.manifest.files.length };
    } catch (e) {
      results[c.name] = { ok: false, path: e.path || null, error: String(e.message) };
    }
  }

  // Cached copies are re-verified: fill a cache, corrupt every entry,
  // fetch again through it and expect the good bytes back (fetched anew).
  const good = cases.find((c) => c.name === 'ed25519');
  const cache = realCache ? await caches.open('smelt-test') : new MemCache();
  let network = 0;
  const counting = (url, init) => { network++; return fetch(url, init); };
  try {
    const b = await lib.openVerifiedBundle(`${server}/b/${good.name}/`, good.jwk, { cache, fetch: counting });
    const path = b.manifest.shards[0];
    const first = await b.fetchFile(path);
    const afterFirst = network;
    const again = await b.fetchFile(path); // served from the cache
    const cachedHit = network === afterFirst;
    for (const req of await cache.keys()) {
      await cache.put(req.url, new Response(new Uint8Array([1, 2, 3])));
    }
    const third = await b.fetchFile(path); // corrupt cache entry: refetched
    const refetched = network === afterFirst + 1;
    const same = first.length === third.length && first.every((x, i) => x === third[i]) && again.length === first.length;
    const fourth = await b.fetchFile(path); // the cache holds the good copy again
    results.cache = { ok: cachedHit && refetched && same && network === afterFirst + 1 && fourth.length === first.length, cachedHit, refetched, same, network };
  } catch (e) {
    results.cache = { ok: false, error: String(e.message) };
  }
  return results;
}
