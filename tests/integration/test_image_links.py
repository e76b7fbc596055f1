"""`pi-agent image-links` (the image build step) and what it enables: a
start that finds the links right, seeds from the seed location and never
writes to a read-only image; `pi-agent check` on a read-only root."""
import os
import subprocess
from pathlib import Path

from conftest import AGENT
from efs_helpers import FOLDERS, make_image, run_once, storage_env, tree_digest, wrapped


def links_env(home, root, seed, **kw):
    return storage_env(home, root, PI_EFS_SEED_DIR=str(seed), **kw)


def image_links(env, timeout=60):
    return subprocess.run([str(AGENT), "image-links"], env=env, capture_output=True, text=True,
                          timeout=timeout)


def layout(tmp_path):
    home = make_image(tmp_path / "image" / "Dashboard")
    seed = tmp_path / "image" / "seed"
    root = tmp_path / "efs"
    root.mkdir()
    return home, root, seed


def test_image_links_moves_the_content_and_leaves_links(tmp_path):
    home, root, seed = layout(tmp_path)
    themes_before = tree_digest(home / FOLDERS["themes"])
    p = image_links(links_env(home, root, seed))
    assert p.returncode == 0, p.stderr
    lines = p.stdout.splitlines()
    assert len(lines) == len(FOLDERS)
    assert not [l for l in lines if l.startswith("{")]  # results only; no log line on stdout
    for name, rel in FOLDERS.items():
        path = home / rel
        assert path.is_symlink() and os.readlink(path) == str(root / name), name
    # The image's content is in the seed location, as it was (times too).
    assert tree_digest(seed / "themes") == themes_before
    assert (seed / "themes/default/theme.css").stat().st_mtime == 1700000000
    assert not (seed / "images").exists()  # the image had nothing there
    assert any(l.startswith("themes: ") and str(seed / "themes") in l for l in lines)

    # Again: nothing to do, nothing changed.
    before = tree_digest(tmp_path / "image")
    p = image_links(links_env(home, root, seed))
    assert p.returncode == 0, p.stderr
    assert all("already a link" in l for l in p.stdout.splitlines())
    assert tree_digest(tmp_path / "image") == before


def test_image_links_copies_a_lower_layer_folder(tmp_path):
    """In a Docker build the folder sits in a lower overlayfs layer, which
    cannot be renamed (EXDEV): it is copied, then removed from the view."""
    lower = tmp_path / "lower"
    make_image(lower / "Dashboard")
    upper, work, merged = tmp_path / "upper", tmp_path / "work", tmp_path / "merged"
    for d in (upper, work, merged):
        d.mkdir()
    root = tmp_path / "efs"
    home, seed = merged / "Dashboard", merged / "seed"
    p = subprocess.run(wrapped(["image-links"], pid1=False, overlays=[(lower, upper, work, merged)]),
                       env=links_env(home, root, seed), capture_output=True, text=True, timeout=60)
    assert p.returncode == 0, p.stderr
    # What the build step leaves is the upper layer: links and the seed copy.
    up_home = upper / "Dashboard"
    assert os.readlink(up_home / FOLDERS["themes"]) == str(root / "themes")
    assert (upper / "seed/themes/dark/theme.css").read_text() == "body { color: #eee }\n"
    assert tree_digest(upper / "seed/locale") == tree_digest(lower / "Dashboard" / FOLDERS["locale"])


def test_image_links_never_overwrites(tmp_path):
    home, root, seed = layout(tmp_path)
    (seed / "themes").mkdir(parents=True)
    (seed / "themes/mine.css").write_text("kept\n")
    (home / "keys").write_text("a file where the folder belongs\n")
    p = image_links(links_env(home, root, seed))
    assert p.returncode == 1
    assert f"themes: {seed / 'themes'} exists already" in p.stderr
    assert f"keys: {home / 'keys'} exists and is not a folder: not replaced" in p.stderr
    assert (seed / "themes/mine.css").read_text() == "kept\n"
    assert (home / FOLDERS["themes"]).is_dir() and not (home / FOLDERS["themes"]).is_symlink()
    assert (home / "keys").read_text() == "a file where the folder belongs\n"
    # The other folders were linked all the same.
    assert os.readlink(home / FOLDERS["locale"]) == str(root / "locale")


