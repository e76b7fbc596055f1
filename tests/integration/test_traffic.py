"""Tomcat's traffic as the agent counts it from the kernel's socket table,
and the drain that ends once Tomcat is quiet: build/pi-agent as PID 1 with a
real keep-alive HTTP/1.1 server (Python's http.server) as its child."""
import http.client
import signal
import socket
import sys
import threading
import time
from datetime import datetime

import pytest

from conftest import agent_env, wait_for

PY = sys.executable
INTERVAL = 1  # PI_AGENT_PROBE_INTERVAL_SECONDS in these tests

# The dashboard stand-in: HTTP/1.1 keep-alive, GET answers a short body, POST
# reads its body and answers its length. Writes the time of its SIGTERM.
KEEPALIVE_DASHBOARD = r'''
import http.server, os, signal, sys, time
port, rec = int(sys.argv[1]), sys.argv[2]
def on_term(signum, frame):
    with open(rec, "a") as f:
        f.write("%f\n" % time.time())
    os._exit(0)
signal.signal(signal.SIGTERM, on_term)
class H(http.server.BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    def answer(self, body):
        self.send_response(200)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)
    def do_GET(self):
        self.answer(b"4.0.0")
    def do_POST(self):
        n = int(self.headers.get("Content-Length", "0"))
        while n > 0:
            n -= len(self.rfile.read(min(n, 65536)))
        self.answer(b"ok")
    def log_message(self, *a):
        pass
srv = http.server.ThreadingHTTPServer(("127.0.0.1", port), H)
srv.daemon_threads = True
srv.serve_forever()
'''


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class Tomcat:
    """The agent with the keep-alive dashboard as its child."""

    def __init__(self, start_agent, tmp_path, preexec_fn=None, **env):
        self.health_port = free_port()
        self.port = free_port()
        self.term = tmp_path / "dash-term"
        env.setdefault("PI_AGENT_HEALTH_PORT", self.health_port)
        env.setdefault("PI_AGENT_HEALTH_ADDR", "127.0.0.1")
        env.setdefault("PI_AGENT_PROBE_URL", f"http://127.0.0.1:{self.port}/pi/version")
        env.setdefault("PI_AGENT_PROBE_INTERVAL_SECONDS", INTERVAL)
        self.agent = start_agent(["--", PY, "-c", KEEPALIVE_DASHBOARD, str(self.port),
                                  str(self.term)], env=agent_env(**env), preexec_fn=preexec_fn)
        wait_for(self.ready, timeout=15, what="/health 200")

    def health(self):
        conn = http.client.HTTPConnection("127.0.0.1", self.health_port, timeout=5)
        try:
            conn.request("GET", "/health")
            resp = conn.getresponse()
            resp.read()
            return resp.status
        finally:
            conn.close()

    def ready(self):
        try:
            return self.health() == 200
        except OSError:
            return False

    def metrics(self):
        conn = http.client.HTTPConnection("127.0.0.1", self.health_port, timeout=5)
        try:
            conn.request("GET", "/metrics")
            text = conn.getresponse().read().decode()
        finally:
            conn.close()
        values = {}
        for line in text.splitlines():
            if line and not line.startswith("#"):
                name, value = line.rsplit(" ", 1)
                values[name] = float(value)
        return values

    def metric(self, name):
        return self.metrics().get(name)

    def connect(self):
        """A kept-alive client connection that has been served once."""
        conn = http.client.HTTPConnection("127.0.0.1", self.port, timeout=10)
        conn.request("GET", "/pi/version")
        assert conn.getresponse().read() == b"4.0.0"
        return conn


def post(conn, size):
    body = b"x" * size
    conn.request("POST", "/upload", body=body, headers={"Content-Type": "application/octet-stream"})
    resp = conn.getresponse()
    assert resp.status == 200 and resp.read() == b"ok"
    return len(body)


def log_time(record):
    return datetime.fromisoformat(record["ts"].replace("Z", "+00:00")).timestamp()


# ---- the scaling signal ------------------------------------------------------

