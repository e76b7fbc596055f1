"""The docker-compose stack through the demo script (`make demo` /
`make demo-down`): dashboard, MariaDB and the ALM stub come up, /health turns
ok, the database is set up as the vendor requires, and `down` keeps the
volumes. Ports are moved to free ones so a running demo is not disturbed."""
import json
import os
import subprocess

from dockerlib import IMAGE, ROOT, RUN_ID, docker, free_port, http_get

DEMO = str(ROOT / "scripts" / "docker-demo.sh")


def test_demo_up_reports_health_and_down_keeps_volumes(images):
    project = f"pi-agent-test-{RUN_ID}".replace("-", "_").lower()
    ports = {name: free_port() for name in ("TOMCAT", "HEALTH", "ALM", "DB")}
    env = dict(os.environ, PI_DEMO_PROJECT=project, PI_AGENT_IMAGE=IMAGE,
               PI_DEMO_WAIT_SECONDS="240",
               **{f"PI_DEMO_{k}_PORT": str(v) for k, v in ports.items()})
    compose = ["docker-compose", "-p", project, "-f", str(ROOT / "docker-compose.yml")]
    try:
        up = subprocess.run([DEMO, "up"], env=env, text=True, timeout=900,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE)
        assert up.returncode == 0, up.stderr[-4000:]
        # The script prints where things are, then the health JSON.
        assert f"http://127.0.0.1:{ports['TOMCAT']}/pi/" in up.stdout
        health = json.loads(up.stdout.split("/health:", 1)[1])
        assert health["status"] == "ok"
        assert health["checks"]["licence"]["status"] == "valid"
        assert health["checks"]["licence"]["source"] == "alm"
        assert health["checks"]["efs"]["mode"] == "managed"

        # The repository database as the vendor requires it.
        q = subprocess.run(compose + ["exec", "-T", "mariadb", "mariadb", "-N", "-B", "-e",
                                      "select @@lower_case_table_names, @@character_set_server,"
                                      " @@port"],
                           env=env, text=True, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                           timeout=60)
        assert q.returncode == 0, q.stderr
        assert q.stdout.split() == ["1", "utf8mb4", str(ports["DB"])]

        # The stand-in page shows the licence the agent handed over.
        page = http_get(f"http://127.0.0.1:{ports['TOMCAT']}/pi/")[1].decode()
        assert 'class="ok">valid<' in page

        down = subprocess.run([DEMO, "down"], env=env, text=True, timeout=300,
                              stdout=subprocess.PIPE, stderr=subprocess.PIPE)
        assert down.returncode == 0, down.stderr
        assert docker("ps", "-aq", "--filter", f"label=com.docker.compose.project={project}").stdout.strip() == ""
        volumes = set(docker("volume", "ls", "-q", "--filter",
                             f"label=com.docker.compose.project={project}").stdout.split())
        assert volumes == {f"{project}_efs", f"{project}_alm-pki", f"{project}_mariadb-data"}
    finally:
        subprocess.run(compose + ["down", "-v", "--remove-orphans"], env=env, timeout=300,
                       stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
