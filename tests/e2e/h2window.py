#!/usr/bin/python3
"""Push scheduling under flow control, seen by an independent HTTP/2 client (python3-h2).

  h2window.py HOST:PORT MPD SEGMENT DIRECTIVE (--hold-first | --hold-all | --open)

Fetches MPD, then SEGMENT with DIRECTIVE (accept-push-policy) on one h2c connection whose
connection window is 16 MiB.

--hold-first  every stream starts with a 4 KiB window; each push but the first gets 16 MiB more
              as soon as its response head arrives; the first gets nothing until every other
              push has ended (or 3 s passed). A work-conserving server sends the others
              meanwhile.
--hold-all    every stream starts with a 4 KiB window, and no push gets more until every promised
              push has received all its window allows (its first 4 KiB, or all of a smaller
              body), or 3 s passed; then every push gets 16 MiB more. While each push is blocked
              on its own window the connection's is wide open: a work-conserving server fills
              every promised push's window, not just the first ones'.
--open        every stream has a 16 MiB window: nothing blocks, pushes should start in push order.

Prints one JSON object: the pushed paths in promise order, each with its length and the order
in which pushed streams started (first DATA) and ended, and whether the other pushes had all ended while the first was
still held back (`others_ended_while_first_held`), or whether every push had its first window's
worth while all were held (`all_filled_while_held`).
"""
import json
import socket
import sys
import time

import h2.config
import h2.connection
import h2.events
import h2.settings

BIG = 16 * 1024 * 1024


