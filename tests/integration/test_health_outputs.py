"""What the health endpoint publishes: /metrics parsed by the Prometheus text
parser and a strict line grammar, the CloudWatch EMF line on stdout, and the
`pi-agent health` command (exit codes, one-line output, time limit)."""
import json
import re
import signal
import socket
import subprocess
import threading
import time

import pytest
from prometheus_client.parser import text_string_to_metric_families

from conftest import AGENT, BASE_ENV, agent_env, wait_for
from test_health import Dash, free_port

# ---- /metrics ----------------------------------------------------------------

SAMPLE = re.compile(r'^(?P<name>[a-zA-Z_:][a-zA-Z0-9_:]*)'
                    r'(?:\{(?P<labels>[a-zA-Z_][a-zA-Z0-9_]*="(?:[^"\\\n]|\\[\\"n])*"'
                    r'(?:,[a-zA-Z_][a-zA-Z0-9_]*="(?:[^"\\\n]|\\[\\"n])*")*)\})?'
                    r' (?P<value>[-+]?(?:[0-9]+(?:\.[0-9]*)?(?:[eE][-+]?[0-9]+)?|NaN|[-+]Inf))$')
COMMENT = re.compile(r'^# (?:HELP [a-zA-Z_:][a-zA-Z0-9_:]* .*|TYPE [a-zA-Z_:][a-zA-Z0-9_:]* '
                     r'(?:counter|gauge|histogram|summary|untyped))$')


def test_metrics_strict_format_and_values(start_agent, tmp_path):
    d = Dash(start_agent, tmp_path)
    wait_for(d.status_is(200, "ok"), what="ok")
    status, headers, body = d.get("/metrics")
    assert status == 200
    assert headers["content-type"].startswith("text/plain; version=0.0.4")
    text = body.decode()
    assert text.endswith("\n")
    typed = {}
    for line in text.splitlines():
        if line.startswith("#"):
            assert COMMENT.match(line), line
            if line.startswith("# TYPE"):
                _, _, name, kind = line.split(" ")
                assert name not in typed, f"{name} typed twice"
                typed[name] = kind
        else:
            m = SAMPLE.match(line)
            assert m, f"not a sample line: {line!r}"
            assert m.group("name") in typed, f"{m.group('name')} has no TYPE before it"

    families = {f.name: f for f in text_string_to_metric_families(text)}

    def value(name, **labels):
        fam_name = name[:-len("_total")] if name.endswith("_total") else name
        for s in families[fam_name].samples:
            if s.name == name and all(s.labels.get(k) == v for k, v in labels.items()):
                return s.value
        raise AssertionError(f"no sample {name} {labels}")

    assert value("pi_agent_up") == 1
    assert value("pi_agent_ready") == 1
    assert value("pi_agent_child_running") == 1
    assert value("pi_agent_child_restarts_total") == 0
    assert value("pi_agent_health_state", state="ok") == 1
    assert value("pi_agent_health_state", state="starting") == 0
    assert value("pi_agent_uptime_seconds") > 0
    assert value("pi_agent_probe_passes_total") >= 1
    assert value("pi_agent_probe_latency_seconds") > 0
    assert value("pi_agent_licence_state", status="missing") == 1
    assert value("pi_agent_efs_state", status="off") == 1
    assert families["pi_agent_child_restarts"].type == "counter"

    # HEAD on /metrics: headers only.
    status, headers, body = d.get("/metrics", method="HEAD")
    assert status == 200 and body == b"" and int(headers["content-length"]) > 1000


def test_no_secret_in_health_or_metrics(start_agent, tmp_path):
    secret = "cust-key-5ec2e7-do-not-leak"
    # The customer key goes to an ALM on loopback where nothing listens.
    alm = f"http://127.0.0.1:{free_port()}/alm"
    d = Dash(start_agent, tmp_path, PI_LICENCE=secret, PI_DB_PASSWORD="db-pass-do-not-leak",
             PI_ALM_URL=alm, PI_ALM_ALLOW_HTTP="true", PI_ALM_TIMEOUT_SECONDS=1)
    body = wait_for(d.status_is(200, "ok"), timeout=20, what="ok")
    assert body["checks"]["licence"]["status"] not in ("missing", "unknown")
    for path in ("/health", "/metrics", "/live"):
        text = d.get(path)[2].decode()
        assert secret not in text and "do-not-leak" not in text


