"""Shared fixtures for the integration tests: they run build/pi-agent for real,
often as PID 1 in a fresh PID namespace (unshare --pid --fork --mount-proc)."""
import atexit
import json
import os
import shutil
import signal
import subprocess
import tempfile
import threading
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
    and stderr (the agent's log lines, JSON unless a test asks for text).

    Both pipes are read by threads while the agent runs, so a test can wait
    for a log line (wait_log) instead of sleeping, and logs() shows what was
    logged so far."""

    def __init__(self, args, env, pid1=True, cwd=None, preexec_fn=None, pass_fds=()):
        cmd = [str(AGENT)] + list(args)
        if pid1:
            cmd = ["unshare", "--pid", "--fork", "--mount-proc", "--kill-child"] + cmd
        self.proc = subprocess.Popen(cmd, env=env, cwd=cwd, stdout=subprocess.PIPE,
                                     stderr=subprocess.PIPE, start_new_session=True,
                                     preexec_fn=preexec_fn, pass_fds=pass_fds)
        self.pid1 = pid1
        self._out = bytearray()
        self._err = bytearray()
        self._cond = threading.Condition()
        self._readers = [threading.Thread(target=self._pump, args=(pipe, buf), daemon=True)
                         for pipe, buf in ((self.proc.stdout, self._out),
                                           (self.proc.stderr, self._err))]
        for t in self._readers:
            t.start()

    def _pump(self, pipe, buf):
        try:
            for line in iter(pipe.readline, b""):
                with self._cond:
                    buf.extend(line)
                    self._cond.notify_all()
        finally:
            pipe.close()
            with self._cond:
                self._cond.notify_all()

    @property
    def stdout(self):
        with self._cond:
            return bytes(self._out)

    @property
    def stderr(self):
        with self._cond:
            return bytes(self._err)

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
            self.proc.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            os.killpg(self.proc.pid, signal.SIGKILL)
            self.proc.wait()
            self._join(10)
            raise
        self._join(timeout)
        return self.proc.returncode

    def _join(self, timeout):
        # Like communicate(): the output is complete once both pipes ended
        # (a leftover process holding them is killed with the group).
        deadline = time.monotonic() + timeout
        for t in self._readers:
            t.join(max(0.0, deadline - time.monotonic()))
        if any(t.is_alive() for t in self._readers):
            try:
                os.killpg(self.proc.pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
            for t in self._readers:
                t.join(5)

    def logs(self):
        """The agent's JSON log records (EMF lines included), from stderr:
        every record so far while it runs, all of them after wait()."""
        return json_records(self.stderr.decode(errors="replace").splitlines())

    def wait_log(self, predicate, timeout=10.0, what=None):
        """Waits until a JSON log record satisfies predicate (a function of
        the record, or a msg string) and returns the first that does. Fails
        when the timeout passes, or when the agent's log ended without one."""
        if isinstance(predicate, str):
            msg = predicate
            predicate = lambda r: r.get("msg") == msg  # noqa: E731
            what = what or repr(msg)
        deadline = time.monotonic() + timeout
        seen = 0
        with self._cond:
            while True:
                lines = bytes(self._err).decode(errors="replace").splitlines(keepends=True)
                complete = [l for l in lines if l.endswith("\n")]
                for rec in json_records(complete[seen:]):
                    if predicate(rec):
                        return rec
                seen = len(complete)
                ended = not self._readers[1].is_alive()
                left = deadline - time.monotonic()
                if ended or left <= 0:
                    raise AssertionError(
                        f"no log line {what or 'matching'} within {timeout}s"
                        + (" (the agent's log ended)" if ended else ""))
                self._cond.wait(min(left, 0.5))

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
