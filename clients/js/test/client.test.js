// DashPushClient against a scripted in-process socket: streams, the push store, bounds, errors.
import { test } from 'node:test';
import assert from 'node:assert/strict';

import { Code, SUBPROTOCOL, decodeMessage, encodeMessage, encodeFrame } from '../src/codec.js';
import { ClosedError, ConnectError, DashPushClient, LimitError, ProtocolError, RequestError, TimeoutError } from '../src/client.js';

// A WebSocket stand-in: records what the client sends; `serve` pushes server messages in.
class FakeSocket extends EventTarget {
  static protocolToEcho = SUBPROTOCOL;
  static last = null;
  constructor(url, protocols) {
    super();
    this.url = url;
    this.offered = protocols;
    this.readyState = 0;
    this.sent = [];
    this.protocol = '';
    FakeSocket.last = this;
    queueMicrotask(() => {
      this.readyState = 1;
      this.protocol = FakeSocket.protocolToEcho;
      this.dispatchEvent(new Event('open'));
    });
  }
  send(bytes) {
    this.sent.push(decodeMessage(bytes));
  }
  close(code = 1000, reason = '') {
    if (this.readyState === 3) return;
    this.readyState = 3;
    const ev = new Event('close');
    ev.code = code;
    ev.reason = reason;
    queueMicrotask(() => this.dispatchEvent(ev));
  }
  serve(msg) {
    const ev = new Event('message');
    const bytes = msg instanceof Uint8Array ? msg : encodeMessage(msg);
    ev.data = bytes.buffer.slice(bytes.byteOffset, bytes.byteOffset + bytes.byteLength);
    this.dispatchEvent(ev);
  }
}

const enc = (s) => new TextEncoder().encode(s);
const text = (buf) => new TextDecoder().decode(buf);
const received = (streamId, url, payload, extra = {}) => ({
  code: Code.SEGMENT_RECEIVED,
  streamId,
  end: true,
  url,
  status: 200,
  contentType: 'video/mp4',
  payload: enc(payload),
  ...extra,
});
const eos = (streamId, reason, extra = {}) => ({ code: Code.END_OF_STREAM, streamId, end: true, reason, ...extra });

async function connect(opts = {}) {
  FakeSocket.protocolToEcho = SUBPROTOCOL;
  const c = await DashPushClient.connect('ws://gw.test:8080/dashpush', { WebSocket: FakeSocket, ...opts });
  return [c, FakeSocket.last];
}

test('connect offers the sub-protocol and rejects a server that does not echo it', async () => {
  const [c, ws] = await connect();
  assert.deepEqual(ws.offered, [SUBPROTOCOL]);
  assert.equal(ws.binaryType, 'arraybuffer');
  c.close();
  FakeSocket.protocolToEcho = '';
  await assert.rejects(DashPushClient.connect('ws://gw.test/dashpush', { WebSocket: FakeSocket }), (e) => e instanceof ConnectError && e.code === 'subprotocol');
  await assert.rejects(DashPushClient.connect('ws://gw.test/dashpush', { WebSocket: null }), ConnectError);
});

test('an MPD answer in pieces, pushes on even streams, complete at the end', async () => {
  const [c, ws] = await connect();
  const mpd = c.requestMpd('/vod/manifest.mpd', { directive: 'urn:mpeg:dash:fdh:2016:push-fast-start' });
  assert.deepEqual(ws.sent[0], { code: Code.MPD_REQUEST, streamId: 1, end: true, url: '/vod/manifest.mpd', pushDirective: 'urn:mpeg:dash:fdh:2016:push-fast-start' });
  ws.serve({ code: Code.MPD_RECEIVED, streamId: 1, end: false, url: '/vod/manifest.mpd', status: 200, contentType: 'application/dash+xml', contentLength: 9, pushAck: 'ack', payload: enc('<MPD') });
  ws.serve({ ...received(2, '/vod/init.m4s', 'in'), end: false, pushed: true, parent: 1 });
  ws.serve({ code: Code.MPD_RECEIVED, streamId: 1, end: true, url: '/vod/manifest.mpd', status: 200, contentType: 'application/dash+xml', payload: enc('/>\r\n\n') });
  const r = await mpd;
  assert.equal(text(r.body), '<MPD/>\r\n\n');
  assert.equal(r.pushAck, 'ack');
  assert.equal(r.status, 200);
  assert.equal(r.url, 'http://gw.test:8080/vod/manifest.mpd');
  // The push in progress: takePushed gives a promise.
  const pending = c.takePushed('http://gw.test:8080/vod/init.m4s');
  assert.ok(pending instanceof Promise);
  ws.serve({ code: Code.SEGMENT_RECEIVED, streamId: 2, end: true, url: '/vod/init.m4s', status: 200, contentType: 'video/mp4', payload: enc('it') });
  ws.serve({ ...received(4, '/vod/seg1.m4s', 'seg1'), pushed: true, parent: 1 });
  ws.serve(eos(1, 'complete'));
  assert.deepEqual(await r.complete, { reason: 'complete', status: undefined, detail: undefined });
  assert.equal(text((await pending).body), 'init');
  const hit = c.takePushed('/vod/seg1.m4s');
  assert.equal(text(hit.body), 'seg1');
  assert.equal(c.takePushed('/vod/seg1.m4s'), null);
  assert.deepEqual([c.counters.pushed, c.counters.claimed, c.counters.cancelled], [2, 2, 0]);
  c.close();
});

