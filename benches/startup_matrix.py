#!/usr/bin/python3
"""Start-up matrix against nginx: the same fast-start fetch through dashpush's push and through
nginx 1.22's `http2_push` + `proxy_cache`, over the delaying relay of benches/startup.py.
On demand only (not in CI); about 17 minutes with the defaults, most of it in the 64 KiB cells
(2.7 MB at 64 KiB per round trip is 40+ round trips).

  /usr/bin/python3 benches/startup_matrix.py [--runs 3] [--rtt 50,100,200] [--windows 64k,16m]
      [--segments 1,2,4] [--origin-delay 0,50] [--cold restart|purge] [--bin target/release/dashpush]
      [--nginx /usr/sbin/nginx] [--content target/bench-content/startup_matrix]
      [--svg PATH] [--json PATH] [--trace DIR]

The fetch: the MPD, then init + first N segments of the one video and the one audio
Representation (the Representations and URLs dashpush's fast start picks, from `dashpush plan`).
  dashpush  one HTTP/2 request for the MPD with
            `accept-push-policy: urn:mpeg:dash:fdh:2016:push-fast-start;{"segments":N}`
  nginx     one HTTP/2 request for the MPD; the MPD location has `http2_push` of exactly the URLs
            `dashpush plan` lists, in its order, and `proxy_cache` on
Both proxy the built-in origin (`dashpush origin --dir CONTENT [--latency-ms D]`). The client
(python3-h2) requests whatever was not promised once the MPD has ended (a correct client asks
only for what was not pushed), checks that every resource is a 200 of the origin's length, and
is timed from the TCP connect to the last byte of the last resource.

Matrix: RTT x client window (64 KiB = the HTTP/2 defaults, 65,535 bytes per stream and for the
connection; 16 MiB = SETTINGS_INITIAL_WINDOW_SIZE plus a connection WINDOW_UPDATE; on request,
64 KiB/16 MiB = default stream windows and a 16 MiB connection window, where the pushes are held
by their own streams' windows and the connection's is wide open) x N x origin delay. The client returns credit the way python3-h2 (and nghttp2) do: a WINDOW_UPDATE once half a
window has been consumed, per stream and for the connection. Per cell and run, a first viewer (cold:
a fresh nginx with an empty cache directory / a fresh gateway process, or with `--cold purge`
the gateway's `POST /purge?prefix=/` with its admin token) and then a later viewer (warm, a new
connection to the same server). Medians of --runs. The order of nginx and dashpush alternates
per run.

Floor: the relay's emulated TCP handshake (one RTT) + one request round trip + bytes / bandwidth;
the relay runs on loopback, so bytes / bandwidth is taken as 0. What the bytes really cost (the
relay's and the Python client's processing, ~5 ms per MB) is measured once per N at RTT 0 with
16 MiB windows and warm caches (best of 5 from either server) and shown as x0. A first viewer
with origin delay D cannot beat floor + 2 D (the MPD from the origin, then the pushed resources).
The table gives dashpush against the floor, and against floor + x0 (warm) / floor + 2 D + x0 (cold).
Targets: dashpush <= 1.0x nginx in every cell; with 16 MiB windows dashpush <= 1.1x the floor.
Misses are listed with the run-to-run spread of the cell.

Content: ffmpeg (libx264 1280x720 testsrc2 with noise at 2.5 Mbit/s CBR, AAC 128 kbit/s, 2 s
segments, `-f dash -use_template 1 -use_timeline 0`), made once into --content if missing.
--trace DIR writes every fetch's reads from the socket as JSON ([ms since connect, {resource:
DATA bytes}] per read; one file per server, viewer, cell and run), to see how each round trip's
connection window was used.
Every process this starts is stopped by its pid, also on errors and on SIGINT/SIGTERM.
"""
import argparse
import json
import os
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time

sys.dont_write_bytecode = True  # no benches/__pycache__ from importing startup.py
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

import h2.events  # noqa: E402

from startup import H2Client, Relay, connect, free_port, h1_get, wait_http  # noqa: E402

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
MPD = "/vod/manifest.mpd"
FAST_START = 'urn:mpeg:dash:fdh:2016:push-fast-start;{"segments":%d}'
CONTENT_VERSION = "1"  # bump when the ffmpeg recipe changes


