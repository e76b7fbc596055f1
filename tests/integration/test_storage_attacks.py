"""Root on shared storage: what the dashboard's user plants where it can write
must not steer the agent.

The real binary runs as root on an EFS root that is a tmpfs owned by an
unprivileged uid (as an access point makes it), with PI_AGENT_RUN_AS set. The
tmpfs lives in a private mount namespace kept by a holder process; the test
reaches it through /proc/HOLDER/root, and each agent runs in that namespace
with the root bind-mounted onto itself (a mount point, so managed mode).
On the same tmpfs, outside the EFS root, lies a victim tree of root's files
(so hard links to them can be planted). For each place the agent works in,
the tests plant a symlink to a folder outside, a symlink to a file outside and
a hard link to a root-owned file, or swap a folder for a link in a bounded
loop while the agent seeds. Each snapshots the victim tree (names, modes,
owners, sizes, mtimes, content) before and after, and checks the agent's line
names the path."""
import hashlib
import os
import shutil
import signal
import ssl
import subprocess
import tempfile
import threading
import time
from pathlib import Path

import pytest

from alm_stub import HANG, Response, alm_stub, claims, licence_response, pki  # noqa: F401
from conftest import AGENT, descendants
from efs_helpers import FOLDERS, Run, storage_env, wrapped

ATTACKER = 65534  # the dashboard's user (PI_AGENT_RUN_AS)
OLD = 1577836800  # 2020-01-01: older than any log retention
CUSTOMER_KEY = "ACME-CUST-7f3a9c2e51"


class Shared:
    """A tmpfs in a private mount namespace, alive while the holder runs."""

    def __init__(self):
        self.base = Path(tempfile.mkdtemp(prefix="pi-attack-", dir="/tmp"))
        self.holder = subprocess.Popen(
            ["unshare", "-m", "--propagation", "private", "sh", "-c",
             f"mount -t tmpfs -o mode=0755,size=64m tmpfs '{self.base}' && echo ready && "
             "exec sleep 600"], stdout=subprocess.PIPE, start_new_session=True)
        assert self.holder.stdout.readline().strip() == b"ready"
        # The holder's view of its mount namespace.
        self.view = Path(f"/proc/{self.holder.pid}/root") / self.base.relative_to("/")

    def p(self, rel):
        """(path the agent sees, path the test uses)"""
        return self.base / rel, self.view / rel

    def close(self):
        self.holder.kill()
        self.holder.wait(timeout=10)
        shutil.rmtree(self.base, ignore_errors=True)


class NsRun(Run):
    """Run, inside the holder's mount namespace."""

    def __init__(self, shared, args, env, binds=()):
        super().__init__(args, env, binds=binds,
                         prefix=["nsenter", "-t", str(shared.holder.pid), "-m", "--"])


def write(path: Path, text: str, mode=0o644, uid=0, mtime=None):
    path.write_text(text)
    os.chmod(path, mode)
    os.chown(path, uid, uid)
    if mtime:
        os.utime(path, (mtime, mtime))


def snapshot(top: Path):
    """Names, kinds, modes, owners, sizes, mtimes and content digests."""
    out = {}
    for dirpath, dirnames, filenames in os.walk(top):
        for name in dirnames + filenames + ["."]:
            p = Path(dirpath) / name
            st = p.lstat()
            digest = None
            if p.is_file() and not p.is_symlink():
                digest = hashlib.sha256(p.read_bytes()).hexdigest()
            out[str(p.relative_to(top))] = (st.st_mode, st.st_uid, st.st_gid, st.st_size,
                                            st.st_mtime_ns, digest)
    return out


