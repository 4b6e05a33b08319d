// Codec tests: the golden fixtures shared with the Rust codec, and the error classes of §8.4.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { readFileSync, readdirSync } from 'node:fs';
import { fileURLToPath } from 'node:url';
import path from 'node:path';

import {
  Code,
  FrameError,
  MessageError,
  SUBPROTOCOL,
  decodeFrame,
  decodeMessage,
  encodeFrame,
  encodeMessage,
  parseRange,
  utf8Length,
} from '../src/codec.js';

const here = path.dirname(fileURLToPath(import.meta.url));
const fixtures = path.resolve(here, '../../../crates/dashpush-proto/tests/fixtures/ws');
const bytes = (s) => new TextEncoder().encode(s);
const fixture = (name) => new Uint8Array(readFileSync(path.join(fixtures, `${name}.bin`)));

test('the sub-protocol name', () => {
  assert.equal(SUBPROTOCOL, '2016.serverpush.dash.mpeg.org');
});

test('every golden fixture decodes and re-encodes byte-identically', () => {
  const names = readdirSync(fixtures).filter((f) => f.endsWith('.bin'));
  assert.ok(names.length >= 7, `fixtures found: ${names}`);
  for (const name of names) {
    const raw = new Uint8Array(readFileSync(path.join(fixtures, name)));
    const msg = decodeMessage(raw);
    assert.deepEqual(encodeMessage(msg), raw, name);
    // The frame layer alone round-trips too.
    assert.deepEqual(encodeFrame(decodeFrame(raw)), raw, name);
  }
});

test('fixture contents decode to the expected fields', () => {
  assert.deepEqual(decodeMessage(fixture('mpd_request')), {
    code: Code.MPD_REQUEST,
    streamId: 1,
    end: true,
    url: '/vod/manifest.mpd',
    pushDirective: 'urn:mpeg:dash:fdh:2016:push-fast-start',
  });
  assert.deepEqual(decodeMessage(fixture('segment_request')), {
    code: Code.SEGMENT_REQUEST,
    streamId: 3,
    end: true,
    url: '/vod/video/seg-00005.m4s',
    pushDirective: 'urn:mpeg:dash:fdh:2016:push-next;3',
    range: '0-1023',
  });
  const mpd = decodeMessage(fixture('mpd_received'));
  assert.equal(mpd.code, Code.MPD_RECEIVED);
  assert.equal(mpd.end, false);
  assert.equal(mpd.status, 200);
  assert.equal(mpd.contentType, 'application/dash+xml');
  assert.equal(mpd.contentLength, 9);
  assert.equal(mpd.pushAck, 'urn:mpeg:dash:fdh:2016:push-fast-start;{"segments":1}');
  assert.equal(mpd.pushed, false);
  assert.deepEqual([...mpd.payload], [...bytes('<MPD/>\r\n\0')]);
  const seg = decodeMessage(fixture('segment_received_pushed'));
  assert.equal(seg.streamId, 2);
  assert.equal(seg.pushed, true);
  assert.equal(seg.parent, 1);
  assert.deepEqual([...seg.payload], [0, 0, 0, 8, ...bytes('ftyp')]);
  assert.deepEqual(decodeMessage(fixture('end_of_stream_complete')), {
    code: Code.END_OF_STREAM,
    streamId: 1,
    end: true,
    reason: 'complete',
  });
  assert.deepEqual(decodeMessage(fixture('end_of_stream_error')), {
    code: Code.END_OF_STREAM,
    streamId: 5,
    end: true,
    reason: 'error',
    status: 404,
    detail: 'origin answered 404',
  });
  assert.deepEqual(decodeMessage(fixture('segment_cancel')), {
    code: Code.SEGMENT_CANCEL,
    streamId: 7,
    end: true,
    streams: [2, 4],
    urls: ['/vod/video/seg-00007.m4s'],
  });
});

