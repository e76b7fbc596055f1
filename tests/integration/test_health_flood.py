"""The health endpoint under hostile traffic: a bounded flood of idle,
slowloris and garbage connections from loopback source addresses while the
load balancer's check (a fresh GET /health) and the container check
(`pi-agent health`) keep asking."""
import json
import os
import signal
import socket
import sys
from pathlib import Path

from conftest import AGENT, BASE_ENV, wait_for
from test_health import Dash, read_responses, stalled_reader

sys.path.insert(0, str(Path(__file__).resolve().parent / "helpers"))
from health_flood import Flood, check_command, check_http, checks_during, fd_count, raise_nofile  # noqa: E402

TABLE = 256  # the default PI_AGENT_HEALTH_MAX_CONNECTIONS


def health_env(d):
    env = dict(BASE_ENV)
    env.update(PI_AGENT_RUN_DIR=str(d.run_dir), PI_AGENT_HEALTH_PORT=str(d.health_port),
               PI_AGENT_HEALTH_ADDR="127.0.0.1")
    return env


def test_every_check_is_answered_during_a_flood(start_agent, tmp_path):
    raise_nofile(16384)
    # A long idle timeout: only eviction can make room, not the sweep.
    d = Dash(start_agent, tmp_path, PI_AGENT_HEALTH_IDLE_TIMEOUT_SECONDS=120)
    wait_for(d.status_is(200, "ok"), what="ok")
    pid = d.agent.agent_pid()
    baseline_fds = fd_count([pid])

    # In the middle of a request, and with answers the agent cannot write yet.
    mid = socket.create_connection(("127.0.0.1", d.health_port), timeout=10)
    mid.sendall(b"GET /health HTTP/1.1\r\nHost: x\r\n")
    busy, pending = stalled_reader(d.health_port)

    # Idle connections from 16 addresses (more than the table holds, even
    # capped at 32 per address), slowloris and garbage from two more.
    idle = Flood(d.health_port, sources=[f"127.0.0.{i}" for i in range(2, 18)], idle=2500,
                 slowloris=0, garbage=False, seconds=8).start()
    hostile = Flood(d.health_port, sources=["127.0.0.18", "127.0.0.19"], idle=0, slowloris=200,
                    garbage=True, seconds=8).start()
    try:
        figures = checks_during(lambda: idle.running() or hostile.running(), d.health_port, [str(AGENT), "health"], health_env(d), [pid])
        evicted_first = [s for s in idle.first_idle[:16] if closed(s)]
    finally:
        idle.stop()
        hostile.stop()

    print(json.dumps(figures))
    assert idle.connects >= 2500 and hostile.garbage_sent > 0, "the flood really ran"
    assert idle.closed_by_server > 0, "the table filled and connections were evicted"
    http, cmd = figures["http"], figures["command"]
    assert http["checks"] >= 5 and http["ok"] == http["checks"], http
    assert cmd["checks"] >= 5 and cmd["ok"] == cmd["checks"], cmd
    assert figures["max_fds"] <= baseline_fds + TABLE + 8 + 2, figures

    # Eviction took the connections waiting longest, not those mid-request.
    assert len(evicted_first) == 16, "the oldest idle connections were the ones closed"
    mid.sendall(b"\r\n")
    (resp,), _ = read_responses(mid, 1)
    assert resp[0] == 200, "the connection that was mid-request got its answer"
    responses, _ = read_responses(busy, pending)
    assert [r[0] for r in responses] == [200] * pending, "every held answer was delivered"
    mid.close()
    busy.close()

    # Once the flood is gone: normal answers, and the descriptors are given back.
    assert check_http(d.health_port)[0] == 200
    assert check_command([str(AGENT), "health"], health_env(d))[0] == 0
    wait_for(lambda: fd_count([pid]) <= baseline_fds + 2, what="descriptors given back")
    d.agent.signal(signal.SIGTERM)
    assert d.agent.wait() == 0
    msgs = [r["msg"] for r in d.agent.logs()]
    assert any(m.startswith("health: connection table full; closed connections") for m in msgs)
    assert any(m.startswith("health: one address holds its share of connections") for m in msgs)