# ---------------------------------------------------------------- processes
class Procs:
    """Every process this benchmark starts, stopped by pid (nginx: the master, then any worker
    that outlives it)."""

    def __init__(self):
        self.live = {}  # pid -> (Popen, name)

    def start(self, name, argv, log):
        p = subprocess.Popen(argv, stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                             cwd=ROOT)
        self.live[p.pid] = (p, name)
        return p

    def stop(self, p):
        if p.pid not in self.live:
            return
        name = self.live[p.pid][1]
        workers = children(p.pid) if name == "nginx" else []
        if p.poll() is None:
            # nginx: SIGTERM to the master is its fast shutdown (workers exit with it).
            p.terminate()
            try:
                p.wait(timeout=5)
            except subprocess.TimeoutExpired:
                p.kill()
                p.wait()
        for w in workers:
            for _ in range(50):
                if not alive(w):
                    break
                time.sleep(0.02)
            else:
                os.kill(w, signal.SIGKILL)
        del self.live[p.pid]

    def stop_all(self):
        for pid in list(self.live):
            self.stop(self.live[pid][0])


def children(pid):
    out = []
    for d in os.listdir("/proc"):
        if d.isdigit():
            try:
                with open(f"/proc/{d}/stat") as f:
                    stat = f.read()
                if int(stat.rsplit(")", 1)[1].split()[1]) == pid:
                    out.append(int(d))
            except (OSError, ValueError, IndexError):
                pass
    return out


def alive(pid):
    try:
        with open(f"/proc/{pid}/stat") as f:
            return f.read().rsplit(")", 1)[1].split()[0] != "Z"
    except OSError:
        return False


def wait_tcp(port, proc):
    for _ in range(500):
        if proc.poll() is not None:
            raise SystemExit(f"process on port {port} exited with {proc.returncode}")
        try:
            connect(port).close()
            return
        except OSError:
            time.sleep(0.01)
    raise SystemExit(f"nothing listens on {port}")


# ---------------------------------------------------------------- content
def make_content(dirpath, binary):
    vod = os.path.join(dirpath, "vod")
    stamp = os.path.join(dirpath, "VERSION")
    if os.path.exists(stamp) and open(stamp).read().strip() == CONTENT_VERSION:
        return vod
    if not shutil.which("ffmpeg"):
        raise SystemExit("ffmpeg is needed to make the content (apt-get install ffmpeg)")
    print(f"making content in {dirpath} (ffmpeg, ~20 s)", file=sys.stderr, flush=True)
    shutil.rmtree(dirpath, ignore_errors=True)
    tmp = vod + ".tmp"
    os.makedirs(tmp)
    subprocess.run(
        ["ffmpeg", "-hide_banner", "-loglevel", "error", "-y",
         "-f", "lavfi", "-i", "testsrc2=size=1280x720:rate=30,noise=alls=20:allf=t+u",
         "-f", "lavfi", "-i", "sine=frequency=440:sample_rate=48000",
         "-f", "lavfi", "-i", "anoisesrc=color=pink:amplitude=0.2:sample_rate=48000",
         "-filter_complex", "[1:a][2:a]amix=inputs=2[a]", "-map", "0:v", "-map", "[a]", "-t", "16",
         "-c:v", "libx264", "-preset", "veryfast", "-b:v", "2500k", "-minrate", "2500k",
         "-maxrate", "2500k", "-bufsize", "2500k", "-x264-params", "nal-hrd=cbr",
         "-g", "60", "-keyint_min", "60", "-sc_threshold", "0", "-pix_fmt", "yuv420p",
         "-c:a", "aac", "-b:a", "128k", "-ac", "2",
         "-f", "dash", "-seg_duration", "2", "-use_template", "1", "-use_timeline", "0",
         "-adaptation_sets", "id=0,streams=v id=1,streams=a", "manifest.mpd"],
        cwd=tmp, check=True)
    os.rename(tmp, vod)
    # One video and one audio AdaptationSet, one Representation each (what the matrix assumes).
    info = json.loads(subprocess.run(
        [binary, "mpd", os.path.join(vod, "manifest.mpd"), "--base", "http://bench" + MPD,
         "--count", "1"], check=True, capture_output=True, text=True).stdout)
    sets = [a for p in info["periods"] for a in p["adaptation_sets"]]
    kinds = sorted(f"{a['content_type']}x{len(a['representations'])}" for a in sets)
    if kinds != ["audiox1", "videox1"]:
        raise SystemExit(f"expected one video and one audio AdaptationSet with one Representation"
                         f" each, got {kinds}")
    with open(stamp, "w") as f:
        f.write(CONTENT_VERSION + "\n")
    return vod


