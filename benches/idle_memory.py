#!/usr/bin/python3
"""Memory per idle connection: dashpush against nginx, in one run. On demand, not in CI.

  /usr/bin/python3 benches/idle_memory.py [--conns 10000] [--bin target/release/dashpush] [--svg P]
                                          [--variants h2c,h1,h2c-req] [--nginx-workers 1]

Both servers stand in front of the same built-in origin (`dashpush origin --demo vod`); nginx
(/usr/sbin/nginx, nginx-light) is the proxy_cache set-up of benches/proxy_vs_nginx.sh. For each
variant and server a fresh server process is started, warmed (the resources fetched once, one
connection of the variant opened and closed), its RSS read, then --conns connections of the
variant are opened from 127.0.0.1 and left idle, and after --settle seconds (--settle-served for
h2c-req: longer than the gateway's http2.park_when_idle_ms, 5 s by default, after which an idle
served connection drops its h2 state) the RSS is read again:
(after - before) / conns is the growth per connection. Variants:
  h2c      TCP connect, client preface + empty SETTINGS, the server's SETTINGS read and ACKed
           (and any PING answered), then idle
  h1       HTTP/1.1 keep-alive: one GET /vod/manifest.mpd, the whole response read, then idle
  h2c-req  h2c as above plus one GET of a segment (/vod/chunk-stream0-00001.m4s), then idle
RSS is VmRSS from /proc/PID/status: the gateway's one process; for nginx the master and all its
children (workers, cache manager and loader). Kernel socket buffers are not in RSS for either.
nginx sets up its connection and event structures for every worker_connections slot at start;
that share (measured against a start with 1024 slots) is printed apart.
The servers' limits are raised so that every connection is kept for the whole run (descriptor
limits, the gateway's limits.max_connections / max_connections_per_client, idle timeouts of an
hour on both). A connection the server closes during the run is reported and fails the variant.

Targets printed next to the results: <= 8 KiB per idle h2c connection, <= 4 KiB per idle
HTTP/1.1 connection, and the gateway's RSS at 10,000 idle connections <= the cache in use
(dashpush_cache_size_bytes on /metrics) + 100 MiB. Nothing is asserted (exit status 0 unless
the run itself failed). Every process started here is stopped by its PID on any way out.
"""
import argparse
import asyncio
import http.client
import json
import os
import re
import resource
import shutil
import signal
import socket
import struct
import subprocess
import sys
import tempfile
import time

sys.dont_write_bytecode = True
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from procs import Procs, exit_on_signals, free_port  # noqa: E402

MPD = "/vod/manifest.mpd"
SEGMENT = "/vod/chunk-stream0-00001.m4s"
PREFACE = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n" + b"\x00\x00\x00\x04\x00\x00\x00\x00\x00"
SETTINGS_ACK = b"\x00\x00\x00\x04\x01\x00\x00\x00\x00"
TARGET_KIB = {"h2c": 8, "h1": 4, "h2c-req": 8}
LABEL = {"h2c": "h2c idle", "h1": "http/1.1 keep-alive idle", "h2c-req": "h2c after one GET"}


# ---------------------------------------------------------------- clients
def frame(ftype, flags, sid, payload=b""):
    return struct.pack(">I", len(payload))[1:] + bytes([ftype, flags]) + struct.pack(">I", sid) + payload


def hpack_get(path, authority="bench"):
    """GET as HPACK without Huffman: :method GET, :scheme http from the static table; :path and
    :authority as literals without indexing (name from the static table)."""
    def lit(index, value):
        v = value.encode()
        assert len(v) < 127
        return bytes([index, len(v)]) + v
    return b"\x82\x86" + lit(4, path) + lit(1, authority)


