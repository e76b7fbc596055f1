"""`pi-agent check`: one line per check, nothing changed, and an exit status
that says whether a start would go on (0), go on degraded (1) or stop (2)."""
import os
import shutil
import subprocess
import tempfile
from pathlib import Path

from alm_stub import claims, pki  # noqa: F401 (pki is a fixture)
from efs_helpers import FOLDERS, make_image, storage_env, tree_digest, wrapped

# A licence that is not set is a warning (a start goes on, unlicensed), so the
# storage cases below look at their own lines and at failures only.


def check(env, binds=(), ro_binds=()):
    p = subprocess.run(wrapped(["check"], binds, ro_binds, pid1=False), env=env,
                       capture_output=True, text=True, timeout=60)
    lines = p.stdout.splitlines()
    # The report is on stdout; the agent's own log records only on stderr.
    assert not [l for l in lines if l.startswith("{")], p.stdout
    return p.returncode, lines, p.stderr


def lines_for(lines, name):
    return [l for l in lines if l.split()[1:2] == [name] or l.split()[1:3] == name.split()]


def level(line):
    return line.split()[0]


def fresh(tmp_path):
    home = make_image(tmp_path / "image" / "Dashboard")
    root = tmp_path / "efs"
    root.mkdir()
    return home, root


def test_fresh_root_passes_and_changes_nothing(tmp_path):
    home, root = fresh(tmp_path)
    before_home, before_root = tree_digest(home), tree_digest(root)
    rc, lines, err = check(storage_env(home, root), binds=[root])
    assert rc in (0, 1), lines  # 1 only for the warnings (local file system, no licence)
    assert not [l for l in lines if level(l) == "fail"], lines
    assert lines[-1].startswith("check: ") and "0 failure(s)" in lines[-1]
    assert lines_for(lines, "config")[0].startswith("ok")
    assert lines_for(lines, "licence"), lines
    root_line = lines_for(lines, "root")[0]
    assert "mount point" in root_line and "not NFS" in root_line and level(root_line) == "warn"
    for name in FOLDERS:
        assert "will be created" in lines_for(lines, f"folder {name}")[0]
        assert "will be linked" in lines_for(lines, f"link {name}")[0]
    assert "will be seeded" in lines_for(lines, "seed")[0]
    budget = lines_for(lines, "budget")[0]
    assert level(budget) == "ok" and "of 1073741824 bytes" in budget
    assert tree_digest(home) == before_home
    assert tree_digest(root) == before_root  # the write probe cleaned up after itself


def test_only_warnings_exit_1_and_everything_ok_exits_0(tmp_path, pki):
    home, root = fresh(tmp_path)
    rc, lines, _ = check(storage_env(home, root), binds=[root])
    warnings = [l for l in lines if level(l) == "warn"]
    assert warnings and rc == 1
    run_as = lines_for(lines, "run-as")[0]
    assert level(run_as) == "warn" and "PI_AGENT_RUN_AS is not set" in run_as
    # Storage off, a run-as user and no licence: the missing licence is the only warning.
    rc, lines, _ = check(storage_env(home, root, PI_EFS_MODE="off", PI_AGENT_RUN_AS="65534:65534"))
    non_ok = [l for l in lines[:-1] if level(l) != "ok"]
    assert non_ok == lines_for(lines, "licence") and rc == 1, lines
    # A valid offline licence removes it: every line ok, exit 0.
    token = pki.vendor.sign(claims())
    rc, lines, _ = check(storage_env(home, root, PI_EFS_MODE="off", PI_LICENCE=token,
                                     PI_LICENCE_PUBLIC_KEY=pki.public_keys,
                                     PI_AGENT_RUN_AS="65534:65534"))
    assert [l for l in lines[:-1] if level(l) != "ok"] == [] and rc == 0, lines


def test_configuration_error_is_a_failure_naming_the_variable(tmp_path):
    home, root = fresh(tmp_path)
    rc, lines, _ = check(storage_env(home, root, PI_EFS_BUDGET_BYTES="lots"))
    assert rc == 2
    assert lines[0].startswith("fail") and "PI_EFS_BUDGET_BYTES" in lines[0]
    rc, lines, _ = check(storage_env(home, root, PI_EFS_LINKS="themes"))
    assert rc == 2 and "PI_EFS_LINKS" in lines[0]
    rc, lines, _ = check(storage_env(home, root, PI_AGENT_DRAIN_SECONDS="10",
                                     PI_AGENT_DRAIN_QUIET_SECONDS="30"))
    assert rc == 2 and "PI_AGENT_DRAIN_QUIET_SECONDS" in lines[0]


def test_missing_root_required_fails_and_auto_warns(tmp_path):
    home, _ = fresh(tmp_path)
    root = tmp_path / "absent"
    rc, lines, _ = check(storage_env(home, root, PI_EFS_MODE="required"))
    assert rc == 2
    root_line = lines_for(lines, "root")[0]
    assert level(root_line) == "fail" and f"PI_EFS_ROOT={root} does not exist" in root_line
    assert "exit status 73" in lines_for(lines, "storage")[0]
    rc, lines, _ = check(storage_env(home, root))
    root_line = lines_for(lines, "root")[0]
    assert level(root_line) == "warn" and "lost with the container" in root_line
    assert not [l for l in lines if level(l) == "fail"]


