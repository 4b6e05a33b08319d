// The dashpush WebSocket sub-protocol codec (ISO/IEC 23009-6 §8.2-§8.4, as written down in
// docs/spec-decisions.md and crates/dashpush-proto/src/ws).
//
// One DASH message is one binary WebSocket message:
//
//   offset size  field
//   0      1     code       message code (§8.3)
//   1      1     flags      bit 0 END (last message of the stream); bits 1-7 reserved, 0
//   2      4     stream_id  u32 big-endian, never 0
//   6      4     meta_len   u32 big-endian, <= 16 KiB
//   10     n     metadata   UTF-8 JSON object
//   10+n   ...   payload    resource bytes, may be empty
//
// Metadata is written as compact JSON with its keys in sorted order, like the Rust codec, so an
// encoding is byte-stable and a decoded message re-encodes to the same bytes. Bounds and field
// checks mirror the Rust side (crates/dashpush-proto/src/limits.rs).

/** The sub-protocol name (§8.5). */
export const SUBPROTOCOL = '2016.serverpush.dash.mpeg.org';

/** Message codes (§8.3). */
export const Code = Object.freeze({
  MPD_REQUEST: 0x01,
  SEGMENT_REQUEST: 0x02,
  MPD_RECEIVED: 0x03,
  SEGMENT_RECEIVED: 0x04,
  END_OF_STREAM: 0x05,
  SEGMENT_CANCEL: 0x06,
});

/** End of stream reasons (§8.4.5). */
export const EndReason = Object.freeze({
  COMPLETE: 'complete',
  CANCELLED: 'cancelled',
  ERROR: 'error',
});

export const HEADER_LEN = 10;
export const FLAG_END = 0x01;

/** Limits, the same numbers as the gateway's `limits` module. */
export const limits = Object.freeze({
  /** Longest metadata. */
  MAX_METADATA: 16 * 1024,
  /** Largest client-to-server message the gateway accepts. */
  MAX_CLIENT_MESSAGE: 1024 * 1024,
  /** Longest URL (UTF-8 bytes). */
  MAX_URL_LEN: 2 * 1024,
  /** Longest directive or ack. */
  MAX_HEADER_LEN: 8 * 1024,
  /** Longest `detail` of an End of stream. */
  MAX_DETAIL_LEN: 1024,
  /** Most entries in each list of a Segment cancel. */
  MAX_CANCEL_ENTRIES: 256,
  /** Longest `content_type`. */
  MAX_CONTENT_TYPE_LEN: 256,
  /** Longest `range`. */
  MAX_RANGE_LEN: 64,
  /** Largest stream id. */
  MAX_STREAM_ID: 0xffffffff,
});

const CLOSE_PROTOCOL_ERROR = 1002;
const CLOSE_MESSAGE_TOO_BIG = 1009;

/**
 * A message that cannot be read at all (§8.4): the socket is closed with `closeCode`.
 * `kind`: too_short | reserved_flags | zero_stream_id | metadata_too_large |
 * metadata_past_end | too_large.
 */
export class FrameError extends Error {
  constructor(kind, message) {
    super(message);
    this.name = 'FrameError';
    this.kind = kind;
    this.closeCode = kind === 'too_large' ? CLOSE_MESSAGE_TOO_BIG : CLOSE_PROTOCOL_ERROR;
  }
}

/**
 * A readable frame whose message is unusable (§8.4): answered on its stream, the socket stays
 * open. `kind`: unknown_code | invalid_metadata | missing_field | invalid_field |
 * unexpected_payload | metadata_too_large; `field` names the key when there is one.
 */
export class MessageError extends Error {
  constructor(streamId, kind, message, field = undefined) {
    super(`stream ${streamId}: ${message}`);
    this.name = 'MessageError';
    this.streamId = streamId;
    this.kind = kind;
    this.field = field;
    this.status = 400;
  }
}

const encoder = new TextEncoder();
const strictDecoder = new TextDecoder('utf-8', { fatal: true });

