"""The hooks shipped in hooks/, run directly with a controlled environment
under Debian's dash and under BusyBox sh (what a slim image may have): the
database wait against loopback listeners, the heap hook against fake cgroup
files, the thread dump against a fake JVM."""
import http.server
import json
import os
import signal
import socket
import subprocess
import threading
import time
from pathlib import Path

import pytest

from conftest import AGENT, BASE_ENV, ROOT, wait_for

HOOKS = ROOT / "hooks"
WAIT_FOR_DB = HOOKS / "pre-start.d" / "10-wait-for-db"
JVM_HEAP = HOOKS / "pre-start.d" / "20-jvm-heap"
THREAD_DUMP = HOOKS / "pre-stop.d" / "10-thread-dump"

SHELLS = {"dash": ["dash"], "busybox": ["busybox", "sh"]}


@pytest.fixture(params=sorted(SHELLS))
def shell(request):
    return SHELLS[request.param]


def hook_env(**overrides):
    env = dict(BASE_ENV)
    for key, value in overrides.items():
        if value is not None:
            env[key] = str(value)
    return env


def run_hook(shell, hook, env, timeout=60):
    return subprocess.run(shell + [str(hook)], env=env, capture_output=True, text=True,
                          timeout=timeout)


def test_shipped_hooks_are_executable_posix_sh():
    for hook in (WAIT_FOR_DB, JVM_HEAP, THREAD_DUMP):
        assert os.access(hook, os.X_OK), f"{hook} is not executable"
        assert hook.read_text().startswith("#!/bin/sh\n")


# ---- 10-wait-for-db --------------------------------------------------------

def loopback_socket(listen=True):
    s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    s.bind(("127.0.0.1", 0))
    if listen:
        s.listen(8)
    return s


def db_env(port, **extra):
    return hook_env(PI_DB_HOST="127.0.0.1", PI_DB_PORT=port, PI_AGENT_BIN=AGENT, **extra)


def test_db_wait_succeeds_when_listening(shell, agent_bin):
    with loopback_socket() as s:
        r = run_hook(shell, WAIT_FOR_DB, db_env(s.getsockname()[1], PI_DB_WAIT_SECONDS=5))
    assert r.returncode == 0, r.stderr
    assert "is reachable" in r.stdout


