#!/usr/bin/env node
// Browser test of the demo player: headless Chromium (playwright-core) plays the demo stream
// through the gateway and checks that pushes arrived over the WebSocket path and were used.
//
//   node tests/browser/play.mjs            # every mode below
//   node tests/browser/play.mjs MODE       # one mode only:
//     ws, http      the demo over the WebSocket path / plain HTTP (?transport=http)
//     fallback      the page is given a WebSocket URL nobody answers and must play over HTTP
//     abr-ws, abr-http   a 60 s stream (video 600 and 200 kbit/s, audio 96 kbit/s, made with
//                   ffmpeg) through a userspace link too slow for the top video Representation
//                   (ABR_KBIT, default 650 kbit/s, 40 ms RTT): dash.js must switch down over the
//                   socket as it does over HTTP (its throughput samples see the link)
//     live-ws       the live demo over the socket: dash.js is told to play one segment plus a
//                   margin behind the live edge (the margin set from how late after their
//                   availability, on dash.js's clock, the pushes were handed over), and does
//
// Env: DASHPUSH_BIN (the binary; default target/debug/dashpush), CHROMIUM (default
// /usr/bin/chromium), MPD (default /vod/manifest.mpd, looped; /live/manifest.mpd works too),
// PLAY_SECONDS (default 10), TIMEOUT_SECONDS (default 60).
// Needs: `npm ci` in clients/js (playwright-core, dashjs) and `npm run build:player` there
// (done here when dist/player is missing), and Debian's chromium.
import { existsSync } from 'node:fs';
import { execFileSync } from 'node:child_process';
import path from 'node:path';
import { fileURLToPath, pathToFileURL } from 'node:url';
import { createRequire } from 'node:module';

const here = path.dirname(fileURLToPath(import.meta.url));
const repo = path.resolve(here, '../..');
const clientDir = path.join(repo, 'clients/js');
const staticDir = path.join(clientDir, 'dist/player');
const require = createRequire(path.join(clientDir, 'package.json'));
const { chromium } = require('playwright-core');
const { startGateway, metricSum } = await import(pathToFileURL(path.join(clientDir, 'test/support/gateway.js')).href);

const ALL_MODES = ['ws', 'http', 'fallback', 'abr-ws', 'abr-http', 'live-ws'];
const modes = process.argv[2] ? [process.argv[2]] : ALL_MODES;
const { startRelay } = await import(pathToFileURL(path.join(clientDir, 'test/support/relay.js')).href);
const { abrContent } = await import(pathToFileURL(path.join(clientDir, 'test/support/content.js')).href);
const abrKbit = Number(process.env.ABR_KBIT || 650);
const executablePath = process.env.CHROMIUM || '/usr/bin/chromium';
const mpd = process.env.MPD || '/vod/manifest.mpd';
const playSeconds = Number(process.env.PLAY_SECONDS || 10);
const timeoutMs = Number(process.env.TIMEOUT_SECONDS || 60) * 1000;

if (!process.env.DASHPUSH_BIN) process.env.DASHPUSH_BIN = path.join(repo, 'target/debug/dashpush');
if (!existsSync(executablePath)) {
  console.error(`no Chromium at ${executablePath}: apt-get install -y chromium (or set CHROMIUM)`);
  process.exit(1);
}
if (!existsSync(path.join(staticDir, 'index.html'))) {
  execFileSync(process.execPath, [path.join(clientDir, 'scripts/build-player.mjs')], { stdio: 'inherit', cwd: clientDir });
}

let passed = 0;
let failed = 0;
const results = {};