def plan_paths(binary, vod, n):
    """The URLs dashpush's fast start pushes for {"segments": n}, in its order (`dashpush plan`)."""
    out = subprocess.run(
        [binary, "plan", "--mpd", os.path.join(vod, "manifest.mpd"), "--base", "http://bench" + MPD,
         "--request", "http://bench" + MPD, "--directive", FAST_START % n],
        check=True, capture_output=True, text=True).stdout
    plan = json.loads(out)
    urls = [p["url"] for p in plan["pushes"]]
    paths = [u.split("://", 1)[1].split("/", 1)[1] for u in urls]
    paths = ["/" + p for p in paths]
    if len(paths) != 2 * (n + 1):
        raise SystemExit(f"dashpush plan for N={n} pushes {len(paths)} URLs, expected {2 * (n + 1)}:"
                         f" {out}")
    return paths, plan.get("ack")


# ---------------------------------------------------------------- servers
NGINX_CONF = """
worker_processes 1;
daemon off;
master_process on;
pid {prefix}/nginx.pid;
error_log {prefix}/error.log warn;
{user}
events {{ worker_connections 256; }}
http {{
    access_log off;
    client_body_temp_path {prefix}/body;
    proxy_temp_path {prefix}/proxy;
    fastcgi_temp_path {prefix}/fastcgi;
    uwsgi_temp_path {prefix}/uwsgi;
    scgi_temp_path {prefix}/scgi;
    proxy_cache_path {prefix}/cache levels=1:2 keys_zone=dash:10m max_size=1g inactive=10m
                     use_temp_path=off;
    upstream origin {{
        server 127.0.0.1:{origin};
        keepalive 16;
    }}
    server {{
        listen 127.0.0.1:{port} http2;
        http2_max_concurrent_pushes 32;
        proxy_http_version 1.1;
        proxy_set_header Connection "";
        proxy_cache dash;
        proxy_cache_valid 200 10m;
        location / {{
            proxy_pass http://origin;
        }}
        location = {mpd} {{
            proxy_pass http://origin;
{pushes}
        }}
    }}
}}
"""


def start_nginx(procs, args, origin_port, pushes, workdir):
    prefix = tempfile.mkdtemp(prefix="nginx-", dir=workdir)  # fresh, empty cache directory
    port = free_port()
    conf = os.path.join(prefix, "nginx.conf")
    with open(conf, "w") as f:
        f.write(NGINX_CONF.format(
            prefix=prefix, port=port, origin=origin_port, mpd=MPD,
            user="user root root;" if os.geteuid() == 0 else "",
            pushes="\n".join(f"            http2_push {p};" for p in pushes)))
    log = open(os.path.join(prefix, "stderr.log"), "w")
    p = procs.start("nginx", [args.nginx, "-p", prefix, "-c", conf, "-e", os.path.join(prefix, "error.log")],
                    log)
    log.close()
    wait_tcp(port, p)
    return p, port


def start_gateway(procs, args, origin_port, workdir, token_file):
    port, admin = free_port(), free_port()
    log = open(os.path.join(workdir, "gateway.log"), "a")
    p = procs.start("dashpush", [args.bin, "run", "--listen", f"127.0.0.1:{port}", "--admin",
                                 f"127.0.0.1:{admin}", "--origin", f"http://127.0.0.1:{origin_port}",
                                 "--prefetch-next", "0", "--ready-without-origin",
                                 "--admin-token-file", token_file], log)
    log.close()
    wait_tcp(port, p)
    wait_tcp(admin, p)
    return p, port, admin


def purge(admin_port, token):
    s = connect(admin_port)
    s.sendall(f"POST /purge?prefix=/ HTTP/1.1\r\nHost: admin\r\nAuthorization: Bearer {token}\r\n"
              f"Content-Length: 0\r\nConnection: close\r\n\r\n".encode())
    buf = b""
    while True:
        d = s.recv(65536)
        if not d:
            break
        buf += d
    s.close()
    if not buf.startswith(b"HTTP/1.1 200"):
        raise SystemExit(f"purge failed: {buf[:200]!r}")


