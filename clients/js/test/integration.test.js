// Integration: DashPushClient against the real gateway (demo origin + `dashpush run`, ports 0).
// DASHPUSH_BIN picks the binary (default ../../target/debug/dashpush relative to clients/js).
import { after, before, test } from 'node:test';
import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import path from 'node:path';
import WebSocket from 'ws';

import { SUBPROTOCOL } from '../src/codec.js';
import { ConnectError, DashPushClient, RequestError } from '../src/client.js';
import { demoDir, metricSum, startGateway } from './support/gateway.js';

const FAST_START = 'urn:mpeg:dash:fdh:2016:push-fast-start;{"segments":2}';
const demoFile = (name) => readFileSync(path.join(demoDir, 'vod', name));
const same = (buf, name) => Buffer.compare(Buffer.from(buf), demoFile(name)) === 0;

let gw;
before(async () => {
  gw = await startGateway();
});
after(async () => {
  await gw?.stop();
});

const connect = (opts = {}) => DashPushClient.connect(gw.wsUrl, { WebSocket, ...opts });

test('MPD request with fast start: the MPD, then inits and first segments pushed byte-identical', async () => {
  const c = await connect();
  const pushedEvents = [];
  c.on('pushed', (e) => pushedEvents.push(e));
  try {
    const mpd = await c.requestMpd('/vod/manifest.mpd', { directive: FAST_START });
    assert.equal(mpd.status, 200);
    assert.match(mpd.contentType, /dash\+xml/);
    assert.ok(same(mpd.body, 'manifest.mpd'), 'MPD body equals the origin file');
    assert.match(mpd.pushAck ?? '', /^urn:mpeg:dash:fdh:2016:push-fast-start/);
    const end = await mpd.complete;
    assert.equal(end.reason, 'complete');
    // Every push arrived before the request's End of stream complete.
    assert.ok(pushedEvents.length >= 4, `pushes: ${pushedEvents.map((e) => e.url)}`);
    for (const e of pushedEvents) {
      assert.equal(e.parent, mpd.streamId);
      assert.equal(e.streamId % 2, 0);
    }
    const names = pushedEvents.map((e) => new URL(e.url).pathname.replace('/vod/', ''));
    // The selection: one video Representation and the audio one, init + 2 segments each.
    const inits = names.filter((n) => n.startsWith('init-'));
    const chunks = names.filter((n) => n.startsWith('chunk-'));
    assert.equal(inits.length, 2, `inits: ${names}`);
    assert.equal(chunks.length, 4, `chunks: ${names}`);
    assert.ok(inits.includes('init-stream2.m4s'), 'the audio init is pushed');
    for (const n of names) {
      const hit = c.takePushed(`/vod/${n}`);
      assert.ok(hit && !(hit instanceof Promise), `${n} is in the store`);
      assert.equal(hit.status, 200);
      assert.ok(same(hit.body, n), `${n} is byte-identical to the origin's`);
    }
    assert.equal(c.counters.pushed, names.length);
    assert.equal(c.counters.claimed, names.length);
    assert.ok((await metricSum(gw.admin, 'dashpush_push_promises_total', { transport: 'ws' })) >= names.length);
  } finally {
    c.close();
  }
});

test('segment request with push-next: the segment, then the next ones of its Representation', async () => {
  const c = await connect();
  try {
    // push-next is planned from the MPD, which the gateway learns when a client fetches it.
    await c.requestMpd('/vod/manifest.mpd');
    const seg = await c.requestSegment('/vod/chunk-stream0-00001.m4s', { directive: 'urn:mpeg:dash:fdh:2016:push-next;2' });
    assert.equal(seg.status, 200);
    assert.ok(same(seg.body, 'chunk-stream0-00001.m4s'));
    assert.match(seg.pushAck ?? '', /push-next;2$/);
    assert.equal((await seg.complete).reason, 'complete');
    for (const n of ['chunk-stream0-00002.m4s', 'chunk-stream0-00003.m4s']) {
      const hit = c.takePushed(`${gw.httpBase}/vod/${n}`);
      assert.ok(hit, `${n} pushed`);
      assert.ok(same(hit.body, n));
    }
    assert.deepEqual([c.counters.pushed, c.counters.claimed], [2, 2]);
    // An absolute URL on the same host works as a request URL too.
    const abs = await c.requestSegment(`${gw.httpBase}/vod/init-stream1.m4s`);
    assert.ok(same(abs.body, 'init-stream1.m4s'));
    // A byte range.
    const part = await c.requestSegment('/vod/chunk-stream1-00002.m4s', { range: '0-99' });
    assert.ok([200, 206].includes(part.status));
    if (part.status === 206) assert.ok(Buffer.from(part.body).equals(demoFile('chunk-stream1-00002.m4s').subarray(0, 100)));
  } finally {
    c.close();
  }
});

// The cancel tests run on their own gateway whose origin answers after 300 ms and that prefetches
// nothing by itself. The requested resource is fetched once first, so its answer comes from the
// cache at once while the pushes still wait 300 ms for the origin: the cancel sent on the first
// message of the answer reaches the gateway before any push has started.
async function withSlowGateway(fn) {
  const slow = await startGateway({ originArgs: ['--latency-ms', '300'], gatewayArgs: ['--prefetch-next', '0'] });
  const c = await DashPushClient.connect(slow.wsUrl, { WebSocket });
  try {
    return await fn(c, slow);
  } finally {
    c.close();
    await slow.stop();
  }
}

