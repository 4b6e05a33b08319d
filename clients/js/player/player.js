// The dashpush demo player: dash.js with its MPD and segment loads routed over the gateway's
// WebSocket endpoint (or plain HTTP with ?transport=http), live counters, and the playback
// numbers the browser test reads from window.dashpushStats.
import { MediaPlayer } from './vendor/dash.all.min.js';
import { attachDashPush, DEFAULT_MPD_DIRECTIVE } from './lib/dashjs.js';

const params = new URLSearchParams(location.search);
const mpdUrl = new URL(params.get('mpd') || '/vod/manifest.mpd', location.href).href;
const transport = params.get('transport') === 'http' ? 'http' : 'ws';
const wsUrl = params.get('ws') || `${location.protocol === 'https:' ? 'wss' : 'ws'}://${location.host}/dashpush`;
const next = params.has('next') ? Number(params.get('next')) : 2;
const loop = params.get('loop') !== '0';
// Live over the socket: seconds behind the edge beyond one segment (the integration's default
// when absent).
const liveMargin = params.has('liveMargin') ? Number(params.get('liveMargin')) : undefined;
// Live over the socket: ms the margin keeps over the latest recent push hand-over (the
// integration's default when absent).
const liveGuard = params.has('liveGuard') ? Number(params.get('liveGuard')) : undefined;
// How many seconds dash.js buffers ahead (its defaults when absent: 12 s, 30 s at the top
// quality); the benchmark's step cell caps it so a drop in the link is felt before the end.
const bufferSeconds = params.has('bufferSeconds') ? Number(params.get('bufferSeconds')) : undefined;

const video = document.getElementById('video');
const $ = (id) => document.getElementById(id);
$('mpd').textContent = mpdUrl;

// Everything the browser test reads. Times are from page start (performance.now()).
const stats = {
  transport,
  mpd: mpdUrl,
  pushed: 0,
  claimed: 0,
  cancelled: 0,
  wsLoads: 0,
  httpLoads: 0,
  pushHits: 0,
  fallbackReason: null,
  currentTime: 0,
  played: 0,
  stalls: 0,
  /** Milliseconds spent stalled after the first frame. */
  stallMs: 0,
  /** Video kbit/s × seconds played, for the average bitrate played. */
  kbitSeconds: 0,
  loops: 0,
  firstFrameMs: null,
  playing: false,
  errors: [],
  /** Video bitrate being played (kbit/s), and every switch: [ms since page start, kbit/s]. */
  videoKbit: null,
  videoSwitches: [],
  /** dash.js's average video throughput estimate (kbit/s) as it changes: [ms, kbit/s]. */
  throughput: [],
  /** Live: seconds behind the live edge on the page's clock (now − availabilityStartTime −
   * currentTime), sampled every 250 ms; the bench runs page and origin on one machine. */
  liveLatency: null,
  /** Live: dash.js's own estimate (it depends on its clock synchronisation). */
  dashLiveLatency: null,
  /** The last 200 client events: [ms since page start, name, url or stream]. */
  events: [],
};
window.dashpushStats = stats;
// Keeps the last 200 events: [ms since page start, name, what, detail].
const logEvent = (name, what, detail) => {
  if (stats.events.length >= 200) stats.events.shift();
  stats.events.push([Math.round(performance.now()), name, what, detail]);
};

const player = MediaPlayer().create();
player.updateSettings({
  debug: { logLevel: 1 },
  streaming: { abr: { initialBitrate: { video: 1000 } } },
});
if (bufferSeconds > 0) {
  player.updateSettings({
    streaming: { buffer: { stableBufferTime: bufferSeconds, bufferTimeAtTopQuality: bufferSeconds, bufferTimeAtTopQualityLongForm: bufferSeconds } },
  });
}
let handle = null;
// Live: the MPD's availabilityStartTime in ms since the epoch (undefined: not fetched yet).
let availabilityStart;
if (transport === 'ws') {
  const early = window.dashpushConnecting;
  handle = attachDashPush(player, {
    wsUrl,
    // The socket early.js opened while dash.js was loading, if it is for this URL.
    connecting: early && early.url === wsUrl ? early.connecting : undefined,
    directive: params.get('directive') || DEFAULT_MPD_DIRECTIVE,
    segmentDirective: next > 0 ? `urn:mpeg:dash:fdh:2016:push-next;${next}` : null,
    ...(Number.isFinite(liveMargin) ? { liveMarginSeconds: liveMargin } : {}),
    ...(Number.isFinite(liveGuard) ? { liveGuardMs: liveGuard } : {}),
    onEvent: (name, d) => {
      const what = d?.url ? new URL(d.url, location.href).pathname : (d?.streamId ?? d?.reason ?? '');
      logEvent(name, what, d?.pushed ?? d?.status ?? d?.streamId ?? null);
    },
  });
  window.dashpushClient = handle;
}

