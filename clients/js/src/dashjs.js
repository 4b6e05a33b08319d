// dash.js integration: route dash.js's MPD and segment loads through a DashPushClient.
//
// dash.js (v5) loads every MPD and segment through its HTTPLoader, which hands the request to an
// `XHRLoader` instance created by dash.js's FactoryMaker. `player.extend('XHRLoader', fn, true)`
// registers an override: dash.js builds the stock XHRLoader and then replaces its public methods
// with ours, giving us `this.parent` (the stock instance). Our `load(commonMediaRequest,
// commonMediaResponse)` serves the bytes itself and reports through the callbacks the
// HTTPLoader put in `commonMediaRequest.customData` (onprogress, onloadend, onabort), exactly
// as the stock XHR path does; anything we do not handle goes to the stock `load`. Request
// interceptors (`addRequestInterceptor`) can only rewrite a request, not answer it, so they do
// not fit. Low-latency chunked segment loads use dash.js's FetchLoader and stay on plain HTTP.
//
// Behaviour:
// - the first MPD load → requestMpd with the fast-start directive; MPD reloads (live) → plain
//   requestMpd with no directive;
// - a segment load → takePushed(url) first (a hit counts as claimed; while a push cycle is
//   running it waits up to pushWaitMs for a push of that URL to start), else requestSegment,
//   optionally with a push-next directive;
// - no socket (never opened, refused, or closed since) → dash.js's own XHR loader, i.e. plain
//   HTTP, for that load and every later one.
//
// Honest throughput samples: dash.js estimates throughput from a load's resource timing (first to
// last byte, bytes on the wire) or, without it, from its progress events. A pushed segment is in
// memory before dash.js asks for it, so delivering it as one event at once would read as an
// infinitely fast (or cached, and ignored) transfer and ABR would never switch down. Each load is
// therefore reported with the times the socket carried it (`timing` of the client: when its
// messages arrived and how long the socket was busy with them): resource timing values from
// first to last byte, and one progress event per message carrying the socket time it took.
//
// Cancel what will not be used (spec §8.4.6): on a seek every push is given up; on a
// Representation switch the pushes started from the old Representation's requests; on an
// abandoned load the push it was waiting for. Pushes being received are cancelled on the wire.
//
// Live: while the socket is up and live segments arrive pushed at their availability, dash.js is
// told to play closer to the live edge: one segment duration (the floor for a segment that exists
// only once it has ended) plus a margin driven by what the pushes deliver (how far behind the
// edge, on dash.js's clock, the playhead had to be when each pushed segment was handed over for
// the media before it to still hold what the browser keeps in reserve), with catch-up on; when
// pushes stop arriving in time, or the socket is given up, its own defaults come back.

import { DashPushClient, ClosedError, ConnectError, DashPushError, RequestError } from './client.js';

// One segment of each media type: enough to start, and the next ones follow dash.js's ABR choice
// (a second top-quality segment pushed before the first throughput sample stalls a slow link).
export const DEFAULT_MPD_DIRECTIVE = 'urn:mpeg:dash:fdh:2016:push-fast-start;{"segments":1,"bandwidth":1000000}';
export const DEFAULT_SEGMENT_DIRECTIVE = 'urn:mpeg:dash:fdh:2016:push-next;2';

const MPD = 'MPD';
const now = () => globalThis.performance?.now?.() ?? Date.now();
const SEGMENT_TYPES = new Set(['InitializationSegment', 'MediaSegment', 'IndexSegment', 'BitstreamSwitchingSegment']);