def test_db_wait_retries_until_the_database_listens(shell, agent_bin):
    # Bound but not listening: connections are refused until listen().
    s = loopback_socket(listen=False)
    port = s.getsockname()[1]
    p = subprocess.Popen(shell + [str(WAIT_FOR_DB)], env=db_env(port, PI_DB_WAIT_SECONDS=30),
                         stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        seen = []
        for line in p.stdout:
            seen.append(line)
            if f"waiting for 127.0.0.1:{port}" in line:
                break  # the first attempt was refused: now the database comes up
        s.listen(8)
        out, err = p.communicate(timeout=60)
    finally:
        if p.poll() is None:
            p.kill()
            p.wait()
        s.close()
    assert p.returncode == 0, err
    assert any("Connection refused" in line for line in seen), seen
    assert "is reachable" in out


def test_db_wait_fails_with_a_clear_line_when_nothing_listens(shell, agent_bin):
    s = loopback_socket(listen=False)
    port = s.getsockname()[1]
    try:
        r = run_hook(shell, WAIT_FOR_DB, db_env(port, PI_DB_WAIT_SECONDS=1))
    finally:
        s.close()
    assert r.returncode == 1
    assert f"127.0.0.1:{port} not reachable within 1 s" in r.stderr
    assert "Connection refused" in r.stderr


def test_db_wait_over_ipv6_loopback(shell, agent_bin):
    try:
        s = socket.socket(socket.AF_INET6, socket.SOCK_STREAM)
        s.bind(("::1", 0))
    except OSError:
        pytest.skip("no IPv6 loopback on this machine")
    with s:
        s.listen(8)
        env = db_env(s.getsockname()[1], PI_DB_WAIT_SECONDS=5)
        env["PI_DB_HOST"] = "::1"
        r = run_hook(shell, WAIT_FOR_DB, env)
    assert r.returncode == 0, r.stderr


def test_db_wait_without_host_does_nothing(shell):
    r = run_hook(shell, WAIT_FOR_DB, hook_env(PI_AGENT_BIN="/nonexistent"))
    assert r.returncode == 0
    assert "PI_DB_HOST is not set" in r.stdout


def test_db_wait_default_is_below_the_hook_time_limit(shell, agent_bin):
    with loopback_socket() as s:
        r = run_hook(shell, WAIT_FOR_DB,
                     db_env(s.getsockname()[1], PI_AGENT_HOOK_TIME_LIMIT_SECONDS=12))
    assert r.returncode == 0, r.stderr
    assert "waiting up to 10 s" in r.stdout


def test_db_wait_warns_when_the_wait_outlasts_the_time_limit(shell, agent_bin):
    with loopback_socket() as s:
        r = run_hook(shell, WAIT_FOR_DB, db_env(s.getsockname()[1], PI_DB_WAIT_SECONDS=60,
                                                PI_AGENT_HOOK_TIME_LIMIT_SECONDS=30))
    assert r.returncode == 0, r.stderr
    assert "raise PI_AGENT_HOOK_TIMEOUT_SECONDS" in r.stderr


@pytest.mark.parametrize("port", ["abc", "0", "65536", "33 06"])
def test_db_wait_rejects_a_bad_port(shell, port):
    r = run_hook(shell, WAIT_FOR_DB, db_env(port))
    assert r.returncode == 2
    assert "PI_DB_PORT" in r.stderr


@pytest.mark.parametrize("seconds", ["ten", "-1", "1.5", "99999"])
def test_db_wait_rejects_a_bad_wait(shell, seconds):
    r = run_hook(shell, WAIT_FOR_DB, db_env(3306, PI_DB_WAIT_SECONDS=seconds))
    assert r.returncode == 2
    assert "PI_DB_WAIT_SECONDS" in r.stderr


def test_db_wait_without_pi_agent_says_so(shell):
    env = db_env(3306, PI_DB_WAIT_SECONDS=1)
    env["PI_AGENT_BIN"] = "/nonexistent/pi-agent"
    r = run_hook(shell, WAIT_FOR_DB, env)
    assert r.returncode == 1
    assert "cannot find pi-agent" in r.stderr and "PI_AGENT_BIN" in r.stderr


def test_db_wait_finds_pi_agent_on_path(shell, agent_bin, tmp_path):
    bindir = tmp_path / "bin"
    bindir.mkdir()
    (bindir / "pi-agent").symlink_to(agent_bin.resolve())
    with loopback_socket() as s:
        env = hook_env(PI_DB_HOST="127.0.0.1", PI_DB_PORT=s.getsockname()[1],
                       PI_DB_WAIT_SECONDS=5, PATH=f"{bindir}:{BASE_ENV.get('PATH', '/usr/bin:/bin')}")
        r = run_hook(shell, WAIT_FOR_DB, env)
    assert r.returncode == 0, r.stderr


def test_wait_tcp_usage_errors(agent_bin):
    r = subprocess.run([str(agent_bin), "wait-tcp", "127.0.0.1", "3306"], capture_output=True,
                       text=True, env=hook_env())
    assert r.returncode == 64
    assert "usage: pi-agent wait-tcp HOST PORT SECONDS" in r.stderr


# ---- 20-jvm-heap -----------------------------------------------------------

MiB = 1024 * 1024


@pytest.fixture
def heap(tmp_path, shell):
    """Runs the heap hook against a fake cgroup directory; returns
    (result, env-file text)."""
    cgroup = tmp_path / "cgroup"
    cgroup.mkdir()
    envfile = tmp_path / "env"

    def run(v2=None, v1=None, no_env_file=False, **extra):
        if v2 is not None:
            (cgroup / "memory.max").write_text(f"{v2}\n")
        if v1 is not None:
            (cgroup / "memory").mkdir(exist_ok=True)
            (cgroup / "memory" / "memory.limit_in_bytes").write_text(f"{v1}\n")
        envfile.write_text("")
        env = hook_env(PI_AGENT_CGROUP_DIR=cgroup,
                       PI_AGENT_ENV_FILE=None if no_env_file else envfile, **extra)
        r = run_hook(shell, JVM_HEAP, env)
        return r, envfile.read_text()

    return run


def test_heap_from_pi_tomcat_max_memory(heap):
    r, text = heap(v2=4096 * MiB, PI_TOMCAT_MAX_MEMORY=2048)
    assert r.returncode == 0, r.stderr
    assert text == "CATALINA_OPTS=-Xmx2048m\n"
    assert "PI_TOMCAT_MAX_MEMORY" in r.stdout


def test_heap_appends_to_existing_catalina_opts(heap):
    r, text = heap(PI_TOMCAT_MAX_MEMORY=1024, CATALINA_OPTS="-Dfile.encoding=UTF-8 -Dx=1")
    assert r.returncode == 0, r.stderr
    assert text == "CATALINA_OPTS=-Dfile.encoding=UTF-8 -Dx=1 -Xmx1024m\n"


def test_heap_from_cgroup_v2_limit(heap):
    r, text = heap(v2=4096 * MiB)
    assert r.returncode == 0, r.stderr
    assert text == "CATALINA_OPTS=-Xmx3072m\n"
    assert "75% of the container's 4096 MiB limit" in r.stdout


def test_heap_percent_is_configurable(heap):
    r, text = heap(v2=4096 * MiB, PI_AGENT_HEAP_PERCENT=50)
    assert r.returncode == 0, r.stderr
    assert text == "CATALINA_OPTS=-Xmx2048m\n"


def test_heap_from_cgroup_v1_limit(heap):
    r, text = heap(v1=2048 * MiB)
    assert r.returncode == 0, r.stderr
    assert text == "CATALINA_OPTS=-Xmx1536m\n"


@pytest.mark.parametrize("limits", [{"v2": "max"}, {"v1": 9223372036854771712}, {}])
def test_heap_without_a_limit_changes_nothing(heap, limits):
    r, text = heap(**limits)
    assert r.returncode == 0, r.stderr
    assert text == ""
    assert "leaving the JVM's default heap" in r.stdout


@pytest.mark.parametrize("opts", [{"JAVA_OPTS": "-Xmx3g"},
                                  {"CATALINA_OPTS": "-Dx=1 -XX:MaxRAMPercentage=60"},
                                  {"JAVA_OPTS": "-XX:MaxHeapSize=2g"}])
def test_heap_already_set_is_left_alone(heap, opts):
    r, text = heap(v2=4096 * MiB, PI_TOMCAT_MAX_MEMORY=1024, **opts)
    assert r.returncode == 0, r.stderr
    assert text == ""
    assert "already sets the heap" in r.stdout


def test_heap_into_java_opts(heap):
    r, text = heap(PI_TOMCAT_MAX_MEMORY=512, PI_AGENT_HEAP_VARIABLE="JAVA_OPTS",
                   JAVA_OPTS="-Djava.awt.headless=true")
    assert r.returncode == 0, r.stderr
    assert text == "JAVA_OPTS=-Djava.awt.headless=true -Xmx512m\n"


@pytest.mark.parametrize("name,value", [
    ("PI_TOMCAT_MAX_MEMORY", "2g"),
    ("PI_TOMCAT_MAX_MEMORY", "32"),
    ("PI_TOMCAT_MAX_MEMORY", "-1"),
    ("PI_TOMCAT_MAX_MEMORY", "99999999999999999999"),
    ("PI_AGENT_HEAP_PERCENT", "5"),
    ("PI_AGENT_HEAP_PERCENT", "96"),
    ("PI_AGENT_HEAP_PERCENT", "half"),
    ("PI_AGENT_HEAP_VARIABLE", "MAVEN_OPTS"),
])
def test_heap_rejects_bad_settings(heap, name, value):
    r, text = heap(v2=4096 * MiB, **{name: value})
    assert r.returncode == 2
    assert name in r.stderr
    assert text == ""


def test_heap_limit_too_small(heap):
    r, text = heap(v2=64 * MiB)
    assert r.returncode == 2
    assert "under 64 MiB" in r.stderr and "PI_TOMCAT_MAX_MEMORY" in r.stderr
    assert text == ""


def test_heap_unreadable_limit(heap):
    r, text = heap(v2="lots")
    assert r.returncode == 2
    assert "unexpected memory limit" in r.stderr
    assert text == ""


@pytest.fixture
def task_metadata():
    """A task-metadata endpoint on loopback: serves /v4/x/task with the
    given document (a dict), or a status code; counts the requests."""
    state = {"doc": None, "status": 200, "requests": []}

    class Handler(http.server.BaseHTTPRequestHandler):
        def do_GET(self):
            state["requests"].append(self.path)
            body = json.dumps(state["doc"]).encode() if self.path == "/v4/x/task" else b"{}"
            self.send_response(state["status"] if self.path == "/v4/x/task" else 404)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, *args):
            pass

    server = http.server.HTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    state["uri"] = f"http://127.0.0.1:{server.server_port}/v4/x"
    yield state
    server.shutdown()
    server.server_close()


