"""The health endpoint end to end: build/pi-agent as PID 1 with a fake
dashboard (a small Python HTTP server) as its child, probed by the agent and
asked by the tests over loopback."""
import fcntl
import json
import os
import re
import signal
import socket
import struct
import subprocess
import sys
import termios
import threading
import time
from datetime import datetime
from pathlib import Path

import pytest

from conftest import AGENT, agent_env, wait_for

PY = sys.executable

# The fake dashboard: answers GET on every path with the status written in a
# control file ("200", "500", ...; "hang" accepts and never answers) and
# records when it gets SIGTERM, then exits 0.
FAKE_DASHBOARD = r'''
import http.server, os, signal, sys, time
port, ctl, rec = int(sys.argv[1]), sys.argv[2], sys.argv[3]
def on_term(signum, frame):
    with open(rec, "a") as f:
        f.write("%f\n" % time.time())
    os._exit(0)
signal.signal(signal.SIGTERM, on_term)
class H(http.server.BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    def do_GET(self):
        try:
            mode = open(ctl).read().strip()
        except OSError:
            mode = "200"
        if mode == "hang":
            time.sleep(60)
            return
        body = b"4.0.0"
        self.send_response(int(mode))
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)
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


class Dash:
    """A running agent with a fake dashboard child and its ports."""

    def __init__(self, start_agent, tmp_path, mode="200", **env):
        self.health_port = free_port()
        self.dash_port = free_port()
        self.ctl = tmp_path / "dash-mode"
        self.term = tmp_path / "dash-term"
        self.ctl.write_text(mode)
        env.setdefault("PI_AGENT_HEALTH_PORT", self.health_port)
        env.setdefault("PI_AGENT_HEALTH_ADDR", "127.0.0.1")
        env.setdefault("PI_AGENT_PROBE_URL", f"http://127.0.0.1:{self.dash_port}/pi/version")
        env.setdefault("PI_AGENT_PROBE_INTERVAL_SECONDS", 1)
        env.setdefault("PI_AGENT_DRAIN_SECONDS", 1)
        self.run_dir = Path(env.setdefault("PI_AGENT_RUN_DIR", tmp_path / "run"))
        self.agent = start_agent(["--", PY, "-c", FAKE_DASHBOARD, str(self.dash_port),
                                  str(self.ctl), str(self.term)], env=agent_env(**env))
        wait_for(self.listening, what="health endpoint listening")

    def listening(self):
        try:
            socket.create_connection(("127.0.0.1", self.health_port), timeout=1).close()
            return True
        except OSError:
            return False

    def set_mode(self, mode):
        tmp = self.ctl.with_suffix(".tmp")
        tmp.write_text(mode)
        tmp.rename(self.ctl)

    def get(self, path, method="GET", headers=None):
        return request(self.health_port, path, method, headers)

    def status_is(self, code, status):
        def check():
            got, _, body = self.get("/health")
            return got == code and json.loads(body)["status"] == status and json.loads(body)
        return check


def request(port, path, method="GET", headers=None):
    """One request on its own connection: (status, headers, body)."""
    import http.client
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
    try:
        conn.request(method, path, headers=headers or {})
        resp = conn.getresponse()
        body = resp.read()
        return resp.status, {k.lower(): v for k, v in resp.getheaders()}, body
    finally:
        conn.close()


def read_responses(sock, count):
    """Reads count HTTP responses (with Content-Length) from sock."""
    buf = b""
    out = []
    sock.settimeout(10)
    while len(out) < count:
        while b"\r\n\r\n" not in buf:
            chunk = sock.recv(65536)
            if not chunk:
                raise AssertionError(f"connection closed after {len(out)} responses")
            buf += chunk
        head, rest = buf.split(b"\r\n\r\n", 1)
        lines = head.decode().split("\r\n")
        hdrs = {k.lower(): v.strip() for k, v in (l.split(":", 1) for l in lines[1:])}
        n = int(hdrs["content-length"])
        while len(rest) < n:
            chunk = sock.recv(65536)
            if not chunk:
                raise AssertionError("connection closed inside a body")
            rest += chunk
        out.append((int(lines[0].split()[1]), hdrs, rest[:n]))
        buf = rest[n:]
    return out, buf


def log_time(record):
    return datetime.fromisoformat(record["ts"].replace("Z", "+00:00")).timestamp()


# ---- state changes and drain -----------------------------------------------

def test_starting_ok_draining_with_fake_dashboard(start_agent, tmp_path):
    d = Dash(start_agent, tmp_path, mode="503", PI_AGENT_DRAIN_SECONDS=2)
    body = wait_for(d.status_is(503, "starting"), what="starting")
    assert body["failing"] == ["tomcat"]
    assert body["checks"]["tomcat"]["status"] == "starting"
    wait_for(lambda: "HTTP 503" in d.get("/health")[2].decode(), what="probe reason")

    d.set_mode("200")
    body = wait_for(d.status_is(200, "ok"), what="ok")
    assert body["ready"] is True and body["failing"] == []
    assert body["checks"]["tomcat"]["reason"] == "HTTP 200"
    assert d.get("/live")[0] == 200

    d.agent.signal(signal.SIGTERM)
    # Draining at once, while the dashboard keeps serving and /live stays 200.
    body = wait_for(d.status_is(503, "draining"), what="draining")
    assert body["ready"] is False
    assert d.get("/live")[0] == 200
    assert not d.term.exists(), "the child must keep serving during the drain"
    assert d.agent.wait() == 0

    records = d.agent.logs()
    msgs = [r["msg"] for r in records]
    assert "ready: /health answers 200" in msgs
    stop = next(r for r in records if r["msg"] == "stop requested")
    term_at = float(d.term.read_text().split()[0])
    # The child's SIGTERM comes no earlier than the drain period after the stop.
    assert term_at >= log_time(stop) + 2 - 0.05


def test_tomcat_failure_gives_503_with_reason_and_recovers(start_agent, tmp_path):
    d = Dash(start_agent, tmp_path)
    wait_for(d.status_is(200, "ok"), what="ok")
    d.set_mode("500")
    body = wait_for(d.status_is(503, "unhealthy"), what="unhealthy")
    tomcat = body["checks"]["tomcat"]
    assert body["failing"] == ["tomcat"]
    assert tomcat["status"] == "failing" and tomcat["reason"] == "HTTP 500"
    assert tomcat["blocking"] is True and tomcat["since"]
    d.set_mode("200")
    wait_for(d.status_is(200, "ok"), what="recovered")
    d.agent.signal(signal.SIGTERM)
    assert d.agent.wait() == 0
    msgs = [r["msg"] for r in d.agent.logs()]
    assert "Tomcat probe failing" in msgs


def test_probe_time_limit_and_refused_connection(start_agent, tmp_path):
    d = Dash(start_agent, tmp_path, mode="hang")
    wait_for(lambda: "no response within 2 s" in d.get("/health")[2].decode(),
             timeout=15, what="probe time limit")
    status, _, body = d.get("/health")
    assert status == 503 and json.loads(body)["status"] == "starting"

    # A probe URL where nothing listens: the reason says so.
    (tmp_path / "second").mkdir()
    d2 = Dash(start_agent, tmp_path / "second", PI_AGENT_PROBE_URL=f"http://127.0.0.1:{free_port()}/")
    wait_for(lambda: "Connection refused" in d2.get("/health")[2].decode(), what="refused")


def test_live_and_health_while_child_is_down(start_agent, tmp_path):
    d = Dash(start_agent, tmp_path, PI_AGENT_RESTART="on-failure")
    wait_for(d.status_is(200, "ok"), what="ok")
    pid = json.loads(d.get("/live")[2])["pid"]
    assert pid > 0
    # Kill the dashboard; during the restart back-off /live and /health fail.
    os.kill(dashboard_pid(d.agent), signal.SIGKILL)

    def down():
        live = d.get("/live")
        health = d.get("/health")
        return live[0] == 503 and health[0] == 503 and (live, json.loads(health[2]))
    live, body = wait_for(down, interval=0.02, what="child down")
    assert json.loads(live[2])["child_running"] is False
    assert body["status"] == "unhealthy"
    assert body["checks"]["tomcat"]["status"] == "not-running"
    wait_for(d.status_is(200, "ok"), timeout=15, what="restarted and ready again")
    d.agent.signal(signal.SIGTERM)
    assert d.agent.wait() == 0


def dashboard_pid(agent):
    """The host pid of the fake dashboard (the agent's child)."""
    pid = agent.agent_pid()
    for task in os.listdir(f"/proc/{pid}/task"):
        for kid in open(f"/proc/{pid}/task/{task}/children").read().split():
            if b"http.server" in open(f"/proc/{kid}/cmdline", "rb").read():
                return int(kid)
    raise AssertionError("fake dashboard not found")


def test_readiness_watch_runs_with_the_listener_disabled(start_agent, tmp_path):
    """PI_AGENT_HEALTH_PORT=0: no listener, but the first ready still runs the
    post-ready hooks."""
    dash_port = free_port()
    ctl = tmp_path / "mode"
    ctl.write_text("200")
    hooks = tmp_path / "hooks"
    (hooks / "post-ready.d").mkdir(parents=True)
    marker = tmp_path / "post-ready-ran"
    hook = hooks / "post-ready.d" / "10-mark"
    hook.write_text(f"#!/bin/sh\ntouch {marker}\n")
    hook.chmod(0o755)
    agent = start_agent(["--", PY, "-c", FAKE_DASHBOARD, str(dash_port), str(ctl),
                         str(tmp_path / "term")],
                        env=agent_env(PI_AGENT_HEALTH_PORT=0, PI_AGENT_PROBE_INTERVAL_SECONDS=1,
                                      PI_AGENT_DRAIN_SECONDS=0, PI_AGENT_HOOKS_DIR=hooks,
                                      PI_AGENT_PROBE_URL=f"http://127.0.0.1:{dash_port}/"))
    wait_for(marker.exists, timeout=15, what="post-ready hook")
    agent.signal(signal.SIGTERM)
    assert agent.wait() == 0
    msgs = [r["msg"] for r in agent.logs()]
    assert "health endpoint disabled (PI_AGENT_HEALTH_PORT=0)" in msgs
    assert msgs.count("ready: /health answers 200") == 1


# ---- HTTP behaviour --------------------------------------------------------

def test_head_keepalive_and_pipelining(start_agent, tmp_path):
    d = Dash(start_agent, tmp_path)
    wait_for(d.status_is(200, "ok"), what="ok")
    get_len = len(d.get("/health")[2])

    with socket.create_connection(("127.0.0.1", d.health_port), timeout=10) as s:
        s.sendall(b"HEAD /health HTTP/1.1\r\nHost: x\r\n\r\n")
        s.settimeout(10)
        head = b""
        while b"\r\n\r\n" not in head:
            head += s.recv(4096)
        text, rest = head.split(b"\r\n\r\n", 1)
        assert text.startswith(b"HTTP/1.1 200 OK")
        assert f"Content-Length: {get_len}".encode() in text
        assert rest == b"", "HEAD has no body"
        # Same connection, kept alive: three pipelined requests in one write.
        s.sendall(b"GET /live HTTP/1.1\r\nHost: x\r\n\r\n"
                  b"GET /nope HTTP/1.1\r\nHost: x\r\n\r\n"
                  b"GET /health?from=alb HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
        responses, extra = read_responses(s, 3)
        assert [r[0] for r in responses] == [200, 404, 200]
        assert json.loads(responses[0][2])["status"] == "alive"
        assert json.loads(responses[2][2])["status"] == "ok"
        assert responses[2][1]["connection"] == "close"
        assert extra == b"" and s.recv(10) == b"", "closed after Connection: close"


def test_http10_closes_unless_keep_alive(start_agent, tmp_path):
    d = Dash(start_agent, tmp_path)
    with socket.create_connection(("127.0.0.1", d.health_port), timeout=10) as s:
        s.sendall(b"GET /live HTTP/1.0\r\n\r\n")
        (resp,), _ = read_responses(s, 1)
        assert resp[1]["connection"] == "close"
        assert s.recv(10) == b""
    with socket.create_connection(("127.0.0.1", d.health_port), timeout=10) as s:
        s.sendall(b"GET /live HTTP/1.0\r\nConnection: keep-alive\r\n\r\n")
        read_responses(s, 1)
        s.sendall(b"GET /live HTTP/1.0\r\nConnection: keep-alive\r\n\r\n")
        (resp,), _ = read_responses(s, 1)
        assert resp[1]["connection"] == "keep-alive"


@pytest.mark.parametrize("raw,code", [
    (b"GET /metricsx HTTP/1.1\r\nHost: x\r\n\r\n", 404),
    (b"POST /health HTTP/1.1\r\nHost: x\r\nContent-Length: 0\r\n\r\n", 405),
    (b"DELETE /live HTTP/1.1\r\nHost: x\r\n\r\n", 405),
    (b"GET /health HTTP/1.1\r\n\r\n", 400),
    (b"GET  /health HTTP/1.1\r\nHost: x\r\n\r\n", 400),
    (b"\x16\x03\x01\x02\x00\x01\x00\x01\xfc\x03\x03\r\n\r\n", 400),
    (b"GET /health HTTP/1.1\r\nHost: x\r\nX-Big: " + b"a" * 9000 + b"\r\n\r\n", 431),
    (b"GET /health HTTP/2.0\r\nHost: x\r\n\r\n", 505),
    (b"POST /health HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n", 501),
])
def test_error_statuses(start_agent, tmp_path, raw, code):
    d = Dash(start_agent, tmp_path)
    with socket.create_connection(("127.0.0.1", d.health_port), timeout=10) as s:
        s.sendall(raw)
        (resp,), _ = read_responses(s, 1)
        assert resp[0] == code
        if code == 405:
            assert resp[1]["allow"] == "GET, HEAD"
        if code >= 400 and code not in (404, 405):
            assert resp[1]["connection"] == "close"
    # The agent is unharmed.
    assert d.get("/live")[0] == 200


def test_request_body_is_skipped_on_a_kept_connection(start_agent, tmp_path):
    d = Dash(start_agent, tmp_path)
    with socket.create_connection(("127.0.0.1", d.health_port), timeout=10) as s:
        s.sendall(b"PUT /live HTTP/1.1\r\nHost: x\r\nContent-Length: 11\r\n\r\nhello world"
                  b"GET /live HTTP/1.1\r\nHost: x\r\n\r\n")
        responses, _ = read_responses(s, 2)
        assert [r[0] for r in responses] == [405, 200]


# ---- robustness ------------------------------------------------------------

def test_500_idle_connections_do_not_block_health_or_signals(start_agent, tmp_path):
    d = Dash(start_agent, tmp_path, PI_AGENT_HEALTH_MAX_CONNECTIONS=600,
             PI_AGENT_HEALTH_MAX_PER_ADDRESS=600, PI_AGENT_HEALTH_IDLE_TIMEOUT_SECONDS=60)
    wait_for(d.status_is(200, "ok"), what="ok")
    idle = []
    try:
        for i in range(500):
            s = socket.create_connection(("127.0.0.1", d.health_port), timeout=10)
            if i % 2:
                s.sendall(b"GET /health HTTP/1.1\r\nHost: slow")  # slowloris: never finished
            idle.append(s)
        # Every connection is still open (none answered, none closed).
        for s in idle[:20]:
            s.setblocking(False)
            with pytest.raises(BlockingIOError):
                s.recv(1)
        status, _, body = d.get("/health")
        assert status == 200 and json.loads(body)["status"] == "ok"
        d.agent.signal(signal.SIGTERM)
        wait_for(d.status_is(503, "draining"), what="draining despite 500 idle connections")
        assert d.agent.wait() == 0
    finally:
        for s in idle:
            s.close()


def open_served(port):
    """A keep-alive connection that has been served once (so it is counted)."""
    s = socket.create_connection(("127.0.0.1", port), timeout=10)
    s.sendall(b"GET /live HTTP/1.1\r\nHost: x\r\n\r\n")
    (resp,), _ = read_responses(s, 1)
    assert resp[0] == 200
    return s


def test_full_table_evicts_the_oldest_waiting_connection(start_agent, tmp_path):
    d = Dash(start_agent, tmp_path, PI_AGENT_HEALTH_MAX_CONNECTIONS=4,
             PI_AGENT_HEALTH_IDLE_TIMEOUT_SECONDS=60)
    held = []
    try:
        # Earlier short connections may take a moment to be closed: retry.
        for _ in range(4):
            held.append(wait_for(lambda: try_open(d.health_port), what="a held connection"))
        extra = socket.create_connection(("127.0.0.1", d.health_port), timeout=10)
        extra.sendall(b"GET /live HTTP/1.1\r\nHost: x\r\n\r\n")
        (resp,), _ = read_responses(extra, 1)
        assert resp[0] == 200, "a new connection is served, not refused"
        held.append(extra)
        assert held[0].recv(100) == b"", "the connection waiting longest made room"
        for s in held[1:]:
            s.sendall(b"GET /live HTTP/1.1\r\nHost: x\r\n\r\n")
            (resp,), _ = read_responses(s, 1)
            assert resp[0] == 200, "the other held connections still work"
    finally:
        for s in held:
            s.close()
    d.agent.signal(signal.SIGTERM)
    assert d.agent.wait() == 0
    assert any(r["msg"].startswith("health: connection table full; closed connections waiting")
               for r in d.agent.logs())


def test_a_table_busy_answering_refuses_new_connections(start_agent, tmp_path):
    """Connections whose answers are still being written are never evicted:
    when they fill the table a new connection is closed at once."""
    d = Dash(start_agent, tmp_path, PI_AGENT_HEALTH_MAX_CONNECTIONS=2,
             PI_AGENT_HEALTH_IDLE_TIMEOUT_SECONDS=60)
    wait_for(d.status_is(200, "ok"), what="ok")
    busy = [stalled_reader(d.health_port) for _ in range(2)]
    try:
        extra = socket.create_connection(("127.0.0.1", d.health_port), timeout=10)
        try:
            extra.sendall(b"GET /live HTTP/1.1\r\nHost: x\r\n\r\n")
            data = extra.recv(100)
        except (ConnectionResetError, BrokenPipeError):
            data = b""
        assert data == b"", "a connection over the limit is closed without an answer"
        extra.close()
        for s, sent in busy:
            responses, _ = read_responses(s, sent)
            assert all(r[0] == 200 for r in responses), "the busy connections got every answer"
    finally:
        for s, _ in busy:
            s.close()
    wait_for(lambda: try_open(d.health_port), what="room again after closing")
    d.agent.signal(signal.SIGTERM)
    assert d.agent.wait() == 0
    assert any(r["msg"] == "health: connection limit reached; closing new connections"
               for r in d.agent.logs())


def stalled_reader(port, count=2000):
    """A connection that pipelines count /metrics requests and reads nothing,
    so the agent holds answers it cannot write (a busy connection). Returns
    (socket, count) once the agent has stopped being able to write."""
    s = socket.socket()
    s.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
    s.connect(("127.0.0.1", port))
    s.settimeout(10)
    s.sendall(b"GET /metrics HTTP/1.1\r\nHost: x\r\n\r\n" * count)
    # The agent has answered into a full socket once our receive queue stops growing.
    last = -1
    def queue_full():
        nonlocal last
        n = struct.unpack("i", fcntl.ioctl(s.fileno(), termios.FIONREAD, b"\0" * 4))[0]
        full, last = n == last and n > 0, n
        return full
    wait_for(queue_full, interval=0.2, what="the agent blocked writing")
    return s, count


def try_open(port):
    try:
        return open_served(port)
    except (AssertionError, OSError):
        return None


def test_idle_and_slow_clients_are_dropped(start_agent, tmp_path):
    d = Dash(start_agent, tmp_path, PI_AGENT_HEALTH_IDLE_TIMEOUT_SECONDS=1)
    idle = socket.create_connection(("127.0.0.1", d.health_port), timeout=15)
    slow = socket.create_connection(("127.0.0.1", d.health_port), timeout=15)
    connected = time.monotonic()
    slow.sendall(b"GET /health HTTP/1.1\r\n")
    # Dribble a header line every 0.3 s for up to 6 s; the agent must drop the
    # client at the idle deadline (1 s) anyway: dribbling does not extend it.
    slow.settimeout(0.3)
    dropped_after = None
    while time.monotonic() - connected < 6:
        try:
            if slow.recv(10) == b"":
                dropped_after = time.monotonic() - connected
                break
        except socket.timeout:
            pass
        except ConnectionResetError:
            dropped_after = time.monotonic() - connected
            break
        try:
            slow.sendall(b"X-A: b\r\n")
        except OSError:
            dropped_after = time.monotonic() - connected
            break
    assert dropped_after is not None, "a dribbling client kept its connection for 6 s"
    assert dropped_after < 2.5, f"dropped only after {dropped_after:.2f} s (deadline 1 s)"
    assert idle.recv(10) == b""
    idle.close()
    slow.close()
    assert d.get("/live")[0] == 200


def test_bind_failure_names_the_variables(start_agent, tmp_path):
    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen(1)
        port = busy.getsockname()[1]
        agent = start_agent(["--", "sleep", "30"],
                            env=agent_env(PI_AGENT_HEALTH_PORT=port,
                                          PI_AGENT_HEALTH_ADDR="127.0.0.1"))
        assert agent.wait() == 78
    err = [r for r in agent.logs() if r["msg"].startswith("cannot listen for health checks")]
    assert err and "PI_AGENT_HEALTH_PORT" in err[0]["msg"]
    assert err[0]["port"] == port


@pytest.mark.parametrize("var,value", [
    ("PI_AGENT_HEALTH_ADDR", "not-an-ip"),
    ("PI_AGENT_HEALTH_PORT", "99999"),
    ("PI_AGENT_PROBE_URL", "https://127.0.0.1:8443/pi/version"),
    ("PI_AGENT_PROBE_URL", "http://tomcat:8224/pi/version"),
    ("PI_AGENT_DRAIN_SECONDS", "soon"),
    ("PI_AGENT_EMF_NAMESPACE", "AWS/Pi"),
])
def test_bad_settings_exit_78_naming_the_variable(start_agent, var, value):
    agent = start_agent(["--", "sleep", "30"], env=agent_env(**{var: value}))
    assert agent.wait() == 78
    err = agent.stderr.decode()
    assert var in err and len(err.strip().splitlines()) == 1


# ---- storage check end to end ------------------------------------------------

@pytest.mark.parametrize("policy,code,status", [("fail", 503, "unhealthy"), ("warn", 200, "ok")])
def test_storage_over_budget(tmp_path, policy, code, status):
    """A real storage start phase: a tmpfs mounted as the EFS root inside the
    agent's own mount namespace, holding more than the budget."""
    efs, home = tmp_path / "efs", tmp_path / "home"
    efs.mkdir()
    home.mkdir()
    script = tmp_path / "run.sh"
    script.write_text(f"mount -t tmpfs tmpfs {efs} && mkdir {efs}/themes && "
                      f"head -c 5000 /dev/zero > {efs}/themes/big.css && "
                      f"exec {AGENT.resolve()} -- sleep 60\n")
    port = free_port()
    env = agent_env(PI_AGENT_HEALTH_PORT=port, PI_AGENT_HEALTH_ADDR="127.0.0.1",
                    PI_AGENT_PROBE_URL="off", PI_EFS_MODE="required", PI_EFS_ROOT=efs,
                    PI_DASHBOARD_HOME=home, PI_EFS_BUDGET_BYTES=1000,
                    PI_EFS_OVER_BUDGET=policy, PI_AGENT_RUN_DIR=tmp_path,
                    PI_AGENT_DRAIN_SECONDS=0)
    proc = subprocess.Popen(["unshare", "--pid", "--fork", "--mount-proc", "--kill-child",
                             "sh", str(script)], env=env, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, start_new_session=True)
    try:
        def answer():
            try:
                got, _, body = request(port, "/health")
            except OSError:
                return None
            doc = json.loads(body)
            return doc["checks"]["efs"]["scanned"] and (got, doc)
        got, doc = wait_for(answer, timeout=20, what="a scanned storage check")
        efs_check = doc["checks"]["efs"]
        assert (got, doc["status"]) == (code, status)
        assert efs_check["status"] == "over" and efs_check["ok"] is False
        assert efs_check["blocking"] is (policy == "fail")
        assert efs_check["used_bytes"] >= 5000 and efs_check["budget_bytes"] == 1000
        assert "over budget" in efs_check["reason"]
        assert doc["failing"] == (["efs"] if policy == "fail" else [])
    finally:
        os.killpg(proc.pid, signal.SIGKILL)
        proc.communicate(timeout=10)


# ---- probe answers that are not HTTP --------------------------------------------

@pytest.mark.parametrize("reply,reason", [
    (b"SSH-2.0-OpenSSH_9.2\r\n", "the answer is not HTTP/1.x"),
    (b"", "connection closed before a status line"),
    (b"HTTP/1.1 302 Found\r\nLocation: /pi/\r\n\r\n", "HTTP 302"),
])
def test_probe_reasons_for_odd_answers(start_agent, tmp_path, reply, reason):
    """The probe target is a raw TCP server in the test: it answers each
    connection with fixed bytes (or nothing) and closes."""
    srv = socket.socket()
    srv.bind(("127.0.0.1", 0))
    srv.listen(16)
    srv.settimeout(0.2)
    stop = threading.Event()

    def serve():
        while not stop.is_set():
            try:
                conn, _ = srv.accept()
            except OSError:
                continue
            with conn:
                conn.settimeout(2)
                try:
                    conn.recv(4096)
                    conn.sendall(reply)
                except OSError:
                    pass
    t = threading.Thread(target=serve, daemon=True)
    t.start()
    try:
        port = free_port()
        agent = start_agent(["--", "sleep", "60"], env=agent_env(
            PI_AGENT_HEALTH_PORT=port, PI_AGENT_HEALTH_ADDR="127.0.0.1",
            PI_AGENT_PROBE_INTERVAL_SECONDS=1,
            PI_AGENT_PROBE_URL=f"http://127.0.0.1:{srv.getsockname()[1]}/pi/version"))

        def reason_seen():
            try:
                got, _, body = request(port, "/health")
            except OSError:
                return None
            doc = json.loads(body)
            return doc["checks"]["tomcat"]["reason"] == reason and (got, doc)
        got, doc = wait_for(reason_seen, timeout=15, what=reason)
        assert got == 503 and doc["status"] == "starting"
        assert doc["checks"]["tomcat"]["failures"] >= 1
        agent.signal(signal.SIGTERM)
        assert agent.wait() == 143
    finally:
        stop.set()
        t.join()
        srv.close()


def test_random_bytes_from_many_clients_do_not_hurt(start_agent, tmp_path):
    """Bounded (600 connections) storm of random and half-valid requests,
    sent in random pieces and abandoned at random points; the agent keeps
    answering and still handles SIGTERM."""
    import random
    rnd = random.Random(1234)
    d = Dash(start_agent, tmp_path, PI_AGENT_HEALTH_IDLE_TIMEOUT_SECONDS=1)
    wait_for(d.status_is(200, "ok"), what="ok")
    pieces = [b"GET ", b"HEAD ", b"POST ", b"/health", b"/live", b"/metrics", b" HTTP/1.1",
              b" HTTP/1.0", b"\r\n", b"\n", b"Host: x", b"Content-Length: 3", b"Connection: close",
              b"Transfer-Encoding: chunked", b"\x00", b":", b" ", b"a" * 5000]
    for i in range(600):
        s = socket.socket()
        s.settimeout(0.05)  # the test never waits for the server's own timeouts
        try:
            s.connect(("127.0.0.1", d.health_port))
            data = b"".join(rnd.choice(pieces) for _ in range(rnd.randint(1, 12)))
            if rnd.random() < 0.3:
                data = bytes(rnd.getrandbits(8) for _ in range(rnd.randint(1, 300)))
            pos = 0
            while pos < len(data):
                step = rnd.randint(1, len(data) - pos)
                s.sendall(data[pos:pos + step])
                pos += step
            if rnd.random() < 0.5:
                s.shutdown(socket.SHUT_WR)
            if rnd.random() < 0.5:
                try:
                    s.recv(65536)
                except OSError:
                    pass
        except OSError:
            pass
        finally:
            if rnd.random() < 0.3:
                # Abort with a reset instead of a clean close.
                s.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, b"\x01\x00\x00\x00\x00\x00\x00\x00")
            s.close()
    status, _, body = d.get("/health")
    assert status == 200 and json.loads(body)["status"] == "ok"
    d.agent.signal(signal.SIGTERM)
    assert d.agent.wait() == 0
