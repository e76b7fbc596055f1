"""Every ```hcl block of the documentation parsed by HCL's own parser
(@cdktf/hcl2json: Terraform's HCL library built to WebAssembly, installed
under build/npm by `make test-exports`), and the documented Terraform task
definition held to the documented JSON one, member for member."""
import json
import os
import re
import subprocess
from pathlib import Path

import pytest

from conftest import ROOT
from docblocks import blocks
from ecs_model import problems_for, shape
from test_docs_json import JSON_BLOCKS, kind, load

MODULE = Path(os.environ.get("HCL2JSON_MODULE",
                             ROOT / "build" / "npm" / "node_modules" / "@cdktf" / "hcl2json"))
HCL_BLOCKS = blocks("hcl")


def hcl2json(text, tmp_path):
    assert MODULE.is_dir(), f"{MODULE} is missing: `make test-exports` installs it"
    src = tmp_path / "main.tf"
    src.write_text(text)
    p = subprocess.run(["node", str(Path(__file__).with_name("hcl2json.js")), str(src)],
                       env=dict(os.environ, HCL2JSON_MODULE=str(MODULE)),
                       capture_output=True, text=True, timeout=120)
    return p.returncode, p.stdout, p.stderr


def parse(text, tmp_path):
    rc, out, err = hcl2json(text, tmp_path)
    assert rc == 0, err
    return json.loads(out)


def test_there_is_terraform_to_check():
    assert HCL_BLOCKS


@pytest.mark.parametrize("block", HCL_BLOCKS, ids=str)
def test_hcl_block_parses(block, tmp_path):
    rc, out, err = hcl2json(block.text, tmp_path)
    assert rc == 0, f"{block}: {err}"
    assert json.loads(out), f"{block}: parsed to nothing"


def test_parser_refuses_broken_hcl(tmp_path):
    rc, _, err = hcl2json('resource "aws_ecs_service" "x" {\n  name = \n}\n', tmp_path)
    assert rc != 0 and "Invalid expression" in err, err
    rc, _, err = hcl2json('resource "aws_ecs_service" "x" {\n  name = "x"\n', tmp_path)
    assert rc != 0, err


def same(tf, js, path="$"):
    """Differences between a Terraform value (references are "${...}"
    strings) and the documented JSON value. A reference stands for any
    string; a template like "${ref}:username::" must match its literal
    parts."""
    if isinstance(tf, str) and "${" in tf:
        if not isinstance(js, str):
            return [f"{path}: Terraform has {tf!r}, JSON has {js!r}"]
        parts = re.split(r"\$\{[^}]*\}", tf)
        pattern = ".+".join(re.escape(p) for p in parts)
        return [] if re.fullmatch(pattern, js) else [f"{path}: {js!r} does not fit {tf!r}"]
    if isinstance(tf, dict) and isinstance(js, dict):
        out = [f"{path}: {k!r} only in the JSON" for k in js if k not in tf]
        out += [f"{path}: {k!r} only in the Terraform" for k in tf if k not in js]
        for k in tf:
            if k in js:
                out += same(tf[k], js[k], f"{path}.{k}")
        return out
    if isinstance(tf, list) and isinstance(js, list):
        if len(tf) != len(js):
            return [f"{path}: {len(tf)} entries in the Terraform, {len(js)} in the JSON"]
        return [d for i, (a, b) in enumerate(zip(tf, js)) for d in same(a, b, f"{path}[{i}]")]
    return [] if tf == js and type(tf) is type(js) else [f"{path}: Terraform {tf!r}, JSON {js!r}"]


def camel(name):
    head, *rest = name.split("_")
    return head + "".join(w.capitalize() for w in rest)


def api_form(block_value):
    """A provider block as the ECS API's JSON: snake_case to camelCase, and
    nested blocks (lists of one object in HCL's JSON form) to objects."""
    if isinstance(block_value, list) and len(block_value) == 1 and isinstance(block_value[0], dict):
        block_value = block_value[0]
    if isinstance(block_value, dict):
        return {camel(k): api_form(v) for k, v in block_value.items()}
    return block_value


def documented(kind_name):
    return [load(b) for b in JSON_BLOCKS if kind(load(b))[0] == kind_name]


def task_definitions(tmp_path):
    found = []
    for b in HCL_BLOCKS:
        tf = parse(b.text, tmp_path)
        found += tf.get("resource", {}).get("aws_ecs_task_definition", {}).values()
    return [td for defs in found for td in defs]


def container_definitions(td, tmp_path):
    """The value given to jsonencode() in container_definitions, parsed as
    HCL on its own so that its objects come out as JSON."""
    m = re.fullmatch(r"\$\{jsonencode\((.*)\)\}", td["container_definitions"], re.S)
    assert m, "container_definitions is expected to be jsonencode([...])"
    return parse("value = " + m.group(1) + "\n", tmp_path)["value"]


def test_terraform_container_definition_is_the_json_one(tmp_path):
    tds = task_definitions(tmp_path)
    assert tds, "the docs show an aws_ecs_task_definition"
    json_defs = documented("container definition")
    for td in tds:
        defs = container_definitions(td, tmp_path)
        for i, cd in enumerate(defs):
            problems = problems_for(cd, shape("ContainerDefinition"), f"$[{i}]")
            assert problems == [], problems
            twin = [j for j in json_defs if j["name"] == cd["name"]]
            assert twin, f"no JSON container definition named {cd['name']!r} in the docs"
            assert same(cd, twin[0]) == [], same(cd, twin[0])


def test_terraform_volume_is_the_json_one(tmp_path):
    json_volumes = [v for frag in documented("task definition members")
                    for v in frag.get("volumes", [])]
    assert json_volumes
    for td in task_definitions(tmp_path):
        for vol in td.get("volume", []):
            api = api_form(vol)
            assert problems_for(api, shape("Volume")) == []
            twin = [v for v in json_volumes if v["name"] == api["name"]]
            assert twin, f"no JSON volume named {api['name']!r} in the docs"
            assert same(api, twin[0]) == [], same(api, twin[0])


def test_comparison_can_fail():
    js = {"name": "d", "environment": [{"name": "TZ", "value": "Europe/London"}],
          "secrets": [{"name": "P", "valueFrom": "arn:x:secret:pi/db-AbCdEf:password::"}]}
    assert same({"name": "d", "environment": [{"name": "TZ", "value": "${var.tz}"}],
                 "secrets": [{"name": "P", "valueFrom": "${aws_s.db.arn}:password::"}]}, js) == []
    assert same({"name": "d", "secrets": js["secrets"]}, js) == ["$: 'environment' only in the JSON"]
    assert same(dict(js, secrets=[{"name": "P", "valueFrom": "${aws_s.db.arn}:username::"}]), js)
    assert same(dict(js, name="e"), js)
    assert same(dict(js, environment=[]), js)