def test_gauge_shows_open_connections_and_falls_back(start_agent, tmp_path):
    t = Tomcat(start_agent, tmp_path)
    wait_for(lambda: t.metric("pi_tomcat_connections") == 0, what="gauge at 0")
    conns = [t.connect() for _ in range(7)]
    opened = time.time()
    # Within two probe intervals (plus a little for scheduling).
    wait_for(lambda: t.metric("pi_tomcat_connections") == 7, timeout=2 * INTERVAL + 1,
             what="gauge at 7")
    assert time.time() - opened <= 2 * INTERVAL + 1
    for c in conns[:4]:
        c.close()
    wait_for(lambda: t.metric("pi_tomcat_connections") == 3, timeout=2 * INTERVAL + 1,
             what="gauge at 3")
    for c in conns[4:]:
        c.close()
    wait_for(lambda: t.metric("pi_tomcat_connections") == 0, timeout=2 * INTERVAL + 1,
             what="gauge back at 0")


def test_bytes_counter_grows_by_what_was_sent_and_never_falls(start_agent, tmp_path):
    t = Tomcat(start_agent, tmp_path)
    before = wait_for(lambda: t.metric("pi_tomcat_received_bytes_total") is not None
                      and t.metrics(), what="counter present")["pi_tomcat_received_bytes_total"]
    conn = t.connect()
    sent = post(conn, 300_000) + post(conn, 50_000)
    # The connection stays open until a sample saw it.
    grown = wait_for(lambda: (v := t.metric("pi_tomcat_received_bytes_total")) >= before + sent
                     and v, timeout=2 * INTERVAL + 1, what="counter grown by what was sent")
    conn.close()
    # Closing the connection keeps its bytes counted; a second connection adds.
    conn2 = t.connect()
    sent2 = post(conn2, 100_000)
    wait_for(lambda: t.metric("pi_tomcat_received_bytes_total") >= grown + sent2,
             timeout=2 * INTERVAL + 1, what="counter grown again after churn")
    conn2.close()
    last = t.metric("pi_tomcat_received_bytes_total")
    wait_for(lambda: t.metric("pi_tomcat_connections") == 0, what="connections closed")
    assert t.metric("pi_tomcat_received_bytes_total") >= last


def test_the_probe_is_not_counted(start_agent, tmp_path):
    t = Tomcat(start_agent, tmp_path)
    first = t.metric("pi_agent_probe_passes_total")
    # Several probes pass while nobody else talks to Tomcat: more than the
    # few a probe's connection could be mistaken among, as Tomcat's ends of
    # them linger in TIME_WAIT.
    wait_for(lambda: t.metric("pi_agent_probe_passes_total") >= first + 8, timeout=15,
             what="eight more probes")
    m = t.metrics()
    assert m["pi_tomcat_received_bytes_total"] == 0
    assert m["pi_tomcat_connections"] == 0
    assert m["pi_tomcat_probe_seconds"] > 0
    t.agent.signal(signal.SIGTERM)
    assert t.agent.wait() == 0
    samples = [r for r in t.agent.logs() if r["msg"] == "Tomcat traffic sampled"]
    assert len(samples) >= 8
    # Not even a trace of a probe's connection counts as Tomcat's traffic.
    assert [r["new_connections"] for r in samples] == [0] * len(samples), samples


def test_proc_source_counts_connections_without_bytes(start_agent, tmp_path):
    t = Tomcat(start_agent, tmp_path, PI_AGENT_TRAFFIC="proc")
    conns = [t.connect() for _ in range(3)]
    wait_for(lambda: t.metric("pi_tomcat_connections") == 3, timeout=2 * INTERVAL + 1,
             what="gauge at 3 from /proc")
    assert "pi_tomcat_received_bytes_total" not in t.metrics()
    for c in conns:
        c.close()
    wait_for(lambda: t.metric("pi_tomcat_connections") == 0, timeout=2 * INTERVAL + 1,
             what="gauge back at 0 from /proc")
    t.agent.signal(signal.SIGTERM)
    assert t.agent.wait() == 0
    started = next(r for r in t.agent.logs() if r["msg"] == "Tomcat traffic count started")
    assert started["source"] == "proc"


