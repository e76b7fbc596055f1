"""One live run of build/pi-agent with every figure known, for the checks of
what it exports: PID 1 in its own PID and mount namespaces, a tmpfs mounted as
the EFS root (storage scanned, folders measured), an offline licence signed by
a throwaway key (licence known, with an expiry), a fake dashboard that the
probe passes, ECS task metadata from a stub on loopback (EMF dimensions, the
cluster given as its ARN, as Fargate gives it) and an EMF line every second.
Everything listens on 127.0.0.1 only."""
import json
import os
import signal
import socket
import subprocess
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest

from alm_stub import claims
from conftest import AGENT, agent_env, json_records
from efs_helpers import make_image
from test_health import FAKE_DASHBOARD, PY, free_port, request

CLUSTER_NAME = "pi-exports"
TASK_METADATA = {
    "Cluster": f"arn:aws:ecs:eu-west-2:111122223333:cluster/{CLUSTER_NAME}",
    "TaskARN": "arn:aws:ecs:eu-west-2:111122223333:task/pi-exports/0123456789abcdef",
    "Family": "pi-dashboard",
    "Revision": "3",
    "AvailabilityZone": "eu-west-2a",
}


class MetadataStub:
    """ECS task metadata v4 on loopback: GET <base>/task."""

    def __init__(self):
        class Handler(BaseHTTPRequestHandler):
            def do_GET(self):
                ok = self.path == "/v4/exports/task"
                body = json.dumps(TASK_METADATA).encode() if ok else b"not found"
                self.send_response(200 if ok else 404)
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, *args):
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}/v4/exports"

    def stop(self):
        self.server.shutdown()
        self.server.server_close()


class LiveRun:
    metrics_text = ""
    emf_docs = ()
    health = None

    def metric_names(self):
        """Every metric name /metrics shows: TYPE'd families and sample names."""
        names = set()
        for line in self.metrics_text.splitlines():
            if line.startswith("# TYPE "):
                names.add(line.split(" ")[2])
            elif line and not line.startswith("#"):
                names.add(line.split("{", 1)[0].split(" ", 1)[0])
        return names

    def emf_names(self):
        """Every root member of every EMF document: metrics, dimensions and
        plain members."""
        return {k for doc in self.emf_docs for k in doc if k != "_aws"}

    def emf_metric_names(self):
        return {m["Name"] for doc in self.emf_docs for d in doc["_aws"]["CloudWatchMetrics"]
                for m in d["Metrics"]}


def _emf_documents(blob):
    lines = blob.decode(errors="replace").splitlines()
    return [r for r in json_records(lines) if isinstance(r, dict) and "_aws" in r]


def _everything_known(port):
    """The current /metrics text once licence, storage and probe figures are
    all in it, else None."""
    try:
        status, _, body = request(port, "/metrics")
    except OSError:
        return None
    text = body.decode()
    wanted = ("\npi_agent_licence_remaining_seconds ", "\npi_agent_efs_used_bytes ",
              "\npi_agent_efs_folder_bytes{", '\npi_agent_licence_state{status="valid"} 1',
              '\npi_agent_health_state{state="ok"} 1')
    if status != 200 or not all(w in text for w in wanted):
        return None
    if "\npi_agent_probe_passes_total 0\n" in text:
        return None
    return text


@pytest.fixture(scope="session")
def live(tmp_path_factory, pki):
    assert AGENT.exists(), f"{AGENT} is missing: run make first"
    tmp = tmp_path_factory.mktemp("live")
    efs, home, run = tmp / "efs", tmp / "home", tmp / "run"
    efs.mkdir()
    make_image(home)
    health_port, dash_port = free_port(), free_port()
    ctl, term = tmp / "dash-mode", tmp / "dash-term"
    ctl.write_text("200")
    licence_claims = claims(days_from_now=200)
    token = pki.vendor.sign(licence_claims)
    meta = MetadataStub()
    # The repository database: a listening socket, so that the database
    # check's figures (checks.database, pi_agent_database_*, Database*) are live.
    database = socket.socket()
    database.bind(("127.0.0.1", 0))
    database.listen(16)
    env = agent_env(
        PI_AGENT_HEALTH_PORT=health_port, PI_AGENT_HEALTH_ADDR="127.0.0.1",
        PI_AGENT_PROBE_URL=f"http://127.0.0.1:{dash_port}/pi/version",
        PI_AGENT_PROBE_INTERVAL_SECONDS=1, PI_AGENT_DRAIN_SECONDS=0,
        PI_EFS_MODE="required", PI_EFS_ROOT=efs, PI_DASHBOARD_HOME=home,
        PI_EFS_BUDGET_BYTES=1073741824, PI_EFS_SCAN_INTERVAL_SECONDS=0,
        PI_AGENT_RUN_DIR=run, PI_LICENCE=token, PI_LICENCE_PUBLIC_KEY=pki.public_keys,
        ECS_CONTAINER_METADATA_URI_V4=meta.url, PI_AGENT_EMF="true",
        PI_AGENT_EMF_INTERVAL_SECONDS=1, PI_AGENT_EMF_NAMESPACE="Panintelligence/Agent",
        PI_DB_HOST="127.0.0.1", PI_DB_PORT=database.getsockname()[1])
    # The EFS root is a tmpfs mounted in the agent's own mount namespace, with
    # a customer file in it, so that the budget scan has something to count.
    script = tmp / "run.sh"
    script.write_text(f"set -e\nmount -t tmpfs tmpfs '{efs}'\nmkdir '{efs}/themes'\n"
                      f"head -c 4096 /dev/zero > '{efs}/themes/customer.css'\n"
                      f'exec "$@"\n')
    out, err = tmp / "stdout", tmp / "stderr"
    with open(out, "wb") as o, open(err, "wb") as e:
        proc = subprocess.Popen(
            ["unshare", "--pid", "--fork", "--mount-proc", "--kill-child", "sh", str(script),
             str(AGENT), "--", PY, "-c", FAKE_DASHBOARD, str(dash_port), str(ctl), str(term)],
            env=env, stdout=o, stderr=e, start_new_session=True)
    live_run = LiveRun()
    try:
        deadline = time.time() + 60
        text = None
        while time.time() < deadline and proc.poll() is None:
            text = _everything_known(health_port)
            if text:
                break
            time.sleep(0.1)
        assert text, ("the live run never had every figure known:\n"
                      + out.read_bytes().decode(errors="replace")[-4000:]
                      + err.read_bytes().decode(errors="replace")[-4000:])
        # Two EMF periods after everything is known: lines with every figure.
        wanted = {"EfsUsedBytes", "LicenceDaysLeft", "TomcatProbeLatency", "TomcatConnections",
                  "TomcatReceivedBytesPerSecond"}
        deadline = time.time() + 10
        while time.time() < deadline:
            docs = _emf_documents(out.read_bytes()) + _emf_documents(err.read_bytes())
            if sum(1 for d in docs if wanted <= set(d)) >= 2:
                break
            time.sleep(0.1)
        live_run.metrics_text = request(health_port, "/metrics")[2].decode()
        live_run.health = json.loads(request(health_port, "/health")[2])
    finally:
        # Everything is collected: the namespace's processes all go with it.
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait(timeout=10)
        meta.stop()
        database.close()
    live_run.stdout, live_run.stderr = out.read_bytes(), err.read_bytes()
    live_run.emf_docs = _emf_documents(live_run.stdout) + _emf_documents(live_run.stderr)
    live_run.metadata = TASK_METADATA
    live_run.licence_exp = licence_claims["exp"]
    live_run.cluster_name = CLUSTER_NAME
    return live_run