function toBytes(buf) {
  if (buf instanceof Uint8Array) return buf;
  if (buf instanceof ArrayBuffer) return new Uint8Array(buf);
  if (ArrayBuffer.isView(buf)) return new Uint8Array(buf.buffer, buf.byteOffset, buf.byteLength);
  throw new TypeError('expected an ArrayBuffer or a typed array');
}

/** UTF-8 length of a string, in bytes. */
export function utf8Length(s) {
  let n = 0;
  for (let i = 0; i < s.length; i++) {
    const c = s.charCodeAt(i);
    if (c < 0x80) n += 1;
    else if (c < 0x800) n += 2;
    else if (c >= 0xd800 && c <= 0xdbff && i + 1 < s.length) {
      const d = s.charCodeAt(i + 1);
      if (d >= 0xdc00 && d <= 0xdfff) {
        n += 4;
        i++;
      } else n += 3;
    } else n += 3;
  }
  return n;
}

function isStreamId(n) {
  return Number.isInteger(n) && n >= 1 && n <= limits.MAX_STREAM_ID;
}

/**
 * Reads one whole message into a frame (metadata not interpreted).
 * @param {ArrayBuffer|Uint8Array} buf
 * @param {{maxMessage?: number}} [opts]
 * @returns {{code: number, end: boolean, streamId: number, metadata: Uint8Array, payload: Uint8Array}}
 */
export function decodeFrame(buf, { maxMessage = Infinity } = {}) {
  const b = toBytes(buf);
  if (b.byteLength > maxMessage) {
    throw new FrameError('too_large', `message over the ${maxMessage}-byte cap`);
  }
  if (b.byteLength < HEADER_LEN) {
    throw new FrameError('too_short', `frame of ${b.byteLength} bytes is shorter than the 10-byte header`);
  }
  const dv = new DataView(b.buffer, b.byteOffset, b.byteLength);
  const code = dv.getUint8(0);
  const flags = dv.getUint8(1);
  if ((flags & ~FLAG_END) !== 0) {
    throw new FrameError('reserved_flags', `reserved flag bits set (0x${flags.toString(16).padStart(2, '0')})`);
  }
  const streamId = dv.getUint32(2, false);
  if (streamId === 0) throw new FrameError('zero_stream_id', 'stream id 0');
  const metaLen = dv.getUint32(6, false);
  if (metaLen > limits.MAX_METADATA) {
    throw new FrameError('metadata_too_large', `metadata length ${metaLen} over the ${limits.MAX_METADATA}-byte cap`);
  }
  const available = b.byteLength - HEADER_LEN;
  if (metaLen > available) {
    throw new FrameError('metadata_past_end', `metadata length ${metaLen} runs past the end of the message (${available} bytes left)`);
  }
  return {
    code,
    end: (flags & FLAG_END) !== 0,
    streamId,
    metadata: b.subarray(HEADER_LEN, HEADER_LEN + metaLen),
    payload: b.subarray(HEADER_LEN + metaLen),
  };
}

/**
 * Writes a frame. `metadata` is bytes or a string; `payload` bytes (optional).
 * @returns {Uint8Array}
 */
export function encodeFrame({ code, end = false, streamId, metadata, payload }) {
  if (!Number.isInteger(code) || code < 0 || code > 0xff) throw new RangeError(`bad message code ${code}`);
  if (!isStreamId(streamId)) throw new RangeError(`bad stream id ${streamId}`);
  const meta = typeof metadata === 'string' ? encoder.encode(metadata) : toBytes(metadata ?? new Uint8Array(0));
  if (meta.byteLength > limits.MAX_METADATA) {
    throw new RangeError(`metadata of ${meta.byteLength} bytes over the ${limits.MAX_METADATA}-byte cap`);
  }
  const body = payload == null ? new Uint8Array(0) : toBytes(payload);
  const out = new Uint8Array(HEADER_LEN + meta.byteLength + body.byteLength);
  const dv = new DataView(out.buffer);
  dv.setUint8(0, code);
  dv.setUint8(1, end ? FLAG_END : 0);
  dv.setUint32(2, streamId, false);
  dv.setUint32(6, meta.byteLength, false);
  out.set(meta, HEADER_LEN);
  out.set(body, HEADER_LEN + meta.byteLength);
  return out;
}

