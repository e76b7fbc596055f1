"""Lifecycle hooks run by build/pi-agent: order and skip rules, environment,
PI_AGENT_ENV_FILE, time limits that kill the whole process group, exit 75 on
a failed pre-start hook (and warn mode), pre-stop hooks inside the stop
grace, post-ready and post-stop hooks, and configuration errors."""
import os
import re
import shutil
import signal
import stat
import sys
from pathlib import Path

import pytest

from conftest import ROOT, agent_env, wait_for

PY = sys.executable


@pytest.fixture
def hooks(tmp_path):
    """A hooks directory; hooks.add(phase, name, body) writes a /bin/sh hook."""

    class Hooks:
        root = tmp_path / "hooks"
        out = tmp_path / "out"

        def add(self, phase, name, body, mode=0o755, shebang="#!/bin/sh\n"):
            d = self.root / f"{phase}.d"
            d.mkdir(parents=True, exist_ok=True)
            path = d / name
            path.write_text(shebang + body + "\n")
            path.chmod(mode)
            return path

        def lines(self):
            return self.out.read_text().splitlines() if self.out.exists() else []

        def env(self, **overrides):
            overrides.setdefault("PI_AGENT_HOOKS_DIR", self.root)
            overrides.setdefault("PI_AGENT_DRAIN_SECONDS", 0)
            overrides.setdefault("PI_AGENT_PROBE_URL", "off")
            overrides.setdefault("OUT", self.out)
            return agent_env(**overrides)

    h = Hooks()
    h.root.mkdir()
    return h


def records(agent, msg):
    return [r for r in agent.logs() if r.get("msg") == msg]


def child_writes(hooks, text):
    """A child command that appends text (expanded by sh) to the out file."""
    return ["--", "/bin/sh", "-c", f'echo "{text}" >> "$OUT"']


# ---- order, skip rules, environment, output --------------------------------

def test_hooks_run_in_lexical_order_around_the_child(start_agent, hooks):
    for name in ("20-second", "10-first", "9-last-by-bytes"):
        hooks.add("pre-start", name, f'echo "$PI_AGENT_PHASE {name}" >> "$OUT"')
    hooks.add("pre-start", ".hidden", 'echo hidden >> "$OUT"')
    hooks.add("pre-start", "15-not-executable", 'echo not-executable >> "$OUT"', mode=0o644)
    (hooks.root / "pre-start.d" / "16-subdir").mkdir()
    hooks.add("post-stop", "10-after", 'echo "$PI_AGENT_PHASE after" >> "$OUT"')

    agent = start_agent(child_writes(hooks, "child"), env=hooks.env())
    assert agent.wait() == 0, agent.stderr
    assert hooks.lines() == ["pre-start 10-first", "pre-start 20-second",
                             "pre-start 9-last-by-bytes", "child", "post-stop after"]
    skipped = {(r["msg"], r["hook"]) for r in agent.logs() if r.get("msg", "").startswith("hook skipped")}
    assert skipped == {("hook skipped: dotfile", ".hidden"),
                       ("hook skipped: not executable", "15-not-executable"),
                       ("hook skipped: not a regular file", "16-subdir")}
    finished = records(agent, "hook finished")
    assert [r["hook"] for r in finished] == ["10-first", "20-second", "9-last-by-bytes", "10-after"]
    for r in finished:
        assert r["outcome"] == "exit 0" and isinstance(r["duration_ms"], int)
        assert r["phase"] in ("pre-start", "post-stop")


def test_hook_environment_and_output_pass_through(start_agent, hooks):
    hooks.add("pre-start", "10-env",
              'echo "hello from a hook"\n'
              'echo "phase=$PI_AGENT_PHASE licence=${PI_LICENCE_STATUS:+set} '
              'limit=$PI_AGENT_HOOK_TIME_LIMIT_SECONDS mine=$MY_SETTING" >> "$OUT"')
    agent = start_agent(child_writes(hooks, "child"),
                        env=hooks.env(MY_SETTING="kept", PI_AGENT_HOOK_TIMEOUT_SECONDS=7))
    assert agent.wait() == 0, agent.stderr
    assert hooks.lines()[0] == "phase=pre-start licence=set limit=7 mine=kept"
    assert "hello from a hook" in agent.stdout.decode().splitlines()


def test_hooks_inherit_only_fds_0_1_2(start_agent, hooks):
    probe = ("import os\n"
             "fds = []\n"
             "for fd in range(3, 1024):\n"
             "    try:\n"
             "        os.fstat(fd)\n"
             "        fds.append(fd)\n"
             "    except OSError:\n"
             "        pass\n"
             "open(os.environ['OUT'], 'a').write('fds=%r\\n' % fds)\n")
    hooks.add("pre-start", "10-fds", probe, shebang=f"#!{PY}\n")
    hooks.add("post-stop", "10-fds", probe, shebang=f"#!{PY}\n")
    agent = start_agent(child_writes(hooks, "child"), env=hooks.env())
    assert agent.wait() == 0, agent.stderr
    assert hooks.lines() == ["fds=[]", "child", "fds=[]"]


