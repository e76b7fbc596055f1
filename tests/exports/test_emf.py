"""Every EMF line of a live run (licence, storage and probe figures known,
task metadata from a stub) against the EMF specification's rules."""
import re

import pytest

from conftest import ROOT
from emf_spec import UNITS, emf_problems


def test_every_emf_line_of_the_live_run_conforms(live):
    assert len(live.emf_docs) >= 2
    for doc in live.emf_docs:
        assert emf_problems(doc) == [], doc


def test_every_emf_metric_the_agent_declares_is_in_the_live_run(live):
    """Metric tables in agent/emf*.c ({ "Name", "Unit", ... }) all show up."""
    units = "|".join(re.escape(u) for u in UNITS)
    declared = set()
    for src in sorted((ROOT / "agent").glob("emf*.c")):
        declared |= set(re.findall(r'\{\s*"([A-Z][A-Za-z0-9]*)",\s*"(?:%s)"' % units,
                                   src.read_text()))
    assert len(declared) >= 5
    missing = declared - live.emf_metric_names()
    assert not missing, f"declared in agent/ but absent from the live EMF lines: {sorted(missing)}"


def test_cluster_dimension_is_the_short_name(live):
    last = live.emf_docs[-1]
    assert last["_aws"]["CloudWatchMetrics"][0]["Dimensions"] == [["ClusterName",
                                                                   "TaskDefinitionFamily"]]
    assert last["ClusterName"] == live.cluster_name
    assert last["ClusterArn"] == live.metadata["Cluster"]
    assert last["TaskDefinitionFamily"] == live.metadata["Family"]


def _doc(**root):
    doc = {"_aws": {"Timestamp": 1764060000123, "CloudWatchMetrics": [{
        "Namespace": "Pi", "Dimensions": [["ClusterName"]],
        "Metrics": [{"Name": "Healthy", "Unit": "None"}]}]},
        "ClusterName": "pi", "Healthy": 1}
    doc.update(root)
    return doc


@pytest.mark.parametrize("change,words", [
    (lambda d: d["_aws"].update(Timestamp="now"), "Timestamp"),
    (lambda d: d["_aws"].update(Timestamp=1764060000), "seconds"),
    (lambda d: d["_aws"]["CloudWatchMetrics"][0].pop("Namespace"), "Namespace"),
    (lambda d: d["_aws"]["CloudWatchMetrics"][0].update(
        Dimensions=[[f"D{i}" for i in range(31)]]), "at most 30"),
    (lambda d: d.update(ClusterName=7), "ClusterName"),
    (lambda d: d.pop("ClusterName"), "not a root member"),
    (lambda d: d["_aws"]["CloudWatchMetrics"][0]["Metrics"][0].update(Unit="Days"), "unit"),
    (lambda d: d.update(Healthy="1"), "not a number"),
    (lambda d: d.update(Healthy=True), "not a number"),
    (lambda d: d.update(Healthy=[1, "x"]), "list of 1-100 numbers"),
    (lambda d: d.pop("Healthy"), "not a root member"),
])
def test_validator_rejects_what_the_specification_forbids(change, words):
    doc = _doc()
    assert emf_problems(doc) == []
    assert emf_problems(_doc(Healthy=[1, 2.5])) == []
    change(doc)
    problems = emf_problems(doc)
    assert any(words in p for p in problems), problems
