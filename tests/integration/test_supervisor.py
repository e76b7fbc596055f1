"""The PID-1 supervisor: signals, reaping, stop sequence, exit codes, fds,
privileges and idleness, with build/pi-agent as PID 1 of a fresh PID
namespace (or as a subreaper where the test says so)."""
import json
import os
import signal
import stat
import subprocess
import sys
import time
from pathlib import Path

import pytest

from conftest import AGENT, HELPERS, agent_env, descendants, wait_for

PY = sys.executable


def messages(agent):
    return [r.get("msg") for r in agent.logs()]


def start_recorder(start_agent, tmp_path, *extra, env=None):
    out = tmp_path / "signals.txt"
    agent = start_agent(["--", PY, str(HELPERS / "signal_recorder.py"), str(out), *extra],
                        env=env or agent_env())
    wait_for(lambda: Path(str(out) + ".ready").exists(), what="child ready")
    return agent, out


@pytest.mark.parametrize("sig", [signal.SIGHUP, signal.SIGQUIT, signal.SIGUSR1,
                                 signal.SIGUSR2, signal.SIGWINCH])
def test_forwarded_signal_reaches_child(start_agent, tmp_path, sig):
    agent, out = start_recorder(start_agent, tmp_path)
    agent.signal(sig)
    wait_for(lambda: out.exists() and sig.name in out.read_text(), what=f"{sig.name} at child")
    assert agent.proc.poll() is None, "a forwarded signal must not stop the agent"
    agent.signal(signal.SIGTERM)
    assert agent.wait() == 143


@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGINT])
def test_stop_signal_is_forwarded_as_sigterm_and_status_propagates(start_agent, tmp_path, sig):
    agent, out = start_recorder(start_agent, tmp_path)
    agent.signal(sig)
    assert agent.wait() == 143
    assert out.read_text().split() == ["SIGTERM"]
    msgs = messages(agent)
    assert "stop requested" in msgs
    assert "stopping the child" in msgs
    assert "child exited" in msgs


@pytest.mark.parametrize("code", [0, 1, 3, 143])
def test_exit_code_propagates(start_agent, code):
    agent = start_agent(["--", "sh", "-c", f"exit {code}"])
    assert agent.wait() == code
    exits = [r for r in agent.logs() if r["msg"] == "child exited"]
    assert exits and exits[0]["exit_status"] == code


def test_death_by_signal_is_128_plus_n(start_agent):
    agent = start_agent(["--", "sh", "-c", "kill -KILL $$"])
    assert agent.wait() == 137


def test_command_not_found_is_127(start_agent):
    agent = start_agent(["--", "/nonexistent/catalina.sh", "run"])
    assert agent.wait() == 127
    rec = [r for r in agent.logs() if r["msg"] == "command not found"]
    assert rec and rec[0]["command"] == "/nonexistent/catalina.sh"


def test_command_not_executable_is_126(start_agent, tmp_path):
    script = tmp_path / "not-exec.sh"
    script.write_text("#!/bin/sh\nexit 0\n")
    script.chmod(0o644)
    agent = start_agent(["--", str(script)])
    assert agent.wait() == 126
    assert "command cannot be executed" in messages(agent)


def test_default_command_is_catalina_run(start_agent):
    # No such file on a build machine: the agent must try exactly this path.
    agent = start_agent([])
    assert agent.wait() == 127
    rec = [r for r in agent.logs() if r["msg"] == "command not found"][0]
    assert rec["command"] == "/var/panintelligence/Dashboard/tomcat/bin/catalina.sh"


def test_command_from_pi_agent_command(start_agent, tmp_path):
    marker = tmp_path / "ran"
    agent = start_agent([], env=agent_env(PI_AGENT_COMMAND=f"touch {marker}"))
    assert agent.wait() == 0
    assert marker.exists()


@pytest.mark.parametrize("name,value", [
    ("PI_AGENT_STOP_GRACE_SECONDS", "twenty"),
    ("PI_AGENT_STOP_GRACE_SECONDS", "0"),
    ("PI_AGENT_RESTART", "always"),
    ("PI_AGENT_LOG_LEVEL", "loud"),
    ("PI_AGENT_LOG_FORMAT", "xml"),
    ("PI_AGENT_RUN_AS", "no-such-user-pi"),
])
def test_bad_configuration_exits_78_naming_the_variable(start_agent, tmp_path, name, value):
    marker = tmp_path / "must-not-run"
    agent = start_agent(["--", "touch", str(marker)], env=agent_env(**{name: value}))
    assert agent.wait() == 78
    err = agent.stderr.decode()
    assert len(err.strip().splitlines()) == 1, err
    assert name in err
    assert not marker.exists(), "nothing may start on a configuration error"