def test_heap_from_task_metadata_when_the_cgroup_has_no_limit(heap, task_metadata):
    task_metadata["doc"] = {"TaskARN": "arn:aws:ecs:eu-west-2:1:task/c/abc",
                            "Limits": {"CPU": 1, "Memory": 4096}}
    r, text = heap(v2="max", ECS_CONTAINER_METADATA_URI_V4=task_metadata["uri"],
                   PI_AGENT_BIN=AGENT)
    assert r.returncode == 0, r.stderr
    assert text == "CATALINA_OPTS=-Xmx3072m\n"
    assert "task metadata Limits.Memory" in r.stdout and "4096 MiB" in r.stdout
    assert task_metadata["requests"] == ["/v4/x/task"]


def test_heap_prefers_the_cgroup_limit_over_task_metadata(heap, task_metadata):
    task_metadata["doc"] = {"Limits": {"Memory": 8192}}
    r, text = heap(v2=2048 * MiB, ECS_CONTAINER_METADATA_URI_V4=task_metadata["uri"],
                   PI_AGENT_BIN=AGENT)
    assert r.returncode == 0, r.stderr
    assert text == "CATALINA_OPTS=-Xmx1536m\n"
    assert "the container's 2048 MiB limit" in r.stdout
    assert task_metadata["requests"] == []