test('the exact layout', () => {
  const out = encodeFrame({ code: 4, end: true, streamId: 3, metadata: '{}', payload: bytes('xyz') });
  assert.deepEqual([...out], [4, 1, 0, 0, 0, 3, 0, 0, 0, 2, ...bytes('{}xyz')]);
  // Keys are written sorted, whatever order they were given in.
  const req = encodeMessage({ code: Code.SEGMENT_REQUEST, streamId: 9, url: '/a.m4s', range: '5-', pushDirective: 'd' });
  const meta = new TextDecoder().decode(decodeFrame(req).metadata);
  assert.equal(meta, '{"push_directive":"d","range":"5-","url":"/a.m4s"}');
  // A stream id above 2^31 is written unsigned.
  const hi = decodeFrame(encodeFrame({ code: 5, streamId: 0xfffffffe, metadata: '{"reason":"complete"}' }));
  assert.equal(hi.streamId, 0xfffffffe);
});

test('frame errors mirror the Rust codec', () => {
  const kind = (arr, opts) => {
    try {
      decodeFrame(new Uint8Array(arr), opts);
    } catch (e) {
      assert.ok(e instanceof FrameError);
      return [e.kind, e.closeCode];
    }
    assert.fail('expected an error');
  };
  assert.deepEqual(kind([1, 0, 0]), ['too_short', 1002]);
  assert.deepEqual(kind([1, 2, 0, 0, 0, 1, 0, 0, 0, 0]), ['reserved_flags', 1002]);
  assert.deepEqual(kind([1, 0x80, 0, 0, 0, 1, 0, 0, 0, 0]), ['reserved_flags', 1002]);
  assert.deepEqual(kind([1, 0, 0, 0, 0, 0, 0, 0, 0, 0]), ['zero_stream_id', 1002]);
  assert.deepEqual(kind([1, 0, 0, 0, 0, 1, 0, 0, 0, 5, 0x7b, 0x7d]), ['metadata_past_end', 1002]);
  assert.deepEqual(kind([1, 0, 0, 0, 0, 1, 0, 0, 0x40, 0x01]), ['metadata_too_large', 1002]);
  assert.deepEqual(kind(new Array(65).fill(0), { maxMessage: 64 }), ['too_large', 1009]);
  // Exactly 16 KiB of metadata is allowed.
  const meta = '{"url":"' + 'a'.repeat(16384 - 10) + '"}';
  assert.equal(meta.length, 16384);
  assert.equal(decodeFrame(encodeFrame({ code: 1, streamId: 1, metadata: meta })).metadata.length, 16384);
  assert.throws(() => encodeFrame({ code: 1, streamId: 1, metadata: meta + ' ' }), RangeError);
  assert.throws(() => encodeFrame({ code: 1, streamId: 0, metadata: '{}' }), RangeError);
});

