"""Every process a benchmark starts, stopped by its PID on every way out: the normal end, an
exception, Ctrl-C (SIGINT), SIGTERM or SIGHUP. Standard library only.

    from procs import Procs, exit_on_signals
    exit_on_signals()                       # SIGTERM/SIGHUP end the script like Ctrl-C does
    procs = Procs()
    try:
        origin = procs.start([...], stdout=subprocess.DEVNULL)
        ...
    finally:
        procs.stop_all()

`stop()` sends SIGTERM (or the signal given) to the PID, waits up to `timeout` seconds, then
SIGKILL. A process that forks (nginx: master, workers, cache manager and loader) is started with
`tree=True`: its descendants are looked up by parent PID in /proc just before the signal, and
any still there once the parent has exited are stopped by their PIDs as well (a worker whose
master was killed outright would otherwise stay). Nothing is ever looked up or killed by name.
Processes still running when the interpreter exits (a script that did not call `stop_all`) are
stopped by an atexit hook.
"""
import atexit
import os
import signal
import subprocess
import time

_SIGNALS = (signal.SIGINT, signal.SIGTERM, signal.SIGHUP)


def _stat(pid):
    """(ppid, starttime, state) of a PID, or None when it is gone."""
    try:
        with open(f"/proc/{pid}/stat") as f:
            fields = f.read().rsplit(")", 1)[1].split()
    except OSError:
        return None
    return int(fields[1]), int(fields[19]), fields[0]


def descendants(pid):
    """[(pid, starttime)] of every descendant of `pid`, from /proc (parents before children)."""
    by_parent = {}
    for d in os.listdir("/proc"):
        if d.isdigit():
            st = _stat(int(d))
            if st:
                by_parent.setdefault(st[0], []).append((int(d), st[1]))
    out, todo = [], [pid]
    while todo:
        for child in by_parent.get(todo.pop(), []):
            out.append(child)
            todo.append(child[0])
    return out


def _alive(pid, starttime):
    """The same process (PID not reused) is still there and not a zombie."""
    st = _stat(pid)
    return st is not None and st[1] == starttime and st[2] != "Z"


class Procs:
    """The processes one benchmark started."""

    _live = []  # every Procs, for the atexit hook

    def __init__(self):
        self.procs = []  # (Popen, tree)
        Procs._live.append(self)

    def start(self, argv, tree=False, **kw):
        p = subprocess.Popen(argv, **kw)
        self.procs.append((p, tree))
        return p

    def pids(self):
        return [p.pid for p, _ in self.procs if p.poll() is None]

    def stop(self, p, sig=signal.SIGTERM, timeout=5.0):
        """Stops `p` (a Popen from `start`) and, if it was started with tree=True, its
        descendants; returns once all of them are gone."""
        tree = next((t for q, t in self.procs if q is p), False)
        blocked = signal.pthread_sigmask(signal.SIG_BLOCK, _SIGNALS)
        try:
            kids = descendants(p.pid) if tree and p.poll() is None else []
            if p.poll() is None:
                try:
                    p.send_signal(sig)
                    p.wait(timeout)
                except subprocess.TimeoutExpired:
                    p.kill()
                    p.wait()
            deadline = time.monotonic() + timeout
            while kids:
                kids = [k for k in kids if _alive(*k)]
                if not kids:
                    break
                for pid, _ in kids:
                    try:
                        os.kill(pid, signal.SIGKILL if time.monotonic() > deadline else signal.SIGTERM)
                    except ProcessLookupError:
                        pass
                time.sleep(0.05)
            self.procs = [(q, t) for q, t in self.procs if q is not p]
        finally:
            signal.pthread_sigmask(signal.SIG_SETMASK, blocked)

    def stop_all(self, timeout=5.0):
        """Stops every process started here, the last started first."""
        for p, _ in reversed(list(self.procs)):
            self.stop(p, timeout=timeout)

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.stop_all()


@atexit.register
def _stop_leftovers():
    for procs in Procs._live:
        procs.stop_all()


def _interrupt(signum, _frame):
    raise KeyboardInterrupt(f"signal {signum}")


def exit_on_signals():
    """SIGTERM and SIGHUP raise KeyboardInterrupt in the main thread, as SIGINT does, so the
    `finally` blocks that stop the processes run for them too (Python's default for SIGTERM
    is to die on the spot)."""
    for sig in (signal.SIGTERM, signal.SIGHUP):
        signal.signal(sig, _interrupt)
    signal.signal(signal.SIGINT, signal.default_int_handler)


def free_port():
    """A TCP port on 127.0.0.1 that was free a moment ago (for a server started next)."""
    import socket
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    p = s.getsockname()[1]
    s.close()
    return p