def test_read_only_root_fails(tmp_path):
    home, root = fresh(tmp_path)
    rc, lines, _ = check(storage_env(home, root), ro_binds=[root])
    assert rc == 2
    fails = [l for l in lines if level(l) == "fail"]
    assert any("Read-only file system" in l and str(root) in l for l in fails), lines


def test_unwritable_folder_for_the_run_as_user_fails(tmp_path):
    # pytest's own temporary folders are 0700: the run-as user needs a path it may traverse
    shared = Path(tempfile.mkdtemp(prefix="pi-check-", dir="/tmp"))
    try:
        os.chmod(shared, 0o755)
        unwritable_folder_case(shared)
    finally:
        shutil.rmtree(shared)


def unwritable_folder_case(tmp_path):
    home, root = fresh(tmp_path)
    for name in FOLDERS:
        (root / name).mkdir()
        os.chown(root / name, 65534, 65534)
    os.chown(root / "keys", 0, 0)  # root's 0755: nobody cannot write
    rc, lines, _ = check(storage_env(home, root, PI_AGENT_RUN_AS="65534:65534"), binds=[root])
    assert rc == 2
    keys = [l for l in lines if level(l) == "fail" and "keys" in l]
    assert keys and "not writable" in keys[0], lines
    assert not [l for l in lines if level(l) == "fail" and "themes" in l]


def test_over_budget_fails_only_with_the_fail_policy(tmp_path):
    home, root = fresh(tmp_path)
    for name in FOLDERS:
        (root / name).mkdir()
    (root / "images/big.png").write_bytes(b"x" * 20000)
    rc, lines, _ = check(storage_env(home, root, PI_EFS_BUDGET_BYTES="10000"), binds=[root])
    budget = lines_for(lines, "budget")[-1]
    assert level(budget) == "warn" and budget.split()[2] == "over:"
    assert rc == 1
    usage = [l for l in lines if l.split()[1:3] == ["usage", "images"]]
    assert usage and "bytes in 1 file(s)" in usage[0], lines
    rc, lines, _ = check(storage_env(home, root, PI_EFS_BUDGET_BYTES="10000",
                                     PI_EFS_OVER_BUDGET="fail"), binds=[root])
    budget = lines_for(lines, "budget")[-1]
    assert level(budget) == "fail" and "PI_EFS_OVER_BUDGET=fail" in budget
    assert rc == 2


def test_a_file_where_a_link_belongs_fails(tmp_path):
    home, root = fresh(tmp_path)
    (home / "keys").write_text("not a folder\n")
    rc, lines, _ = check(storage_env(home, root), binds=[root])
    assert rc == 2
    link = lines_for(lines, "link keys")[0]
    assert level(link) == "fail" and str(home / "keys") in link
    assert (home / "keys").read_text() == "not a folder\n"


def test_secret_licence_never_printed(tmp_path):
    home, root = fresh(tmp_path)
    for secret, extra in (
            ("<licence><key>SECRET-1234567890</key></licence>", {}),
            ("customer-key-SECRET-1234567890",
             {"PI_ALM_URL": "http://127.0.0.1:9/alm", "PI_ALM_ALLOW_HTTP": "true",
              "PI_ALM_TIMEOUT_SECONDS": "1"})):
        p = subprocess.run(wrapped(["check"], pid1=False),
                           env=storage_env(home, root, PI_EFS_MODE="off", PI_LICENCE=secret, **extra),
                           capture_output=True, text=True, timeout=60)
        assert "SECRET-1234567890" not in p.stdout + p.stderr
        licence = [l for l in p.stdout.splitlines() if l.split()[1:2] == ["licence"]]
        assert licence and level(licence[0]) == "warn", p.stdout
        assert p.returncode == 1


def test_root_writable_by_the_run_as_user_warns():
    """An access point that gives the EFS root to Tomcat's user: check says
    so, and what closes the risk; a root-owned root gives no such line."""
    shared = Path(tempfile.mkdtemp(prefix="pi-check-", dir="/tmp"))
    try:
        os.chmod(shared, 0o755)
        home, root = fresh(shared)
        env = storage_env(home, root, PI_AGENT_RUN_AS="65534:65534")
        rc, lines, _ = check(env, binds=[root])
        assert not lines_for(lines, "root owner"), lines  # root's 0755
        assert level(lines_for(lines, "run-as")[0]) == "ok"
        os.chown(root, 65534, 65534)
        rc, lines, _ = check(env, binds=[root])
        owner = lines_for(lines, "root owner")
        assert owner and level(owner[0]) == "warn", lines
        assert f"PI_EFS_ROOT={root} is writable by" in owner[0] and "access point" in owner[0]
        assert rc == 1
        assert list(root.iterdir()) == []  # the probe as that user cleaned up
    finally:
        shutil.rmtree(shared)