def refuse_netlink():
    """Runs in the agent's process before exec: socket(AF_NETLINK, ...) fails
    with EACCES, as under a container runtime's seccomp profile that denies it."""
    import errno
    import seccomp
    f = seccomp.SyscallFilter(defaction=seccomp.ALLOW)
    f.add_rule(seccomp.ERRNO(errno.EACCES), "socket", seccomp.Arg(0, seccomp.EQ, socket.AF_NETLINK))
    f.load()


def test_refused_netlink_falls_back_to_proc(start_agent, tmp_path):
    t = Tomcat(start_agent, tmp_path, preexec_fn=refuse_netlink)
    conns = [t.connect() for _ in range(2)]
    wait_for(lambda: t.metric("pi_tomcat_connections") == 2, timeout=2 * INTERVAL + 1,
             what="gauge at 2 from the fallback")
    assert "pi_tomcat_received_bytes_total" not in t.metrics()
    for c in conns:
        c.close()
    t.agent.signal(signal.SIGTERM)
    assert t.agent.wait() == 0
    records = t.agent.logs()
    refused = [r for r in records if r["msg"].startswith("netlink socket diagnostics refused")]
    assert len(refused) == 1 and refused[0]["level"] == "warn"
    assert refused[0]["error"] == "Permission denied"
    assert not [r for r in records if r["msg"] == "Tomcat traffic sample failed"]


def test_forced_netlink_that_is_refused_says_so_and_keeps_serving(start_agent, tmp_path):
    t = Tomcat(start_agent, tmp_path, preexec_fn=refuse_netlink, PI_AGENT_TRAFFIC="netlink")
    assert "pi_tomcat_connections" not in t.metrics()
    assert t.health() == 200
    t.agent.signal(signal.SIGTERM)
    assert t.agent.wait() == 0
    failed = [r for r in t.agent.logs() if r["msg"] == "Tomcat traffic sample failed"]
    assert len(failed) == 1 and failed[0]["source"] == "netlink"


def test_emf_line_carries_the_traffic(start_agent, tmp_path):
    t = Tomcat(start_agent, tmp_path, PI_AGENT_EMF="true", PI_AGENT_EMF_INTERVAL_SECONDS=1)
    conn = t.connect()
    post(conn, 20_000)
    wait_for(lambda: t.metric("pi_tomcat_connections") == 1, what="one connection seen")
    # Two EMF intervals: the rate covers one whole window.
    wait_for(lambda: t.metric("pi_agent_uptime_seconds") > 4, what="a few EMF lines")
    conn.close()
    t.agent.signal(signal.SIGTERM)
    assert t.agent.wait() == 0
    emf = [r for r in t.agent.logs() if "_aws" in r]
    assert any(r.get("TomcatConnections") == 1 for r in emf)
    names = {m["Name"] for r in emf for m in r["_aws"]["CloudWatchMetrics"][0]["Metrics"]}
    assert {"TomcatConnections", "TomcatReceivedBytesPerSecond"} <= names


# ---- drain until quiet -------------------------------------------------------

def drain_over(agent):
    return next(r for r in agent.logs() if r["msg"].startswith("drain over"))


def test_quiet_drain_without_traffic_ends_after_the_quiet_time(start_agent, tmp_path):
    t = Tomcat(start_agent, tmp_path, PI_AGENT_DRAIN_SECONDS=30, PI_AGENT_DRAIN_QUIET_SECONDS=2)
    t.agent.signal(signal.SIGTERM)
    wait_for(lambda: t.health() == 503, what="draining")
    assert t.agent.wait(timeout=20) == 0
    records = t.agent.logs()
    stop = next(r for r in records if r["msg"] == "stop requested")
    over = drain_over(t.agent)
    assert over["reason"] == "quiet"
    assert over["quiet_s"] == 2 and over["max_s"] == 30
    assert over["last_traffic"] == "never"
    term_at = float(t.term.read_text().split()[0])
    assert log_time(stop) + 2 - 0.05 <= term_at < log_time(stop) + 10