@pytest.fixture
def world():
    """The tmpfs: efs/ (the EFS root, the attacker's), victim/ (root's),
    image/Dashboard (the image, Tomcat's logs the attacker's) and hooks/."""
    sh = Shared()
    try:
        v = sh.view
        (v / "efs").mkdir()
        os.chown(v / "efs", ATTACKER, ATTACKER)
        os.chmod(v / "efs", 0o755)
        victim = v / "victim"
        (victim / "etc").mkdir(parents=True)
        write(victim / "secret", "root's secret\n", 0o600, mtime=OLD)
        write(victim / "etc" / "passwd", "root:x:0:0\n", 0o644, mtime=OLD)
        write(victim / "etc" / "old.log", "old\n", 0o644, mtime=OLD)
        os.utime(victim / "etc", (OLD, OLD))
        home = v / "image" / "Dashboard"
        for rel, files in ((FOLDERS["themes"], {"default/theme.css": "body {}\n",
                                                "dark/theme.css": "body { color: #eee }\n"}),
                           (FOLDERS["locale"], {"en.json": "{}\n"})):
            for name, text in files.items():
                f = home / rel / name
                f.parent.mkdir(parents=True, exist_ok=True)
                f.write_text(text)
        (home / "tomcat" / "logs").mkdir(parents=True)
        os.chown(home / "tomcat", ATTACKER, ATTACKER)
        os.chown(home / "tomcat" / "logs", ATTACKER, ATTACKER)
        (v / "hooks").mkdir(mode=0o755)
        sh.victim_snapshot = lambda: snapshot(victim)
        yield sh
    finally:
        sh.close()


def env_for(sh, **overrides):
    home, _ = sh.p("image/Dashboard")
    root, _ = sh.p("efs")
    base = dict(PI_AGENT_RUN_AS=f"{ATTACKER}:{ATTACKER}", PI_EFS_MODE="auto",
                PI_AGENT_HOOKS_DIR=str(sh.p("hooks")[0]))
    base.update(overrides)
    return storage_env(home, root, **{k: v for k, v in base.items()})


def start(sh, env, child=("true",)):
    root, _ = sh.p("efs")
    return NsRun(sh, ["--"] + list(child), env, binds=[root])


def finish(run, timeout=60):
    rc = run.wait(timeout)
    return rc


def lines_naming(run, path):
    """The agent's records that name path (in any field)."""
    return [r for r in run.records() if any(str(path) in str(v) for v in r.values())]


def child_started(run):
    return bool(run.find("child started"))


PLANTS = ["symlink-to-folder", "symlink-to-file", "hard-link-to-root-file"]


def plant(sh, rel, kind):
    """Plants kind at rel (relative to the tmpfs), as the attacker would."""
    agent_path, path = sh.p(rel)
    victim_dir, _ = sh.p("victim/etc")
    victim_file, victim_file_view = sh.p("victim/secret")
    if kind == "symlink-to-folder":
        path.symlink_to(victim_dir)
    elif kind == "symlink-to-file":
        path.symlink_to(victim_file)
    else:
        os.link(victim_file_view, path)
        return agent_path  # a hard link's owner is the victim's: never chowned here
    os.chown(path, ATTACKER, ATTACKER, follow_symlinks=False)
    return agent_path


def assert_victim_unchanged(sh, before):
    after = sh.victim_snapshot()
    assert after == before
    _, secret = sh.p("victim/secret")
    st = secret.lstat()
    assert (st.st_uid, st.st_mode & 0o7777) == (0, 0o600)  # never given away


# ---- the EFS root's folders, .pi-agent and its lock ------------------------------

@pytest.mark.parametrize("kind", PLANTS)
def test_efs_folder_planted(world, kind):
    before = world.victim_snapshot()
    path = plant(world, "efs/themes", kind)
    r = start(world, env_for(world))
    assert finish(r) == 0, r.lines
    assert child_started(r)  # auto mode: Tomcat starts, readiness reports the failure
    named = [x for x in lines_naming(r, path) if x.get("level") == "error"]
    assert named and ("symlink" in named[0]["msg"] or "not a folder" in named[0]["msg"]), r.lines
    assert_victim_unchanged(world, before)


