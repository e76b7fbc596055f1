"""pi-agent as the container's PID 1: Tomcat under it, docker stop drains and
stops Tomcat within the grace, and Docker's HEALTHCHECK uses `pi-agent health --live`."""
import json
import subprocess

from dockerlib import wait_for


def test_agent_is_pid_1_and_tomcat_is_its_child(dashboards):
    d = dashboards("pid1", env={"PI_EFS_MODE": "off"}).start()
    wait_for(lambda: d.version()[0] == 200, 120, what="Tomcat's /pi/version")
    assert d.exec("readlink", "/proc/1/exe").stdout.strip() == "/usr/local/bin/pi-agent"
    # Every JVM in the container: pid and parent pid.
    out = d.exec("sh", "-c",
                 "for p in /proc/[0-9]*; do "
                 "  case $(readlink $p/exe) in */java) "
                 "    echo ${p#/proc/} $(cut -d' ' -f4 $p/stat) ;; esac; done").stdout.split()
    assert len(out) == 2, f"expected one Tomcat JVM, found {out}"
    pid, ppid = out
    assert ppid == "1"
    assert pid != "1"
    # Tomcat answers with the page the stand-in serves.
    status, body = d.version()
    assert json.loads(body)["instance"] == "pid1"


def test_docker_stop_drains_then_stops_tomcat_gracefully(dashboards):
    d = dashboards("stop", env={"PI_EFS_MODE": "off", "PI_AGENT_DRAIN_SECONDS": "3",
                                "PI_AGENT_STOP_GRACE_SECONDS": "20"}).start()
    d.wait_ready()
    stopper = subprocess.Popen(["docker", "stop", "-t", "60", d.name],
                               stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    try:
        # The load balancer is told at once; Tomcat keeps serving meanwhile.
        def draining():
            status, doc = d.health()
            return status == 503 and doc is not None and doc["status"] == "draining"
        wait_for(draining, 10, interval=0.1, what="/health 503 draining")
        assert d.version()[0] == 200
    finally:
        assert stopper.wait(timeout=120) == 0, stopper.stderr.read()
    # 143 is the JVM's own exit after its shutdown hook ran; a kill after the
    # grace (by pi-agent or by docker) would be 137.
    assert d.exit_code() == 143
    logs = d.logs()
    assert "Destroying ProtocolHandler" in logs  # Tomcat's orderly shutdown
    records = d.records()
    exits = [r for r in records if r["msg"] == "child exited"]
    assert exits and exits[-1].get("exit_status") == 143
    assert not [r for r in records if r["msg"].startswith("grace period over")]
    assert records[-1]["msg"] == "pi-agent exiting" and records[-1]["exit_status"] == 143


def test_healthcheck_becomes_healthy(dashboards):
    d = dashboards("healthy", env={"PI_EFS_MODE": "off"}).start()

    def health_status():
        return d.inspect()["State"].get("Health", {}).get("Status")
    wait_for(lambda: health_status() == "healthy", 150, interval=1, what="docker health healthy")
    last = d.inspect()["State"]["Health"]["Log"][-1]
    assert last["ExitCode"] == 0


def test_healthcheck_reports_unhealthy_when_tomcat_never_becomes_ready(dashboards):
    # The probe asks a port nothing listens on: /health stays 503. The
    # container check asks liveness: healthy while Tomcat runs within its
    # startup budget, unhealthy once PI_AGENT_STARTUP_TIMEOUT_SECONDS ran out
    # (a 1 s start period: 0 would mean the image's 120 s).
    d = dashboards("unhealthy", env={"PI_EFS_MODE": "off", "PI_AGENT_STARTUP_TIMEOUT_SECONDS": "8",
                                     "PI_AGENT_PROBE_URL": "http://127.0.0.1:9/pi/version"},
                   extra_args=["--health-start-period", "1s", "--health-interval", "2s",
                               "--health-retries", "2"]).start()

    def health_status():
        return d.inspect()["State"].get("Health", {}).get("Status")
    wait_for(lambda: health_status() == "healthy", 60, interval=0.5, what="docker health healthy")
    wait_for(lambda: health_status() == "unhealthy", 90, interval=1, what="docker health unhealthy")
    last = d.inspect()["State"]["Health"]["Log"][-1]
    assert last["ExitCode"] == 1 and "startup-timeout" in last["Output"]
    assert d.running()  # unhealthy is reported, not acted on by the agent


def test_under_ecs_init_process_the_agent_is_a_subreaper_and_stops_the_same(dashboards):
    # ECS initProcessEnabled = docker run --init: Docker's init is PID 1 and
    # pi-agent runs under it as a child subreaper.
    d = dashboards("init", env={"PI_EFS_MODE": "off", "PI_AGENT_DRAIN_SECONDS": "1"},
                   extra_args=["--init"]).start()
    d.wait_ready()
    assert d.exec("readlink", "/proc/1/exe").stdout.strip().endswith("docker-init")
    procs = d.exec("sh", "-c",
                   "for p in /proc/[0-9]*; do echo ${p#/proc/} $(cut -d' ' -f4 $p/stat) "
                   "$(readlink $p/exe); done").stdout.splitlines()
    by_exe = {}
    for line in procs:
        parts = line.split()
        if len(parts) == 3:
            by_exe.setdefault(parts[2], []).append((parts[0], parts[1]))
    [(agent_pid, agent_ppid)] = by_exe["/usr/local/bin/pi-agent"]
    assert agent_ppid == "1"
    javas = [proc for exe, found in by_exe.items() if exe.endswith("/java") for proc in found]
    assert len(javas) == 1, javas
    assert javas[0][1] == agent_pid  # Tomcat's JVM is the agent's child
    start = [r for r in d.records() if r["msg"] == "pi-agent starting"][0]
    assert start["subreaper"] is True
    assert d.stop() == 143
    assert "Destroying ProtocolHandler" in d.logs()
