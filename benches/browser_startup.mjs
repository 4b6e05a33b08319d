#!/usr/bin/env node
// Browser start-up benchmark: headless Chromium plays the demo VOD with the demo player
// (clients/js/dist/player) through the gateway, over the WebSocket sub-protocol (fast-start push
// on the MPD request, push-next on segments) or over plain HTTP/1.1 (?transport=http), with a
// userspace relay (benches/relay.py) in front of the gateway adding a round-trip time.
//
//   node benches/browser_startup.mjs [--runs 5] [--rtt 0,100] [--transports ws,http]
//                                    [--warmup 1] [--json FILE]
//
// Env: DASHPUSH_BIN (default target/release/dashpush, else target/debug/dashpush), CHROMIUM
// (default /usr/bin/chromium), PYTHON (default /usr/bin/python3).
// Needs: `npm ci` in clients/js (playwright-core, dashjs); dist/player is built when missing.
//
// Per RTT: a fresh origin (`dashpush origin --demo vod`) and gateway (`--static-dir` the player),
// the gateway's cache warmed (MPD, every init and media segment fetched once), then the relay.
// Per run: a new browser context (empty cache, HTTP cache disabled over CDP, no pooled
// connections), one page loading http://RELAY/player/?transport=..., closed at the first frame.
// ws and http runs alternate. Warm-up runs (one of each transport per RTT by default) are not
// counted.
//
// Times are read in the page on its own clock (performance.now(), 0 = navigation start) by an
// init script (instrument() below) that wraps WebSocket, getElementById and the page's
// window.dashpushClient handle; the player itself is not changed:
//   playerStart  player.js starts running (its first getElementById('video')): the page's HTML,
//                dash.js and our modules are loaded; on the ws path the socket is opened right after
//   mpdLoad      dash.js hands the MPD load to its loader: http: the MPD XHR's resource-timing
//                startTime (the stock loader sends at once); ws: the loader override's first read
//                of the handle's client (before it waits for the socket to open)
//   mpdSend      the MPD request leaves the page: http: = mpdLoad; ws: the WebSocket send of the
//                MPD request message (code 0x01), after the socket has opened
//   mpdEnd       http: the MPD XHR's responseEnd; ws: the first MPD received message (0x03)
//   firstFrame   window.dashpushStats.firstFrameMs (the video's first `playing`, or the first
//                timeupdate past 0)
// Reported (medians): mpd→frame = firstFrame - mpdLoad (the headline: from the player's MPD
// request to the first frame, whatever the transport does in between, opening the socket
// included), wire→frame = firstFrame - mpdSend (excludes the wait for the socket), player→frame,
// page→frame (= firstFrame, includes loading the page through the relay), the socket wait
// (mpdSend - mpdLoad), the MPD round trip (mpdEnd - mpdSend) and the socket's open time.
import { onStop } from './children.mjs'; // first: every child is stopped by PID on any way out
import { spawn, execFileSync } from 'node:child_process';
import { existsSync, writeFileSync } from 'node:fs';
import path from 'node:path';
import { fileURLToPath, pathToFileURL } from 'node:url';
import { createRequire } from 'node:module';

const here = path.dirname(fileURLToPath(import.meta.url));
const repo = path.resolve(here, '..');
const clientDir = path.join(repo, 'clients/js');
const staticDir = path.join(clientDir, 'dist/player');
const require = createRequire(path.join(clientDir, 'package.json'));
const { chromium } = require('playwright-core');

function arg(name, dflt) {
  const i = process.argv.indexOf(`--${name}`);
  return i > 0 && i + 1 < process.argv.length ? process.argv[i + 1] : dflt;
}
const runs = Number(arg('runs', 5));
const warmup = Number(arg('warmup', 1));
const rtts = arg('rtt', '0,100').split(',').map(Number);
const transports = arg('transports', 'ws,http').split(',');
const jsonOut = arg('json', null);
const executablePath = process.env.CHROMIUM || '/usr/bin/chromium';
const python = process.env.PYTHON || '/usr/bin/python3';
const timeoutMs = 30_000;
let navRetries = 0;

if (!process.env.DASHPUSH_BIN) {
  const release = path.join(repo, 'target/release/dashpush');
  process.env.DASHPUSH_BIN = existsSync(release) ? release : path.join(repo, 'target/debug/dashpush');
}
process.env.DASHPUSH_BIN = path.resolve(process.env.DASHPUSH_BIN);
const { startGateway } = await import(pathToFileURL(path.join(clientDir, 'test/support/gateway.js')).href);
if (!existsSync(path.join(staticDir, 'index.html'))) {
  execFileSync(process.execPath, [path.join(clientDir, 'scripts/build-player.mjs')], { stdio: 'inherit', cwd: clientDir });
}

