"""Validation of task and container definitions against the ECS API model
that python3-botocore ships (the service model the AWS SDKs and CLI are
generated from): member names, types, enums, required members and the
model's length and value bounds, walked shape by shape."""
import numbers

import botocore.session

_MODEL = None


def ecs_model():
    global _MODEL
    if _MODEL is None:
        _MODEL = botocore.session.get_session().get_service_model("ecs")
    return _MODEL


def shape(name):
    """A named shape of the model: ContainerDefinition, Volume, ... or an
    operation's input such as RegisterTaskDefinitionRequest."""
    model = ecs_model()
    if name.endswith("Request") and name[:-len("Request")] in model.operation_names:
        return model.operation_model(name[:-len("Request")]).input_shape
    return model.shape_for(name)


def _bounds(sh, size, what, path, problems):
    lo, hi = sh.metadata.get("min"), sh.metadata.get("max")
    if lo is not None and size < lo:
        problems.append(f"{path}: {what} {size} is below the model's minimum {lo}")
    if hi is not None and size > hi:
        problems.append(f"{path}: {what} {size} is above the model's maximum {hi}")


def problems_for(value, sh, path="$", check_required=True):
    """Every way value breaks shape sh, as 'path: problem' strings.
    check_required=False checks a fragment: the members it has, not the
    members it leaves out (at the top level only)."""
    problems = []
    t = sh.type_name
    if t == "structure":
        if not isinstance(value, dict):
            return [f"{path}: expected an object ({sh.name}), got {type(value).__name__}"]
        for key, v in value.items():
            if key not in sh.members:
                problems.append(f"{path}: {key!r} is not a member of {sh.name}")
            else:
                problems += problems_for(v, sh.members[key], f"{path}.{key}")
        if check_required:
            for key in sh.required_members:
                if key not in value:
                    problems.append(f"{path}: required member {key!r} of {sh.name} is missing")
    elif t == "list":
        if not isinstance(value, list):
            return [f"{path}: expected a list, got {type(value).__name__}"]
        _bounds(sh, len(value), "length", path, problems)
        for i, v in enumerate(value):
            problems += problems_for(v, sh.member, f"{path}[{i}]")
    elif t == "map":
        if not isinstance(value, dict):
            return [f"{path}: expected an object (map), got {type(value).__name__}"]
        for k, v in value.items():
            problems += problems_for(k, sh.key, f"{path} key {k!r}")
            problems += problems_for(v, sh.value, f"{path}.{k}")
    elif t == "string":
        if not isinstance(value, str):
            return [f"{path}: expected a string, got {value!r}"]
        if sh.enum and value not in sh.enum:
            problems.append(f"{path}: {value!r} is not one of {sh.name}'s values {sh.enum}")
        _bounds(sh, len(value), "length", path, problems)
    elif t in ("integer", "long"):
        if isinstance(value, bool) or not isinstance(value, int):
            return [f"{path}: expected an integer, got {value!r}"]
        _bounds(sh, value, "value", path, problems)
    elif t in ("float", "double"):
        if isinstance(value, bool) or not isinstance(value, numbers.Real):
            return [f"{path}: expected a number, got {value!r}"]
    elif t == "boolean":
        if not isinstance(value, bool):
            return [f"{path}: expected true or false, got {value!r}"]
    elif t == "timestamp":
        if isinstance(value, bool) or not isinstance(value, (str, int, float)):
            return [f"{path}: expected a timestamp, got {value!r}"]
    elif t == "blob":
        if not isinstance(value, str):
            return [f"{path}: expected base64 text, got {value!r}"]
    else:
        problems.append(f"{path}: the model's type {t!r} is not handled by this validator")
    return problems