def test_image_links_configuration_errors(tmp_path):
    home, root, seed = layout(tmp_path)
    p = image_links(links_env(home, root, root / "seed"))
    assert p.returncode == 78 and "PI_EFS_SEED_DIR" in p.stderr and "overlaps" in p.stderr
    p = image_links(links_env(home, root, "relative/seed"))
    assert p.returncode == 78 and "PI_EFS_SEED_DIR: must be an absolute path" in p.stderr
    p = subprocess.run([str(AGENT), "image-links", "extra"], env=links_env(home, root, seed),
                       capture_output=True, text=True, timeout=60)
    assert p.returncode == 78 and "takes no arguments" in p.stderr
    p = image_links(links_env(home, root, seed, PI_EFS_MODE="off"))
    assert p.returncode == 78 and "PI_EFS_MODE=off" in p.stderr
    assert not (home / FOLDERS["themes"]).is_symlink()


def test_linked_read_only_image_starts_managed_and_seeds_from_the_seed(tmp_path):
    home, root, seed = layout(tmp_path)
    assert image_links(links_env(home, root, seed)).returncode == 0
    image_before = tree_digest(tmp_path / "image")
    # The image is read-only, the root a mount point: as --read-only with
    # one EFS volume.
    rc, r = run_once(["true"], links_env(home, root, seed), binds=[root],
                     ro_binds=[tmp_path / "image"])
    assert rc == 0, r.lines
    assert not [x for x in r.records() if x.get("level") == "error" and "check" in x], r.lines
    ready = r.find("storage ready")
    assert ready and ready[0]["mode"] == "managed"
    for name in FOLDERS:
        assert (root / name).is_dir(), name
    assert (root / "themes/default/theme.css").read_text() == "body { color: #333 }\n"
    assert (root / "locale/fr.json").read_text() == '{"hello": "Bonjour"}\n'
    assert (root / ".pi-agent/seed.done").read_text().startswith("seed-version=")
    link = [x for x in r.records() if x.get("check") == "link themes"]
    assert link and link[0]["msg"] == f"{home / FOLDERS['themes']} -> {root / 'themes'}"
    assert tree_digest(tmp_path / "image") == image_before  # nothing written to the image


def test_linked_image_without_a_root_volume_uses_a_local_folder(tmp_path):
    """A plain `docker run` of a linked image: the links must lead somewhere."""
    home, _, seed = layout(tmp_path)
    root = tmp_path / "local" / "efs"
    assert image_links(links_env(home, root, seed)).returncode == 0
    rc, r = run_once(["true"], links_env(home, root, seed))
    assert rc == 0, r.lines
    warn = [x for x in r.records() if x.get("check") == "root" and x.get("level") == "warn"]
    assert warn and "a local folder stands in" in warn[0]["msg"]
    assert (home / FOLDERS["themes"] / "dark/theme.css").read_text() == "body { color: #eee }\n"
    assert (root / "keys").is_dir()


def test_check_says_whether_a_read_only_root_would_work(tmp_path):
    home, root, seed = layout(tmp_path)
    env = links_env(home, root, seed, PI_AGENT_RUN_DIR=str(tmp_path / "run"))

    def readonly_line():
        p = subprocess.run(wrapped(["check"], binds=[root], pid1=False), env=env,
                           capture_output=True, text=True, timeout=60)
        got = [l for l in p.stdout.splitlines() if l.split()[1:3] == ["read-only", "root"]]
        assert len(got) == 1, p.stdout
        return p.returncode, got[0]

    rc_before, before = readonly_line()
    assert before.startswith("ok ") and "would not work" in before
    assert str(home / FOLDERS["themes"]) in before and "pi-agent image-links" in before
    assert image_links(links_env(home, root, seed)).returncode == 0
    rc_after, after = readonly_line()
    assert after.startswith("ok ") and "would work" in after and "would not" not in after
    assert rc_before == rc_after  # information, not a warning, on a writable root


def test_image_without_links_on_a_read_only_root_says_what_to_do(tmp_path):
    home, root, seed = layout(tmp_path)
    rc, r = run_once(["true"], links_env(home, root, seed), binds=[root],
                     ro_binds=[tmp_path / "image"])
    assert rc == 0, r.lines  # auto mode: the start goes on, storage failed
    errors = [x for x in r.records() if x.get("level") == "error" and
              str(x.get("check", "")).startswith("link ")]
    assert errors, r.lines
    assert "Read-only file system" in errors[0]["msg"]
    assert "build the image with `pi-agent image-links`" in errors[0]["msg"]
    assert (home / FOLDERS["themes"]).is_dir() and not (home / FOLDERS["themes"]).is_symlink()