@pytest.mark.parametrize("kind", PLANTS)
def test_agent_folder_planted_is_moved_aside(world, kind):
    before = world.victim_snapshot()
    path = plant(world, "efs/.pi-agent", kind)
    r = start(world, env_for(world))
    assert finish(r) == 0, r.lines
    assert child_started(r)
    moved = [x for x in lines_naming(r, path) if x.get("check") == "agent folder"]
    assert moved and "moved aside" in moved[0]["msg"], r.lines
    assert r.find("storage ready"), r.lines  # an honest folder replaced it: nothing failed
    _, view = world.p("efs")
    aside = list(view.glob(".pi-agent.refused-*"))
    assert len(aside) == 1 and aside[0].is_symlink() == kind.startswith("symlink")
    st = (view / ".pi-agent").lstat()
    assert (st.st_uid, oct(st.st_mode & 0o7777)) == (0, oct(0o700))
    assert (view / ".pi-agent" / "seed.done").is_file()
    assert_victim_unchanged(world, before)


@pytest.mark.parametrize("kind", PLANTS)
def test_seed_lock_planted_is_moved_aside(world, kind):
    """An earlier version left .pi-agent 0755; something sits at its lock."""
    _, view = world.p("efs/.pi-agent")
    view.mkdir(mode=0o755)
    before = world.victim_snapshot()
    plant(world, "efs/.pi-agent/seed.lock", kind)
    r = start(world, env_for(world))
    assert finish(r) == 0, r.lines
    moved = [x for x in r.records() if x.get("check") == "agent folder"]
    assert moved and ".pi-agent/seed.lock.refused-" in moved[0]["msg"], r.lines
    assert r.find("storage ready"), r.lines
    assert (view.stat().st_mode & 0o777) == 0o700  # tightened
    assert_victim_unchanged(world, before)


def test_agent_folder_that_cannot_be_moved_aside_fails_storage(world):
    """A folder of the attacker's that is a mount point cannot be renamed:
    storage fails with one line naming the path and what was found; Tomcat
    still starts (auto mode) and nothing in it is used."""
    _, view = world.p("efs/.pi-agent")
    view.mkdir()
    os.chown(view, ATTACKER, ATTACKER)
    before = world.victim_snapshot()
    root, _ = world.p("efs")
    agent_dir, _ = world.p("efs/.pi-agent")
    r = NsRun(world, ["--", "true"], env_for(world), binds=[root, agent_dir])
    assert finish(r) == 0, r.lines
    assert child_started(r)
    failed = [x for x in r.records() if x.get("check") == "agent folder" and x["level"] == "error"]
    assert failed, r.lines
    assert f"{agent_dir} is a folder owned by uid {ATTACKER}" in failed[0]["msg"]
    assert "cannot be moved aside" in failed[0]["msg"]
    assert r.find("storage failed"), r.lines
    assert list(view.iterdir()) == []  # no lock, no marker written in it
    assert_victim_unchanged(world, before)


# ---- the dashboard paths the agent links --------------------------------------

@pytest.mark.parametrize("kind", PLANTS)
def test_dashboard_path_planted(world, kind):
    before = world.victim_snapshot()
    rel = f"image/Dashboard/{FOLDERS['images']}"
    path = plant(world, rel, kind)
    r = start(world, env_for(world))
    assert finish(r) == 0, r.lines
    assert child_started(r)
    named = [x for x in lines_naming(r, path) if x.get("check") == "link images"]
    assert named, r.lines
    _, view = world.p(rel)
    if kind == "hard-link-to-root-file":
        assert named[0]["level"] == "error" and "not a folder" in named[0]["msg"]
        assert not view.is_symlink()  # left as it is
    else:  # the planted link is replaced, its target never touched
        assert named[0]["level"] == "info"
        assert os.readlink(view) == str(world.p("efs/images")[0])
    assert_victim_unchanged(world, before)


