#!/usr/bin/python3
"""A standalone latency relay: the `Relay` of benches/startup.py as its own process, for
benchmarks whose clients are not Python (benches/browser_startup.mjs puts it in front of the
gateway for headless Chromium).

  /usr/bin/python3 benches/relay.py --listen 127.0.0.1:0 --upstream 127.0.0.1:PORT --rtt-ms 100

Prints `listening relay on HOST:PORT` on stderr once it accepts connections and runs until it is
killed. Every chunk is delayed by RTT/2 in each direction, and a new connection's first bytes wait
one more RTT to stand for the TCP handshake the relay cannot delay (the kernel has no netem here).
"""
import argparse
import asyncio
import os
import signal
import sys
import threading

sys.dont_write_bytecode = True  # no benches/__pycache__ from importing startup.py
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

try:
    import h2  # noqa: F401  (startup.py's HTTP/2 clients need it; the relay does not)
except ImportError:
    import types
    for _name in ("h2", "h2.config", "h2.connection", "h2.events", "h2.settings"):
        sys.modules[_name] = types.ModuleType(_name)

from startup import Relay  # noqa: E402


def host_port(s):
    host, _, port = s.rpartition(":")
    if not host or not port.isdigit():
        raise argparse.ArgumentTypeError(f"expected HOST:PORT, got {s!r}")
    return host, int(port)


class BoundRelay(Relay):
    """`Relay` listening on a given address instead of 127.0.0.1:0."""

    def __init__(self, upstream_port, listen):
        self.listen = listen
        super().__init__(upstream_port)

    def _run(self, ready):
        asyncio.set_event_loop(self.loop)

        async def start():
            server = await asyncio.start_server(self._client, *self.listen)
            self.port = server.sockets[0].getsockname()[1]
            ready.set()
        self.loop.run_until_complete(start())
        self.loop.run_forever()


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--listen", type=host_port, default=("127.0.0.1", 0))
    ap.add_argument("--upstream", type=host_port, required=True,
                    help="HOST:PORT; the relay connects to 127.0.0.1 (startup.Relay's upstream)")
    ap.add_argument("--rtt-ms", type=float, default=100.0)
    args = ap.parse_args()
    if args.upstream[0] not in ("127.0.0.1", "localhost"):
        ap.error("--upstream must be on 127.0.0.1 (the relay of benches/startup.py connects there)")
    relay = BoundRelay(args.upstream[1], args.listen)
    relay.rtt = args.rtt_ms / 1000
    print(f"listening relay on {args.listen[0]}:{relay.port} (upstream 127.0.0.1:{args.upstream[1]},"
          f" rtt {args.rtt_ms:g} ms)", file=sys.stderr, flush=True)
    stop = threading.Event()
    for sig in (signal.SIGTERM, signal.SIGINT):
        signal.signal(sig, lambda *_: stop.set())
    while not stop.wait(0.5):
        pass


if __name__ == "__main__":
    main()