// Playback accounting: played seconds advance only with the media clock moving forward in
// small steps (a loop's jump back or a seek does not count), stalls are `waiting` events after
// the first frame that are not part of a seek.
let last = null;
let seeking = false;
const markFirstFrame = () => {
  if (stats.firstFrameMs === null) stats.firstFrameMs = Math.round(performance.now());
};
let stalledAt = null;
video.addEventListener('playing', () => {
  stats.playing = true;
  if (stalledAt !== null) {
    stats.stallMs += performance.now() - stalledAt;
    stalledAt = null;
  }
  if (video.currentTime > 0 || stats.firstFrameMs === null) markFirstFrame();
});
video.addEventListener('timeupdate', () => {
  const t = video.currentTime;
  if (t > 0) markFirstFrame();
  if (last !== null && !seeking) {
    const d = t - last;
    if (d > 0 && d < 1.5) {
      stats.played += d;
      if (stats.videoKbit !== null) stats.kbitSeconds += stats.videoKbit * d;
    }
  }
  last = t;
  stats.currentTime = t;
});
video.addEventListener('seeking', () => {
  seeking = true;
});
video.addEventListener('seeked', () => {
  seeking = false;
  last = video.currentTime;
});
video.addEventListener('waiting', () => {
  stats.playing = false;
  if (stats.firstFrameMs !== null && !seeking && !video.ended) {
    stats.stalls++;
    stalledAt = performance.now();
    // Where it stalled: the playhead and the end of what is buffered there (events list).
    const b = video.buffered;
    const end = b.length ? b.end(b.length - 1) : 0;
    logEvent('stall', video.currentTime.toFixed(2), end.toFixed(2));
  }
});
player.on(MediaPlayer.events.PLAYBACK_ENDED, () => {
  if (!loop || player.isDynamic()) return;
  stats.loops++;
  player.seek(0);
  resume(3);
});
// Play again after a loop's seek. dash.js may pause the element while it seeks, which rejects a
// play() already under way with an AbortError: that play was superseded, not failed, so it is
// logged and tried again once the seek is over (or shortly, a few times), unless playback has
// already gone on; any other rejection is a player error. Whether playback really went on is
// what the test's played-seconds check sees.
function resume(tries) {
  video.play().catch((e) => {
    if (e.name === 'AbortError' && tries > 0) {
      logEvent('play-superseded', video.currentTime.toFixed(2), e.message);
      const again = () => {
        if (video.paused) resume(tries - 1);
      };
      if (video.seeking) video.addEventListener('seeked', again, { once: true });
      else setTimeout(again, 100);
      return;
    }
    stats.errors.push(`play: ${e.message}`);
  });
}
player.on(MediaPlayer.events.QUALITY_CHANGE_RENDERED, (e) => {
  if (e.mediaType !== 'video') return;
  const kbit = e.newRepresentation?.bitrateInKbit ?? null;
  stats.videoKbit = kbit;
  if (stats.videoSwitches.length < 500) stats.videoSwitches.push([Math.round(performance.now()), kbit]);
});
player.on(MediaPlayer.events.ERROR, (e) => {
  stats.errors.push(JSON.stringify(e.error ?? e).slice(0, 300));
});

player.initialize(video, mpdUrl, true);
video.muted = true;

setInterval(() => {
  if (handle) Object.assign(stats, handle.counters());
  else stats.httpLoads = performance.getEntriesByType('resource').filter((r) => r.initiatorType === 'xmlhttprequest').length;
  for (const k of ['pushed', 'claimed', 'cancelled', 'wsLoads', 'httpLoads', 'stalls', 'firstFrameMs']) {
    $(k).textContent = stats[k] ?? '–';
  }
  if (player.isReady?.()) {
    const t = player.getAverageThroughput?.('video');
    if (Number.isFinite(t) && t > 0 && stats.throughput.length < 400 && t !== stats.throughput.at(-1)?.[1]) {
      stats.throughput.push([Math.round(performance.now()), Math.round(t)]);
    }
  }
  if (player.isReady?.() && player.isDynamic()) {
    const l = player.getCurrentLiveLatency?.();
    if (Number.isFinite(l)) stats.dashLiveLatency = l;
    if (availabilityStart === undefined) {
      availabilityStart = null;
      fetch(mpdUrl).then((r) => r.text()).then((text) => {
        const m = /availabilityStartTime="([^"]+)"/.exec(text);
        const t = m ? Date.parse(m[1]) : NaN;
        if (Number.isFinite(t)) availabilityStart = t;
      }).catch(() => { availabilityStart = undefined; });
    }
    if (availabilityStart && video.currentTime > 0) {
      stats.liveLatency = (Date.now() - availabilityStart) / 1000 - video.currentTime;
    }
  }
  $('played').textContent = stats.played.toFixed(1);
  $('currentTime').textContent = stats.currentTime.toFixed(1);
  const t = $('transport');
  t.textContent = handle ? handle.stats.transport : 'http (plain)';
  t.className = handle?.stats.transport === 'ws' ? 'ws' : 'http';
  $('status').textContent = stats.errors.length ? `errors: ${stats.errors.join('; ')}` : (stats.fallbackReason ? `fell back to HTTP: ${stats.fallbackReason}` : '');
}, 250);