def test_dashboard_parent_swapped_for_a_link_is_not_followed(world):
    """Tomcat's user owns tomcat/: it swaps webapps/ for a link to a folder
    outside. Nothing is created, moved or seeded through it."""
    _, tomcat = world.p("image/Dashboard/tomcat")
    (tomcat / "webapps").rename(tomcat / "webapps.real")
    victim_dir, _ = world.p("victim/etc")
    (tomcat / "webapps").symlink_to(victim_dir)
    os.chown(tomcat / "webapps", ATTACKER, ATTACKER, follow_symlinks=False)
    before = world.victim_snapshot()
    r = start(world, env_for(world))
    assert finish(r) == 0, r.lines
    assert child_started(r)
    named = [x for x in r.records() if x.get("check") == "link themes"]
    assert named and named[0]["level"] == "error" and "symlink" in named[0]["msg"], r.lines
    assert str(world.p("image/Dashboard/tomcat/webapps")[0]) in named[0]["msg"] or \
        "tomcat/webapps" in named[0]["msg"]
    assert_victim_unchanged(world, before)


# ---- seeding targets and sources -------------------------------------------------

@pytest.mark.parametrize("kind", PLANTS)
def test_seeding_target_planted(world, kind):
    _, efs = world.p("efs")
    (efs / "themes").mkdir()
    os.chown(efs / "themes", ATTACKER, ATTACKER)
    before = world.victim_snapshot()
    path = plant(world, "efs/themes/default", kind)
    r = start(world, env_for(world))
    assert finish(r) == 0, r.lines
    assert child_started(r)
    named = [x for x in lines_naming(r, path) if x.get("check") == "seed"]
    assert named and "not followed" in named[0]["msg"], r.lines
    assert (efs / "themes" / "dark" / "theme.css").read_text() == "body { color: #eee }\n"
    assert_victim_unchanged(world, before)


def test_seeding_source_hard_link_to_a_root_file_is_not_copied(world):
    """Whoever can write the image folder links root's secret there: its
    content must not reach EFS, where the run-as user reads it."""
    rel = f"image/Dashboard/{FOLDERS['themes']}/default/stolen.css"
    _, view = world.p(rel)
    _, secret = world.p("victim/secret")
    os.link(secret, view)
    before = world.victim_snapshot()
    r = start(world, env_for(world))
    assert finish(r) == 0, r.lines
    assert child_started(r)
    named = [x for x in r.records() if x.get("check") == "seed" and x.get("level") == "error"]
    assert named and "default/stolen.css" in named[0]["msg"] and "more than one link" in \
        named[0]["msg"], r.lines
    _, efs = world.p("efs")
    assert not (efs / "themes" / "default" / "stolen.css").exists()
    assert_victim_unchanged(world, before)


# ---- the licence cache -------------------------------------------------------------

@pytest.mark.parametrize("kind", PLANTS)
def test_licence_cache_planted(world, pki, alm_stub, kind):  # noqa: F811
    token = pki.vendor.sign(claims())
    stub = alm_stub().respond(licence_response(token))
    _, agent_dir = world.p("efs/.pi-agent")
    agent_dir.mkdir(mode=0o755)  # an earlier version's folder
    before = world.victim_snapshot()
    plant(world, "efs/.pi-agent/licence", kind)
    run_dir, _ = world.p("run")
    env = env_for(world, PI_LICENCE=CUSTOMER_KEY, PI_ALM_URL=stub.url(),
                  PI_LICENCE_PUBLIC_KEY=pki.public_keys, PI_ALM_CA_FILE=str(pki.ca_file),
                  PI_AGENT_RUN_DIR=str(run_dir), HTTPS_PROXY=None, https_proxy=None,
                  NO_PROXY=None, no_proxy=None, ALL_PROXY=None, all_proxy=None)
    r = start(world, env)
    assert finish(r) == 0, r.lines
    assert child_started(r)
    cached = r.find("licence cached on EFS")
    assert cached and cached[0]["path"] == str(world.p("efs/.pi-agent")[0]), r.lines
    cache = agent_dir / "licence"
    assert not cache.is_symlink() and cache.read_text() == token
    st = cache.stat()
    assert (st.st_uid, st.st_nlink, st.st_mode & 0o777) == (0, 1, 0o600)
    assert_victim_unchanged(world, before)  # the secret was never overwritten with the token


