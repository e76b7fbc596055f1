"""The hooks shipped in the image, in a real container: the JVM heap from the
container's memory limit (the cgroup Docker and ECS set) or from
PI_TOMCAT_MAX_MEMORY, the wait for the repository database, and the thread
dump on stop."""
import socket

from dockerlib import docker, free_port


def xmx_flags(d):
    return [line.split("Command line argument: ", 1)[1].strip()
            for line in d.logs().splitlines()
            if "Command line argument: -Xmx" in line]


def test_jvm_heap_follows_the_container_memory_limit(dashboards):
    d = dashboards("heap-cgroup", env={"PI_EFS_MODE": "off"},
                   extra_args=["--memory", "1g"]).start()
    d.wait_ready()
    # 75% of 1024 MiB, and only that: the image's own default gave way.
    assert xmx_flags(d) == ["-Xmx768m"]


def test_jvm_heap_from_pi_tomcat_max_memory(dashboards):
    d = dashboards("heap-var", env={"PI_EFS_MODE": "off", "PI_TOMCAT_MAX_MEMORY": "300"},
                   extra_args=["--memory", "1g"]).start()
    d.wait_ready()
    assert xmx_flags(d) == ["-Xmx300m"]


def test_database_wait_gives_up_and_stops_the_start(dashboards):
    # Nothing listens on the port: the pre-start hook fails after its
    # deadline and the start stops with the hooks' exit code; Tomcat never runs.
    closed = free_port()
    d = dashboards("db-wait", env={"PI_EFS_MODE": "off", "PI_DB_HOST": "127.0.0.1",
                                   "PI_DB_PORT": str(closed), "PI_DB_WAIT_SECONDS": "2"}).start()
    docker("wait", d.name, timeout=120)
    assert d.exit_code() == 75
    logs = d.logs()
    assert f"waiting up to 2 s for the database at 127.0.0.1:{closed}" in logs
    assert "Server startup" not in logs


def test_database_wait_lets_tomcat_start_once_the_port_answers(dashboards):
    with socket.socket() as listener:
        listener.bind(("127.0.0.1", 0))
        listener.listen(8)
        port = listener.getsockname()[1]
        d = dashboards("db-up", env={"PI_EFS_MODE": "off", "PI_DB_HOST": "127.0.0.1",
                                     "PI_DB_PORT": str(port)}).start()
        d.wait_ready()
    hooks = [r for r in d.records() if r["msg"] == "hook finished"
             and r.get("hook") == "10-wait-for-db"]
    assert hooks and hooks[0]["outcome"] == "exit 0"


def test_thread_dump_on_stop(dashboards):
    d = dashboards("dump", env={"PI_EFS_MODE": "off", "PI_AGENT_THREAD_DUMP_ON_STOP": "true",
                                "PI_AGENT_DRAIN_SECONDS": "1"}).start()
    d.wait_ready()
    assert d.stop() == 143
    logs = d.logs()
    # The JVM prints its dump on stdout (SIGQUIT) before Tomcat is stopped.
    assert "Full thread dump" in logs
    assert logs.index("Full thread dump") < logs.index("Destroying ProtocolHandler")