def closed(s):
    """True when the server closed s (EOF or reset), without waiting."""
    try:
        s.setblocking(False)
        return s.recv(1) == b""
    except BlockingIOError:
        return False
    except OSError:
        return True


def test_container_check_uses_the_unix_socket(start_agent, tmp_path):
    """`pi-agent health` reaches the agent through run_dir/health.sock (0600),
    even when the TCP table is full of connections busy answering."""
    d = Dash(start_agent, tmp_path, PI_AGENT_HEALTH_MAX_CONNECTIONS=1,
             PI_AGENT_HEALTH_IDLE_TIMEOUT_SECONDS=60)
    wait_for(d.status_is(200, "ok"), what="ok")
    sock = d.run_dir / "health.sock"
    st = os.lstat(sock)
    assert oct(st.st_mode & 0o777) == "0o600" and st.st_uid == os.geteuid()
    busy, pending = stalled_reader(d.health_port)
    try:
        assert check_http(d.health_port, timeout=2)[0] is None, "the TCP table is full"
        rc, _ = check_command([str(AGENT), "health"], health_env(d))
        assert rc == 0, "the container check is answered anyway"
        # --port asks that TCP port alone, which is full.
        rc, _ = check_command([str(AGENT), "health", "--port", str(d.health_port)], health_env(d))
        assert rc == 1
    finally:
        busy.close()
    d.agent.signal(signal.SIGTERM)
    assert d.agent.wait() == 0
    assert not sock.exists(), "the agent removed its socket on the way out"


def test_unix_socket_falls_back_and_is_never_stolen(start_agent, tmp_path):
    """A run dir others may write to gets no socket (a warning says why) and
    the command falls back to TCP; a live socket of another agent is left
    alone; a stale one is replaced."""
    open_dir = tmp_path / "shared"
    open_dir.mkdir()
    os.chmod(open_dir, 0o777)
    d = Dash(start_agent, tmp_path, PI_AGENT_RUN_DIR=open_dir)
    wait_for(d.status_is(200, "ok"), what="ok")
    assert not (open_dir / "health.sock").exists()
    assert check_command([str(AGENT), "health"], health_env(d))[0] == 0, "TCP answers instead"
    d.agent.signal(signal.SIGTERM)
    assert d.agent.wait() == 0
    warn = [r for r in d.agent.logs() if r["msg"].startswith("health: no unix socket")]
    assert warn and warn[0]["path"] == str(open_dir) and "PI_AGENT_RUN_DIR" in warn[0]["msg"]

    # A stale socket (nobody listening) is replaced; a live one is not.
    run = tmp_path / "run2"
    run.mkdir(mode=0o755)
    stale = socket.socket(socket.AF_UNIX)
    stale.bind(str(run / "health.sock"))
    stale.close()
    d2 = Dash(start_agent, tmp_path, PI_AGENT_RUN_DIR=run)
    wait_for(d2.status_is(200, "ok"), what="ok")
    assert check_command([str(AGENT), "health"], health_env(d2))[0] == 0
    d3 = Dash(start_agent, tmp_path, PI_AGENT_RUN_DIR=run)
    wait_for(d3.status_is(200, "ok"), what="ok")
    d3.agent.signal(signal.SIGTERM)
    assert d3.agent.wait() == 0
    assert any(r["msg"].startswith("health: no unix socket") and "another agent" in r["reason"]
               for r in d3.agent.logs())
    assert (run / "health.sock").exists(), "the second agent left the first one's socket"
    d2.agent.signal(signal.SIGTERM)
    assert d2.agent.wait() == 0
    assert not (run / "health.sock").exists()
