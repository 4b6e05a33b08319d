#!/usr/bin/env node
// Push against pull for a real player on constrained links (on demand; not part of the suite).
//
// The demo player (dash.js through clients/js) in headless Chromium plays a 60 s VOD with 2 s
// segments (video 600 and 200 kbit/s, audio 96 kbit/s, made with ffmpeg) through a userspace
// access link (clients/js/test/support/relay.js: one shared link of the given rate, 40 ms RTT),
// over the WebSocket sub-protocol with push (`next=2`) and over plain HTTP, in the same run, and
// reports per cell: stalls and stall time, first frame, average video bitrate played, pushed
// bytes and the pushed bytes the player used. Live mode plays the built-in live stream and
// reports how far behind the live edge the player sits.
//
//   node benches/abr.mjs                    # VOD: 650k, 1.5M, 5M and a 5M -> 650k step; 3 runs
//   RUNS=1 PLAY_SECONDS=30 CELLS=0 node benches/abr.mjs   # fewer runs, shorter, one cell
//   node benches/abr.mjs live               # live latency, open and constrained links
//   LIVE_HISTORY_MS=0 node benches/abr.mjs live   # a channel that starts with the player (default: on air 60 s)
//
// Needs: a built binary (DASHPUSH_BIN, default target/release/dashpush, else target/debug),
// `npm ci && npm run build:player` in clients/js, Debian's chromium and ffmpeg.
import { onStop } from './children.mjs'; // first: every child is stopped by PID on any way out
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
const { startGateway } = await import(pathToFileURL(path.join(clientDir, 'test/support/gateway.js')).href);
const { startRelay } = await import(pathToFileURL(path.join(clientDir, 'test/support/relay.js')).href);
const { abrContent: content } = await import(pathToFileURL(path.join(clientDir, 'test/support/content.js')).href);

if (!process.env.DASHPUSH_BIN) {
  const rel = path.join(repo, 'target/release/dashpush');
  process.env.DASHPUSH_BIN = existsSync(rel) ? rel : path.join(repo, 'target/debug/dashpush');
}
const runs = Number(process.env.RUNS || 3);
const playSeconds = Number(process.env.PLAY_SECONDS || 60);
const liveMode = process.argv[2] === 'live';
const executablePath = process.env.CHROMIUM || '/usr/bin/chromium';

const MBIT = 1000;
const cells = liveMode
  ? [
      { name: 'open (5 Mbit/s)', rate: 5 * MBIT },
      { name: '1.5 Mbit/s', rate: 1.5 * MBIT },
    ]
  : [
      { name: '650 kbit/s', rate: 650 },
      { name: '1.5 Mbit/s', rate: 1.5 * MBIT },
      { name: '5 Mbit/s', rate: 5 * MBIT },
      // dash.js buffers up to 30 s ahead at the top quality, which on an open link is the
      // whole rest of a 60 s stream by half-time: with 12 s (its stable buffer) the drop is
      // felt, and the player has to switch down (600 + 96 kbit/s does not fit in 650).
      { name: '5 Mbit/s -> 650 kbit/s at 30 s, 12 s buffer', rate: (s) => (s < playSeconds / 2 ? 5 * MBIT : 650), bufferSeconds: 12 },
    ];