/**
 * Installs the loader override on a dash.js MediaPlayer. Call it after
 * `dashjs.MediaPlayer().create()` and before `player.initialize(...)`.
 *
 * @param {object} player a dash.js MediaPlayer
 * @param {object} opts
 * @param {string} opts.wsUrl the gateway's WebSocket endpoint, e.g. ws://host/dashpush
 * @param {Function} [opts.WebSocket] WebSocket constructor (default globalThis.WebSocket)
 * @param {string|null} [opts.directive] directive on the first MPD request (null: none)
 * @param {string|null} [opts.segmentDirective] directive on segment requests (null: none)
 * @param {number} [opts.pushWaitMs] how long a segment load waits for a push that has not
 *   started while a push cycle is still running (DashPushClient.takePushed's waitMs)
 * @param {boolean} [opts.liveEdge] live over the socket: play near the live edge (default true)
 * @param {number} [opts.liveMarginSeconds] live: the least margin over one segment duration
 *   behind the edge (default 0.1; more when pushes arrive later, see `liveMargin`)
 * @param {number} [opts.liveGuardMs] live: what the margin keeps over the latest recent
 *   need for appending the segment (default `LIVE_GUARD_MS`)
 * @param {object} [opts.liveReserveMs] live: per media type, how much media the browser must
 *   still hold ahead of the playhead when the next segment arrives (default `LIVE_RESERVE_MS`;
 *   raised by a stall)
 * @param {object} [opts.client] DashPushClient options (bounds, timeouts)
 * @param {Promise<DashPushClient>} [opts.connecting] a connection already being opened (the demo
 *   player opens it while dash.js is still loading); used instead of connecting here
 * @param {Function} [opts.onEvent] (name, detail) for client events and `fallback` / `served`
 * @returns {{ready: Promise<DashPushClient|null>, client: DashPushClient|null, counters: Function,
 *   stats: object, detach: Function}}
 */
