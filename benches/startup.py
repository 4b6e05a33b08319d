#!/usr/bin/python3
"""Start-up benchmark: how long a player needs for MPD + init + first 2 segments of one video and
one audio Representation, through a userspace relay that adds a round-trip time.

  /usr/bin/python3 benches/startup.py [--rtt 0,50,100,200] [--runs 5] [--bin target/release/dashpush]
                                      [--svg docs/startup.svg]
  /usr/bin/python3 benches/startup.py --prefetch [--runs 5]   # the pull prefetcher, origin +100 ms

Clients (all measured from the start of the TCP connect to the last byte of the last resource):
  a  HTTP/1.1 straight to the origin, the way a player fetches: the MPD, then per track (video on
     the first connection, audio on a second) init, segment 1, segment 2, one after the other
  b  HTTP/2 through dashpush, no directive: the same request pattern, both tracks on one connection
  c  HTTP/2 through dashpush with push-fast-start;{"segments":2} on the MPD request: one request
  c16 the same with 16 MiB stream and connection windows (c uses the 64 KiB defaults)
Floor: one emulated TCP handshake + one request round trip (+ bytes / bandwidth, ~0 on loopback).

The kernel has no netem here, so the relay delays every chunk by RTT/2 in each direction, and
holds a new connection's first bytes one extra RTT to stand for the TCP handshake it cannot delay.
Needs python3-h2 (Debian) and a release build of dashpush. Prints medians and ratios to (a) and to
the floor; writes an SVG plot when --svg is given. Nothing here is asserted.
"""
import argparse
import asyncio
import json
import os
import socket
import statistics
import subprocess
import sys
import threading
import time

import h2.config
import h2.connection
import h2.events
import h2.settings

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from procs import Procs, exit_on_signals, free_port  # noqa: E402,F401 (free_port: re-exported)

VIDEO, AUDIO = "1", "2"  # the demo's fast-start default picks these (see `dashpush plan`)
FAST_START = 'urn:mpeg:dash:fdh:2016:push-fast-start;{"segments":2}'


def track(rep):
    return [f"/vod/init-stream{rep}.m4s", f"/vod/chunk-stream{rep}-00001.m4s",
            f"/vod/chunk-stream{rep}-00002.m4s"]


# ---------------------------------------------------------------- relay
class Relay:
    """TCP relay on its own thread and event loop, delaying each direction by rtt/2."""

    def __init__(self, upstream_port):
        self.upstream_port = upstream_port
        self.rtt = 0.0
        self.loop = asyncio.new_event_loop()
        self.port = None
        ready = threading.Event()
        threading.Thread(target=self._run, args=(ready,), daemon=True).start()
        ready.wait()

    def _run(self, ready):
        asyncio.set_event_loop(self.loop)

        async def start():
            server = await asyncio.start_server(self._client, "127.0.0.1", 0)
            self.port = server.sockets[0].getsockname()[1]
            ready.set()
        self.loop.run_until_complete(start())
        self.loop.run_forever()

    async def _client(self, creader, cwriter):
        try:
            ureader, uwriter = await asyncio.open_connection("127.0.0.1", self.upstream_port)
        except OSError:
            cwriter.close()
            return
        for w in (cwriter, uwriter):
            w.get_extra_info("socket").setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        half = self.rtt / 2
        await asyncio.gather(self._pump(creader, uwriter, half, self.rtt),
                             self._pump(ureader, cwriter, half, 0.0))

    async def _pump(self, reader, writer, delay, first_extra):
        queue = asyncio.Queue()

        async def deliver():
            while True:
                due, data = await queue.get()
                wait = due - time.monotonic()
                if wait > 0:
                    await asyncio.sleep(wait)
                if data is None:
                    try:
                        writer.close()
                    except Exception:
                        pass
                    return
                writer.write(data)
                try:
                    await writer.drain()
                except Exception:
                    return
        task = asyncio.ensure_future(deliver())
        extra = first_extra
        while True:
            try:
                data = await reader.read(1 << 16)
            except Exception:
                data = b""
            queue.put_nowait((time.monotonic() + delay + extra, data or None))
            extra = 0.0
            if not data:
                break
        await task


