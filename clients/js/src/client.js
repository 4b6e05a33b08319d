// DashPushClient: a client of the dashpush WebSocket sub-protocol (ISO/IEC 23009-6 §8).
//
// - Requests (MPD request 0x01, Segment request 0x02) go out on new odd stream ids 1, 3, 5, ...
//   and resolve with the whole resource once its last piece (END) has arrived.
// - Pushed resources (Segment received 0x04 on even ids, first message `pushed: true`) are
//   assembled and kept in a bounded store keyed by absolute URL, for `takePushed`.
// - End of stream (0x05) closes a stream: `complete` after a request and all its pushes,
//   `cancelled` after a Segment cancel (0x06), `error` with a status instead of an answer.
// Everything is bounded: open requests, pushes being assembled, bytes per resource, the store.
//
// Timing: every resource (a request's answer or a push) carries `timing`, what the socket saw of
// its transfer: when it started (the request was sent; for a push, when its first message began
// to arrive), when its first and last messages arrived, and how long the socket was busy carrying
// its messages. A WebSocket delivers whole messages, so a message's transfer is taken to start
// when the socket finished the message before it (or when a request went out on an idle socket,
// if that is later: nothing was on the way in between). A player's throughput estimate should use these times,
// not the moment it took a pushed resource out of the store.

import { Code, EndReason, FrameError, MessageError, SUBPROTOCOL, decodeMessage, encodeMessage, limits } from './codec.js';

/** Base class of every error this client raises. `code` is a stable machine-readable name. */
export class DashPushError extends Error {
  constructor(message, { code = 'error', cause } = {}) {
    super(message, cause ? { cause } : undefined);
    this.name = 'DashPushError';
    this.code = code;
  }
}

/** The socket could not be opened, or the server did not accept the sub-protocol. */
export class ConnectError extends DashPushError {
  constructor(message, opts = {}) {
    super(message, { code: opts.code ?? 'connect', cause: opts.cause });
    this.name = 'ConnectError';
  }
}

/** The server sent something this client cannot read (the socket is closed). */
export class ProtocolError extends DashPushError {
  constructor(message, opts = {}) {
    super(message, { code: 'protocol', cause: opts.cause });
    this.name = 'ProtocolError';
    this.closeCode = opts.closeCode;
  }
}

/** A request ended without its resource: End of stream `error` (with `status`) or `cancelled`. */
export class RequestError extends DashPushError {
  constructor(message, { url, streamId, reason, status, detail } = {}) {
    super(message, { code: reason === EndReason.CANCELLED ? 'cancelled' : 'request' });
    this.name = 'RequestError';
    this.url = url;
    this.streamId = streamId;
    this.reason = reason;
    this.status = status;
    this.detail = detail;
  }
}

/** The socket closed (or was closed) while the operation was pending. */
export class ClosedError extends DashPushError {
  constructor(message, { closeCode, closeReason } = {}) {
    super(message, { code: 'closed' });
    this.name = 'ClosedError';
    this.closeCode = closeCode;
    this.closeReason = closeReason;
  }
}

/** A bound was hit (open requests, resource size, stream ids). */
export class LimitError extends DashPushError {
  constructor(message) {
    super(message, { code: 'limit' });
    this.name = 'LimitError';
  }
}

/** An operation took longer than its timeout. */
export class TimeoutError extends DashPushError {
  constructor(message) {
    super(message, { code: 'timeout' });
    this.name = 'TimeoutError';
  }
}

export const DEFAULTS = Object.freeze({
  /** Pushed resources kept for `takePushed`. */
  maxStoreEntries: 64,
  /** Bytes of pushed resources kept. */
  maxStoreBytes: 64 * 1024 * 1024,
  /** Largest resource (request answer or push) assembled. */
  maxResourceBytes: 64 * 1024 * 1024,
  /** Largest server message read. */
  maxMessageBytes: 16 * 1024 * 1024,
  /** Requests open at once (the gateway allows 256 open streams, pushes included). */
  maxOpenRequests: 64,
  /** Pushes being assembled at once; more are cancelled. */
  maxInflightPushes: 128,
  /** Bytes of pushes being assembled at once; past this, new pushes are cancelled. */
  maxInflightPushBytes: 64 * 1024 * 1024,
  /** Time to open the socket. */
  connectTimeoutMs: 10_000,
  /** Time for a request's resource to arrive (0 = none). */
  requestTimeoutMs: 30_000,
  /** Message arrival times kept per resource (for progress reporting). */
  maxArrivals: 256,
  /** Event-loop heartbeat in ms (see `handleData`); 0 = off. Off by default with an injected
   * clock (`now`), where a test calls `tick()` itself. */
  heartbeatMs: 50,
});

