// Driver of TestBrowserVerify. Usage:
//   node browser_verify.mjs browser http://127.0.0.1:PORT
//   node browser_verify.mjs node http://127.0.0.1:PORT /path/to/integrity.js
// Prints the results of cases.mjs as one JSON line on stdout.
import { pathToFileURL } from 'node:url';

const [mode, server, libPath] = process.argv.slice(2);

if (mode === 'node') {
  const lib = await import(pathToFileURL(libPath).href);
  const { runCases } = await import('./cases.mjs');
  console.log(JSON.stringify(await runCases(lib, server)));
} else {
  const { chromium } = await import('playwright-core');
  const browser = await chromium.launch({
    executablePath: '/usr/bin/chromium',
    args: ['--no-sandbox', '--disable-gpu-sandbox', '--no-first-run', '--disable-background-networking',
      '--disable-component-update', '--disable-sync', '--disable-quic'],
  });
  try {
    const page = await browser.newPage();
    const logs = [];
    page.on('console', (m) => logs.push(m.text()));
    page.on('pageerror', (e) => logs.push(String(e)));
    await page.goto(`${server}/test.html`);
    const res = await page.waitForFunction(() => window.__result, null, { timeout: 20000 });
    console.log(JSON.stringify(await res.jsonValue()));
  } catch (e) {
    console.error(`browser run failed: ${e.message}`);
    process.exitCode = 1;
  } finally {
    await browser.close();
  }
}