export function attachDashPush(player, opts = {}) {
  const {
    wsUrl,
    WebSocket,
    directive = DEFAULT_MPD_DIRECTIVE,
    segmentDirective = DEFAULT_SEGMENT_DIRECTIVE,
    pushWaitMs = 2000,
    liveEdge = true,
    liveMarginSeconds = 0.1,
    liveGuardMs = LIVE_GUARD_MS,
    liveReserveMs = LIVE_RESERVE_MS,
    onEvent = () => {},
  } = opts;
  if (!player || typeof player.extend !== 'function') throw new TypeError('attachDashPush needs a dash.js MediaPlayer');
  if (!wsUrl) throw new TypeError('attachDashPush needs {wsUrl}');

  // Loads served by each path, and why the socket was given up, for stats pages and tests.
  const stats = {
    transport: 'connecting',
    wsLoads: 0,
    httpLoads: 0,
    pushHits: 0,
    mpdLoads: 0,
    fallbackReason: null,
    /** Pushes given up (cancelled or dropped) after a seek, a switch or an abandoned load. */
    discarded: 0,
    /** `push` while dash.js is told to play near the live edge, `default` otherwise. */
    liveDelayMode: 'default',
    liveDelaySeconds: null,
    liveDelayGivenUp: false,
    /** The live delay the integration set when the stream started, if it did. */
    liveDelayApplied: null,
    /** Every live delay set while pushes drive it (the last 50), in seconds. */
    liveDelayHistory: [],
    /** Live: per pushed segment handed to dash.js, how far past one segment behind the edge
     * the playhead needed to be then (`marginNeededMs`, reserve included): [media type, ms]
     * (the last 60). */
    liveNeeded: [],
    /** Live: the reserve kept per media type (ms; `LIVE_RESERVE_MS`, raised by stalls). */
    liveReserveMs: { ...liveReserveMs },
    /** Live: stalls while the pushed-live delay applied: [media type blamed, ms it held]. */
    liveStalls: [],
    /** Segment requests by the push-next K adaptive K chose: [none, 1, K >= 2]. */
    pushAhead: [0, 0, 0],
  };
  const handle = {
    client: null,
    stats,
    ready: null,
    counters: () => ({ ...(handle.client?.counters ?? { pushed: 0, claimed: 0, cancelled: 0 }), ...stats }),
    detach: () => {
      detached = true;
      handle.client?.close();
    },
  };
  let detached = false;
  let mpdDirectiveSent = false;

  const live = liveController(player, stats, { enabled: liveEdge, minMarginSeconds: liveMarginSeconds, guardMs: liveGuardMs, onEvent });
  const events = player.constructor?.events ?? globalThis.dashjs?.MediaPlayer?.events ?? {};
  if (typeof player.on === 'function') player.on(events.PLAYBACK_WAITING ?? 'playbackWaiting', () => live.onStall());

  const fallback = (reason) => {
    if (stats.transport !== 'http') {
      stats.transport = 'http';
      stats.fallbackReason = reason;
      onEvent('fallback', { reason });
      live.useDefaults('socket given up');
    }
  };

  // Gives up pushes the player will not use; `which` sees {url, tag, parent, streamId}.
  const discard = (which, why) => {
    const c = usable();
    if (!c) return;
    const { cancelled, dropped } = c.discardPushes(which);
    if (cancelled || dropped) {
      stats.discarded += cancelled + dropped;
      onEvent('discarded', { why, cancelled, dropped });
    }
  };
  if (typeof player.on === 'function') {
    player.on(events.PLAYBACK_SEEKING ?? 'playbackSeeking', () => discard(() => true, 'seek'));
    player.on(events.QUALITY_CHANGE_REQUESTED ?? 'qualityChangeRequested', (e) => {
      const old = e?.oldRepresentation?.id;
      const type = e?.mediaType;
      if (old === undefined || !type || e?.newRepresentation?.id === old) return;
      discard(({ tag }) => tag?.mediaType === type && tag?.representation === old, 'switch');
    });
  }

  // `opts.connecting`: a connection already being opened (e.g. while dash.js was loading).
  handle.ready = (opts.connecting ?? DashPushClient.connect(wsUrl, { WebSocket, ...(opts.client ?? {}), onEvent }))
    .then((client) => {
      if (detached) {
        client.close();
        return null;
      }
      handle.client = client;
      stats.transport = 'ws';
      // A connection opened elsewhere (opts.connecting) reports its events here too.
      if (opts.connecting) client.on('*', (name, detail) => onEvent(name, detail));
      client.on('close', ({ error }) => fallback(`socket closed: ${error?.message ?? 'closed'}`));
      return client;
    })
    .catch((e) => {
      fallback(e instanceof ConnectError ? e.message : `connect failed: ${e.message}`);
      return null;
    });

  const usable = () => {
    const c = handle.client;
    return c && !c.closed && !detached ? c : null;
  };

  async function serve(client, type, req) {
    const url = req.url;
    if (type === MPD) {
      stats.mpdLoads++;
      const d = !mpdDirectiveSent && directive ? directive : undefined;
      mpdDirectiveSent = true;
      const r = await client.requestMpd(url, { directive: d });
      // Before dash.js reads the MPD: where a live stream should start depends on it.
      live.onMpd(r, stats.transport === 'ws');
      return r;
    }
    const fragment = req.customData?.request;
    const range = fragment?.range || undefined;
    const media = fragment?.type === 'MediaSegment';
    if (!range) {
      // Live pushes start at their segment's availability, which dash.js may compute a little
      // ahead of the gateway: while a cycle runs, wait for them up to a segment duration.
      const waitMs = media ? Math.max(pushWaitMs, live.waitMs()) : pushWaitMs;
      const asked = now();
      const hit = await client.takePushed(url, { waitMs, mediaType: fragment?.mediaType, representation: fragment?.representation?.id });
      if (hit) {
        stats.pushHits++;
        if (media) live.onSegment(true, fragment, now() - asked);
        return hit;
      }
    }
    if (media) live.onSegment(false, fragment);
    const tag = { mediaType: fragment?.mediaType, representation: fragment?.representation?.id };
    // Only a media segment asks for the segments after it: push-next on an initialization
    // segment would make the gateway guess where playback is (the live edge, or the first
    // segment), and a later load would wait on pushes it does not need.
    return client.requestSegment(url, { directive: media ? adaptiveDirective(fragment) : undefined, range, tag });
  }

  // The bitrate of the Representation last loaded per media type (bit/s): the media types
  // share the link.
  const playing = new Map();

  // Adaptive K (Xiao et al., NOSSDAV 2016): push only as far ahead as the link has room for
  // (`pushAhead`), against the bitrates of every media type being loaded (they share the link:
  // audio pushed ahead takes the time the video segment needed now has). No estimate yet: the
  // configured K. Live, the configured K too: a live push goes out when its segment becomes
  // available, one per segment duration, so pushes cannot pile up ahead of the player, and the
  // estimates from small live segments are mostly round trips (they read a fraction of the link).
  function adaptiveDirective(fragment) {
    if (!segmentDirective) return undefined;
    if (live.dynamic()) return segmentDirective;
    const m = /push-next;(\d+)/.exec(segmentDirective);
    const own = fragment?.representation?.bandwidth;
    if (own > 0 && fragment?.mediaType) playing.set(fragment.mediaType, own);
    const kbit = own > 0 ? [...playing.values()].reduce((a, b) => a + b, 0) / 1000 : NaN;
    let tput = NaN;
    try {
      tput = player.getAverageThroughput?.(fragment?.mediaType);
    } catch {
      // no estimate for this media type yet
    }
    if (!m || !(kbit > 0) || !(tput > 0)) return segmentDirective;
    const allowed = pushAhead(Number(m[1]), tput / kbit);
    stats.pushAhead[Math.min(allowed, 2)]++;
    return allowed > 0 ? segmentDirective.replace(/push-next;\d+/, `push-next;${allowed}`) : undefined;
  }

  player.extend(
    'XHRLoader',
    function dashPushXhrLoader() {
      const parent = this.parent;
      const stockLoad = parent.load; // captured before dash.js swaps in ours
      const stockAbort = parent.abort;

      function load(req, resp) {
        const type = req.customData?.request?.type;
        const ours = (req.method ?? 'GET') === 'GET' && (type === MPD || SEGMENT_TYPES.has(type)) && stats.transport !== 'http';
        if (!ours) {
          stats.httpLoads++;
          return stockLoad(req, resp);
        }
        let aborted = false;
        req.customData.abort = () => {
          if (aborted) return;
          aborted = true;
          // An abandoned load: the push it waits for (or is receiving) will not be used.
          const c = usable();
          if (c) {
            const abs = c.resolve(req.url);
            discard(({ url }) => url === abs, 'abort');
          }
          const onabort = req.customData.onabort;
          if (onabort) onabort();
        };
        onEvent('load', { url: req.url, type });
        (async () => {
          const client = usable() ?? (await handle.ready);
          if (aborted) return;
          if (!client || client.closed) {
            stats.httpLoads++;
            stockLoad(req, resp);
            return;
          }
          let result;
          try {
            result = await serve(client, type, req);
          } catch (e) {
            if (aborted) return;
            if (e instanceof RequestError && e.status) {
              deliver(req, resp, { status: e.status, statusText: e.detail ?? e.message, contentType: '', body: null });
              return;
            }
            // Socket trouble (closed, unreadable, timed out, over a bound): this load and the
            // rest go over plain HTTP.
            if (e instanceof ClosedError || !(e instanceof DashPushError) || e.code === 'protocol') {
              fallback(e.message);
            }
            stats.httpLoads++;
            stockLoad(req, resp);
            return;
          }
          if (aborted) return;
          stats.wsLoads++;
          onEvent('served', { url: req.url, type, pushed: !!result.pushed, bytes: result.body?.byteLength ?? 0 });
          deliver(req, resp, result);
        })().catch((e) => {
          // A bug in delivery: let dash.js see a failed load rather than hang.
          if (!aborted) deliver(req, resp, { status: 599, statusText: String(e), contentType: '', body: null });
        });
        return true;
      }

      function abort() {
        return stockAbort();
      }

      return { load, abort };
    },
    true,
  );

  return handle;
}