# ---- EMF -----------------------------------------------------------------------

UNITS = {"Seconds", "Microseconds", "Milliseconds", "Bytes", "Kilobytes", "Megabytes",
         "Gigabytes", "Terabytes", "Bits", "Kilobits", "Megabits", "Gigabits", "Terabits",
         "Percent", "Count", "Bytes/Second", "Kilobytes/Second", "Megabytes/Second",
         "Gigabytes/Second", "Terabytes/Second", "Bits/Second", "Kilobits/Second",
         "Megabits/Second", "Gigabits/Second", "Terabits/Second", "Count/Second", "None"}


def check_emf(doc):
    """The EMF specification's structure: root object with _aws metadata whose
    directives name root members (dimensions: strings, metrics: numbers)."""
    assert isinstance(doc, dict)
    aws = doc["_aws"]
    assert set(aws) == {"Timestamp", "CloudWatchMetrics"}
    assert isinstance(aws["Timestamp"], int) and aws["Timestamp"] > 1.6e12
    directives = aws["CloudWatchMetrics"]
    assert isinstance(directives, list) and directives
    for d in directives:
        assert set(d) == {"Namespace", "Dimensions", "Metrics"}
        assert isinstance(d["Namespace"], str) and 1 <= len(d["Namespace"]) <= 255
        assert isinstance(d["Dimensions"], list)
        for dimset in d["Dimensions"]:
            assert isinstance(dimset, list) and len(dimset) <= 30
            for key in dimset:
                assert isinstance(doc[key], str) and 1 <= len(doc[key]) <= 1024
        assert 1 <= len(d["Metrics"]) <= 100
        for m in d["Metrics"]:
            assert set(m) <= {"Name", "Unit", "StorageResolution"}
            assert isinstance(m["Name"], str) and 1 <= len(m["Name"]) <= 255
            assert m.get("Unit", "None") in UNITS
            v = doc[m["Name"]]
            assert isinstance(v, (int, float)) and not isinstance(v, bool)
    return doc


def test_emf_line_every_interval(start_agent, tmp_path):
    d = Dash(start_agent, tmp_path, PI_AGENT_EMF="true", PI_AGENT_EMF_INTERVAL_SECONDS=1,
             PI_AGENT_EMF_NAMESPACE="Pi/Test")
    wait_for(d.status_is(200, "ok"), what="ok")
    d.agent.wait_log(lambda r: "_aws" in r and r.get("Healthy") == 1, what="an EMF line after ready")
    wait_for(lambda: len([r for r in d.agent.logs() if "_aws" in r]) >= 2, what="two EMF lines")
    d.agent.signal(signal.SIGTERM)
    assert d.agent.wait() == 0
    lines = [r for r in d.agent.logs() if "_aws" in r]
    assert len(lines) >= 2
    for doc in lines:
        check_emf(doc)
        assert doc["_aws"]["CloudWatchMetrics"][0]["Namespace"] == "Pi/Test"
    last = lines[-1]
    names = {m["Name"] for m in last["_aws"]["CloudWatchMetrics"][0]["Metrics"]}
    assert {"Healthy", "HealthState", "ChildRestarts"} <= names
    assert any(doc["Healthy"] == 1 for doc in lines)
    # Not on ECS and no metadata: no dimension is invented.
    assert last["_aws"]["CloudWatchMetrics"][0]["Dimensions"] == [[]]


def test_emf_off_by_default_outside_ecs(start_agent, tmp_path):
    d = Dash(start_agent, tmp_path, PI_AGENT_EMF_INTERVAL_SECONDS=1)
    wait_for(d.status_is(200, "ok"), what="ok")
    time.sleep(1.5)
    d.agent.signal(signal.SIGTERM)
    assert d.agent.wait() == 0
    assert not [r for r in d.agent.logs() if "_aws" in r]
    assert b'"_aws"' not in d.agent.stdout + d.agent.stderr


# ---- pi-agent health ---------------------------------------------------------