# ---- PI_AGENT_ENV_FILE -------------------------------------------------------

def test_prestart_env_file_reaches_tomcat_not_hook_variables(start_agent, hooks):
    hooks.add("pre-start", "10-set",
              "printf 'FROM_HOOK=one two\\n# comment\\n\\nOTHER=x=y\\n' > \"$PI_AGENT_ENV_FILE\"\n"
              'echo "$PI_AGENT_ENV_FILE" > "$OUT.path"')
    hooks.add("pre-start", "20-sees", 'echo "hook saw $FROM_HOOK" >> "$OUT"')
    agent = start_agent(child_writes(hooks, "child saw $FROM_HOOK|$OTHER|${PI_AGENT_PHASE:-no phase}"
                                     "|${PI_AGENT_ENV_FILE:-no file}"), env=hooks.env())
    assert agent.wait() == 0, agent.stderr
    assert hooks.lines() == ["hook saw one two", "child saw one two|x=y|no phase|no file"]
    env_file = Path(Path(str(hooks.out) + ".path").read_text().strip())
    assert not env_file.exists()
    assert records(agent, "hook set variables for Tomcat")[0]["count"] == 2


def test_bad_env_file_line_stops_the_start_without_leaking_it(start_agent, hooks):
    hooks.add("pre-start", "10-bad",
              "printf 'GOOD=1\\nSECRET-VALUE-abc123\\n' > \"$PI_AGENT_ENV_FILE\"")
    agent = start_agent(child_writes(hooks, "child"), env=hooks.env())
    assert agent.wait() == 75
    assert hooks.lines() == []
    bad = records(agent, "hook wrote a bad line to PI_AGENT_ENV_FILE: expected KEY=VALUE with KEY "
                         "made of letters, digits and _")
    assert bad and bad[0]["hook"] == "10-bad" and bad[0]["line"] == 2
    assert b"SECRET-VALUE-abc123" not in agent.stdout + agent.stderr


def test_shipped_heap_hook_through_the_agent(start_agent, hooks):
    d = hooks.root / "pre-start.d"
    d.mkdir()
    shutil.copy(ROOT / "hooks" / "pre-start.d" / "20-jvm-heap", d / "20-jvm-heap")
    agent = start_agent(child_writes(hooks, "$CATALINA_OPTS"),
                        env=hooks.env(PI_TOMCAT_MAX_MEMORY=1536, CATALINA_OPTS="-Dpi=1"))
    assert agent.wait() == 0, agent.stderr
    assert hooks.lines() == ["-Dpi=1 -Xmx1536m"]


def test_shipped_db_wait_through_the_agent(start_agent, hooks, agent_bin):
    import socket
    d = hooks.root / "pre-start.d"
    d.mkdir()
    shutil.copy(ROOT / "hooks" / "pre-start.d" / "10-wait-for-db", d / "10-wait-for-db")
    closed = socket.socket()
    closed.bind(("127.0.0.1", 0))  # bound, never listening: refused
    try:
        agent = start_agent(child_writes(hooks, "child"),
                            env=hooks.env(PI_DB_HOST="127.0.0.1", PI_DB_PORT=closed.getsockname()[1],
                                          PI_DB_WAIT_SECONDS=1, PI_AGENT_BIN=agent_bin))
        assert agent.wait() == 75
    finally:
        closed.close()
    assert hooks.lines() == []
    assert b"not reachable within 1 s" in agent.stderr


# ---- failures ----------------------------------------------------------------

def test_failing_prestart_hook_exits_75(start_agent, hooks):
    hooks.add("pre-start", "10-fails", 'echo ran >> "$OUT"; exit 3')
    hooks.add("pre-start", "20-never", 'echo never >> "$OUT"')
    agent = start_agent(child_writes(hooks, "child"), env=hooks.env())
    assert agent.wait() == 75
    assert hooks.lines() == ["ran"]
    failed = records(agent, "hook failed")
    assert failed[0]["hook"] == "10-fails" and failed[0]["outcome"] == "exit 3"
    assert failed[0]["level"] == "error"


def test_warn_mode_starts_anyway(start_agent, hooks):
    hooks.add("pre-start", "10-fails", "exit 3")
    hooks.add("pre-start", "20-runs", 'echo runs >> "$OUT"')
    agent = start_agent(child_writes(hooks, "child"), env=hooks.env(PI_AGENT_HOOK_FAILURE="warn"))
    assert agent.wait() == 0, agent.stderr
    assert hooks.lines() == ["runs", "child"]
    failed = records(agent, "hook failed")
    assert failed[0]["hook"] == "10-fails" and failed[0]["level"] == "warn"