// Hands a result to dash.js the way its XHR path does, with the times the socket carried it:
// resource timing values (dash.js's preferred throughput input) from the first to the last byte,
// and one progress event per message that carries the socket time it took (`time`, which dash.js
// records as the trace's duration) before loadend.
function deliver(req, resp, { status, statusText, contentType, body, timing }) {
  const n = body ? body.byteLength : 0;
  resp.url = req.url;
  resp.status = status;
  resp.statusText = statusText ?? (status >= 200 && status < 300 ? 'OK' : '');
  resp.headers = contentType ? { 'content-type': contentType } : {};
  if (body && status >= 200 && status < 300) {
    if (req.responseType === 'arraybuffer' || req.responseType === 'blob') {
      resp.data = req.responseType === 'blob' ? new Blob([body], { type: contentType }) : body;
    } else if (req.responseType === 'json') {
      resp.data = JSON.parse(new TextDecoder().decode(body));
    } else {
      resp.data = new TextDecoder().decode(body);
    }
  } else {
    resp.data = null;
  }
  const cd = req.customData ?? {};
  const rt = resourceTiming(timing, n);
  if (rt && cd.request) cd.request.resourceTimingValues = rt;
  if (cd.onprogress) {
    for (const ev of progressEvents(timing, n)) cd.onprogress(ev);
  }
  if (cd.onloadend) cd.onloadend();
}

