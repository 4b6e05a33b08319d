#!/usr/bin/python3
"""Pushes in flight bounded by what the connection drains, seen by an independent HTTP/2
client (python3-h2).

  h2drain.py HOST:PORT MPD FIRST SECOND DIRECTIVE RATE

On one h2c connection with 4 KiB stream windows: fetches MPD, then FIRST with `push-next;1`,
taking every body at RATE bytes per second (window updates paced; 0 = as fast as it comes),
then, once FIRST and its push have ended, SECOND with DIRECTIVE, and counts what SECOND's
answer promised (its PUSH_PROMISE frames and its ack header). The pushes of SECOND are not
waited for.

Prints one JSON object: the paths promised on SECOND, its ack, and the seconds the first
exchange took.
"""
import json
import socket
import sys
import time

import h2.config
import h2.connection
import h2.events
import h2.settings


def main(argv):
    host, port = argv[0].rsplit(":", 1)
    mpd, first, second, directive, rate = argv[1], argv[2], argv[3], argv[4], float(argv[5])
    sock = socket.create_connection((host, int(port)))
    conn = h2.connection.H2Connection(h2.config.H2Configuration(client_side=True))
    conn.local_settings = h2.settings.Settings(
        client=True,
        initial_values={
            h2.settings.SettingCodes.ENABLE_PUSH: 1,
            h2.settings.SettingCodes.INITIAL_WINDOW_SIZE: 4096,
        },
    )
    conn.initiate_connection()
    sock.sendall(conn.data_to_send())

    def request(path, extra):
        sid = conn.get_next_available_stream_id()
        headers = [(":method", "GET"), (":scheme", "http"), (":authority", argv[0]),
                   (":path", path)] + extra
        conn.send_headers(sid, headers, end_stream=True)
        sock.sendall(conn.data_to_send())
        return sid

    owed = []  # (stream, bytes) received and not yet acknowledged, oldest first
    credit = [0.0]
    last = [time.monotonic()]

    def pay():
        """Acknowledges received bytes at `rate` (all at once when rate is 0)."""
        now = time.monotonic()
        credit[0] = min(credit[0] + (now - last[0]) * rate, 8192) if rate else float("inf")
        last[0] = now
        while owed and credit[0] >= owed[0][1]:
            sid, n = owed.pop(0)
            credit[0] -= n
            try:
                conn.acknowledge_received_data(n, sid)
            except Exception:  # the stream ended meanwhile: the connection window still counts
                conn.increment_flow_control_window(n)

    promised_on = {}  # pushed stream -> parent
    paths = {}
    ended = set()
    acks = {}
    mpd_sid = request(mpd, [])
    first_sid = second_sid = None
    first_started = first_took = None
    start = time.monotonic()
    sock.settimeout(0.02)
    while time.monotonic() - start < 30:
        if mpd_sid in ended and first_sid is None:
            first_started = time.monotonic()
            first_sid = request(first, [("accept-push-policy",
                                         "urn:mpeg:dash:fdh:2016:push-next;1")])
        first_pushes = [p for p, parent in promised_on.items() if parent == first_sid]
        if (second_sid is None and first_sid in ended and first_pushes
                and all(p in ended for p in first_pushes)):
            first_took = time.monotonic() - first_started
            second_sid = request(second, [("accept-push-policy", directive)])
        if second_sid is not None and second_sid in acks:
            # Promises come before the answer's head; give a straggler a moment.
            time.sleep(0.2)
            try:
                data = sock.recv(65536)
                for ev in conn.receive_data(data):
                    if isinstance(ev, h2.events.PushedStreamReceived):
                        promised_on[ev.pushed_stream_id] = ev.parent_stream_id
                        paths[ev.pushed_stream_id] = dict(ev.headers).get(b":path", b"").decode()
            except socket.timeout:
                pass
            break
        pay()
        sock.sendall(conn.data_to_send())
        try:
            data = sock.recv(65536)
        except socket.timeout:
            continue
        if not data:
            break
        for ev in conn.receive_data(data):
            if isinstance(ev, h2.events.PushedStreamReceived):
                promised_on[ev.pushed_stream_id] = ev.parent_stream_id
                paths[ev.pushed_stream_id] = dict(ev.headers).get(b":path", b"").decode()
            elif isinstance(ev, h2.events.ResponseReceived):
                hdrs = dict(ev.headers)
                acks[ev.stream_id] = hdrs.get(b"push-policy", b"").decode()
            elif isinstance(ev, h2.events.DataReceived):
                if ev.flow_controlled_length:
                    owed.append((ev.stream_id, ev.flow_controlled_length))
            elif isinstance(ev, (h2.events.StreamEnded, h2.events.StreamReset)):
                ended.add(ev.stream_id)
        sock.sendall(conn.data_to_send())
    sock.close()
    print(json.dumps({
        "second_promised": [paths[p] for p, parent in sorted(promised_on.items())
                            if parent == second_sid],
        "second_ack": acks.get(second_sid),
        "first_took_s": first_took,
    }))


if __name__ == "__main__":
    main(sys.argv[1:])