/** A monotonic clock in milliseconds (performance.now where there is one). */
function defaultNow() {
  return globalThis.performance?.now ? globalThis.performance.now() : Date.now();
}

/**
 * What the socket saw of one resource's transfer: `startedAt` (request sent, or the start of the
 * push's first message), `firstByteAt` / `lastByteAt` (arrival of its first / last message),
 * `busyMs` (time the socket spent carrying its messages), `transferSize` (message bytes on the
 * wire), `arrivals` ([at, busyMs, payloadBytes] per message, the first `maxArrivals`).
 */
function newTiming(startedAt) {
  return { startedAt, firstByteAt: null, lastByteAt: null, busyMs: 0, transferSize: 0, arrivals: [] };
}

function addArrival(timing, { at, busy, wire }, payload, max) {
  if (timing.firstByteAt === null) timing.firstByteAt = at;
  timing.lastByteAt = at;
  timing.busyMs += busy;
  timing.transferSize += wire;
  if (timing.arrivals.length < max) timing.arrivals.push([at, busy, payload]);
}

const OPEN = 1;

function concat(chunks, total) {
  const out = new Uint8Array(total);
  let off = 0;
  for (const c of chunks) {
    out.set(c, off);
    off += c.byteLength;
  }
  return out.buffer;
}

function httpBaseOf(wsUrl) {
  const u = new URL(wsUrl);
  u.protocol = u.protocol === 'wss:' ? 'https:' : 'http:';
  u.pathname = '/';
  u.search = '';
  u.hash = '';
  return u.href;
}

/**
 * Whether a push cycle started by a request tagged `tag` may push a resource described by
 * `want`: an untagged cycle (an MPD's fast start) or an untyped want may; otherwise the media
 * types must match, and so must the Representations when both are known.
 */
function mayPush(tag, want) {
  if (!tag?.mediaType || !want?.mediaType) return true;
  if (tag.mediaType !== want.mediaType) return false;
  return tag.representation == null || want.representation == null || tag.representation === want.representation;
}

export class DashPushClient {
  /**
   * Opens a socket offering the sub-protocol and resolves once the server has echoed it.
   * @param {string} url ws:// or wss:// URL of the gateway's endpoint, e.g. ws://host/dashpush
   * @param {object} [opts] `WebSocket` (constructor; default globalThis.WebSocket), the bounds of
   *   DEFAULTS, `base` (http URL that relative and pushed URLs resolve against; default the ws URL
   *   with http(s)), `onEvent(name, detail)`.
   * @returns {Promise<DashPushClient>}
   */
  static connect(url, opts = {}) {
    const WS = opts.WebSocket ?? globalThis.WebSocket;
    if (typeof WS !== 'function') {
      return Promise.reject(new ConnectError('no WebSocket constructor: pass {WebSocket}', { code: 'unsupported' }));
    }
    const timeoutMs = opts.connectTimeoutMs ?? DEFAULTS.connectTimeoutMs;
    return new Promise((resolve, reject) => {
      let ws;
      try {
        ws = new WS(url, [SUBPROTOCOL]);
      } catch (e) {
        reject(new ConnectError(`cannot open ${url}: ${e.message}`, { cause: e }));
        return;
      }
      ws.binaryType = 'arraybuffer';
      let settled = false;
      const done = (err, value) => {
        if (settled) return;
        settled = true;
        clearTimeout(timer);
        ws.removeEventListener('open', onOpen);
        ws.removeEventListener('error', onError);
        ws.removeEventListener('close', onClose);
        if (err) {
          try {
            ws.close();
          } catch {
            // already closing
          }
          reject(err);
        } else resolve(value);
      };
      const timer = setTimeout(() => done(new ConnectError(`connecting to ${url} timed out after ${timeoutMs} ms`, { code: 'timeout' })), timeoutMs);
      const onOpen = () => {
        if (ws.protocol !== SUBPROTOCOL) {
          done(new ConnectError(`server did not accept the sub-protocol ${SUBPROTOCOL} (got "${ws.protocol}")`, { code: 'subprotocol' }));
          return;
        }
        done(null, new DashPushClient(ws, url, opts));
      };
      const onError = (ev) => {
        const why = ev?.message || ev?.error?.message || 'handshake failed';
        done(new ConnectError(`cannot open ${url}: ${why}`, { cause: ev?.error }));
      };
      const onClose = (ev) => done(new ConnectError(`socket to ${url} closed during the handshake (${ev?.code ?? '?'})`));
      ws.addEventListener('open', onOpen);
      ws.addEventListener('error', onError);
      ws.addEventListener('close', onClose);
    });
  }

