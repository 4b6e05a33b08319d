// The test link (support/relay.js) carries every byte, in order, at its rate.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import net from 'node:net';
import { createHash } from 'node:crypto';

import { startRelay } from './support/relay.js';

// A server that writes `total` bytes of a known pattern in writes of varied sizes (some a few
// bytes, some many packets), pausing now and then, so that the relay's reads end at odd places.
async function source(total) {
  const pattern = Buffer.alloc(total);
  for (let i = 0; i < total; i++) pattern[i] = (i * 7 + (i >> 8)) & 0xff;
  const server = net.createServer(async (s) => {
    s.setNoDelay(true);
    let at = 0;
    let k = 0;
    while (at < total) {
      const n = Math.min(total - at, [3, 1500, 17, 40000, 1, 2900, 700][k++ % 7]);
      s.write(pattern.subarray(at, at + n));
      at += n;
      if (k % 5 === 0) await new Promise((r) => setTimeout(r, 1 + (k % 3)));
    }
    s.end();
  });
  await new Promise((r) => server.listen(0, '127.0.0.1', r));
  return { server, port: server.address().port, digest: createHash('sha256').update(pattern).digest('hex') };
}

for (const rateKbit of [5000, 1500]) {
  test(`the link delivers every byte in order at ${rateKbit} kbit/s`, async () => {
    const total = 400_000;
    const src = await source(total);
    const relay = await startRelay({ upstreamPort: src.port, rateKbit, rttMs: 40 });
    try {
      const started = performance.now();
      const got = await new Promise((resolve, reject) => {
        const parts = [];
        const c = net.connect({ port: relay.port, host: '127.0.0.1' });
        c.on('data', (d) => parts.push(d));
        c.on('close', () => resolve(Buffer.concat(parts)));
        c.on('error', reject);
      });
      const ms = performance.now() - started;
      assert.equal(got.length, total);
      assert.equal(createHash('sha256').update(got).digest('hex'), src.digest, 'bytes arrived in order');
      // The rate holds: 400 kB take (400,000 × 8 / rate) ms at least.
      assert.ok(ms >= (total * 8) / rateKbit, `took ${ms.toFixed(0)} ms`);
    } finally {
      await relay.close();
      src.server.close();
    }
  });
}