# ---- Tomcat's log folder ----------------------------------------------------------

@pytest.mark.parametrize("run_as", ["set", "unset"])
@pytest.mark.parametrize("kind", PLANTS)
def test_tomcat_log_folder_planted(world, kind, run_as):
    """Housekeeping removes old files in the log folder: pointed at root's
    folder (whose files are old), it must remove nothing there, even as root."""
    _, logs = world.p("image/Dashboard/tomcat/logs")
    logs.rmdir()
    before = world.victim_snapshot()
    path = plant(world, "image/Dashboard/tomcat/logs", kind)
    overrides = dict(PI_EFS_MODE="off", PI_AGENT_TOMCAT_LOG_DIR=str(path))
    if run_as == "unset":
        overrides["PI_AGENT_RUN_AS"] = None
    r = start(world, env_for(world, **overrides), child=("sleep", "30"))
    done = r.wait_for_log("log housekeeping")
    assert r.stop() == 143
    assert done[0].get("removed", 0) == 0
    assert done[0]["folder"] == str(path)
    assert_victim_unchanged(world, before)


# ---- the hooks folder ---------------------------------------------------------------

def _hook(path: Path, victim_agent_path):
    path.write_text(f"#!/bin/sh\ntouch '{victim_agent_path}/pwned'\n")
    path.chmod(0o755)


@pytest.mark.parametrize("case", ["folder-owned-by-user", "folder-writable-by-others",
                                  "folder-symlink-by-user", "hook-owned-by-user",
                                  "hook-writable-by-group"])
def test_hooks_planted(world, case):
    _, hooks = world.p("hooks")
    victim_dir, _ = world.p("victim/etc")
    phase = hooks / "pre-start.d"
    if case == "folder-symlink-by-user":
        os.chown(hooks, ATTACKER, ATTACKER)
        (hooks / "elsewhere").mkdir()
        _hook(hooks / "elsewhere" / "10-x", victim_dir)
        phase.symlink_to(hooks / "elsewhere")
        os.chown(phase, ATTACKER, ATTACKER, follow_symlinks=False)
    else:
        phase.mkdir(mode=0o755)
        _hook(phase / "10-x", victim_dir)
        if case == "folder-owned-by-user":
            os.chown(phase, ATTACKER, ATTACKER)
        elif case == "folder-writable-by-others":
            phase.chmod(0o777)
        elif case == "hook-owned-by-user":
            os.chown(phase / "10-x", ATTACKER, ATTACKER)
        else:
            (phase / "10-x").chmod(0o775)
    before = world.victim_snapshot()
    r = start(world, env_for(world, PI_EFS_MODE="off"))
    rc = finish(r)
    agent_phase = world.p("hooks/pre-start.d")[0]
    if case.startswith("hook-"):
        refused = r.find("hook refused")
        assert refused and refused[0]["dir"] == str(agent_phase) and refused[0]["hook"] == "10-x"
        assert rc == 0 and child_started(r), r.lines  # the others run, Tomcat starts
    else:
        refused = [x for x in r.find("cannot read the hooks directory")
                   if "refused" in x.get("error", "")]
        assert refused and str(agent_phase) in refused[0]["error"], r.lines
        assert rc == 75 and not child_started(r)  # a pre-start folder that cannot be used
    assert_victim_unchanged(world, before)


# ---- races: a folder swapped for a link while the agent works ---------------------

