"""The docs-and-exports suite: what operators copy (docs/ snippets) and what
they feed to Prometheus and CloudWatch (/metrics, EMF lines), each checked
against the authority that will read it.

It reuses the integration tests' fixtures (the agent runner, the throwaway
licence PKI, the fake dashboard). Their modules import `conftest`; this file
re-exports what they need, so they see the same names here."""
import importlib.util
import sys
from pathlib import Path

HERE = Path(__file__).resolve().parent
INTEGRATION = HERE.parent / "integration"
sys.path.insert(0, str(INTEGRATION))

_spec = importlib.util.spec_from_file_location("integration_conftest", INTEGRATION / "conftest.py")
_integration = importlib.util.module_from_spec(_spec)
sys.modules["integration_conftest"] = _integration
_spec.loader.exec_module(_integration)

AGENT = _integration.AGENT
BASE_ENV = _integration.BASE_ENV
ROOT = _integration.ROOT
agent_env = _integration.agent_env
json_records = _integration.json_records
wait_for = _integration.wait_for
descendants = _integration.descendants
agent_bin = _integration.agent_bin
start_agent = _integration.start_agent

from alm_stub import pki  # noqa: E402,F401  (session fixture: throwaway licence keys)

from live_run import live  # noqa: E402,F401  (session fixture: one full run of the agent)