/** Parses a byte range `first-last` or `first-` (§8.4.2); returns `{first, last}` or null. */
export function parseRange(s) {
  if (typeof s !== 'string') return null;
  const m = /^([0-9]+)-([0-9]*)$/.exec(s);
  if (!m) return null;
  const first = Number(m[1]);
  if (!Number.isSafeInteger(first)) return null;
  if (m[2] === '') return { first, last: null };
  const last = Number(m[2]);
  if (!Number.isSafeInteger(last) || last < first) return null;
  return { first, last };
}

function formatRange({ first, last }) {
  return last == null ? `${first}-` : `${first}-${last}`;
}

// Reads the typed fields of one message's metadata, each checked the way the Rust codec does.
class Meta {
  constructor(streamId, bytes) {
    this.streamId = streamId;
    if (bytes.byteLength === 0) {
      this.obj = {};
      return;
    }
    let value;
    try {
      value = JSON.parse(strictDecoder.decode(bytes));
    } catch (e) {
      throw this.err('invalid_metadata', `metadata is not a JSON object: ${e.message}`);
    }
    if (value === null || typeof value !== 'object' || Array.isArray(value)) {
      throw this.err('invalid_metadata', 'metadata is not a JSON object: not an object');
    }
    this.obj = value;
  }

  err(kind, message, field) {
    return new MessageError(this.streamId, kind, message, field);
  }

  invalid(field, why) {
    return this.err('invalid_field', `metadata key \`${field}\` is invalid: ${why}`, field);
  }

  take(field) {
    const v = Object.prototype.hasOwnProperty.call(this.obj, field) ? this.obj[field] : undefined;
    return v === null ? undefined : v;
  }

  optStr(field, max) {
    const v = this.take(field);
    if (v === undefined) return undefined;
    if (typeof v !== 'string') throw this.invalid(field, 'not a string');
    if (utf8Length(v) > max) throw this.invalid(field, 'too long');
    return v;
  }

  reqStr(field, max) {
    const v = this.optStr(field, max);
    if (v === undefined) throw this.err('missing_field', `metadata lacks \`${field}\``, field);
    return v;
  }

  url() {
    const u = this.reqStr('url', limits.MAX_URL_LEN);
    if (u === '') throw this.invalid('url', 'empty');
    return u;
  }

  optU64(field) {
    const v = this.take(field);
    if (v === undefined) return undefined;
    if (typeof v !== 'number' || !Number.isInteger(v) || v < 0) {
      throw this.invalid(field, 'not an unsigned integer');
    }
    return v;
  }

  optStatus() {
    const v = this.take('status');
    if (v === undefined) return undefined;
    if (typeof v !== 'number' || !Number.isInteger(v) || v < 100 || v > 599) {
      throw this.invalid('status', 'not an HTTP status 100-599');
    }
    return v;
  }

  list(field) {
    const v = this.take(field);
    if (v === undefined) return [];
    if (!Array.isArray(v)) throw this.invalid(field, 'not an array');
    if (v.length > limits.MAX_CANCEL_ENTRIES) throw this.invalid(field, 'too many entries');
    return v;
  }
}

function readReceived(m) {
  const url = m.url();
  const status = m.optStatus();
  if (status === undefined) throw m.err('missing_field', 'metadata lacks `status`', 'status');
  const contentType = m.reqStr('content_type', limits.MAX_CONTENT_TYPE_LEN);
  const contentLength = m.optU64('content_length');
  const pushAck = m.optStr('push_ack', limits.MAX_HEADER_LEN);
  const pushed = m.take('pushed');
  if (pushed !== undefined && typeof pushed !== 'boolean') throw m.invalid('pushed', 'not a boolean');
  const parent = m.optU64('parent');
  if (parent !== undefined && !isStreamId(parent)) throw m.invalid('parent', 'not a stream id');
  const out = { url, status, contentType };
  if (contentLength !== undefined) out.contentLength = contentLength;
  if (pushAck !== undefined) out.pushAck = pushAck;
  out.pushed = pushed === true;
  if (parent !== undefined) out.parent = parent;
  return out;
}

