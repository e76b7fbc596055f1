"""Helpers for the container tests (fixtures are in conftest.py): pytest drives the docker CLI against a
real engine, with the derived image (the top-level Dockerfile) over the
stand-in dashboard (tests/container/dashboard).

Rules these fixtures keep:
- host networking only (`--network host`); every port is a free loopback port
  chosen here, so replicas and concurrent suites do not collide;
- every container and volume carries the label pi-agent-test=<run id> and is
  removed at the end of the session, whatever happened;
- nothing is pulled: the images come from scripts/docker-images.sh.
"""
import hashlib
import json
import os
import random
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
HERE = Path(__file__).resolve().parent
IMAGE = os.environ.get("PI_AGENT_IMAGE", "pi-agent/dashboard:local")
AGENT_IMAGE = os.environ.get("PI_AGENT_ONLY_IMAGE", "pi-agent/agent:local")
# The derived image built with PI_AGENT_IMAGE_LINKS=true (read-only root).
LINKED_IMAGE = os.environ.get("PI_AGENT_LINKED_IMAGE", IMAGE + "-links")
DASHBOARD_BASE_IMAGE = "ghcr.io/pi-cr/server:2025_10.1"
DEBIAN_IMAGE = "debian:bookworm-slim"
ALM_STUB = HERE / "alm" / "alm_stub.py"

RUN_ID = f"{os.getpid()}-{random.randrange(1 << 30):x}"
LABEL = "pi-agent-test"

# Debian's docker.io has no buildx; a newer CLI needs this for the classic builder.
os.environ["DOCKER_BUILDKIT"] = "0"

# The suite's own budget for a replica to become ready: Tomcat starts in a
# few seconds, but two JVMs starting together on a 2-core CI machine are slow.
READY_TIMEOUT = 180


