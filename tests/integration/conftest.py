"""Shared fixtures for the integration tests: they run build/pi-agent for real,
often as PID 1 in a fresh PID namespace (unshare --pid --fork --mount-proc)."""
import atexit
import json
import os
import shutil
import signal
import subprocess
import tempfile
import time
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
AGENT = Path(os.environ.get("PI_AGENT_BIN", ROOT / "build" / "pi-agent"))
HELPERS = Path(__file__).resolve().parent / "helpers"

# Variables a test environment starts from: the agent must not pick up the
# developer's own PI_* settings.
BASE_ENV = {k: v for k, v in os.environ.items() if not k.startswith(("PI_", "ECS_"))}
# The run directory (licence hand-over, the health socket) is private to the
# test session: never the machine's /run/pi-agent, which another agent may use.
BASE_ENV["PI_AGENT_RUN_DIR"] = tempfile.mkdtemp(prefix="pi-agent-test-run-")
atexit.register(shutil.rmtree, BASE_ENV["PI_AGENT_RUN_DIR"], True)


def agent_env(**overrides):
    env = dict(BASE_ENV)
    env.setdefault("PI_AGENT_LOG_LEVEL", "debug")
    # Tests run without EFS and without a licence unless they say otherwise.
    env.setdefault("PI_EFS_MODE", "off")
    env.setdefault("PI_AGENT_HEALTH_PORT", "0")
    env.setdefault("PI_AGENT_HOOKS_DIR", "/nonexistent-pi-agent-hooks")
    # Stops are immediate unless a test is about draining.
    env.setdefault("PI_AGENT_DRAIN_SECONDS", "0")
    for key, value in overrides.items():
        if value is None:
            env.pop(key, None)
        else:
            env[key] = str(value)
    return env


class Agent:
    """A running pi-agent with its captured stdout (the child's own output)
    and stderr (the agent's log lines, JSON unless a test asks for text)."""

    def __init__(self, args, env, pid1=True, cwd=None, preexec_fn=None, pass_fds=()):
        cmd = [str(AGENT)] + list(args)
        if pid1:
            cmd = ["unshare", "--pid", "--fork", "--mount-proc", "--kill-child"] + cmd
        self.proc = subprocess.Popen(cmd, env=env, cwd=cwd, stdout=subprocess.PIPE,
                                     stderr=subprocess.PIPE, start_new_session=True,
                                     preexec_fn=preexec_fn, pass_fds=pass_fds)
        self.pid1 = pid1
        self.stdout = b""
        self.stderr = b""

    @property
    def pid(self):
        return self.proc.pid

    def agent_pid(self):
        """The host pid of pi-agent itself (the child of unshare when PID 1)."""
        if not self.pid1:
            return self.proc.pid  # its own forked workers run the same binary
        deadline = time.time() + 5
        while time.time() < deadline:
            try:
                kids = Path(f"/proc/{self.proc.pid}/task/{self.proc.pid}/children").read_text().split()
            except OSError:
                kids = []
            for k in kids:
                try:
                    exe = os.readlink(f"/proc/{k}/exe")
                except OSError:
                    continue
                if exe == str(AGENT.resolve()):
                    return int(k)
            if os.readlink(f"/proc/{self.proc.pid}/exe") == str(AGENT.resolve()):
                return self.proc.pid
            time.sleep(0.02)
        raise AssertionError("pi-agent process not found")

    def signal(self, sig):
        os.kill(self.agent_pid(), sig)

    def wait(self, timeout=30):
        try:
            out, err = self.proc.communicate(timeout=timeout)
        except subprocess.TimeoutExpired:
            os.killpg(self.proc.pid, signal.SIGKILL)
            out, err = self.proc.communicate()
            raise
        self.stdout += out
        self.stderr += err
        return self.proc.returncode

    def logs(self):
        """The agent's JSON log records (EMF lines included), from stderr."""
        return json_records(self.stderr.decode(errors="replace").splitlines())

    def kill(self):
        """Kills the agent and everything below it (its child leads a process
        group of its own, which killpg on the agent's group would miss)."""
        if self.proc.poll() is None:
            for pid in [self.proc.pid] + descendants(self.proc.pid):
                try:
                    os.kill(pid, signal.SIGKILL)
                except ProcessLookupError:
                    pass
            self.wait(timeout=10)


def json_records(lines):
    """The agent's JSON log records among output lines (lines that are not
    JSON are skipped: they are the child's own output)."""
    records = []
    for line in lines:
        line = line.strip()
        if line.startswith("{"):
            try:
                records.append(json.loads(line))
            except ValueError:
                pass
    return records


def descendants(root):
    """Every live process below root, from /proc."""
    parents = {}
    for d in Path("/proc").iterdir():
        if not d.name.isdigit():
            continue
        try:
            fields = (d / "stat").read_text().rsplit(")", 1)[1].split()
        except (OSError, IndexError):
            continue
        parents[int(d.name)] = int(fields[1])
    found, frontier = [], [root]
    while frontier:
        p = frontier.pop()
        kids = [c for c, pp in parents.items() if pp == p]
        found.extend(kids)
        frontier.extend(kids)
    return found


@pytest.fixture
def agent_bin():
    assert AGENT.exists(), f"{AGENT} is missing: run make first"
    return AGENT


@pytest.fixture
def start_agent(agent_bin):
    started = []

    def start(args, env=None, pid1=True, cwd=None, **popen):
        a = Agent(args, env if env is not None else agent_env(), pid1=pid1, cwd=cwd, **popen)
        started.append(a)
        return a

    yield start
    for a in started:
        a.kill()


def wait_for(predicate, timeout=10.0, interval=0.05, what="condition"):
    deadline = time.time() + timeout
    while time.time() < deadline:
        value = predicate()
        if value:
            return value
        time.sleep(interval)
    raise AssertionError(f"timed out waiting for {what}")