  /** Use `DashPushClient.connect`. Wraps an open socket whose sub-protocol was accepted. */
  constructor(ws, url, opts = {}) {
    this.ws = ws;
    this.url = url;
    this.base = opts.base ?? httpBaseOf(url);
    this.opts = { ...DEFAULTS, ...opts };
    this.now = opts.now ?? defaultNow;
    /** When the last message arrived, and when the last request went out. */
    this.lastArrival = -Infinity;
    this.lastRequestSent = -Infinity;
    /** The event loop's last heartbeat, and how long without one means it was held up. */
    this.lastTick = this.now();
    const beat = opts.heartbeatMs ?? (opts.now ? 0 : DEFAULTS.heartbeatMs);
    this.heartbeatOn = beat > 0;
    this.lagMs = 2 * (beat > 0 ? beat : DEFAULTS.heartbeatMs);
    this.heartbeat = null;
    if (beat > 0) {
      this.heartbeat = setInterval(() => this.tick(), beat);
      this.heartbeat.unref?.();
    }
    this.nextStreamId = 1;
    this.closed = false;
    this.closeInfo = null;
    /** @type {Map<number, object>} open request streams */
    this.requests = new Map();
    /** @type {Map<number, object>} pushes being assembled, by stream id */
    this.pushes = new Map();
    /** @type {Map<string, object>} pushes being assembled, by absolute URL */
    this.pushesByUrl = new Map();
    this.inflightPushBytes = 0;
    /** @type {Map<string, object>} complete pushed resources, oldest first */
    this.store = new Map();
    this.storeBytes = 0;
    this.listeners = new Map();
    /** Request streams that carried a directive and have not ended: their pushes may come. */
    this.cycles = new Set();
    /** takePushed callers waiting for a push that has not started yet, by absolute URL. */
    this.expecting = new Map();
    this.stats = { pushed: 0, claimed: 0, cancelled: 0, evicted: 0, discarded: 0, pushErrors: 0, requests: 0, pushedBytes: 0, claimedBytes: 0 };
    if (opts.onEvent) this.on('*', (name, detail) => opts.onEvent(name, detail));
    this.onMessage = (ev) => this.handleData(ev.data);
    this.onClose = (ev) => this.shutdown(new ClosedError(`socket closed (${ev.code}${ev.reason ? ` ${ev.reason}` : ''})`, { closeCode: ev.code, closeReason: ev.reason }));
    this.onError = () => {};
    ws.addEventListener('message', this.onMessage);
    ws.addEventListener('close', this.onClose);
    ws.addEventListener('error', this.onError);
  }

  /** `{pushed, claimed, cancelled, evicted, discarded, pushErrors, requests, pushedBytes,
   * claimedBytes}`, a copy. */
  get counters() {
    return { ...this.stats };
  }

  /**
   * Subscribes to an event; returns the unsubscribe function. Events: `answer` {streamId, url,
   * status, pushAck} (first message of a request's answer), `pushed` {url, streamId,
   * parent, bytes}, `claimed` {url}, `cancelled` {streamId, url}, `evicted` {url},
   * `push-error` {streamId, url, status, detail}, `close` {error}. `*` receives (name, detail).
   */
  on(name, fn) {
    if (!this.listeners.has(name)) this.listeners.set(name, new Set());
    this.listeners.get(name).add(fn);
    return () => this.listeners.get(name)?.delete(fn);
  }