def test_unknown_option_exits_78(start_agent):
    agent = start_agent(["--bogus"], pid1=False)
    assert agent.wait() == 78
    assert "--bogus" in agent.stderr.decode()


def test_version_and_help(agent_bin):
    out = subprocess.run([str(agent_bin), "--version"], capture_output=True, text=True)
    assert out.returncode == 0 and out.stdout.startswith("pi-agent ")
    out = subprocess.run([str(agent_bin), "--help"], capture_output=True, text=True)
    assert out.returncode == 0 and "usage: pi-agent" in out.stdout


def zombies_in_namespace(agent):
    """Zombie processes that are descendants of the agent's namespace init."""
    init = agent.agent_pid()
    zs = []
    for d in Path("/proc").iterdir():
        if not d.name.isdigit():
            continue
        try:
            st = (d / "stat").read_text()
        except OSError:
            continue
        fields = st.rsplit(")", 1)[1].split()
        if fields[0] == "Z" and int(fields[1]) == init:
            zs.append(int(d.name))
    return zs


def test_orphaned_grandchildren_are_reaped(start_agent, tmp_path):
    # The child starts grandchildren that exit while it is still running; they
    # are re-parented to PID 1 (the agent) when the middle process exits.
    script = ("for i in 1 2 3 4 5; do (sh -c 'sleep 0.2' &) ; done; "
              f"touch {tmp_path}/spawned; exec sleep 30")
    agent = start_agent(["--", "sh", "-c", script])
    wait_for(lambda: (tmp_path / "spawned").exists(), what="grandchildren spawned")
    wait_for(lambda: sum(1 for r in agent.logs() if r["msg"] == "reaped orphan") >= 5,
             what="the grandchildren reaped")
    assert zombies_in_namespace(agent) == []
    agent.signal(signal.SIGTERM)
    assert agent.wait() == 143
    assert sum(1 for r in agent.logs() if r["msg"] == "reaped orphan") >= 5


def test_child_ignoring_sigterm_is_killed_after_grace_not_before(start_agent, tmp_path):
    env = agent_env(PI_AGENT_STOP_GRACE_SECONDS="3")
    agent, out = start_recorder(start_agent, tmp_path, "ignore-term", env=env)
    child_pid = int(Path(str(out) + ".ready").read_text())
    agent.signal(signal.SIGTERM)
    wait_for(lambda: out.exists() and "SIGTERM" in out.read_text(), what="SIGTERM at child")
    host_pid = host_pid_of(agent, child_pid)
    time.sleep(1.0)
    # One second into a three-second grace the child must still be alive.
    assert process_alive(host_pid), "killed before the grace"
    assert agent.proc.poll() is None
    assert agent.wait(timeout=15) == 137
    msgs = messages(agent)
    assert "grace period over: killing the child's process group" in msgs
    # the kill came after the stop request by at least most of the grace
    recs = {r["msg"]: r for r in agent.logs()}
    t_stop = recs["stop requested"]["ts"]
    t_kill = recs["grace period over: killing the child's process group"]["ts"]
    assert _ts(t_kill) - _ts(t_stop) >= 2.5


def host_pid_of(agent, ns_pid):
    """The host pid of the agent's descendant whose pid inside the agent's
    namespace is ns_pid (the last field of NSpid in /proc/PID/status)."""
    for pid in descendants(agent.proc.pid):
        try:
            status = Path(f"/proc/{pid}/status").read_text()
        except OSError:
            continue
        nspids = [l.split()[1:] for l in status.splitlines() if l.startswith("NSpid:")]
        if nspids and int(nspids[0][-1]) == ns_pid and len(nspids[0]) > 1:
            return pid
    raise AssertionError(f"no process with pid {ns_pid} in the agent's namespace")


def process_alive(host_pid):
    """True while host_pid exists and is not a zombie."""
    try:
        proc_stat = Path(f"/proc/{host_pid}/stat").read_text()
    except OSError:
        return False
    return proc_stat.rsplit(")", 1)[1].split()[0] != "Z"


def _ts(iso):
    from datetime import datetime
    return datetime.strptime(iso, "%Y-%m-%dT%H:%M:%S.%fZ").timestamp()