class Conn(asyncio.Protocol):
    """One client connection; `ready` resolves once it is idle (see the module's docstring)."""

    def __init__(self, mode, ready):
        self.mode = mode
        self.ready = ready
        self.buf = b""
        self.transport = None
        self.closed = False
        self.goaway = False
        self.server_settings = self.settings_acked = False
        self.response_done = mode == "h2c"
        self.status = None
        self.pings = 0

    def connection_made(self, transport):
        self.transport = transport
        transport.get_extra_info("socket").setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        if self.mode == "h1":
            transport.write(f"GET {MPD} HTTP/1.1\r\nHost: bench\r\nConnection: keep-alive\r\n\r\n".encode())
            return
        out = PREFACE
        if self.mode == "h2c-req":
            out += frame(1, 0x5, 1, hpack_get(SEGMENT))  # HEADERS, END_STREAM | END_HEADERS
        transport.write(out)

    def _done(self, err=None):
        if not self.ready.done():
            if err:
                self.ready.set_exception(RuntimeError(err))
            else:
                self.ready.set_result(self)

    def data_received(self, data):
        self.buf += data
        if self.mode == "h1":
            self._h1()
        else:
            self._h2()

    def _h1(self):
        if self.response_done:
            self._done(f"unexpected bytes after the response: {self.buf[:60]!r}")
            return
        head_end = self.buf.find(b"\r\n\r\n")
        if head_end < 0:
            return
        head = self.buf[:head_end].decode("latin-1")
        body = self.buf[head_end + 4:]
        self.status = int(head.split(" ", 2)[1])
        m = re.search(r"^content-length:\s*(\d+)", head, re.I | re.M)
        if m:
            if len(body) < int(m.group(1)):
                return
        elif re.search(r"^transfer-encoding:\s*chunked", head, re.I | re.M):
            if not body.endswith(b"0\r\n\r\n"):
                return
        self.response_done = True
        self.buf = b""
        if self.status != 200:
            self._done(f"HTTP/1.1 status {self.status}")
        elif re.search(r"^connection:\s*close", head, re.I | re.M):
            self._done("the server answered Connection: close")
        else:
            self._done()

    def _h2(self):
        while len(self.buf) >= 9:
            length = int.from_bytes(self.buf[:3], "big")
            if len(self.buf) < 9 + length:
                return
            ftype, flags = self.buf[3], self.buf[4]
            sid = int.from_bytes(self.buf[5:9], "big") & 0x7FFFFFFF
            payload = self.buf[9:9 + length]
            self.buf = self.buf[9 + length:]
            if ftype == 4:  # SETTINGS
                if flags & 1:
                    self.settings_acked = True
                else:
                    self.server_settings = True
                    self.transport.write(SETTINGS_ACK)
            elif ftype == 6 and not flags & 1:  # PING: answer it
                self.pings += 1
                self.transport.write(frame(6, 1, 0, payload))
            elif ftype == 7:  # GOAWAY
                self.goaway = True
                self._done("GOAWAY from the server")
            elif ftype == 3 and sid == 1:  # RST_STREAM
                self._done("request reset by the server")
            elif ftype == 1 and sid == 1:  # HEADERS of the response
                block = payload
                if flags & 0x8:  # PADDED
                    block = block[1:len(block) - block[0]]
                if flags & 0x20:  # PRIORITY
                    block = block[5:]
                if self.status is None:
                    # :status 200 is static table entry 8 (0x88); both servers send it so.
                    self.status = 200 if block[:1] == b"\x88" else -1
                if flags & 1:
                    self.response_done = True
            elif ftype == 0 and sid == 1:  # DATA
                if length:
                    inc = struct.pack(">I", length)
                    self.transport.write(frame(8, 0, 0, inc) + (b"" if flags & 1 else frame(8, 0, 1, inc)))
                if flags & 1:
                    self.response_done = True
        if self.server_settings and self.settings_acked and self.response_done:
            if self.mode == "h2c-req" and self.status != 200:
                self._done(f"h2 response status not 200 (first header byte {self.status})")
            else:
                self._done()

    def connection_lost(self, exc):
        self.closed = True
        self._done(f"connection closed by the server ({exc})")

    def abort(self):
        """Close with a reset (SO_LINGER 0): no TIME_WAIT left behind for the next variant."""
        if self.transport and not self.closed:
            sock = self.transport.get_extra_info("socket")
            try:
                sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
            except OSError:
                pass
            self.transport.abort()