  emit(name, detail) {
    for (const fn of this.listeners.get(name) ?? []) safeCall(fn, detail);
    for (const fn of this.listeners.get('*') ?? []) safeCall(fn, name, detail);
  }

  /** The absolute URL a (relative, path or absolute) URL stands for; the store's key. */
  resolve(url) {
    return new URL(url, this.base).href;
  }

  // What goes on the wire: the path when the URL is on the gateway's origin, else the URL.
  wireUrl(url) {
    const abs = new URL(url, this.base);
    const base = new URL(this.base);
    return abs.origin === base.origin ? abs.pathname + abs.search : abs.href;
  }

  /**
   * MPD request (§8.4.1). Resolves with `{status, contentType, contentLength, body, pushAck, url,
   * streamId, complete}` once the MPD is whole; `complete` resolves with the End of stream that
   * closes the request and its pushes (`{reason, status?, detail?}`, reason `closed` if the socket
   * went first).
   */
  requestMpd(url, { directive, timeoutMs } = {}) {
    return this.request(Code.MPD_REQUEST, url, { pushDirective: directive }, timeoutMs);
  }

  /**
   * Segment request (§8.4.2); `range` is `"first-last"` or `"first-"`. Resolves as requestMpd.
   * `tag` (any value) is handed to the pushes this request starts (`tag` of the pushed entries
   * and of `discardPushes`'s argument), e.g. the Representation the player asked from.
   */
  requestSegment(url, { directive, range, timeoutMs, tag } = {}) {
    return this.request(Code.SEGMENT_REQUEST, url, { pushDirective: directive, range }, timeoutMs, tag);
  }

  allocStreamId() {
    const id = this.nextStreamId;
    if (id > limits.MAX_STREAM_ID) throw new LimitError('client stream ids exhausted; open a new socket');
    this.nextStreamId += 2;
    return id;
  }

  request(code, url, fields, timeoutMs = this.opts.requestTimeoutMs, tag = undefined) {
    if (this.closed) return Promise.reject(this.closeInfo ?? new ClosedError('client is closed'));
    if (this.requests.size >= this.opts.maxOpenRequests) {
      return Promise.reject(new LimitError(`more than ${this.opts.maxOpenRequests} open requests`));
    }
    let frame;
    let streamId;
    try {
      streamId = this.allocStreamId();
      frame = encodeMessage({ code, streamId, end: true, url: this.wireUrl(url), ...fields });
    } catch (e) {
      return Promise.reject(e instanceof DashPushError ? e : new DashPushError(e.message, { code: 'invalid', cause: e }));
    }
    const absUrl = this.resolve(url);
    return new Promise((resolve, reject) => {
      let resolveComplete;
      const complete = new Promise((r) => {
        resolveComplete = r;
      });
      const req = {
        streamId,
        url: absUrl,
        resolve,
        reject,
        resolveComplete,
        complete,
        meta: null,
        chunks: [],
        bytes: 0,
        settled: false,
        timer: null,
        cycle: !!fields.pushDirective,
        timing: null,
        tag,
      };
      if (timeoutMs > 0) {
        req.timer = setTimeout(() => {
          this.settleRequest(req, new TimeoutError(`${absUrl}: no answer in ${timeoutMs} ms`));
        }, timeoutMs);
      }
      this.stats.requests++;
      // Sent on an idle socket (nothing owed to us), the wait for the answer is not transfer
      // time: the next message's transfer is counted from now. Sent while messages are still
      // coming, it changes nothing: they keep the socket busy.
      const idle = this.requests.size === 0 && this.pushes.size === 0 && this.cycles.size === 0;
      const sentAt = this.now();
      if (idle) this.lastRequestSent = sentAt;
      this.requests.set(streamId, req);
      if (req.cycle) this.cycles.add(streamId);
      this.send(frame);
      req.timing = newTiming(sentAt);
    });
  }

  settleRequest(req, err, value) {
    if (req.settled) return;
    req.settled = true;
    clearTimeout(req.timer);
    req.chunks = [];
    if (err) req.reject(err);
    else req.resolve(value);
  }

