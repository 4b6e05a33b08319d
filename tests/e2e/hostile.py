#!/usr/bin/python3
"""Hostile HTTP/2 clients (python3-h2, raw frames) for the hardening tests.

  hostile.py HOST:PORT rapid-reset N PATH_PREFIX [DELAY_MS]
      Opens streams in batches of 20 (GET PATH_PREFIX<i>), waits DELAY_MS (default 10) so the
      server has accepted them and started their work, then resets each (RST_STREAM CANCEL); up to N streams or until the server
      sends GOAWAY. Prints {"sent", "goaway_error", "last_stream"}.
  hostile.py HOST:PORT zero-window PATH
      Sends SETTINGS_INITIAL_WINDOW_SIZE = 0 and a connection window of 0 extra, requests PATH
      and never opens a window. Prints {"status", "reset_error", "seconds"}: what the server did
      with the stream that could not progress.
  hostile.py HOST:PORT requests N PATH
      N requests for PATH one after the other on one connection. Prints {"answered",
      "goaway_error"}: how many were answered before the server ended the connection.
  hostile.py HOST:PORT idle
      Sends the preface and SETTINGS, then nothing. Prints {"goaway_error", "closed", "seconds"}.
  hostile.py HOST:PORT parked SECONDS PATH
      What a browser or nghttp sends before a request (preface, SETTINGS, a WINDOW_UPDATE of the
      connection, PRIORITY frames), then nothing for SECONDS (acknowledging the server's
      SETTINGS), then a PING and GET PATH. Counts the frames received off the wire. Prints
      {"settings", "settings_acks", "settings_acks_before_wait", "ping_acks", "status",
      "body_bytes", "goaway_error"}.
  hostile.py HOST:PORT again[-eager] SECONDS PATH NEXT [POLICY]
      A client with a 1 MiB connection window reads the server's SETTINGS (again-eager: does
      not wait for them, as browsers do not), GETs PATH (stream 1), then waits SECONDS (the
      connection falls idle); half-way it sends a PING and a late WINDOW_UPDATE for stream 1.
      Then, when NEXT is "reuse", it sends a request on stream 1 again (raw frames) and reads
      until the server closes; else it GETs NEXT (with accept-push-policy: POLICY if given),
      reads the answer and its pushes, waits SECONDS again and GETs NEXT once more. Prints
      {"statuses", "bodies", "pushes", "pushed_bytes", "ping_acks", "settings",
      "settings_acks", "goaway_error", "goaway_last_stream", "closed"}.
"""
import json
import socket
import sys
import time

import h2.config
import h2.connection
import h2.events
import h2.exceptions
import h2.settings


def connect(target, settings=None):
    host, port = target.rsplit(":", 1)
    s = socket.create_connection((host, int(port)))
    c = h2.connection.H2Connection(config=h2.config.H2Configuration(client_side=True))
    c.initiate_connection()
    if settings:
        c.update_settings(settings)
    s.sendall(c.data_to_send())
    return s, c


def code_name(code):
    """An HTTP/2 error code's name (its number if h2 does not know it)."""
    return code.name if hasattr(code, "name") else str(code)


def headers(target, path):
    return [(":method", "GET"), (":scheme", "http"), (":authority", target), (":path", path)]


def pump(s, c, timeout):
    """Reads what is there within `timeout`; returns the events (None when closed)."""
    s.settimeout(timeout)
    try:
        data = s.recv(65536)
    except socket.timeout:
        return []
    except OSError:
        return None
    if not data:
        return None
    try:
        events = c.receive_data(data)
    except h2.exceptions.ProtocolError:
        # Frames after the GOAWAY we took as the end (h2's shutdown PING): the end.
        return None
    out = c.data_to_send()
    if out:
        try:
            s.sendall(out)
        except OSError:
            return None
    return events


def rapid_reset(target, n, prefix, delay):
    s, c = connect(target)
    sent, goaway, last = 0, None, None
    while sent < n and goaway is None:
        ids = []
        for _ in range(20):
            sid = c.get_next_available_stream_id()
            c.send_headers(sid, headers(target, f"{prefix}{sent}"), end_stream=True)
            ids.append(sid)
            sent += 1
        try:
            s.sendall(c.data_to_send())
        except OSError:
            break
        time.sleep(delay)
        for sid in ids:
            try:
                c.reset_stream(sid)
            except Exception:
                pass
        try:
            s.sendall(c.data_to_send())
        except OSError:
            break
        while True:
            ev = pump(s, c, 0.001)
            if ev is None:
                goaway = goaway or "closed"
                break
            if not ev:
                break
            for e in ev:
                if isinstance(e, h2.events.ConnectionTerminated):
                    goaway = code_name(e.error_code)
                    last = e.last_stream_id
    deadline = time.time() + 3
    while goaway is None and time.time() < deadline:
        ev = pump(s, c, 0.2)
        if ev is None:
            goaway = "closed"
            break
        for e in ev:
            if isinstance(e, h2.events.ConnectionTerminated):
                goaway = code_name(e.error_code)
                last = e.last_stream_id
    return {"sent": sent, "goaway_error": goaway, "last_stream": last}