def main(argv):
    host, port = argv[0].rsplit(":", 1)
    mpd, segment, directive, mode = argv[1], argv[2], argv[3], argv[4]
    hold = mode in ("--hold-first", "--hold-all")
    hold_all = mode == "--hold-all"
    sock = socket.create_connection((host, int(port)))
    conn = h2.connection.H2Connection(h2.config.H2Configuration(client_side=True))
    conn.local_settings = h2.settings.Settings(
        client=True,
        initial_values={
            h2.settings.SettingCodes.ENABLE_PUSH: 1,
            h2.settings.SettingCodes.INITIAL_WINDOW_SIZE: 4096 if hold else BIG,
        },
    )
    conn.initiate_connection()
    conn.increment_flow_control_window(BIG)
    sock.sendall(conn.data_to_send())

    def request(path, extra):
        sid = conn.get_next_available_stream_id()
        headers = [(":method", "GET"), (":scheme", "http"), (":authority", argv[0]),
                   (":path", path)] + extra
        conn.send_headers(sid, headers, end_stream=True)
        if hold:
            conn.increment_flow_control_window(BIG, stream_id=sid)
        sock.sendall(conn.data_to_send())
        return sid

    pushes = []  # promised stream ids in order
    paths = {}
    lengths = {}
    ended = []
    started_data = []  # pushed streams in the order their first DATA arrived
    parents_done = set()
    first_released = [not hold or hold_all]
    others_ended_while_first_held = None
    declared = {}  # pushed stream -> content-length
    headed = set()  # pushed streams whose response head arrived
    all_released = [not hold_all]
    all_filled_while_held = None
    started = time.monotonic()
    closed = False

    resets = {}  # stream -> error code, for the record

    def release_all():
        all_released[0] = True
        for p in pushes:
            if p in headed and p not in ended:
                conn.increment_flow_control_window(BIG, stream_id=p)

    def filled(p):
        return p in ended or (p in declared and lengths[p] >= min(4096, declared[p]))

    def release_first():
        if not first_released[0] and pushes:
            first_released[0] = True
            if pushes[0] not in ended:
                conn.increment_flow_control_window(BIG, stream_id=pushes[0])

    mpd_sid = request(mpd, [])
    seg_sid = None
    sock.settimeout(0.2)
    while time.monotonic() - started < 15:
        if mpd_sid in parents_done and seg_sid is None:
            seg_sid = request(segment, [("accept-push-policy", directive)])
        if seg_sid in parents_done and pushes and len(ended) == len(pushes):
            break
        if hold_all and not all_released[0]:
            if pushes and all(filled(p) for p in pushes):
                all_filled_while_held = True
                release_all()
            elif time.monotonic() - started > 3:
                all_filled_while_held = False
                release_all()
        if hold and not hold_all and not first_released[0] and time.monotonic() - started > 3:
            others_ended_while_first_held = False
            release_first()
        try:
            data = sock.recv(65536)
        except socket.timeout:
            sock.sendall(conn.data_to_send())
            continue
        if not data:
            closed = True
            break
        for ev in conn.receive_data(data):
            if isinstance(ev, h2.events.PushedStreamReceived):
                pushes.append(ev.pushed_stream_id)
                hdrs = {k.decode() if isinstance(k, bytes) else k:
                        v.decode() if isinstance(v, bytes) else v for k, v in ev.headers}
                paths[ev.pushed_stream_id] = hdrs.get(":path")
                lengths[ev.pushed_stream_id] = 0
            elif isinstance(ev, h2.events.ResponseReceived):
                # A pushed stream's window is opened once its response head arrived: a
                # WINDOW_UPDATE for a promised stream whose HEADERS the server has queued but
                # not yet sent is refused by the h2 library as a frame on an idle stream.
                if ev.stream_id in lengths:
                    headed.add(ev.stream_id)
                    hdrs = {k.decode() if isinstance(k, bytes) else k:
                            v.decode() if isinstance(v, bytes) else v for k, v in ev.headers}
                    if "content-length" in hdrs:
                        declared[ev.stream_id] = int(hdrs["content-length"])
                if hold_all:
                    if all_released[0] and ev.stream_id in lengths:
                        conn.increment_flow_control_window(BIG, stream_id=ev.stream_id)
                elif hold and ev.stream_id in pushes[1:]:
                    conn.increment_flow_control_window(BIG, stream_id=ev.stream_id)
            elif isinstance(ev, h2.events.DataReceived):
                if ev.stream_id in lengths:
                    if ev.stream_id not in started_data:
                        started_data.append(ev.stream_id)
                    lengths[ev.stream_id] += len(ev.data)
                # The held push's bytes are not acknowledged (that would reopen its window);
                # the connection window is large enough without.
                held = hold and not first_released[0] and pushes and ev.stream_id == pushes[0]
                held = held or (hold_all and not all_released[0] and ev.stream_id in lengths)
                if not held:
                    conn.acknowledge_received_data(ev.flow_controlled_length, ev.stream_id)
            elif isinstance(ev, h2.events.StreamEnded):
                if ev.stream_id in lengths:
                    ended.append(ev.stream_id)
                    others = [p for p in pushes[1:] if p in ended]
                    if (hold and not hold_all and not first_released[0] and len(pushes) > 1
                            and len(others) == len(pushes) - 1):
                        others_ended_while_first_held = True
                        release_first()
                else:
                    parents_done.add(ev.stream_id)
            elif isinstance(ev, h2.events.StreamReset):
                resets[ev.stream_id] = int(ev.error_code)
                if ev.stream_id in lengths:
                    ended.append(ev.stream_id)
                else:
                    parents_done.add(ev.stream_id)
        sock.sendall(conn.data_to_send())
    sock.close()
    print(json.dumps({
        "pushes": [{"path": paths[p], "len": lengths[p],
                    "start_order": started_data.index(p) if p in started_data else None,
                    "end_order": ended.index(p) if p in ended else None} for p in pushes],
        "others_ended_while_first_held": others_ended_while_first_held,
        "all_filled_while_held": all_filled_while_held,
        "resets": {str(k): v for k, v in resets.items()},
        "closed_by_server": closed,
    }))


if __name__ == "__main__":
    main(sys.argv[1:])