async def open_conns(port, mode, n, concurrency=64, timeout=30.0):
    """Opens n connections of `mode`; returns (conns, errors)."""
    loop = asyncio.get_running_loop()
    sem = asyncio.Semaphore(concurrency)
    conns, errors = [], []

    async def one():
        async with sem:
            ready = loop.create_future()
            try:
                _, proto = await loop.create_connection(lambda: Conn(mode, ready), "127.0.0.1", port)
                conns.append(proto)
                await asyncio.wait_for(ready, timeout)
            except Exception as e:  # noqa: BLE001 (counted and reported)
                errors.append(str(e) or type(e).__name__)
    await asyncio.gather(*(one() for _ in range(n)))
    return conns, errors


# ---------------------------------------------------------------- measurements
def status_kib(pid, key="VmRSS"):
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith(key + ":"):
                return int(line.split()[1])
    return 0


def smaps(pid):
    """Anonymous and Private_Dirty KiB from /proc/PID/smaps_rollup."""
    out = {}
    with open(f"/proc/{pid}/smaps_rollup") as f:
        for line in f:
            k, _, v = line.partition(":")
            if k in ("Anonymous", "Private_Dirty", "Rss"):
                out[k] = int(v.split()[0])
    return out


def pids_of(server):
    """The server's PIDs: the gateway itself; nginx's master and its children."""
    pid = server["proc"].pid
    if server["kind"] == "nginx":
        from procs import descendants
        return [pid] + [p for p, _ in descendants(pid)]
    return [pid]


def rss_kib(server):
    total = 0
    for pid in pids_of(server):
        try:
            total += status_kib(pid)
        except OSError:
            pass
    return total


def http_get(port, path, timeout=5):
    c = http.client.HTTPConnection("127.0.0.1", port, timeout=timeout)
    try:
        c.request("GET", path)
        r = c.getresponse()
        return r.status, r.read()
    finally:
        c.close()


def wait_http(port, path, proc, what):
    for _ in range(200):
        if proc.poll() is not None:
            raise SystemExit(f"{what} exited ({proc.returncode}) before it answered")
        try:
            if http_get(port, path)[0] == 200:
                return
        except OSError:
            pass
        time.sleep(0.05)
    raise SystemExit(f"{what}: no 200 for {path} on {port}")


def gateway_metric(admin_port, series):
    _, text = http_get(admin_port, "/metrics")
    m = re.search(rb"^" + re.escape(series.encode()) + rb" (\S+)$", text, re.M)
    return int(float(m.group(1))) if m else None


def cache_bytes(admin_port):
    return gateway_metric(admin_port, "dashpush_cache_size_bytes")


def nofile_preexec(limit):
    def set_limit():
        resource.setrlimit(resource.RLIMIT_NOFILE, (limit, limit))
    return set_limit


# ---------------------------------------------------------------- servers
def start_dashpush(procs, args, work, origin_port, nofile):
    port, admin = free_port(), free_port()
    cfg = os.path.join(work, "dashpush.yaml")
    hour = 3_600_000
    with open(cfg, "w") as f:
        f.write(f"origin: http://127.0.0.1:{origin_port}\nlisten: 127.0.0.1:{port}\n"
                f"admin: 127.0.0.1:{admin}\n"
                f"limits:\n  idle_timeout_ms: {hour}\n  header_timeout_ms: {hour}\n"
                f"  max_connections: {args.conns + 1024}\n"
                f"  max_connections_per_client: {args.conns + 1024}\n"
                f"  max_open_files: {nofile}\n")
    log = open(os.path.join(work, "dashpush.log"), "ab")
    p = procs.start([args.bin, "run", "--listen", f"127.0.0.1:{port}", "--admin", f"127.0.0.1:{admin}",
                     "--origin", f"http://127.0.0.1:{origin_port}", "-c", cfg],
                    stdout=subprocess.DEVNULL, stderr=log, preexec_fn=nofile_preexec(nofile))
    log.close()
    wait_http(port, MPD, p, "dashpush run")
    return {"kind": "dashpush", "proc": p, "h1": port, "h2": port, "admin": admin}