/**
 * Resource timing values for a load the socket carried (the fields dash.js reads from a
 * PerformanceResourceTiming entry): `responseStart` is where the socket began carrying it,
 * `responseEnd` when its last message arrived, `transferSize` its bytes on the wire. `null`
 * without timing or bytes.
 */
export function resourceTiming(timing, bodyBytes) {
  if (!timing || timing.lastByteAt === null || !bodyBytes) return null;
  const responseEnd = timing.lastByteAt;
  const busy = Math.max(1, timing.busyMs);
  const responseStart = Math.max(timing.startedAt, responseEnd - busy);
  return {
    startTime: timing.startedAt,
    responseStart: Math.min(responseStart, responseEnd - 1),
    responseEnd,
    duration: responseEnd - timing.startedAt,
    transferSize: Math.max(timing.transferSize, bodyBytes),
    encodedBodySize: bodyBytes,
    decodedBodySize: bodyBytes,
  };
}

/**
 * The progress events of a load: one at its start (0 bytes) and one per message as it arrived,
 * `time` the socket milliseconds that message took (at least 1), `loaded` the bytes so far. A
 * load without timing gets a single event with everything.
 */
export function progressEvents(timing, total) {
  const arrivals = timing?.arrivals ?? [];
  if (!arrivals.length) return [{ loaded: total, total, lengthComputable: true }];
  const out = [{ loaded: 0, total, lengthComputable: true, time: 1 }];
  let loaded = 0;
  arrivals.forEach(([, busy, bytes], i) => {
    loaded = i === arrivals.length - 1 ? total : Math.min(total, loaded + bytes);
    out.push({ loaded, total, lengthComputable: true, time: Math.max(1, Math.round(busy)) });
  });
  return out;
}

/** The duration of one segment from an MPD's text: `maxSegmentDuration`, else the first
 * SegmentTemplate's `duration`/`timescale`; `null` if neither is there. */
export function segmentSeconds(mpdText) {
  const iso = /maxSegmentDuration="PT([0-9.]+)S"/.exec(mpdText);
  if (iso) return Number(iso[1]);
  const tpl = /<SegmentTemplate\b[^>]*>/.exec(mpdText)?.[0];
  if (!tpl) return null;
  const d = /\bduration="([0-9]+)"/.exec(tpl);
  const ts = /\btimescale="([0-9]+)"/.exec(tpl);
  if (!d) return null;
  return Number(d[1]) / (ts ? Number(ts[1]) : 1);
}

/**
 * Where dash.js plays a live stream from. While the socket is up and live segments are taken
 * from pushes, the target delay is one segment duration plus a margin, with catch-up on and
 * dash.js's buffer-based ABR rule (BOLA) off. The margin is [`liveMargin`] of what the last
 * pushed live segments needed ([`marginNeededMs`]): when a segment is handed over, the media of
 * its type already buffered must still hold what the browser keeps in reserve ahead of the
 * playhead (Chromium's audio renderer stalls with about 120 ms of audio left: `LIVE_RESERVE_MS`),
 * or playback waits although the segment is arriving. A stall while this delay applies raises
 * the reserve of the media type that held least. Until a hand-over has been read the margin is
 * [`startMarginMs`]; where dash.js cannot say (no live latency yet), how long the load
 * waited for its push plus dash.js's look-again interval plus the reserve stands in. Three live
 * segment loads in a row that were not served by a push (late pushes, a slow link) or a given-up
 * socket bring dash.js's defaults back. (Exported for its tests; `attachDashPush` makes one.)
 */
