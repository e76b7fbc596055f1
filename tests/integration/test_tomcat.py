"""A real Tomcat (Debian's tomcat10) supervised by pi-agent as PID 1: it
serves a page, stops cleanly on SIGTERM within the grace, the exit status is
Tomcat's own and no java process is left behind."""
import os
import shutil
import signal
import socket
import urllib.request
from pathlib import Path

import pytest

from conftest import agent_env, wait_for

CATALINA_HOME = Path("/usr/share/tomcat10")


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture
def catalina_base(tmp_path):
    if not (CATALINA_HOME / "bin" / "catalina.sh").exists():
        pytest.fail("tomcat10 is not installed: make test installs it (TEST_PACKAGES)")
    base = tmp_path / "tomcat"
    shutil.copytree("/etc/tomcat10", base / "conf", ignore=shutil.ignore_patterns("Catalina"))
    port = free_port()
    server_xml = (base / "conf" / "server.xml").read_text()
    server_xml = server_xml.replace('port="8080"', f'port="{port}"')
    (base / "conf" / "server.xml").write_text(server_xml)
    for d in ("logs", "temp", "work"):
        (base / d).mkdir()
    (base / "webapps" / "pi").mkdir(parents=True)
    (base / "webapps" / "pi" / "version").write_text("pi-agent-test 1.0\n")
    return base, port


def java_processes_of(base):
    found = []
    for d in Path("/proc").iterdir():
        if not d.name.isdigit():
            continue
        try:
            cmd = (d / "cmdline").read_bytes().decode(errors="replace")
        except OSError:
            continue
        if "java" in cmd and str(base) in cmd:
            found.append(int(d.name))
    return found


def test_tomcat_serves_and_stops_cleanly_within_the_grace(start_agent, catalina_base):
    base, port = catalina_base
    env = agent_env(
        CATALINA_HOME=str(CATALINA_HOME),
        CATALINA_BASE=str(base),
        CATALINA_OPTS="-Xmx192m -Djava.security.egd=file:/dev/./urandom",
        PI_AGENT_STOP_GRACE_SECONDS="20",
    )
    agent = start_agent(["--", str(CATALINA_HOME / "bin" / "catalina.sh"), "run"], env=env)

    def page():
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{port}/pi/version", timeout=2) as r:
                return r.status == 200 and r.read().decode()
        except OSError:
            return False

    body = wait_for(page, timeout=120, interval=0.5, what="Tomcat serving /pi/version")
    assert body == "pi-agent-test 1.0\n"
    assert java_processes_of(base), "Tomcat runs as a java process"

    agent.signal(signal.SIGTERM)
    status = agent.wait(timeout=60)
    # The JVM runs Tomcat's shutdown hook on SIGTERM and exits 143 itself.
    assert status == 143
    msgs = [r["msg"] for r in agent.logs()]
    assert "grace period over: killing the child's process group" not in msgs
    exited = [r for r in agent.logs() if r["msg"] == "child exited"][0]
    assert exited["exit_status"] == 143 and "signal" not in exited, "Tomcat exited by itself"
    out = agent.stdout.decode(errors="replace") + agent.stderr.decode(errors="replace")
    assert "Stopping service [Catalina]" in out, "Tomcat ran its orderly shutdown"
    assert java_processes_of(base) == []