@pytest.mark.parametrize("doc,status", [({"Limits": {"CPU": 1}}, 200), ({"Limits": {"Memory": 4096}}, 500),
                                        ({"Limits": {"Memory": "lots"}}, 200)])
def test_heap_without_a_task_memory_limit_keeps_the_jvm_default(heap, task_metadata, doc, status):
    task_metadata["doc"] = doc
    task_metadata["status"] = status
    r, text = heap(v2="max", ECS_CONTAINER_METADATA_URI_V4=task_metadata["uri"],
                   PI_AGENT_BIN=AGENT)
    assert r.returncode == 0, r.stderr
    assert text == ""
    assert "task metadata gave no memory limit" in r.stdout
    assert "leaving the JVM's default heap" in r.stdout


def test_task_memory_command(task_metadata):
    task_metadata["doc"] = {"Limits": {"CPU": 0.5, "Memory": 2048}}
    r = subprocess.run([str(AGENT), "task-memory"], capture_output=True, text=True, timeout=10,
                       env=hook_env(ECS_CONTAINER_METADATA_URI_V4=task_metadata["uri"]))
    assert (r.returncode, r.stdout) == (0, "2048\n"), r.stderr
    r = subprocess.run([str(AGENT), "task-memory"], capture_output=True, text=True, timeout=10,
                       env=hook_env())
    assert r.returncode == 1 and "ECS_CONTAINER_METADATA_URI_V4 is not set" in r.stderr


def test_heap_needs_the_env_file(heap):
    r, _ = heap(PI_TOMCAT_MAX_MEMORY=1024, no_env_file=True)
    assert r.returncode == 1
    assert "PI_AGENT_ENV_FILE is not set" in r.stderr


# ---- 10-thread-dump ----------------------------------------------------------

