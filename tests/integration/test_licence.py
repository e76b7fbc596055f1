"""Licence handling of build/pi-agent against a local HTTPS ALM stub
(alm_stub.py): the ALM callback and its failures, offline tokens, XML
licences, licence URLs, the EFS cache, the hand-over to the dashboard,
PI_AGENT_LICENCE_REQUIRED, and the reachability check for deployments where
the dashboard calls the ALM itself. Every test checks that no licence,
customer key or key leaks into the output or the status files."""
import json
import os
import pwd
import signal
import subprocess
from pathlib import Path

import pytest

from alm_stub import (HANG, Response, alm_stub, claims, closed_port, licence_response,  # noqa: F401
                      pki)
from conftest import AGENT, agent_env, wait_for

CUSTOMER_KEY = "ACME-CUST-7f3a9c2e51"


# ---- helpers ----------------------------------------------------------------

def licence_env(tmp_path, pki, **overrides):
    run = tmp_path / "run"
    efs = tmp_path / "efs"
    efs.mkdir(exist_ok=True)
    base = dict(PI_AGENT_RUN_DIR=run, PI_EFS_ROOT=efs, PI_LICENCE_PUBLIC_KEY=pki.public_keys,
                PI_ALM_CA_FILE=pki.ca_file, PI_ALM_TIMEOUT_SECONDS=10)
    # A proxy of the machine running the tests must not catch loopback traffic.
    for name in ("HTTPS_PROXY", "https_proxy", "HTTP_PROXY", "http_proxy", "ALL_PROXY",
                 "all_proxy", "NO_PROXY", "no_proxy"):
        base[name] = None
    base.update(overrides)
    return agent_env(**base)


def licence_cmd(env):
    """`pi-agent licence`: (exit code, status dict, stdout, stderr)."""
    p = subprocess.run([str(AGENT), "licence"], env=env, capture_output=True, timeout=120)
    out = p.stdout.decode()
    lines = [line for line in out.splitlines() if line.strip()]
    assert len(lines) == 1, f"stdout must hold only the status: {out!r}"
    return p.returncode, json.loads(lines[0]), out, p.stderr.decode()


def run_agent(start_agent, env, tmp_path, child=None, pid1=False, timeout=120):
    """Runs the agent with a child that writes its environment to a file;
    returns (exit code, agent, child env dict or None)."""
    out = tmp_path / "child.env"
    if child is None:
        child = ["/bin/sh", "-c", f'env > "{out}"']
    a = start_agent(["--"] + child, env=env, pid1=pid1)
    rc = a.wait(timeout=timeout)
    child_env = None
    if out.exists():
        child_env = {}
        for line in out.read_text().splitlines():
            k, _, v = line.partition("=")
            child_env[k] = v
    return rc, a, child_env


def stop(agent):
    """SIGTERM to the agent itself (started with pid1=False): conftest's
    agent_pid() may pick a forked licence worker, which runs the same binary."""
    agent.proc.send_signal(signal.SIGTERM)


def status_file(tmp_path):
    return json.loads((tmp_path / "run" / "licence.json").read_text())


def licence_file(tmp_path):
    return tmp_path / "run" / "licence"


def licence_logs(agent):
    return [r for r in agent.logs() if "licence" in r.get("msg", "")]


def assert_no_secrets(pki, *blobs, extra=()):
    secrets = list(pki.secrets()) + [CUSTOMER_KEY] + list(extra)
    for blob in blobs:
        if isinstance(blob, bytes):
            blob = blob.decode(errors="replace")
        for secret in secrets:
            # The signature segment of a token is unique to it.
            needle = secret.rsplit(".", 1)[-1] if secret.count(".") == 2 else secret
            assert needle not in blob, "a secret leaked into the output"


def agent_outputs(agent, tmp_path):
    blobs = [agent.stdout, agent.stderr]
    sf = tmp_path / "run" / "licence.json"
    if sf.exists():
        blobs.append(sf.read_text())
    return blobs


# ---- the ALM callback (customer key + PI_ALM_URL) ---------------------------

def test_alm_success_hands_the_licence_over(tmp_path, pki, alm_stub, start_agent):
    token = pki.vendor.sign(claims(days_from_now=200, deployment="prod-eu"))
    stub = alm_stub().respond(licence_response(token))
    env = licence_env(tmp_path, pki, PI_LICENCE=CUSTOMER_KEY, PI_ALM_URL=stub.url(),
                      PI_DEPLOYMENT_ID="prod-eu")
    rc, agent, child = run_agent(start_agent, env, tmp_path)
    assert rc == 0

    (req,) = stub.posts()
    body = json.loads(req["body"])
    assert body["customer_key"] == CUSTOMER_KEY
    assert body["deployment"] == "prod-eu"
    assert body["product"] == "dashboard"
    assert body["agent"].startswith("pi-agent/")
    assert req["headers"]["Content-Type"] == "application/json"

    st = status_file(tmp_path)
    assert st["status"] == "valid"
    assert st["source"] == "alm"
    assert st["subject"] == "acme-42"
    assert st["users"] == 25
    assert st["modules"] == ["dashboard", "reports"]
    assert st["deployment"] == "prod-eu"
    assert st["days_left"] in (199, 200)
    assert st["expires"].endswith("Z") and st["not_before"].endswith("Z")

    lf = licence_file(tmp_path)
    assert lf.read_text() == token
    assert (lf.stat().st_mode & 0o777) == 0o600
    assert child["PI_LICENCE_FILE"] == str(lf)
    assert child["PI_LICENCE_STATUS"] == "valid"
    # Without PI_AGENT_LICENCE_INLINE the dashboard keeps its own PI_LICENCE.
    assert child["PI_LICENCE"] == CUSTOMER_KEY

    cache = tmp_path / "efs" / ".pi-agent" / "licence"
    assert cache.read_text() == token
    assert (cache.stat().st_mode & 0o777) == 0o600
    rec = [r for r in agent.logs() if r.get("msg") == "licence checked"][0]
    assert rec["level"] == "info" and rec["status"] == "valid"
    assert_no_secrets(pki, *agent_outputs(agent, tmp_path), extra=[token])


def _socket_inodes(pid):
    inodes = set()
    for fd in Path(f"/proc/{pid}/fd").iterdir():
        try:
            target = os.readlink(fd)
        except OSError:
            continue
        if target.startswith("socket:["):
            inodes.add(target[8:-1])
    return inodes


