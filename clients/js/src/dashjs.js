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

import { DashPushClient, ClosedError, ConnectError, DashPushError, RequestError } from './client.js';

export const DEFAULT_MPD_DIRECTIVE = 'urn:mpeg:dash:fdh:2016:push-fast-start;{"segments":2,"bandwidth":1000000}';
export const DEFAULT_SEGMENT_DIRECTIVE = 'urn:mpeg:dash:fdh:2016:push-next;2';

const MPD = 'MPD';
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
    pushWaitMs = 250,
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

  const fallback = (reason) => {
    if (stats.transport !== 'http') {
      stats.transport = 'http';
      stats.fallbackReason = reason;
      onEvent('fallback', { reason });
    }
  };

  // `opts.connecting`: a connection already being opened (e.g. while dash.js was loading).
  handle.ready = (opts.connecting ?? DashPushClient.connect(wsUrl, { WebSocket, ...(opts.client ?? {}), onEvent }))
    .then((client) => {
      if (detached) {
        client.close();
        return null;
      }
      handle.client = client;
      stats.transport = 'ws';
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
      return client.requestMpd(url, { directive: d });
    }
    const range = req.customData?.request?.range || undefined;
    if (!range) {
      const hit = await client.takePushed(url, { waitMs: pushWaitMs });
      if (hit) {
        stats.pushHits++;
        return hit;
      }
    }
    return client.requestSegment(url, { directive: segmentDirective || undefined, range });
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
          const onabort = req.customData.onabort;
          if (onabort) onabort();
        };
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

// Hands a result to dash.js the way its XHR path does: fill the CommonMediaResponse, one progress
// event with the whole length, then loadend.
function deliver(req, resp, { status, statusText, contentType, body }) {
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
  if (cd.onprogress) cd.onprogress({ loaded: n, total: n, lengthComputable: true });
  if (cd.onloadend) cd.onloadend();
}
