#!/usr/bin/python3
"""An independent client (python3-h2) of the sub-protocol over HTTP/2 extended CONNECT
(RFC 8441): opens the WebSocket on an h2c connection, sends one MPD request with the given
push directive, and prints JSON: the CONNECT status, the server's SETTINGS_ENABLE_CONNECT_PROTOCOL,
and per DASH stream its messages (code, END, metadata) and payload length.

  ws_h2.py HOST:PORT PATH DIRECTIVE [--no-subprotocol]
"""
import json
import os
import socket
import struct
import sys

import h2.config
import h2.connection
import h2.events
import h2.settings

SUBPROTOCOL = "2016.serverpush.dash.mpeg.org"


def ws_frame(payload):
    """A masked binary WebSocket frame (client to server)."""
    head = bytearray([0x82])
    n = len(payload)
    if n < 126:
        head.append(0x80 | n)
    elif n < 65536:
        head.append(0x80 | 126)
        head += struct.pack(">H", n)
    else:
        head.append(0x80 | 127)
        head += struct.pack(">Q", n)
    mask = os.urandom(4)
    head += mask
    return bytes(head) + bytes(b ^ mask[i % 4] for i, b in enumerate(payload))


def ws_frames(buf):
    """Complete server frames in buf -> (list of (opcode, payload), rest)."""
    out = []
    while len(buf) >= 2:
        op, ln = buf[0] & 0x0F, buf[1] & 0x7F
        at = 2
        if ln == 126:
            if len(buf) < 4:
                break
            ln, at = struct.unpack(">H", buf[2:4])[0], 4
        elif ln == 127:
            if len(buf) < 10:
                break
            ln, at = struct.unpack(">Q", buf[2:10])[0], 10
        if len(buf) < at + ln:
            break
        out.append((op, buf[at:at + ln]))
        buf = buf[at + ln:]
    return out, buf


def dash_message(code, stream, meta, end=True):
    m = json.dumps(meta, separators=(",", ":")).encode()
    return struct.pack(">BBII", code, 1 if end else 0, stream, len(m)) + m


def main(argv):
    target, path, directive = argv[0], argv[1], argv[2]
    offer = "--no-subprotocol" not in argv
    host, port = target.rsplit(":", 1)
    sock = socket.create_connection((host, int(port)), timeout=10)
    conn = h2.connection.H2Connection(h2.config.H2Configuration(client_side=True, header_encoding="utf-8"))
    conn.initiate_connection()
    sock.sendall(conn.data_to_send())
    # Wait for the server's SETTINGS before using :protocol.
    enabled = None
    while enabled is None:
        for ev in conn.receive_data(sock.recv(65536)):
            if isinstance(ev, h2.events.RemoteSettingsChanged):
                s = ev.changed_settings.get(h2.settings.SettingCodes.ENABLE_CONNECT_PROTOCOL)
                enabled = bool(s and s.new_value)
        sock.sendall(conn.data_to_send())
    sid = conn.get_next_available_stream_id()
    headers = [(":method", "CONNECT"), (":protocol", "websocket"), (":scheme", "http"),
               (":path", path), (":authority", target), ("sec-websocket-version", "13")]
    if offer:
        headers.append(("sec-websocket-protocol", SUBPROTOCOL))
    conn.send_headers(sid, headers)
    sock.sendall(conn.data_to_send())
    status, buf, streams, done = None, b"", {}, False
    sent = False
    while not done:
        data = sock.recv(65536)
        if not data:
            break
        for ev in conn.receive_data(data):
            if isinstance(ev, h2.events.ResponseReceived):
                status = int(dict(ev.headers)[":status"])
                if status != 200:
                    done = True
                elif not sent:
                    msg = dash_message(1, 1, {"url": "/vod/manifest.mpd", "push_directive": directive})
                    conn.send_data(sid, ws_frame(msg))
                    sent = True
            elif isinstance(ev, h2.events.DataReceived):
                conn.acknowledge_received_data(ev.flow_controlled_length, ev.stream_id)
                if ev.stream_id == sid:
                    buf += ev.data
            elif isinstance(ev, (h2.events.StreamEnded, h2.events.StreamReset)):
                done = True
        frames, buf = ws_frames(buf)
        for op, payload in frames:
            if op != 2:
                continue
            code, flags, stream, mlen = struct.unpack(">BBII", payload[:10])
            meta = json.loads(payload[10:10 + mlen])
            rec = streams.setdefault(str(stream), {"messages": [], "len": 0})
            rec["messages"].append({"code": code, "end": bool(flags & 1), "meta": meta})
            rec["len"] += len(payload) - 10 - mlen
            if stream == 1 and code == 5:
                done = True
        sock.sendall(conn.data_to_send())
    print(json.dumps({"status": status, "connect_protocol": enabled, "streams": streams}))


if __name__ == "__main__":
    main(sys.argv[1:])
