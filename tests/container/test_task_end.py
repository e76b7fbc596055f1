"""Why a task died, in a real container: Tomcat under a memory limit the
kernel enforces, killed by the OOM killer; the agent's run record says
`oom-killed`, and so does the next start on the same storage."""
from dockerlib import wait_for


def test_tomcat_killed_by_the_oom_killer_is_recorded_as_oom_killed(dashboards, volume):
    runs = volume("runs")
    # 160 MiB for the container; a JVM that commits and touches 1 GiB of heap
    # at start-up (-Xms1g -XX:+AlwaysPreTouch) is more than the kernel allows.
    env = {"PI_EFS_MODE": "off", "PI_AGENT_RUN_DIR": "/var/pi-run",
           "JAVA_OPTS": "-Xms1g -Xmx1g -XX:+AlwaysPreTouch"}
    d = dashboards("oom", env=env, volumes=[f"{runs}:/var/pi-run"],
                   extra_args=["--memory", "160m", "--memory-swap", "160m"]).start()
    wait_for(lambda: not d.running(), 180, interval=1, what="the container to end")
    state = d.inspect()["State"]
    assert state["ExitCode"] == 137, d.logs()[-4000:]
    assert state["OOMKilled"] is True  # the engine saw the kernel's OOM kill too
    records = d.records()
    ended = [r for r in records if r.get("msg") == "run ended"]
    assert ended, d.logs()[-4000:]
    assert ended[-1]["reason"] == "oom-killed", ended
    assert ended[-1]["exit_status"] == 137
    assert "OOM killer" in ended[-1]["detail"]
    exited = [r for r in records if r.get("msg") == "child exited"]
    assert exited and exited[-1].get("signal") == 9

    # The next container on the same run dir tells of it, first thing.
    nxt = dashboards("oom-next", env={"PI_EFS_MODE": "off", "PI_AGENT_RUN_DIR": "/var/pi-run"},
                     volumes=[f"{runs}:/var/pi-run"]).start()
    prev = wait_for(lambda: [r for r in nxt.records() if r.get("msg") == "previous run"], 60,
                    interval=0.5, what="the previous run line")
    assert prev[0]["reason"] == "oom-killed" and prev[0]["exit_status"] == 137
    assert prev[0]["level"] == "warn"
