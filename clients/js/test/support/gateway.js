// Starts the real dashpush binary for tests: the demo origin and a gateway in front of it, all on
// port 0, and reads the bound addresses from their logs.
import { spawn } from 'node:child_process';
import { existsSync } from 'node:fs';
import path from 'node:path';
import { fileURLToPath } from 'node:url';

const here = path.dirname(fileURLToPath(import.meta.url));
export const clientRoot = path.resolve(here, '../..');
export const repoRoot = path.resolve(clientRoot, '../..');
export const demoDir = path.join(repoRoot, 'crates/dashpush-origin/demo');

/** The binary: $DASHPUSH_BIN (relative to clients/js if relative), else target/debug/dashpush. */
export function binaryPath() {
  const env = process.env.DASHPUSH_BIN;
  return env ? path.resolve(clientRoot, env) : path.join(repoRoot, 'target/debug/dashpush');
}

// eslint-disable-next-line no-control-regex
const ANSI = /\x1b\[[0-9;]*m/g;

function start(args, wanted, { timeoutMs = 20_000, env = {} } = {}) {
  const bin = binaryPath();
  if (!existsSync(bin)) throw new Error(`dashpush binary not found at ${bin} (set DASHPUSH_BIN)`);
  const child = spawn(bin, args, { stdio: ['ignore', 'ignore', 'pipe'], env: { ...process.env, ...env } });
  let log = '';
  const found = {};
  return new Promise((resolve, reject) => {
    const timer = setTimeout(() => {
      child.kill('SIGKILL');
      reject(new Error(`dashpush ${args[0]} did not log ${wanted.join(', ')} in ${timeoutMs} ms:\n${log}`));
    }, timeoutMs);
    child.stderr.setEncoding('utf8');
    child.stderr.on('data', (d) => {
      if (log.length < 256 * 1024) log += d;
      for (const key of wanted) {
        if (found[key]) continue;
        const m = new RegExp(`listening ${key.replace(/[+.]/g, '\\$&')} on (\\S+)`).exec(log.replace(ANSI, ''));
        if (m) found[key] = m[1];
      }
      if (wanted.every((k) => found[k])) {
        clearTimeout(timer);
        resolve({ child, addrs: found, log: () => log });
      }
    });
    child.on('exit', (code, sig) => {
      clearTimeout(timer);
      reject(new Error(`dashpush ${args[0]} exited (${code ?? sig}) before it was ready:\n${log}`));
    });
  });
}

/**
 * Demo origin (or, with `dir`, the origin serving that directory) + gateway. Returns `{origin,
 * gateway, admin, httpBase, wsUrl, stop()}` where `origin`, `gateway`, `admin` are host:port.
 * `gatewayArgs` are added to `dashpush run`.
 */
export async function startGateway({ gatewayArgs = [], originArgs = [], dir = null } = {}) {
  const content = dir ? ['--dir', dir] : ['--demo', 'vod'];
  const origin = await start(['origin', '--listen', '127.0.0.1:0', ...content, ...originArgs], ['origin']);
  let gw;
  try {
    gw = await start(
      ['run', '--listen', '127.0.0.1:0', '--admin', '127.0.0.1:0', '--origin', `http://${origin.addrs.origin}`, ...gatewayArgs],
      ['http/1.1+h2c', 'admin'],
    );
  } catch (e) {
    origin.child.kill();
    throw e;
  }
  const gateway = gw.addrs['http/1.1+h2c'];
  const admin = gw.addrs.admin;
  // The gateway is listening; wait until it reports ready (it checks the origin once).
  for (let i = 0; i < 100; i++) {
    try {
      const r = await fetch(`http://${admin}/ready`);
      if (r.ok) break;
    } catch {
      // not yet
    }
    await new Promise((r) => setTimeout(r, 100));
  }
  const stop = async () => {
    for (const c of [gw.child, origin.child]) {
      if (c.exitCode === null && c.signalCode === null) {
        const exited = new Promise((r) => c.once('exit', r));
        c.kill('SIGTERM');
        await Promise.race([exited, new Promise((r) => setTimeout(r, 3000))]);
        if (c.exitCode === null && c.signalCode === null) c.kill('SIGKILL');
      }
    }
  };
  return {
    origin: origin.addrs.origin,
    gateway,
    admin,
    httpBase: `http://${gateway}`,
    wsUrl: `ws://${gateway}/dashpush`,
    gatewayLog: gw.log,
    stop,
  };
}

/** Parses Prometheus text into [{name, labels, value}]. */
export function parseMetrics(text) {
  const out = [];
  for (const line of text.split('\n')) {
    if (!line || line.startsWith('#')) continue;
    const m = /^([a-zA-Z_:][a-zA-Z0-9_:]*)(?:\{(.*)\})?\s+(\S+)/.exec(line);
    if (!m) continue;
    const labels = {};
    for (const l of (m[2] ?? '').matchAll(/([a-zA-Z_][a-zA-Z0-9_]*)="((?:[^"\\]|\\.)*)"/g)) labels[l[1]] = l[2];
    out.push({ name: m[1], labels, value: Number(m[3]) });
  }
  return out;
}

/** Sum of a metric over the series whose labels include `match`. */
export async function metricSum(admin, name, match = {}) {
  let text;
  for (let attempt = 1; ; attempt++) {
    try {
      text = await (await fetch(`http://${admin}/metrics`)).text();
      break;
    } catch (e) {
      if (attempt >= 3) throw new Error(`GET http://${admin}/metrics: ${e.message} (${e.cause?.message ?? ''})`);
      await new Promise((r) => setTimeout(r, 200));
    }
  }
  return parseMetrics(text)
    .filter((s) => s.name === name && Object.entries(match).every(([k, v]) => s.labels[k] === v))
    .reduce((a, s) => a + s.value, 0);
}
