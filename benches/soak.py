#!/usr/bin/python3
"""Soak: one gateway under a steady mix of clients for minutes while the origin's faults are
switched on and off. On demand, not in CI (it takes --minutes):

  /usr/bin/python3 benches/soak.py [--minutes 10] [--bin target/release/dashpush]

Clients, all running for the whole soak:
  pull   4 HTTP/1.1 keep-alive clients: the VOD MPD, then one Representation's init and
         segments 100 ms apart, looping (a new connection after an error)
  push   2 HTTP/2 clients (python3-h2): the VOD MPD, then segments with push-next;2, each pushed
         segment taken instead of asked for; a new connection for each round
  live   2 HTTP/2 clients at the live edge of the built-in live stream: every 2 s the newest
         segment with push-next;1, the pushed one taken
  ws     2 WebSocket clients (clients/js/scripts/soak-ws.mjs, the project's JS client): the VOD
         stream with push-next;2 over the sub-protocol
Faults: every 60 s the origin turns, for 20 s, one of: 30 % of answers 503; 30 % of connections
reset unanswered; 1.5 s added latency. Every 5 s the gateway's RSS, CPU time and descriptors are
sampled from /proc.

A client error is explained when it is a 502/503/504, a reset push or a broken connection seen
during a fault window or up to 12 s after it (the origin read timeout is 10 s); anything else is
unexplained. The run passes when nothing is unexplained and memory is flat after the warm-up:
the median of RSS minus the cache's size (`dashpush_cache_size_bytes`, which grows to its
budget by design as live segments keep coming) over the last quarter is within 10 % + 4 MiB of
its median in the first minute after warm-up. Prints a JSON report with RSS and cache size per
minute; exit status 1 when it does not pass.
"""
import argparse
import http.client
import json
import os
import re
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from datetime import datetime

import h2.config
import h2.connection
import h2.events
import h2.settings

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from procs import Procs, exit_on_signals  # noqa: E402
from startup import free_port, wait_http  # noqa: E402

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(HERE)
FAULTS = ["error_rate=0.3", "reset_rate=0.3", "latency_ms=1500"]
EXPLAIN_AFTER = 12.0
VOD_SEGMENTS = 3   # the built-in VOD stream's segments per Representation

stop = threading.Event()
lock = threading.Lock()
windows = []      # (start, end, fault)
errors = []       # (t, client, kind, detail)
procs = Procs()   # every process started here (servers, the WebSocket clients' node)
counts = {"pull": 0, "push_requests": 0, "pushed": 0, "live_requests": 0, "live_pushed": 0}


def error(client, kind, detail=""):
    with lock:
        errors.append((time.time(), client, kind, str(detail)[:160]))


def count(key, n=1):
    with lock:
        counts[key] += n


def pull_client(port, rep):
    conn = None
    while not stop.is_set():
        try:
            if conn is None:
                conn = http.client.HTTPConnection("127.0.0.1", port, timeout=15)
            for k in range(-1, VOD_SEGMENTS + 1):
                if stop.is_set():
                    return
                path = {-1: "/vod/manifest.mpd", 0: f"/vod/init-{rep}.m4s"}.get(
                    k, f"/vod/chunk-{rep}-{k:05d}.m4s")
                conn.request("GET", path)
                r = conn.getresponse()
                r.read()
                count("pull")
                if r.status != 200:
                    error("pull", f"status {r.status}", path)
                time.sleep(0.1)
        except (OSError, http.client.HTTPException) as e:
            error("pull", "connection", e)
            conn = None
            time.sleep(0.2)