class Swapper:
    """Swaps the folder at rel for a symlink to the victim's folder (or for a
    hard link to root's secret) and back, as fast as it can, until stopped or
    for at most `limit` seconds."""

    def __init__(self, sh, rel, target_rel, limit=8.0, hard=False):
        _, self.path = sh.p(rel)
        self.target, self.target_view = sh.p(target_rel)
        self.hard = hard
        self.aside = self.path.with_name(self.path.name + ".swap")
        self.limit = limit
        self.stop_event = threading.Event()
        self.swaps = 0
        self.thread = threading.Thread(target=self._run, daemon=True)
        self.thread.start()

    def _run(self):
        end = time.monotonic() + self.limit
        while not self.stop_event.is_set() and time.monotonic() < end:
            try:
                if self.path.is_dir() and not self.path.is_symlink():
                    os.rename(self.path, self.aside)
                    if self.hard:
                        os.link(self.target_view, self.path)
                    else:
                        os.symlink(self.target, self.path)
                        os.lchown(self.path, ATTACKER, ATTACKER)
                    self.swaps += 1
                    time.sleep(0.0005)
                    os.unlink(self.path)
                    os.rename(self.aside, self.path)
                else:
                    time.sleep(0.0005)
            except OSError:
                time.sleep(0.0005)

    def stop(self):
        self.stop_event.set()
        self.thread.join(timeout=10)
        # leave a folder in place, whatever state the loop stopped in
        if self.path.is_symlink() or self.path.is_file():
            self.path.unlink()
        if self.aside.exists() and not self.path.exists():
            os.rename(self.aside, self.path)


def _big_image(sh, n=400):
    _, themes = sh.p(f"image/Dashboard/{FOLDERS['themes']}")
    for i in range(n):
        d = themes / "default" / f"set{i % 20}"
        d.mkdir(parents=True, exist_ok=True)
        (d / f"f{i}.css").write_text("x" * 64)


@pytest.mark.parametrize("rel,prepare,hard", [
    ("efs/themes/default", "folders", False),  # a seeding target
    ("efs/themes/default", "missing", True),  # a folder the seed creates and hands over
    ("efs/themes", "folder", False),  # an EFS folder
    ("efs/images", "missing", True),  # an EFS folder the agent creates and hands over
    ("efs/.pi-agent", "folder", False),  # the agent's own folder
])
def test_race_swapping_a_folder_for_a_link(world, rel, prepare, hard):
    _big_image(world)
    _, efs = world.p("efs")
    if prepare == "folders":
        (efs / "themes" / "default").mkdir(parents=True)
        os.chown(efs / "themes", ATTACKER, ATTACKER)
        os.chown(efs / "themes" / "default", ATTACKER, ATTACKER)
    elif prepare == "missing":
        pass
    else:
        _, p = world.p(rel)
        p.mkdir(parents=True)
        if rel != "efs/.pi-agent":
            os.chown(p, ATTACKER, ATTACKER)
    before = world.victim_snapshot()
    swapper = Swapper(world, rel, "victim/secret" if hard else "victim/etc", hard=hard)
    try:
        for _ in range(3):  # three starts against the loop, each re-seeding
            _, marker = world.p("efs/.pi-agent/seed.done")
            try:
                marker.unlink()
            except OSError:
                pass
            if prepare == "missing":  # the agent creates it again
                shutil.rmtree(world.p(rel)[1], ignore_errors=True)
            r = start(world, env_for(world))
            assert finish(r) == 0, r.lines
            assert child_started(r)
    finally:
        swapper.stop()
    assert swapper.swaps > 0 or hard  # a folder the agent creates may win every time
    assert_victim_unchanged(world, before)
    leaked = [p for p in Path(world.p("victim")[1]).rglob("*")
              if p.name.startswith((".pi-agent", "seed.", "set", "f")) or p.name == "default"]
    assert leaked == []


# ---- TLS: the minimum version and no downgrade by redirect --------------------------

