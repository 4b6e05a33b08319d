// Every child process a Node benchmark starts, stopped by its PID on every way out: the normal
// end, an uncaught error, Ctrl-C (SIGINT), SIGTERM or SIGHUP. Import it first:
//
//   import { onStop } from './children.mjs';
//   const unregister = onStop(() => browser.close());   // async clean-up to run on a signal
//
// It wraps child_process.spawn (the CommonJS object and, through syncBuiltinESMExports, the
// `node:child_process` ES bindings, so the gateway helper of clients/js/test/support and
// playwright-core are covered without changes) and records each child's PID. On a signal it runs
// the registered clean-ups (at most 5 s), then exits with 128 + the signal number; on exit, any
// recorded child still running gets SIGTERM, then SIGKILL after 3 s, by its PID. Nothing is
// looked up or killed by name.
import childProcess from 'node:child_process';
import { readFileSync } from 'node:fs';
import { syncBuiltinESMExports } from 'node:module';

const children = new Map(); // pid -> ChildProcess
const cleanups = new Set();

const originalSpawn = childProcess.spawn;
childProcess.spawn = function spawn(...args) {
  const child = originalSpawn.apply(this, args);
  if (child.pid) {
    children.set(child.pid, child);
    child.once('exit', () => children.delete(child.pid));
  }
  return child;
};
syncBuiltinESMExports();

/** Registers an async clean-up to run on SIGINT/SIGTERM/SIGHUP; returns its unregister. */
export function onStop(fn) {
  cleanups.add(fn);
  return () => cleanups.delete(fn);
}

/** PIDs of the children started so far and still running. */
export function childPids() {
  return [...children.keys()];
}

function running(pid) {
  try {
    // A child that exited but was not reaped yet (the event loop is gone in 'exit') is a zombie.
    const state = readFileSync(`/proc/${pid}/stat`, 'utf8').split(') ').pop().split(' ')[0];
    return state !== 'Z';
  } catch {
    return false;
  }
}

function sleepSync(ms) {
  Atomics.wait(new Int32Array(new SharedArrayBuffer(4)), 0, 0, ms);
}

function stopChildrenSync() {
  let left = [...children.keys()].filter(running);
  for (const pid of left) {
    try {
      process.kill(pid, 'SIGTERM');
    } catch {
      // gone
    }
  }
  const deadline = Date.now() + 3000;
  while (left.length && Date.now() < deadline) {
    sleepSync(50);
    left = left.filter(running);
  }
  for (const pid of left) {
    try {
      process.kill(pid, 'SIGKILL');
    } catch {
      // gone
    }
  }
}

process.on('exit', stopChildrenSync);

let stopping = false;
for (const [sig, num] of [['SIGINT', 2], ['SIGTERM', 15], ['SIGHUP', 1]]) {
  process.on(sig, () => {
    if (stopping) process.exit(128 + num); // a second signal: stop waiting for clean-ups
    stopping = true;
    console.error(`${sig}: stopping the processes this benchmark started`);
    const all = Promise.allSettled([...cleanups].map((fn) => Promise.resolve().then(fn)));
    Promise.race([all, new Promise((r) => setTimeout(r, 5000))]).then(() => process.exit(128 + num));
  });
}
