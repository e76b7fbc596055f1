"""Every ```json block of the documentation: valid JSON, and each task or
container definition (whole or a fragment of members) valid against the ECS
API model; each EMF example valid against the EMF specification; every
Secrets Manager ARN in the docs a full one."""
import json
import re

import pytest

from docblocks import blocks, doc_files
from ecs_model import problems_for, shape
from emf_spec import emf_problems

JSON_BLOCKS = blocks("json")


def load(block):
    """A block is a JSON value, or the members of an object (a fragment such
    as `"volumes": [...]` cut from a task definition)."""
    try:
        return json.loads(block.text)
    except ValueError:
        pass
    try:
        return json.loads("{" + block.text + "}")
    except ValueError as e:
        raise AssertionError(f"{block}: not JSON, nor the members of an object: {e}")


def kind(doc):
    """What a documented JSON value is, and the shape it is checked against."""
    container, task = shape("ContainerDefinition"), shape("RegisterTaskDefinitionRequest")
    if isinstance(doc, list) and doc and all(isinstance(d, dict) and "image" in d for d in doc):
        return "container definitions", None
    if not isinstance(doc, dict):
        return "other", None
    if "_aws" in doc:
        return "EMF document", None
    if "containerDefinitions" in doc or "family" in doc:
        return "task definition", task
    if "name" in doc and "image" in doc:
        return "container definition", container
    if set(doc) <= set(container.members):
        return "container definition members", container
    if set(doc) <= set(task.members):
        return "task definition members", task
    return "other", None


def test_there_are_definitions_to_check():
    kinds = [kind(load(b))[0] for b in JSON_BLOCKS]
    assert "container definition" in kinds
    assert "task definition members" in kinds
    assert "EMF document" in kinds


@pytest.mark.parametrize("block", JSON_BLOCKS, ids=str)
def test_json_block(block):
    doc = load(block)
    what, sh = kind(doc)
    if what == "EMF document":
        assert emf_problems(doc) == [], f"{block}: {emf_problems(doc)}"
    elif what == "container definitions":
        for i, d in enumerate(doc):
            assert problems_for(d, shape("ContainerDefinition"), f"$[{i}]") == []
    elif sh is not None:
        whole = what in ("task definition", "container definition")
        problems = problems_for(doc, sh, check_required=whole)
        assert problems == [], f"{block} ({what}): " + "; ".join(problems)


def test_ecs_validator_can_fail():
    cd = shape("ContainerDefinition")
    good = {"name": "x", "image": "y", "healthCheck": {"command": ["CMD", "true"], "interval": 5}}
    assert problems_for(good, cd) == []
    bad = {"name": "x", "image": "y", "healthCheck": {"command": ["CMD"], "interval": "5"},
           "linuxParameters": {"initProcessEnabled": 1}, "portMappings": [{"protocol": "sctp"}],
           "stopTimeOut": 30, "secrets": [{"name": "A"}]}
    problems = "\n".join(problems_for(bad, cd))
    for words in ("interval: expected an integer", "initProcessEnabled: expected true or false",
                  "'sctp' is not one of", "'stopTimeOut' is not a member",
                  "required member 'valueFrom'"):
        assert words in problems, problems
    task = shape("RegisterTaskDefinitionRequest")
    assert "required member 'family'" in "\n".join(problems_for({"containerDefinitions": []},
                                                                task))
    assert "is not one of" in "\n".join(problems_for(
        {"volumes": [{"name": "v", "efsVolumeConfiguration": {
            "fileSystemId": "fs-1", "transitEncryption": "ON"}}]}, task, check_required=False))


# A full Secrets Manager ARN: the secret's name ends in "-" and the six random
# characters Secrets Manager appends; ":json-key:version-stage:version-id"
# may follow. The ECS API documentation asks for the full ARN.
SECRET_ARN = re.compile(r"arn:aws[a-z-]*:secretsmanager:[a-z0-9-]+:[0-9]{12}:secret:"
                        r"[A-Za-z0-9/_+=.@-]+-[A-Za-z0-9]{6}(:[^:\s]*:[^:\s]*:[^:\s]*)?")
ANY_SECRET_ARN = re.compile(r"arn:aws[a-z-]*:secretsmanager:[^\s\"'`,)]*")


def secret_arns():
    found = []
    for path in doc_files():
        found += [(path.name, m.group(0)) for m in ANY_SECRET_ARN.finditer(path.read_text())]
    return found


def test_secrets_manager_arns_are_full_arns():
    arns = secret_arns()
    assert arns, "the docs show Secrets Manager ARNs"
    bad = [a for a in arns if not SECRET_ARN.fullmatch(a[1])]
    assert not bad, f"partial Secrets Manager ARNs (no six-character suffix): {bad}"


@pytest.mark.parametrize("arn,full", [
    ("arn:aws:secretsmanager:eu-west-2:123456789012:secret:pi/licence", False),
    ("arn:aws:secretsmanager:eu-west-2:123456789012:secret:pi/db:username::", False),
    ("arn:aws:secretsmanager:eu-west-2:123456789012:secret:pi/licence-AbCdEf", True),
    ("arn:aws:secretsmanager:eu-west-2:123456789012:secret:pi/db-GhIjKl:username::", True),
])
def test_secret_arn_rule(arn, full):
    assert bool(SECRET_ARN.fullmatch(arn)) is full