/** Warms the gateway's cache: the MPD, then every Representation's init and media segments. */
async function warm(base) {
  const get = async (p) => {
    const r = await fetch(`${base}${p}`);
    if (!r.ok) throw new Error(`warm-up GET ${p}: ${r.status}`);
    return r.text();
  };
  const mpd = await get('/vod/manifest.mpd');
  const dur = (re) => {
    const m = re.exec(mpd);
    if (!m) return 0;
    const [, h, min, s] = /PT(?:([\d.]+)H)?(?:([\d.]+)M)?(?:([\d.]+)S)?/.exec(m[1]) ?? [];
    return Number(h ?? 0) * 3600 + Number(min ?? 0) * 60 + Number(s ?? 0);
  };
  const total = dur(/mediaPresentationDuration="([^"]+)"/);
  const t = /timescale="(\d+)" duration="(\d+)"/.exec(mpd);
  const segments = Math.ceil(total / (Number(t[2]) / Number(t[1])) - 1e-9);
  const reps = [...mpd.matchAll(/<Representation id="([^"]+)"/g)].map((m) => m[1]);
  let n = 1;
  for (const rep of reps) {
    await get(`/vod/init-stream${rep}.m4s`);
    n++;
    for (let i = 1; i <= segments; i++, n++) await get(`/vod/chunk-stream${rep}-${String(i).padStart(5, '0')}.m4s`);
  }
  return n;
}

function startRelay(upstream, rttMs) {
  const child = spawn(python, [path.join(here, 'relay.py'), '--listen', '127.0.0.1:0', '--upstream', upstream, '--rtt-ms', String(rttMs)], {
    stdio: ['ignore', 'ignore', 'pipe'],
  });
  let log = '';
  return new Promise((resolve, reject) => {
    const timer = setTimeout(() => reject(new Error(`relay did not start:\n${log}`)), 10_000);
    child.stderr.setEncoding('utf8');
    child.stderr.on('data', (d) => {
      log += d;
      const m = /listening relay on (\S+)/.exec(log);
      if (m) {
        clearTimeout(timer);
        resolve({
          addr: m[1],
          stop: () => new Promise((r) => {
            if (child.exitCode !== null) return r();
            child.once('exit', r);
            child.kill('SIGTERM');
          }),
        });
      }
    });
    child.on('exit', (code) => {
      clearTimeout(timer);
      reject(new Error(`relay exited (${code}):\n${log}`));
    });
  });
}

// Runs in the page before its scripts: page-clock timestamps of the transport's milestones.
function instrument() {
  const b = { playerStart: null, wsCreate: null, wsOpen: null, mpdLoad: null, mpdSend: null, mpdReceived: null };
  window.__bench = b;
  const now = () => performance.now();
  // ws path: the loader override (clients/js/src/dashjs.js) reads `handle.client` first when
  // dash.js hands it the MPD load (its `usable()`), before waiting for the socket; the page
  // exposes the handle as window.dashpushClient. The first read of that property is the moment
  // dash.js starts the MPD load. (The page's 250 ms counter refresh also reads it, later.)
  let handle;
  Object.defineProperty(window, 'dashpushClient', {
    configurable: true,
    get: () => handle,
    set(h) {
      handle = h;
      let client = h.client;
      Object.defineProperty(h, 'client', {
        configurable: true,
        enumerable: true,
        get() {
          if (b.mpdLoad === null) b.mpdLoad = now();
          return client;
        },
        set(c) {
          client = c;
        },
      });
    },
  });
  const getById = Document.prototype.getElementById;
  Document.prototype.getElementById = function (id) {
    if (id === 'video' && b.playerStart === null) b.playerStart = now();
    return getById.call(this, id);
  };
  const NativeWebSocket = window.WebSocket;
  const firstByte = (d) => {
    if (d instanceof ArrayBuffer) return d.byteLength ? new Uint8Array(d)[0] : null;
    if (ArrayBuffer.isView(d)) return d.byteLength ? new Uint8Array(d.buffer, d.byteOffset, 1)[0] : null;
    return null;
  };
  window.WebSocket = class extends NativeWebSocket {
    constructor(...a) {
      super(...a);
      if (b.wsCreate === null) b.wsCreate = now();
      this.addEventListener('open', () => {
        if (b.wsOpen === null) b.wsOpen = now();
      });
      this.addEventListener('message', (e) => {
        if (b.mpdReceived === null && firstByte(e.data) === 0x03) b.mpdReceived = now();
      });
    }

    send(data) {
      if (b.mpdSend === null && firstByte(data) === 0x01) b.mpdSend = now();
      return super.send(data);
    }
  };
}

