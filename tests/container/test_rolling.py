"""A rolling stop behind a load balancer: Debian's HAProxy health-checks
pi-agent's /health on two replicas (as the ALB's target group would) while a
bounded load runs; one replica is stopped and started again, and no request
may fail. This is what the drain on SIGTERM is for, fixed or ended once
Tomcat is quiet (PI_AGENT_DRAIN_QUIET_SECONDS)."""
import json
import shutil
import subprocess
import threading
import time

import pytest

from dockerlib import HERE, free_port, http_get, wait_for

LOAD_LIMIT_SECONDS = 240   # the load loop stops by itself after this at the latest
LOAD_LIMIT_REQUESTS = 20000


class Load(threading.Thread):
    """Sequential GETs of /pi/version through the balancer, each on a new
    connection, until stopped or a limit is hit."""

    def __init__(self, url):
        super().__init__(daemon=True)
        self.url = url
        self.results = []  # (monotonic time, status or None, instance or error)
        self.halt = threading.Event()

    def run(self):
        deadline = time.monotonic() + LOAD_LIMIT_SECONDS
        while (not self.halt.is_set() and time.monotonic() < deadline
               and len(self.results) < LOAD_LIMIT_REQUESTS):
            status, body = http_get(self.url, timeout=10)
            who = body.decode(errors="replace")
            if status == 200:
                try:
                    who = json.loads(body)["instance"]
                except (ValueError, KeyError):
                    pass
            self.results.append((time.monotonic(), status, who))
            time.sleep(0.02)

    def served_by(self, since):
        return {who for t, s, who in self.results if t >= since and s == 200}

    def failures(self):
        return [(round(t, 2), s, who) for t, s, who in self.results if s != 200]


@pytest.fixture
def haproxy(tmp_path):
    procs = []

    def start(r1, r2):
        front = free_port()
        cfg = (HERE / "haproxy" / "haproxy.cfg.in").read_text()
        for k, v in {"FRONT_PORT": front, "R1_TOMCAT": r1.tomcat_port,
                     "R1_HEALTH": r1.health_port, "R2_TOMCAT": r2.tomcat_port,
                     "R2_HEALTH": r2.health_port}.items():
            cfg = cfg.replace(f"@{k}@", str(v))
        path = tmp_path / "haproxy.cfg"
        path.write_text(cfg)
        binary = shutil.which("haproxy") or "/usr/sbin/haproxy"
        subprocess.run([binary, "-c", "-q", "-f", str(path)], check=True)
        log = open(tmp_path / "haproxy.log", "wb")
        p = subprocess.Popen([binary, "-db", "-f", str(path)], stdout=log, stderr=subprocess.STDOUT)
        procs.append(p)
        return f"http://127.0.0.1:{front}/pi/version"

    yield start
    for p in procs:
        p.terminate()
        p.wait(timeout=10)


# The fixed drain, and the drain that ends once Tomcat is quiet: its quiet
# time covers HAProxy's inter x fall (2 s) plus one probe interval (1 s), as
# docs/autoscaling.md says for the ALB; its maximum is far longer.
DRAINS = {
    "fixed": {"PI_AGENT_DRAIN_SECONDS": "5"},
    "quiet": {"PI_AGENT_DRAIN_SECONDS": "30", "PI_AGENT_DRAIN_QUIET_SECONDS": "3"},
}


@pytest.mark.parametrize("drain", sorted(DRAINS))
def test_rolling_stop_behind_haproxy_loses_no_request(dashboards, haproxy, drain):
    env = {"PI_EFS_MODE": "off", **DRAINS[drain]}
    r1 = dashboards("r1", env=env).start()
    r2 = dashboards("r2", env=env).start()
    r1.wait_ready()
    r2.wait_ready()
    url = haproxy(r1, r2)
    # HAProxy needs `rise` passing checks before it sends traffic anywhere.
    wait_for(lambda: http_get(url)[0] == 200, 30, what="HAProxy serving")

    load = Load(url)
    load.start()
    try:
        t0 = time.monotonic()
        wait_for(lambda: load.served_by(t0) == {"r1", "r2"}, 30, what="both replicas serving")

        # ECS stops r1: SIGTERM, drain, Tomcat stops.
        t_stop = time.monotonic()
        assert r1.stop(timeout=60) == 143
        t_down = time.monotonic()
        over = next(r for r in r1.records() if r["msg"].startswith("drain over"))
        if drain == "quiet":
            # Ended by the quiet rule, long before the maximum.
            assert over["reason"] == "quiet", over
            assert t_down - t_stop < 20
        else:
            assert over["reason"] == "maximum", over
        wait_for(lambda: len([1 for t, *_ in load.results if t > t_down]) >= 20, 30,
                 what="requests while r1 is down")
        assert load.served_by(t_down) == {"r2"}

        # ...and starts it again; the balancer takes it back once /health is ok.
        subprocess.run(["docker", "start", r1.name], check=True, stdout=subprocess.DEVNULL)
        t_up = time.monotonic()
        wait_for(lambda: "r1" in load.served_by(t_up), 180, interval=0.5,
                 what="r1 serving again through HAProxy")
    finally:
        load.halt.set()
        load.join(timeout=30)

    assert len(load.results) > 100
    assert load.failures() == []