const firstAnswer = (c) => new Promise((r) => {
  const off = c.on('answer', (e) => {
    off();
    r(e);
  });
});

test('cancel by URL before the request that would push it (kept by the gateway)', () =>
  withSlowGateway(async (c) => {
    const cancelled = [];
    c.on('cancelled', (e) => cancelled.push(e.streamId));
    await c.requestMpd('/vod/manifest.mpd'); // the gateway learns the MPD (push-next needs it)
    c.cancel({ urls: ['/vod/chunk-stream1-00002.m4s'] });
    const seg = await c.requestSegment('/vod/chunk-stream1-00001.m4s', { directive: 'urn:mpeg:dash:fdh:2016:push-next;2' });
    assert.ok(same(seg.body, 'chunk-stream1-00001.m4s'));
    assert.equal((await seg.complete).reason, 'complete');
    assert.equal(cancelled.length, 1, `cancelled streams: ${cancelled}`);
    assert.equal(cancelled[0] % 2, 0);
    assert.ok(c.takePushed('/vod/chunk-stream1-00002.m4s') === null, 'the cancelled push was not delivered');
    const next = c.takePushed('/vod/chunk-stream1-00003.m4s');
    assert.ok(next && same(next.body, 'chunk-stream1-00003.m4s'), 'the other push was delivered');
    assert.deepEqual([c.counters.pushed, c.counters.cancelled], [1, 1]);
  }));

test('cancel by URL once the answer has started: the planned pushes end cancelled', () =>
  withSlowGateway(async (c) => {
    const cancelled = [];
    c.on('cancelled', (e) => cancelled.push(e.streamId));
    await c.requestMpd('/vod/manifest.mpd');
    await c.requestSegment('/vod/chunk-stream0-00001.m4s'); // now cached
    const urls = ['/vod/chunk-stream0-00002.m4s', `${c.base}vod/chunk-stream0-00003.m4s`];
    const answered = firstAnswer(c);
    const p = c.requestSegment('/vod/chunk-stream0-00001.m4s', { directive: 'urn:mpeg:dash:fdh:2016:push-next;2' });
    assert.match((await answered).pushAck, /push-next;2$/);
    c.cancel({ urls });
    const seg = await p;
    assert.ok(same(seg.body, 'chunk-stream0-00001.m4s'));
    assert.equal((await seg.complete).reason, 'complete');
    assert.equal(cancelled.length, 2, `cancelled streams: ${cancelled}`);
    for (const u of urls) assert.ok(c.takePushed(u) === null, `${u} was not delivered`);
    assert.deepEqual([c.counters.pushed, c.counters.cancelled], [0, 2]);
  }));

test('cancel by stream id: only the named pushes end cancelled, the others arrive', () =>
  withSlowGateway(async (c) => {
    const cancelled = [];
    c.on('cancelled', (e) => cancelled.push(e.streamId));
    await c.requestMpd('/vod/manifest.mpd'); // now cached
    const answered = firstAnswer(c);
    const p = c.requestMpd('/vod/manifest.mpd', { directive: 'urn:mpeg:dash:fdh:2016:push-fast-start;{"segments":3}' });
    await answered;
    // The first pushes on this socket: server streams 2, 4, 6, ... in push order.
    c.cancel({ streams: [4, 6] });
    const r = await p;
    assert.ok(same(r.body, 'manifest.mpd'));
    assert.equal((await r.complete).reason, 'complete');
    assert.deepEqual(cancelled.sort((a, b) => a - b), [4, 6]);
    assert.ok(c.counters.pushed >= 4, `delivered ${c.counters.pushed}`);
    assert.equal(c.counters.cancelled, 2);
  }));

test('a missing path: End of stream error with 404, the socket stays open', async () => {
  const c = await connect();
  try {
    await assert.rejects(c.requestSegment('/vod/no-such-segment.m4s'), (e) => e instanceof RequestError && e.reason === 'error' && e.status === 404);
    const ok = await c.requestSegment('/vod/init-stream0.m4s');
    assert.ok(same(ok.body, 'init-stream0.m4s'));
  } finally {
    c.close();
  }
});

test('the handshake fails with 400 when the sub-protocol is not offered', async () => {
  const status = await new Promise((resolve, reject) => {
    const ws = new WebSocket(gw.wsUrl);
    ws.on('unexpected-response', (_req, res) => {
      resolve(res.statusCode);
      ws.terminate();
    });
    ws.on('open', () => reject(new Error('the upgrade was accepted without the sub-protocol')));
    ws.on('error', () => {});
  });
  assert.equal(status, 400);
  // The same with our client, offering another name: a typed error.
  await assert.rejects(
    DashPushClient.connect(gw.wsUrl, { WebSocket: class extends WebSocket { constructor(u) { super(u, ['other.example']); } } }),
    ConnectError,
  );
  // And plain HTTP on the endpoint URL is not broken by the upgrade handling.
  const c = await connect();
  assert.equal(c.ws.protocol, SUBPROTOCOL);
  c.close();
});
