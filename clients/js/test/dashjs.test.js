// The dash.js integration's pure parts: the timing it reports for a load, and the MPD reading
// the live policy uses. (The integration as a whole runs in the browser test.)
import { test } from 'node:test';
import assert from 'node:assert/strict';

import { deliveredLateness, latenessMs, liveDelayFor, liveMargin, progressEvents, pushAhead, resourceTiming, segmentSeconds } from '../src/dashjs.js';

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

test('the live margin follows how late pushed segments were handed over after their availability', () => {
  const o = { minSeconds: 0.1, guardMs: 25, segmentSeconds: 2 };
  // Nothing yet, or pushes that were there when dash.js asked: the least margin.
  assert.equal(liveMargin([], o), 0.1);
  assert.equal(liveMargin([0, 0, 0], o), 0.1);
  // The latest recent hand-over (130 ms) + the guard, to the millisecond.
  assert.equal(liveMargin([40, 130, 105], o), 0.155);
  assert.equal(liveMargin([40, 131, 105], { ...o, guardMs: 0 }), 0.131);
  // Never more than a segment: beyond that the defaults are the better policy.
  assert.equal(liveMargin([5000], o), 2);
  assert.equal(liveDelayFor(2, 0.155), 2.155);
});

test("lateness after availability on dash.js's clock", () => {
  // dash.js plays 2.2 s behind its clock's edge, the playhead at 100 s: its now is 102.2 s into
  // the stream; the segment [100.0, 102.0) became available 0.2 s ago.
  assert.equal(latenessMs(2.2, 100, 102), 200);
  // Handed over before dash.js's clock says the segment exists (its clock is behind): negative,
  // which the margin counts as 0.
  assert.equal(latenessMs(2.1, 100, 102.3), -200);
  // dash.js reports 0 before playback starts, NaN when not live: no reading.
  assert.equal(latenessMs(0, 0, 2), null);
  assert.equal(latenessMs(NaN, 1, 2), null);
  assert.equal(latenessMs(2, 1, NaN), null);
  const player = { getCurrentLiveLatency: () => 2.15, getVideoElement: () => ({ currentTime: 50 }) };
  assert.equal(deliveredLateness(player, { startTime: 50, duration: 2 }), 150);
  assert.equal(deliveredLateness({}, { startTime: 50, duration: 2 }), null);
  const throws = { getCurrentLiveLatency: () => { throw new Error('not initialized'); } };
  assert.equal(deliveredLateness(throws, { startTime: 50, duration: 2 }), null);
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