test('segment request with range; stream ids go 1, 3, 5', async () => {
  const [c, ws] = await connect();
  const a = c.requestSegment('http://gw.test:8080/vod/a.m4s', { range: '0-9', directive: 'urn:mpeg:dash:fdh:2016:push-next;2' });
  const b = c.requestSegment('http://elsewhere.test/b.m4s');
  assert.deepEqual(ws.sent.map((m) => [m.streamId, m.url, m.range]), [[1, '/vod/a.m4s', '0-9'], [3, 'http://elsewhere.test/b.m4s', undefined]]);
  ws.serve(received(3, '/b.m4s', 'B'));
  ws.serve(received(1, '/vod/a.m4s', '0123456789', { status: 206 }));
  assert.equal(text((await a).body), '0123456789');
  assert.equal((await a).status, 206);
  assert.equal(text((await b).body), 'B');
  c.cancel({ streams: [2], urls: ['http://gw.test:8080/vod/c.m4s'] });
  assert.deepEqual(ws.sent[2], { code: Code.SEGMENT_CANCEL, streamId: 5, end: true, streams: [2], urls: ['/vod/c.m4s'] });
  c.close();
});

test('errors: End of stream error rejects with the status; cancelled pushes are counted', async () => {
  const [c, ws] = await connect();
  const missing = c.requestSegment('/nope.m4s');
  ws.serve(eos(1, 'error', { status: 404, detail: 'origin answered 404' }));
  await assert.rejects(missing, (e) => e instanceof RequestError && e.status === 404 && e.reason === 'error');
  const req = c.requestSegment('/vod/s1.m4s');
  ws.serve(received(3, '/vod/s1.m4s', 'x'));
  await req;
  ws.serve({ ...received(2, '/vod/s2.m4s', 'half'), end: false, pushed: true, parent: 3 });
  const waiting = c.takePushed('/vod/s2.m4s');
  ws.serve(eos(2, 'cancelled'));
  assert.equal(await waiting, null);
  assert.equal(c.counters.cancelled, 1);
  // A push the origin failed.
  ws.serve({ ...received(4, '/vod/s3.m4s', ''), pushed: true, parent: 3, status: 502 });
  assert.equal(c.takePushed('/vod/s3.m4s'), null);
  assert.equal(c.counters.pushErrors, 1);
  c.close();
});

test('the store is bounded, oldest out', async () => {
  const [c, ws] = await connect({ maxStoreEntries: 2, maxStoreBytes: 10 });
  ws.serve({ ...received(2, '/1', 'aaaa'), pushed: true, parent: 1 });
  ws.serve({ ...received(4, '/2', 'bbbb'), pushed: true, parent: 1 });
  ws.serve({ ...received(6, '/3', 'cc'), pushed: true, parent: 1 });
  assert.equal(c.takePushed('/1'), null);
  assert.equal(c.counters.evicted, 1);
  ws.serve({ ...received(8, '/4', 'dddddd'), pushed: true, parent: 1 });
  // 12 bytes over 10 and three entries over two: /2 goes, /3 and /4 stay (8 bytes).
  assert.equal(c.takePushed('/2'), null);
  assert.equal(c.counters.evicted, 2);
  assert.equal(text(c.takePushed('/3').body), 'cc');
  assert.equal(text(c.takePushed('/4').body), 'dddddd');
  ws.serve({ ...received(10, '/5', 'x'.repeat(11)), pushed: true, parent: 1 });
  assert.equal(c.takePushed('/5'), null, 'a resource over the whole byte budget is not kept');
  c.close();
});

