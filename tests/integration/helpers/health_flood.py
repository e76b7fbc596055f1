"""A hostile-traffic generator for a health endpoint, and the checks made
while it runs. Used by tests/integration/test_health_flood.py (imported) and
by bench/health-flood.sh (run as a script, printing one JSON line).

Everything is bounded: the flood targets loopback only, from loopback source
addresses (127.0.0.2 and up), stops by itself after `seconds`, and opens at
most `max_connects` connections in all, whatever happens.

The flood, from its source addresses:
  - idle: `idle` connections that never send a byte; each one the server
    closes is opened again (until the connection budget is spent);
  - slowloris: `slowloris` connections dribbling one header line every 0.5 s;
  - garbage: one connection after another sending random bytes.
"""
import argparse
import http.client
import json
import os
import random
import resource
import select
import socket
import subprocess
import sys
import threading
import time

LOOPBACK_PREFIX = "127."


def raise_nofile(wanted):
    """Raises this process's descriptor limit to `wanted` (the hard limit too
    when it is lower and we may), never relying on the machine's defaults."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft != resource.RLIM_INFINITY and soft >= wanted:
        return soft
    new_hard = hard if hard == resource.RLIM_INFINITY or hard >= wanted else wanted
    try:
        resource.setrlimit(resource.RLIMIT_NOFILE, (wanted, new_hard))
    except (ValueError, OSError):
        resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
    return resource.getrlimit(resource.RLIMIT_NOFILE)[0]


def _check_loopback(*addrs):
    for a in addrs:
        if not a.startswith(LOOPBACK_PREFIX):
            raise ValueError(f"the flood targets and comes from loopback only, not {a}")


def _open_from(source, host, port):
    """A non-blocking connection in progress from source to host:port."""
    s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    s.setblocking(False)
    s.bind((source, 0))
    err = s.connect_ex((host, port))
    if err not in (0, 115, 11):  # EINPROGRESS, EAGAIN
        s.close()
        raise OSError(err, os.strerror(err))
    return s


class Flood:
    def __init__(self, port, sources=("127.0.0.2",), idle=3000, slowloris=200, garbage=True,
                 seconds=10.0, max_connects=None, host="127.0.0.1"):
        _check_loopback(host, *sources)
        self.port, self.host = port, host
        self.sources = list(sources)
        self.idle, self.slowloris, self.garbage = idle, slowloris, garbage
        self.seconds = seconds
        self.max_connects = max_connects if max_connects is not None else 5 * (idle + slowloris) + 2000
        self.stop_event = threading.Event()
        self.lock = threading.Lock()
        self.connects = 0
        self.closed_by_server = 0
        self.garbage_sent = 0
        self.errors = 0
        self.first_idle = []  # the first idle connections opened, oldest first
        self.threads = []
        self._src = 0

    # -- budget and sources --------------------------------------------------
    def _take(self):
        with self.lock:
            if self.connects >= self.max_connects:
                return False
            self.connects += 1
            return True

    def _next_source(self):
        self._src = (self._src + 1) % len(self.sources)
        return self.sources[self._src]

    def _running(self, deadline):
        return not self.stop_event.is_set() and time.monotonic() < deadline

    # -- the three kinds -------------------------------------------------------
    def _idle(self, deadline):
        ep = select.epoll()
        socks = {}

        def open_one():
            if not self._take():
                return None
            try:
                s = _open_from(self._next_source(), self.host, self.port)
            except OSError:
                self.errors += 1
                return None
            socks[s.fileno()] = s
            ep.register(s.fileno(), select.EPOLLIN | select.EPOLLRDHUP)
            return s

        try:
            for i in range(self.idle):
                if not self._running(deadline):
                    return
                s = open_one()
                if s is not None and i < 64:
                    self.first_idle.append(s)
            # Reopen what the server closes, until time or budget runs out.
            while self._running(deadline):
                for fd, _ in ep.poll(0.1):
                    s = socks.pop(fd, None)
                    if s is None:
                        continue
                    try:
                        gone = s.recv(1) == b""
                    except BlockingIOError:
                        gone = False
                    except OSError:
                        gone = True
                    if not gone:
                        socks[fd] = s
                        continue
                    ep.unregister(fd)
                    self.closed_by_server += 1
                    if s not in self.first_idle:
                        s.close()
                    open_one()
        finally:
            self._idle_socks = socks
            ep.close()

    def _slowloris(self, deadline):
        socks = []
        for _ in range(self.slowloris):
            if not self._running(deadline) or not self._take():
                break
            try:
                socks.append(_open_from(self._next_source(), self.host, self.port))
            except OSError:
                self.errors += 1
        started = [False] * len(socks)
        try:
            while self._running(deadline):
                for i, s in enumerate(socks):
                    line = b"X-Slow: x\r\n" if started[i] else b"GET /health HTTP/1.1\r\nHost: x\r\n"
                    try:
                        s.send(line)
                        started[i] = True
                    except BlockingIOError:
                        pass
                    except OSError:
                        s.close()
                        if not self._take():
                            continue
                        try:
                            socks[i] = _open_from(self._next_source(), self.host, self.port)
                            started[i] = False
                        except OSError:
                            self.errors += 1
                self.stop_event.wait(0.5)
        finally:
            for s in socks:
                s.close()

    def _garbage(self, deadline):
        rnd = random.Random(13)
        while self._running(deadline) and self._take():
            try:
                s = socket.socket()
                s.settimeout(1.0)
                s.bind((self._next_source(), 0))
                s.connect((self.host, self.port))
                s.sendall(bytes(rnd.getrandbits(8) for _ in range(2048)))
                self.garbage_sent += 1
                s.recv(256)
            except OSError:
                pass
            finally:
                s.close()
            self.stop_event.wait(0.005)

    # -- control ---------------------------------------------------------------
    def start(self):
        deadline = time.monotonic() + self.seconds
        kinds = [self._idle, self._slowloris] + ([self._garbage] if self.garbage else [])
        for kind in kinds:
            t = threading.Thread(target=kind, args=(deadline,), daemon=True)
            t.start()
            self.threads.append(t)
        return self

    def running(self):
        return any(t.is_alive() for t in self.threads)

    def stop(self):
        self.stop_event.set()
        for t in self.threads:
            t.join(timeout=30)
        for s in list(getattr(self, "_idle_socks", {}).values()) + self.first_idle:
            s.close()


# ---- the checks made during a flood ------------------------------------------

def check_http(port, path="/health", host="127.0.0.1", timeout=5.0):
    """A fresh connection, one GET: (status or None, seconds)."""
    started = time.monotonic()
    conn = http.client.HTTPConnection(host, port, timeout=timeout)
    try:
        conn.request("GET", path, headers={"Connection": "close"})
        resp = conn.getresponse()
        resp.read()
        return resp.status, time.monotonic() - started
    except OSError:
        return None, time.monotonic() - started
    finally:
        conn.close()


def check_command(cmd, env, timeout=10.0):
    """`pi-agent health`: (exit status or None, seconds)."""
    started = time.monotonic()
    try:
        p = subprocess.run(cmd, env=env, capture_output=True, timeout=timeout)
        return p.returncode, time.monotonic() - started
    except subprocess.TimeoutExpired:
        return None, time.monotonic() - started


def fd_count(pids):
    n = 0
    for pid in pids:
        try:
            n += len(os.listdir(f"/proc/{pid}/fd"))
        except OSError:
            pass
    return n


def cpu_seconds(pids):
    total = 0
    for pid in pids:
        try:
            with open(f"/proc/{pid}/stat") as f:
                fields = f.read().rsplit(")", 1)[1].split()
            total += int(fields[11]) + int(fields[12])  # utime, stime
        except OSError:
            pass
    return total / os.sysconf("SC_CLK_TCK")


def percentile(values, p):
    if not values:
        return None
    v = sorted(values)
    return v[min(len(v) - 1, int(round(p / 100.0 * (len(v) - 1))))]


def checks_during(running, port, cmd, cmd_env, pids=(), pause=0.02):
    """Sequential checks (a fresh GET /health, then the health command) while
    running() is true. Returns the figures as a dict."""
    http_results, cmd_results, fds = [], [], []
    cpu0 = cpu_seconds(pids)
    t0 = time.monotonic()
    while running():
        http_results.append(check_http(port))
        cmd_results.append(check_command(cmd, cmd_env))
        if pids:
            fds.append(fd_count(pids))
        time.sleep(pause)
    elapsed = time.monotonic() - t0
    cpu = cpu_seconds(pids) - cpu0

    def summary(results, ok):
        lat = [t for _, t in results]
        good = [r for r in results if r[0] == ok]
        return {"checks": len(results), "ok": len(good),
                "success_rate": (len(good) / len(results)) if results else None,
                "within_1s": sum(1 for r in good if r[1] <= 1.0),
                "p50_ms": None if not lat else round(percentile(lat, 50) * 1000, 2),
                "p99_ms": None if not lat else round(percentile(lat, 99) * 1000, 2),
                "codes": sorted({str(r[0]) for r in results})}
    return {"http": summary(http_results, 200), "command": summary(cmd_results, 0),
            "max_fds": max(fds) if fds else None, "cpu_seconds": round(cpu, 3),
            "seconds": round(elapsed, 2)}


def process_tree(pid):
    """pid and its direct children (nginx: the master and its workers)."""
    pids = [pid]
    try:
        with open(f"/proc/{pid}/task/{pid}/children") as f:
            pids += [int(x) for x in f.read().split()]
    except OSError:
        pass
    return pids


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--port", type=int, required=True)
    ap.add_argument("--pid", type=int, required=True, help="the server's pid (children counted)")
    ap.add_argument("--no-children", action="store_true", help="count the pid alone")
    ap.add_argument("--seconds", type=float, default=15.0)
    ap.add_argument("--idle", type=int, default=3000)
    ap.add_argument("--slowloris", type=int, default=200)
    ap.add_argument("--source", default="127.0.0.2")
    ap.add_argument("command", nargs="+", help="the container check command")
    a = ap.parse_args()
    raise_nofile(a.idle + a.slowloris + 1024)
    pids = [a.pid] if a.no_children else process_tree(a.pid)
    flood = Flood(a.port, sources=(a.source,), idle=a.idle, slowloris=a.slowloris,
                  seconds=a.seconds).start()
    try:
        figures = checks_during(flood.running, a.port, a.command, dict(os.environ), pids)
    finally:
        flood.stop()
    figures.update(flood_connects=flood.connects, closed_by_server=flood.closed_by_server,
                   garbage_sent=flood.garbage_sent)
    print(json.dumps(figures))


if __name__ == "__main__":
    sys.exit(main())