def _connections_to(port, inodes):
    found = []
    for table in ("/proc/net/tcp", "/proc/net/tcp6"):
        for line in Path(table).read_text().splitlines()[1:]:
            fields = line.split()
            remote_port = int(fields[2].rsplit(":", 1)[1], 16)
            if remote_port == port and fields[9] in inodes:
                found.append(line)
    return found


def test_pid1_keeps_no_connection_after_the_callback(tmp_path, pki, alm_stub, start_agent):
    # The callback runs in a worker: once it is done, the agent holds no
    # socket to the ALM (nor any TLS or curl state, which went with the worker).
    token = pki.vendor.sign(claims())
    stub = alm_stub().respond(licence_response(token))
    env = licence_env(tmp_path, pki, PI_LICENCE=CUSTOMER_KEY, PI_ALM_URL=stub.url())
    with Running(start_agent, env) as a:
        wait_for(lambda: (tmp_path / "run" / "licence.json").exists(), timeout=30,
                 what="status file")
        assert len(stub.posts()) == 1
        assert _connections_to(stub.port, _socket_inodes(a.proc.pid)) == []


def test_alm_401_is_rejected_without_retry(tmp_path, pki, alm_stub):
    stub = alm_stub().respond(Response(401, '{"error":"unknown key"}'))
    env = licence_env(tmp_path, pki, PI_LICENCE=CUSTOMER_KEY, PI_ALM_URL=stub.url())
    rc, st, out, err = licence_cmd(env)
    assert rc == 1
    assert st["status"] == "rejected"
    assert "HTTP 401" in st["reason"] and "PI_LICENCE" in st["reason"]
    assert len(stub.posts()) == 1
    assert_no_secrets(pki, out, err)


@pytest.mark.parametrize("status", [403, 404])
def test_alm_403_404_are_rejected(tmp_path, pki, alm_stub, status):
    stub = alm_stub().respond(Response(status, "{}"))
    env = licence_env(tmp_path, pki, PI_LICENCE=CUSTOMER_KEY, PI_ALM_URL=stub.url())
    rc, st, _, _ = licence_cmd(env)
    assert (rc, st["status"]) == (1, "rejected")
    assert len(stub.posts()) == 1


def test_alm_500_then_success_is_retried(tmp_path, pki, alm_stub):
    token = pki.vendor.sign(claims())
    stub = alm_stub().respond(Response(500, "oops"), Response(429, "slow down"),
                              licence_response(token))
    env = licence_env(tmp_path, pki, PI_LICENCE=CUSTOMER_KEY, PI_ALM_URL=stub.url(),
                      PI_ALM_TIMEOUT_SECONDS=30)
    rc, st, out, err = licence_cmd(env)
    assert (rc, st["status"], st["source"]) == (0, "valid", "alm")
    assert len(stub.posts()) == 3
    # The retries were logged (to stderr, stdout holds only the status).
    assert "retrying" in err
    assert_no_secrets(pki, out, err, extra=[token])


def test_alm_that_never_answers_times_out(tmp_path, pki, alm_stub):
    stub = alm_stub().respond(HANG)
    env = licence_env(tmp_path, pki, PI_LICENCE=CUSTOMER_KEY, PI_ALM_URL=stub.url(),
                      PI_ALM_TIMEOUT_SECONDS=2)
    rc, st, out, err = licence_cmd(env)
    assert (rc, st["status"]) == (1, "unreachable")
    assert "within 2 s" in st["reason"]
    assert "timed out" in st["reason"]
    assert_no_secrets(pki, out, err)


def test_alm_connection_refused(tmp_path, pki):
    env = licence_env(tmp_path, pki, PI_LICENCE=CUSTOMER_KEY,
                      PI_ALM_URL=f"https://127.0.0.1:{closed_port()}/licence",
                      PI_ALM_TIMEOUT_SECONDS=2)
    rc, st, out, err = licence_cmd(env)
    assert (rc, st["status"]) == (1, "unreachable")
    assert "TCP connect failed: Connection refused" in st["reason"]
    assert_no_secrets(pki, out, err)


@pytest.mark.parametrize("body", ["not json at all", '{"licence": 5}', "{}"])
def test_alm_answer_without_a_licence_is_malformed(tmp_path, pki, alm_stub, body):
    stub = alm_stub().respond(Response(200, body))
    env = licence_env(tmp_path, pki, PI_LICENCE=CUSTOMER_KEY, PI_ALM_URL=stub.url())
    rc, st, _, _ = licence_cmd(env)
    assert (rc, st["status"]) == (1, "malformed")
    assert "without a licence" in st["reason"]
    assert len(stub.posts()) == 1


def test_alm_token_with_bad_signature(tmp_path, pki, alm_stub):
    # Signed by a stranger who claims the vendor's kid.
    token = pki.stranger.sign(claims())
    stub = alm_stub().respond(licence_response(token))
    env = licence_env(tmp_path, pki, PI_LICENCE=CUSTOMER_KEY, PI_ALM_URL=stub.url())
    rc, st, out, err = licence_cmd(env)
    assert (rc, st["status"]) == (1, "bad-signature")
    assert st["subject"] is None  # claims of an unverified token are not shown
    assert_no_secrets(pki, out, err, extra=[token])


def test_alm_token_with_unknown_kid(tmp_path, pki, alm_stub):
    token = pki.vendor.sign(claims(), kid="vendor-9")
    stub = alm_stub().respond(licence_response(token))
    env = licence_env(tmp_path, pki, PI_LICENCE=CUSTOMER_KEY, PI_ALM_URL=stub.url())
    rc, st, _, _ = licence_cmd(env)
    assert (rc, st["status"]) == (1, "bad-signature")
    assert '"vendor-9"' in st["reason"]


@pytest.mark.parametrize("kw,status,words", [
    (dict(days_from_now=-1, not_before_days=-30), "expired", "expired on"),
    (dict(days_from_now=60, not_before_days=2), "not-yet-valid", "not valid before"),
    (dict(days_from_now=60, deployment="staging"), "wrong-deployment", "PI_DEPLOYMENT_ID"),
])
def test_alm_token_claims_are_checked(tmp_path, pki, alm_stub, kw, status, words):
    token = pki.vendor.sign(claims(**kw))
    stub = alm_stub().respond(licence_response(token))
    env = licence_env(tmp_path, pki, PI_LICENCE=CUSTOMER_KEY, PI_ALM_URL=stub.url(),
                      PI_DEPLOYMENT_ID="prod-eu")
    rc, st, _, _ = licence_cmd(env)
    assert (rc, st["status"]) == (1, status)
    assert words in st["reason"]
    assert st["subject"] == "acme-42"  # the signature held: claims are shown


