"""The derived image: built offline from local base images, configured as the
issue says, and the `agent` target holding nothing but the static binary."""
import hashlib
import io
import json
import tarfile

from dockerlib import (AGENT_IMAGE, DASHBOARD_BASE_IMAGE, DEBIAN_IMAGE, IMAGE, ROOT, docker)

CATALINA = "/var/panintelligence/Dashboard/tomcat/bin/catalina.sh"


def inspect_image(name):
    return json.loads(docker("image", "inspect", name).stdout)[0]


def test_every_image_was_built_here_and_nothing_was_pulled(images):
    # An image that came from a registry carries a repository digest; ours
    # were made by debootstrap + docker import and local builds only.
    for name in (DEBIAN_IMAGE, DASHBOARD_BASE_IMAGE, IMAGE, AGENT_IMAGE):
        assert inspect_image(name)["RepoDigests"] == [], name


def test_derived_image_is_the_dashboard_image_plus_layers(images):
    base = inspect_image(DASHBOARD_BASE_IMAGE)["RootFS"]["Layers"]
    derived = inspect_image(IMAGE)["RootFS"]["Layers"]
    assert derived[:len(base)] == base
    assert len(derived) > len(base)


def test_image_configuration(images):
    cfg = inspect_image(IMAGE)["Config"]
    assert cfg["Entrypoint"] == ["/usr/local/bin/pi-agent"]
    assert cfg["Cmd"] == [CATALINA, "run"]
    assert cfg["Healthcheck"]["Test"] == ["CMD", "/usr/local/bin/pi-agent", "health", "--live"]
    assert cfg["StopSignal"] == "SIGTERM"
    labels = cfg["Labels"]
    version = (ROOT / "VERSION").read_text().strip()
    assert labels["org.opencontainers.image.version"] == version
    assert labels["org.opencontainers.image.base.name"] == DASHBOARD_BASE_IMAGE
    assert labels["org.opencontainers.image.title"]


def test_agent_in_the_image_runs_and_reports_its_version(images):
    version = (ROOT / "VERSION").read_text().strip()
    out = docker("run", "--rm", "--network", "host", IMAGE, "--version").stdout
    assert out.strip() == f"pi-agent {version}"


def test_agent_target_holds_only_the_static_binary(images, tmp_path):
    saved = tmp_path / "agent.tar"
    docker("save", "-o", str(saved), AGENT_IMAGE)
    with tarfile.open(saved) as outer:
        manifest = json.load(outer.extractfile("manifest.json"))
        members = []
        for layer in manifest[0]["Layers"]:
            with tarfile.open(fileobj=io.BytesIO(outer.extractfile(layer).read())) as t:
                members += [m.name for m in t.getmembers()]
    assert members == ["pi-agent"]
    # FROM scratch has no libc or loader: it runs only because it is static.
    version = (ROOT / "VERSION").read_text().strip()
    out = docker("run", "--rm", "--network", "host", AGENT_IMAGE, "--version").stdout
    assert out.strip() == f"pi-agent {version}"


def test_hooks_from_the_repository_are_in_the_image(images):
    hooks = ROOT / "hooks"
    listing = docker("run", "--rm", "--network", "host", "--entrypoint", "sh", IMAGE, "-c",
                     "cd /etc/pi-agent/hooks && find . -type f -exec sha256sum {} + "
                     "&& find . -type f -perm -u+x").stdout.splitlines()
    in_image = {}
    executable = set()
    for line in listing:
        parts = line.split(None, 1)
        if len(parts) == 2:
            in_image[parts[1].strip()[2:]] = parts[0]
        else:
            executable.add(line.strip()[2:])
    expected = {}
    for p in sorted(hooks.rglob("*")) if hooks.is_dir() else []:
        if p.is_file() and "__pycache__" not in p.parts and p.suffix != ".pyc":
            rel = str(p.relative_to(hooks))
            expected[rel] = hashlib.sha256(p.read_bytes()).hexdigest()
            if p.stat().st_mode & 0o100:
                assert rel in executable, f"{rel} lost its executable bit"
    assert in_image == expected
