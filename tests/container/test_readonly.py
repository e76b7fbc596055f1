"""The derived image built with PI_AGENT_IMAGE_LINKS=true runs with a
read-only root file system: tmpfs for /run, /tmp and Tomcat's logs, work and
temp, and one volume at /mnt/efs (the EFS root), as docs/ecs.md shows."""
from dockerlib import LINKED_IMAGE, wait_for

HOME = "/var/panintelligence/Dashboard"
RES = f"{HOME}/tomcat/webapps/panMISDashboardResources"
READ_ONLY = ["--read-only", "--tmpfs", "/run", "--tmpfs", "/tmp",
             "--tmpfs", f"{HOME}/tomcat/logs", "--tmpfs", f"{HOME}/tomcat/work",
             "--tmpfs", f"{HOME}/tomcat/temp"]


def test_read_only_root_with_one_efs_volume(dashboards, volume):
    efs = volume("efs-ro")
    d = dashboards("ro", image=LINKED_IMAGE, volumes=[f"{efs}:/mnt/efs"], extra_args=READ_ONLY)
    d.start()
    doc = d.wait_ready()
    assert doc["status"] == "ok"
    assert doc["checks"]["efs"]["mode"] == "managed"
    assert doc["checks"]["efs"]["status"] != "failed", doc["checks"]["efs"]
    # The root really is read-only.
    assert d.exec("touch", f"{HOME}/x", check=False).returncode != 0
    # The folders are on the volume, seeded from the image's seed location.
    for name in ("themes", "images", "files", "svg", "locale", "keys", "custom_jdbc"):
        assert d.exec("test", "-d", f"/mnt/efs/{name}", check=False).returncode == 0, name
    assert d.exec("cat", "/mnt/efs/themes/dark/theme.css").stdout.startswith(
        "/* stand-in dark theme")
    assert d.exec("readlink", f"{RES}/themes").stdout.strip() == "/mnt/efs/themes"
    assert d.exec("sh", "-c", "cat /mnt/efs/.pi-agent/seed.done").stdout.startswith("seed-version=")
    # Storage records: links found right, nothing to write on the root.
    records = d.records()
    links = [r for r in records if str(r.get("check", "")).startswith("link ")]
    assert links and all(r["level"] == "info" for r in links), links
    assert not [r for r in records if r.get("level") == "error" and "check" in r]
    # pi-agent check agrees.
    chk = d.exec("/usr/local/bin/pi-agent", "check", check=False).stdout
    line = [l for l in chk.splitlines() if l.split()[1:3] == ["read-only", "root"]]
    assert line and line[0].startswith("ok ") and "works" in line[0], chk
    # The agent's own log lines went to stderr, none to stdout.
    out, _ = d.streams()
    assert '"msg":"pi-agent starting"' not in out
    assert d.stop() == 143


def test_image_without_links_on_a_read_only_root_says_what_to_do(dashboards, volume):
    from dockerlib import IMAGE
    efs = volume("efs-ro-plain")
    d = dashboards("ro-plain", image=IMAGE, volumes=[f"{efs}:/mnt/efs"], extra_args=READ_ONLY)
    d.start()
    def storage_failed():
        code, doc = d.health()
        return doc and doc["checks"]["efs"]["status"] == "failed" and doc
    doc = wait_for(storage_failed, 120, what="storage failed")
    assert "Read-only file system" in doc["checks"]["efs"]["reason"], doc["checks"]["efs"]
    hint = [r for r in d.records() if r.get("level") == "error" and "Read-only" in r["msg"]]
    assert hint and "build the image with `pi-agent image-links`" in hint[0]["msg"], hint
    chk = d.exec("/usr/local/bin/pi-agent", "check", check=False).stdout
    line = [l for l in chk.splitlines() if l.split()[1:3] == ["read-only", "root"]]
    assert line and line[0].startswith("fail ") and "pi-agent image-links" in line[0], chk