def zero_window(target, path):
    s, c = connect(target, {h2.settings.SettingCodes.INITIAL_WINDOW_SIZE: 0})
    sid = c.get_next_available_stream_id()
    c.send_headers(sid, headers(target, path), end_stream=True)
    s.sendall(c.data_to_send())
    start = time.time()
    status, reset = None, None
    while time.time() - start < 30 and reset is None:
        ev = pump(s, c, 0.2)
        if ev is None:
            reset = "connection closed"
            break
        for e in ev:
            if isinstance(e, h2.events.ResponseReceived):
                status = dict(e.headers).get(b":status", b"").decode()
            if isinstance(e, h2.events.StreamReset) and e.stream_id == sid:
                reset = code_name(e.error_code)
    return {"status": status, "reset_error": reset, "seconds": round(time.time() - start, 2)}


def idle(target):
    s, c = connect(target)
    start = time.time()
    goaway, closed = None, False
    while time.time() - start < 30:
        ev = pump(s, c, 0.2)
        if ev is None:
            closed = True
            break
        for e in ev:
            if isinstance(e, h2.events.ConnectionTerminated):
                goaway = code_name(e.error_code)
    return {"goaway_error": goaway, "closed": closed, "seconds": round(time.time() - start, 2)}


def parked(target, seconds, path):
    w = Wire(target)
    w.c.increment_flow_control_window(1 << 20)
    # PRIORITY frames for idle streams, as nghttp sends them to build its dependency tree.
    for sid in (3, 5):
        w.c.prioritize(sid, weight=201, depends_on=0, exclusive=False)
    w.s.sendall(w.c.data_to_send())
    w.wait(seconds)
    acks_before = w.count(4, 1)
    w.c.ping(b"parked!!")
    sid = w.get(target, path)
    # Anything that would follow (a repeated SETTINGS or ACK would come right away).
    w.read(0.3)
    return {
        "settings": w.count(4, 0),
        "settings_acks": w.count(4, 1),
        "settings_acks_before_wait": acks_before,
        "ping_acks": w.count(6, 1),
        "status": w.statuses.get(sid),
        "body_bytes": w.bodies.get(sid, 0),
        "goaway_error": w.goaway,
    }


class Wire:
    """A python3-h2 client connection that also counts the frames it receives."""

    def __init__(self, target):
        self.s, self.c = connect(target)
        self.kinds, self.raw = [], bytearray()
        self.statuses, self.bodies, self.ended = {}, {}, set()
        self.pushed = {}
        self.goaway = self.last_stream = None
        self.closed = False

    def read(self, timeout):
        """Reads what comes within `timeout`; False once the server has closed."""
        if self.closed:
            return False
        self.s.settimeout(timeout)
        try:
            data = self.s.recv(65536)
        except socket.timeout:
            return True
        except OSError:
            data = b""
        if not data:
            self.closed = True
            return False
        self.raw.extend(data)
        while len(self.raw) >= 9:
            length = int.from_bytes(self.raw[0:3], "big")
            if len(self.raw) < 9 + length:
                break
            self.kinds.append((self.raw[3], self.raw[4]))
            del self.raw[: 9 + length]
        for e in self.c.receive_data(data):
            if isinstance(e, h2.events.ResponseReceived):
                self.statuses[e.stream_id] = dict(e.headers).get(b":status", b"").decode()
            if isinstance(e, h2.events.PushedStreamReceived):
                self.pushed[e.pushed_stream_id] = 0
            if isinstance(e, h2.events.DataReceived):
                if e.stream_id in self.pushed:
                    self.pushed[e.stream_id] += len(e.data)
                else:
                    self.bodies[e.stream_id] = self.bodies.get(e.stream_id, 0) + len(e.data)
                self.c.acknowledge_received_data(e.flow_controlled_length, e.stream_id)
            if isinstance(e, h2.events.StreamEnded):
                self.ended.add(e.stream_id)
            if isinstance(e, h2.events.ConnectionTerminated):
                self.goaway = code_name(e.error_code)
                self.last_stream = e.last_stream_id
        out = self.c.data_to_send()
        if out:
            self.s.sendall(out)
        return True

    def count(self, kind, flags):
        return sum(1 for k, f in self.kinds if k == kind and f & 1 == flags)

    def get(self, target, path, extra=()):
        """GETs `path` and reads until it and every push so far have ended (or 10 s)."""
        sid = self.c.get_next_available_stream_id()
        self.c.send_headers(sid, headers(target, path) + list(extra), end_stream=True)
        self.s.sendall(self.c.data_to_send())
        end = time.time() + 10
        while time.time() < end and self.read(0.2):
            if sid in self.ended and all(p in self.ended for p in self.pushed):
                break
        return sid

    def wait(self, seconds, midway=None):
        end, half = time.time() + seconds, time.time() + seconds / 2
        while time.time() < end and self.read(0.1):
            if midway and time.time() >= half and self.goaway is None:
                midway()
                midway = None


