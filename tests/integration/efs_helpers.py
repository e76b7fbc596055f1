"""Helpers for the storage tests: a fake dashboard image under a temporary
folder, an EFS root that is a real mount point (a bind mount inside a private
mount namespace: `unshare -m`), and a runner that reads the agent's JSON log
lines while it runs."""
import os
import shutil
import signal
import subprocess
import threading
import time
from pathlib import Path

from conftest import AGENT, agent_env, json_records

RESOURCES = "tomcat/webapps/panMISDashboardResources"
FOLDERS = {
    "themes": f"{RESOURCES}/themes",
    "images": f"{RESOURCES}/images",
    "files": f"{RESOURCES}/files",
    "svg": f"{RESOURCES}/svg",
    "locale": f"{RESOURCES}/locale",
    "keys": "keys",
    "custom_jdbc": "custom_jdbc",
}


def make_image(home: Path, themes=None, locale=None):
    """A dashboard install as the image ships it: default themes and locale."""
    themes = themes if themes is not None else {
        "default/theme.css": "body { color: #333 }\n",
        "default/logo.svg": "<svg/>\n",
        "dark/theme.css": "body { color: #eee }\n",
    }
    locale = locale if locale is not None else {"en.json": '{"hello": "Hello"}\n',
                                                "fr.json": '{"hello": "Bonjour"}\n'}
    for rel, files in ((FOLDERS["themes"], themes), (FOLDERS["locale"], locale)):
        for name, text in files.items():
            p = home / rel / name
            p.parent.mkdir(parents=True, exist_ok=True)
            p.write_text(text)
    (home / "tomcat/logs").mkdir(parents=True, exist_ok=True)
    (home / "tomcat/bin").mkdir(parents=True, exist_ok=True)
    # One fixed mtime, so that copies of the image are the same image.
    for p in home.rglob("*"):
        os.utime(p, (1700000000, 1700000000), follow_symlinks=False)
    return home


def copy_image(src: Path, dst: Path):
    shutil.copytree(src, dst, symlinks=True)
    return dst


def storage_env(home: Path, root: Path, **overrides):
    env = dict(PI_EFS_MODE="auto", PI_EFS_ROOT=str(root), PI_DASHBOARD_HOME=str(home),
               PI_EFS_SCAN_INTERVAL_SECONDS="0")
    env.update(overrides)
    return agent_env(**env)


def wrapped(args, binds=(), ro_binds=(), pid1=True, overlays=()):
    """argv that runs pi-agent ARGS in a private mount namespace where each of
    binds is bind-mounted onto itself (so it is a mount point), each of
    ro_binds is too, read-only, and each (lower, upper, work, merged) of
    overlays is an overlayfs mount, as Docker gives a container its image."""
    script = ["set -e"]
    for lower, upper, work, merged in overlays:
        script.append(f"mount -t overlay overlay -o 'lowerdir={lower},upperdir={upper},"
                      f"workdir={work}' '{merged}'")
    for p in binds:
        script.append(f"mount --bind '{p}' '{p}'")
    for p in ro_binds:
        script.append(f"mount --bind '{p}' '{p}'")
        script.append(f"mount -o remount,bind,ro '{p}'")
    script.append('exec "$@"')
    inner = [str(AGENT)] + list(args)
    if pid1:
        inner = ["unshare", "--pid", "--fork", "--mount-proc", "--kill-child"] + inner
    return ["unshare", "-m", "--propagation", "private", "sh", "-c", "\n".join(script), "sh"] + inner


