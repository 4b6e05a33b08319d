#!/usr/bin/python3
"""A long live push session: one HTTP/2 request at the live edge of the built-in live origin
with push-time;T, then every following segment must arrive unasked, in order, once.

  /usr/bin/python3 benches/live_session.py --minutes 4 [--bin target/release/dashpush]

The gateway is configured for long cycles (push.live_horizon_ms and push.max_time_ms at 600 s,
256 promises per request); the origin uses its default 2 s segments. Prints how many segments
arrived, whether in order and once each, and the median/max availability-to-arrival delay.
"""
import argparse
import os
import re
import statistics
import subprocess
import sys
import tempfile
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from live import ast_of  # noqa: E402
from procs import Procs, exit_on_signals  # noqa: E402
from startup import H2Client, free_port, wait_http  # noqa: E402

SEG = 2.0


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--minutes", type=float, default=4)
    ap.add_argument("--bin", default="target/release/dashpush")
    args = ap.parse_args()
    exit_on_signals()
    op, gp, adm = free_port(), free_port(), free_port()
    cfg = tempfile.NamedTemporaryFile("w", suffix=".yaml", delete=False)
    cfg.write(f"origin: http://127.0.0.1:{op}\nlisten: 127.0.0.1:{gp}\nadmin: 127.0.0.1:{adm}\n"
              "push: {max_time_ms: 600000, live_horizon_ms: 600000, max_promises_per_request: 256,"
              " max_in_flight: 256, max_bytes_in_flight: 1073741824}\n")
    cfg.close()
    procs = Procs()
    try:
        procs.start([args.bin, "origin", "--listen", f"127.0.0.1:{op}", "--demo", "live"],
                    stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        wait_http(op, "/live/manifest.mpd")
        procs.start([args.bin, "run", "-c", cfg.name],
                    stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        wait_http(gp, "/live/manifest.mpd")
        ast = ast_of(gp)
        while time.time() < ast + 2 * SEG:
            time.sleep(0.1)
        seconds = int(args.minutes * 60)
        c = H2Client(gp, 16 << 20)
        mpd = c.request("/live/manifest.mpd")
        while mpd not in c.pump():
            pass
        edge = int((time.time() - ast) / SEG)
        parent = c.request(f"/live/chunk-stream0-{edge:05d}.m4s",
                           f"urn:mpeg:dash:fdh:2016:push-time;{seconds}")
        expected = None
        arrived = []
        delays = []
        start = time.time()
        while True:
            for sid in c.pump():
                if sid == parent:
                    expected = len(c.pushed)
                    print(f"requested segment {edge}; {expected} pushes promised", flush=True)
                    continue
                n = int(re.search(r"-(\d+)\.m4s$", c.pushed[sid]).group(1))
                arrived.append(n)
                delays.append(time.time() - (ast + n * SEG))
            if expected is not None and len(arrived) >= expected:
                break
            if time.time() - start > seconds + 30:
                break
        in_order = arrived == sorted(arrived) and arrived == list(range(edge + 1, edge + 1 + len(arrived)))
        once = len(set(arrived)) == len(arrived)
        print(f"{len(arrived)} of {expected} segments arrived unasked over {time.time() - start:.0f} s;"
              f" in order: {in_order}; each once: {once};"
              f" availability-to-arrival median {statistics.median(delays) * 1000:.1f} ms,"
              f" max {max(delays) * 1000:.1f} ms")
    finally:
        procs.stop_all()
        os.unlink(cfg.name)


if __name__ == "__main__":
    main()