def again(target, seconds, path, nxt, policy=None, eager=False):
    w = Wire(target)
    w.c.increment_flow_control_window(1 << 20)
    w.s.sendall(w.c.data_to_send())
    if not eager:
        # The server's SETTINGS first (SETTINGS_HEADER_TABLE_SIZE 0): the first request's
        # header block then starts with a table size update to 0 and leaves nothing in the
        # server's table. Eager, the first request goes before them, its headers indexed.
        end = time.time() + 5
        while w.count(4, 0) == 0 and time.time() < end and w.read(0.1):
            pass
    w.get(target, path)

    def ping_and_late_credit():
        w.c.ping(b"idle!!!!")
        w.s.sendall(w.c.data_to_send())
        # A WINDOW_UPDATE for stream 1, closed by now (raw: h2 would refuse to send it).
        w.s.sendall(b"\x00\x00\x04\x08\x00\x00\x00\x00\x01" + (1000).to_bytes(4, "big"))

    w.wait(seconds, ping_and_late_credit)
    if w.closed or w.goaway is not None:
        pass
    elif nxt == "reuse":
        block = w.c.encoder.encode(headers(target, path))
        w.s.sendall(len(block).to_bytes(3, "big") + b"\x01\x05" + (1).to_bytes(4, "big") + block)
        end = time.time() + 5
        while time.time() < end and w.read(0.2):
            pass
    else:
        w.get(target, nxt, [("accept-push-policy", policy)] if policy else [])
        w.wait(seconds)
        w.get(target, nxt)
    return {
        "statuses": [w.statuses[sid] for sid in sorted(w.statuses) if sid % 2],
        "bodies": [w.bodies.get(sid, 0) for sid in sorted(w.statuses) if sid % 2],
        "pushes": len(w.pushed),
        "pushed_bytes": sum(w.pushed.values()),
        "ping_acks": w.count(6, 1),
        "settings": w.count(4, 0),
        "settings_acks": w.count(4, 1),
        "goaway_error": w.goaway,
        "goaway_last_stream": w.last_stream,
        "closed": w.closed,
    }


def requests(target, n, path):
    s, c = connect(target)
    answered, goaway = 0, None
    for _ in range(n):
        if goaway is not None:
            break
        sid = c.get_next_available_stream_id()
        c.send_headers(sid, headers(target, path), end_stream=True)
        s.sendall(c.data_to_send())
        done = False
        while not done:
            ev = pump(s, c, 2.0)
            if ev is None:
                goaway = goaway or "closed"
                break
            for e in ev:
                if isinstance(e, h2.events.DataReceived):
                    c.acknowledge_received_data(e.flow_controlled_length, e.stream_id)
                if isinstance(e, h2.events.StreamEnded) and e.stream_id == sid:
                    answered += 1
                    done = True
                if isinstance(e, h2.events.ConnectionTerminated):
                    goaway = code_name(e.error_code)
            out = c.data_to_send()
            if out:
                s.sendall(out)
    return {"answered": answered, "goaway_error": goaway}


def main(argv):
    target, mode = argv[0], argv[1]
    if mode == "rapid-reset":
        delay = float(argv[4]) / 1000 if len(argv) > 4 else 0.01
        out = rapid_reset(target, int(argv[2]), argv[3], delay)
    elif mode == "zero-window":
        out = zero_window(target, argv[2])
    elif mode == "requests":
        out = requests(target, int(argv[2]), argv[3])
    elif mode == "idle":
        out = idle(target)
    elif mode == "parked":
        out = parked(target, float(argv[2]), argv[3])
    elif mode in ("again", "again-eager"):
        out = again(target, float(argv[2]), argv[3], argv[4], argv[5] if len(argv) > 5 else None,
                    eager=mode == "again-eager")
    else:
        raise SystemExit(f"unknown mode {mode}")
    print(json.dumps(out))


if __name__ == "__main__":
    main(sys.argv[1:])