test('bounds and timeouts', async () => {
  const [c, ws] = await connect({ maxOpenRequests: 1, maxResourceBytes: 4 });
  const big = c.requestSegment('/big');
  await assert.rejects(c.requestSegment('/other'), LimitError);
  ws.serve({ ...received(1, '/big', 'abc'), end: false });
  ws.serve({ ...received(1, '/big', 'de'), end: true });
  await assert.rejects(big, LimitError);
  ws.serve(eos(1, 'complete'));
  await assert.rejects(c.requestSegment('/slow', { timeoutMs: 20 }), TimeoutError);
  // An oversized push is cancelled and dropped.
  ws.serve({ ...received(2, '/huge', 'abcdef'), pushed: true, parent: 1 });
  assert.equal(c.takePushed('/huge'), null);
  assert.deepEqual(ws.sent.at(-1).streams, [2]);
  c.close();
});

test('an unreadable server message closes the socket and fails pending requests', async () => {
  const [c, ws] = await connect();
  const p = c.requestMpd('/m.mpd');
  ws.serve(encodeFrame({ code: 4, streamId: 1, metadata: '{}' }).map((b, i) => (i === 1 ? 0x80 : b)));
  await assert.rejects(p, ProtocolError);
  assert.equal(c.closed, true);
  await assert.rejects(c.requestMpd('/m.mpd'), ProtocolError);
});

test('socket close rejects pending requests with ClosedError', async () => {
  const [c, ws] = await connect();
  const p = c.requestMpd('/m.mpd');
  ws.close(1006, 'gone');
  await assert.rejects(p, (e) => e instanceof ClosedError && e.closeCode === 1006);
  assert.throws(() => c.cancel({ streams: [2] }), ClosedError);
});

test('takePushed with waitMs: waits for a push still to come while a cycle runs', async () => {
  const [c, ws] = await connect();
  const mpd = c.requestMpd('/m.mpd', { directive: 'urn:mpeg:dash:fdh:2016:push-fast-start' });
  ws.serve({ code: Code.MPD_RECEIVED, streamId: 1, end: true, url: '/m.mpd', status: 200, contentType: 'application/dash+xml', payload: enc('<MPD/>') });
  await mpd;
  // Not pushed yet, cycle running: a promise.
  const later = c.takePushed('/a.m4s', { waitMs: 1000 });
  const never = c.takePushed('/b.m4s', { waitMs: 1000 });
  const short = c.takePushed('/c.m4s', { waitMs: 10 });
  assert.ok(later instanceof Promise && never instanceof Promise);
  assert.equal(await short, null, 'gives up after waitMs');
  ws.serve({ ...received(2, '/a.m4s', 'A'), pushed: true, parent: 1 });
  assert.equal(text((await later).body), 'A');
  ws.serve(eos(1, 'complete'));
  assert.equal(await never, null, 'gives up when the cycle is over');
  // No cycle running: no waiting.
  assert.equal(c.takePushed('/d.m4s', { waitMs: 1000 }), null);
  assert.equal(c.counters.claimed, 1);
  c.close();
});

// A clock the test moves by hand.
function clock(start = 1000) {
  const c = { t: start, now: () => c.t, at: (t) => (c.t = t) };
  return c;
}

test('timing: a request answer is timed from the request, each message from the one before', async () => {
  const k = clock();
  const [c, ws] = await connect({ now: k.now });
  k.at(1000);
  const seg = c.requestSegment('/vod/s1.m4s');
  // 40 ms of round trip, then three messages, the socket busy 100 ms with each.
  k.at(1040 + 100);
  ws.serve({ ...received(1, '/vod/s1.m4s', 'aaaa'), end: false });
  k.at(1240);
  ws.serve({ ...received(1, '/vod/s1.m4s', 'bbbb'), end: false });
  k.at(1340);
  ws.serve(received(1, '/vod/s1.m4s', 'cc'));
  const r = await seg;
  assert.equal(r.timing.startedAt, 1000);
  assert.equal(r.timing.firstByteAt, 1140);
  assert.equal(r.timing.lastByteAt, 1340);
  // The first message counts from the request (the socket was idle): 140 + 100 + 100.
  assert.equal(r.timing.busyMs, 340);
  assert.deepEqual(r.timing.arrivals.map(([at, busy, n]) => [at, busy, n]), [[1140, 140, 4], [1240, 100, 4], [1340, 100, 2]]);
  assert.ok(r.timing.transferSize > 10, 'message bytes on the wire, headers included');
});

