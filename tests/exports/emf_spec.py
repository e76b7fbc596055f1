"""A validator for CloudWatch Embedded Metric Format documents, following the
specification's rules: a root object whose `_aws` member holds a Timestamp
(milliseconds, a number) and CloudWatchMetrics, a list of directives, each
with a Namespace, Dimensions (a list of dimension sets, each of at most 30
names, every name a root member holding a string) and Metrics (at most 100,
each with a Name that is a root member holding a number or a list of at most
100 numbers, an optional Unit from CloudWatch's list, an optional
StorageResolution of 1 or 60)."""
import numbers

UNITS = frozenset({
    "Seconds", "Microseconds", "Milliseconds", "Bytes", "Kilobytes", "Megabytes", "Gigabytes",
    "Terabytes", "Bits", "Kilobits", "Megabits", "Gigabits", "Terabits", "Percent", "Count",
    "Bytes/Second", "Kilobytes/Second", "Megabytes/Second", "Gigabytes/Second",
    "Terabytes/Second", "Bits/Second", "Kilobits/Second", "Megabits/Second",
    "Gigabits/Second", "Terabits/Second", "Count/Second", "None"})


def _number(v):
    return isinstance(v, numbers.Real) and not isinstance(v, bool)


def _text(v, lo, hi):
    return isinstance(v, str) and lo <= len(v) <= hi


def emf_problems(doc):
    """Every way doc breaks the specification, as readable strings (empty when
    it conforms)."""
    if not isinstance(doc, dict):
        return ["the document is not a JSON object"]
    aws = doc.get("_aws")
    if not isinstance(aws, dict):
        return ["no _aws object"]
    problems = []
    ts = aws.get("Timestamp")
    if not _number(ts) or ts < 0:
        problems.append(f"_aws.Timestamp {ts!r} is not a number of milliseconds")
    elif ts < 10 ** 12:
        problems.append(f"_aws.Timestamp {ts!r} looks like seconds, not milliseconds")
    directives = aws.get("CloudWatchMetrics")
    if not isinstance(directives, list) or not directives:
        return problems + ["_aws.CloudWatchMetrics is not a non-empty list"]
    for i, d in enumerate(directives):
        where = f"CloudWatchMetrics[{i}]"
        if not isinstance(d, dict):
            problems.append(f"{where} is not an object")
            continue
        ns = d.get("Namespace")
        if not _text(ns, 1, 255):
            problems.append(f"{where}.Namespace {ns!r} is not a string of 1-255 characters")
        dims = d.get("Dimensions")
        if not isinstance(dims, list):
            problems.append(f"{where}.Dimensions is not a list of dimension sets")
            dims = []
        for j, dimset in enumerate(dims):
            if not isinstance(dimset, list):
                problems.append(f"{where}.Dimensions[{j}] is not a list")
                continue
            if len(dimset) > 30:
                problems.append(f"{where}.Dimensions[{j}] has {len(dimset)} names (at most 30)")
            for name in dimset:
                if not isinstance(name, str):
                    problems.append(f"{where}.Dimensions[{j}] holds {name!r}, not a name")
                elif name not in doc:
                    problems.append(f"dimension {name} is not a root member")
                elif not _text(doc[name], 1, 1024):
                    problems.append(f"dimension {name} = {doc[name]!r} is not a string of "
                                    "1-1024 characters")
        metrics = d.get("Metrics")
        if not isinstance(metrics, list) or not metrics:
            problems.append(f"{where}.Metrics is not a non-empty list")
            continue
        if len(metrics) > 100:
            problems.append(f"{where}.Metrics has {len(metrics)} entries (at most 100)")
        for m in metrics:
            if not isinstance(m, dict) or not _text(m.get("Name"), 1, 255):
                problems.append(f"{where}.Metrics holds {m!r}, not a metric definition")
                continue
            name = m["Name"]
            extra = set(m) - {"Name", "Unit", "StorageResolution"}
            if extra:
                problems.append(f"metric {name} has unknown members {sorted(extra)}")
            if "Unit" in m and m["Unit"] not in UNITS:
                problems.append(f"metric {name} has unit {m['Unit']!r}, not a CloudWatch unit")
            if "StorageResolution" in m and m["StorageResolution"] not in (1, 60):
                problems.append(f"metric {name} has StorageResolution {m['StorageResolution']!r}")
            if name not in doc:
                problems.append(f"metric {name} is not a root member")
                continue
            v = doc[name]
            if isinstance(v, list):
                if not v or len(v) > 100 or not all(_number(x) for x in v):
                    problems.append(f"metric {name} = {v!r} is not a list of 1-100 numbers")
            elif not _number(v):
                problems.append(f"metric {name} = {v!r} is not a number")
    return problems