export function liveController(player, stats, { enabled, minMarginSeconds, guardMs, onEvent, schedulingMs = LIVE_SCHEDULING_MS }) {
  let dynamic = false;
  let segment = null;
  // Live segment loads in a row not served by a push, per media type.
  const misses = new Map();
  // What the last pushed live segments needed, before the reserve: [media type, ms].
  const needs = [];
  const reserve = (type) => stats.liveReserveMs[type] ?? 0;
  const margin = () =>
    needs.length
      ? liveMargin(
          needs.map(([type, ms]) => ms + reserve(type)),
          { minSeconds: minMarginSeconds, guardMs, segmentSeconds: segment },
        )
      : Math.max(minMarginSeconds, startMarginMs(stats.liveReserveMs, guardMs) / 1000);
  const apply = (settings) => {
    if (typeof player.updateSettings === 'function') player.updateSettings(settings);
  };
  const setDelay = (delay) => {
    stats.liveDelaySeconds = delay;
    stats.liveDelayHistory.push(delay);
    if (stats.liveDelayHistory.length > 50) stats.liveDelayHistory.shift();
    apply({ streaming: { delay: { liveDelay: delay } } });
    onEvent('live-delay', { mode: 'push', seconds: delay });
  };
  // Later on at once (a push late again would stall); closer only by a clear step, so catch-up
  // does not chase every few milliseconds, and only once two segments of each media type read
  // so far, and four in all, have been read (the media before a boundary ends short of it by
  // different amounts).
  const readEnough = () => {
    const perType = new Map();
    for (const [type] of needs) perType.set(type, (perType.get(type) ?? 0) + 1);
    return needs.length >= LIVE_SAMPLES_BEFORE_CLOSER && [...perType.values()].every((n) => n >= 2);
  };
  const follow = () => {
    const delay = liveDelayFor(segment, margin());
    const closer = readEnough() && Math.round((stats.liveDelaySeconds - delay) * 1000) >= 50;
    if (delay > stats.liveDelaySeconds || closer) setDelay(delay);
  };
  const useDefaults = (why) => {
    if (stats.liveDelayMode !== 'push') return;
    stats.liveDelayMode = 'default';
    stats.liveDelaySeconds = null;
    apply({
      streaming: {
        delay: { liveDelay: NaN },
        liveCatchup: { enabled: null },
        scheduling: { defaultTimeout: 500 },
        abr: { rules: { bolaRule: { active: true }, insufficientBufferRule: { active: true } } },
      },
    });
    onEvent('live-delay', { mode: 'default', why });
  };
  return {
    useDefaults,
    /** True once the MPD read is dynamic (live). */
    dynamic: () => dynamic,
    onMpd(result, overSocket) {
      const text = result?.body ? new TextDecoder().decode(result.body) : '';
      dynamic = /type="dynamic"/.test(text);
      segment = segmentSeconds(text);
      if (!enabled || !dynamic || !overSocket || !segment || stats.liveDelayMode === 'push' || stats.liveDelayGivenUp) return;
      const delay = liveDelayFor(segment, margin());
      stats.liveDelayMode = 'push';
      stats.liveDelayApplied = delay;
      apply({
        streaming: {
          liveCatchup: { enabled: true, maxDrift: segment * 2, playbackRate: { min: -0.2, max: 0.2 } },
          // dash.js looks again for a segment that is not yet available after this long (500 ms
          // by default), which would otherwise be lost on top of the margin.
          scheduling: { defaultTimeout: schedulingMs },
          // BOLA picks by buffer level against a buffer target far above a one-segment live
          // delay, and the insufficient-buffer rule drops to the lowest bitrate whenever the
          // buffer runs under a segment, which near the edge it does before every push arrives:
          // both dropped to the lowest bitrate and back in turns (each turn a discarded push
          // and often a stall). The throughput rules, fed per-message timing, decide instead.
          abr: { rules: { bolaRule: { active: false }, insufficientBufferRule: { active: false } } },
        },
      });
      setDelay(delay);
    },
    /** How long a live segment load waits for its push to start (0 when not live). */
    waitMs() {
      return dynamic && stats.liveDelayMode === 'push' && segment ? segment * 1000 : 0;
    },
    /**
     * A live media segment load served by a push or not; for a push, `waitedMs` is how long the
     * load waited for it.
     */
    onSegment(pushed, fragment, waitedMs = 0) {
      if (!dynamic) return;
      const type = fragment?.mediaType;
      const n = pushed ? 0 : (misses.get(type) ?? 0) + 1;
      misses.set(type, n);
      // With push-next;K one load in K+1 is a request by design; three in a row are not.
      if (n >= 3) {
        stats.liveDelayGivenUp = true;
        useDefaults('live segments not arriving pushed');
        return;
      }
      if (!pushed || stats.liveDelayMode !== 'push') return;
      // Without dash.js's clock: the load asked at most one look-again interval after the
      // segment became available, then waited for the push; the media before it is taken to
      // end where the segment starts.
      const read = handOverNeed(player, fragment);
      const need = read ?? Math.round(waitedMs + schedulingMs);
      needs.push([type, need]);
      if (needs.length > LIVE_SAMPLES_KEPT) needs.shift();
      stats.liveNeeded.push([type, need + reserve(type)]);
      if (stats.liveNeeded.length > 60) stats.liveNeeded.shift();
      follow();
    },
    /**
     * Playback is waiting. While the pushed-live delay applies, the media type that held least
     * ahead of the playhead over its own reserve ran out first: its reserve becomes what it held plus
     * `LIVE_RESERVE_STEP_MS` (a browser whose audio output runs further ahead than Chromium's
     * stalls once, then keeps more), and the delay follows.
     */
    onStall() {
      if (!dynamic || stats.liveDelayMode !== 'push') return;
      // The type with the least left over its own reserve ran out first.
      let blamed = null;
      let least = Infinity;
      let held = 0;
      for (const type of ['audio', 'video']) {
        const ahead = bufferAhead(player, type);
        if (ahead === null) continue;
        const ms = Math.round(ahead * 1000);
        if (ms - reserve(type) < least) [blamed, least, held] = [type, ms - reserve(type), ms];
      }
      if (blamed === null || player.getVideoElement?.()?.seeking) return;
      stats.liveStalls.push([blamed, held]);
      if (stats.liveStalls.length > 20) stats.liveStalls.shift();
      // Nothing held (starting, or a push that did not come), or more than any audio output
      // reads ahead (a wait that was not this media running low): nothing to learn.
      if (!(held > 0) || held > LIVE_RESERVE_MAX_MS) return;
      const raised = Math.min(held + LIVE_RESERVE_STEP_MS, LIVE_RESERVE_MAX_MS);
      if (raised <= reserve(blamed)) return;
      stats.liveReserveMs[blamed] = raised;
      onEvent('live-reserve', { mediaType: blamed, ms: raised });
      if (needs.length) follow();
    },
  };
}

