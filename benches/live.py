#!/usr/bin/python3
"""Live delivery benchmark: from a live segment's availability at the origin to its complete
arrival at the client, pull vs push, through a userspace relay adding an RTT.

  /usr/bin/python3 benches/live.py [--rtt 0,100] [--segments 10] [--bin target/release/dashpush]

The built-in live origin runs with 1 s segments (availability = availabilityStartTime + end of
the segment, on this machine's clock, which every party shares).
  a  pull, the way dash.js follows a dynamic MPD: it refreshes the MPD every
     minimumUpdatePeriod (1 s) on a timer unrelated to the segment grid (samples spread over
     the timer's phase) and then fetches the segment that became available (HTTP/1.1
     keep-alive through the gateway)
  b  push: one HTTP/2 request for the live edge with push-next;K; every following segment
     arrives unasked as soon as it is available
Prints the median and p95 of (arrival - availability - one-way delay) per client and RTT, and
the ratio (b)/(a) of the medians. Nothing here is asserted.
"""
import argparse
import os
import re
import statistics
import subprocess
import sys
import time
from datetime import datetime

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from procs import Procs, exit_on_signals  # noqa: E402
from startup import H2Client, Relay, connect, free_port, h1_get, wait_http  # noqa: E402

SEG = 1.0


def ast_of(port):
    s = connect(port)
    s.sendall(b"GET /live/manifest.mpd HTTP/1.1\r\nHost: bench\r\n\r\n")
    buf = b""
    while b"</MPD>" not in buf:
        buf += s.recv(65536)
    s.close()
    ast = re.search(rb'availabilityStartTime="([^"]+)"', buf).group(1).decode()
    return datetime.fromisoformat(ast.replace("Z", "+00:00")).timestamp()


def available_at(ast, n):
    return ast + n * SEG


def pull(port, ast, count):
    """dash.js-like: the MPD is refreshed every minimumUpdatePeriod (1 s) on a timer that has
    no relation to the segment grid; after each refresh the player fetches the segment that
    became available. Each sample uses a different timer phase, spread evenly over the period
    ((k + 0.5) / count), so the median is that of a player with a random phase."""
    s = connect(port)
    delays = []
    for k in range(count):
        phase = (k + 0.5) / count * SEG
        # The next refresh at this phase after a segment boundary.
        now = time.time()
        boundary = ast + (int((now - ast) / SEG) + 1) * SEG
        time.sleep(max(0.0, boundary + phase - time.time()))
        h1_get(s, "/live/manifest.mpd")
        edge = int((time.time() - ast) / SEG)
        h1_get(s, f"/live/chunk-stream0-{edge:05d}.m4s")
        delays.append(time.time() - available_at(ast, edge))
    s.close()
    return delays


def push(port, ast, count):
    # The gateway grants live pushes within its 10 s horizon (push.live_horizon_ms).
    count = min(count, 9)
    c = H2Client(port, 16 << 20)
    mpd = c.request("/live/manifest.mpd")
    while mpd not in c.pump():
        pass
    edge = int((time.time() - ast) / SEG)
    c.request(f"/live/chunk-stream0-{edge:05d}.m4s",
              f"urn:mpeg:dash:fdh:2016:push-next;{count}")
    delays = {}
    while len(delays) < count:
        for sid in c.pump():
            path = c.pushed.get(sid)
            if path:
                n = int(re.search(r"-(\d+)\.m4s$", path).group(1))
                delays[n] = time.time() - available_at(ast, n)
    # Segments already available when the request was made are not live pushes: skip them.
    return [d for n, d in sorted(delays.items()) if n > edge + 1] or list(delays.values())


def p95(xs):
    xs = sorted(xs)
    return xs[min(len(xs) - 1, int(round(0.95 * (len(xs) - 1))))]


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--rtt", default="0,100")
    ap.add_argument("--segments", type=int, default=9, help="per client (push: at most 9)")
    ap.add_argument("--bin", default="target/release/dashpush")
    args = ap.parse_args()
    exit_on_signals()
    op, gp, adm = free_port(), free_port(), free_port()
    procs = Procs()
    try:
        procs.start([args.bin, "origin", "--listen", f"127.0.0.1:{op}", "--demo", "live",
                     "--live-segment-ms", "1000"],
                    stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        wait_http(op, "/live/manifest.mpd")
        procs.start([args.bin, "run", "--listen", f"127.0.0.1:{gp}", "--admin",
                     f"127.0.0.1:{adm}", "--origin", f"http://127.0.0.1:{op}",
                     "--prefetch-next", "0"],
                    stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        wait_http(gp, "/live/manifest.mpd")
        ast = ast_of(gp)
        while time.time() < ast + 2 * SEG:
            time.sleep(0.1)
        relay = Relay(gp)
        rows = []
        for rtt_ms in [int(x) for x in args.rtt.split(",")]:
            relay.rtt = rtt_ms / 1000
            one_way = rtt_ms / 2000
            a = [d - one_way for d in pull(relay.port, ast, args.segments)]
            b = [d - one_way for d in push(relay.port, ast, args.segments)]
            rows.append((rtt_ms, a, b))
        print(f"{'rtt ms':>6} {'pull median':>12} {'pull p95':>9} {'push median':>12} {'push p95':>9}"
              f" {'push/pull':>10}")
        for rtt_ms, a, b in rows:
            ma, mb = statistics.median(a) * 1000, statistics.median(b) * 1000
            print(f"{rtt_ms:>6} {ma:>12.1f} {p95(a) * 1000:>9.1f} {mb:>12.1f} {p95(b) * 1000:>9.1f}"
                  f" {mb / ma:>10.3f}")
        print("(ms from availability at the origin to complete arrival, minus the one-way delay;"
              f" {args.segments} segments of 1 s each)")
    finally:
        procs.stop_all()


if __name__ == "__main__":
    main()