@pytest.mark.filterwarnings("ignore::DeprecationWarning")  # TLS 1.0/1.1 on purpose
def test_tls_below_1_2_is_refused(pki, alm_stub, tmp_path):  # noqa: F811
    token = pki.vendor.sign(claims())
    stub = alm_stub().respond(licence_response(token))
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    ctx.set_ciphers("DEFAULT:@SECLEVEL=0")
    ctx.minimum_version = ssl.TLSVersion.TLSv1
    ctx.maximum_version = ssl.TLSVersion.TLSv1_1
    ctx.load_cert_chain(pki.good[0], pki.good[1])
    stub.server.context = ctx
    env = _licence_env(tmp_path, pki, PI_LICENCE=CUSTOMER_KEY, PI_ALM_URL=stub.url(),
                       PI_ALM_TIMEOUT_SECONDS="2")
    rc, out = _licence_cmd(env)
    assert rc == 1 and '"unreachable"' in out and "TLS handshake failed" in out, out
    assert stub.requests == [] and stub.connections >= 1


def test_https_redirect_to_plain_http_is_refused_even_with_allow_http(pki, alm_stub,  # noqa: F811
                                                                     tmp_path):
    token = pki.vendor.sign(claims())
    plain = alm_stub(tls=False).respond(Response(200, token, "text/plain"))
    secure = alm_stub().respond(Response(302, b"", headers={"Location": plain.url()}))
    env = _licence_env(tmp_path, pki, PI_LICENCE_URL=secure.url(), PI_ALM_ALLOW_HTTP="true")
    rc, out = _licence_cmd(env)
    assert rc == 1 and "redirect refused" in out and "PI_ALM_ALLOW_HTTP" in out, out
    assert len(secure.requests) == 1
    assert plain.requests == []  # the downgrade never happened
    # An http URL the user wrote is still allowed with PI_ALM_ALLOW_HTTP.
    env["PI_LICENCE_URL"] = plain.url()
    rc, out = _licence_cmd(env)
    assert rc == 0 and '"valid"' in out, out


def test_workers_holding_secrets_write_no_core(pki, alm_stub, tmp_path):  # noqa: F811
    """The licence worker, caught while it waits for an ALM that never
    answers, runs with RLIMIT_CORE 0 (and PR_SET_DUMPABLE 0, set with it)."""
    stub = alm_stub().respond(HANG)
    env = _licence_env(tmp_path, pki, PI_LICENCE=CUSTOMER_KEY, PI_ALM_URL=stub.url(),
                       PI_ALM_TIMEOUT_SECONDS="5")
    p = subprocess.Popen([str(AGENT), "--", "true"], env=env, stdout=subprocess.DEVNULL,
                         stderr=subprocess.DEVNULL, start_new_session=True)
    try:
        deadline = time.monotonic() + 10
        worker = None
        while worker is None and time.monotonic() < deadline:
            for pid in descendants(p.pid):
                try:
                    if os.readlink(f"/proc/{pid}/exe") == str(AGENT.resolve()):
                        worker = pid
                except OSError:
                    pass
            time.sleep(0.02)
        assert worker, "no worker seen"
        limits = Path(f"/proc/{worker}/limits").read_text()
        core = [l for l in limits.splitlines() if l.startswith("Max core file size")][0]
        assert core.split()[4:6] == ["0", "0"], core
    finally:
        os.killpg(p.pid, signal.SIGKILL)
        p.wait(timeout=10)


def _licence_env(tmp_path, pki, **overrides):  # noqa: F811
    env = storage_env(tmp_path / "home", tmp_path / "efs", PI_EFS_MODE="off",
                      PI_AGENT_RUN_DIR=str(tmp_path / "run"),
                      PI_LICENCE_PUBLIC_KEY=pki.public_keys, PI_ALM_CA_FILE=str(pki.ca_file),
                      PI_ALM_TIMEOUT_SECONDS="10")
    for name in ("HTTPS_PROXY", "https_proxy", "HTTP_PROXY", "http_proxy", "ALL_PROXY",
                 "all_proxy", "NO_PROXY", "no_proxy"):
        env.pop(name, None)
    env.update({k: str(v) for k, v in overrides.items()})
    return env


def _licence_cmd(env):
    p = subprocess.run([str(AGENT), "licence"], env=env, capture_output=True, timeout=120)
    return p.returncode, p.stdout.decode() + p.stderr.decode()