/**
 * Decodes one message into a plain object:
 * `{code, streamId, end, ...fields, payload}` with the fields of its code, in camelCase:
 * - MPD request / Segment request: `url`, `pushDirective`?, `range`? (segment only, `"first-last"`)
 * - MPD received / Segment received: `url`, `status`, `contentType`, `contentLength`?, `pushAck`?,
 *   `pushed` (boolean), `parent`?, `payload` (Uint8Array view into `buf`)
 * - End of stream: `reason`, `status`?, `detail`?
 * - Segment cancel: `streams` (ids), `urls`
 * Throws FrameError (close the socket) or MessageError (answer on the stream).
 */
export function decodeMessage(buf, opts = {}) {
  const f = decodeFrame(buf, opts);
  const m = new Meta(f.streamId, f.metadata);
  const base = { code: f.code, streamId: f.streamId, end: f.end };
  const carriesPayload = f.code === Code.MPD_RECEIVED || f.code === Code.SEGMENT_RECEIVED;
  if (f.code < Code.MPD_REQUEST || f.code > Code.SEGMENT_CANCEL) {
    throw m.err('unknown_code', `unknown message code 0x${f.code.toString(16).padStart(2, '0')}`);
  }
  if (!carriesPayload && f.payload.byteLength !== 0) {
    throw m.err('unexpected_payload', 'message carries an unexpected payload');
  }
  switch (f.code) {
    case Code.MPD_REQUEST: {
      const url = m.url();
      const pushDirective = m.optStr('push_directive', limits.MAX_HEADER_LEN);
      return withOptional({ ...base, url }, { pushDirective });
    }
    case Code.SEGMENT_REQUEST: {
      const url = m.url();
      const pushDirective = m.optStr('push_directive', limits.MAX_HEADER_LEN);
      const r = m.optStr('range', limits.MAX_RANGE_LEN);
      let range;
      if (r !== undefined) {
        const parsed = parseRange(r);
        if (!parsed) throw m.invalid('range', 'expected `first-last` or `first-` with last >= first');
        range = formatRange(parsed);
      }
      return withOptional({ ...base, url }, { pushDirective, range });
    }
    case Code.MPD_RECEIVED:
    case Code.SEGMENT_RECEIVED:
      return { ...base, ...readReceived(m), payload: f.payload };
    case Code.END_OF_STREAM: {
      const reason = m.reqStr('reason', 16);
      if (!Object.values(EndReason).includes(reason)) {
        throw m.invalid('reason', 'not complete, cancelled or error');
      }
      const status = m.optStatus();
      const detail = m.optStr('detail', limits.MAX_DETAIL_LEN);
      return withOptional({ ...base, reason }, { status, detail });
    }
    case Code.SEGMENT_CANCEL: {
      const streams = m.list('streams').map((v) => {
        if (!isStreamId(v)) throw m.invalid('streams', 'not a stream id');
        return v;
      });
      const urls = m.list('urls').map((v) => {
        if (typeof v !== 'string' || v === '' || utf8Length(v) > limits.MAX_URL_LEN) {
          throw m.invalid('urls', 'not a URL string');
        }
        return v;
      });
      return { ...base, streams, urls };
    }
    default:
      throw new Error('unreachable');
  }
}

function withOptional(obj, opt) {
  for (const [k, v] of Object.entries(opt)) if (v !== undefined) obj[k] = v;
  return obj;
}

// JSON with keys in sorted (byte) order; values are strings, numbers, booleans or arrays of them.
function sortedJson(entries) {
  const keys = Object.keys(entries).filter((k) => entries[k] !== undefined).sort();
  const o = {};
  for (const k of keys) o[k] = entries[k];
  return JSON.stringify(o);
}

function checkStr(streamId, field, v, max, required) {
  if (v === undefined || v === null) {
    if (required) throw new MessageError(streamId, 'missing_field', `metadata lacks \`${field}\``, field);
    return undefined;
  }
  if (typeof v !== 'string') throw new MessageError(streamId, 'invalid_field', `metadata key \`${field}\` is invalid: not a string`, field);
  if (utf8Length(v) > max) throw new MessageError(streamId, 'invalid_field', `metadata key \`${field}\` is invalid: too long`, field);
  return v;
}