test('timing: a push that arrived long before it was taken keeps the times of its transfer', async () => {
  const k = clock();
  const [c, ws] = await connect({ now: k.now });
  k.at(1000);
  const seg = c.requestSegment('/vod/s1.m4s', { directive: 'urn:mpeg:dash:fdh:2016:push-next;1' });
  k.at(1050);
  ws.serve(received(1, '/vod/s1.m4s', 'parent'));
  await seg;
  // The push follows on a saturated socket: each message took 200 ms.
  k.at(1250);
  ws.serve({ ...received(2, '/vod/s2.m4s', 'xxxx'), end: false, pushed: true, parent: 1 });
  k.at(1450);
  ws.serve({ ...received(2, '/vod/s2.m4s', 'yyyy'), pushed: false });
  // Taken by the player 5 s later: the timing still says 400 ms for 8 bytes.
  k.at(6450);
  const hit = c.takePushed('/vod/s2.m4s');
  assert.equal(text(hit.body), 'xxxxyyyy');
  assert.equal(hit.timing.startedAt, 1050);
  assert.equal(hit.timing.firstByteAt, 1250);
  assert.equal(hit.timing.lastByteAt, 1450);
  assert.equal(hit.timing.busyMs, 400);
});

test('timing: messages handled after the event loop was held up are not read as a fast link', async () => {
  const k = clock();
  const [c, ws] = await connect({ now: k.now });
  k.at(1000);
  c.tick();
  const mpd = c.requestMpd('/vod/manifest.mpd', { directive: 'urn:mpeg:dash:fdh:2016:push-next;1' });
  // The answer reached the socket at about 1040, but the page was busy (no heartbeat after
  // 1000) and handled it at 1800, with the first half of a push queued behind it.
  k.at(1800);
  ws.serve(received(1, '/vod/manifest.mpd', 'mpd'));
  await mpd;
  k.at(1801);
  ws.serve({ ...received(2, '/vod/s1.m4s', 'xxxx'), end: false, pushed: true, parent: 1 });
  c.tick();
  // The loop runs freely again; the rest of the push takes 400 ms of the socket.
  k.at(2201);
  ws.serve({ ...received(2, '/vod/s1.m4s', 'yyyy'), pushed: false });
  const hit = c.takePushed('/vod/s1.m4s');
  // Counted from the last heartbeat before the hold-up (1000), not from when the queued
  // messages were handled (1800): 1201 ms for the push, not 400.
  assert.equal(hit.timing.startedAt, 1000);
  assert.equal(hit.timing.lastByteAt, 2201);
  assert.ok(hit.timing.busyMs >= 1201, `busy ${hit.timing.busyMs}`);
  c.close();
});

test('discardPushes cancels the pushes being received and drops the stored ones it selects', async () => {
  const [c, ws] = await connect();
  const seg = c.requestSegment('/vod/v0-1.m4s', { directive: 'urn:mpeg:dash:fdh:2016:push-next;3' });
  ws.serve(received(1, '/vod/v0-1.m4s', 'p'));
  await seg;
  ws.serve({ ...received(2, '/vod/v0-2.m4s', 'done'), pushed: true, parent: 1 });
  ws.serve({ ...received(4, '/vod/v0-3.m4s', 'half'), end: false, pushed: true, parent: 1 });
  ws.serve({ ...received(6, '/vod/a-2.m4s', 'audio'), pushed: true, parent: 99 });
  const sent = ws.sent.length;
  const r = c.discardPushes(({ parent }) => parent === 1);
  assert.deepEqual(r, { cancelled: 1, dropped: 1 });
  assert.deepEqual(ws.sent.slice(sent).map((m) => [m.code, m.streams]), [[Code.SEGMENT_CANCEL, [4]]]);
  assert.equal(c.takePushed('/vod/v0-2.m4s'), null);
  assert.equal(c.takePushed('/vod/v0-3.m4s'), null);
  assert.ok(c.takePushed('/vod/a-2.m4s'), 'other pushes stay');
  assert.equal(c.counters.discarded, 1);
});

