"""ECS task metadata: fetched once at start and logged; a failure is a warning."""
import json
import socket
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest

from conftest import agent_env

TASK = {
    "Cluster": "arn:aws:ecs:eu-west-2:111122223333:cluster/pi",
    "TaskARN": "arn:aws:ecs:eu-west-2:111122223333:task/pi/0123456789abcdef",
    "Family": "pi-dashboard",
    "Revision": "7",
    "AvailabilityZone": "eu-west-2b",
}


@pytest.fixture
def metadata_server():
    seen = []

    class Handler(BaseHTTPRequestHandler):
        def do_GET(self):
            seen.append(self.path)
            if self.path == "/v4/abc/task":
                body = json.dumps(TASK).encode()
                self.send_response(200)
            else:
                body = b"not found"
                self.send_response(404)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, *args):
            pass

    srv = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    t = threading.Thread(target=srv.serve_forever, daemon=True)
    t.start()
    yield f"http://127.0.0.1:{srv.server_address[1]}", seen
    srv.shutdown()


def test_task_metadata_is_logged_once(start_agent, metadata_server):
    base, seen = metadata_server
    env = agent_env(ECS_CONTAINER_METADATA_URI_V4=f"{base}/v4/abc", PI_AGENT_EMF="false")
    agent = start_agent(["--", "true"], env=env)
    assert agent.wait() == 0
    assert seen == ["/v4/abc/task"]
    rec = [r for r in agent.logs() if r["msg"] == "ECS task"]
    assert len(rec) == 1
    assert rec[0]["cluster"] == TASK["Cluster"]
    assert rec[0]["task_arn"] == TASK["TaskARN"]
    assert rec[0]["family"] == "pi-dashboard:7"
    assert rec[0]["availability_zone"] == "eu-west-2b"


def test_metadata_failure_is_one_warning_and_not_fatal(start_agent, metadata_server):
    base, _ = metadata_server
    env = agent_env(ECS_CONTAINER_METADATA_URI_V4=f"{base}/v4/missing", PI_AGENT_EMF="false")
    agent = start_agent(["--", "true"], env=env)
    assert agent.wait() == 0
    warns = [r for r in agent.logs() if r["msg"] == "cannot read the ECS task metadata"]
    assert len(warns) == 1 and warns[0]["level"] == "warn"
    assert "404" in warns[0]["error"]


def test_metadata_endpoint_down_is_not_fatal(start_agent):
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    port = s.getsockname()[1]
    s.close()  # nothing listens there now
    env = agent_env(ECS_CONTAINER_METADATA_URI_V4=f"http://127.0.0.1:{port}/v4/x", PI_AGENT_EMF="false")
    agent = start_agent(["--", "true"], env=env)
    assert agent.wait() == 0
    assert any(r["msg"] == "cannot read the ECS task metadata" for r in agent.logs())
    assert any(r["msg"] == "child exited" for r in agent.logs())