FAKE_JAVA = """#!/bin/sh
# Stands in for the JVM: answers SIGQUIT the way a JVM does, with a dump.
trap 'echo "Full thread dump (fake JVM)" >> "$1"' QUIT
: > "$1.ready"
while :; do sleep 0.05; done
"""


@pytest.fixture
def fake_jvm(tmp_path):
    """Starts fake JVMs (scripts named java, each in its own process group)."""
    procs = []

    def start(tag):
        d = tmp_path / tag
        d.mkdir()
        java = d / "java"
        java.write_text(FAKE_JAVA)
        java.chmod(0o755)
        dump = d / "dump"
        p = subprocess.Popen([str(java), str(dump)], start_new_session=True)
        procs.append(p)
        wait_for(lambda: (d / "dump.ready").exists(), what="fake JVM ready")
        assert Path(f"/proc/{p.pid}/comm").read_text().strip() == "java"
        return p, dump

    yield start
    for p in procs:
        try:
            os.killpg(p.pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
        p.wait()


def test_thread_dump_signals_the_jvm_in_tomcats_group(shell, fake_jvm):
    jvm, dump = fake_jvm("tomcat")
    other, other_dump = fake_jvm("other")
    r = run_hook(shell, THREAD_DUMP, hook_env(PI_AGENT_THREAD_DUMP_ON_STOP="true",
                                              PI_AGENT_THREAD_DUMP_WAIT_SECONDS=0,
                                              PI_AGENT_CHILD_PID=jvm.pid))
    assert r.returncode == 0, r.stderr
    assert f"asked the JVM (pid {jvm.pid}) for a thread dump" in r.stdout
    wait_for(lambda: dump.exists() and "Full thread dump" in dump.read_text(), what="dump")
    # A JVM outside Tomcat's process group is never touched.
    assert not other_dump.exists()


@pytest.mark.parametrize("value", [None, "false", "0", ""])
def test_thread_dump_off_by_default(shell, fake_jvm, value):
    jvm, dump = fake_jvm("tomcat")
    r = run_hook(shell, THREAD_DUMP, hook_env(PI_AGENT_THREAD_DUMP_ON_STOP=value,
                                              PI_AGENT_CHILD_PID=jvm.pid))
    assert r.returncode == 0, r.stderr
    assert r.stdout == ""
    # Give a wrongly sent signal time to show: the fake answers within 50 ms.
    time.sleep(0.3)
    assert not dump.exists()


def test_thread_dump_without_tomcat_running(shell):
    r = run_hook(shell, THREAD_DUMP, hook_env(PI_AGENT_THREAD_DUMP_ON_STOP="true"))
    assert r.returncode == 0
    assert "Tomcat is not running" in r.stdout


def test_thread_dump_no_jvm_in_the_group(shell):
    sleeper = subprocess.Popen(["sleep", "60"], start_new_session=True)
    try:
        r = run_hook(shell, THREAD_DUMP, hook_env(PI_AGENT_THREAD_DUMP_ON_STOP="true",
                                                  PI_AGENT_CHILD_PID=sleeper.pid))
    finally:
        sleeper.kill()
        sleeper.wait()
    assert r.returncode == 1
    assert f"no JVM (a process named java) in Tomcat's process group {sleeper.pid}" in r.stderr


@pytest.mark.parametrize("name,value", [("PI_AGENT_THREAD_DUMP_ON_STOP", "sometimes"),
                                        ("PI_AGENT_THREAD_DUMP_WAIT_SECONDS", "1.5")])
def test_thread_dump_rejects_bad_settings(shell, name, value):
    env = hook_env(PI_AGENT_THREAD_DUMP_ON_STOP="true", PI_AGENT_CHILD_PID=1)
    env[name] = value
    r = run_hook(shell, THREAD_DUMP, env)
    assert r.returncode == 2
    assert name in r.stderr


def test_shipped_hooks_pass_shellcheck_as_posix_sh():
    hooks = sorted(str(p) for p in HOOKS.glob("*.d/*"))
    assert len(hooks) >= 3
    r = subprocess.run(["shellcheck", "-s", "sh"] + hooks, capture_output=True, text=True)
    assert r.returncode == 0, r.stdout + r.stderr