test('timing: a request sent while messages are still coming does not shorten their transfer', async () => {
  const k = clock();
  const [c, ws] = await connect({ now: k.now });
  k.at(1000);
  const first = c.requestSegment('/vod/s1.m4s');
  k.at(1100);
  ws.serve({ ...received(1, '/vod/s1.m4s', 'aaaa'), end: false });
  // Another request goes out mid-transfer; the next message still took 300 ms of the socket.
  k.at(1300);
  const second = c.requestSegment('/vod/s2.m4s');
  k.at(1400);
  ws.serve(received(1, '/vod/s1.m4s', 'bb'));
  const r = await first;
  assert.equal(r.timing.busyMs, 100 + 300);
  k.at(1500);
  ws.serve(received(3, '/vod/s2.m4s', 'cc'));
  assert.equal((await second).timing.busyMs, 100);
});

test('takePushed keeps waiting while push messages keep arriving', async () => {
  const [c, ws] = await connect();
  const seg = c.requestSegment('/vod/v-1.m4s', { directive: 'urn:mpeg:dash:fdh:2016:push-next;2' });
  ws.serve(received(1, '/vod/v-1.m4s', 'p'));
  await seg;
  const wanted = c.takePushed('/vod/v-3.m4s', { waitMs: 60 });
  assert.ok(wanted instanceof Promise);
  // The push before it trickles in for longer than waitMs in all.
  ws.serve({ ...received(2, '/vod/v-2.m4s', 'x'), end: false, pushed: true, parent: 1 });
  for (let i = 0; i < 3; i++) {
    await new Promise((r) => setTimeout(r, 40));
    ws.serve({ ...received(2, '/vod/v-2.m4s', 'x'), end: i === 2 });
  }
  ws.serve({ ...received(4, '/vod/v-3.m4s', 'three'), pushed: true, parent: 1 });
  const hit = await wanted;
  assert.equal(text(hit.body), 'three');
});

test('takePushed with a media type waits only for cycles of that media type', async () => {
  const [c, ws] = await connect();
  const video = c.requestSegment('/vod/v-1.m4s', { directive: 'urn:mpeg:dash:fdh:2016:push-next;2', tag: { mediaType: 'video' } });
  ws.serve(received(1, '/vod/v-1.m4s', 'p'));
  await video;
  // A video cycle runs: an audio load does not wait for it.
  assert.equal(c.takePushed('/vod/a-2.m4s', { waitMs: 5000, mediaType: 'audio' }), null);
  // A video load does, and gets the push.
  const v2 = c.takePushed('/vod/v-2.m4s', { waitMs: 5000, mediaType: 'video' });
  assert.ok(v2 instanceof Promise);
  ws.serve({ ...received(2, '/vod/v-2.m4s', 'two'), pushed: true, parent: 1 });
  assert.equal(text((await v2).body), 'two');
});

test('takePushed does not wait on a cycle of another Representation (after a switch)', async () => {
  const [c, ws] = await connect();
  const hi = c.requestSegment('/live/hi-1.m4s', { directive: 'urn:mpeg:dash:fdh:2016:push-next;2', tag: { mediaType: 'video', representation: 'hi' } });
  ws.serve(received(1, '/live/hi-1.m4s', 'p'));
  await hi;
  // The cycle of `hi` will push hi-2 and hi-3 (live: when they appear); a load of `lo` after a
  // switch goes straight to a request.
  assert.equal(c.takePushed('/live/lo-2.m4s', { waitMs: 5000, mediaType: 'video', representation: 'lo' }), null);
  // A load of `hi` (or one whose Representation is unknown) still waits for it.
  const h2 = c.takePushed('/live/hi-2.m4s', { waitMs: 5000, mediaType: 'video', representation: 'hi' });
  assert.ok(h2 instanceof Promise);
  assert.ok(c.takePushed('/live/x-2.m4s', { waitMs: 50, mediaType: 'video' }) instanceof Promise);
  ws.serve({ ...received(2, '/live/hi-2.m4s', 'two'), pushed: true, parent: 1 });
  assert.equal(text((await h2).body), 'two');
});
