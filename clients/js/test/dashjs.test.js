// The dash.js integration's pure parts: the timing it reports for a load, and the MPD reading
// the live policy uses. (The integration as a whole runs in the browser test.)
import { test } from 'node:test';
import assert from 'node:assert/strict';

import { bufferAhead, handOverNeed, startMarginMs, LIVE_RESERVE_MS, liveController, liveDelayFor, liveMargin, marginNeededMs, progressEvents, pushAhead, resourceTiming, segmentSeconds } from '../src/dashjs.js';

// A pushed segment of 300 bytes carried in three messages of 100 bytes, 200 ms each on the socket,
// taken by the player long after it arrived.
const timing = {
  startedAt: 1000,
  firstByteAt: 1200,
  lastByteAt: 1600,
  busyMs: 600,
  transferSize: 330,
  arrivals: [
    [1200, 200, 100],
    [1400, 200, 100],
    [1600, 200, 100],
  ],
};

test('resource timing spans the socket time of the transfer, not the moment of delivery', () => {
  const rt = resourceTiming(timing, 300);
  assert.equal(rt.responseStart, 1000);
  assert.equal(rt.responseEnd, 1600);
  assert.equal(rt.transferSize, 330);
  // dash.js: throughput = transferSize * 8 / (responseEnd - responseStart) bits per ms.
  const kbits = (rt.transferSize * 8) / (rt.responseEnd - rt.responseStart);
  assert.equal(kbits, 4.4);
  assert.ok(rt.transferSize > 0, 'never taken for a cached response');
  assert.equal(resourceTiming(null, 300), null);
  assert.equal(resourceTiming(timing, 0), null);
});

test('a one-message transfer still spans at least a millisecond and its socket time', () => {
  const one = { startedAt: 5000, firstByteAt: 5300, lastByteAt: 5300, busyMs: 300, transferSize: 50, arrivals: [[5300, 300, 40]] };
  const rt = resourceTiming(one, 40);
  assert.equal(rt.responseEnd - rt.responseStart, 300);
  const zero = { ...one, busyMs: 0 };
  const rt0 = resourceTiming(zero, 40);
  assert.ok(rt0.responseEnd - rt0.responseStart >= 1);
});

test('progress events carry the bytes and socket time of each message, so traces show the link', () => {
  const evs = progressEvents(timing, 300);
  assert.deepEqual(
    evs.map((e) => [e.loaded, e.time]),
    [
      [0, 1],
      [100, 200],
      [200, 200],
      [300, 200],
    ],
  );
  // dash.js's XHR estimate drops the first trace: (300 bytes) / (600 ms) from the rest.
  const rest = evs.slice(1);
  const bytes = rest.reduce((a, e, i) => a + e.loaded - (i ? rest[i - 1].loaded : 0), 0);
  const ms = rest.reduce((a, e) => a + e.time, 0);
  assert.equal((bytes * 8) / ms, 4);
  assert.deepEqual(progressEvents(null, 42), [{ loaded: 42, total: 42, lengthComputable: true }]);
});

test('segment duration from the MPD', () => {
  assert.equal(segmentSeconds('<MPD maxSegmentDuration="PT2S" type="dynamic">'), 2);
  assert.equal(segmentSeconds('<MPD><SegmentTemplate timescale="1000000" duration="2000000" media="x"/>'), 2);
  assert.equal(segmentSeconds('<MPD><SegmentTemplate duration="4" media="x"/>'), 4);
  assert.equal(segmentSeconds('<MPD/>'), null);
});

test('the live margin follows the largest recent need plus the guard', () => {
  const o = { minSeconds: 0.1, guardMs: 25, segmentSeconds: 2 };
  // Nothing yet, or room to spare at every hand-over: the least margin.
  assert.equal(liveMargin([], o), 0.1);
  assert.equal(liveMargin([0, -300, 0], o), 0.1);
  // The largest recent need (130 ms) + the guard, to the millisecond.
  assert.equal(liveMargin([40, 130, 105], o), 0.155);
  assert.equal(liveMargin([40, 131, 105], { ...o, guardMs: 0 }), 0.131);
  // Never more than a segment: beyond that the defaults are the better policy.
  assert.equal(liveMargin([5000], o), 2);
  assert.equal(liveDelayFor(2, 0.155), 2.155);
});

