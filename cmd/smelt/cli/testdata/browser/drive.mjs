// Driver of the browser tests (browser_test.go): opens smelt demo pages in
// headless Chromium (playwright-core, Debian's /usr/bin/chromium, SwiftShader
// WebGPU) and reports what each page did.
//
//   node drive.mjs '<request JSON>'
//
// Request: {"pages": [{"url": "http://127.0.0.1:PORT/b/index.html?key=...",
//                      "run": {"prompt": "..", "maxTokens": 32} | null,
//                      "screenshot": "/path.png" | ""}], "parallel": 4,
//           "timeout_ms": 60000}
// Output: one JSON line per page, in completion order:
// {"page": i, "ready": bool, "error": "..."|null, "text": "..", "ids": [..],
//  "status": "..", "logs": [..]}; exit status 1 when the browser fails.
import { chromium } from 'playwright-core';

const req = JSON.parse(process.argv[2]);
const timeout = req.timeout_ms || 60000;
const browser = await chromium.launch({
  executablePath: '/usr/bin/chromium',
  args: ['--no-sandbox', '--disable-gpu-sandbox', '--no-first-run', '--disable-background-networking',
    '--disable-component-update', '--disable-sync', '--disable-quic', '--enable-unsafe-webgpu'],
});

async function visit(p, i) {
  const context = await browser.newContext({ viewport: { width: 900, height: 640 } });
  const page = await context.newPage();
  const logs = [];
  page.on('console', (m) => logs.push(m.text()));
  page.on('pageerror', (e) => logs.push(String(e)));
  const out = { page: i, ready: false, error: null, text: '', ids: [], status: '', logs };
  try {
    await page.goto(p.url);
    await page.waitForFunction(() => window.smeltDemo && (window.smeltDemo.ready || window.smeltDemo.error), null, { timeout });
    let st = await page.evaluate(() => ({ ready: window.smeltDemo.ready, error: window.smeltDemo.error }));
    if (st.ready && p.run) {
      // Drive the page as a user would: fill the form and click Generate.
      await page.fill('#prompt', p.run.prompt);
      await page.fill('#n', String(p.run.maxTokens ?? 32));
      await page.click('#go');
      await page.waitForFunction(() => window.smeltDemo.done || window.smeltDemo.error, null, { timeout });
    }
    st = await page.evaluate(() => ({
      ready: window.smeltDemo.ready, error: window.smeltDemo.error, text: window.smeltDemo.text,
      ids: window.smeltDemo.ids, status: document.getElementById('status').textContent,
      out: document.getElementById('out').textContent,
    }));
    Object.assign(out, st);
    if (p.screenshot) await page.screenshot({ path: p.screenshot, fullPage: true });
  } catch (e) {
    out.error = out.error || `driver: ${e.message}`;
  } finally {
    await context.close();
  }
  process.stdout.write(JSON.stringify(out) + '\n');
}

try {
  const queue = req.pages.map((p, i) => [p, i]);
  const workers = Array.from({ length: Math.max(1, req.parallel || 1) }, async () => {
    while (queue.length) {
      const [p, i] = queue.shift();
      await visit(p, i);
    }
  });
  await Promise.all(workers);
} catch (e) {
  console.error(`browser run failed: ${e.message}`);
  process.exitCode = 1;
} finally {
  await browser.close();
}