class H2:
    """A tolerant HTTP/2 client: one request at a time, pushes taken as they come."""

    def __init__(self, port):
        self.sock = socket.create_connection(("127.0.0.1", port), timeout=15)
        self.conn = h2.connection.H2Connection(
            h2.config.H2Configuration(client_side=True, header_encoding="utf-8"))
        self.conn.initiate_connection()
        self.conn.update_settings({h2.settings.SettingCodes.INITIAL_WINDOW_SIZE: 1 << 20})
        self.conn.increment_flow_control_window(1 << 22)
        self.sock.sendall(self.conn.data_to_send())

    def get(self, path, directive):
        """Requests path; returns (status, {pushed path: status or 'reset'}) once the request
        and every push it started have ended."""
        sid = self.conn.get_next_available_stream_id()
        headers = [(":method", "GET"), (":scheme", "http"), (":authority", "soak"),
                   (":path", path)]
        if directive:
            headers.append(("accept-push-policy", directive))
        self.conn.send_headers(sid, headers, end_stream=True)
        self.sock.sendall(self.conn.data_to_send())
        status, pushed, paths, open_ = None, {}, {}, {sid}
        while open_:
            data = self.sock.recv(1 << 16)
            if not data:
                raise OSError("connection closed")
            for ev in self.conn.receive_data(data):
                if isinstance(ev, h2.events.PushedStreamReceived):
                    paths[ev.pushed_stream_id] = dict(ev.headers)[":path"]
                    open_.add(ev.pushed_stream_id)
                elif isinstance(ev, h2.events.ResponseReceived):
                    st = int(dict(ev.headers)[":status"])
                    if ev.stream_id == sid:
                        status = st
                    elif ev.stream_id in paths:
                        pushed[paths[ev.stream_id]] = st
                elif isinstance(ev, h2.events.DataReceived):
                    self.conn.acknowledge_received_data(ev.flow_controlled_length, ev.stream_id)
                elif isinstance(ev, h2.events.StreamEnded):
                    open_.discard(ev.stream_id)
                elif isinstance(ev, h2.events.StreamReset):
                    open_.discard(ev.stream_id)
                    if ev.stream_id == sid:
                        status = "reset"
                    elif ev.stream_id in paths:
                        pushed[paths[ev.stream_id]] = "reset"
                elif isinstance(ev, h2.events.ConnectionTerminated):
                    raise OSError(f"GOAWAY {ev.error_code}")
            out = self.conn.data_to_send()
            if out:
                self.sock.sendall(out)
        return status, pushed

    def close(self):
        try:
            self.sock.close()
        except OSError:
            pass


def push_client(port, rep):
    c = None
    while not stop.is_set():
        try:
            if c is None:
                c = H2(port)
            # The MPD first: push-next follows the Representation in the MPD the gateway served.
            status, _ = c.get("/vod/manifest.mpd", None)
            if status != 200:
                error("push", f"status {status}", "mpd")
            k = 1
            while k <= VOD_SEGMENTS and not stop.is_set():
                status, pushed = c.get(f"/vod/chunk-{rep}-{k:05d}.m4s",
                                       "urn:mpeg:dash:fdh:2016:push-next;2")
                count("push_requests")
                if status != 200:
                    error("push", f"status {status}", k)
                ok = [p for p, s in pushed.items() if s == 200]
                for p, s in pushed.items():
                    if s != 200:
                        error("push", f"push {s}", p)
                count("pushed", len(ok))
                k += 1 + len(ok)   # what was pushed is not asked for
                time.sleep(0.1)
            # A new connection for the next round: a connection never gets a push twice.
            c.close()
            c = None
        except OSError as e:
            error("push", "connection", e)
            if c:
                c.close()
            c = None
            time.sleep(0.2)


def live_ast(port):
    c = http.client.HTTPConnection("127.0.0.1", port, timeout=5)
    c.request("GET", "/live/manifest.mpd")
    body = c.getresponse().read()
    ast = re.search(rb'availabilityStartTime="([^"]+)"', body).group(1).decode()
    return datetime.fromisoformat(ast.replace("Z", "+00:00")).timestamp()