def test_expiring_licence_is_accepted_with_a_warning(tmp_path, pki, alm_stub, start_agent):
    token = pki.vendor.sign(claims(days_from_now=10))
    stub = alm_stub().respond(licence_response(token))
    env = licence_env(tmp_path, pki, PI_LICENCE=CUSTOMER_KEY, PI_ALM_URL=stub.url(),
                      PI_AGENT_LICENCE_REQUIRED="true")
    rc, agent, child = run_agent(start_agent, env, tmp_path)
    assert rc == 0
    assert child["PI_LICENCE_STATUS"] == "expiring"
    rec = [r for r in agent.logs() if r.get("msg") == "licence checked"][0]
    assert rec["level"] == "warn"
    assert rec["days_left"] in (9, 10)


@pytest.mark.parametrize("cert,words", [
    ("untrusted", "TLS handshake failed"),
    ("wrong-host", "TLS handshake failed"),
])
def test_alm_certificate_problems_are_refused(tmp_path, pki, alm_stub, cert, words):
    token = pki.vendor.sign(claims())
    stub = alm_stub(cert=cert).respond(licence_response(token))
    env = licence_env(tmp_path, pki, PI_LICENCE=CUSTOMER_KEY, PI_ALM_URL=stub.url(),
                      PI_ALM_TIMEOUT_SECONDS=2)
    rc, st, out, err = licence_cmd(env)
    assert (rc, st["status"]) == (1, "unreachable")
    assert words in st["reason"]
    assert stub.posts() == []  # the key never left over an unverified connection
    assert stub.connections >= 1  # it did get as far as the TLS handshake
    assert len(stub.requests) == 0
    assert_no_secrets(pki, out, err)


def test_plain_http_is_refused_unless_allowed(tmp_path, pki, alm_stub):
    token = pki.vendor.sign(claims())
    stub = alm_stub(tls=False).respond(licence_response(token))
    env = licence_env(tmp_path, pki, PI_LICENCE=CUSTOMER_KEY, PI_ALM_URL=stub.url())
    p = subprocess.run([str(AGENT), "licence"], env=env, capture_output=True, timeout=60)
    assert p.returncode == 78
    assert b"PI_ALM_URL" in p.stderr and b"PI_ALM_ALLOW_HTTP" in p.stderr
    assert stub.requests == []

    env["PI_ALM_ALLOW_HTTP"] = "true"
    rc, st, _, _ = licence_cmd(env)
    assert (rc, st["status"]) == (0, "valid")
    assert len(stub.posts()) == 1


# ---- the EFS cache ------------------------------------------------------------

def test_cache_is_used_when_the_alm_cannot_be_reached(tmp_path, pki, alm_stub, start_agent):
    token = pki.vendor.sign(claims(days_from_now=100))
    stub = alm_stub().respond(licence_response(token))
    env = licence_env(tmp_path, pki, PI_LICENCE=CUSTOMER_KEY, PI_ALM_URL=stub.url(),
                      PI_AGENT_LICENCE_INLINE="true")
    rc, _, _ = run_agent(start_agent, env, tmp_path)
    assert rc == 0
    assert (tmp_path / "efs" / ".pi-agent" / "licence").read_text() == token

    # Next start: the ALM is down.
    stub.respond(Response(503, "maintenance"))
    env["PI_ALM_TIMEOUT_SECONDS"] = "2"
    rc, agent, child = run_agent(start_agent, env, tmp_path)
    assert rc == 0
    st = status_file(tmp_path)
    assert (st["status"], st["source"]) == ("valid", "cache")
    assert "could not be reached" in st["reason"]
    assert child["PI_LICENCE"] == token  # inline: the dashboard starts from the cache
    assert child["PI_LICENCE_STATUS"] == "valid"
    assert any(r.get("msg") == "the ALM cannot be reached: using the licence cached on EFS"
               and r["level"] == "warn" for r in agent.logs())
    assert_no_secrets(pki, *agent_outputs(agent, tmp_path), extra=[token])


def test_cache_write_never_truncates_another_writers_temporary(tmp_path, pki, alm_stub,
                                                               start_agent):
    """Every task shares the cache folder on EFS, and their workers can have
    the same pid: a file already at a temporary name (another task's write in
    flight, here linked to a file that must not change) is never opened for
    writing."""
    token = pki.vendor.sign(claims(days_from_now=100))
    stub = alm_stub().respond(licence_response(token))
    cache = tmp_path / "efs" / ".pi-agent"
    cache.mkdir(parents=True)
    victim = cache / "other-writer"
    victim.write_text("another task's licence, half written")
    victim.chmod(0o640)
    for pid in range(1, 400):
        os.link(victim, cache / f".licence.tmp.{pid}")
    env = licence_env(tmp_path, pki, PI_LICENCE=CUSTOMER_KEY, PI_ALM_URL=stub.url())
    rc, _, _ = run_agent(start_agent, env, tmp_path, pid1=True)
    assert rc == 0
    assert (cache / "licence").read_text() == token
    assert victim.read_text() == "another task's licence, half written"
    assert (victim.stat().st_mode & 0o777) == 0o640


def test_cache_write_removes_stale_temporaries_only(tmp_path, pki, alm_stub, start_agent):
    """A writer killed mid-write leaves a temporary holding a licence on EFS:
    old ones are removed, a fresh one (a write in flight) and other files are
    not."""
    token = pki.vendor.sign(claims(days_from_now=100))
    stub = alm_stub().respond(licence_response(token))
    cache = tmp_path / "efs" / ".pi-agent"
    cache.mkdir(parents=True)
    stale = cache / ".licence.tmp.7.0123456789abcdef"
    fresh = cache / ".licence.tmp.8.fedcba9876543210"
    other = cache / ".licence.tmp-customer-note"
    for f in (stale, fresh, other):
        f.write_text("x")
    day_ago = os.stat(stale).st_mtime - 86400
    os.utime(stale, (day_ago, day_ago))
    os.utime(other, (day_ago, day_ago))
    env = licence_env(tmp_path, pki, PI_LICENCE=CUSTOMER_KEY, PI_ALM_URL=stub.url())
    rc, _, _ = run_agent(start_agent, env, tmp_path)
    assert rc == 0
    assert (cache / "licence").read_text() == token
    assert not stale.exists()
    assert fresh.exists() and other.exists()
    assert sorted(p.name for p in cache.iterdir()) == sorted(
        ["licence", fresh.name, other.name])