def run_health(*args, **env):
    e = dict(BASE_ENV)
    e.update({k: str(v) for k, v in env.items()})
    started = time.monotonic()
    p = subprocess.run([str(AGENT), "health", *map(str, args)], env=e, capture_output=True, timeout=20)
    return p.returncode, p.stdout.decode(), time.monotonic() - started


def test_health_command_exit_codes(start_agent, tmp_path):
    d = Dash(start_agent, tmp_path, mode="500")
    wait_for(lambda: "HTTP 500" in d.get("/health")[2].decode(), what="failing probe")
    rc, out, _ = run_health("--port", d.health_port)
    assert rc == 1
    assert out.splitlines() == ["503 starting: tomcat starting (HTTP 500)"]

    d.set_mode("200")
    wait_for(d.status_is(200, "ok"), what="ok")
    rc, out, _ = run_health(PI_AGENT_HEALTH_PORT=d.health_port, PI_AGENT_HEALTH_ADDR="127.0.0.1")
    assert (rc, out) == (0, "200 ok\n")
    rc, out, _ = run_health(f"--port={d.health_port}")
    assert (rc, out) == (0, "200 ok\n")

    d.agent.signal(signal.SIGTERM)
    wait_for(d.status_is(503, "draining"), what="draining")
    rc, out, _ = run_health("--port", d.health_port)
    assert (rc, out) == (1, "503 draining\n")


def test_health_command_errors_exit_1_with_one_line():
    port = free_port()
    rc, out, _ = run_health("--port", port)
    assert rc == 1 and len(out.splitlines()) == 1
    assert f"cannot connect to 127.0.0.1:{port}" in out and "refused" in out
    for args, env, text in [
        (("--port", "0"), {}, "disabled"),
        (("--port", "x"), {}, "--port"),
        (("--bogus",), {}, "unknown argument --bogus"),
        ((), {"PI_AGENT_HEALTH_PORT": "0"}, "PI_AGENT_HEALTH_PORT=0"),
        ((), {"PI_AGENT_HEALTH_PORT": "70000"}, "PI_AGENT_HEALTH_PORT"),
    ]:
        rc, out, _ = run_health(*args, **env)
        assert rc == 1 and len(out.splitlines()) == 1 and text in out, (args, env, out)


def test_health_command_gives_up_after_its_time_limit():
    """A server that accepts but never answers: the command stops waiting by
    itself (the subprocess timeout is only a hang guard)."""
    srv = socket.socket()
    srv.bind(("127.0.0.1", 0))
    srv.listen(8)
    held = []
    stop = threading.Event()

    def accept():
        srv.settimeout(0.2)
        while not stop.is_set():
            try:
                held.append(srv.accept()[0])
            except OSError:
                pass
    t = threading.Thread(target=accept, daemon=True)
    t.start()
    try:
        rc, out, elapsed = run_health("--port", srv.getsockname()[1])
        assert rc == 1
        assert out.strip() == f"unhealthy: no answer from 127.0.0.1:{srv.getsockname()[1]} within 2 s"
        assert elapsed >= 1.9, "it waited for the full limit before giving up"
    finally:
        stop.set()
        t.join()
        for c in held:
            c.close()
        srv.close()


def ipv6_loopback():
    try:
        with socket.socket(socket.AF_INET6) as s:
            s.bind(("::1", 0))
        return True
    except OSError:
        return False


@pytest.mark.skipif(not ipv6_loopback(), reason="no IPv6 loopback here")
def test_ipv6_listener_and_health_command(start_agent, tmp_path):
    d = Dash(start_agent, tmp_path, PI_AGENT_HEALTH_ADDR="::")
    d_port = d.health_port
    wait_for(d.status_is(200, "ok"), what="ok over IPv4 on a dual-stack ::")
    with socket.create_connection(("::1", d_port), timeout=10) as s:
        s.sendall(b"GET /live HTTP/1.1\r\nHost: [::1]\r\nConnection: close\r\n\r\n")
        assert s.recv(100).startswith(b"HTTP/1.1 200 OK")
    rc, out, _ = run_health("--port", d_port, PI_AGENT_HEALTH_ADDR="::")
    assert (rc, out) == (0, "200 ok\n")