# ---------------------------------------------------------------- client
class Client(H2Client):
    """H2Client that records every stream's status, length, and resets."""

    def __init__(self, port, window):
        self.status, self.length, self.reset, self.headers = {}, {}, set(), {}
        # --trace: per read from the socket, when (s since connect) and DATA bytes per stream.
        self.reads, self.read, self.t0 = [], {}, time.monotonic()
        super().__init__(port, window)

    def pump(self):
        self.read = {}
        ended = super().pump()
        self.reads.append((round((time.monotonic() - self.t0) * 1000, 2), self.read))
        return ended

    def on_event(self, ev):
        if isinstance(ev, h2.events.ResponseReceived):
            h = dict(ev.headers)
            self.status[ev.stream_id] = h.get(":status")
            self.headers[ev.stream_id] = h
        elif isinstance(ev, h2.events.DataReceived):
            self.length[ev.stream_id] = self.length.get(ev.stream_id, 0) + len(ev.data)
            self.read[ev.stream_id] = self.read.get(ev.stream_id, 0) + len(ev.data)
        elif isinstance(ev, h2.events.StreamReset):
            self.reset.add(ev.stream_id)
        elif isinstance(ev, h2.events.ConnectionTerminated):
            raise SystemExit(f"connection terminated: {ev}")


def fetch(port, window, directive, want, sizes, trace=None):
    """The start-up fetch; returns (seconds, pushed count, requested count, push-policy ack).
    With `trace` (a file path), writes the client's reads there as JSON: [ms since connect,
    {path: DATA bytes}] per read from the socket."""
    t0 = time.monotonic()
    c = Client(port, window)
    c.sock.settimeout(30)
    mpd = c.request(MPD, directive)
    by_sid = {mpd: MPD}
    got = {}
    mpd_done = False
    requested = 0
    while len(got) < len(want):
        ended = c.pump()
        for sid in c.reset:
            if sid in by_sid:
                raise SystemExit(f"request for {by_sid[sid]} reset")
            path = c.pushed.get(sid)
            if path in want and path not in got and path not in by_sid.values():
                by_sid[c.request(path)] = path  # a cancelled push: ask for it
                requested += 1
        c.reset.clear()
        for sid in ended:
            path = by_sid.get(sid) or c.pushed.get(sid)
            if path in want:
                got[path] = (c.status.get(sid), c.length.get(sid, 0))
            if sid == mpd and not mpd_done:
                mpd_done = True
                promised = set(c.pushed.values())
                for p in want:
                    if p != MPD and p not in promised:
                        by_sid[c.request(p)] = p
                        requested += 1
    elapsed = time.monotonic() - t0
    ack = c.headers.get(mpd, {}).get("push-policy")
    c.sock.close()
    if trace:
        names = {**c.pushed, **by_sid}
        with open(trace, "w") as f:
            json.dump([[t, {names.get(sid, str(sid)): n for sid, n in r.items()}]
                       for t, r in c.reads], f)
    for p, (status, length) in got.items():
        if status != "200" or length != sizes[p]:
            raise SystemExit(f"{p}: status {status}, {length} bytes; the origin has {sizes[p]}")
    pushed = sum(1 for p in c.pushed.values() if p in want)
    return elapsed, pushed, requested, ack


def calibrate(procs, args, origin_port, paths, want, sizes, workdir, token_file, relay, n):
    """x0: the least time the client and the relay need for these bytes at RTT 0 (16 MiB windows,
    warm caches, best of 5 fetches from either server): the bytes / bandwidth term as measured."""
    best = float("inf")
    relay.rtt = 0.0
    for server in ("dashpush", "nginx"):
        if server == "nginx":
            p, port = start_nginx(procs, args, origin_port, paths, workdir)
            directive = None
        else:
            gw = start_gateway(procs, args, origin_port, workdir, token_file)
            p, port, directive = gw[0], gw[1], FAST_START % n
        relay.upstream_port = port
        try:
            fetch(relay.port, 16 << 20, directive, want, sizes)  # fills the cache
            time.sleep(0.1)
            for _ in range(5):
                best = min(best, fetch(relay.port, 16 << 20, directive, want, sizes)[0] * 1000)
        finally:
            procs.stop(p)
    return best


# ---------------------------------------------------------------- matrix
def parse_size(s):
    s = s.strip().lower()
    mult = {"k": 1 << 10, "m": 1 << 20}.get(s[-1], 1)
    return int(s.rstrip("km")) * mult