def start_nginx(procs, args, work, origin_port, nofile, slots=None):
    """nginx with `slots` worker_connections (default: conns + 1024)."""
    h1, h2 = free_port(), free_port()
    slots = args.conns + 1024 if slots is None else slots
    d = os.path.join(work, "nginx")
    os.makedirs(os.path.join(d, "cache"), exist_ok=True)
    conf = os.path.join(d, "nginx.conf")
    user = "user root;\n" if os.getuid() == 0 else ""
    with open(conf, "w") as f:
        f.write(f"""{user}worker_processes {args.nginx_workers};
worker_rlimit_nofile {nofile};
daemon off;
pid {d}/nginx.pid;
error_log {d}/error.log error;
events {{ worker_connections {slots}; }}
http {{
    access_log off;
    keepalive_requests 1000000;
    keepalive_timeout 3600s;
    client_header_timeout 3600s;
    client_body_temp_path {d}/body; proxy_temp_path {d}/proxy;
    fastcgi_temp_path {d}/fcgi; uwsgi_temp_path {d}/uwsgi; scgi_temp_path {d}/scgi;
    proxy_cache_path {d}/cache levels=1:2 keys_zone=dash:10m max_size=256m inactive=60m use_temp_path=off;
    upstream origin {{ server 127.0.0.1:{origin_port}; keepalive 32; }}
    server {{
        listen 127.0.0.1:{h1} backlog=4096;
        listen 127.0.0.1:{h2} http2 backlog=4096;
        location / {{
            proxy_pass http://origin;
            proxy_http_version 1.1;
            proxy_set_header Connection "";
            proxy_cache dash;
            proxy_cache_valid 200 60m;
        }}
    }}
}}
""")
    log = open(os.path.join(d, "stderr.log"), "ab")
    p = procs.start([args.nginx, "-p", d, "-e", os.path.join(d, "error.log"), "-c", conf],
                    tree=True, stdout=subprocess.DEVNULL, stderr=log,
                    preexec_fn=nofile_preexec(nofile))
    log.close()
    wait_http(h1, MPD, p, "nginx")
    return {"kind": "nginx", "proc": p, "h1": h1, "h2": h2, "admin": None}


async def measure(server, mode, n, settle):
    port = server["h1"] if mode == "h1" else server["h2"]
    # Warm: one connection of this variant, so lazily built state is not counted per connection.
    conns, errors = await open_conns(port, mode, 1)
    if errors:
        raise SystemExit(f"{server['kind']} {mode}: warm-up connection failed: {errors[0]}")
    for c in conns:
        c.abort()
    await asyncio.sleep(0.5)
    pid = server["proc"].pid
    before = rss_kib(server)
    sm_before = smaps(pid)
    t0 = time.monotonic()
    conns, errors = await open_conns(port, mode, n)
    opened = time.monotonic() - t0
    await asyncio.sleep(settle)
    after = rss_kib(server)
    sm_after = smaps(pid)
    cache = cache_bytes(server["admin"]) if server["admin"] else None
    parked = gateway_metric(server["admin"], "dashpush_h2_parked_connections") if server["admin"] else None
    lost = sum(1 for c in conns if c.closed or c.goaway)
    pings = sum(c.pings for c in conns)
    for c in conns:
        c.abort()
    await asyncio.sleep(0.2)
    res = {"server": server["kind"], "variant": mode, "conns": len(conns) - lost, "wanted": n,
           "errors": len(errors), "closed_by_server": lost, "open_s": round(opened, 2),
           "rss_before_kib": before, "rss_after_kib": after,
           "kib_per_conn": round((after - before) / n, 2),
           "anon_kib_per_conn": round((sm_after.get("Anonymous", 0) - sm_before.get("Anonymous", 0)) / n, 2)
           if server["kind"] == "dashpush" else None,
           "pings_answered": pings, "cache_bytes": cache, "parked": parked}
    if errors:
        res["first_error"] = errors[0]
    return res