def test_cache_is_ignored_after_401(tmp_path, pki, alm_stub):
    token = pki.vendor.sign(claims(days_from_now=100))
    cache = tmp_path / "efs" / ".pi-agent"
    cache.mkdir(parents=True)
    (cache / "licence").write_text(token)
    stub = alm_stub().respond(Response(401, "{}"))
    env = licence_env(tmp_path, pki, PI_LICENCE=CUSTOMER_KEY, PI_ALM_URL=stub.url())
    rc, st, _, _ = licence_cmd(env)
    assert (rc, st["status"], st["source"]) == (1, "rejected", "alm")


# ---- offline licences and XML -------------------------------------------------

def test_offline_licence_pasted_over_several_lines(tmp_path, pki, start_agent):
    token = pki.vendor2.sign(claims(days_from_now=90))
    wrapped = "\r\n".join(token[i:i + 64] for i in range(0, len(token), 64)) + "\n  "
    env = licence_env(tmp_path, pki, PI_LICENCE=" " + wrapped, PI_AGENT_LICENCE_INLINE="true")
    rc, agent, child = run_agent(start_agent, env, tmp_path)
    assert rc == 0
    st = status_file(tmp_path)
    assert (st["status"], st["source"]) == ("valid", "inline")
    assert licence_file(tmp_path).read_text() == token
    assert child["PI_LICENCE"] == token
    assert_no_secrets(pki, *agent_outputs(agent, tmp_path), extra=[token])


def test_offline_licence_signed_by_thumbprint_kid(tmp_path, pki):
    token = pki.vendor.sign(claims(), kid=pki.vendor.thumbprint())
    env = licence_env(tmp_path, pki, PI_LICENCE=token)
    rc, st, _, _ = licence_cmd(env)
    assert (rc, st["status"]) == (0, "valid")


def test_offline_licence_without_a_public_key(tmp_path, pki):
    token = pki.vendor.sign(claims())
    env = licence_env(tmp_path, pki, PI_LICENCE=token, PI_LICENCE_PUBLIC_KEY=None)
    rc, st, _, _ = licence_cmd(env)
    assert (rc, st["status"]) == (1, "bad-signature")
    assert "PI_LICENCE_PUBLIC_KEY" in st["reason"]


def test_public_key_file(tmp_path, pki):
    keyfile = tmp_path / "vendor.pem"
    keyfile.write_text(pki.public_keys)
    token = pki.vendor2.sign(claims())
    env = licence_env(tmp_path, pki, PI_LICENCE=token, PI_LICENCE_PUBLIC_KEY=None,
                      PI_LICENCE_PUBLIC_KEY_FILE=keyfile)
    rc, st, _, _ = licence_cmd(env)
    assert (rc, st["status"]) == (0, "valid")


def test_bad_public_key_is_a_configuration_error(tmp_path, pki):
    env = licence_env(tmp_path, pki, PI_LICENCE="x",
                      PI_LICENCE_PUBLIC_KEY="-----BEGIN PUBLIC KEY-----\nAAAA\n-----END PUBLIC KEY-----\n")
    p = subprocess.run([str(AGENT), "licence"], env=env, capture_output=True, timeout=60)
    assert p.returncode == 78
    assert b"PI_LICENCE_PUBLIC_KEY" in p.stderr


XML = """
<?xml version="1.0" encoding="UTF-8"?>
<licence version="3">
    <customer>Acme Ltd</customer>
    <users>25</users>
    <signature>
        MEUCIQDx2V
        k9Q3lm==
    </signature>
</licence>
"""
XML_ONE_LINE = ('<?xml version="1.0" encoding="UTF-8"?><licence version="3"><customer>Acme Ltd'
                '</customer><users>25</users><signature>MEUCIQDx2Vk9Q3lm==</signature></licence>')


def test_xml_licence_is_normalised_and_unverified(tmp_path, pki, start_agent):
    env = licence_env(tmp_path, pki, PI_LICENCE=XML, PI_AGENT_LICENCE_INLINE="true",
                      PI_AGENT_LICENCE_REQUIRED="true")
    rc, agent, child = run_agent(start_agent, env, tmp_path)
    assert rc == 0
    assert licence_file(tmp_path).read_text() == XML_ONE_LINE
    assert child["PI_LICENCE"] == XML_ONE_LINE
    assert child["PI_LICENCE_STATUS"] == "unverified"
    st = status_file(tmp_path)
    assert (st["status"], st["source"]) == ("unverified", "inline")
    assert "cannot check the vendor's XML signature" in st["reason"]
    assert_no_secrets(pki, *agent_outputs(agent, tmp_path), extra=["MEUCIQDx2V", "Acme Ltd"])


def test_xml_licence_that_is_cut_short_is_malformed(tmp_path, pki):
    env = licence_env(tmp_path, pki, PI_LICENCE="<licence>\n  <customer>Acme</customer>\n")
    rc, st, _, _ = licence_cmd(env)
    assert (rc, st["status"]) == (1, "malformed")


def test_truncated_offline_licence_is_malformed_not_a_customer_key(tmp_path, pki, alm_stub,
                                                                    start_agent):
    """Two of three parts, as a length-limited field leaves a token: never
    sent to the ALM nor passed on as a customer key."""
    token = pki.vendor.sign(claims())
    cut = token.rsplit(".", 1)[0]
    stub = alm_stub()
    env = licence_env(tmp_path, pki, PI_LICENCE=cut, PI_ALM_URL=stub.url())
    rc, st, out, err = licence_cmd(env)
    assert (rc, st["status"], st["source"]) == (1, "malformed", "inline")
    assert st["reason"] == ("PI_LICENCE looks like an offline licence but is incomplete: "
                            "2 of 3 parts: truncated?")
    rc, agent, child = run_agent(start_agent, env, tmp_path)
    assert rc == 0  # a bad licence does not stop the start unless required
    assert child["PI_LICENCE_STATUS"] == "malformed"
    assert "PI_LICENCE_FILE" not in child
    assert stub.requests == []
    rec = [r for r in agent.logs() if r.get("msg") == "licence checked"][0]
    assert rec["status"] == "malformed" and "truncated?" in rec["reason"]
    assert_no_secrets(pki, out, err, *agent_outputs(agent, tmp_path), extra=[cut])