  send(bytes) {
    if (this.ws.readyState !== OPEN) {
      this.shutdown(new ClosedError('socket is not open'));
      return;
    }
    this.ws.send(bytes);
  }

  /**
   * Takes a pushed resource out of the store. Returns `{status, contentType, body, url, pushed:
   * true}` if it is there, a Promise of it (or of null if the push fails or is cancelled) if its
   * push is being received, and null otherwise. A hit counts as `claimed`.
   *
   * With `waitMs` > 0, a URL not pushed yet while a push cycle is still running on this socket
   * (a request that carried a directive has not had its End of stream) gives a Promise too: it
   * resolves with the push if one of that URL starts, else with null as soon as the cycles are
   * over or no push message arrived for `waitMs`. With `mediaType` (and `representation`), only
   * cycles that may push such a resource count: started by requests of that media type (and, when
   * both are known, that Representation: push-next and push-time follow the requested one; see
   * `requestSegment`'s `tag`) or untagged ones (an MPD's fast start), and only their push messages
   * restart the wait. This keeps a player from requesting what the gateway is about to push, and
   * from waiting on a cycle that will not push what it wants (after a switch, say).
   */
  takePushed(url, { waitMs = 0, mediaType, representation } = {}) {
    const key = this.resolve(url);
    const entry = this.store.get(key);
    if (entry) {
      this.store.delete(key);
      this.storeBytes -= entry.body.byteLength;
      return this.claim(entry);
    }
    const p = this.pushesByUrl.get(key);
    if (p) {
      return new Promise((resolve) => {
        p.waiters.push((e) => resolve(e ? this.claim(e) : null));
      });
    }
    const want = { mediaType, representation };
    if (waitMs > 0 && this.cyclesFor(want) && !this.closed) {
      return new Promise((resolve) => {
        const w = { resolve, timer: null, waitMs, arm: null, want };
        // The wait restarts with every push message that arrives: while pushes are flowing,
        // the one asked for may be next (they are sent one after the other).
        w.arm = () => {
          clearTimeout(w.timer);
          w.timer = setTimeout(() => this.stopExpecting(key, w, null), w.waitMs);
        };
        w.arm();
        const blockers = [...this.cycles].filter((id) => mayPush(this.requests.get(id)?.tag, want));
        this.emit('expecting', { url: key, streamId: blockers.map((id) => `${id}:${JSON.stringify(this.requests.get(id)?.tag ?? null)}`).join(',') });
        if (!this.expecting.has(key)) this.expecting.set(key, []);
        this.expecting.get(key).push(w);
      });
    }
    return null;
  }

  stopExpecting(key, w, push) {
    const list = this.expecting.get(key);
    const i = list ? list.indexOf(w) : -1;
    if (i < 0) return;
    list.splice(i, 1);
    if (!list.length) this.expecting.delete(key);
    clearTimeout(w.timer);
    if (push) push.waiters.push((e) => w.resolve(e ? this.claim(e) : null));
    else w.resolve(null);
  }

  // True while a push cycle runs that may push what `want` ({mediaType, representation}, either
  // unknown) describes.
  cyclesFor(want) {
    for (const id of this.cycles) if (mayPush(this.requests.get(id)?.tag, want)) return true;
    return false;
  }

  // A cycle ended: whoever waits for a push no running cycle can bring stops waiting.
  endCycle(streamId) {
    this.cycles.delete(streamId);
    for (const [key, list] of [...this.expecting]) {
      for (const w of [...list]) if (!this.cyclesFor(w.want)) this.stopExpecting(key, w, null);
    }
  }

  /** Whether a push of the URL is stored or being received. */
  hasPushed(url) {
    const key = this.resolve(url);
    return this.store.has(key) || this.pushesByUrl.has(key);
  }

  claim(entry) {
    this.stats.claimed++;
    this.stats.claimedBytes += entry.body?.byteLength ?? 0;
    this.emit('claimed', { url: entry.url });
    return entry;
  }