def live_client(port, ast):
    c = None
    while not stop.is_set():
        try:
            if c is None:
                c = H2(port)
                status, _ = c.get("/live/manifest.mpd", None)
                if status != 200:
                    error("live", f"status {status}", "mpd")
            edge = int((time.time() - ast) / 2.0)
            if edge >= 1:
                status, pushed = c.get(f"/live/chunk-stream1-{edge:05d}.m4s",
                                       "urn:mpeg:dash:fdh:2016:push-next;1")
                count("live_requests")
                if status != 200:
                    error("live", f"status {status}", edge)
                for p, s in pushed.items():
                    if s != 200:
                        error("live", f"push {s}", p)
                count("live_pushed", sum(1 for s in pushed.values() if s == 200))
            # The next segment, a little after it is available.
            nxt = ast + (int((time.time() - ast) / 2.0) + 1) * 2.0 + 0.3
            stop.wait(max(0.0, nxt - time.time()))
        except OSError as e:
            error("live", "connection", e)
            if c:
                c.close()
            c = None
            time.sleep(0.2)


def ws_clients(port, seconds, out):
    script = os.path.join(ROOT, "clients", "js", "scripts", "soak-ws.mjs")
    p = procs.start(["node", script, f"ws://127.0.0.1:{port}/dashpush", str(seconds), "2"],
                    stdout=subprocess.PIPE, text=True)
    for line in p.stdout:
        msg = json.loads(line)
        if "summary" in msg:
            out.update(msg["summary"])
        else:
            with lock:
                errors.append((msg["t"], "ws", f"{msg['kind']} {msg.get('status')}",
                               msg.get("detail", "")))
    p.wait()


def faults(origin_port, seconds):
    """Every 60 s one fault for 20 s, in turn."""
    start = time.time()
    i = 0
    while not stop.wait(max(0.0, start + 60 * (i + 1) - 20 - time.time())):
        if time.time() - start > seconds - 20:
            return
        fault = FAULTS[i % len(FAULTS)]
        c = http.client.HTTPConnection("127.0.0.1", origin_port, timeout=5)
        c.request("GET", f"/_origin/faults?{fault}")
        c.getresponse().read()
        t0 = time.time()
        stop.wait(20)
        c = http.client.HTTPConnection("127.0.0.1", origin_port, timeout=5)
        c.request("GET", "/_origin/faults?latency_ms=0&error_rate=0&reset_rate=0")
        c.getresponse().read()
        with lock:
            windows.append((t0, time.time(), fault))
        i += 1


def cache_bytes(admin_port):
    """The gateway's dashpush_cache_size_bytes (0 if it cannot be read)."""
    try:
        c = http.client.HTTPConnection("127.0.0.1", admin_port, timeout=5)
        c.request("GET", "/metrics")
        text = c.getresponse().read().decode()
    except OSError:
        return 0
    m = re.search(r"^dashpush_cache_size_bytes (\S+)$", text, re.M)
    return int(float(m.group(1))) if m else 0