def test_second_sigterm_does_not_restart_the_wait(start_agent, tmp_path):
    env = agent_env(PI_AGENT_STOP_GRACE_SECONDS="3")
    agent, out = start_recorder(start_agent, tmp_path, "ignore-term", env=env)
    agent.signal(signal.SIGTERM)
    agent.wait_log("stop requested")
    time.sleep(1.5)  # a second signal well into the grace
    agent.signal(signal.SIGTERM)
    assert agent.wait(timeout=15) == 137
    recs = agent.logs()
    stop = [r for r in recs if r["msg"] == "stop requested"]
    noted = [r for r in recs if r["msg"] == "stop already in progress: signal noted"]
    kill = [r for r in recs if r["msg"] == "grace period over: killing the child's process group"]
    assert len(stop) == 1 and len(noted) == 1 and len(kill) == 1
    # killed 3 s after the first signal, not 3 s after the second
    assert _ts(kill[0]["ts"]) - _ts(stop[0]["ts"]) < 4.4


def test_background_processes_left_behind_are_killed(start_agent, tmp_path):
    pidfile = tmp_path / "bg.pid"
    # A daemon in a new session (not in the child's process group) that ignores
    # SIGTERM: only the descendant sweep can find and kill it.
    script = (f"setsid sh -c 'trap \"\" TERM; echo $$ > {pidfile}; exec sleep 300' & "
              f"while [ ! -s {pidfile} ]; do sleep 0.05; done; exit 0")
    env = agent_env(PI_AGENT_STOP_GRACE_SECONDS="2")
    agent = start_agent(["--", "sh", "-c", script], env=env)
    assert agent.wait(timeout=20) == 0
    assert "terminating processes the child left behind" in messages(agent)
    assert "killed processes still alive after the grace" in messages(agent)


def test_leftovers_seen_only_after_the_grace_kill_are_killed_too(start_agent, tmp_path):
    # A chain of processes that ignore SIGTERM, in a session of their own and
    # deeper than the agent follows parents in /proc: the bottom ones only
    # become visible as the ones above die after the grace. They must be
    # killed as they show up, or the agent waits for them for ever.
    chain = tmp_path / "chain.sh"
    ready = tmp_path / "bottom"
    chain.write_text(f'n=$1\nif [ "$n" -gt 0 ]; then sh "$0" $((n - 1)); true; '
                     f'else touch {ready}; exec sleep 1000; fi\n')
    script = (f'trap "" TERM; setsid sh {chain} 80 & '
              f'while [ ! -e {ready} ]; do sleep 0.05; done; exit 0')
    agent = start_agent(["--", "sh", "-c", script],
                        env=agent_env(PI_AGENT_STOP_GRACE_SECONDS="2"))
    assert agent.wait(timeout=60) == 0
    assert "killed processes still alive after the grace" in messages(agent)


def test_subreaper_mode_when_not_pid1(start_agent, tmp_path):
    script = f"(sh -c 'sleep 0.3' &); touch {tmp_path}/spawned; exec sleep 30"
    agent = start_agent(["--", "sh", "-c", script], pid1=False)
    wait_for(lambda: (tmp_path / "spawned").exists(), what="grandchild spawned")
    agent.wait_log("reaped orphan")
    agent.proc.send_signal(signal.SIGTERM)
    assert agent.wait() == 143
    recs = agent.logs()
    assert recs[0]["msg"] == "pi-agent starting" and recs[0]["subreaper"] is True
    # the orphaned grandchild was re-parented to the agent, not to init
    assert any(r["msg"] == "reaped orphan" for r in recs)


def child_status(agent):
    """/proc status fields and open fds of the agent's child, seen from outside
    (sleep neither opens files nor changes its signal state). The agent's
    short-lived workers are children too: look for the one running sleep."""
    parent = agent.agent_pid()

    def sleeping_child():
        try:
            kids = Path(f"/proc/{parent}/task/{parent}/children").read_text().split()
        except OSError:
            return None
        for k in kids:
            try:
                if os.readlink(f"/proc/{k}/exe").endswith("/sleep"):
                    return int(k)
            except OSError:
                continue
        return None

    pid = wait_for(sleeping_child, what="the child running sleep")
    fields = {}
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        k, _, v = line.partition(":")
        fields[k] = v.strip()
    fds = sorted(int(x) for x in os.listdir(f"/proc/{pid}/fd"))
    pgid = os.getpgid(pid)
    return pid, fields, fds, pgid


