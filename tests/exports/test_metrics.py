"""/metrics of a live run, with every figure known, read by Prometheus's own
tools: `promtool check metrics` (Debian's prometheus package) and the
prometheus_client text parser."""
import re
import subprocess
import time

from prometheus_client.parser import text_string_to_metric_families

from conftest import ROOT


def promtool(text):
    p = subprocess.run(["promtool", "check", "metrics"], input=text.encode(),
                       capture_output=True, timeout=60)
    return p.returncode, (p.stdout + p.stderr).decode()


def test_promtool_accepts_the_live_metrics(live):
    rc, out = promtool(live.metrics_text)
    assert (rc, out.strip()) == (0, ""), out


def test_promtool_catches_a_name_outside_base_units():
    """The check can fail: the former name of the licence gauge is refused."""
    rc, out = promtool("# HELP pi_agent_licence_days_left Days until the licence expires.\n"
                       "# TYPE pi_agent_licence_days_left gauge\npi_agent_licence_days_left 120\n")
    assert rc != 0 and "base unit" in out, out


def test_prometheus_parser_reads_every_family(live):
    families = list(text_string_to_metric_families(live.metrics_text))
    assert len(families) >= 20
    for fam in families:
        assert fam.name.startswith(("pi_agent_", "pi_tomcat_")), fam.name
        assert fam.documentation, f"{fam.name} has no HELP"
        assert fam.type in ("gauge", "counter"), (fam.name, fam.type)
        assert fam.samples, f"{fam.name} has no sample"


def test_every_metric_the_agent_declares_is_in_the_live_run(live):
    """The live run covers them all: every pi_agent_* and pi_tomcat_* name in the agent's
    sources shows up (a new metric that needs more set-up fails here until
    tests/exports/live_run.py provides it)."""
    declared = set()
    for src in sorted((ROOT / "agent").glob("*.c")):
        declared |= set(re.findall(r'"(pi_(?:agent|tomcat)_[a-z0-9_]*[a-z0-9])', src.read_text()))
    assert len(declared) >= 20
    missing = declared - live.metric_names()
    assert not missing, f"declared in agent/ but absent from the live /metrics: {sorted(missing)}"


INTEGRAL = re.compile(r"(_total|_bytes|_files|_timestamp_seconds|_remaining_seconds)$")


def test_integral_figures_are_printed_as_integers(live):
    """Counters, byte and file counts and Unix times keep every digit: no
    exponent, no fraction."""
    seen = 0
    for line in live.metrics_text.splitlines():
        if line.startswith("#") or not line:
            continue
        name = line.split("{", 1)[0].split(" ", 1)[0]
        value = line.rsplit(" ", 1)[1]
        if INTEGRAL.search(name):
            assert re.fullmatch(r"-?[0-9]+", value), line
            seen += 1
    assert seen >= 8


def test_licence_figures_are_exact(live):
    text = live.metrics_text
    expiry = int(re.search(r"\npi_agent_licence_expiry_timestamp_seconds (\d+)\n", text).group(1))
    remaining = int(re.search(r"\npi_agent_licence_remaining_seconds (-?\d+)\n", text).group(1))
    assert expiry == live.licence_exp, "the expiry must be the token's exp, to the second"
    assert abs(expiry - int(time.time()) - remaining) <= 120
    assert 199 * 86400 < remaining <= 200 * 86400
