"""Error paths of the container tooling a person can hit: bad arguments to
the scripts, a demo whose dashboard cannot start, and bad settings for the
stand-in images. Each fails with one line naming what to fix."""
import json
import os
import socket
import ssl
import subprocess
import urllib.error
import urllib.request

from dockerlib import IMAGE, ROOT, RUN_ID, docker, free_port

SCRIPTS = ROOT / "scripts"


def run(cmd, env=None, timeout=120):
    return subprocess.run(cmd, env=env, text=True, timeout=timeout,
                          stdout=subprocess.PIPE, stderr=subprocess.PIPE)


def test_scripts_reject_unknown_arguments_with_usage():
    for script in ("docker-images.sh", "docker-demo.sh"):
        p = run([str(SCRIPTS / script), "bogus"])
        assert p.returncode == 2, script
        assert p.stderr.startswith(f"usage: {script}"), p.stderr


def test_demo_that_cannot_become_healthy_fails_with_the_dashboard_logs(images):
    project = f"pi_agent_test_{RUN_ID}_broken".replace("-", "_")
    ports = {name: free_port() for name in ("TOMCAT", "HEALTH", "ALM", "DB")}
    env = dict(os.environ, PI_DEMO_PROJECT=project, PI_AGENT_IMAGE=IMAGE,
               PI_DEMO_LOG_FORMAT="yaml", PI_DEMO_WAIT_SECONDS="120",
               **{f"PI_DEMO_{k}_PORT": str(v) for k, v in ports.items()})
    compose = ["docker-compose", "-p", project, "-f", str(ROOT / "docker-compose.yml")]
    try:
        p = run([str(SCRIPTS / "docker-demo.sh"), "up"], env=env, timeout=600)
        assert p.returncode == 1
        assert "demo: the dashboard did not become healthy; its last log lines:" in p.stderr
        # The agent's own configuration error is among them, naming the variable.
        assert "PI_AGENT_LOG_FORMAT" in p.stderr
    finally:
        run(compose + ["down", "-v", "--remove-orphans"], env=env, timeout=300)


def test_standin_dashboard_rejects_a_bad_tomcat_port(images):
    p = docker("run", "--rm", "--network", "host", "-e", "PI_TOMCAT_PORT=80a",
               "-e", "PI_AGENT_PROBE_URL=off", "-e", "PI_AGENT_HEALTH_PORT=0",
               "-e", "PI_EFS_MODE=off", "-e", "PI_AGENT_HOOKS_DIR=/nonexistent",
               IMAGE, check=False, timeout=120)
    assert p.returncode == 78
    assert "PI_TOMCAT_PORT must be a port number, got '80a'" in p.stdout + p.stderr


def test_mariadb_image_needs_a_password_and_a_numeric_port(images):
    p = docker("run", "--rm", "--network", "host", "pi-agent-test/mariadb:local",
               check=False, timeout=120)
    assert p.returncode != 0
    assert "PI_DB_PASSWORD must be set" in p.stderr
    p = docker("run", "--rm", "--network", "host", "-e", "PI_DB_PASSWORD=x",
               "-e", "MARIADB_PORT=33o6", "pi-agent-test/mariadb:local", check=False, timeout=120)
    assert p.returncode == 78
    assert "MARIADB_PORT must be a port number" in p.stderr


def test_alm_stub_refuses_a_request_without_customer_key(alm_stub):
    alm_stub.start()
    ctx = ssl.create_default_context(cafile=str(alm_stub.pki_dir / "ca.pem"))
    req = urllib.request.Request(alm_stub.url, data=b'{"deployment": "x"}', method="POST")
    try:
        urllib.request.urlopen(req, context=ctx, timeout=5)
        raise AssertionError("the stub accepted a request without customer_key")
    except urllib.error.HTTPError as e:
        assert e.code == 400
        assert json.loads(e.read())["error"] == "expected JSON with customer_key"


def test_demo_refuses_a_port_that_is_not_a_number(images):
    env = dict(os.environ, PI_DEMO_PROJECT=f"pi_agent_test_{RUN_ID}_nan".replace("-", "_"),
               PI_DEMO_TOMCAT_PORT="80a")
    p = run([str(SCRIPTS / "docker-demo.sh"), "up"], env=env)
    assert p.returncode == 1
    assert "demo: PI_DEMO_TOMCAT_PORT must be a port number from 1 to 65535, got '80a'" in p.stderr


def test_demo_names_the_variable_of_a_busy_port_and_starts_nothing(images):
    project = f"pi_agent_test_{RUN_ID}_busy".replace("-", "_")
    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen(1)
        port = busy.getsockname()[1]
        env = dict(os.environ, PI_DEMO_PROJECT=project, PI_AGENT_IMAGE=IMAGE,
                   PI_DEMO_DB_PORT=str(port), PI_DEMO_TOMCAT_PORT=str(free_port()),
                   PI_DEMO_HEALTH_PORT=str(free_port()), PI_DEMO_ALM_PORT=str(free_port()))
        p = run([str(SCRIPTS / "docker-demo.sh"), "up"], env=env)
    assert p.returncode == 1
    assert (f"demo: port {port} (PI_DEMO_DB_PORT) is in use on this host; "
            "set PI_DEMO_DB_PORT to a free port") in p.stderr
    assert docker("ps", "-aq", "--filter",
                  f"label=com.docker.compose.project={project}").stdout.strip() == ""