def test_child_sees_only_fds_0_1_2_and_a_clean_signal_state(start_agent):
    agent = start_agent(["--", "sleep", "30"])
    pid, fields, fds, pgid = child_status(agent)
    assert fds == [0, 1, 2]
    assert int(fields["SigBlk"], 16) == 0, "the child must start with no blocked signal"
    assert int(fields["SigIgn"], 16) == 0, "the child must start with no ignored signal"
    assert pgid == pid, "the child leads its own process group"
    agent.signal(signal.SIGTERM)
    assert agent.wait() == 143


def _ignore_inherited_signals():
    """Runs in the agent's parent before exec: leaves SIGINT, SIGQUIT and the
    libc-reserved signal 32 ignored, as some launchers do. libc refuses 32, so
    the kernel's rt_sigaction is called directly."""
    import ctypes
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    signal.signal(signal.SIGQUIT, signal.SIG_IGN)
    libc = ctypes.CDLL(None, use_errno=True)
    act = (ctypes.c_ulong * 4)(1, 0, 0, 0)  # handler SIG_IGN, no flags, no restorer, empty mask
    SYS_rt_sigaction = 13  # x86-64
    assert libc.syscall(SYS_rt_sigaction, 32, ctypes.byref(act), None, 8) == 0


def test_child_starts_clean_whatever_the_agent_inherited(start_agent):
    # An extra descriptor and ignored signals in pi-agent's own parent must not
    # reach Tomcat.
    r, w = os.pipe()
    try:
        agent = start_agent(["--", "sleep", "30"], preexec_fn=_ignore_inherited_signals,
                            pass_fds=(r,))
        pid, fields, fds, _ = child_status(agent)
    finally:
        os.close(r)
        os.close(w)
    assert fds == [0, 1, 2]
    assert int(fields["SigIgn"], 16) == 0, f"ignored signals leaked: {fields['SigIgn']}"
    agent.signal(signal.SIGTERM)
    assert agent.wait() == 143


def test_run_as_drops_privileges(start_agent):
    import grp
    import pwd
    agent = start_agent(["--", "sleep", "30"], env=agent_env(PI_AGENT_RUN_AS="nobody:nogroup"))
    _, fields, _, _ = child_status(agent)
    uid, gid = pwd.getpwnam("nobody").pw_uid, grp.getgrnam("nogroup").gr_gid
    assert fields["Uid"].split() == [str(uid)] * 4
    assert fields["Gid"].split() == [str(gid)] * 4
    assert "0" not in fields["Groups"].split(), "root's supplementary groups must be dropped"
    agent.signal(signal.SIGTERM)
    assert agent.wait() == 143


def test_idle_agent_uses_no_cpu(start_agent):
    agent = start_agent(["--", "sleep", "30"])
    pid = agent.agent_pid()
    child_status(agent)  # started and settled

    def cpu_ticks():
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
        return int(fields[11]) + int(fields[12])  # utime + stime

    before = cpu_ticks()
    time.sleep(3)
    after = cpu_ticks()
    assert after - before == 0, f"idle agent used {after - before} clock ticks in 3 s"
    agent.signal(signal.SIGTERM)
    agent.wait()


def test_restart_on_failure_is_bounded(start_agent, tmp_path):
    counter = tmp_path / "runs"
    env = agent_env(PI_AGENT_RESTART="on-failure", PI_AGENT_MAX_RESTARTS="2")
    agent = start_agent(["--", "sh", "-c", f"echo run >> {counter}; exit 4"], env=env)
    assert agent.wait(timeout=30) == 4
    assert counter.read_text().count("run") == 3  # first run + 2 restarts
    restarts = [r for r in agent.logs() if r["msg"] == "restarting the child"]
    assert [r["in_ms"] for r in restarts] == [1000, 2000]


def test_no_restart_once_a_stop_was_requested(start_agent, tmp_path):
    # The child dies by itself while the agent drains after SIGTERM: the task
    # is going away, so on-failure must not start it again.
    counter = tmp_path / "runs"
    env = agent_env(PI_AGENT_RESTART="on-failure", PI_AGENT_MAX_RESTARTS="3",
                    PI_AGENT_DRAIN_SECONDS="10")
    script = f'trap "exit 4" USR1; echo run >> {counter}; while :; do sleep 0.1; done'
    agent = start_agent(["--", "sh", "-c", script], env=env)
    wait_for(lambda: counter.exists() and "run" in counter.read_text(), what="child ready")
    agent.signal(signal.SIGTERM)
    agent.wait_log("stop requested")  # the stop is under way before the child dies
    agent.signal(signal.SIGUSR1)
    assert agent.wait(timeout=30) == 4
    assert counter.read_text().count("run") == 1
    assert "restarting the child" not in messages(agent)