# ---------------------------------------------------------------- clients
def connect(port):
    s = socket.create_connection(("127.0.0.1", port))
    s.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    return s


def h1_get(sock, path):
    sock.sendall(f"GET {path} HTTP/1.1\r\nHost: bench\r\n\r\n".encode())
    buf = b""
    while b"\r\n\r\n" not in buf:
        buf += sock.recv(65536)
    head, body = buf.split(b"\r\n\r\n", 1)
    assert head.startswith(b"HTTP/1.1 200"), head
    lengths = [int(l.split(b":")[1]) for l in head.split(b"\r\n")
               if l.lower().startswith(b"content-length:")]
    if lengths:
        while len(body) < lengths[0]:
            body += sock.recv(65536)
        return len(body)
    # Chunked (a streamed cache miss): read to the last chunk.
    while not body.endswith(b"0\r\n\r\n"):
        body += sock.recv(65536)
    return len(body)


def client_a(port):
    t0 = time.monotonic()
    s1 = connect(port)
    h1_get(s1, "/vod/manifest.mpd")
    def run(sock, rep):
        for p in track(rep):
            h1_get(sock, p)
    t = threading.Thread(target=lambda: run(connect(port), AUDIO))
    t.start()
    run(s1, VIDEO)
    t.join()
    return time.monotonic() - t0


class H2Client:
    def __init__(self, port, window):
        self.sock = connect(port)
        self.conn = h2.connection.H2Connection(
            h2.config.H2Configuration(client_side=True, header_encoding="utf-8"))
        self.conn.initiate_connection()
        # window: None (the defaults), bytes for every stream and the connection, or a
        # (stream, connection) pair, either None for the default.
        stream, conn = window if isinstance(window, tuple) else (window, window)
        if stream:
            self.conn.update_settings({h2.settings.SettingCodes.INITIAL_WINDOW_SIZE: stream})
        if conn:
            self.conn.increment_flow_control_window(conn)
        self.sock.sendall(self.conn.data_to_send())
        self.done = set()
        self.pushed = {}

    def request(self, path, directive=None):
        sid = self.conn.get_next_available_stream_id()
        h = [(":method", "GET"), (":scheme", "http"), (":authority", "bench"), (":path", path)]
        if directive:
            h.append(("accept-push-policy", directive))
        self.conn.send_headers(sid, h, end_stream=True)
        self.sock.sendall(self.conn.data_to_send())
        return sid

    def pump(self):
        data = self.sock.recv(1 << 16)
        if not data:
            raise SystemExit("connection closed")
        ended = []
        for ev in self.conn.receive_data(data):
            if isinstance(ev, h2.events.DataReceived):
                self.conn.acknowledge_received_data(ev.flow_controlled_length, ev.stream_id)
            elif isinstance(ev, h2.events.PushedStreamReceived):
                self.pushed[ev.pushed_stream_id] = dict(ev.headers)[":path"]
            elif isinstance(ev, h2.events.StreamEnded):
                ended.append(ev.stream_id)
            self.on_event(ev)
        self.sock.sendall(self.conn.data_to_send())
        return ended

    def on_event(self, ev):
        """Called for every event after the bookkeeping above; benches/startup_matrix.py
        overrides it to record statuses, lengths and resets."""
        if isinstance(ev, h2.events.StreamReset):
            raise SystemExit(f"stream {ev.stream_id} reset")


def client_b(port):
    t0 = time.monotonic()
    c = H2Client(port, None)
    mpd = c.request("/vod/manifest.mpd")
    while mpd not in c.pump():
        pass
    queues = {rep: list(track(rep)) for rep in (VIDEO, AUDIO)}
    inflight = {c.request(queues[rep].pop(0)): rep for rep in queues}
    while inflight:
        for sid in c.pump():
            rep = inflight.pop(sid, None)
            if rep and queues[rep]:
                inflight[c.request(queues[rep].pop(0))] = rep
    return time.monotonic() - t0


def client_c(port, window):
    t0 = time.monotonic()
    c = H2Client(port, window)
    want = set(track(VIDEO) + track(AUDIO) + ["/vod/manifest.mpd"])
    mpd = c.request("/vod/manifest.mpd", FAST_START)
    got = set()
    while got != want:
        for sid in c.pump():
            got.add("/vod/manifest.mpd" if sid == mpd else c.pushed.get(sid))
    return time.monotonic() - t0


