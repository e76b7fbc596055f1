"""One Docker volume at /mnt/efs stands in for the EFS root. Two replicas
starting together seed the image defaults once; customer files survive a
recreated container byte for byte."""
import os

from dockerlib import http_get, sha256, wait_for

RES = "/var/panintelligence/Dashboard/tomcat/webapps/panMISDashboardResources"

# What customers put there: files in every persistent folder, and an edited
# default theme (seeding must never overwrite it).
CUSTOMER_FILES = {
    "themes/acme/theme.css": b"body { background: #c0ffee; }\n",
    "themes/default/theme.css": b"/* edited by the customer */\nbody { color: red; }\n",
    "images/logo.png": os.urandom(4096),
    "files/report.pdf": os.urandom(10000),
    "svg/regions.svg": b"<svg xmlns='http://www.w3.org/2000/svg'/>\n",
    "locale/de_DE.properties": b"welcome=Willkommen\n",
    "keys/scheduler.key": os.urandom(64),
    "custom_jdbc/driver.jar": os.urandom(2048),
}


def seeding_outcomes(d):
    logs = d.logs()
    return ("image defaults seeded" in logs, "image defaults already seeded" in logs)


def test_two_replicas_seed_once_and_a_recreated_container_keeps_every_file(dashboards, volume):
    efs = volume("efs-shared")
    a = dashboards("efs-a", volumes=[f"{efs}:/mnt/efs"])
    b = dashboards("efs-b", volumes=[f"{efs}:/mnt/efs"])
    a.start()
    b.start()
    a.wait_ready()
    b.wait_ready()

    # Exactly one replica seeded; the other found the seed done.
    outcomes = sorted([seeding_outcomes(a), seeding_outcomes(b)])
    assert outcomes == [(False, True), (True, False)], outcomes
    # The image defaults are on the volume, once, with no temporaries left.
    listing = a.exec("sh", "-c", "cd /mnt/efs && find . -name '.pi-agent-tmp.*'").stdout
    assert listing.strip() == ""
    assert a.exec("cat", "/mnt/efs/themes/dark/theme.css").stdout.startswith("/* stand-in dark theme")
    # The dashboard's paths lead to the volume.
    assert a.exec("readlink", "-f", f"{RES}/themes").stdout.strip() == "/mnt/efs/themes"
    assert a.exec("readlink", "-f", "/var/panintelligence/Dashboard/keys").stdout.strip() == "/mnt/efs/keys"

    # Customers write through the dashboard's own paths in one replica...
    for rel, data in CUSTOMER_FILES.items():
        folder, name = rel.split("/", 1)
        base = "/var/panintelligence/Dashboard" if folder in ("keys", "custom_jdbc") else RES
        path = f"{base}/{folder}/{name}"
        a.put_file(path, data)
    # ...and the other replica sees them at once: one shared root.
    before = b.efs_digest()
    for rel, data in CUSTOMER_FILES.items():
        assert before.get(f"./{rel}") == sha256(data), rel

    # Both replicas go; a new container starts on the same volume.
    assert a.stop() == 143
    assert b.stop() == 143
    a.remove()
    b.remove()
    c = dashboards("efs-c", volumes=[f"{efs}:/mnt/efs"]).start()
    c.wait_ready()
    assert seeding_outcomes(c) == (False, True)
    assert c.efs_digest() == before
    # Through the dashboard's path too, the edited default is the customer's.
    edited = c.exec("cat", f"{RES}/themes/default/theme.css").stdout
    assert edited == CUSTOMER_FILES["themes/default/theme.css"].decode()
    # The stand-in page lists the customer's theme next to the seeded ones.
    page = http_get(f"http://127.0.0.1:{c.tomcat_port}/pi/")[1].decode()
    assert "acme, dark, default" in page
    # Health reports the storage as managed and measured.
    def scanned():
        _, doc = c.health()
        return doc["checks"]["efs"]["scanned"] and doc
    doc = wait_for(scanned, 60, what="the first EFS scan")
    efs_check = doc["checks"]["efs"]
    assert efs_check["mode"] == "managed"
    assert efs_check["used_bytes"] >= sum(len(v) for v in CUSTOMER_FILES.values())


def test_todays_task_definition_with_one_volume_per_folder_keeps_working(dashboards, volume):
    # The vendor's task definitions mount one EFS volume per dashboard folder
    # and no root. In auto mode the agent leaves those mounts in place,
    # checks and measures them, and links nothing.
    paths = {
        "themes": f"{RES}/themes", "images": f"{RES}/images", "files": f"{RES}/files",
        "svg": f"{RES}/svg", "locale": f"{RES}/locale",
        "keys": "/var/panintelligence/Dashboard/keys",
        "custom_jdbc": "/var/panintelligence/Dashboard/custom_jdbc",
    }
    mounts = [f"{volume('per-folder-' + name.replace('_', '-'))}:{path}"
              for name, path in paths.items()]
    first = dashboards("per-folder-1", volumes=mounts).start()
    doc = first.wait_ready()
    assert doc["checks"]["efs"]["mode"] == "per-folder"
    assert doc["checks"]["efs"]["status"] == "ok", doc["checks"]["efs"]
    key = os.urandom(64)
    first.put_file(f"{paths['keys']}/scheduler.key", key)
    for path in paths.values():
        assert first.exec("test", "-L", path, check=False).returncode != 0, f"{path} became a link"
    assert first.stop() == 143
    first.remove()

    second = dashboards("per-folder-2", volumes=mounts).start()
    second.wait_ready()
    got = second.exec("sha256sum", f"{paths['keys']}/scheduler.key").stdout.split()[0]
    assert got == sha256(key)