  /**
   * Segment cancel (§8.4.6) for push streams and/or URLs. Sent on a fresh client stream id
   * (returned). The server answers with End of stream `cancelled` on each stream it stopped.
   */
  cancel({ streams = [], urls = [] } = {}) {
    if (this.closed) throw this.closeInfo ?? new ClosedError('client is closed');
    const streamId = this.allocStreamId();
    const wire = urls.map((u) => this.wireUrl(u));
    this.send(encodeMessage({ code: Code.SEGMENT_CANCEL, streamId, end: true, streams, urls: wire }));
    return streamId;
  }

  /**
   * Gives up the pushes a player will not use (after a seek, a Representation switch or an
   * abandoned load): those being received that `which({url, parent, tag, streamId})` selects are
   * cancelled on the wire (Segment cancel, §8.4.6: the gateway stops them and counts the bytes
   * it did not send as saved), and the stored ones it selects are dropped (`discarded`). Returns
   * how many of each.
   */
  discardPushes(which) {
    const streams = [];
    for (const p of [...this.pushes.values()]) {
      if (!which({ url: p.url, parent: p.parent, tag: p.tag, streamId: p.streamId })) continue;
      streams.push(p.streamId);
      this.dropPush(p);
    }
    if (streams.length && !this.closed) this.cancelQuietly(streams);
    let dropped = 0;
    for (const [url, e] of [...this.store]) {
      if (!which({ url, parent: e.parent, tag: e.tag, streamId: e.streamId })) continue;
      this.store.delete(url);
      this.storeBytes -= e.body.byteLength;
      dropped++;
    }
    this.stats.discarded += dropped;
    if (streams.length || dropped) this.emit('discarded', { cancelled: streams.length, dropped });
    return { cancelled: streams.length, dropped };
  }

  /** Closes the socket; pending requests reject with ClosedError. */
  close(code = 1000, reason = '') {
    if (!this.closed) {
      try {
        this.ws.close(code, reason);
      } catch {
        // already closing
      }
    }
    this.shutdown(new ClosedError('client closed', { closeCode: code, closeReason: reason }));
  }

  /** The event loop ran: called every `heartbeatMs` (or by a test driving its own clock). */
  tick() {
    this.lastTick = this.now();
    if (!this.heartbeat) this.heartbeatOn = true;
  }

  shutdown(err) {
    if (this.closed) return;
    this.closed = true;
    if (this.heartbeat) clearInterval(this.heartbeat);
    this.heartbeat = null;
    this.closeInfo = err;
    this.ws.removeEventListener('message', this.onMessage);
    for (const req of this.requests.values()) {
      this.settleRequest(req, err);
      req.resolveComplete({ reason: 'closed' });
    }
    this.requests.clear();
    this.cycles.clear();
    this.endCycle(0);
    for (const p of this.pushes.values()) this.dropPush(p);
    this.emit('close', { error: err });
  }

  fail(err) {
    // A server message we cannot read: close like the gateway does (§8.4), then fail everything.
    try {
      this.ws.close(err.closeCode ?? 1002, 'unreadable message');
    } catch {
      // already closing
    }
    this.shutdown(err);
  }

  handleData(data) {
    if (this.closed) return;
    // The message's transfer began when the socket was done with the previous one, or when the
    // last request went out if that is later (the socket was idle in between).
    const at = this.now();
    const since = Math.max(this.lastArrival, this.lastRequestSent);
    const arrival = { at, busy: Math.max(0, at - since), wire: data?.byteLength ?? 0 };
    // A message handled after the event loop was held up (no heartbeat for a while: a page
    // still loading its scripts, say) may have reached the socket any time since the last beat,
    // and the messages queued behind it come all at once. The next message's transfer is then
    // counted from that beat, not from now: a burst of queued messages must not read as a fast
    // link (it made dash.js's first estimate 869 kbit/s on a 650 kbit/s link, and it switched
    // up and stalled). A hidden page's timers are throttled, so there it is not taken as a stall.
    const held = this.heartbeatOn && at - this.lastTick > this.lagMs && globalThis.document?.visibilityState !== 'hidden';
    this.lastArrival = held ? Math.max(since, this.lastTick) : at;
    if (typeof data === 'string') {
      this.fail(new ProtocolError('text message from the server', { closeCode: 1003 }));
      return;
    }
    let msg;
    try {
      msg = decodeMessage(data, { maxMessage: this.opts.maxMessageBytes });
    } catch (e) {
      if (e instanceof FrameError) {
        this.fail(new ProtocolError(`unreadable message: ${e.message}`, { cause: e, closeCode: e.closeCode }));
      } else if (e instanceof MessageError) {
        this.streamFailed(e.streamId, new ProtocolError(`bad message: ${e.message}`, { cause: e }));
      } else {
        this.fail(new ProtocolError(`unreadable message: ${e.message}`, { cause: e }));
      }
      return;
    }
    switch (msg.code) {
      case Code.MPD_RECEIVED:
      case Code.SEGMENT_RECEIVED:
        if (msg.streamId % 2 === 1) this.onAnswer(msg, arrival);
        else this.onPush(msg, arrival);
        break;
      case Code.END_OF_STREAM:
        this.onEnd(msg);
        break;
      default:
        // A client-to-server message from the server: not ours to answer; ignore it.
        break;
    }
  }

