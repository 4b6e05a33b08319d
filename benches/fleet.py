#!/usr/bin/python3
"""A fleet of gateways in front of one origin: origin requests per object and client start-up
for 1, 3 and 5 replicas, each without and with sharding (`fleet`).

  /usr/bin/python3 benches/fleet.py [--bin target/release/dashpush] [--clients 30] [--rtt-ms 50]

The origin adds --rtt-ms to every answer (a distant origin). The clients are spread evenly over
the replicas; each plays the start of the built-in VOD stream: the MPD, one Representation's
init and its three segments, one after the other (HTTP/1.1 keep-alive). Start-up is the time to
the last of them. Every configuration starts from cold caches (fresh processes). Prints a table;
nothing is asserted.
"""
import argparse
import http.client
import json
import os
import statistics
import sys
import subprocess
import tempfile
import threading
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from procs import Procs, exit_on_signals  # noqa: E402
from startup import free_port, wait_http  # noqa: E402

TOKEN = "bench-fleet-token-0123456789"


def client(port, rep, out):
    t0 = time.monotonic()
    c = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
    paths = ["/vod/manifest.mpd", f"/vod/init-stream{rep}.m4s"]
    paths += [f"/vod/chunk-stream{rep}-{k:05d}.m4s" for k in range(1, 4)]
    for p in paths:
        c.request("GET", p)
        r = c.getresponse()
        r.read()
        if r.status != 200:
            raise SystemExit(f"{p}: {r.status}")
    out.append(time.monotonic() - t0)


def run(binary, replicas, sharded, clients, rtt_ms):
    op, cp = free_port(), free_port()
    procs = Procs()
    files = []
    try:
        procs.start([binary, "origin", "--listen", f"127.0.0.1:{op}",
                     "--control-listen", f"127.0.0.1:{cp}", "--demo", "vod",
                     "--latency-ms", str(rtt_ms)],
                    stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        wait_http(cp, "/_origin/hits")
        ports = [free_port() for _ in range(replicas)]
        peers = ", ".join(f'"http://127.0.0.1:{p}"' for p in ports)
        for p in ports:
            f = tempfile.NamedTemporaryFile("w", suffix=".yaml", delete=False)
            f.write(f"origin: http://127.0.0.1:{op}\nlisten: 127.0.0.1:{p}\n"
                    f"admin: 127.0.0.1:{free_port()}\nprefetch: {{next: 0}}\n")
            if sharded and replicas > 1:
                f.write(f'fleet: {{self: "http://127.0.0.1:{p}", peers: [{peers}], '
                        f"token: {TOKEN}}}\n")
            f.close()
            files.append(f.name)
            procs.start([binary, "run", "-c", f.name, "--ready-without-origin"],
                        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        for p in ports:
            wait_http(p, "/vod/init-stream0.m4s")
        # The readiness probes above fetched one object per replica: start from the counts now.
        c = http.client.HTTPConnection("127.0.0.1", cp, timeout=5)
        c.request("GET", "/_origin/hits")
        before = json.loads(c.getresponse().read())["paths"]
        times = []
        threads = [threading.Thread(target=client,
                                    args=(ports[i % replicas], (i // replicas) % 3, times))
                   for i in range(clients)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        c = http.client.HTTPConnection("127.0.0.1", cp, timeout=5)
        c.request("GET", "/_origin/hits")
        after = json.loads(c.getresponse().read())["paths"]
        objects = [p for p in after if p.endswith(".m4s") and "chunk" in p]
        per_object = max(after[p] - before.get(p, 0) for p in objects)
        return per_object, statistics.median(times), max(times)
    finally:
        procs.stop_all()
        for f in files:
            os.unlink(f)


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--bin", default="target/release/dashpush")
    ap.add_argument("--clients", type=int, default=30)
    ap.add_argument("--rtt-ms", type=int, default=50)
    args = ap.parse_args()
    exit_on_signals()
    print(f"{args.clients} clients, origin +{args.rtt_ms} ms")
    print("| replicas | sharding | origin fetches per segment (max) | start-up median | start-up max |")
    print("|---|---|---|---|---|")
    for n in (1, 3, 5):
        for sharded in ((False,) if n == 1 else (False, True)):
            per, med, mx = run(args.bin, n, sharded, args.clients, args.rtt_ms)
            print(f"| {n} | {'yes' if sharded else 'no'} | {per} | {med * 1000:.0f} ms | "
                  f"{mx * 1000:.0f} ms |")


if __name__ == "__main__":
    main()