test("what a hand-over needs: dash.js's latency past one segment, less what is buffered ahead, plus the reserve", () => {
  // 2.15 s behind the edge with 2 s segments, 0.05 s of audio left when the next arrives: the
  // playhead had to be 0.12 - 0.05 = 70 ms further back for 120 ms to be left, i.e. 220 ms.
  assert.equal(marginNeededMs(2.15, 0.05, 2, 120), 220);
  // Audio that runs 160 ms past the boundary (whole audio frames) leaves room.
  assert.equal(marginNeededMs(2.105, 0.265, 2, 120), -40);
  // Nothing to keep (video): only how far the playhead was past one segment minus what is left.
  assert.equal(marginNeededMs(2.105, 0.046, 2, 0), 59);
  // dash.js reports 0 before playback starts, NaN when not live; no buffer reading: no need read.
  assert.equal(marginNeededMs(0, 0.1, 2, 120), null);
  assert.equal(marginNeededMs(NaN, 0.1, 2, 120), null);
  assert.equal(marginNeededMs(2.1, NaN, 2, 120), null);
  const player = withBuffers({ getCurrentLiveLatency: () => 2.15 }, 50, { audio: [[48, 50.05]], video: [[48, 50.5]] });
  // Before any reserve (the controller adds the type's).
  assert.equal(handOverNeed(player, { mediaType: 'audio', duration: 2 }), 100);
  assert.equal(handOverNeed(player, { mediaType: 'video', duration: 2 }), -350);
  assert.equal(handOverNeed({}, { mediaType: 'audio', duration: 2 }), null);
  const throws = { getCurrentLiveLatency: () => { throw new Error('not initialized'); } };
  assert.equal(handOverNeed(throws, { mediaType: 'audio', duration: 2 }), null);
});

// dash.js's stream processors with a SourceBuffer per media type: `ranges` [[start, end]] per
// type, the playhead at `time`.
function withBuffers(player, time, ranges) {
  const timeRanges = (r) => ({ length: r.length, start: (i) => r[i][0], end: (i) => r[i][1] });
  const processor = (type) => ({ getType: () => type, getBuffer: () => ({ getAllBufferRanges: () => timeRanges(ranges[type]) }) });
  player.getVideoElement = () => ({ currentTime: time });
  player.getActiveStream = () => ({ getStreamProcessors: () => Object.keys(ranges).map(processor) });
  return player;
}

test('what is buffered ahead of the playhead, per media type, from its SourceBuffer', () => {
  const player = withBuffers({}, 10, { audio: [[0, 4], [6, 11.984]], video: [[6, 12]], text: [[20, 30]] });
  assert.equal(bufferAhead(player, 'audio').toFixed(3), '1.984');
  assert.equal(bufferAhead(player, 'video'), 2);
  // Nothing where the playhead is: none ahead; a playhead just short of a range's first frame
  // counts as in it.
  assert.equal(bufferAhead(player, 'text'), 0);
  assert.equal(bufferAhead(withBuffers({}, 5.95, { video: [[6, 8]] }), 'video'), 2);
  // dash.js not streaming yet (it throws), or no such media type: no reading.
  assert.equal(bufferAhead({ getActiveStream: () => { throw new Error('not initialized'); } }, 'audio'), null);
  assert.equal(bufferAhead(player, 'image'), null);
});

// A stand-in for dash.js: settings applied, its live latency and buffer levels as the test sets
// (`ahead` per media type: seconds buffered past the playhead).
function livePlayer() {
  const p = { latency: 0, ahead: { audio: NaN, video: NaN } };
  p.updateSettings = () => {};
  p.getCurrentLiveLatency = () => p.latency;
  p.seeking = false;
  p.getVideoElement = () => ({ currentTime: 100, seeking: p.seeking });
  const processor = (type) => ({
    getType: () => type,
    getBuffer: () => ({ getAllBufferRanges: () => ({ length: 1, start: () => 99, end: () => 100 + p.ahead[type] }) }),
  });
  p.getActiveStream = () => ({ getStreamProcessors: () => ['audio', 'video'].map(processor) });
  return p;
}
const liveStats = () => ({ liveDelayMode: 'default', liveDelaySeconds: null, liveDelayHistory: [], liveNeeded: [], liveReserveMs: { ...LIVE_RESERVE_MS }, liveStalls: [] });
const dynamicMpd = { body: new TextEncoder().encode('<MPD type="dynamic" maxSegmentDuration="PT2S">') };
const seg = (mediaType) => ({ mediaType, duration: 2 });