def test_quiet_drain_waits_for_traffic_to_stop_and_no_request_fails(start_agent, tmp_path):
    quiet = 2
    t = Tomcat(start_agent, tmp_path, PI_AGENT_DRAIN_SECONDS=30, PI_AGENT_DRAIN_QUIET_SECONDS=quiet)
    conn = t.connect()
    t.agent.signal(signal.SIGTERM)
    wait_for(lambda: t.health() == 503, what="draining")
    # Traffic goes on for three seconds after the stop, then stops.
    answered = 0
    until = time.time() + 3
    while time.time() < until:
        post(conn, 2000)
        last_request = time.time()  # its bytes arrived before its answer
        answered += 1
        time.sleep(0.1)
    conn.close()
    assert t.agent.wait(timeout=30) == 0
    assert answered >= 20
    over = drain_over(t.agent)
    assert over["reason"] == "quiet"
    assert over["last_traffic"] != "never"
    term_at = float(t.term.read_text().split()[0])
    # Quiet time after the traffic stopped (a sample may have seen the last
    # bytes while their answer was on its way), well before the maximum.
    assert last_request + quiet - 0.1 <= term_at
    stop = next(r for r in t.agent.logs() if r["msg"] == "stop requested")
    assert term_at < log_time(stop) + 15


def test_drain_maximum_holds_under_constant_traffic(start_agent, tmp_path):
    t = Tomcat(start_agent, tmp_path, PI_AGENT_DRAIN_SECONDS=4, PI_AGENT_DRAIN_QUIET_SECONDS=2)
    conn = t.connect()
    stop_flag = threading.Event()
    failures = []
    count = [0]

    def traffic():
        try:
            while not stop_flag.is_set() and not t.term.exists():
                post(conn, 1000)
                count[0] += 1
                time.sleep(0.1)
        except Exception as e:  # noqa: BLE001 - any failure before the child's stop counts
            if not t.term.exists():
                failures.append(repr(e))

    worker = threading.Thread(target=traffic, daemon=True)
    worker.start()
    wait_for(lambda: count[0] >= 3, what="traffic flowing")
    t.agent.signal(signal.SIGTERM)
    assert t.agent.wait(timeout=30) == 0
    stop_flag.set()
    worker.join(timeout=10)
    conn.close()
    assert failures == []
    over = drain_over(t.agent)
    assert over["reason"] == "maximum"
    stop = next(r for r in t.agent.logs() if r["msg"] == "stop requested")
    term_at = float(t.term.read_text().split()[0])
    assert term_at >= log_time(stop) + 4 - 0.05


@pytest.mark.parametrize("env, words", [
    ({"PI_AGENT_DRAIN_SECONDS": "10", "PI_AGENT_DRAIN_QUIET_SECONDS": "10"},
     "must be less than PI_AGENT_DRAIN_SECONDS (10)"),
    ({"PI_AGENT_DRAIN_SECONDS": "10", "PI_AGENT_DRAIN_QUIET_SECONDS": "3", "PI_AGENT_PROBE_URL": "off"},
     "PI_AGENT_PROBE_URL is off"),
    ({"PI_AGENT_DRAIN_SECONDS": "10", "PI_AGENT_DRAIN_QUIET_SECONDS": "3", "PI_AGENT_TRAFFIC": "off"},
     "PI_AGENT_TRAFFIC is off"),
    ({"PI_AGENT_DRAIN_QUIET_SECONDS": "soon"}, "PI_AGENT_DRAIN_QUIET_SECONDS"),
    ({"PI_AGENT_TRAFFIC": "always"}, "PI_AGENT_TRAFFIC"),
])
def test_bad_traffic_settings_exit_78_naming_the_variable(start_agent, env, words):
    a = start_agent(["--", "true"], env=agent_env(**env))
    assert a.wait() == 78
    assert words in a.stderr.decode()
