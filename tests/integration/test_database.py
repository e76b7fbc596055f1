"""The database check: PI_DB_HOST:PI_DB_PORT reported in /health, /metrics
and EMF, never deciding readiness, with a listening socket of the test as
the database."""
import json
import os
import re
import signal
import socket
import subprocess

import pytest

from conftest import AGENT, agent_env, wait_for
from test_health import Dash, free_port


def listener(port=0):
    s = socket.socket()
    s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    s.bind(("127.0.0.1", port))
    s.listen(16)
    s.setblocking(False)
    return s


def health(d):
    code, _, body = d.get("/health")
    return code, json.loads(body)


def database(d):
    return health(d)[1]["checks"].get("database")


def db_is(d, status, min_failures=0):
    def check():
        db = database(d)
        return db and db["status"] == status and db["failures"] >= min_failures and db
    return check


def messages(d, msg):
    return [r for r in d.agent.logs() if r.get("msg") == msg]


def test_reachable_database_is_reported_and_never_sees_a_connection(start_agent, tmp_path):
    db = listener()
    port = db.getsockname()[1]
    d = Dash(start_agent, tmp_path, PI_DB_HOST="127.0.0.1", PI_DB_PORT=port,
             PI_AGENT_EMF="true", PI_AGENT_EMF_INTERVAL_SECONDS=1)
    try:
        wait_for(d.status_is(200, "ok"), what="ok")
        got = wait_for(lambda: (database(d) or {}).get("passes", 0) >= 3 and database(d),
                       what="three passes")
        assert got["ok"] is True and got["blocking"] is False
        assert got["status"] == "ok" and got["reason"] == "accepts TCP connections"
        assert got["target"] == f"127.0.0.1:{port}"
        assert isinstance(got["latency_seconds"], float) and 0 <= got["latency_seconds"] < 2
        assert re.fullmatch(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z", got["since"])
        assert "database" not in health(d)[1]["failing"]
        # The handshake is never completed: nothing reached accept(), so a
        # MariaDB would count no aborted connection against the task.
        try:
            conn, _ = db.accept()
            conn.close()
            raise AssertionError("the check left a connection for the server to accept")
        except BlockingIOError:
            pass
        _, _, body = d.get("/metrics")
        text = body.decode()
        assert re.search(r"^pi_agent_database_up 1$", text, re.M)
        assert re.search(r"^pi_agent_database_connect_seconds [0-9.e-]+$", text, re.M)
        d.agent.signal(signal.SIGTERM)
        assert d.agent.wait() == 0
    finally:
        d.agent.kill()
        db.close()
    emf = [r for r in d.agent.logs() if "_aws" in r and "DatabaseUp" in r]
    assert emf and emf[-1]["DatabaseUp"] == 1
    assert isinstance(emf[-1]["DatabaseConnectSeconds"], float)
    names = {m["Name"]: m["Unit"] for m in emf[-1]["_aws"]["CloudWatchMetrics"][0]["Metrics"]}
    assert names["DatabaseUp"] == "None" and names["DatabaseConnectSeconds"] == "Seconds"


def test_outage_is_logged_once_and_never_fails_readiness(start_agent, tmp_path):
    db = listener()
    port = db.getsockname()[1]
    d = Dash(start_agent, tmp_path, PI_DB_HOST="127.0.0.1", PI_DB_PORT=port)
    try:
        wait_for(db_is(d, "ok"), what="database ok")
        db.close()
        down = wait_for(db_is(d, "failing", min_failures=3), what="three failures")
        assert down["ok"] is False and down["blocking"] is False
        assert down["reason"] == f"TCP connect to 127.0.0.1:{port}: Connection refused"
        code, h = health(d)
        assert (code, h["status"], h["ready"]) == (200, "ok", True)
        assert "database" not in h["failing"]
        _, _, body = d.get("/metrics")
        assert re.search(r"^pi_agent_database_up 0$", body.decode(), re.M)
        db = listener(port)
        wait_for(db_is(d, "ok"), what="database back")
    finally:
        d.agent.kill()
        db.close()
    assert len(messages(d, "database unreachable")) == 1
    assert len(messages(d, "database reachable")) == 2
    warn = messages(d, "database unreachable")[0]
    assert warn["level"] == "warn" and "Connection refused" in warn["reason"]


def test_host_name_is_looked_up_outside_the_loop(start_agent, tmp_path):
    db = listener()
    d = Dash(start_agent, tmp_path, PI_DB_HOST="localhost", PI_DB_PORT=db.getsockname()[1])
    try:
        got = wait_for(db_is(d, "ok"), what="database ok through localhost")
        assert got["target"] == f"localhost:{db.getsockname()[1]}"
    finally:
        d.agent.kill()
        db.close()


def test_default_port_is_3306(start_agent, tmp_path):
    d = Dash(start_agent, tmp_path, PI_DB_HOST="127.0.0.1")
    try:
        got = wait_for(lambda: database(d), what="checks.database")
        assert got["target"] == "127.0.0.1:3306"
    finally:
        d.agent.kill()


def test_no_database_check_without_pi_db_host(start_agent, tmp_path):
    d = Dash(start_agent, tmp_path)
    try:
        wait_for(d.status_is(200, "ok"), what="ok")
        assert "database" not in health(d)[1]["checks"]
        _, _, body = d.get("/metrics")
        assert b"pi_agent_database_up" not in body
    finally:
        d.agent.kill()
    assert not [r for r in d.agent.logs() if "database" in r.get("msg", "")]


def test_bad_port_is_reported_not_fatal(start_agent, tmp_path):
    d = Dash(start_agent, tmp_path, PI_DB_HOST="db.internal", PI_DB_PORT="33o6")
    try:
        wait_for(d.status_is(200, "ok"), what="ok despite the bad setting")
        got = database(d)
        assert (got["status"], got["ok"], got["blocking"]) == ("misconfigured", False, False)
        assert got["reason"] == 'PI_DB_PORT: expected a port 1-65535, got "33o6"'
    finally:
        d.agent.kill()


def test_failed_lookup_names_the_host(tmp_path):
    """In a network namespace of its own (loopback down) the lookup fails
    at once and no packet leaves the machine."""
    if subprocess.run(["unshare", "--net", "true"], capture_output=True).returncode != 0:
        pytest.skip("unshare --net is not permitted here")
    err = tmp_path / "stderr"
    with open(err, "wb") as f:
        p = subprocess.Popen(["unshare", "--net", "--pid", "--fork", "--mount-proc", "--kill-child",
                              str(AGENT), "--", "sleep", "30"],
                             env=agent_env(PI_DB_HOST="db.example.invalid", PI_AGENT_PROBE_URL="off",
                                           PI_AGENT_PROBE_INTERVAL_SECONDS=1),
                             stdout=subprocess.DEVNULL, stderr=f, start_new_session=True)
    try:
        line = wait_for(lambda: [l for l in err.read_text().splitlines()
                                 if '"database unreachable"' in l], what="the failure", timeout=20)
        rec = json.loads(line[0])
        assert rec["reason"].startswith("DNS lookup of db.example.invalid failed: ")
        assert rec["target"] == "db.example.invalid:3306"
    finally:
        os.killpg(p.pid, signal.SIGKILL)
        p.wait()