class Run:
    """pi-agent running in its own session; its log lines (stderr) are
    collected as they come, the child's stdout apart."""

    def __init__(self, args, env, binds=(), ro_binds=(), pid1=True, overlays=(), prefix=()):
        """prefix: argv put in front (e.g. nsenter into another mount namespace)."""
        self.proc = subprocess.Popen(list(prefix) + wrapped(args, binds, ro_binds, pid1, overlays),
                                     env=env,
                                     stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                                     start_new_session=True)
        self.lines = []   # the agent's log lines
        self.out = b""    # the child's stdout
        self.err = b""    # what stderr held: the log lines, as bytes
        self._reader = threading.Thread(target=self._read, daemon=True)
        self._reader.start()
        self._out_reader = threading.Thread(target=self._read_out, daemon=True)
        self._out_reader.start()

    def _read(self):
        for raw in self.proc.stderr:
            self.err += raw
            self.lines.append(raw.decode(errors="replace").rstrip("\n"))

    def _read_out(self):
        for raw in self.proc.stdout:
            self.out += raw

    def records(self):
        return json_records(list(self.lines))

    def find(self, msg_part):
        return [r for r in self.records() if msg_part in r.get("msg", "")]

    def wait_for(self, predicate, what, timeout=30):
        deadline = time.time() + timeout
        while time.time() < deadline:
            found = predicate()
            if found:
                return found
            if self.proc.poll() is not None:
                self._reader.join(timeout=5)
                found = predicate()
                if found:
                    return found
                raise AssertionError(f"pi-agent exited ({self.proc.returncode}) before {what}:\n"
                                     + "\n".join(self.lines))
            time.sleep(0.05)
        raise AssertionError(f"timed out waiting for {what}:\n" + "\n".join(self.lines))

    def wait_for_log(self, msg_part, timeout=30):
        return self.wait_for(lambda: self.find(msg_part), repr(msg_part), timeout)

    def wait(self, timeout=60):
        try:
            self.proc.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            self.kill()
            raise
        self._reader.join(timeout=10)
        self._out_reader.join(timeout=10)
        return self.proc.returncode

    def stop(self):
        """SIGTERM to the whole session (the wrappers pass nothing on; the
        agent is PID 1 of its namespace and gets it from the kernel)."""
        self.signal_agent(signal.SIGTERM)
        return self.wait()

    def agent_pid(self):
        deadline = time.time() + 5
        target = str(AGENT.resolve())
        while time.time() < deadline:
            for pid in _descendants(self.proc.pid):
                try:
                    if os.readlink(f"/proc/{pid}/exe") == target:
                        return pid
                except OSError:
                    pass
            time.sleep(0.02)
        raise AssertionError("pi-agent process not found")

    def signal_agent(self, sig):
        os.kill(self.agent_pid(), sig)

    def kill(self):
        if self.proc.poll() is None:
            try:
                os.killpg(self.proc.pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
        self.proc.wait(timeout=10)


def _descendants(pid):
    out, todo = [], [pid]
    while todo:
        p = todo.pop()
        try:
            kids = Path(f"/proc/{p}/task/{p}/children").read_text().split()
        except OSError:
            kids = []
        for k in kids:
            out.append(int(k))
            todo.append(int(k))
    return out


def run_once(args, env, binds=(), ro_binds=(), timeout=60, overlays=()):
    r = Run(args, env, binds, ro_binds, overlays=overlays)
    rc = r.wait(timeout)
    return rc, r


def tree_digest(root: Path):
    """{relative path: (kind, content or target)} of everything under root."""
    out = {}
    for p in sorted(root.rglob("*")):
        rel = str(p.relative_to(root))
        if p.is_symlink():
            out[rel] = ("link", os.readlink(p))
        elif p.is_dir():
            out[rel] = ("dir", None)
        else:
            out[rel] = ("file", p.read_bytes())
    return out


def temporaries(root: Path):
    return [str(p) for p in root.rglob(".pi-agent-tmp.*")]


def du_total(paths):
    """What `du -s -x --apparent-size -b -c` says for paths together."""
    out = subprocess.run(["du", "-s", "-x", "--apparent-size", "-b", "-c"] + [str(p) for p in paths],
                         check=True, capture_output=True, text=True).stdout
    return int(out.strip().splitlines()[-1].split()[0])


def du_one(path):
    out = subprocess.run(["du", "-s", "-x", "--apparent-size", "-b", str(path)], check=True,
                         capture_output=True, text=True).stdout
    return int(out.split()[0])