/** dash.js's look-again interval for a segment not yet available while the push delay applies. */
const LIVE_SCHEDULING_MS = 25;
/** What the live margin keeps over the largest recent need: dash.js appending the segment
 * before the playhead gets there (the needs already carry the link's jitter: the margin
 * follows the largest of the last few). On the benchmark's 1.5 Mbit/s link no stall came with
 * no guard at all in 3 runs of 4 (docs/benchmarks.md). */
export const LIVE_GUARD_MS = 25;
/**
 * Per media type, how much media (ms) the browser must still hold ahead of the playhead when
 * the next segment is handed over, or playback waits although the segment is arriving. Audio:
 * Chromium's audio renderer reads about 120 ms ahead of the reported playhead; it went to
 * `waiting` with 120 ms of audio buffered in every such stall measured (docs/benchmarks.md).
 * Video: none; Chromium kept playing with 14 ms of a 10 fps video left. A stall raises them.
 */
export const LIVE_RESERVE_MS = Object.freeze({ audio: 120, video: 0 });
/** What a stall adds to what the blamed media type held, and the most a reserve grows to (a
 * stall with more than that buffered of every media type was not a reserve running out: one
 * was seen with 2 s of each buffered). */
const LIVE_RESERVE_STEP_MS = 20;
const LIVE_RESERVE_MAX_MS = 500;
/** What the margin allows, before any hand-over has been read, for the first pushes to arrive
 * after their availability (with the default reserve and guard the start margin is 0.25 s). */
const LIVE_START_LATE_MS = 105;
/** The margin before any hand-over has been read (ms): the largest reserve, the guard and
 * `LIVE_START_LATE_MS`. */
export function startMarginMs(reserveMs, guardMs) {
  return Math.max(0, ...Object.values(reserveMs)) + guardMs + LIVE_START_LATE_MS;
}
/** How many pushed live segment loads the margin looks back over, and how many it needs
 * before it moves closer than it started. */
const LIVE_SAMPLES_KEPT = 8;
const LIVE_SAMPLES_BEFORE_CLOSER = 4;

/**
 * How many seconds of `type` are buffered ahead of the playhead, read from that type's
 * SourceBuffer through dash.js's stream processors (dash.js's own `getBufferLength` is updated
 * with the playhead's time updates and runs up to ~250 ms stale, more than the margins it would
 * size). `null` when it cannot be read.
 */
