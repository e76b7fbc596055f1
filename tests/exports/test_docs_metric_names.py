"""Every metric name the documentation mentions is one the agent emits, as
seen in the live run (/metrics and its EMF lines), so the check follows the
agent as metrics are added. A metric that was renamed appears in the docs'
"Renamed metrics" tables only: the old name must be gone from the live run
and the new one present."""
import re

from docblocks import doc_files
from emf_spec import emf_problems
from test_docs_json import JSON_BLOCKS, kind, load

PROM_NAME = re.compile(r"\bpi_(?:agent|tomcat)_[a-z0-9_]*[a-z0-9]\b")
CAMEL = re.compile(r"`([A-Z][a-z0-9]+(?:[A-Z][a-z0-9]*)+)`")


def renamed_tables():
    """(old, new) pairs from tables whose header starts `| old name | new name |`."""
    pairs = []
    for path in doc_files():
        in_table = False
        for line in path.read_text().splitlines():
            if re.match(r"^\|\s*old name\s*\|\s*new name\s*\|", line):
                in_table = True
                continue
            if in_table and not line.startswith("|"):
                in_table = False
            if in_table and not re.match(r"^\|\s*-", line):
                cells = [c.strip() for c in line.strip("|").split("|")]
                old, new = (PROM_NAME.findall(c) or CAMEL.findall(c) for c in cells[:2])
                pairs.append((old[0], new[0]))
    return pairs


def mentioned_prometheus_names():
    olds = {old for old, _ in renamed_tables()}
    found = {}
    for path in doc_files():
        for n, line in enumerate(path.read_text().splitlines(), 1):
            for name in PROM_NAME.findall(line):
                if name not in olds:
                    found.setdefault(name, f"{path.name}:{n}")
    return found


def test_documented_prometheus_names_are_emitted(live):
    mentioned = mentioned_prometheus_names()
    assert len(mentioned) >= 20
    emitted = live.metric_names()
    unknown = {name: where for name, where in mentioned.items() if name not in emitted}
    assert not unknown, f"the docs mention metrics the agent does not emit: {unknown}"


def test_renamed_metrics_are_renamed(live):
    pairs = renamed_tables()
    assert ("pi_agent_licence_days_left", "pi_agent_licence_remaining_seconds") in pairs
    emitted = live.metric_names() | live.emf_names()
    for old, new in pairs:
        assert old not in emitted, f"{old} is documented as renamed but still emitted"
        assert new in emitted, f"{new} is documented as the new name but not emitted"


def emf_sections():
    """The text of every documentation section whose heading names EMF."""
    out = []
    for path in doc_files():
        section = None
        for line in path.read_text().splitlines():
            if line.startswith("#"):
                section = [] if "EMF" in line else None
                if section is not None:
                    out.append((path.name, section))
            elif section is not None:
                section.append(line)
    return [(name, "\n".join(lines)) for name, lines in out]


def test_documented_emf_names_are_emitted(live):
    emitted = live.emf_names()
    examples = [load(b) for b in JSON_BLOCKS if kind(load(b))[0] == "EMF document"]
    assert examples
    for doc in examples:
        assert emf_problems(doc) == []
        names = {k for k in doc if k != "_aws"}
        names |= {m["Name"] for d in doc["_aws"]["CloudWatchMetrics"] for m in d["Metrics"]}
        names |= {n for d in doc["_aws"]["CloudWatchMetrics"] for s in d["Dimensions"] for n in s}
        assert not names - emitted, f"EMF example names not emitted: {sorted(names - emitted)}"
    sections = emf_sections()
    assert sections
    checked = set()
    for where, text in sections:
        prose = {n for n in CAMEL.findall(re.sub(r"```.*?```", "", text, flags=re.S))}
        assert not prose - emitted, f"{where}: EMF names not emitted: {sorted(prose - emitted)}"
        checked |= prose
    assert checked, "the EMF sections name no metric or dimension in backquotes"


# CloudWatch metric names where the docs use them outside EMF sections: in
# Terraform (metric_name = "..."), in API JSON ("MetricName": "...") and in
# tables as `Name` (Unit) or `Name`, Statistic (docs/autoscaling.md).
CLOUDWATCH_NAME = [
    re.compile(r'metric_name\s*=\s*"([^"]+)"'),
    re.compile(r'"MetricName"\s*:\s*"([^"]+)"'),
    re.compile(r"`([A-Z][A-Za-z]+)` (?:\((?:Count|Bytes|Bytes/Second|Milliseconds|Seconds|None)\)"
               r"|, (?:Minimum|Maximum|Average|Sum|SampleCount)\b)"),
]


def mentioned_cloudwatch_names():
    found = {}
    for path in doc_files():
        for n, line in enumerate(path.read_text().splitlines(), 1):
            for pattern in CLOUDWATCH_NAME:
                for name in pattern.findall(line):
                    found.setdefault(name, f"{path.name}:{n}")
    return found


def test_documented_cloudwatch_names_are_emitted(live):
    mentioned = mentioned_cloudwatch_names()
    # the scaling signal and every alarm of docs/autoscaling.md
    assert {"TomcatConnections", "TomcatReceivedBytesPerSecond", "Healthy", "LicenceDaysLeft",
            "EfsUsedBytes", "EfsBudgetBytes", "ChildRestarts"} <= set(mentioned)
    emitted = live.emf_metric_names()
    unknown = {name: where for name, where in mentioned.items() if name not in emitted}
    assert not unknown, f"the docs name CloudWatch metrics the agent does not emit: {unknown}"


def test_name_check_can_fail(live):
    assert "pi_agent_licence_days_left" not in live.metric_names()
    assert PROM_NAME.findall("see `pi_agent_licence_days_left{x}`") == ["pi_agent_licence_days_left"]
    assert "LicenceDaysLeft" in live.emf_names() and "LicenceSecondsLeft" not in live.emf_names()
    assert "TomcatConnexions" not in live.emf_metric_names()
    assert [p.findall('metric_name = "TomcatConnexions"') for p in CLOUDWATCH_NAME][0] == \
        ["TomcatConnexions"]
