"""Storage (EFS) start phase and budget scans, with build/pi-agent as PID 1 of
its own PID namespace, a fake dashboard image under a temporary folder and an
EFS root that is a real mount point (bind mount in a private mount namespace)."""
import json
import os
import shutil
import signal
import socket
import subprocess
import tempfile
import threading
import urllib.request
from pathlib import Path

import pytest

from efs_helpers import (FOLDERS, Run, copy_image, du_one, du_total, make_image, run_once,
                         storage_env, temporaries, tree_digest)


@pytest.fixture
def layout(tmp_path):
    home = make_image(tmp_path / "image" / "Dashboard")
    root = tmp_path / "efs"
    root.mkdir()
    return home, root


def storage_errors(run):
    return [r for r in run.records() if r.get("level") == "error" and "check" in r]


def test_fresh_root_is_laid_out_seeded_and_linked(layout):
    home, root = layout
    rc, r = run_once(["true"], storage_env(home, root), binds=[root])
    assert rc == 0, r.lines
    assert not storage_errors(r)
    for name, rel in FOLDERS.items():
        folder = root / name
        assert folder.is_dir() and not folder.is_symlink()
        link = home / rel
        assert link.is_symlink() and os.readlink(link) == str(folder), name
    assert (root / "themes/default/theme.css").read_text() == "body { color: #333 }\n"
    assert (root / "locale/fr.json").read_text() == '{"hello": "Bonjour"}\n'
    # the image's own folder is moved aside, not deleted
    assert (home / (FOLDERS["themes"] + ".pi-agent-image") / "dark/theme.css").exists()
    marker = (root / ".pi-agent/seed.done").read_text()
    assert marker.startswith("seed-version=")
    assert temporaries(root) == []
    ready = r.find("storage ready")
    assert ready and ready[0]["mode"] == "managed"
    seeded = r.find("image defaults seeded")
    assert seeded and "5 copied" in seeded[0]["msg"]


def test_customer_data_is_unchanged_after_five_starts(layout, tmp_path):
    home, root = layout
    for name in FOLDERS:
        (root / name).mkdir()
    (root / "keys/dashboard.key").write_bytes(os.urandom(2048))
    (root / "files/report.pdf").write_bytes(os.urandom(10000))
    (root / "images/logo.png").write_bytes(os.urandom(3000))
    (root / "custom_jdbc/driver.jar").write_bytes(os.urandom(5000))
    (root / "themes/default").mkdir()
    (root / "themes/default/theme.css").write_text("/* the customer's edit */\n")
    (root / "svg/map.svg").write_text("<svg>uk</svg>\n")
    (root / "images/link-to-logo").symlink_to("logo.png")
    before = tree_digest(root)
    for i in range(5):
        image = copy_image(home, tmp_path / f"container{i}" / "Dashboard")  # a new container
        rc, r = run_once(["true"], storage_env(image, root), binds=[root])
        assert rc == 0, r.lines
        assert not storage_errors(r)
    after = tree_digest(root)
    for rel, value in before.items():
        assert after[rel] == value, rel
    added = sorted(set(after) - set(before))
    assert not [a for a in added if not (a.startswith(".pi-agent") or a.startswith("themes/")
                                         or a.startswith("locale/"))], added
    assert (root / "themes/default/theme.css").read_text() == "/* the customer's edit */\n"
    assert (root / "themes/dark/theme.css").read_text() == "body { color: #eee }\n"
    assert temporaries(root) == []