async function one(cell, transport) {
  // Live: a channel that has been on air for a minute (as a viewer finds one), not one that
  // starts with the test.
  const gw = await startGateway({
    gatewayArgs: ['--static-dir', staticDir],
    dir: liveMode ? null : content(),
    originArgs: liveMode ? ['--live-history-ms', process.env.LIVE_HISTORY_MS || '60000'] : [],
  });
  const relay = await startRelay({ upstreamPort: Number(gw.gateway.split(':').pop()), rateKbit: cell.rate, rttMs: 40 });
  const browser = await chromium.launch({
    executablePath,
    headless: true,
    args: ['--autoplay-policy=no-user-gesture-required', '--mute-audio', '--no-sandbox', '--disable-background-networking', '--disable-web-security'],
    // children.mjs handles the signals: it closes the browser, relay and gateway, then exits.
    handleSIGINT: false,
    handleSIGTERM: false,
    handleSIGHUP: false,
  });
  const unregister = onStop(async () => {
    await browser.close().catch(() => {});
    await relay.close().catch(() => {});
    await gw.stop();
  });
  try {
    const page = await browser.newPage();
    // The page comes straight from the gateway; what the player loads (MPD, segments, the
    // socket) goes through the link on the relay's port (web security is off for this
    // cross-origin page).
    const media = `127.0.0.1:${relay.port}`;
    const q = new URLSearchParams({ mpd: `http://${media}${liveMode ? '/live/manifest.mpd' : '/manifest.mpd'}`, loop: '0', ws: `ws://${media}/dashpush` });
    if (process.env.DIRECTIVE) q.set('directive', process.env.DIRECTIVE);
    if (process.env.LIVE_MARGIN) q.set('liveMargin', process.env.LIVE_MARGIN);
    if (process.env.LIVE_GUARD) q.set('liveGuard', process.env.LIVE_GUARD);
    if (cell.bufferSeconds) q.set('bufferSeconds', String(cell.bufferSeconds));
    if (transport === 'http') q.set('transport', 'http');
    await page.goto(`${gw.httpBase}/player/index.html?${q}`);
    const t0 = Date.now();
    const deadline = t0 + (playSeconds + 60) * 1000;
    let s;
    for (;;) {
      await new Promise((r) => setTimeout(r, 500));
      s = await page.evaluate((v) => ({ ...window.dashpushStats, events: v ? window.dashpushStats.events : undefined }), !!process.env.VERBOSE);
      const ended = await page.evaluate(() => document.getElementById('video').ended);
      if (ended || s.played >= playSeconds - 0.5 || Date.now() > deadline) break;
    }
    if (process.env.VERBOSE) for (const e of s.events ?? []) console.error(`    ${e.join(' ')}`);
    if (process.env.VERBOSE && s.liveNeeded?.length) console.error('needed', JSON.stringify(s.liveNeeded), 'stalls', JSON.stringify(s.liveStalls), 'reserve', JSON.stringify(s.liveReserveMs));
    if (process.env.VERBOSE) console.error('switches', JSON.stringify(s.videoSwitches), 'throughput', JSON.stringify(s.throughput));
    const latencies = [];
    const dashLatencies = [];
    if (liveMode) {
      for (let i = 0; i < 20; i++) {
        const [l, d] = await page.evaluate(() => [window.dashpushStats.liveLatency, window.dashpushStats.dashLiveLatency]);
        if (Number.isFinite(l)) latencies.push(l);
        if (Number.isFinite(d)) dashLatencies.push(d);
        await new Promise((r) => setTimeout(r, 250));
      }
    }
    const mean = (xs) => (xs.length ? Number((xs.reduce((a, b) => a + b, 0) / xs.length).toFixed(2)) : null);
    return {
      stalls: s.stalls,
      stallMs: Math.round(s.stallMs),
      firstFrameMs: s.firstFrameMs,
      avgKbit: s.played > 0 ? Math.round(s.kbitSeconds / s.played) : null,
      played: Number(s.played.toFixed(1)),
      pushedBytes: s.pushedBytes ?? 0,
      usedBytes: s.claimedBytes ?? 0,
      discarded: s.discarded ?? 0,
      liveLatency: mean(latencies),
      dashLiveLatency: mean(dashLatencies),
      liveDelayMode: s.liveDelayMode,
      liveDelays: s.liveDelayHistory ? [...new Set(s.liveDelayHistory)] : undefined,
      // What the last pushed live segments needed at hand-over (ms past one segment behind the
      // edge, reserve included), and the reserves in force at the end.
      neededMs: s.liveNeeded?.length ? s.liveNeeded.map(([, ms]) => ms) : undefined,
      reserveMs: s.liveReserveMs,
      transportUsed: s.transport,
      fallbackReason: s.fallbackReason,
      errors: (s.errors ?? []).slice(0, 2),
      wallSeconds: Math.round((Date.now() - t0) / 1000),
    };
  } finally {
    unregister();
    await browser.close();
    await relay.close();
    await gw.stop();
  }
}

const results = [];
// CELLS=0,2 runs only those cells (by position).
const only = process.env.CELLS ? process.env.CELLS.split(',').map(Number) : null;
for (const [i, cell] of cells.entries()) {
  if (only && !only.includes(i)) continue;
  for (let r = 0; r < runs; r++) {
    for (const transport of (process.env.TRANSPORTS || 'ws,http').split(',')) {
      const out = await one(cell, transport);
      results.push({ cell: cell.name, transport, run: r + 1, ...out });
      console.log(JSON.stringify(results.at(-1)));
    }
  }
}
const outFile = path.join(repo, `target/bench-${liveMode ? 'live' : 'abr'}.json`);
writeFileSync(outFile, JSON.stringify(results, null, 1));
console.log(`results in ${outFile}`);
