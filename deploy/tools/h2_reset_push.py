#!/usr/bin/env python3
"""Asks for a segment with a push directive over h2c and resets every push mid-body.

  h2_reset_push.py HOST:PORT PATH DIRECTIVE

The connection's initial stream window is 0, so the gateway can send a pushed response's
HEADERS but none of its body; the script waits for those HEADERS and then answers
RST_STREAM(CANCEL), so the push ends as a reset after its response started (the gateway counts
it in dashpush_push_reset_total, _wasted_bytes_total and _saved_bytes_total). The request's own
stream gets a large window so its response arrives. Prints what happened; exits 1 if no push was
promised or none could be reset.
"""
import socket
import sys
import time

import h2.config
import h2.connection
import h2.events
import h2.settings
from h2.errors import ErrorCodes


def main(target, path, directive):
    host, port = target.rsplit(":", 1)
    sock = socket.create_connection((host, int(port)), timeout=5)
    conn = h2.connection.H2Connection(
        config=h2.config.H2Configuration(client_side=True, header_encoding="utf-8"))
    conn.initiate_connection()
    conn.update_settings({h2.settings.SettingCodes.ENABLE_PUSH: 1,
                          h2.settings.SettingCodes.INITIAL_WINDOW_SIZE: 0})
    sid = conn.get_next_available_stream_id()
    conn.send_headers(sid, [(":method", "GET"), (":scheme", "http"), (":authority", target),
                            (":path", path), ("accept-push-policy", directive)], end_stream=True)
    conn.increment_flow_control_window(1 << 24, stream_id=sid)
    conn.increment_flow_control_window(1 << 24)
    sock.sendall(conn.data_to_send())
    promised, reset, done = set(), set(), False
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline and not (done and promised and promised <= reset):
        data = sock.recv(65536)
        if not data:
            break
        for ev in conn.receive_data(data):
            if isinstance(ev, h2.events.PushedStreamReceived):
                promised.add(ev.pushed_stream_id)
            elif isinstance(ev, h2.events.ResponseReceived) and ev.stream_id in promised:
                conn.reset_stream(ev.stream_id, ErrorCodes.CANCEL)
                reset.add(ev.stream_id)
            elif isinstance(ev, h2.events.DataReceived):
                conn.acknowledge_received_data(ev.flow_controlled_length, ev.stream_id)
            elif isinstance(ev, h2.events.StreamEnded) and ev.stream_id == sid:
                done = True
            elif isinstance(ev, h2.events.StreamReset) and ev.stream_id in promised:
                reset.add(ev.stream_id)
        sock.sendall(conn.data_to_send())
    conn.close_connection()
    sock.sendall(conn.data_to_send())
    sock.close()
    print(f"h2_reset_push: {len(promised)} pushes promised, {len(reset)} reset, response done: {done}")
    return 0 if promised and reset else 1


if __name__ == "__main__":
    sys.exit(main(*sys.argv[1:4]))
