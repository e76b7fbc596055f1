"""Every metric name the shipped docs use is one the agent emits: the EMF
names in agent/emf.c's metric table and the Prometheus series that
agent/health_report.c writes. A renamed metric must take its docs along."""
import re

from conftest import ROOT

DOCS = [ROOT / "docs" / "autoscaling.md", ROOT / "docs" / "health.md", ROOT / "README.md"]


def emf_names():
    src = (ROOT / "agent" / "emf.c").read_text()
    # { "Name", "Unit", present, integral, ... } rows of the metric table
    return set(re.findall(r'\{\s*"([A-Z][A-Za-z]+)",\s*"[A-Za-z/]+",', src))


def prometheus_names():
    src = (ROOT / "agent" / "health_report.c").read_text()
    return set(re.findall(r'"(pi_[a-z0-9_]+)', src))


def doc_metric_names(text):
    """(EMF names, Prometheus names) a document refers to as metrics."""
    emf = set(re.findall(r'metric_name\s*=\s*"([^"]+)"', text))
    emf |= set(re.findall(r'"MetricName"\s*:\s*"([^"]+)"', text))
    emf |= set(re.findall(r'\{"Name":"([^"]+)","Unit"', text))
    # tables name EMF metrics as `Name` (Unit) or `Name`, Statistic
    unit_or_stat = r'(?: \((?:Count|Bytes|Bytes/Second|Milliseconds|Seconds|None)\)|' \
                   r', (?:Minimum|Maximum|Average|Sum|SampleCount))'
    emf |= set(re.findall(r'`([A-Z][A-Za-z]+)`' + unit_or_stat, text))
    prom = set(re.findall(r'\b(pi_(?:agent|tomcat)_[a-z0-9_]+)', text))
    return emf, prom


def test_the_parsers_find_the_agents_own_names():
    assert {"Healthy", "LicenceDaysLeft", "EfsUsedBytes", "EfsBudgetBytes", "ChildRestarts",
            "TomcatConnections", "TomcatReceivedBytesPerSecond"} <= emf_names()
    assert {"pi_tomcat_connections", "pi_tomcat_received_bytes_total",
            "pi_tomcat_probe_seconds", "pi_agent_up"} <= prometheus_names()


def test_autoscaling_doc_covers_the_scaling_signal_and_the_alarms():
    emf, prom = doc_metric_names((ROOT / "docs" / "autoscaling.md").read_text())
    assert {"TomcatConnections", "Healthy", "LicenceDaysLeft", "EfsUsedBytes",
            "EfsBudgetBytes", "ChildRestarts"} <= emf
    assert "pi_tomcat_connections" in prom


def test_every_metric_name_in_the_docs_is_emitted():
    known_emf, known_prom = emf_names(), prometheus_names()
    for doc in DOCS:
        emf, prom = doc_metric_names(doc.read_text())
        assert emf - known_emf == set(), f"{doc.name} names EMF metrics the agent does not emit"
        assert prom - known_prom == set(), f"{doc.name} names Prometheus series the agent does not emit"