def docker(*args, check=True, timeout=300, input=None):
    """Runs the docker CLI; returns the CompletedProcess (text)."""
    proc = subprocess.run(["docker", *args], input=input, text=True, timeout=timeout,
                          stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    if check and proc.returncode != 0:
        raise AssertionError(f"docker {' '.join(args)} failed ({proc.returncode}):\n"
                             f"{proc.stderr.strip()}\n{proc.stdout.strip()[-2000:]}")
    return proc


def wait_for(predicate, timeout, interval=0.25, what="condition"):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = predicate()
        if value:
            return value
        time.sleep(interval)
    raise AssertionError(f"timed out after {timeout}s waiting for {what}")


_ports_taken = set()


def free_port():
    """A TCP port nothing listens on, on every address (host networking)."""
    for _ in range(500):
        port = random.randrange(40000, 60000)
        if port in _ports_taken:
            continue
        try:
            with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
                s.bind(("0.0.0.0", port))
        except OSError:
            continue
        _ports_taken.add(port)
        return port
    raise AssertionError("no free port found")


def http_get(url, timeout=3.0):
    """(status, body bytes) or (None, error text) when nothing answers."""
    try:
        with urllib.request.urlopen(url, timeout=timeout) as r:
            return r.status, r.read()
    except urllib.error.HTTPError as e:
        return e.code, e.read()
    except (OSError, urllib.error.URLError) as e:
        return None, str(e).encode()


def agent_records(text):
    """pi-agent's JSON log records in a container's output (Tomcat's own
    lines are not JSON and are skipped)."""
    out = []
    for line in text.splitlines():
        line = line.strip()
        if line.startswith("{"):
            try:
                rec = json.loads(line)
            except ValueError:
                continue
            if isinstance(rec, dict) and "msg" in rec:
                out.append(rec)
    return out


class Dashboard:
    """One container of the derived image, with its own Tomcat and health ports."""

    def __init__(self, name, env=None, volumes=(), image=IMAGE, extra_args=()):
        self.name = f"pi-agent-test-{RUN_ID}-{name}"
        self.instance = name
        self.tomcat_port = free_port()
        self.health_port = free_port()
        self.image = image
        self.volumes = list(volumes)
        self.extra_args = list(extra_args)
        self.env = {
            "PI_TOMCAT_PORT": str(self.tomcat_port),
            "PI_STANDIN_INSTANCE": name,
            "PI_AGENT_HEALTH_PORT": str(self.health_port),
            "PI_AGENT_PROBE_URL": f"http://127.0.0.1:{self.tomcat_port}/pi/version",
            "PI_AGENT_PROBE_INTERVAL_SECONDS": "1",
            "PI_AGENT_LOG_LEVEL": "debug",
        }
        self.env.update(env or {})

    # --- lifecycle ---------------------------------------------------------
    def start(self):
        args = ["run", "-d", "--name", self.name, "--network", "host",
                "--label", f"{LABEL}={RUN_ID}"]
        for k in sorted(self.env):
            # -e KEY alone takes the value from our environment: secrets in
            # the tests (licences) stay off the docker command line.
            args += ["-e", k]
        for v in self.volumes:
            args += ["-v", v]
        args += self.extra_args
        args.append(self.image)
        env = dict(os.environ)
        env.update(self.env)
        proc = subprocess.run(["docker", *args], env=env, text=True, timeout=60,
                              stdout=subprocess.PIPE, stderr=subprocess.PIPE)
        assert proc.returncode == 0, f"docker run {self.name} failed: {proc.stderr}"
        return self

    def stop(self, timeout=60):
        """docker stop; returns the container's exit code."""
        docker("stop", "-t", str(timeout), self.name, timeout=timeout + 30)
        return self.exit_code()

    def remove(self):
        docker("rm", "-f", self.name, check=False, timeout=60)

    # --- state -------------------------------------------------------------
    def inspect(self):
        return json.loads(docker("inspect", self.name).stdout)[0]

    def running(self):
        return self.inspect()["State"]["Running"]

    def exit_code(self):
        return self.inspect()["State"]["ExitCode"]

    def logs(self):
        """Both streams, for messages and for lines from Tomcat."""
        p = docker("logs", self.name, check=False, timeout=60)
        return p.stdout + p.stderr

    def streams(self):
        """(stdout, stderr) as docker logs keeps them apart."""
        p = docker("logs", self.name, check=False, timeout=60)
        return p.stdout, p.stderr

    def records(self):
        """pi-agent's log records: the agent writes them on stderr only."""
        return agent_records(self.streams()[1])

    def exec(self, *cmd, check=True, input=None):
        return docker("exec", "-i", self.name, *cmd, check=check, input=input, timeout=120)

    def put_file(self, path, data):
        """Writes bytes to path inside the container (parents created)."""
        proc = subprocess.run(["docker", "exec", "-i", self.name, "sh", "-c",
                               'mkdir -p "$(dirname "$1")" && cat > "$1"', "sh", path],
                              input=data, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                              timeout=60)
        assert proc.returncode == 0, proc.stderr.decode(errors="replace")

    def health(self):
        """(HTTP status, parsed JSON or None) of pi-agent's /health."""
        status, body = http_get(f"http://127.0.0.1:{self.health_port}/health")
        try:
            doc = json.loads(body) if status is not None else None
        except ValueError:
            doc = None
        return status, doc

    def version(self):
        return http_get(f"http://127.0.0.1:{self.tomcat_port}/pi/version")

    def wait_ready(self, timeout=READY_TIMEOUT):
        """Waits for /health 200; fails with the logs when the container dies."""
        def ready():
            if not self.running():
                raise AssertionError(f"{self.name} exited with {self.exit_code()}:\n"
                                     f"{self.logs()[-4000:]}")
            status, _ = self.health()
            return status == 200
        try:
            wait_for(ready, timeout, interval=0.5, what=f"{self.name} /health 200")
        except AssertionError as e:
            status, doc = self.health()
            raise AssertionError(f"{e}\nlast /health: {status} {doc}\n"
                                 f"logs:\n{self.logs()[-4000:]}") from None
        return self.health()[1]

    def efs_digest(self, root="/mnt/efs"):
        """{relative path: sha256} of every file under root but the agent's
        own bookkeeping (.pi-agent/)."""
        out = self.exec("sh", "-c",
                        f"cd {root} && find . -path ./.pi-agent -prune -o -type f -print0 "
                        "| xargs -0 -r sha256sum").stdout
        digest = {}
        for line in out.splitlines():
            h, path = line.split(None, 1)
            digest[path.strip()] = h
        return digest


class AlmStub:
    """tests/container/alm/alm_stub.py on the host's loopback, with its own
    throwaway CA and licence-signing key in pki_dir."""

    def __init__(self, pki_dir):
        self.pki_dir = Path(pki_dir)
        self.port = free_port()
        self.proc = None
        subprocess.run([sys.executable, str(ALM_STUB), "pki", str(self.pki_dir)], check=True)

    @property
    def url(self):
        # A name, not 127.0.0.1: mbedTLS 2.28 matches certificates by DNS name only.
        return f"https://localhost:{self.port}/licence"

    def start(self):
        self.proc = subprocess.Popen([sys.executable, str(ALM_STUB), "serve", str(self.pki_dir),
                                      str(self.port)],
                                     stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                                     start_new_session=True)

        def listening():
            try:
                with socket.create_connection(("127.0.0.1", self.port), timeout=0.5):
                    return True
            except OSError:
                assert self.proc.poll() is None, "the ALM stub exited"
                return False
        wait_for(listening, 30, what="the ALM stub")
        return self

    def stop(self):
        if self.proc and self.proc.poll() is None:
            os.killpg(self.proc.pid, signal.SIGTERM)
            self.proc.wait(timeout=10)
        self.proc = None

    def sign(self, *args):
        """An offline licence signed with the stub's key (alm_stub.py sign)."""
        return subprocess.run([sys.executable, str(ALM_STUB), "sign", str(self.pki_dir), *args],
                              check=True, text=True, stdout=subprocess.PIPE).stdout.strip()

    def mount(self):
        """The docker -v argument that shows the CA and public key at /pki."""
        return f"{self.pki_dir}:/pki:ro"


def sha256(data):
    return hashlib.sha256(data).hexdigest()
