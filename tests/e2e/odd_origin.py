#!/usr/bin/python3
"""A deliberately odd HTTP/1.1 origin for the gateway's origin-side tests (python3, stdlib).

  odd_origin.py
Listens on 127.0.0.1 (a free port), prints "listening PORT", and serves until killed:
  /informational  103 Early Hints and 100 Continue, then a 200 "hello"
  /trickle        a 200 with Content-Length 100 whose body comes one byte every 200 ms
  /cookie         after 300 ms, a 200 "you are N" with Set-Cookie: id=N and
                  Cache-Control: private, max-age=60 (N counts the requests)
  /echo           a 200 whose body lists the request's header names, one per line
"""
import itertools
import socket
import socketserver
import sys
import threading
import time

COUNTER = itertools.count(1)
LOCK = threading.Lock()


def answer(status, headers, body):
    head = f"HTTP/1.1 {status}\r\n" + "".join(f"{k}: {v}\r\n" for k, v in headers)
    return (head + f"Content-Length: {len(body)}\r\n\r\n").encode() + body


class Handler(socketserver.BaseRequestHandler):
    def handle(self):
        s = self.request
        buf = b""
        while True:
            while b"\r\n\r\n" not in buf:
                data = s.recv(65536)
                if not data:
                    return
                buf += data
            head, buf = buf.split(b"\r\n\r\n", 1)
            lines = head.decode("latin-1").split("\r\n")
            path = lines[0].split(" ")[1]
            names = [l.split(":", 1)[0].strip().lower() for l in lines[1:] if ":" in l]
            try:
                self.serve(s, path, names)
            except OSError:
                return

    def serve(self, s, path, names):
        if path == "/informational":
            s.sendall(b"HTTP/1.1 103 Early Hints\r\nLink: </style.css>; rel=preload\r\n\r\n"
                      b"HTTP/1.1 100 Continue\r\n\r\n"
                      + answer("200 OK", [("Cache-Control", "max-age=60")], b"hello"))
        elif path == "/trickle":
            s.sendall(b"HTTP/1.1 200 OK\r\nContent-Length: 100\r\nCache-Control: max-age=60\r\n\r\n")
            for _ in range(100):
                time.sleep(0.2)
                s.sendall(b"x")
        elif path == "/cookie":
            with LOCK:
                n = next(COUNTER)
            time.sleep(0.3)
            s.sendall(answer("200 OK", [("Set-Cookie", f"id={n}"),
                                        ("Cache-Control", "private, max-age=60")],
                             f"you are {n}".encode()))
        elif path == "/echo":
            s.sendall(answer("200 OK", [("Cache-Control", "no-store")], "\n".join(names).encode()))
        else:
            s.sendall(answer("404 Not Found", [], b"no\n"))


class Server(socketserver.ThreadingTCPServer):
    daemon_threads = True
    allow_reuse_address = True


def main():
    srv = Server(("127.0.0.1", 0), Handler)
    print(f"listening {srv.server_address[1]}", flush=True)
    srv.serve_forever()


if __name__ == "__main__":
    sys.exit(main())