@pytest.mark.parametrize("how,words", [
    ("header", "1 of 3 parts: truncated?"),
    ("empty-signature", "part 3 of 3 is empty: truncated?"),
    ("joined", "5 parts where an offline licence has 3"),
])
def test_broken_offline_licence_says_what_is_wrong(tmp_path, pki, how, words):
    token = pki.vendor.sign(claims())
    value = {"header": token.split(".")[0], "empty-signature": token.rsplit(".", 1)[0] + ".",
             "joined": token + "\n" + token}[how]
    rc, st, _, _ = licence_cmd(licence_env(tmp_path, pki, PI_LICENCE=value))
    assert (rc, st["status"]) == (1, "malformed")
    assert words in st["reason"]


def test_customer_key_with_dots_is_still_a_customer_key(tmp_path, pki):
    rc, st, _, _ = licence_cmd(licence_env(tmp_path, pki, PI_LICENCE="acme.corp.key"))
    assert (rc, st["status"], st["source"]) == (0, "unverified", "dashboard")


def test_licence_url_with_a_cut_token_is_malformed(tmp_path, pki, alm_stub):
    token = pki.vendor.sign(claims())
    stub = alm_stub().respond(Response(200, token[:len(token) // 2], content_type="text/plain"))
    rc, st, _, _ = licence_cmd(licence_env(tmp_path, pki, PI_LICENCE_URL=stub.url("/l.jwt")))
    assert (rc, st["status"], st["source"]) == (1, "malformed", "url")
    assert st["reason"].startswith("the licence at PI_LICENCE_URL looks like an offline licence")
    assert "truncated?" in st["reason"]


# ---- PI_LICENCE unset, PI_LICENCE_URL -----------------------------------------

def test_missing_licence_still_starts_the_dashboard(tmp_path, pki, start_agent):
    env = licence_env(tmp_path, pki)
    rc, agent, child = run_agent(start_agent, env, tmp_path)
    assert rc == 0
    assert child["PI_LICENCE_STATUS"] == "missing"
    assert "PI_LICENCE_FILE" not in child
    assert not licence_file(tmp_path).exists()
    rec = [r for r in agent.logs() if r.get("msg") == "licence checked"][0]
    assert rec["level"] == "error" and rec["status"] == "missing"
    assert "PI_LICENCE" in rec["reason"]


def test_licence_url_with_a_token(tmp_path, pki, alm_stub, start_agent):
    token = pki.vendor.sign(claims())
    stub = alm_stub().respond(Response(200, token + "\n", content_type="text/plain"))
    env = licence_env(tmp_path, pki, PI_LICENCE_URL=stub.url("/files/licence.jwt?sig=SECRETQUERY"),
                      PI_AGENT_LICENCE_INLINE="true")
    rc, agent, child = run_agent(start_agent, env, tmp_path)
    assert rc == 0
    assert [r["method"] for r in stub.requests] == ["GET"]
    st = status_file(tmp_path)
    assert (st["status"], st["source"]) == ("valid", "url")
    assert child["PI_LICENCE"] == token
    assert_no_secrets(pki, *agent_outputs(agent, tmp_path), extra=[token, "SECRETQUERY"])


def test_licence_url_with_xml(tmp_path, pki, alm_stub):
    stub = alm_stub().respond(Response(200, XML, content_type="application/xml"))
    env = licence_env(tmp_path, pki, PI_LICENCE_URL=stub.url("/licence.xml"))
    rc, st, _, _ = licence_cmd(env)
    assert (rc, st["status"], st["source"]) == (0, "unverified", "url")


def test_licence_wins_over_licence_url(tmp_path, pki, alm_stub):
    token = pki.vendor.sign(claims())
    stub = alm_stub().respond(Response(200, "unused", content_type="text/plain"))
    env = licence_env(tmp_path, pki, PI_LICENCE=token, PI_LICENCE_URL=stub.url("/licence"))
    rc, st, _, err = licence_cmd(env)
    assert (rc, st["status"], st["source"]) == (0, "valid", "inline")
    assert "PI_LICENCE_URL is ignored" in err
    assert stub.requests == []


def test_licence_url_404_and_garbage(tmp_path, pki, alm_stub):
    stub = alm_stub().respond(Response(404, "not found", content_type="text/plain"))
    env = licence_env(tmp_path, pki, PI_LICENCE_URL=stub.url("/gone"))
    rc, st, _, _ = licence_cmd(env)
    assert (rc, st["status"]) == (1, "rejected")
    assert "HTTP 404" in st["reason"]

    stub.respond(Response(200, "just some text", content_type="text/plain"))
    rc, st, _, _ = licence_cmd(env)
    assert (rc, st["status"]) == (1, "malformed")
    assert "PI_LICENCE_URL" in st["reason"]


# ---- PI_AGENT_LICENCE_REQUIRED --------------------------------------------------

def test_required_stops_the_start_with_77(tmp_path, pki, alm_stub, start_agent):
    token = pki.vendor.sign(claims(days_from_now=-2, not_before_days=-40))
    env = licence_env(tmp_path, pki, PI_LICENCE=token, PI_AGENT_LICENCE_REQUIRED="true")
    rc, agent, child = run_agent(start_agent, env, tmp_path, pid1=True)
    assert rc == 77
    assert child is None  # the dashboard never started
    rec = [r for r in agent.logs() if "not starting the dashboard" in r.get("msg", "")][0]
    assert rec["status"] == "expired"
    assert "expired on" in rec["reason"]
    assert status_file(tmp_path)["status"] == "expired"
    assert_no_secrets(pki, *agent_outputs(agent, tmp_path), extra=[token])


def test_required_with_missing_licence_stops_the_start(tmp_path, pki, start_agent):
    env = licence_env(tmp_path, pki, PI_AGENT_LICENCE_REQUIRED="true")
    rc, _, child = run_agent(start_agent, env, tmp_path)
    assert rc == 77 and child is None


def test_by_default_a_bad_licence_does_not_stop_the_start(tmp_path, pki, start_agent):
    token = pki.stranger.sign(claims())
    env = licence_env(tmp_path, pki, PI_LICENCE=token)
    rc, agent, child = run_agent(start_agent, env, tmp_path)
    assert rc == 0
    assert child["PI_LICENCE_STATUS"] == "bad-signature"
    assert "PI_LICENCE_FILE" not in child
    assert child["PI_LICENCE"] == token  # untouched: the dashboard shows its own notice


# ---- the dashboard's own callback (customer key without PI_ALM_URL) ---------------

def test_customer_key_without_alm_url_is_passed_through(tmp_path, pki, alm_stub, start_agent):
    stub = alm_stub()
    env = licence_env(tmp_path, pki, PI_LICENCE=CUSTOMER_KEY, PI_AGENT_LICENCE_REQUIRED="true")
    rc, agent, child = run_agent(start_agent, env, tmp_path)
    assert rc == 0
    assert child["PI_LICENCE"] == CUSTOMER_KEY
    assert child["PI_LICENCE_STATUS"] == "unverified"
    st = status_file(tmp_path)
    assert (st["status"], st["source"]) == ("unverified", "dashboard")
    assert st["reason"] == "the dashboard performs the ALM callback itself"
    assert stub.requests == []
    assert_no_secrets(pki, *agent_outputs(agent, tmp_path))


def test_alm_check_url_reachable(tmp_path, pki, alm_stub):
    stub = alm_stub()
    env = licence_env(tmp_path, pki, PI_LICENCE=CUSTOMER_KEY, PI_ALM_CHECK_URL=stub.url("/"))
    rc, st, out, err = licence_cmd(env)
    assert (rc, st["status"], st["source"]) == (0, "unverified", "dashboard")
    assert "can be reached" in st["reason"]
    assert stub.requests == []  # a handshake only: the key is never sent
    assert_no_secrets(pki, out, err)


def test_alm_check_url_closed_port_names_the_step(tmp_path, pki, start_agent):
    env = licence_env(tmp_path, pki, PI_LICENCE=CUSTOMER_KEY,
                      PI_ALM_CHECK_URL=f"https://127.0.0.1:{closed_port()}/",
                      PI_ALM_TIMEOUT_SECONDS=3)
    rc, agent, child = run_agent(start_agent, env, tmp_path)
    assert rc == 0  # the default policy starts the dashboard anyway
    assert child["PI_LICENCE_STATUS"] == "unreachable"
    assert child["PI_LICENCE"] == CUSTOMER_KEY
    st = status_file(tmp_path)
    assert st["status"] == "unreachable"
    assert st["reason"].startswith("TCP connect to 127.0.0.1 failed: Connection refused")
    assert "invalid-licence notice" in st["reason"]
    assert_no_secrets(pki, *agent_outputs(agent, tmp_path))


def test_alm_check_url_dns_failure_names_the_step(tmp_path, pki):
    # In a network namespace of its own there is no interface but a downed
    # loopback: the lookup fails there and no packet leaves the machine.
    if subprocess.run(["unshare", "--net", "true"], capture_output=True).returncode != 0:
        pytest.skip("unshare --net is not permitted here")
    env = licence_env(tmp_path, pki, PI_LICENCE=CUSTOMER_KEY,
                      PI_ALM_CHECK_URL="https://alm.example.com/", PI_ALM_TIMEOUT_SECONDS=3)
    p = subprocess.run(["unshare", "--net", str(AGENT), "licence"], env=env, capture_output=True,
                       timeout=60)
    assert p.returncode == 1
    st = json.loads(p.stdout)
    assert st["status"] == "unreachable"
    assert st["reason"].startswith("DNS lookup of alm.example.com failed")
    assert "no egress" in st["reason"]
    assert_no_secrets(pki, p.stdout, p.stderr)


def test_alm_check_url_untrusted_certificate_names_tls(tmp_path, pki, alm_stub):
    stub = alm_stub(cert="untrusted")
    env = licence_env(tmp_path, pki, PI_LICENCE=CUSTOMER_KEY, PI_ALM_CHECK_URL=stub.url("/"),
                      PI_ALM_TIMEOUT_SECONDS=3)
    rc, st, _, _ = licence_cmd(env)
    assert (rc, st["status"]) == (1, "unreachable")
    assert st["reason"].startswith("TLS handshake with localhost failed")


# ---- hand-over details and `pi-agent licence` --------------------------------------

def test_licence_file_belongs_to_the_run_as_user(tmp_path, pki, start_agent):
    nobody = pwd.getpwnam("nobody")
    token = pki.vendor.sign(claims())
    env = licence_env(tmp_path, pki, PI_LICENCE=token, PI_AGENT_RUN_AS="nobody")
    rc, agent, _ = run_agent(start_agent, env, tmp_path,
                             child=["/bin/sh", "-c", 'echo "CHILD-STATUS=$PI_LICENCE_STATUS"'])
    assert rc == 0
    assert b"CHILD-STATUS=valid" in agent.stdout
    st = licence_file(tmp_path).stat()
    assert (st.st_uid, st.st_gid) == (nobody.pw_uid, nobody.pw_gid)
    assert (st.st_mode & 0o777) == 0o600
    status = (tmp_path / "run" / "licence.json").stat()
    assert (status.st_mode & 0o777) == 0o644


def licence_cmd_in_child(tmp_path, licence="something-else"):
    """A child command that runs `pi-agent licence` next to the agent (same
    container, i.e. PID namespace) with another PI_LICENCE, into a file."""
    out = tmp_path / "licence-cmd.json"
    return out, ["/bin/sh", "-c", f'PI_LICENCE={licence} "{AGENT}" licence > "{out}"']


def test_licence_command_reports_the_running_agents_status(tmp_path, pki, start_agent):
    token = pki.vendor.sign(claims(days_from_now=50))
    env = licence_env(tmp_path, pki, PI_LICENCE=token)
    out, child = licence_cmd_in_child(tmp_path)
    rc, agent, _ = run_agent(start_agent, env, tmp_path, child=child, pid1=True)
    assert rc == 0
    # Asked with a different PI_LICENCE while the agent (PID 1) runs: its
    # written view wins, and says so.
    st = json.loads(out.read_text())
    assert (st["status"], st["source"], st["view"]) == ("valid", "inline", "running-agent")
    assert st["days_left"] in (49, 50)
    assert st["writer"]["pid"] == 1 and st["writer"]["start_ticks"] > 0
    assert "view_note" not in st
    assert_no_secrets(pki, out.read_text(), extra=[token])


def test_licence_command_trusts_a_subreaper_under_pid_1(tmp_path, pki):
    """ECS's initProcessEnabled: tini is PID 1, the agent PID 2."""
    token = pki.vendor.sign(claims())
    env = licence_env(tmp_path, pki, PI_LICENCE=token)
    out, child = licence_cmd_in_child(tmp_path)
    inner = " ".join(f"'{a}'" for a in [str(AGENT), "--"] + child)
    p = subprocess.run(["unshare", "--pid", "--fork", "--mount-proc", "--kill-child",
                        "/bin/sh", "-c", inner + "; exit $?"],
                       env=env, capture_output=True, timeout=120)
    assert p.returncode == 0, p.stderr
    st = json.loads(out.read_text())
    assert (st["status"], st["view"]) == ("valid", "running-agent")
    assert st["writer"]["pid"] == 2


def test_licence_command_resolves_afresh_when_the_writer_is_gone(tmp_path, pki, start_agent):
    token = pki.vendor.sign(claims(days_from_now=50))
    env = licence_env(tmp_path, pki, PI_LICENCE=token)
    rc, _, _ = run_agent(start_agent, env, tmp_path, pid1=True)
    assert rc == 0
    assert status_file(tmp_path)["status"] == "valid"
    # The agent is gone: its file says nothing about now.
    rc, st, out, err = licence_cmd(dict(env, PI_LICENCE="something-else"))
    assert (rc, st["status"], st["source"], st["view"]) == (0, "unverified", "dashboard",
                                                             "resolved-now")
    assert st["view_note"].startswith("licence.json was set aside: ")
    assert "resolved afresh" in st["view_note"]
    assert "not running in this container" in st["view_note"] or \
        "no longer the agent" in st["view_note"]
    assert "writer" not in st
    assert "resolving afresh" in err  # the log line, on stderr
    assert_no_secrets(pki, out, err, extra=[token])


def test_licence_command_ignores_a_writer_that_is_not_the_containers_init(tmp_path, pki,
                                                                          start_agent):
    """An agent run by hand on a host (not PID 1, not under PID 1) wrote the
    file: another process asking gets a fresh answer."""
    token = pki.vendor.sign(claims())
    env = licence_env(tmp_path, pki, PI_LICENCE=token)
    out, child = licence_cmd_in_child(tmp_path)
    rc, _, _ = run_agent(start_agent, env, tmp_path, child=child, pid1=False)
    assert rc == 0
    st = json.loads(out.read_text())
    assert (st["status"], st["view"]) == ("unverified", "resolved-now")
    assert "is not this container's PID 1 nor a subreaper under it" in st["view_note"]


@pytest.mark.parametrize("writer,words", [
    (None, "does not name the agent that wrote it"),
    ({"pid": 1, "start_ticks": 1}, "pid 1 is no longer the agent that wrote it"),
    ({"pid": 4000000, "start_ticks": 5}, "is not running in this container"),
])
def test_licence_command_sets_aside_a_file_it_cannot_trust(tmp_path, pki, writer, words):
    run = tmp_path / "run"
    run.mkdir()
    doc = {"status": "valid", "reason": "old", "source": "inline"}
    if writer:
        doc["writer"] = writer
    (run / "licence.json").write_text(json.dumps(doc) + "\n")
    rc, st, _, _ = licence_cmd(licence_env(tmp_path, pki))
    assert (rc, st["status"], st["view"]) == (1, "missing", "resolved-now")
    assert words in st["view_note"]
    assert json.loads((run / "licence.json").read_text()) == doc  # left as it was


def test_stale_licence_file_is_removed(tmp_path, pki, start_agent):
    run = tmp_path / "run"
    run.mkdir()
    (run / "licence").write_text("old licence")
    env = licence_env(tmp_path, pki, PI_LICENCE=pki.stranger.sign(claims()))
    rc, _, child = run_agent(start_agent, env, tmp_path)
    assert rc == 0
    assert not (run / "licence").exists()
    assert child["PI_LICENCE_STATUS"] == "bad-signature"


def test_unusable_run_dir_and_cache_do_not_stop_the_start(tmp_path, pki, alm_stub, start_agent):
    token = pki.vendor.sign(claims())
    stub = alm_stub().respond(licence_response(token))
    blocker = tmp_path / "not-a-dir"
    blocker.write_text("")
    efs = tmp_path / "efs"
    efs.mkdir()
    (efs / ".pi-agent").write_text("a file where the cache directory belongs")
    env = licence_env(tmp_path, pki, PI_LICENCE=CUSTOMER_KEY, PI_ALM_URL=stub.url(),
                      PI_AGENT_RUN_DIR=blocker / "run", PI_EFS_ROOT=efs)
    rc, agent, child = run_agent(start_agent, env, tmp_path)
    assert rc == 0
    assert child["PI_LICENCE_STATUS"] == "valid"
    assert "PI_LICENCE_FILE" not in child  # nothing could be handed over
    logs = agent.logs()
    err = [r for r in logs if r.get("msg") == "cannot create the licence hand-over directory"]
    assert err and err[0]["variable"] == "PI_AGENT_RUN_DIR" and err[0]["level"] == "error"
    # Not the agent's own folder: moved aside (kept, never used), a fresh one made.
    moved = [r for r in logs if r.get("msg", "").startswith("the licence cache folder was not the "
                                                              "agent's own") and r["level"] == "warn"]
    assert moved and moved[0]["path"] == f"{efs}/.pi-agent", logs
    aside = list(efs.glob(".pi-agent.refused-*"))
    assert len(aside) == 1 and aside[0].read_text() == "a file where the cache directory belongs"
    assert (efs / ".pi-agent").is_dir() and (efs / ".pi-agent").stat().st_mode & 0o777 == 0o700
    assert_no_secrets(pki, agent.stdout, agent.stderr, extra=[token])


def test_missing_efs_root_skips_the_cache(tmp_path, pki, alm_stub, start_agent):
    token = pki.vendor.sign(claims())
    stub = alm_stub().respond(licence_response(token))
    env = licence_env(tmp_path, pki, PI_LICENCE=CUSTOMER_KEY, PI_ALM_URL=stub.url(),
                      PI_EFS_ROOT=tmp_path / "no-efs-here")
    rc, agent, child = run_agent(start_agent, env, tmp_path)
    assert (rc, child["PI_LICENCE_STATUS"]) == (0, "valid")
    assert not (tmp_path / "no-efs-here").exists()
    assert any(r.get("msg") == "licence cache skipped: the EFS root is not a directory"
               for r in agent.logs())
    assert not any(r["level"] in ("warn", "error") for r in licence_logs(agent))


def test_licence_command_does_not_write_the_cache(tmp_path, pki, alm_stub):
    token = pki.vendor.sign(claims())
    stub = alm_stub().respond(licence_response(token))
    env = licence_env(tmp_path, pki, PI_LICENCE=CUSTOMER_KEY, PI_ALM_URL=stub.url())
    rc, st, _, _ = licence_cmd(env)
    assert (rc, st["status"]) == (0, "valid")
    assert not (tmp_path / "efs" / ".pi-agent").exists()
    assert not (tmp_path / "run").exists()


# ---- while running ----------------------------------------------------------------

class Running:
    """The agent with a long-running child; always stopped with SIGTERM, so
    that a failed assertion does not leave the child behind."""

    def __init__(self, start_agent, env):
        self.agent = start_agent(["--", "/bin/sleep", "60"], env=env, pid1=False)

    def __enter__(self):
        return self.agent

    def __exit__(self, *exc):
        stop(self.agent)
        self.agent.wait(timeout=60)
        return False


def test_expiry_is_re_evaluated_while_running(tmp_path, pki, start_agent):
    token = pki.vendor.sign(claims(expires_in_seconds=4))
    env = licence_env(tmp_path, pki, PI_LICENCE=token, PI_LICENCE_CHECK_SECONDS=1,
                      PI_LICENCE_WARN_DAYS=0)
    with Running(start_agent, env) as a:
        wait_for(lambda: (tmp_path / "run" / "licence.json").exists(), timeout=30,
                 what="status file")
        assert status_file(tmp_path)["status"] == "valid"
        wait_for(lambda: status_file(tmp_path)["status"] == "expired", timeout=30,
                 what="status expired")
    changes = [r for r in a.logs() if r.get("msg") == "licence status changed"]
    assert len(changes) == 1  # logged once, not every second
    assert changes[0]["status"] == "expired" and changes[0]["level"] == "error"
    assert_no_secrets(pki, *agent_outputs(a, tmp_path), extra=[token])


def test_status_change_keeps_the_licence_file(tmp_path, pki, start_agent):
    # Valid for one day and 3 s; one day of warning: expiring after 3 s.
    token = pki.vendor.sign(claims(expires_in_seconds=86400 + 3))
    env = licence_env(tmp_path, pki, PI_LICENCE=token, PI_LICENCE_CHECK_SECONDS=1,
                      PI_LICENCE_WARN_DAYS=1)
    with Running(start_agent, env) as a:
        wait_for(lambda: (tmp_path / "run" / "licence.json").exists(), timeout=30,
                 what="status file")
        assert status_file(tmp_path)["status"] == "valid"
        wait_for(lambda: status_file(tmp_path)["status"] == "expiring", timeout=30,
                 what="status expiring")
        assert licence_file(tmp_path).read_text() == token
    changes = [r for r in a.logs() if r.get("msg") == "licence status changed"]
    assert [(r["status"], r["level"]) for r in changes] == [("expiring", "warn")]


def test_https_proxy_and_no_proxy_are_honoured(tmp_path, pki, alm_stub):
    token = pki.vendor.sign(claims())
    stub = alm_stub().respond(licence_response(token))
    dead_proxy = f"http://127.0.0.1:{closed_port()}"
    env = licence_env(tmp_path, pki, PI_LICENCE=CUSTOMER_KEY, PI_ALM_URL=stub.url(),
                      PI_ALM_TIMEOUT_SECONDS=2, HTTPS_PROXY=dead_proxy)
    rc, st, _, _ = licence_cmd(env)
    assert (rc, st["status"]) == (1, "unreachable")
    assert stub.requests == []  # everything went to the (dead) proxy

    env["NO_PROXY"] = "localhost"
    rc, st, _, _ = licence_cmd(env)
    assert (rc, st["status"]) == (0, "valid")
    assert len(stub.posts()) == 1


def test_licence_is_refreshed_from_the_alm(tmp_path, pki, alm_stub, start_agent):
    first = pki.vendor.sign(claims(days_from_now=100))
    second = pki.vendor.sign(claims(days_from_now=300))
    stub = alm_stub().respond(licence_response(first), licence_response(second))
    env = licence_env(tmp_path, pki, PI_LICENCE=CUSTOMER_KEY, PI_ALM_URL=stub.url(),
                      PI_LICENCE_REFRESH_SECONDS=1)
    with Running(start_agent, env) as a:
        wait_for(lambda: len(stub.posts()) >= 2, timeout=30, what="a refresh")
        wait_for(lambda: status_file(tmp_path)["days_left"] in (299, 300), timeout=30,
                 what="the refreshed status")
        assert licence_file(tmp_path).read_text() == second
        assert (tmp_path / "efs" / ".pi-agent" / "licence").read_text() == second
    assert any(r.get("msg", "").startswith("licence refreshed from the ALM") for r in a.logs())
    assert_no_secrets(pki, *agent_outputs(a, tmp_path), extra=[first, second])


def test_failed_refresh_keeps_the_current_licence(tmp_path, pki, alm_stub, start_agent):
    token = pki.vendor.sign(claims(days_from_now=100))
    stub = alm_stub().respond(licence_response(token), Response(401, "{}"))
    env = licence_env(tmp_path, pki, PI_LICENCE=CUSTOMER_KEY, PI_ALM_URL=stub.url(),
                      PI_LICENCE_REFRESH_SECONDS=1)
    with Running(start_agent, env) as a:
        # A third request means the first refresh has finished and been handled.
        wait_for(lambda: len(stub.posts()) >= 3, timeout=30, what="two refreshes")
    fails = [r for r in a.logs()
             if r.get("msg") == "licence refresh failed: the current licence stays in use"]
    assert fails and fails[0]["status"] == "rejected" and fails[0]["level"] == "error"
    assert status_file(tmp_path)["status"] == "valid"
    assert licence_file(tmp_path).read_text() == token