async function runMode(mode) {
  const started = Date.now();
  const abr = mode.startsWith('abr-');
  const gw = await startGateway({ gatewayArgs: ['--static-dir', staticDir], dir: abr ? abrContent() : null });
  const live = mode.startsWith('live-');
  const base = mode.replace(/^(abr|live)-/, '');
  // ABR modes: what the player loads goes through a slow link.
  const relay = abr ? await startRelay({ upstreamPort: Number(gw.gateway.split(':').pop()), rateKbit: abrKbit, rttMs: 40, windowBytes: 16 * 1024 }) : null;
  const browser = await chromium.launch({
    executablePath,
    headless: true,
    args: ['--autoplay-policy=no-user-gesture-required', '--mute-audio', '--no-sandbox', ...(mode.startsWith('abr-') ? ['--disable-web-security'] : [])],
  });
  const consoleErrors = [];
  try {
    const page = await browser.newPage();
    page.on('console', (m) => {
      if (m.type() === 'error') consoleErrors.push(m.text());
    });
    page.on('pageerror', (e) => consoleErrors.push(`pageerror: ${e.message}`));
    // ABR: the page comes straight from the gateway; what the player loads (the MPD and its
    // segments, the socket) goes through the slow link on another port (the browser runs with
    // web security off for this cross-origin page).
    const media = relay ? `http://127.0.0.1:${relay.port}` : '';
    const q = new URLSearchParams({ mpd: live ? '/live/manifest.mpd' : abr ? `${media}/manifest.mpd` : mpd });
    if (abr) {
      q.set('loop', '0');
      q.set('ws', `ws://127.0.0.1:${relay.port}/dashpush`);
    }
    if (base === 'http') q.set('transport', 'http');
    if (mode === 'fallback') q.set('ws', 'ws://127.0.0.1:9/dashpush'); // discard port: refused
    const url = `${gw.httpBase}/player/index.html?${q}`;
    await page.goto(url);
    // Played seconds, not position: a looped VOD goes back to 0.
    // ABR: play until dash.js has switched the video down (or the time is up).
    const until = abr ? (s) => window.dashpushStats && window.dashpushStats.played >= s && window.dashpushStats.videoSwitches.some(([, k]) => k !== null && k < window.dashpushStats.videoSwitches[0][1]) : (s) => window.dashpushStats && window.dashpushStats.played >= s;
    try {
      await page.waitForFunction(until, playSeconds, { timeout: timeoutMs, polling: 250 });
    } catch (e) {
      const s = await page.evaluate(() => ({ ...window.dashpushStats, events: undefined })).catch(() => null);
      if (s) s.errors = [...new Set(s.errors)].slice(0, 5);
      throw new Error(`did not play ${playSeconds} s in ${timeoutMs / 1000} s: ${JSON.stringify(s)}\nconsole: ${[...new Set(consoleErrors)].slice(0, 5).join('\n')}`);
    }
    const s = await page.evaluate(() => ({ ...window.dashpushStats }));
    const promises = await metricSum(gw.admin, 'dashpush_push_promises_total', { transport: 'ws' });
    const claimed = await metricSum(gw.admin, 'dashpush_push_claimed_total', { transport: 'ws' });
    const checks = [];
    const check = (ok, what) => checks.push([ok, what]);
    // The constrained link (ABR) and live over plain HTTP stall at times (dash.js's defaults on a
    // channel that starts with the test); the benchmark (benches/abr.mjs) compares their
    // stalls. Live over the socket plays near the edge, and must not stall: the margin covers
    // what each pushed segment needs when handed over (it stalled 4 times in 10 s when it
    // counted only how late the pushes came).
    if (!abr && (!live || base === 'ws')) check(s.stalls === 0, `no stall after the first frame (stalls=${s.stalls})`);
    if (abr) {
      const kbits = s.videoSwitches.map(([, k]) => k);
      check(kbits.length > 1 && Math.min(...kbits) < kbits[0], `dash.js switched the video down on a ${abrKbit} kbit/s link (${kbits.join(' -> ')} kbit/s)`);
    }
    if (live) {
      // The policy is applied when the live MPD arrives over the socket; whether it holds for the
      // whole run depends on pushes arriving in time (the benchmark measures the latency).
      check(s.liveDelayApplied === 2.25, `told dash.js to play one segment + 0.25 s behind the live edge to start with (${s.liveDelayApplied} s; now ${s.liveDelayMode})`);
      // Then driven by what the pushed segments needed when handed over: above the floor,
      // under the defaults (two segments).
      const delays = s.liveDelayHistory ?? [];
      check(delays.length > 0 && delays.every((d) => d > 2 && d <= 4), `live delays set from the pushes: ${delays.join(', ')} s`);
      // The needs were read from dash.js in the browser (its live latency and buffer levels),
      // and the delay in force covers the largest recent one.
      const need = (s.liveNeeded ?? []).map(([, ms]) => ms);
      check(need.length > 0 && need.every((ms) => Number.isFinite(ms) && Math.abs(ms) < 2000), `pushed live segments' needs at hand-over: ${need.slice(-8).join(', ')} ms`);
      if (s.liveDelayMode === 'push') {
        const floor = 2 + Math.max(...need.slice(-8)) / 1000;
        check(s.liveDelaySeconds >= floor - 0.001, `the live delay (${s.liveDelaySeconds} s) covers the largest recent need (${floor.toFixed(3)} s)`);
      }
      check(s.liveLatency !== null, `plays live (latency ${s.liveLatency?.toFixed?.(2)} s)`);
    }
    check(s.firstFrameMs !== null, `first frame at ${s.firstFrameMs} ms`);
    check(s.errors.length === 0, `no player error (${s.errors.join('; ')})`);
    if (base === 'ws') {
      check(s.transport === 'ws', `stayed on the WebSocket path (${s.transport}${s.fallbackReason ? `: ${s.fallbackReason}` : ''})`);
      check(s.pushed > 0, `pushes arrived (pushed=${s.pushed})`);
      check(s.claimed > 0, `pushes were claimed by dash.js (claimed=${s.claimed})`);
      check(s.wsLoads > 0 && s.httpLoads === 0, `loads over the socket (ws=${s.wsLoads}, http=${s.httpLoads})`);
      check(promises > 0, `gateway metric push promises{transport="ws"} = ${promises}`);
      check(claimed > 0, `gateway metric push claimed{transport="ws"} = ${claimed}`);
    } else if (mode === 'fallback') {
      check(s.transport === 'http' && !!s.fallbackReason, `fell back to plain HTTP (${s.fallbackReason})`);
      check(s.httpLoads > 0 && s.wsLoads === 0, `loads over plain HTTP (http=${s.httpLoads}, ws=${s.wsLoads})`);
      check(promises === 0, `no WebSocket pushes (promises=${promises})`);
    } else {
      check(promises === 0, `no WebSocket pushes on the plain HTTP path (promises=${promises})`);
    }
    const ok = checks.every(([c]) => c);
    // A failed mode prints the player's event log: what CI shows is all there is to go on.
    if (process.env.VERBOSE || !ok) for (const e of s.events ?? []) console.log(`    ${e.join(' ')}`);
    for (const [c, what] of checks) console.log(`  ${c ? 'ok  ' : 'FAIL'} ${what}`);
    results[mode] = { firstFrameMs: s.firstFrameMs, played: Number(s.played.toFixed(1)), stalls: s.stalls, pushed: s.pushed, claimed: s.claimed, discarded: s.discarded, loops: s.loops, videoKbit: s.videoKbit, liveLatency: s.liveLatency, seconds: (Date.now() - started) / 1000 };
    console.log(`${ok ? 'ok' : 'not ok'} - ${mode}: first frame ${s.firstFrameMs} ms, played ${s.played.toFixed(1)} s of ${q.get("mpd")} in ${((Date.now() - started) / 1000).toFixed(1)} s`);
    if (ok) passed++;
    else failed++;
  } finally {
    await browser.close();
    await relay?.close();
    await gw.stop();
  }
}

for (const mode of modes) {
  if (!ALL_MODES.includes(mode)) {
    console.error(`unknown mode ${mode} (${ALL_MODES.join(', ')})`);
    process.exit(2);
  }
  try {
    await runMode(mode);
  } catch (e) {
    failed++;
    console.log(`not ok - ${mode}: ${e.message}`);
    if (process.env.VERBOSE) console.log(e.stack);
  }
}
if (results.ws && results.http) {
  console.log(`first frame: ws ${results.ws.firstFrameMs} ms, http ${results.http.firstFrameMs} ms`);
}
console.log(`BROWSER_RESULTS ${JSON.stringify(results)}`);
console.log(`${passed} passed, ${failed} failed`);
process.exit(failed ? 1 : 0);
