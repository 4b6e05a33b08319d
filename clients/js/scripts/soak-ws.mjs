// WebSocket clients for the soak benchmark (benches/soak.py): each plays the VOD stream over
// the gateway's sub-protocol, segment after segment with push-next 2, taking pushed segments
// instead of asking for them, and starts over at the end; a closed socket is reopened.
//
//   node clients/js/scripts/soak-ws.mjs WS_URL SECONDS CLIENTS
//
// Prints one JSON line per failure ({t, kind, status?, detail}) as it happens, then a summary
// line {summary: {requests, pushed, failures, reconnects}}. `t` is seconds since the epoch.
import { WebSocket } from 'ws';
import { DashPushClient } from '../src/client.js';

const [url, secondsArg, clientsArg] = process.argv.slice(2);
const until = Date.now() + Number(secondsArg) * 1000;
const clients = Number(clientsArg ?? 2);
const SEGMENTS = 3; // the built-in VOD stream's segments per Representation
const REPS = ['stream0', 'stream1'];
const totals = { requests: 0, pushed: 0, failures: 0, reconnects: 0 };

function fail(kind, status, detail) {
  totals.failures++;
  console.log(JSON.stringify({ t: Date.now() / 1000, kind, status, detail: String(detail ?? '').slice(0, 200) }));
}

const sleep = (ms) => new Promise((r) => setTimeout(r, ms));

async function play(n) {
  const rep = REPS[n % REPS.length];
  while (Date.now() < until) {
    let c;
    try {
      c = await DashPushClient.connect(url, { WebSocket });
    } catch (e) {
      fail('connect', undefined, e.message);
      await sleep(500);
      continue;
    }
    try {
      const mpd = await c.requestMpd('/vod/manifest.mpd');
      totals.requests++;
      if (mpd.status !== 200) fail('mpd', mpd.status);
      for (let k = 1; k <= SEGMENTS && Date.now() < until; k++) {
        const seg = `/vod/chunk-${rep}-${String(k).padStart(5, '0')}.m4s`;
        let got = c.takePushed(seg, { waitMs: 500 });
        if (got && typeof got.then === 'function') got = await got;
        if (got) {
          totals.pushed++;
          if (got.status !== 200) fail('push', got.status);
        } else {
          const r = await c.requestSegment(seg, { directive: 'urn:mpeg:dash:fdh:2016:push-next;2' });
          totals.requests++;
          if (r.status !== 200) fail('segment', r.status);
          await r.complete;
        }
        await sleep(100);
      }
    } catch (e) {
      fail('request', e.status, e.message);
      await sleep(200);
    } finally {
      c.close();
      totals.reconnects++;
    }
  }
}

await Promise.all(Array.from({ length: clients }, (_, n) => play(n)));
console.log(JSON.stringify({ summary: totals }));
process.exit(0);
