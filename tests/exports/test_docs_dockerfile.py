"""Every ```dockerfile block of the documentation (and the repository's own
Dockerfile) read by Docker's own parser: `docker build` of a stub context
whose --target names no stage. The engine parses the whole Dockerfile into
stages first (a syntax error fails there, e.g. "FROM requires either one or
three arguments"), then looks for the target and stops with "failed to reach
build target": nothing is pulled or run, so the snippet's own FROM lines can
stay as they are (no substitution of a local or scratch base image, which
could hide an error in the FROM line itself). The classic builder is used
(DOCKER_BUILDKIT=0): it parses in the engine and stops at that point."""
import os
import subprocess

import pytest

from conftest import ROOT
from docblocks import blocks

PARSE_ONLY = "pi-agent-docs-parse-only"
DOCKERFILES = blocks("dockerfile")


def docker_parse(text, tmp_path):
    ctx = tmp_path / "ctx"
    ctx.mkdir()
    (ctx / "Dockerfile").write_text(text)
    p = subprocess.run(["docker", "build", "--network", "host", "--target", PARSE_ONLY,
                        "-f", str(ctx / "Dockerfile"), str(ctx)],
                       env=dict(os.environ, DOCKER_BUILDKIT="0"), capture_output=True,
                       text=True, timeout=120)
    out = p.stdout + p.stderr
    assert p.returncode != 0, "a build with a target that no stage has cannot succeed"
    if f"failed to reach build target {PARSE_ONLY}" in out:
        return None
    return out.strip().splitlines()[-1] if out.strip() else f"exit {p.returncode}"


def test_there_are_dockerfiles_to_check():
    assert DOCKERFILES


@pytest.mark.parametrize("block", DOCKERFILES, ids=str)
def test_dockerfile_block_parses(block, tmp_path):
    error = docker_parse(block.text, tmp_path)
    assert error is None, f"{block}: {error}"


def test_repository_dockerfile_parses(tmp_path):
    error = docker_parse((ROOT / "Dockerfile").read_text(), tmp_path)
    assert error is None, f"Dockerfile: {error}"


@pytest.mark.parametrize("text,words", [
    ("FROM example/pi-agent:0.1.0 AS agent   # built with --target agent\nFROM scratch\n",
     "FROM requires either one or three arguments"),
    ("FROM scratch\nCOPY\n", "COPY requires at least two arguments"),
    ("FROM scratch\nFETCH x\n", "unknown instruction"),
])
def test_parser_refuses_broken_dockerfiles(text, words, tmp_path):
    error = docker_parse(text, tmp_path)
    assert error is not None and words in error, error