/**
 * Encodes a message object of the shape `decodeMessage` returns. Fields are checked with the
 * same bounds as on decoding, so what this writes the gateway can read.
 * @returns {Uint8Array}
 */
export function encodeMessage(msg) {
  const { code, streamId, end = true } = msg;
  if (!isStreamId(streamId)) throw new RangeError(`bad stream id ${streamId}`);
  let meta;
  let payload;
  const str = (field, v, max, required = false) => checkStr(streamId, field, v, max, required);
  switch (code) {
    case Code.MPD_REQUEST:
    case Code.SEGMENT_REQUEST: {
      const url = str('url', msg.url, limits.MAX_URL_LEN, true);
      if (url === '') throw new MessageError(streamId, 'invalid_field', 'metadata key `url` is invalid: empty', 'url');
      let range;
      if (code === Code.SEGMENT_REQUEST && msg.range != null) {
        const parsed = typeof msg.range === 'string' ? parseRange(msg.range) : msg.range;
        if (!parsed || !Number.isSafeInteger(parsed.first) || (parsed.last != null && !(parsed.last >= parsed.first))) {
          throw new MessageError(streamId, 'invalid_field', 'metadata key `range` is invalid', 'range');
        }
        range = formatRange(parsed);
      }
      meta = sortedJson({
        push_directive: str('push_directive', msg.pushDirective, limits.MAX_HEADER_LEN),
        range,
        url,
      });
      break;
    }
    case Code.MPD_RECEIVED:
    case Code.SEGMENT_RECEIVED: {
      if (!Number.isInteger(msg.status) || msg.status < 100 || msg.status > 599) {
        throw new MessageError(streamId, 'invalid_field', 'metadata key `status` is invalid', 'status');
      }
      if (msg.parent != null && !isStreamId(msg.parent)) {
        throw new MessageError(streamId, 'invalid_field', 'metadata key `parent` is invalid', 'parent');
      }
      meta = sortedJson({
        content_length: msg.contentLength ?? undefined,
        content_type: str('content_type', msg.contentType, limits.MAX_CONTENT_TYPE_LEN, true),
        parent: msg.parent ?? undefined,
        push_ack: str('push_ack', msg.pushAck, limits.MAX_HEADER_LEN),
        pushed: msg.pushed ? true : undefined,
        status: msg.status,
        url: str('url', msg.url, limits.MAX_URL_LEN, true),
      });
      payload = msg.payload;
      break;
    }
    case Code.END_OF_STREAM: {
      if (!Object.values(EndReason).includes(msg.reason)) {
        throw new MessageError(streamId, 'invalid_field', 'metadata key `reason` is invalid', 'reason');
      }
      meta = sortedJson({
        detail: str('detail', msg.detail, limits.MAX_DETAIL_LEN),
        reason: msg.reason,
        status: msg.status ?? undefined,
      });
      break;
    }
    case Code.SEGMENT_CANCEL: {
      const streams = msg.streams ?? [];
      const urls = msg.urls ?? [];
      if (streams.length > limits.MAX_CANCEL_ENTRIES || !streams.every(isStreamId)) {
        throw new MessageError(streamId, 'invalid_field', 'metadata key `streams` is invalid', 'streams');
      }
      if (urls.length > limits.MAX_CANCEL_ENTRIES || !urls.every((u) => typeof u === 'string' && u !== '' && utf8Length(u) <= limits.MAX_URL_LEN)) {
        throw new MessageError(streamId, 'invalid_field', 'metadata key `urls` is invalid', 'urls');
      }
      meta = sortedJson({
        streams: streams.length ? streams : undefined,
        urls: urls.length ? urls : undefined,
      });
      break;
    }
    default:
      throw new MessageError(streamId, 'unknown_code', `unknown message code ${code}`);
  }
  const metaBytes = encoder.encode(meta);
  if (metaBytes.byteLength > limits.MAX_METADATA) {
    throw new MessageError(streamId, 'metadata_too_large', `metadata of ${metaBytes.byteLength} bytes over the ${limits.MAX_METADATA}-byte cap`);
  }
  return encodeFrame({ code, end, streamId, metadata: metaBytes, payload });
}