def size_name(w):
    return "64K" if w is None else (f"{w >> 20}M" if w % (1 << 20) == 0 else f"{w >> 10}K")


def win_name(w):
    """64K, 16M (stream and connection), or STREAM/CONNECTION (64K/16M)."""
    if isinstance(w, tuple):
        stream, conn = (size_name(x) for x in w)
        return stream if stream == conn else f"{stream}/{conn}"
    return size_name(w)


def parse_window(spec):
    """64k (or less): the HTTP/2 defaults; 16m: that much for every stream and the connection;
    64k/16m: the default stream windows with that much more for the connection."""
    if "/" in spec:
        stream, conn = (parse_size(x) for x in spec.split("/"))
        return (None if stream <= 65536 else stream, None if conn <= 65536 else conn)
    return None if parse_size(spec) <= 65536 else parse_size(spec)


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--runs", type=int, default=3)
    ap.add_argument("--rtt", default="50,100,200", help="ms, comma-separated")
    ap.add_argument("--windows", default="64k,16m",
                    help="client windows; 64k means the HTTP/2 defaults (no SETTINGS change);"
                         " STREAM/CONNECTION (64k/16m) sets them apart")
    ap.add_argument("--segments", default="1,2,4", help="N: media segments per Representation")
    ap.add_argument("--origin-delay", default="0,50", help="ms added by the origin per request")
    ap.add_argument("--cold", choices=["restart", "purge"], default="restart",
                    help="first viewer: a fresh gateway process, or the gateway's admin purge"
                         " (nginx is always restarted with a fresh cache directory)")
    ap.add_argument("--bin", default=os.path.join(ROOT, "target/release/dashpush"))
    ap.add_argument("--nginx", default="/usr/sbin/nginx")
    ap.add_argument("--content", default=os.path.join(ROOT, "target/bench-content/startup_matrix"))
    ap.add_argument("--svg")
    ap.add_argument("--json")
    ap.add_argument("--trace", help="directory: each fetch's reads as JSON (see fetch)")
    args = ap.parse_args()
    rtts = [int(x) for x in args.rtt.split(",")]
    # 64k (or less) means the HTTP/2 defaults: 65,535-byte stream and connection windows.
    windows = [parse_window(x) for x in args.windows.split(",")]
    ns = [int(x) for x in args.segments.split(",")]
    delays = [int(x) for x in args.origin_delay.split(",")]
    if not os.access(args.bin, os.X_OK):
        raise SystemExit(f"{args.bin} missing: cargo build --release")
    v = subprocess.run([args.nginx, "-V"], capture_output=True, text=True).stderr
    if "--with-http_v2_module" not in v:
        raise SystemExit(f"{args.nginx} has no http_v2_module (http2_push)")
    nginx_version = v.splitlines()[0]
    if args.trace:
        os.makedirs(args.trace, exist_ok=True)

    procs = Procs()

    def on_signal(signum, _frame):
        raise SystemExit(f"signal {signum}")
    for sig in (signal.SIGINT, signal.SIGTERM, signal.SIGHUP):
        signal.signal(sig, on_signal)

    workdir = tempfile.mkdtemp(prefix="startup-matrix-")
    # Run a private copy: a rebuild during the run (cargo replaces the file) cannot mix builds.
    built = time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(os.path.getmtime(args.bin)))
    shutil.copy2(args.bin, os.path.join(workdir, "dashpush"))
    args.bin_path, args.bin = args.bin, os.path.join(workdir, "dashpush")
    token = os.urandom(16).hex()
    token_file = os.path.join(workdir, "admin-token")
    with open(token_file, "w") as f:
        f.write(token + "\n")
    results = []
    try:
        vod = make_content(args.content, args.bin)
        plans = {n: plan_paths(args.bin, vod, n) for n in ns}
        origins = {}
        for d in delays:
            op = free_port()
            log = open(os.path.join(workdir, f"origin-{d}.log"), "w")
            argv = [args.bin, "origin", "--dir", os.path.dirname(vod), "--listen", f"127.0.0.1:{op}"]
            if d:
                argv += ["--latency-ms", str(d)]
            origins[d] = (procs.start("origin", argv, log), op)
            log.close()
            wait_http(op, MPD)
        # The origin's bytes, over HTTP, against the files.
        op0 = origins[delays[0]][1]
        sizes = {}
        for p in {MPD, *[q for n in ns for q in plans[n][0]]}:
            s = connect(op0)
            sizes[p] = h1_get(s, p)
            s.close()
            on_disk = os.path.getsize(os.path.join(os.path.dirname(vod), p.lstrip("/")))
            if sizes[p] != on_disk:
                raise SystemExit(f"origin serves {sizes[p]} bytes of {p}, the file has {on_disk}")
        print(f"# {nginx_version}; dashpush {args.bin_path} (built {built}, run from a copy);"
              f" content {vod};"
              f" runs {args.runs}; cold viewer: {args.cold}", flush=True)
        for n in ns:
            paths, ack = plans[n]
            kb = sum(sizes[p] for p in [MPD, *paths]) / 1000
            print(f"# N={n}: {kb:.0f} kB; pushed (dashpush plan = nginx http2_push): "
                  f"{' '.join(paths)}; ack {ack}", flush=True)
        relay = Relay(0)
        x0 = {n: calibrate(procs, args, origins[delays[0]][1], plans[n][0], [MPD, *plans[n][0]],
                           sizes, workdir, token_file, relay, n) for n in ns}
        print("# x0 (client + relay time for the bytes at RTT 0, best of 5, ms): "
              + ", ".join(f"N={n}: {x0[n]:.1f}" for n in ns), flush=True)
        total = len(delays) * len(ns) * len(windows) * len(rtts)
        cell_no = 0
        for d in delays:
            op = origins[d][1]
            for n in ns:
                paths, _ = plans[n]
                want = [MPD, *paths]
                nbytes = sum(sizes[p] for p in want)
                gw = None
                for w in windows:
                    for rtt in rtts:
                        cell_no += 1
                        relay.rtt = rtt / 1000
                        samples = {(s, v): [] for s in ("dashpush", "nginx") for v in ("cold", "warm")}
                        counts = {}
                        for run in range(args.runs):
                            order = ("dashpush", "nginx") if run % 2 == 0 else ("nginx", "dashpush")
                            for server in order:
                                if server == "nginx":
                                    p, port = start_nginx(procs, args, op, paths, workdir)
                                    directive = None
                                elif args.cold == "restart" or gw is None:
                                    if gw:
                                        procs.stop(gw[0])
                                    gw = start_gateway(procs, args, op, workdir, token_file)
                                    p, port = gw[0], gw[1]
                                    directive = FAST_START % n
                                else:
                                    purge(gw[2], token)
                                    p, port = gw[0], gw[1]
                                    directive = FAST_START % n
                                relay.upstream_port = port
                                try:
                                    for viewer in ("cold", "warm"):
                                        trace = args.trace and os.path.join(
                                            args.trace, f"{server}-{viewer}-d{d}-n{n}-"
                                            f"{win_name(w)}-rtt{rtt}-run{run}.json")
                                        t, pushed, req, ack = fetch(relay.port, w, directive,
                                                                    want, sizes, trace)
                                        samples[(server, viewer)].append(t * 1000)
                                        counts.setdefault((server, viewer), []).append((pushed, req))
                                        time.sleep(0.1)  # let the cache store what it streamed
                                finally:
                                    if server == "nginx" or args.cold == "restart":
                                        procs.stop(p)
                                        if server == "dashpush":
                                            gw = None
                        row = {"origin_delay_ms": d, "segments": n, "window": win_name(w),
                               "rtt_ms": rtt, "bytes": nbytes, "floor_ms": 2 * rtt, "x0_ms": x0[n],
                               "samples": {f"{s}_{v}": x for (s, v), x in samples.items()},
                               "pushed_requested": {f"{s}_{v}": c for (s, v), c in counts.items()}}
                        for (s, v), x in samples.items():
                            row[f"{s}_{v}"] = statistics.median(x)
                        results.append(row)
                        print(f"# cell {cell_no}/{total}: delay {d} N {n} window {win_name(w)} rtt {rtt}: "
                              + ", ".join(f"{k} {row[k]:.1f}" for k in
                                          ("dashpush_cold", "nginx_cold", "dashpush_warm", "nginx_warm")),
                              file=sys.stderr, flush=True)
                if gw:
                    procs.stop(gw[0])
                    gw = None
    finally:
        for sig in (signal.SIGINT, signal.SIGTERM, signal.SIGHUP):
            signal.signal(sig, signal.SIG_IGN)  # a second Ctrl-C must not cut the clean-up short
        procs.stop_all()
        shutil.rmtree(workdir, ignore_errors=True)
    report(results, args)
    if args.json:
        with open(args.json, "w") as f:
            json.dump(results, f, indent=1)
    if args.svg:
        write_svg(args.svg, results)