def test_restart_never_is_the_default(start_agent, tmp_path):
    counter = tmp_path / "runs"
    agent = start_agent(["--", "sh", "-c", f"echo run >> {counter}; exit 4"])
    assert agent.wait() == 4
    assert counter.read_text().count("run") == 1


def test_text_log_format(start_agent):
    agent = start_agent(["--", "true"], env=agent_env(PI_AGENT_LOG_FORMAT="text"))
    assert agent.wait() == 0
    out = agent.stderr.decode()
    assert " info child started pid=" in out
    assert not out.lstrip().startswith("{")


def test_log_level_filters_debug_and_info(start_agent):
    agent = start_agent(["--", "true"], env=agent_env(PI_AGENT_LOG_LEVEL="warn"))
    assert agent.wait() == 0
    levels = {r["level"] for r in agent.logs()}
    assert levels <= {"warn", "error"}
    assert not any(r["msg"] == "child started" for r in agent.logs())


def test_sigterm_during_a_slow_start_phase_exits_at_once(start_agent, tmp_path):
    # An ALM that accepts connections but never answers keeps the licence
    # phase busy for up to PI_ALM_TIMEOUT_SECONDS; ECS's stop must not wait.
    import socket
    silent = socket.socket()
    silent.bind(("127.0.0.1", 0))
    silent.listen(16)
    port = silent.getsockname()[1]
    marker = tmp_path / "dashboard-started"
    env = agent_env(PI_LICENCE="customer-key-for-a-slow-alm", PI_ALM_TIMEOUT_SECONDS="120",
                    PI_ALM_URL=f"https://localhost:{port}/licence")
    try:
        agent = start_agent(["--", "touch", str(marker)], env=env)
        time.sleep(1.5)
        assert agent.proc.poll() is None, "the licence phase should still be waiting"
        agent.signal(signal.SIGTERM)
        assert agent.wait(timeout=20) == 143
    finally:
        silent.close()
    assert not marker.exists(), "the dashboard must not be started once a stop was requested"
    msgs = [r["msg"] for r in agent.logs()]
    assert "stop requested: worker ended" in msgs
    assert "stop requested during start-up: the dashboard is not started" in msgs
    assert "worker crashed" not in msgs


# ---- streams: stdout is the child's, the agent logs on stderr ---------------

CHILD_BYTES = (b'{"level":"info","msg":"the child\'s own JSON"}\n'
               b"plain line\n\x00\x01\xfe\xff binary\r\n"
               b"no newline at the end")


def test_child_stdout_is_byte_for_byte_its_own(tmp_path):
    """Redirecting stdout captures the child's output and nothing else: the
    agent's records (EMF lines included) all go to stderr."""
    half = len(CHILD_BYTES) // 2
    marker = tmp_path / "emf-seen"
    # The child writes half, waits until the agent has written an EMF line
    # meanwhile (the test tells it through a file), then writes the rest.
    child = ("import os, sys, time\n"
             f"data = {CHILD_BYTES!r}\n"
             f"os.write(1, data[:{half}])\n"
             "deadline = time.time() + 30\n"
             f"while not os.path.exists({str(marker)!r}) and time.time() < deadline:\n"
             "    time.sleep(0.05)\n"
             f"os.write(1, data[{half}:])\n")
    err_path = tmp_path / "stderr.log"
    with open(err_path, "wb") as err:
        proc = subprocess.Popen(["unshare", "--pid", "--fork", "--mount-proc", "--kill-child",
                                 str(AGENT), "--", PY, "-c", child],
                                env=agent_env(PI_AGENT_EMF="true", PI_AGENT_EMF_INTERVAL_SECONDS=1),
                                stdout=subprocess.PIPE, stderr=err, start_new_session=True)
        try:
            wait_for(lambda: b'"_aws"' in err_path.read_bytes(), timeout=20, what="an EMF line")
            marker.write_text("go")
            out, _ = proc.communicate(timeout=30)
        finally:
            if proc.poll() is None:
                os.killpg(proc.pid, signal.SIGKILL)
                proc.wait()
    assert proc.returncode == 0, err_path.read_text()
    assert out == CHILD_BYTES
    lines = err_path.read_text().splitlines()
    records = [json.loads(line) for line in lines]  # every stderr line is a record
    assert "child started" in [r.get("msg") for r in records]
    assert any("_aws" in r for r in records)