  streamFailed(streamId, err) {
    const req = this.requests.get(streamId);
    if (req) {
      this.settleRequest(req, err);
      return;
    }
    const p = this.pushes.get(streamId);
    if (p) this.dropPush(p);
  }

  onAnswer(msg, arrival) {
    const req = this.requests.get(msg.streamId);
    if (!req || req.settled) return; // unknown, timed out or failed: drop the rest
    if (req.timing && arrival) addArrival(req.timing, arrival, msg.payload.byteLength, this.opts.maxArrivals);
    if (!req.meta) {
      req.meta = msg;
      this.emit('answer', { streamId: req.streamId, url: req.url, status: msg.status, pushAck: msg.pushAck });
    }
    req.bytes += msg.payload.byteLength;
    if (req.bytes > this.opts.maxResourceBytes) {
      this.settleRequest(req, new LimitError(`${req.url}: resource over ${this.opts.maxResourceBytes} bytes`));
      return;
    }
    if (msg.payload.byteLength) req.chunks.push(msg.payload.slice());
    if (msg.end) this.finishAnswer(req);
  }

  finishAnswer(req) {
    const m = req.meta;
    if (m.contentLength !== undefined && m.contentLength !== req.bytes && m.status !== 206) {
      this.settleRequest(req, new ProtocolError(`${req.url}: ${req.bytes} bytes received, content_length ${m.contentLength}`));
      return;
    }
    const body = concat(req.chunks, req.bytes);
    this.settleRequest(req, null, {
      status: m.status,
      contentType: m.contentType,
      contentLength: m.contentLength,
      pushAck: m.pushAck,
      url: this.resolve(m.url),
      streamId: req.streamId,
      body,
      complete: req.complete,
      timing: req.timing,
    });
  }

  onPush(msg, arrival) {
    // Pushes of the kind a waiter wants are still coming: its wait restarts.
    const pushTag = this.pushes.get(msg.streamId)?.tag ?? this.requests.get(msg.parent)?.tag;
    for (const list of this.expecting.values()) {
      for (const w of list) if (mayPush(pushTag, w.want)) w.arm();
    }
    let p = this.pushes.get(msg.streamId);
    if (!p) {
      if (!msg.pushed) return; // continuation of a push we dropped or never saw
      const url = this.resolve(msg.url);
      const startedAt = arrival ? arrival.at - arrival.busy : this.now();
      const tag = this.requests.get(msg.parent)?.tag;
      p = { streamId: msg.streamId, parent: msg.parent, tag, url, meta: msg, chunks: [], bytes: 0, waiters: [], timing: newTiming(startedAt) };
      if (this.pushes.size >= this.opts.maxInflightPushes || this.inflightPushBytes >= this.opts.maxInflightPushBytes) {
        this.cancelQuietly([msg.streamId]);
        return;
      }
      this.pushes.set(p.streamId, p);
      const prev = this.pushesByUrl.get(url);
      if (prev) this.dropPush(prev);
      this.pushesByUrl.set(url, p);
      for (const w of [...(this.expecting.get(url) ?? [])]) this.stopExpecting(url, w, p);
    }
    if (arrival) addArrival(p.timing, arrival, msg.payload.byteLength, this.opts.maxArrivals);
    p.bytes += msg.payload.byteLength;
    this.inflightPushBytes += msg.payload.byteLength;
    if (p.bytes > this.opts.maxResourceBytes) {
      this.cancelQuietly([p.streamId]);
      this.dropPush(p);
      return;
    }
    if (msg.payload.byteLength) p.chunks.push(msg.payload.slice());
    if (msg.end) this.finishPush(p);
  }