def test_unreadable_prestart_dir_exits_75(start_agent, hooks):
    (hooks.root / "pre-start.d").write_text("not a directory")
    agent = start_agent(child_writes(hooks, "child"), env=hooks.env())
    assert agent.wait() == 75
    assert hooks.lines() == []
    assert records(agent, "cannot read the hooks directory")


def test_missing_hooks_dir_is_not_an_error(start_agent, hooks):
    agent = start_agent(child_writes(hooks, "child"),
                        env=hooks.env(PI_AGENT_HOOKS_DIR=hooks.root / "absent"))
    assert agent.wait() == 0, agent.stderr
    assert hooks.lines() == ["child"]


def test_failing_post_stop_hook_keeps_the_childs_status(start_agent, hooks):
    hooks.add("post-stop", "10-fails", "exit 9")
    agent = start_agent(["--", "/bin/sh", "-c", "exit 4"], env=hooks.env())
    assert agent.wait() == 4
    failed = records(agent, "hook failed")
    assert failed[0]["phase"] == "post-stop" and failed[0]["outcome"] == "exit 9"


def alive(pid):
    """True while pid exists and is not a zombie."""
    try:
        st = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return False
    return st[st.rindex(")") + 2] not in "ZX"


def test_timeout_kills_the_hooks_whole_process_group(start_agent, hooks):
    hooks.add("pre-start", "10-hangs",
              'sleep 300 &\necho $! >> "$OUT.pids"\necho $$ >> "$OUT.pids"\nsleep 300')
    pids_file = Path(str(hooks.out) + ".pids")
    # Not PID 1 here, so that host pids can be checked after the agent is gone
    # (a PID namespace would kill every process with it).
    agent = start_agent(child_writes(hooks, "child"),
                        env=hooks.env(PI_AGENT_HOOK_TIMEOUT_SECONDS=1), pid1=False)
    try:
        assert agent.wait() == 75
        pids = [int(p) for p in pids_file.read_text().split()]
        assert len(pids) == 2
        wait_for(lambda: not any(alive(p) for p in pids), what="hook processes killed")
    finally:
        for p in (int(x) for x in pids_file.read_text().split()) if pids_file.exists() else ():
            try:
                os.kill(p, signal.SIGKILL)
            except ProcessLookupError:
                pass
    failed = records(agent, "hook failed")
    assert failed[0]["outcome"] == "timed out after 1000 ms"
    assert hooks.lines() == []


def test_processes_a_hook_leaves_behind_are_killed(start_agent, hooks):
    hooks.add("pre-start", "10-leaves", 'sleep 300 &\necho $! > "$OUT.bg"')
    bg_file = Path(str(hooks.out) + ".bg")
    agent = start_agent(child_writes(hooks, "child"), env=hooks.env(), pid1=False)
    try:
        assert agent.wait() == 0, agent.stderr
        bg = int(bg_file.read_text())
        wait_for(lambda: not alive(bg), what="left-behind process killed")
    finally:
        if bg_file.exists():
            try:
                os.kill(int(bg_file.read_text()), signal.SIGKILL)
            except (ProcessLookupError, ValueError):
                pass
    assert records(agent, "hook left processes behind: killed them")


def test_sigterm_during_prestart_kills_the_hook_and_never_starts_tomcat(start_agent, hooks):
    hooks.add("pre-start", "10-slow", 'echo started >> "$OUT"; sleep 300')
    hooks.add("pre-start", "20-never", 'echo never >> "$OUT"')
    agent = start_agent(child_writes(hooks, "child"),
                        env=hooks.env(PI_AGENT_HOOK_TIMEOUT_SECONDS=300))
    wait_for(lambda: hooks.lines() == ["started"], what="pre-start hook running")
    agent.signal(signal.SIGTERM)
    assert agent.wait() == 143
    assert hooks.lines() == ["started"]
    failed = records(agent, "hook failed")
    assert failed[0]["hook"] == "10-slow" and failed[0]["outcome"] == "killed: stop requested"


# ---- loop phases: post-ready, pre-stop ---------------------------------------

CHILD = """
import os, signal, sys, time
out = os.environ["OUT"]
def on_term(sig, frame):
    open(out, "a").write("child got SIGTERM\\n")
    sys.exit(0)
signal.signal(signal.SIGTERM, on_term)
open(out, "a").write("child %d\\n" % os.getpid())
while True:
    time.sleep(0.1)
"""