async function runOnce(browser, relayAddr, transport) {
  const context = await browser.newContext();
  try {
    const page = await context.newPage();
    const cdp = await context.newCDPSession(page);
    await cdp.send('Network.enable');
    await cdp.send('Network.setCacheDisabled', { cacheDisabled: true });
    await page.addInitScript(instrument);
    const errors = [];
    page.on('pageerror', (e) => errors.push(e.message));
    const url = `http://${relayAddr}/player/?transport=${transport}`;
    try {
      await page.goto(url);
    } catch (e) {
      // Rare on this machine (one navigation in a few hundred): the page's first connection
      // answered with nothing. The page load is not what is measured: count it, load again.
      navRetries++;
      console.log(`  (navigation failed, loading again: ${e.message.split('\n')[0]})`);
      await page.goto(url);
    }
    try {
      await page.waitForFunction(() => window.dashpushStats && window.dashpushStats.firstFrameMs !== null, null, { timeout: timeoutMs, polling: 100 });
    } catch {
      const s = await page.evaluate(() => ({ ...window.dashpushStats, events: undefined })).catch(() => null);
      throw new Error(`${transport}: no first frame in ${timeoutMs / 1000} s: ${JSON.stringify(s)} ${errors.join('; ')}`);
    }
    const r = await page.evaluate(() => {
      const s = window.dashpushStats;
      const mpd = performance.getEntriesByType('resource').find((e) => e.initiatorType === 'xmlhttprequest' && e.name.includes('.mpd'));
      const nav = performance.getEntriesByType('navigation')[0];
      return {
        ...window.__bench,
        xhrMpdStart: mpd ? mpd.startTime : null,
        xhrMpdEnd: mpd ? mpd.responseEnd : null,
        firstFrame: s.firstFrameMs,
        domContentLoaded: nav ? nav.domContentLoadedEventEnd : null,
        // The page copies the client's counters into dashpushStats every 250 ms: read them here.
        stats: {
          ...(window.dashpushClient ? window.dashpushClient.counters() : { transport: 'http', wsLoads: 0, pushed: 0, claimed: 0 }),
          xhrLoads: performance.getEntriesByType('resource').filter((e) => e.initiatorType === 'xmlhttprequest').length,
          errors: s.errors.slice(0, 3),
        },
      };
    });
    const ws = transport === 'ws';
    // http: dash.js's stock XHR loader opens and sends the XHR as it is handed the load, so
    // both starts are the XHR's startTime.
    const mpdLoad = ws ? r.mpdLoad : r.xhrMpdStart;
    const mpdSend = ws ? r.mpdSend : r.xhrMpdStart;
    const mpdEnd = ws ? r.mpdReceived : r.xhrMpdEnd;
    if (ws && !(r.mpdLoad <= r.mpdSend)) throw new Error(`ws: MPD load ${r.mpdLoad} not before its send ${r.mpdSend}`);
    if (ws && (r.stats.transport !== 'ws' || r.stats.httpLoads !== 0 || r.stats.xhrLoads !== 0 || r.stats.pushed === 0)) {
      throw new Error(`ws run left the socket path: ${JSON.stringify(r.stats)}`);
    }
    if (!ws && (r.wsCreate !== null || r.stats.wsLoads)) throw new Error(`http run used a socket: ${JSON.stringify(r.stats)}`);
    if (mpdLoad === null || mpdSend === null || mpdEnd === null || r.playerStart === null) {
      throw new Error(`${transport}: milestones missing: ${JSON.stringify(r)}`);
    }
    return {
      mpdToFrame: r.firstFrame - mpdLoad,
      wireToFrame: r.firstFrame - mpdSend,
      playerToFrame: r.firstFrame - r.playerStart,
      pageToFrame: r.firstFrame,
      mpdRoundTrip: mpdEnd - mpdSend,
      playerToMpd: mpdLoad - r.playerStart,
      socketWait: mpdSend - mpdLoad,
      wsOpen: ws ? r.wsOpen - r.wsCreate : null,
      pushed: r.stats.pushed,
      claimed: r.stats.claimed,
      loads: ws ? r.stats.wsLoads : r.stats.xhrLoads,
    };
  } finally {
    await context.close();
  }
}

const median = (xs) => {
  const v = xs.filter((x) => x !== null).sort((a, b) => a - b);
  if (!v.length) return null;
  const m = v.length >> 1;
  return v.length % 2 ? v[m] : (v[m - 1] + v[m]) / 2;
};
const f1 = (x) => (x === null || x === undefined ? '—' : x.toFixed(1));