def fmt_ms(xs):
    return "/".join(f"{x:.0f}" for x in xs)


def report(results, args):
    hdr = (f"{'delay':>5} {'N':>2} {'win':>7} {'rtt':>4} {'kB':>5} | {'cold dp':>8} {'cold ng':>8}"
           f" {'dp/ng':>6} | {'warm dp':>8} {'warm ng':>8} {'dp/ng':>6} | {'floor':>5} {'x0':>5}"
           f" | {'warm/fl':>7} {'cold/fl':>7} | {'warm/(fl+x0)':>12} {'cold/(fl+2D+x0)':>15}")
    print(hdr)
    print("-" * len(hdr))
    misses = []
    for r in results:
        fl, x0, d = r["floor_ms"], r["x0_ms"], r["origin_delay_ms"]
        cn = r["dashpush_cold"] / r["nginx_cold"]
        wn = r["dashpush_warm"] / r["nginx_warm"]
        wf = r["dashpush_warm"] / fl
        cf = r["dashpush_cold"] / fl
        wfx = r["dashpush_warm"] / (fl + x0)
        cfx = r["dashpush_cold"] / (fl + 2 * d + x0)
        big = r["window"] not in ("64K",) and "/" not in r["window"]

        def mark(x, lim, on=True):
            return f"{x:.2f}" + ("*" if on and x > lim else " ")
        print(f"{d:>5} {r['segments']:>2} {r['window']:>7} {r['rtt_ms']:>4} {r['bytes'] / 1000:>5.0f}"
              f" | {r['dashpush_cold']:>8.1f} {r['nginx_cold']:>8.1f} {mark(cn, 1.0):>6}"
              f" | {r['dashpush_warm']:>8.1f} {r['nginx_warm']:>8.1f} {mark(wn, 1.0):>6}"
              f" | {fl:>5} {x0:>5.1f} | {mark(wf, 1.1, big):>7} {mark(cf, 1.1, big):>7}"
              f" | {mark(wfx, 1.1, big):>12} {mark(cfx, 1.1, big):>15}")
        cell = f"delay {d} N {r['segments']} win {r['window']} rtt {r['rtt_ms']}"
        for viewer, ratio in (("cold", cn), ("warm", wn)):
            if ratio > 1.0:
                dp, ng = r["samples"][f"dashpush_{viewer}"], r["samples"][f"nginx_{viewer}"]
                spread = max(max(dp) - min(dp), max(ng) - min(ng))
                misses.append(f"{cell}: {viewer} dashpush/nginx {ratio:.2f}, +{r[f'dashpush_{viewer}'] - r[f'nginx_{viewer}']:.1f} ms"
                              f" (run-to-run spread {spread:.0f} ms; dp {fmt_ms(dp)}, ng {fmt_ms(ng)})")
        if big and wf > 1.1:
            misses.append(f"{cell}: warm dashpush/floor {wf:.2f} (/(floor+x0) {wfx:.2f})")
        if big and cf > 1.1:
            misses.append(f"{cell}: cold dashpush/floor {cf:.2f} (/(floor+2D+x0) {cfx:.2f})")
        odd = {k: v for k, v in r["pushed_requested"].items() if any(req for _, req in v)}
        if odd:
            misses.append(f"{cell}: resources requested because not pushed (pushed, requested): {odd}")
    print(f"ms, medians of {args.runs} runs. dp = dashpush push-fast-start; ng = nginx http2_push +"
          f" proxy_cache; cold = first viewer, warm = a later one. floor = handshake RTT + one request"
          f" RTT + bytes/bandwidth, the last taken as 0 (loopback relay). x0 = what the bytes take"
          f" through the relay and the Python client at RTT 0 (measured: the real bytes/bandwidth"
          f" term); 2D = the origin's delay twice (MPD, then the pushed resources), which a first"
          f" viewer cannot avoid. * = target missed: dp/ng <= 1.0 everywhere; dp/floor <= 1.1 with"
          f" 16 MiB windows (also shown against the floor plus x0 and 2D).")
    print("targets missed:" if misses else "targets: all met")
    for m in misses:
        print("  " + m)