def test_post_ready_pre_stop_and_post_stop_in_order(start_agent, hooks, tmp_path):
    child = tmp_path / "child.py"
    child.write_text(CHILD)
    hooks.add("post-ready", "10-ready", 'echo "post-ready child=$PI_AGENT_CHILD_PID" >> "$OUT"')
    hooks.add("pre-stop", "10-before", 'echo "pre-stop child=$PI_AGENT_CHILD_PID" >> "$OUT"')
    hooks.add("post-stop", "10-after", 'echo "post-stop" >> "$OUT"')
    agent = start_agent(["--", PY, str(child)], env=hooks.env())
    # The child writes its line once its SIGTERM handler is in place; the
    # post-ready hook may run before that.
    wait_for(lambda: {l.split()[0] for l in hooks.lines() if l.strip()} >= {"child", "post-ready"},
             what="post-ready hook and child ready")
    agent.signal(signal.SIGTERM)
    assert agent.wait() == 0, agent.stderr
    lines = hooks.lines()
    child_pid = next(l.split()[1] for l in lines if l.startswith("child "))
    # With the probe off the dashboard is ready as soon as it runs, so its
    # first line and the post-ready hook may come in either order.
    assert sorted(lines[:2]) == sorted([f"child {child_pid}", f"post-ready child={child_pid}"])
    assert lines[2:] == [f"pre-stop child={child_pid}", "child got SIGTERM", "post-stop"]


def test_pre_stop_hooks_never_overrun_the_grace(start_agent, hooks, tmp_path):
    child = tmp_path / "child.py"
    child.write_text(CHILD)
    hooks.add("pre-stop", "10-hangs", 'echo "pre-stop" >> "$OUT"; sleep 300')
    hooks.add("pre-stop", "20-skipped", 'echo "skipped" >> "$OUT"')
    agent = start_agent(["--", PY, str(child)],
                        env=hooks.env(PI_AGENT_STOP_GRACE_SECONDS=4, PI_AGENT_HOOK_TIMEOUT_SECONDS=60))
    wait_for(lambda: hooks.lines(), what="child started")
    agent.signal(signal.SIGTERM)
    assert agent.wait() == 0, agent.stderr
    # The hook was cut off by the stop budget (not its own 60 s limit), the
    # next one skipped, and the child still got its SIGTERM and exited.
    assert hooks.lines()[1:] == ["pre-stop", "child got SIGTERM"]
    failed = records(agent, "hook failed")
    assert failed[0]["hook"] == "10-hangs"
    m = re.fullmatch(r"timed out after (\d+) ms", failed[0]["outcome"])
    assert m and int(m.group(1)) <= 2000
    skipped = records(agent, "hook phase out of time: remaining hooks skipped")
    assert skipped and skipped[0]["skipped"] == 1


def test_tomcat_dying_during_post_ready_hooks_ends_them(start_agent, hooks, tmp_path):
    child = tmp_path / "child.py"
    # Exits by itself once the post-ready hook is running.
    child.write_text("import os, sys, time\n"
                     "while not os.path.exists(os.environ['OUT'] + '.ready'):\n"
                     "    time.sleep(0.05)\n"
                     "sys.exit(3)\n")
    hooks.add("post-ready", "10-hangs", 'echo ready > "$OUT.ready"; echo "post-ready" >> "$OUT"; sleep 300')
    hooks.add("post-ready", "20-never", 'echo never >> "$OUT"')
    hooks.add("post-stop", "10-after", 'echo "post-stop" >> "$OUT"')
    agent = start_agent(["--", PY, str(child)], env=hooks.env())
    assert agent.wait() == 3, agent.stderr
    assert hooks.lines() == ["post-ready", "post-stop"]
    # Tomcat's clean-up signals every descendant, the hook included (or,
    # had it outlived the loop, the post-stop phase kills it first).
    ended = records(agent, "hook failed") + records(agent, "hook killed: the agent is stopping")
    assert [r["hook"] for r in ended] == ["10-hangs"]
    assert records(agent, "post-ready hooks skipped: stopping, or Tomcat is not running")


# ---- configuration -------------------------------------------------------------

@pytest.mark.parametrize("name,value", [("PI_AGENT_HOOKS_DIR", "relative/hooks"),
                                        ("PI_AGENT_HOOK_TIMEOUT_SECONDS", "0"),
                                        ("PI_AGENT_HOOK_TIMEOUT_SECONDS", "30s"),
                                        ("PI_AGENT_HOOK_FAILURE", "ignore")])
def test_bad_hook_settings_exit_78(start_agent, hooks, name, value):
    agent = start_agent(child_writes(hooks, "child"), env=hooks.env(**{name: value}))
    assert agent.wait() == 78
    assert name in agent.stderr.decode()
    assert hooks.lines() == []
