// Headless Chromium (Debian's, through the JS client's playwright-core) fetches segments from
// BASE over HTTP/2 with TLS on one connection, idling IDLE_MS between two pairs of fetches.
// Prints [[path, status, bytes, protocol], ...] as JSON.
//   node tests/e2e/chromium_idle.cjs BASE IDLE_MS
const path = require('path');
const { chromium } = require(path.join(__dirname, '../../clients/js/node_modules/playwright-core'));

const [base, idle] = [process.argv[2], Number(process.argv[3])];

(async () => {
  const browser = await chromium.launch({
    executablePath: process.env.CHROMIUM || '/usr/bin/chromium',
    args: ['--ignore-certificate-errors'],
  });
  try {
    const page = await browser.newPage({ ignoreHTTPSErrors: true });
    await page.goto(`${base}/live`).catch(() => {});
    const fetchOne = (p) => page.evaluate(async (p) => {
      const r = await fetch(p, { cache: 'no-store' });
      const b = await r.arrayBuffer();
      const e = performance.getEntriesByType('resource').filter((x) => x.name.endsWith(p)).pop();
      return [p, r.status, b.byteLength, e ? e.nextHopProtocol : null];
    }, p);
    const out = [];
    for (const n of ['1', '2']) out.push(await fetchOne(`/vod/chunk-stream0-0000${n}.m4s`));
    await new Promise((r) => setTimeout(r, idle));
    for (const n of ['3', '1']) out.push(await fetchOne(`/vod/chunk-stream1-0000${n}.m4s`));
    console.log(JSON.stringify(out));
  } finally {
    await browser.close();
  }
})().catch((e) => { console.error(e); process.exit(1); });
