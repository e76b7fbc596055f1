"""Fixtures for the container tests; the helpers they use are in dockerlib.py.
Everything a test creates (containers, volumes) carries the label
pi-agent-test=<run id> and is removed at the end, whatever happened; leftovers
of runs that were killed are removed at the start of the next run."""
import os
import re
import subprocess

import pytest

from dockerlib import (AGENT_IMAGE, IMAGE, LABEL, LINKED_IMAGE, ROOT, RUN_ID, AlmStub, Dashboard,
                       docker)


def run_pid(label, value):
    """The pid of the test run that made a container or volume, from our
    label (<pid>-<hex>) or from a compose project the tests named
    (pi_agent_test_<pid>_...); None for anything else."""
    pattern = r"(\d+)-[0-9a-f]+$" if label == LABEL else r"pi_agent_test_(\d+)_"
    m = re.match(pattern, value or "")
    return int(m.group(1)) if m else None


def remove_leftovers_of_dead_runs():
    """A run that was killed (SIGKILL, CI timeout) could not clean up: remove
    the containers and volumes of test runs whose process no longer exists."""
    labels = (LABEL, "com.docker.compose.project")
    fields = " ".join('{{.Label "%s"}}' % label for label in labels)
    for ls, name, rm in ((["ps", "-a"], "{{.ID}}", ["rm", "-f", "-v"]),
                         (["volume", "ls"], "{{.Name}}", ["volume", "rm", "-f"])):
        rows = docker(*ls, "--format", f"{name} {fields}", check=False).stdout.splitlines()
        stale = []
        for row in rows:
            ident, *values = row.split(" ")
            pids = [run_pid(label, v) for label, v in zip(labels, values)]
            if any(p is not None and not os.path.exists(f"/proc/{p}") for p in pids):
                stale.append(ident)
        if stale:
            docker(*rm, *stale, check=False, timeout=120)


@pytest.fixture(scope="session")
def images():
    """The engine answers and the images exist (built once, offline)."""
    if docker("info", check=False, timeout=60).returncode != 0:
        subprocess.run([str(ROOT / "scripts" / "docker-setup.sh")], check=True)
    remove_leftovers_of_dead_runs()
    if any(docker("image", "inspect", i, check=False).returncode != 0
           for i in (IMAGE, AGENT_IMAGE, LINKED_IMAGE)):
        env = dict(os.environ, PI_AGENT_IMAGE=IMAGE, PI_AGENT_ONLY_IMAGE=AGENT_IMAGE,
                   PI_AGENT_LINKED_IMAGE=LINKED_IMAGE)
        subprocess.run([str(ROOT / "scripts" / "docker-images.sh"), "all"], check=True,
                       env=env, timeout=3600)
    yield
    # Everything this run created goes, whatever the tests did.
    ids = docker("ps", "-aq", "--filter", f"label={LABEL}={RUN_ID}", check=False).stdout.split()
    if ids:
        docker("rm", "-f", "-v", *ids, check=False, timeout=120)
    vols = docker("volume", "ls", "-q", "--filter", f"label={LABEL}={RUN_ID}",
                  check=False).stdout.split()
    if vols:
        docker("volume", "rm", "-f", *vols, check=False, timeout=120)


@pytest.fixture
def dashboards(images):
    """Factory for Dashboard containers; all of them are removed afterwards."""
    made = []

    def make(name, **kw):
        d = Dashboard(name, **kw)
        made.append(d)
        return d

    yield make
    for d in made:
        d.remove()


@pytest.fixture
def volume(images):
    """Factory for labelled named volumes (the EFS stand-in)."""
    made = []

    def make(name):
        full = f"pi-agent-test-{RUN_ID}-{name}"
        docker("volume", "create", "--label", f"{LABEL}={RUN_ID}", full)
        made.append(full)
        return full

    yield make
    for v in made:
        docker("volume", "rm", "-f", v, check=False)


@pytest.fixture
def alm_stub(tmp_path):
    stub = AlmStub(tmp_path / "pki")
    yield stub
    stub.stop()