def usage(pid, admin_port):
    cache = cache_bytes(admin_port)
    with open(f"/proc/{pid}/status") as f:
        rss = next(int(l.split()[1]) for l in f if l.startswith("VmRSS:"))
    with open(f"/proc/{pid}/stat") as f:
        fields = f.read().rsplit(")", 1)[1].split()
    cpu = (int(fields[11]) + int(fields[12])) / 100.0
    fds = len(os.listdir(f"/proc/{pid}/fd"))
    return {"t": time.time(), "rss_kib": rss, "cpu_s": cpu, "fds": fds, "cache_kib": cache // 1024}


def explained(t, kind):
    """Faults make answers fail (5xx, resets, broken connections), never a 4xx."""
    if re.search(r"\b4\d\d\b", kind):
        return False
    return any(s - 1.0 <= t <= e + EXPLAIN_AFTER for s, e, _ in windows)


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--minutes", type=float, default=10)
    ap.add_argument("--warmup", type=float, default=2, help="minutes")
    ap.add_argument("--bin", default="target/release/dashpush")
    args = ap.parse_args()
    exit_on_signals()
    seconds = int(args.minutes * 60)
    op, gp, adm, cp = free_port(), free_port(), free_port(), free_port()
    cfg = tempfile.NamedTemporaryFile("w", suffix=".yaml", delete=False)
    # A small cache (1 MiB: the VOD stream is 128 KiB, live segments keep coming) with a short
    # segment TTL: it is full and evicting within the warm-up, so RSS growth after it would be
    # a leak, not the cache filling.
    cfg.write(f"origin: http://127.0.0.1:{op}\nlisten: 127.0.0.1:{gp}\nadmin: 127.0.0.1:{adm}\n"
              "cache: {max_bytes: 1048576, segment_ttl_ms: 60000}\n")
    cfg.close()
    samples = []
    ws_summary = {}
    try:
        procs.start([args.bin, "origin", "--listen", f"127.0.0.1:{op}",
                     "--control-listen", f"127.0.0.1:{cp}", "--demo", "vod"],
                    stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        wait_http(op, "/vod/manifest.mpd")
        gw = procs.start([args.bin, "run", "-c", cfg.name],
                         stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        wait_http(gp, "/vod/manifest.mpd")
        ast = live_ast(gp)
        threads = [threading.Thread(target=pull_client, args=(gp, f"stream{i % 3}"))
                   for i in range(4)]
        threads += [threading.Thread(target=push_client, args=(gp, f"stream{i}")) for i in range(2)]
        threads += [threading.Thread(target=live_client, args=(gp, ast)) for _ in range(2)]
        threads += [threading.Thread(target=ws_clients, args=(gp, seconds, ws_summary)),
                    threading.Thread(target=faults, args=(cp, seconds))]
        for t in threads:
            t.daemon = True
            t.start()
        start = time.time()
        while time.time() - start < seconds:
            samples.append(usage(gw.pid, adm))
            time.sleep(5)
        stop.set()
        for t in threads:
            t.join(timeout=30)
        samples.append(usage(gw.pid, adm))
    finally:
        stop.set()
        procs.stop_all()
        os.unlink(cfg.name)

    t0 = samples[0]["t"]
    warm = t0 + args.warmup * 60
    after = [s for s in samples if s["t"] >= warm]
    # What is not the cache: the cache fills up to its budget by design (live segments keep
    # coming), so flatness is judged on RSS minus the cache's weighted size.
    own = [(s["t"], s["rss_kib"] - s["cache_kib"]) for s in after]
    first = [v for t, v in own if t < warm + 60]
    last = [v for _, v in own[-max(1, len(own) // 4):]]
    base, end = statistics.median(first), statistics.median(last)
    flat = end <= base * 1.10 + 4 * 1024
    unexplained = [e for e in errors if not explained(e[0], e[2])]
    report = {
        "minutes": args.minutes,
        "binary": args.bin,
        "requests": counts,
        "ws": ws_summary,
        "faults": [{"start_s": round(s - t0, 1), "end_s": round(e - t0, 1), "fault": f}
                   for s, e, f in windows],
        "rss_minus_cache_mib": {"after_warmup": round(base / 1024, 1),
                                "last_quarter": round(end / 1024, 1)},
        "rss_max_mib": round(max(s["rss_kib"] for s in samples) / 1024, 1),
        "by_minute_mib": [
            {"rss": round(statistics.median(s["rss_kib"] for s in mine) / 1024, 1),
             "cache": round(statistics.median(s["cache_kib"] for s in mine) / 1024, 1)}
            for mine in ([s for s in samples if m * 60 <= s["t"] - t0 < (m + 1) * 60]
                         for m in range(int(args.minutes))) if mine],
        "cpu_s": round(samples[-1]["cpu_s"] - samples[0]["cpu_s"], 1),
        "fds": {"min": min(s["fds"] for s in samples), "max": max(s["fds"] for s in samples),
                "last": samples[-1]["fds"]},
        "errors": {"total": len(errors), "explained": len(errors) - len(unexplained),
                   "unexplained": len(unexplained)},
        "unexplained": [{"t_s": round(t - t0, 1), "client": c, "kind": k, "detail": d}
                        for t, c, k, d in unexplained[:20]],
        "rss_flat": flat,
        "pass": flat and not unexplained,
    }
    print(json.dumps(report, indent=2))
    sys.exit(0 if report["pass"] else 1)


if __name__ == "__main__":
    main()