def write_svg(path, results):
    """Log-log scatter of dashpush against nginx per cell (below the diagonal: dashpush faster)."""
    import math
    w, h, left, bottom, top, right = 640, 520, 70, 50, 40, 190
    pts = []
    for r in results:
        for viewer in ("cold", "warm"):
            pts.append((r[f"nginx_{viewer}"], r[f"dashpush_{viewer}"], r["window"], viewer))
    lo = min(min(p[0], p[1]) for p in pts) * 0.8
    hi = max(max(p[0], p[1]) for p in pts) * 1.25
    lx = lambda v: (math.log10(v) - math.log10(lo)) / (math.log10(hi) - math.log10(lo))
    sx = lambda v: left + (w - left - right) * lx(v)
    sy = lambda v: h - bottom - (h - bottom - top) * lx(v)
    colors = {"64K": "#d62728", "16M": "#1f77b4"}
    out = [f'<svg xmlns="http://www.w3.org/2000/svg" width="{w}" height="{h}" font-family="sans-serif" font-size="11">',
           f'<rect width="{w}" height="{h}" fill="white"/>',
           f'<text x="{left}" y="18" font-size="13">Start-up, every cell: dashpush push vs nginx http2_push (ms, log)</text>',
           f'<line x1="{left}" y1="{h-bottom}" x2="{w-right}" y2="{h-bottom}" stroke="black"/>',
           f'<line x1="{left}" y1="{top}" x2="{left}" y2="{h-bottom}" stroke="black"/>',
           f'<text x="{(left + w - right) / 2}" y="{h - 12}" text-anchor="middle">nginx (ms)</text>',
           f'<text x="16" y="{(top + h - bottom) / 2}" transform="rotate(-90 16 {(top + h - bottom) / 2})" text-anchor="middle">dashpush (ms)</text>',
           f'<line x1="{sx(lo)}" y1="{sy(lo)}" x2="{sx(hi)}" y2="{sy(hi)}" stroke="#999" stroke-dasharray="4 3"/>']
    e = math.floor(math.log10(lo))
    while 10 ** e <= hi:
        for m in (1, 2, 5):
            v = m * 10 ** e
            if lo <= v <= hi:
                out.append(f'<text x="{sx(v)}" y="{h-bottom+15}" text-anchor="middle">{v:g}</text>')
                out.append(f'<text x="{left-6}" y="{sy(v)+4}" text-anchor="end">{v:g}</text>')
                out.append(f'<line x1="{left}" y1="{sy(v)}" x2="{w-right}" y2="{sy(v)}" stroke="#eee"/>')
                out.append(f'<line x1="{sx(v)}" y1="{top}" x2="{sx(v)}" y2="{h-bottom}" stroke="#eee"/>')
        e += 1
    for x, y, win, viewer in pts:
        c = colors.get(win, "#2ca02c")
        fill = c if viewer == "warm" else "none"
        out.append(f'<circle cx="{sx(x):.1f}" cy="{sy(y):.1f}" r="4" fill="{fill}" stroke="{c}" stroke-width="1.5"/>')
    legend = [("#d62728", True, "64 KiB windows, warm"), ("#d62728", False, "64 KiB windows, cold"),
              ("#1f77b4", True, "16 MiB windows, warm"), ("#1f77b4", False, "16 MiB windows, cold")]
    if any("/" in win for _, _, win, _ in pts):
        legend += [("#2ca02c", True, "stream/connection apart, warm"),
                   ("#2ca02c", False, "stream/connection apart, cold")]
    for i, (c, filled, label) in enumerate(legend):
        y = top + 10 + i * 18
        out.append(f'<circle cx="{w-right+15}" cy="{y-3}" r="4" fill="{c if filled else "none"}" stroke="{c}" stroke-width="1.5"/>')
        out.append(f'<text x="{w-right+26}" y="{y+1}" font-size="10">{label}</text>')
    y = top + 10 + len(legend) * 18
    out.append(f'<line x1="{w-right+8}" y1="{y-3}" x2="{w-right+22}" y2="{y-3}" stroke="#999" stroke-dasharray="4 3"/>')
    out.append(f'<text x="{w-right+26}" y="{y+1}" font-size="10">equal (below: dashpush faster)</text>')
    out.append("</svg>")
    with open(path, "w") as f:
        f.write("\n".join(out) + "\n")


if __name__ == "__main__":
    main()