export function bufferAhead(player, type) {
  try {
    const t = player.getVideoElement?.()?.currentTime;
    const processor = player.getActiveStream?.()?.getStreamProcessors?.()?.find((p) => p.getType?.() === type);
    const ranges = processor?.getBuffer?.()?.getAllBufferRanges?.();
    if (!ranges || !Number.isFinite(t)) return null;
    for (let i = 0; i < ranges.length; i++) {
      // A range the playhead is in, or just short of (the first frame's start: what is
      // buffered counts, not the gap before it).
      if (ranges.start(i) - BUFFER_GAP_S <= t && t < ranges.end(i)) return ranges.end(i) - Math.max(t, ranges.start(i));
    }
    return 0;
  } catch {
    // dash.js not ready to say
    return null;
  }
}
/** The gap before a buffered range that still counts as the playhead being in it (seconds). */
const BUFFER_GAP_S = 0.1;

/**
 * What a pushed live segment handed to dash.js now needs before any reserve (`marginNeededMs`
 * with none; the controller adds the reserve of the segment's type), read from dash.js:
 * its live latency, on its own clock (the clock it schedules by), and how much of the
 * segment's media type it holds ahead of the playhead. `null` when dash.js cannot say (not
 * playing yet, not live, a fake player).
 */
export function handOverNeed(player, fragment) {
  let latency;
  try {
    latency = player.getCurrentLiveLatency?.();
  } catch {
    // dash.js not ready to say
    return null;
  }
  const duration = fragment?.duration;
  return marginNeededMs(latency, bufferAhead(player, fragment?.mediaType), duration, 0);
}

/**
 * How far past one segment duration behind the live edge the playhead needed to be, at a
 * segment's hand-over, for the media of its type already buffered (`aheadSeconds` ahead of the
 * playhead) to still hold `reserveMs`: `latency` − `segmentSeconds` − `aheadSeconds` +
 * `reserveMs`, in ms. A playhead further behind holds that much more ahead of it, so this is
 * the margin at which the hand-over would have come with the reserve intact; it counts how late
 * the segment came after its availability and how far short of the segment boundary the media
 * before it ended (an audio segment ends on a whole audio frame). Negative: room to spare.
 * `null` unless all are known and the latency is positive (dash.js reports 0 before playback
 * starts).
 */
export function marginNeededMs(latency, aheadSeconds, segmentSeconds, reserveMs) {
  if (![latency, aheadSeconds, segmentSeconds, reserveMs].every(Number.isFinite) || latency <= 0) return null;
  return Math.round((latency - segmentSeconds - aheadSeconds) * 1000 + reserveMs);
}

/**
 * The margin over one segment duration at which a live player plays pushed segments: the
 * largest recent need (`marginNeededMs`, reserve included), plus a guard for appending
 * (`guardMs`), never under `minSeconds` nor over a segment duration. In seconds, to the ms.
 */
export function liveMargin(neededMs, { minSeconds, guardMs = LIVE_GUARD_MS, segmentSeconds: seg }) {
  const worst = neededMs.length ? Math.max(...neededMs) : 0;
  const ms = Math.max(0, worst) + guardMs;
  const s = Math.min(Math.max(minSeconds, ms / 1000), seg ?? Infinity);
  return Math.round(s * 1000) / 1000;
}

/** One segment duration plus `margin`, in seconds to the millisecond. */
export function liveDelayFor(segment, margin) {
  return Number((segment + margin).toFixed(3));
}

/**
 * How many segments to push ahead of a requested one (at most `k`) when the link's estimated
 * throughput is `ratio` times the Representation's bitrate. Pushing j ahead commits the link to
 * j + 1 segments back to back, which take (j + 1) / ratio segment durations: j is allowed only
 * while that fits in one (ratio >= j + 1). Below twice the bitrate nothing is pushed ahead (the
 * next segment is pulled after ABR has seen this one, as over HTTP): a first estimate too high
 * (a link's initial burst) must not commit a second top-quality segment before ABR corrects it.
 */
export function pushAhead(k, ratio) {
  if (!(ratio > 0)) return k;
  return Math.max(0, Math.min(k, Math.floor(ratio) - 1));
}