def test_eight_agents_on_one_root_seed_once(layout, tmp_path):
    home, root = layout
    # enough content that the eight overlap while one of them seeds
    for i in range(300):
        (home / FOLDERS["themes"] / f"extra-{i:03d}.css").write_text(f"/* {i} */\n")
        os.utime(home / FOLDERS["themes"] / f"extra-{i:03d}.css", (1700000000, 1700000000))
    images = [copy_image(home, tmp_path / f"task{i}" / "Dashboard") for i in range(8)]
    # One mount namespace holds the bind mount; the eight agents start together inside it.
    runs = [Run(["true"], storage_env(img, root), binds=[root]) for img in images]
    codes = [r.wait(timeout=120) for r in runs]
    assert codes == [0] * 8, [r.lines for r in runs]
    seeded = [r for r in runs if r.find("image defaults seeded")]
    skipped = [r for r in runs if r.find("image defaults already seeded")]
    assert len(seeded) == 1
    assert len(skipped) == 7
    for r in runs:
        assert not storage_errors(r), r.lines
    assert len(list((root / "themes").glob("extra-*.css"))) == 300
    assert temporaries(root) == []


def test_sigkill_mid_seed_then_restart_completes_the_seed(layout, tmp_path):
    home, root = layout
    n = 8000
    themes = home / FOLDERS["themes"] / "many"
    themes.mkdir()
    for i in range(n):
        (themes / f"{i:05d}.css").write_text(f"/* theme {i} */\n" * 4)
    first = Run(["true"], storage_env(home, root), binds=[root])
    target = root / "themes" / "many"

    def copied():
        try:
            return sum(1 for p in target.iterdir() if p.name.endswith(".css"))
        except OSError:
            return 0

    while copied() == 0 and first.proc.poll() is None:
        pass
    first.kill()  # SIGKILL to the whole session: PID 1 of the namespace dies with its worker
    assert not (root / ".pi-agent/seed.done").exists(), "the seed finished before the kill"
    assert copied() < n

    image = copy_image(home, tmp_path / "next" / "Dashboard")
    rc, r = run_once(["true"], storage_env(image, root), binds=[root])
    assert rc == 0, r.lines
    assert not storage_errors(r)
    assert copied() == n
    for i in (0, n // 2, n - 1):
        assert (target / f"{i:05d}.css").read_text() == f"/* theme {i} */\n" * 4
    assert (root / ".pi-agent/seed.done").exists()
    assert temporaries(root) == []


def test_dashboard_path_that_is_a_mount_point_is_left_alone(layout):
    home, root = layout
    keys = home / "keys"
    keys.mkdir()
    (keys / "scheduler.key").write_text("shared with the scheduler\n")
    rc, r = run_once(["true"], storage_env(home, root), binds=[root, keys])
    assert rc == 0, r.lines
    assert keys.is_dir() and not keys.is_symlink()
    assert (keys / "scheduler.key").read_text() == "shared with the scheduler\n"
    assert sorted(os.listdir(keys)) == ["scheduler.key"]  # the write probe cleaned up
    left = [x for x in r.records() if x.get("check") == "folder keys"]
    assert left and "mount point" in left[0]["msg"] and "left as it is" in left[0]["msg"]
    assert (home / FOLDERS["themes"]).is_symlink()


def test_read_only_root_in_auto_mode_starts_but_storage_failed(layout):
    home, root = layout
    rc, r = run_once(["true"], storage_env(home, root), ro_binds=[root])
    assert rc == 0, r.lines
    errors = storage_errors(r)
    assert errors, r.lines
    assert str(root) in errors[0]["msg"] and "Read-only file system" in errors[0]["msg"]
    failed = r.find("storage failed")
    assert failed and "Read-only file system" in failed[0]["error"]
    assert (home / FOLDERS["themes"]).is_dir() and not (home / FOLDERS["themes"]).is_symlink()


def test_read_only_root_in_required_mode_stops_with_73(layout):
    home, root = layout
    rc, r = run_once(["true"], storage_env(home, root, PI_EFS_MODE="required"), ro_binds=[root])
    assert rc == 73, r.lines
    bad = r.find("storage is not usable")
    assert bad and str(root) in bad[0]["error"] and "Read-only file system" in bad[0]["error"]
    assert not r.find("child started")


def test_missing_root_auto_is_ephemeral_with_one_warning(layout, tmp_path):
    home, _ = layout
    root = tmp_path / "no-such-efs"
    rc, r = run_once(["true"], storage_env(home, root))
    assert rc == 0, r.lines
    warnings = [x for x in r.records() if x.get("level") == "warn" and x.get("check") == "root"]
    assert len(warnings) == 1
    assert f"PI_EFS_ROOT={root} does not exist" in warnings[0]["msg"]
    assert "lost with the container" in warnings[0]["msg"]
    assert r.find("storage ready")[0]["mode"] == "ephemeral"
    assert (home / FOLDERS["themes"]).is_dir() and not (home / FOLDERS["themes"]).is_symlink()
    assert not root.exists()


def test_missing_root_required_stops_with_73_naming_the_variable(layout, tmp_path):
    home, _ = layout
    root = tmp_path / "no-such-efs"
    rc, r = run_once(["true"], storage_env(home, root, PI_EFS_MODE="required"))
    assert rc == 73
    bad = r.find("storage is not usable")
    assert len(bad) == 1
    assert bad[0]["error"].startswith(f"PI_EFS_ROOT={root} does not exist")
    assert "PI_EFS_MODE=required" in bad[0]["error"]


def test_plain_folder_root_required_stops_with_73(layout):
    home, root = layout  # exists, but nothing is mounted there
    rc, r = run_once(["true"], storage_env(home, root, PI_EFS_MODE="required"))
    assert rc == 73
    bad = r.find("storage is not usable")
    assert "is a folder on" in bad[0]["error"] and "not a mount point" in bad[0]["error"]


def test_require_nfs_turns_a_local_root_into_an_error(layout):
    home, root = layout
    rc, r = run_once(["true"], storage_env(home, root, PI_EFS_REQUIRE_NFS="true"), binds=[root])
    assert rc == 73
    bad = r.find("storage is not usable")
    assert "not NFS" in bad[0]["error"] and "PI_EFS_REQUIRE_NFS=true" in bad[0]["error"]


def test_missing_root_off_does_nothing(layout, tmp_path):
    home, _ = layout
    root = tmp_path / "no-such-efs"
    before = tree_digest(home)
    rc, r = run_once(["true"], storage_env(home, root, PI_EFS_MODE="off"))
    assert rc == 0
    assert not [x for x in r.records() if "check" in x]
    assert tree_digest(home) == before
    assert not root.exists()


def run_until_scanned(home, root, binds, **env):
    """Runs the agent with a long-lived child until the first budget scan is
    logged, then stops it. Returns the usage record, the per-folder records
    and the run."""
    r = Run(["--", "sleep", "60"], storage_env(home, root, **env), binds=binds)
    r.wait_for(lambda: [x for x in r.records() if "total_bytes" in x], "the first budget scan")
    assert r.stop() == 143
    records = [x for x in r.records() if "total_bytes" in x]
    folders = {x["folder"]: x for x in r.records() if x.get("msg") == "storage folder usage"}
    return records[0], folders, r


def test_per_folder_mounts_without_a_root_are_checked_and_measured(layout, tmp_path):
    home, _ = layout
    root = tmp_path / "no-root"
    keys = home / "keys"
    keys.mkdir()
    (keys / "a.key").write_bytes(b"k" * 1234)
    themes = home / FOLDERS["themes"]
    usage, folders, r = run_until_scanned(home, root, binds=[keys, themes])
    ready = r.find("storage ready")
    assert ready and ready[0]["mode"] == "per-folder"
    assert sorted(folders) == ["keys", "themes"]
    assert folders["keys"]["bytes"] == du_one(keys)
    assert folders["themes"]["bytes"] == du_one(themes)
    assert usage["total_bytes"] == du_total([themes, keys])
    warned = [x for x in r.records() if x.get("level") == "warn" and x.get("check") == "folder images"]
    assert warned and "lost with the container" in warned[0]["msg"]
    assert keys.is_dir() and not keys.is_symlink()
    assert (keys / "a.key").read_bytes() == b"k" * 1234


def fill(root):
    for name in FOLDERS:
        (root / name).mkdir(exist_ok=True)
    (root / "images/big.png").write_bytes(b"i" * 600_000)
    (root / "files/doc.pdf").write_bytes(b"f" * 250_000)
    (root / "keys/k").write_bytes(b"k" * 1000)


def test_over_budget_state_with_per_folder_figures(layout):
    home, root = layout
    fill(root)
    usage, folders, r = run_until_scanned(home, root, binds=[root], PI_EFS_BUDGET_BYTES="500000")
    assert usage["msg"] == "storage over budget" and usage["level"] == "warn"
    assert usage["state"] == "over" and usage["budget_bytes"] == 500000
    for name in FOLDERS:
        assert folders[name]["bytes"] == du_one(root / name), name
    assert folders["images"]["files"] == 1
    assert usage["total_bytes"] == du_total([root / n for n in FOLDERS])


def test_over_budget_reason_follows_each_rescan(layout):
    """While the state stays `over`, the reason /health gives must carry the
    figures of the latest scan, not those of the scan that changed the state."""
    home, root = layout
    fill(root)
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    r = Run(["--", "sleep", "120"],
            storage_env(home, root, PI_EFS_BUDGET_BYTES="500000", PI_EFS_SCAN_INTERVAL_SECONDS="10",
                        PI_AGENT_HEALTH_PORT=str(port), PI_AGENT_PROBE_URL="off"),
            binds=[root])
    try:
        over = lambda: [x for x in r.records() if x.get("msg") == "storage over budget"]
        first = r.wait_for(over, "the first scan")[0]
        (root / "files/more.bin").write_bytes(b"m" * 300_000)
        second = r.wait_for(lambda: over()[1:], "a rescan", timeout=60)[0]
        assert second["total_bytes"] == first["total_bytes"] + 300_000
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/health", timeout=10) as resp:
            body = json.loads(resp.read())
        efs = body["checks"]["efs"]
        assert efs["status"] == "over"
        assert str(second["total_bytes"]) in efs["reason"], efs
    finally:
        assert r.stop() == 143


def test_warn_state(layout):
    home, root = layout
    fill(root)
    total = du_total([root / n for n in FOLDERS])
    # the seed adds the image's themes and locale: leave room for them below 100 %
    budget = int(total / 0.85)
    usage, _, _ = run_until_scanned(home, root, binds=[root], PI_EFS_BUDGET_BYTES=str(budget))
    assert usage["state"] == "warn", usage
    assert usage["msg"] == "storage near budget"
    assert usage["total_bytes"] <= budget


def test_symlink_to_root_is_not_followed_and_hard_links_count_once(layout):
    home, root = layout
    fill(root)
    (root / "files/escape").symlink_to("/")
    (root / "images/loop").symlink_to("loop")
    os.link(root / "images/big.png", root / "images/big-again.png")
    os.link(root / "images/big.png", root / "files/big-elsewhere.png")
    usage, folders, r = run_until_scanned(home, root, binds=[root])
    paths = [root / n for n in FOLDERS]
    assert usage["total_bytes"] == du_total(paths)
    assert usage["total_bytes"] < 600_000 * 2  # the big file once, and nothing from /
    assert folders["images"]["bytes"] == du_one(root / "images")
    assert usage["errors"] == 0


def test_figures_agree_with_du_on_a_larger_tree(layout):
    home, root = layout
    fill(root)
    for d in range(20):
        sub = root / "files" / f"dir{d}" / "nested"
        sub.mkdir(parents=True)
        for f in range(50):
            (sub / f"f{f}").write_bytes(b"x" * (d * 50 + f))
    usage, folders, _ = run_until_scanned(home, root, binds=[root])
    assert usage["total_bytes"] == du_total([root / n for n in FOLDERS])
    assert folders["files"]["files"] == 1000 + 1


def test_housekeeping_removes_old_tomcat_logs(layout):
    home, root = layout
    logs = home / "tomcat/logs"
    old = logs / "catalina.2020-01-01.log"
    old.write_text("old\n")
    os.utime(old, (1577836800, 1577836800))
    recent = logs / "catalina.out"
    recent.write_text("now\n")
    r = Run(["--", "sleep", "60"], storage_env(home, root, PI_EFS_MODE="off"))
    done = r.wait_for_log("log housekeeping done")
    assert r.stop() == 143
    assert done[0]["removed"] == 1
    assert not old.exists()
    assert recent.read_text() == "now\n"


def test_housekeeping_removes_only_what_the_run_as_user_could(tmp_path):
    """Tomcat's log folder is the run-as user's to change: pointed at a folder
    of root's, the daily clean-up must not remove root's old files there."""
    base = Path(tempfile.mkdtemp(prefix="pi-agent-hk-", dir="/tmp"))
    try:
        base.chmod(0o755)
        victim = base / "etc"
        victim.mkdir(mode=0o755)
        precious = victim / "precious.conf"
        precious.write_text("root's\n")
        os.utime(precious, (1577836800, 1577836800))
        tomcat = base / "tomcat"
        tomcat.mkdir(mode=0o755)
        os.chown(tomcat, 65534, 65534)
        (tomcat / "logs").symlink_to(victim)
        env = storage_env(tmp_path / "home", tmp_path / "efs", PI_EFS_MODE="off",
                          PI_AGENT_RUN_AS="65534:65534",
                          PI_AGENT_TOMCAT_LOG_DIR=str(tomcat / "logs"))
        r = Run(["--", "sleep", "60"], env)
        done = r.wait_for_log("log housekeeping")
        assert r.stop() == 143
        assert precious.read_text() == "root's\n"
        assert done[0].get("removed", 0) == 0
    finally:
        shutil.rmtree(base, ignore_errors=True)


def test_pi_agent_du_agrees_with_du_and_names_unreadable_paths(layout, agent_bin):
    _, root = layout
    fill(root)
    os.link(root / "images/big.png", root / "files/same.png")
    (root / "svg/up").symlink_to("..")
    paths = [root / n for n in FOLDERS]
    p = subprocess.run([str(agent_bin), "du"] + [str(x) for x in paths], capture_output=True,
                       text=True, timeout=60)
    assert p.returncode == 0, p.stderr
    rows = dict(reversed(line.split("\t")) for line in p.stdout.splitlines())
    assert int(rows["total"]) == du_total(paths)
    assert int(rows[str(root / "images")]) == du_one(root / "images")
    missing = root / "absent"
    p = subprocess.run([str(agent_bin), "du", str(missing)], capture_output=True, text=True,
                       timeout=60)
    assert p.returncode == 1
    assert str(missing) in p.stderr and "No such file" in p.stderr
    p = subprocess.run([str(agent_bin), "du"], capture_output=True, text=True, timeout=60)
    assert p.returncode == 2 and "usage: pi-agent du" in p.stderr


@pytest.mark.parametrize("mode,code", [("auto", 0), ("required", 73)])
def test_seed_lock_held_elsewhere_times_out_cleanly(layout, mode, code):
    """Another task holds the seed lock (or crashed holding it, until its NFS
    lease expires): the start phase gives up after PI_EFS_START_TIMEOUT_SECONDS."""
    import fcntl
    home, root = layout
    (root / ".pi-agent").mkdir()
    with open(root / ".pi-agent/seed.lock", "w") as lock:
        fcntl.lockf(lock, fcntl.LOCK_EX)
        rc, r = run_once(["true"], storage_env(home, root, PI_EFS_MODE=mode,
                                               PI_EFS_START_TIMEOUT_SECONDS="1"), binds=[root])
    assert rc == code, r.lines
    why = r.find("storage is not usable")
    assert why and "did not finish within PI_EFS_START_TIMEOUT_SECONDS=1" in why[0]["error"]
    assert str(root) in why[0]["error"]
    # the image folder is untouched: nothing was linked without its seed
    assert (home / FOLDERS["themes"]).is_dir() and not (home / FOLDERS["themes"]).is_symlink()
    assert not (root / ".pi-agent/seed.done").exists()


def test_per_folder_mount_that_is_not_nfs_fails_with_require_nfs(layout, tmp_path):
    home, _ = layout
    keys = home / "keys"
    keys.mkdir()
    rc, r = run_once(["true"], storage_env(home, tmp_path / "no-root", PI_EFS_REQUIRE_NFS="true"),
                     binds=[keys])
    assert rc == 73, r.lines
    bad = r.find("storage is not usable")
    assert bad and str(keys) in bad[0]["error"] and "not NFS" in bad[0]["error"]


def test_a_file_where_a_dashboard_folder_belongs_is_left_and_reported(layout):
    home, root = layout
    (home / "keys").write_text("not a folder\n")
    rc, r = run_once(["true"], storage_env(home, root), binds=[root])
    assert rc == 0, r.lines
    errors = storage_errors(r)
    assert errors and str(home / "keys") in errors[0]["msg"]
    assert "not a folder" in errors[0]["msg"]
    assert (home / "keys").read_text() == "not a folder\n"
    assert r.find("storage failed")


def test_rescan_picks_up_new_files(layout):
    """Rescans run every PI_EFS_SCAN_INTERVAL_SECONDS (10 s is the smallest, jittered)."""
    home, root = layout
    fill(root)
    r = Run(["--", "sleep", "120"], storage_env(home, root, PI_EFS_SCAN_INTERVAL_SECONDS="10"),
            binds=[root])
    usage = lambda: [x for x in r.records() if "total_bytes" in x]  # noqa: E731
    first = r.wait_for(usage, "the first budget scan")[0]
    (root / "files/new.bin").write_bytes(b"n" * 70000)
    second = r.wait_for(lambda: usage()[1:], "a rescan", timeout=30)[0]
    assert r.stop() == 143
    assert second["total_bytes"] == du_total([root / n for n in FOLDERS])
    assert second["total_bytes"] >= first["total_bytes"] + 70000
    assert second["files"] == first["files"] + 1


def test_image_folders_on_overlayfs_are_linked(tmp_path):
    """In a container the image's folders sit in a lower overlayfs layer, where
    a directory cannot be renamed (EXDEV): once seeded, the container's view
    of the folder gives way to the symlink; the image layer keeps its files."""
    lower = tmp_path / "lower"
    make_image(lower / "Dashboard")
    upper, work, merged = tmp_path / "upper", tmp_path / "work", tmp_path / "merged"
    for d in (upper, work, merged):
        d.mkdir()
    root = tmp_path / "efs"
    root.mkdir()
    (root / "themes").mkdir()
    (root / "themes/default").mkdir()
    (root / "themes/default/theme.css").write_text("/* the customer's edit */\n")
    home = merged / "Dashboard"
    image_before = tree_digest(lower)
    r = Run(["--", "sleep", "60"], storage_env(home, root), binds=[root],
            overlays=[(lower, upper, work, merged)])
    ready = r.wait_for_log("storage ready")
    # look from inside the agent's mount namespace, where the overlay is mounted
    pid = r.agent_pid()
    themes = Path(f"/proc/{pid}/root") / str(home / FOLDERS["themes"]).lstrip("/")
    assert os.readlink(themes) == str(root / "themes")
    assert not themes.with_name("themes.pi-agent-image").exists()
    assert r.stop() == 143
    assert ready[0]["mode"] == "managed"
    assert not storage_errors(r), r.lines
    assert tree_digest(lower) == image_before  # the image layer is untouched
    assert (root / "themes/default/theme.css").read_text() == "/* the customer's edit */\n"
    assert (root / "themes/dark/theme.css").read_text() == "body { color: #eee }\n"
    assert (root / "locale/en.json").exists()
