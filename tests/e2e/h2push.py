#!/usr/bin/python3
"""An independent HTTP/2 client (python3-h2) for the push tests.

Sends the given requests one after the other on one h2c connection, each optionally with a
push directive, and prints one JSON object: per request its status, headers, body, and every
push promised on it with the pushed response. Bodies are given in hex, with length and SHA-256.

  h2push.py HOST:PORT [--no-push] [--reset-pushes] [--header NAME:VALUE]...
            PATH[|DIRECTIVE] ...

--no-push       send SETTINGS_ENABLE_PUSH = 0
--reset-pushes  answer every PUSH_PROMISE with RST_STREAM(CANCEL) at once; the initial stream
                window is 0 so the server cannot have sent push DATA before the reset arrives
                (the parent stream's window is opened explicitly)
--quit-after-first-push  close the connection as soon as the first pushed stream ended
--no-linger     send the next request the moment the previous one and its pushes ended
--directive-header NAME  send directives in header NAME (default accept-push-policy)

Per response it also records the order in which streams ended (`end_seq`), how many socket
reads delivered DATA for it (`data_events`), and ms from the request to its first DATA and to
its end (`t_first`, `t_end`).
"""
import hashlib
import json
import socket
import sys
import time

import h2.config
import h2.connection
import h2.events
import h2.settings
from h2.errors import ErrorCodes


def digest(r):
    body = r.pop("body")
    r["len"] = len(body)
    r["sha256"] = hashlib.sha256(body).hexdigest()
    r["body_hex"] = body.hex()
    for p in r.get("pushes", []):
        digest(p)
    return r


def main(argv):
    target = argv[0]
    no_push = "--no-push" in argv
    reset_pushes = "--reset-pushes" in argv
    quit_after_first = "--quit-after-first-push" in argv
    linger = 0.0 if "--no-linger" in argv else 0.3
    directive_header = "accept-push-policy"
    seq = [0]
    extra = []
    requests = []
    i = 1
    while i < len(argv):
        a = argv[i]
        if a == "--header":
            name, value = argv[i + 1].split(":", 1)
            extra.append((name.strip().lower(), value.strip()))
            i += 2
            continue
        if a == "--directive-header":
            directive_header = argv[i + 1].strip().lower()
            i += 2
            continue
        if not a.startswith("--"):
            path, _, directive = a.partition("|")
            requests.append((path, directive or None))
        i += 1

    host, port = target.rsplit(":", 1)
    sock = socket.create_connection((host, int(port)), timeout=30)
    conn = h2.connection.H2Connection(
        config=h2.config.H2Configuration(client_side=True, header_encoding="utf-8")
    )
    settings = {h2.settings.SettingCodes.ENABLE_PUSH: 0 if no_push else 1}
    if reset_pushes:
        settings[h2.settings.SettingCodes.INITIAL_WINDOW_SIZE] = 0
    conn.initiate_connection()
    conn.update_settings(settings)
    sock.sendall(conn.data_to_send())

    out = []
    pushed = {}  # stream id -> record
    for path, directive in requests:
        sid = conn.get_next_available_stream_id()
        headers = [
            (":method", "GET"),
            (":scheme", "http"),
            (":authority", target),
            (":path", path),
            ("accept", "*/*"),
            ("user-agent", "h2push-test"),
        ] + extra
        if directive is not None:
            headers.append((directive_header, directive))
        conn.send_headers(sid, headers, end_stream=True)
        if reset_pushes:
            conn.increment_flow_control_window(1 << 24, stream_id=sid)
        sock.sendall(conn.data_to_send())
        t0 = time.monotonic()
        rec = {"path": path, "status": None, "headers": {}, "body": b"", "pushes": [],
               "data_events": 0, "t_first": None, "t_end": None, "end_seq": None}
        open_streams = {sid}
        done_at = None
        while True:
            if not open_streams:
                # Parent and every push ended; linger briefly for stray frames on reset pushes.
                if done_at is None:
                    done_at = time.monotonic()
                if time.monotonic() - done_at >= linger:
                    break
                sock.settimeout(max(linger, 0.001))
            try:
                data = sock.recv(65536)
            except socket.timeout:
                if open_streams:
                    raise SystemExit("timed out waiting for streams %s" % sorted(open_streams))
                break
            if not data:
                break
            touched = set()
            quit_now = False
            for ev in conn.receive_data(data):
                if isinstance(ev, h2.events.ResponseReceived):
                    r = rec if ev.stream_id == sid else pushed.get(ev.stream_id)
                    if r is not None:
                        for k, v in ev.headers:
                            if k == ":status":
                                r["status"] = int(v)
                            else:
                                r["headers"][k] = v
                elif isinstance(ev, h2.events.PushedStreamReceived):
                    p = {
                        "path": dict(ev.headers)[":path"],
                        "authority": dict(ev.headers)[":authority"],
                        "request_headers": {k: v for k, v in ev.headers},
                        "status": None,
                        "headers": {},
                        "body": b"",
                        "reset_by_client": False,
                        "reset_by_server": False,
                        "data_events": 0, "t_first": None, "t_end": None, "end_seq": None,
                    }
                    pushed[ev.pushed_stream_id] = p
                    rec["pushes"].append(p)
                    if reset_pushes:
                        conn.reset_stream(ev.pushed_stream_id, ErrorCodes.CANCEL)
                        p["reset_by_client"] = True
                    else:
                        open_streams.add(ev.pushed_stream_id)
                elif isinstance(ev, h2.events.DataReceived):
                    r = rec if ev.stream_id == sid else pushed.get(ev.stream_id)
                    if r is not None:
                        r["body"] += ev.data
                        if r["t_first"] is None:
                            r["t_first"] = (time.monotonic() - t0) * 1000
                        if ev.stream_id not in touched:
                            touched.add(ev.stream_id)
                            r["data_events"] += 1
                    conn.acknowledge_received_data(ev.flow_controlled_length, ev.stream_id)
                elif isinstance(ev, h2.events.StreamEnded):
                    open_streams.discard(ev.stream_id)
                    r = rec if ev.stream_id == sid else pushed.get(ev.stream_id)
                    if r is not None:
                        seq[0] += 1
                        r["end_seq"] = seq[0]
                        r["t_end"] = (time.monotonic() - t0) * 1000
                        if quit_after_first and ev.stream_id in pushed:
                            quit_now = True
                elif isinstance(ev, h2.events.StreamReset):
                    if ev.stream_id in pushed:
                        pushed[ev.stream_id]["reset_by_server"] = True
                    open_streams.discard(ev.stream_id)
                elif isinstance(ev, h2.events.ConnectionTerminated):
                    open_streams.clear()
            sock.sendall(conn.data_to_send())
            if quit_now:
                sock.close()
                out.append(rec)
                print(json.dumps([digest(r) for r in out]))
                return
        sock.settimeout(30)
        out.append(rec)

    conn.close_connection()
    sock.sendall(conn.data_to_send())
    sock.close()

    print(json.dumps([digest(r) for r in out]))


if __name__ == "__main__":
    main(sys.argv[1:])