def draw(results, variants, path, conns):
    """KiB per idle connection by variant, each server a bar, the target dashed (bars.py)."""
    sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
    import bars
    by = {(r["variant"], r["server"]): r["kib_per_conn"] for r in results}
    groups = [{"label": LABEL[v].replace(" idle", "\nidle").replace(" after", "\nafter"),
               "bars": {s: by[(v, s)] for s in ("dashpush", "nginx") if (v, s) in by},
               "target": TARGET_KIB[v]} for v in variants]
    bars.write({"title": f"RSS growth per connection, {conns} connections (benches/idle_memory.py)",
                "panels": [{"title": "KiB per connection", "groups": groups}]}, path)


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--conns", type=int, default=10000)
    ap.add_argument("--bin", default="target/release/dashpush")
    ap.add_argument("--nginx", default="/usr/sbin/nginx")
    ap.add_argument("--nginx-workers", type=int, default=1)
    ap.add_argument("--variants", default="h2c,h1,h2c-req")
    ap.add_argument("--servers", default="dashpush,nginx")
    ap.add_argument("--settle", type=float, default=1.0, help="seconds after the last connection")
    ap.add_argument("--settle-served", type=float, default=6.5,
                    help="the same for h2c-req (past dashpush's http2.park_when_idle_ms)")
    ap.add_argument("--json", help="also write the results here")
    ap.add_argument("--svg", help="also draw KiB per connection, dashpush against nginx, here")
    args = ap.parse_args()
    variants = args.variants.split(",")
    servers = args.servers.split(",")
    for v in variants:
        if v not in TARGET_KIB:
            ap.error(f"unknown variant {v}")
    if not os.path.exists(args.bin):
        ap.error(f"{args.bin} not found (cargo build --release)")
    exit_on_signals()

    # Descriptors: this process holds `conns` sockets at once; each server as many plus its own.
    # The servers get 2 x conns + 4096 when the hard limit can be raised (root with
    # CAP_SYS_RESOURCE), else the hard limit, which must leave room for conns + 1024.
    need = args.conns + 1024
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    server_nofile = max(2 * args.conns + 4096, hard)
    try:
        resource.setrlimit(resource.RLIMIT_NOFILE, (max(soft, need), server_nofile))
    except (ValueError, OSError):
        server_nofile = hard
        if need > hard:
            raise SystemExit(f"need {need} descriptors; the hard limit is {hard} (raise it with "
                             "ulimit -Hn or run with CAP_SYS_RESOURCE)")
        resource.setrlimit(resource.RLIMIT_NOFILE, (max(soft, need), hard))

    st = os.stat(args.bin)
    print(f"binary {args.bin}: {st.st_size} bytes, modified "
          f"{time.strftime('%Y-%m-%d %H:%M:%S', time.localtime(st.st_mtime))}; "
          f"{args.conns} connections per variant; nginx {args.nginx_workers} worker(s)", flush=True)
    work = tempfile.mkdtemp(prefix="idle-memory-")
    os.chmod(work, 0o755)
    procs = Procs()
    results = []
    try:
        op = free_port()
        olog = open(os.path.join(work, "origin.log"), "ab")
        origin = procs.start([args.bin, "origin", "--demo", "vod", "--listen", f"127.0.0.1:{op}"],
                             stdout=subprocess.DEVNULL, stderr=olog)
        olog.close()
        wait_http(op, MPD, origin, "dashpush origin")
        # nginx allocates and initialises its connection and event arrays for every
        # worker_connections slot at start, so that part of its per-connection cost is in the
        # "before" RSS: measured here against a start with 1024 slots and printed apart.
        prealloc = None
        if "nginx" in servers:
            small = start_nginx(procs, args, work, op, server_nofile, slots=1024)
            time.sleep(0.3)
            small_rss = rss_kib(small)
            procs.stop(small["proc"])
            big = start_nginx(procs, args, work, op, server_nofile)
            time.sleep(0.3)
            prealloc = (rss_kib(big) - small_rss) / args.conns
            procs.stop(big["proc"])
        for v in variants:
            for kind in servers:
                start = start_dashpush if kind == "dashpush" else start_nginx
                server = start(procs, args, work, op, server_nofile)
                try:
                    for path in (MPD, SEGMENT):
                        status, _ = http_get(server["h1"], path)
                        if status != 200:
                            raise SystemExit(f"{kind}: warm-up GET {path}: {status}")
                    settle = args.settle_served if v == "h2c-req" else args.settle
                    r = asyncio.run(measure(server, v, args.conns, settle))
                finally:
                    procs.stop(server["proc"])
                results.append(r)
                extra = (f", {r['errors']} failed (first: {r['first_error']})" if r["errors"] else "")
                extra += f", {r['closed_by_server']} closed by the server" if r["closed_by_server"] else ""
                extra += f", {r['parked']} parked" if r.get("parked") is not None else ""
                print(f"  {LABEL[v]:<26} {kind:<8} {r['conns']} open in {r['open_s']} s: RSS "
                      f"{r['rss_before_kib'] / 1024:.1f} -> {r['rss_after_kib'] / 1024:.1f} MiB, "
                      f"{r['kib_per_conn']:.2f} KiB/conn{extra}", flush=True)
    finally:
        procs.stop_all()
        shutil.rmtree(work, ignore_errors=True)

    print()
    print(f"{'variant':<26} {'server':<9} {'KiB/conn':>9} {'ratio':>7}  target")
    by = {(r["variant"], r["server"]): r for r in results}
    for v in variants:
        d, n = by.get((v, "dashpush")), by.get((v, "nginx"))
        for r in (d, n):
            if not r:
                continue
            ok = r["errors"] == 0 and r["closed_by_server"] == 0
            ratio = ""
            if r is d and n and n["kib_per_conn"] > 0:
                ratio = f"{d['kib_per_conn'] / n['kib_per_conn']:.2f}x"
            target = ""
            if r is d:
                met = "met" if d["kib_per_conn"] <= TARGET_KIB[v] else "NOT met"
                target = f"<= {TARGET_KIB[v]} KiB: {met}"
            print(f"{LABEL[v]:<26} {r['server']:<9} {r['kib_per_conn']:>9.2f} {ratio:>7}  {target}"
                  f"{'' if ok else '  (INVALID: connections failed or closed)'}")
    if prealloc is not None:
        print(f"nginx preallocates {prealloc:.2f} KiB per worker_connections slot at start (RSS with"
              f" {args.conns + 1024} slots against 1024), not in the nginx rows above; with it, nginx's"
              " per-connection figures are that much higher: "
              + ", ".join(f"{LABEL[r['variant']]} {r['kib_per_conn'] + prealloc:.2f} KiB"
                          for r in results if r["server"] == "nginx"))
    for r in results:
        if r["server"] != "dashpush":
            continue
        cache = r["cache_bytes"] or 0
        limit = cache + (100 << 20)
        # With another --conns the verdict is on the RSS scaled linearly to 10,000 connections.
        scaled = r["rss_before_kib"] + (r["rss_after_kib"] - r["rss_before_kib"]) * 10000 / r["wanted"]
        met = "met" if scaled * 1024 <= limit else "NOT met"
        print(f"dashpush RSS at {r['wanted']} idle {LABEL[r['variant']]}: {r['rss_after_kib'] / 1024:.1f} MiB"
              f" (anonymous +{r['anon_kib_per_conn']:.2f} KiB/conn); cache in use {cache / 1048576:.2f} MiB;"
              f" target <= cache + 100 MiB = {limit / 1048576:.1f} MiB: {met}"
              + ("" if r["wanted"] == 10000 else f" (scaled to 10,000: {scaled / 1024:.1f} MiB)"))
    print(json.dumps(results))
    if args.svg:
        draw(results, variants, args.svg, args.conns)
    if args.json:
        with open(args.json, "w") as f:
            json.dump(results, f, indent=1)
    if any(r["errors"] or r["closed_by_server"] for r in results):
        sys.exit(1)


if __name__ == "__main__":
    main()