  finishPush(p) {
    this.forgetPush(p);
    const m = p.meta;
    if (m.status < 200 || m.status > 299 || (m.contentLength !== undefined && m.contentLength !== p.bytes)) {
      this.stats.pushErrors++;
      this.emit('push-error', { streamId: p.streamId, url: p.url, status: m.status });
      for (const w of p.waiters) w(null);
      return;
    }
    const entry = { status: m.status, contentType: m.contentType, body: concat(p.chunks, p.bytes), url: p.url, pushed: true, streamId: p.streamId, parent: p.parent, tag: p.tag, timing: p.timing };
    p.chunks = [];
    this.stats.pushed++;
    this.stats.pushedBytes += p.bytes;
    this.emit('pushed', { url: p.url, streamId: p.streamId, parent: p.parent, bytes: p.bytes });
    if (p.waiters.length) {
      // Someone is already waiting: hand it over, keep nothing.
      const [first, ...rest] = p.waiters;
      first(entry);
      for (const w of rest) w(null);
      return;
    }
    this.storePut(entry);
  }

  storePut(entry) {
    const size = entry.body.byteLength;
    if (size > this.opts.maxStoreBytes) return;
    const old = this.store.get(entry.url);
    if (old) {
      this.store.delete(entry.url);
      this.storeBytes -= old.body.byteLength;
    }
    this.store.set(entry.url, entry);
    this.storeBytes += size;
    for (const [url, e] of this.store) {
      if (this.store.size <= this.opts.maxStoreEntries && this.storeBytes <= this.opts.maxStoreBytes) break;
      this.store.delete(url);
      this.storeBytes -= e.body.byteLength;
      this.stats.evicted++;
      this.emit('evicted', { url });
    }
  }

  forgetPush(p) {
    this.pushes.delete(p.streamId);
    if (this.pushesByUrl.get(p.url) === p) this.pushesByUrl.delete(p.url);
    this.inflightPushBytes -= p.bytes;
  }

  dropPush(p) {
    this.forgetPush(p);
    p.chunks = [];
    for (const w of p.waiters) w(null);
    p.waiters = [];
  }

  cancelQuietly(streams) {
    try {
      this.cancel({ streams });
    } catch {
      // closed: nothing to cancel
    }
  }

  onEnd(msg) {
    const req = this.requests.get(msg.streamId);
    if (req) {
      this.requests.delete(msg.streamId);
      const end = { reason: msg.reason, status: msg.status, detail: msg.detail };
      if (!req.settled) {
        if (msg.reason === EndReason.COMPLETE && req.meta) {
          this.finishAnswer(req); // complete without END on the last piece: take what came
        } else {
          const what = msg.reason === EndReason.COMPLETE ? 'ended with no answer' : msg.reason;
          this.settleRequest(req, new RequestError(`${req.url}: ${what}${msg.status ? ` ${msg.status}` : ''}${msg.detail ? ` (${msg.detail})` : ''}`, {
            url: req.url,
            streamId: msg.streamId,
            reason: msg.reason,
            status: msg.status,
            detail: msg.detail,
          }));
        }
      }
      req.resolveComplete(end);
      this.endCycle(msg.streamId);
      return;
    }
    const p = this.pushes.get(msg.streamId);
    if (msg.reason === EndReason.CANCELLED && msg.streamId % 2 === 0) {
      this.stats.cancelled++;
      this.emit('cancelled', { streamId: msg.streamId, url: p?.url });
    } else if (msg.reason === EndReason.ERROR && msg.streamId % 2 === 0) {
      this.stats.pushErrors++;
      this.emit('push-error', { streamId: msg.streamId, url: p?.url, status: msg.status, detail: msg.detail });
    }
    if (p) this.dropPush(p);
  }
}

function safeCall(fn, ...args) {
  try {
    fn(...args);
  } catch (e) {
    // A listener's bug must not break the protocol state machine.
    queueMicrotask(() => {
      throw e;
    });
  }
}