test('message errors are typed and carry the stream id', () => {
  const err = (code, meta, payload = new Uint8Array(0)) => {
    try {
      decodeMessage(encodeFrame({ code, streamId: 1, end: true, metadata: meta, payload }));
    } catch (e) {
      assert.ok(e instanceof MessageError, String(e));
      assert.equal(e.streamId, 1);
      assert.equal(e.status, 400);
      return e.field ? `${e.kind}:${e.field}` : e.kind;
    }
    assert.fail(`expected an error for ${code} ${meta}`);
  };
  assert.equal(err(0x07, '{}'), 'unknown_code');
  assert.equal(err(0x00, '{}'), 'unknown_code');
  assert.equal(err(1, '{'), 'invalid_metadata');
  assert.equal(err(1, '[1]'), 'invalid_metadata');
  assert.equal(err(1, new Uint8Array([0x7b, 0xff, 0x7d])), 'invalid_metadata');
  assert.equal(err(1, ''), 'missing_field:url');
  assert.equal(err(1, '{}'), 'missing_field:url');
  assert.equal(err(1, '{"url":""}'), 'invalid_field:url');
  assert.equal(err(1, '{"url":7}'), 'invalid_field:url');
  assert.equal(err(1, JSON.stringify({ url: 'é'.repeat(1025) })), 'invalid_field:url');
  assert.equal(err(1, '{"url":"a"}', bytes('x')), 'unexpected_payload');
  assert.equal(err(2, '{"url":"a","range":"x"}'), 'invalid_field:range');
  assert.equal(err(2, '{"url":"a","range":"9-3"}'), 'invalid_field:range');
  assert.equal(err(4, '{"url":"a","content_type":"v"}'), 'missing_field:status');
  assert.equal(err(4, '{"url":"a","status":99,"content_type":"v"}'), 'invalid_field:status');
  assert.equal(err(4, '{"url":"a","status":200}'), 'missing_field:content_type');
  assert.equal(err(4, '{"url":"a","status":200,"content_type":"v","parent":0}'), 'invalid_field:parent');
  assert.equal(err(4, '{"url":"a","status":200,"content_type":"v","pushed":1}'), 'invalid_field:pushed');
  assert.equal(err(4, '{"url":"a","status":200,"content_type":"v","content_length":-1}'), 'invalid_field:content_length');
  assert.equal(err(5, '{"reason":"bored"}'), 'invalid_field:reason');
  assert.equal(err(5, '{}'), 'missing_field:reason');
  assert.equal(err(5, JSON.stringify({ reason: 'error', detail: 'x'.repeat(1025) })), 'invalid_field:detail');
  assert.equal(err(6, '{"streams":[0]}'), 'invalid_field:streams');
  assert.equal(err(6, '{"urls":"a"}'), 'invalid_field:urls');
  const many = Array.from({ length: 257 }, (_, i) => 2 * i + 1);
  assert.equal(err(6, JSON.stringify({ streams: many })), 'invalid_field:streams');
});

test('unknown keys are ignored and nulls are absent', () => {
  const m = decodeMessage(encodeFrame({ code: 2, streamId: 1, end: true, metadata: '{"url":"s.m4s","range":null,"x":[1,{"y":2}]}' }));
  assert.deepEqual(m, { code: 2, streamId: 1, end: true, url: 's.m4s' });
});

test('byte ranges', () => {
  assert.deepEqual(parseRange('0-1023'), { first: 0, last: 1023 });
  assert.deepEqual(parseRange('500-'), { first: 500, last: null });
  for (const bad of ['', '-5', '5', '9-3', 'a-b', '1-2-3', ' 1-2']) assert.equal(parseRange(bad), null, bad);
});

test('encoding refuses what the gateway would refuse', () => {
  assert.throws(() => encodeMessage({ code: Code.SEGMENT_CANCEL, streamId: 1, urls: Array(10).fill('u'.repeat(2000)) }), (e) => e instanceof MessageError && e.kind === 'metadata_too_large');
  assert.throws(() => encodeMessage({ code: Code.MPD_REQUEST, streamId: 1, url: '' }), MessageError);
  assert.throws(() => encodeMessage({ code: Code.MPD_REQUEST, streamId: 1, url: 'x'.repeat(2049) }), MessageError);
  assert.throws(() => encodeMessage({ code: Code.SEGMENT_REQUEST, streamId: 1, url: '/a', range: '7-3' }), MessageError);
  assert.throws(() => encodeMessage({ code: 9, streamId: 1 }), MessageError);
  assert.throws(() => encodeMessage({ code: Code.MPD_REQUEST, streamId: 0, url: '/a' }), RangeError);
});

test('utf8Length counts bytes', () => {
  assert.equal(utf8Length('abc'), 3);
  assert.equal(utf8Length('é'), 2);
  assert.equal(utf8Length('€'), 3);
  assert.equal(utf8Length('😀'), 4);
  for (const s of ['a€😀é', '\ud800x']) assert.equal(utf8Length(s), new TextEncoder().encode(s).length);
});