const started = Date.now();
const version = execFileSync(executablePath, ['--version'], { encoding: 'utf8', stdio: ['ignore', 'pipe', 'ignore'] }).trim();
console.log(`${version}; dashpush ${path.relative(repo, process.env.DASHPUSH_BIN)}; ${runs} runs (+${warmup} warm-up) per RTT and transport`);
const browser = await chromium.launch({
  executablePath,
  headless: true,
  args: ['--autoplay-policy=no-user-gesture-required', '--mute-audio', '--no-sandbox'],
  // children.mjs handles the signals: it closes the browser, then stops the relay and gateway.
  handleSIGINT: false,
  handleSIGTERM: false,
  handleSIGHUP: false,
});
onStop(() => browser.close());
const results = [];
try {
  for (const rtt of rtts) {
    const gw = await startGateway({ gatewayArgs: ['--static-dir', staticDir] });
    let relay;
    try {
      const warmed = await warm(gw.httpBase);
      relay = await startRelay(gw.gateway, rtt);
      const samples = Object.fromEntries(transports.map((t) => [t, []]));
      for (let i = 0; i < warmup + runs; i++) {
        for (const t of i % 2 ? [...transports].reverse() : transports) {
          const s = await runOnce(browser, relay.addr, t);
          if (i >= warmup) samples[t].push(s);
          if (process.env.VERBOSE) console.log(`  rtt ${rtt} ${t}${i < warmup ? ' (warm-up)' : ''}: ${JSON.stringify(s, (k, v) => (typeof v === 'number' ? Math.round(v * 10) / 10 : v))}`);
        }
      }
      for (const t of transports) {
        const s = samples[t];
        const med = (k) => median(s.map((x) => x[k]));
        results.push({
          rttMs: rtt,
          transport: t,
          runs: s.length,
          warmedResources: warmed,
          mpdToFrame: med('mpdToFrame'),
          wireToFrame: med('wireToFrame'),
          playerToFrame: med('playerToFrame'),
          pageToFrame: med('pageToFrame'),
          mpdRoundTrip: med('mpdRoundTrip'),
          playerToMpd: med('playerToMpd'),
          socketWait: med('socketWait'),
          wsOpen: med('wsOpen'),
          pushed: med('pushed'),
          loads: med('loads'),
          mpdToFrameAll: s.map((x) => Math.round(x.mpdToFrame * 10) / 10),
        });
      }
    } finally {
      if (relay) await relay.stop();
      await gw.stop();
    }
  }
} finally {
  await browser.close();
}

const cols = [
  ['mpd→frame', 'mpdToFrame'],
  ['wire→frame', 'wireToFrame'],
  ['player→frame', 'playerToFrame'],
  ['page→frame', 'pageToFrame'],
  ['player→mpd', 'playerToMpd'],
  ['sock wait', 'socketWait'],
  ['mpd rt', 'mpdRoundTrip'],
  ['ws open', 'wsOpen'],
];
console.log('');
console.log(`${'rtt ms'.padStart(6)} ${'transport'.padEnd(9)} ${cols.map(([h]) => h.padStart(12)).join(' ')}`);
for (const r of results) {
  console.log(`${String(r.rttMs).padStart(6)} ${r.transport.padEnd(9)} ${cols.map(([, k]) => f1(r[k]).padStart(12)).join(' ')}`);
}
const ratios = [];
for (const rtt of rtts) {
  const ws = results.find((r) => r.rttMs === rtt && r.transport === 'ws');
  const http = results.find((r) => r.rttMs === rtt && r.transport === 'http');
  if (!ws || !http) continue;
  const ratio = { rttMs: rtt };
  for (const k of ['mpdToFrame', 'wireToFrame', 'playerToFrame', 'pageToFrame']) ratio[k] = ws[k] / http[k];
  ratios.push(ratio);
  console.log(`rtt ${rtt} ms, ws/http: mpd→frame ${ratio.mpdToFrame.toFixed(2)}, wire→frame ${ratio.wireToFrame.toFixed(2)}, player→frame ${ratio.playerToFrame.toFixed(2)}, page→frame ${ratio.pageToFrame.toFixed(2)}`);
}
console.log(`(medians of ${runs} runs, ms on the page's clock; ${((Date.now() - started) / 1000).toFixed(0)} s in all${navRetries ? `; ${navRetries} page loads retried` : ''})`);
const out = { chromium: version, runs, warmup, results, ratios, navRetries, seconds: (Date.now() - started) / 1000 };
console.log(`BROWSER_STARTUP ${JSON.stringify(out)}`);
if (jsonOut) writeFileSync(jsonOut, `${JSON.stringify(out, null, 2)}\n`);