# ---------------------------------------------------------------- harness
def wait_http(port, path):
    for _ in range(200):
        try:
            s = connect(port)
            h1_get(s, path)
            s.close()
            return
        except (OSError, AssertionError, StopIteration):
            time.sleep(0.05)
    raise SystemExit(f"nothing answers on {port}")


def prefetch_bench(args):
    """A pull client (HTTP/1.1, no directive) through the gateway in front of an origin with 100 ms
    of added latency: after the MPD and segment 1, it asks for segments 2 and 3 at a player's pace
    (300 ms apart). Prints their median fetch time with the prefetcher off and on."""
    op = free_port()
    procs = Procs()
    try:
        procs.start([args.bin, "origin", "--listen", f"127.0.0.1:{op}", "--demo", "vod",
                     "--latency-ms", "100"],
                    stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        wait_http(op, "/vod/manifest.mpd")
        res = {}
        for k in (0, 2):
            times = []
            for _ in range(args.runs):
                gp, adm = free_port(), free_port()
                gw = procs.start([args.bin, "run", "--listen", f"127.0.0.1:{gp}", "--admin",
                                  f"127.0.0.1:{adm}", "--origin", f"http://127.0.0.1:{op}",
                                  "--prefetch-next", str(k), "--ready-without-origin"],
                                 stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
                try:
                    for _ in range(200):
                        try:
                            connect(gp).close()
                            break
                        except OSError:
                            time.sleep(0.02)
                    s = connect(gp)
                    h1_get(s, "/vod/manifest.mpd")
                    h1_get(s, track(VIDEO)[1])
                    for path in track(VIDEO)[2:]:
                        time.sleep(0.3)
                        t0 = time.monotonic()
                        h1_get(s, path)
                        times.append((time.monotonic() - t0) * 1000)
                finally:
                    procs.stop(gw)
            res[k] = statistics.median(times)
        print(f"pull client, origin +100 ms: segment fetch median without prefetch {res[0]:.1f} ms,"
              f" with prefetch-next 2 {res[2]:.1f} ms, ratio {res[2] / res[0]:.3f}")
    finally:
        procs.stop_all()


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--prefetch", action="store_true",
                    help="run the prefetcher benchmark instead of the start-up one")
    ap.add_argument("--rtt", default="0,50,100,200")
    ap.add_argument("--runs", type=int, default=5)
    ap.add_argument("--bin", default="target/release/dashpush")
    ap.add_argument("--svg")
    args = ap.parse_args()
    exit_on_signals()
    if args.prefetch:
        prefetch_bench(args)
        return
    op, gp, ap_ = free_port(), free_port(), free_port()
    procs = Procs()
    try:
        procs.start([args.bin, "origin", "--listen", f"127.0.0.1:{op}", "--demo", "vod"],
                    stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        wait_http(op, "/vod/manifest.mpd")
        procs.start([args.bin, "run", "--listen", f"127.0.0.1:{gp}", "--admin",
                     f"127.0.0.1:{ap_}", "--origin", f"http://127.0.0.1:{op}",
                     "--prefetch-next", "0"],
                    stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        wait_http(gp, "/vod/manifest.mpd")
        # Warm the gateway's cache: start-up is measured with the edge hot, as in production.
        for rep in (VIDEO, AUDIO):
            for p in track(rep):
                s = connect(gp)
                h1_get(s, p)
                s.close()
        to_origin, to_gw = Relay(op), Relay(gp)
        rows = []
        for rtt_ms in [int(x) for x in args.rtt.split(",")]:
            to_origin.rtt = to_gw.rtt = rtt_ms / 1000
            res = {}
            for name, fn in [("a", lambda: client_a(to_origin.port)),
                             ("b", lambda: client_b(to_gw.port)),
                             ("c", lambda: client_c(to_gw.port, None)),
                             ("c16", lambda: client_c(to_gw.port, 16 << 20))]:
                res[name] = statistics.median(fn() for _ in range(args.runs)) * 1000
            floor = 2 * rtt_ms
            rows.append((rtt_ms, res, floor))
        print(f"{'rtt ms':>6} {'a h1 direct':>12} {'b h2 gw':>9} {'c push 64K':>11} {'c push 16M':>11}"
              f" {'floor':>6} {'c/a':>6} {'c16/a':>6} {'c/floor':>8} {'c16/floor':>10}")
        for rtt_ms, r, floor in rows:
            fl = max(floor, 1e-9)
            print(f"{rtt_ms:>6} {r['a']:>12.1f} {r['b']:>9.1f} {r['c']:>11.1f} {r['c16']:>11.1f}"
                  f" {floor:>6} {r['c']/r['a']:>6.2f} {r['c16']/r['a']:>6.2f}"
                  f" {(r['c']/fl if floor else float('nan')):>8.2f}"
                  f" {(r['c16']/fl if floor else float('nan')):>10.2f}")
        print("(medians of %d runs, ms; floor = emulated handshake + one round trip)" % args.runs)
        print(json.dumps([{"rtt_ms": r, **res, "floor": f} for r, res, f in rows]))
        if args.svg:
            write_svg(args.svg, rows)
    finally:
        procs.stop_all()


def write_svg(path, rows):
    w, h, left, bottom, top, right = 640, 400, 60, 50, 30, 150
    xs = [r[0] for r in rows]
    ymax = max(max(r[1].values()) for r in rows) * 1.1 or 1
    xmax = max(xs) or 1
    sx = lambda x: left + (w - left - right) * x / xmax
    sy = lambda y: h - bottom - (h - bottom - top) * y / ymax
    series = [("a", "HTTP/1.1 direct to origin", "#d62728"), ("b", "HTTP/2 via dashpush, no push", "#ff7f0e"),
              ("c", "fast-start push, 64 KiB windows", "#1f77b4"), ("c16", "fast-start push, 16 MiB windows", "#2ca02c"),
              ("floor", "floor (handshake + 1 RTT)", "#7f7f7f")]
    out = [f'<svg xmlns="http://www.w3.org/2000/svg" width="{w}" height="{h}" font-family="sans-serif" font-size="11">',
           f'<rect width="{w}" height="{h}" fill="white"/>',
           f'<text x="{left}" y="18" font-size="13">Start-up time (MPD + init + 2 segments, video and audio)</text>',
           f'<line x1="{left}" y1="{h-bottom}" x2="{w-right}" y2="{h-bottom}" stroke="black"/>',
           f'<line x1="{left}" y1="{top}" x2="{left}" y2="{h-bottom}" stroke="black"/>',
           f'<text x="{(left + w - right) / 2}" y="{h - 12}" text-anchor="middle">round-trip time (ms)</text>',
           f'<text x="14" y="{(top + h - bottom) / 2}" transform="rotate(-90 14 {(top + h - bottom) / 2})" text-anchor="middle">ms</text>']
    for x in xs:
        out.append(f'<text x="{sx(x)}" y="{h-bottom+15}" text-anchor="middle">{x}</text>')
    for i in range(6):
        y = ymax * i / 5
        out.append(f'<text x="{left-6}" y="{sy(y)+4}" text-anchor="end">{y:.0f}</text>')
        out.append(f'<line x1="{left}" y1="{sy(y)}" x2="{w-right}" y2="{sy(y)}" stroke="#eee"/>')
    for n, (key, label, color) in enumerate(series):
        pts = [(sx(r[0]), sy(r[2] if key == "floor" else r[1][key])) for r in rows]
        out.append('<polyline fill="none" stroke="%s" stroke-width="2" points="%s"/>'
                   % (color, " ".join(f"{x:.1f},{y:.1f}" for x, y in pts)))
        for x, y in pts:
            out.append(f'<circle cx="{x:.1f}" cy="{y:.1f}" r="3" fill="{color}"/>')
        ly = top + 10 + n * 18
        out.append(f'<rect x="{w-right+10}" y="{ly-8}" width="10" height="10" fill="{color}"/>')
        out.append(f'<text x="{w-right+24}" y="{ly+1}" font-size="10">{label}</text>')
    out.append("</svg>")
    with open(path, "w") as f:
        f.write("\n".join(out) + "\n")


if __name__ == "__main__":
    main()