test('live over the socket: the start margin, then what each hand-over needed, reserve included', () => {
  const player = livePlayer();
  const stats = liveStats();
  const live = liveController(player, stats, { enabled: true, minMarginSeconds: 0.1, guardMs: 25, onEvent: () => {} });
  live.onMpd(dynamicMpd, true);
  assert.equal(stats.liveDelayMode, 'push');
  // The start: the largest reserve (audio 120 ms) + the guard + 105 ms for the first pushes.
  assert.equal(stats.liveDelaySeconds, 2.25);
  assert.equal(startMarginMs({ audio: 300, video: 0 }, 25), 430);
  // Playing 2.25 s behind; audio arrives with 0.2 s left, video with 0.25 s: audio needs
  // 250 - 200 + 120 = 170 ms, video 0 ms; 170 + 25 = 195 ms, but closer only after two
  // segments of each type.
  player.latency = 2.25;
  player.ahead = { audio: 0.2, video: 0.25 };
  live.onSegment(true, seg('audio'), 10);
  live.onSegment(true, seg('video'), 10);
  assert.deepEqual(stats.liveNeeded, [['audio', 170], ['video', 0]]);
  assert.equal(stats.liveDelaySeconds, 2.25);
  // Four readings, but one type read once: not yet.
  live.onSegment(true, seg('video'), 10);
  live.onSegment(true, seg('video'), 10);
  assert.equal(stats.liveDelaySeconds, 2.25);
  live.onSegment(true, seg('audio'), 10);
  assert.equal(stats.liveDelaySeconds, 2.195);
  // A later audio hand-over with less left moves it back at once.
  player.latency = 2.2;
  player.ahead = { audio: 0.1, video: 0.3 };
  live.onSegment(true, seg('audio'), 10);
  assert.equal(stats.liveDelaySeconds, 2.245);
  // Without dash.js's clock (no live latency yet): the load's wait + the look-again interval
  // (25 ms) stands in, plus the reserve: 300 + 25 + 120 + 25.
  player.latency = 0;
  live.onSegment(true, seg('audio'), 300);
  assert.deepEqual(stats.liveNeeded.at(-1), ['audio', 445]);
  assert.equal(stats.liveDelaySeconds, 2.47);
  // A load not served by a push counts nothing; three in a row bring dash.js's defaults back.
  for (let i = 0; i < 3; i++) live.onSegment(false, seg('video'));
  assert.equal(stats.liveDelayMode, 'default');
});

test('a stall at the live edge raises the reserve of the media that held least, and the delay with it', () => {
  const player = livePlayer();
  const stats = liveStats();
  const events = [];
  const live = liveController(player, stats, { enabled: true, minMarginSeconds: 0.1, guardMs: 25, onEvent: (n, d) => events.push([n, d]) });
  // Not live yet: a waiting event changes nothing.
  live.onStall();
  assert.deepEqual(stats.liveStalls, []);
  live.onMpd(dynamicMpd, true);
  player.latency = 2.25;
  player.ahead = { audio: 0.23, video: 0.35 };
  for (const t of ['audio', 'video', 'audio', 'video']) live.onSegment(true, seg(t), 10);
  // 250 - 230 + 120 + 25
  assert.equal(stats.liveDelaySeconds, 2.165);
  // A wait while seeking is not a stall.
  player.seeking = true;
  player.ahead = { audio: 0.25, video: 0.2 };
  live.onStall();
  assert.deepEqual(stats.liveStalls, []);
  player.seeking = false;
  // This browser's audio output runs 250 ms ahead: it waits with 0.25 s of audio buffered
  // (video held less, 0.2 s, but more over its own reserve, none).
  player.ahead = { audio: 0.25, video: 0.2 };
  live.onStall();
  assert.deepEqual(stats.liveStalls, [['audio', 250]]);
  assert.equal(stats.liveReserveMs.audio, 270);
  assert.equal(stats.liveReserveMs.video, 0);
  // The audio need read before is now counted with the new reserve: 20 + 270 + 25.
  assert.equal(stats.liveDelaySeconds, 2.315);
  assert.ok(events.some(([n, d]) => n === 'live-reserve' && d.mediaType === 'audio' && d.ms === 270));
  // A stall with less left than the reserve already kept (a late push) lowers nothing; one with
  // nothing buffered (starting) teaches nothing.
  player.ahead = { audio: 0.01, video: 0.3 };
  live.onStall();
  assert.equal(stats.liveReserveMs.audio, 270);
  player.ahead = { audio: 0, video: 0 };
  live.onStall();
  assert.deepEqual(stats.liveReserveMs, { audio: 270, video: 0 });
  // Nor does one with more of every type buffered than any audio output reads ahead.
  player.ahead = { audio: 2.4, video: 2.05 };
  live.onStall();
  assert.deepEqual(stats.liveReserveMs, { audio: 270, video: 0 });
  assert.deepEqual(stats.liveStalls.slice(1), [['audio', 10], ['audio', 0], ['video', 2050]]);
  // Past 500 ms held, nothing is learnt; up to it, the reserve stops at 500.
  player.ahead = { audio: 0.49, video: 2 };
  live.onStall();
  assert.equal(stats.liveReserveMs.audio, 500);
});

test('push-ahead K needs room for the requested segment and the pushed ones back to back', () => {
  // 863 kbit/s estimated for a 600 kbit/s Representation: pull the next one.
  assert.equal(pushAhead(2, 863 / 600), 0);
  assert.equal(pushAhead(2, 1.99), 0);
  assert.equal(pushAhead(2, 2), 1);
  assert.equal(pushAhead(2, 2.9), 1);
  assert.equal(pushAhead(2, 3), 2);
  assert.equal(pushAhead(2, 40), 2, 'never more than asked');
  assert.equal(pushAhead(2, NaN), 2, 'no estimate yet: as configured');
});
