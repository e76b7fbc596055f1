"""Licence outcomes in the container: an offline licence, a customer key
exchanged with the HTTPS ALM stub, and the ALM down with a licence cached on
the EFS volume by an earlier task. No test output may hold the licence."""
import json

from dockerlib import docker, http_get

PUBKEY = "/pki/licence-public-key.pem"
CA = "/pki/ca.pem"


def licence_check(doc):
    return doc["checks"]["licence"]


def assert_no_secret(d, *secrets):
    logs = d.logs()
    _, health = http_get(f"http://127.0.0.1:{d.health_port}/health")
    _, metrics = http_get(f"http://127.0.0.1:{d.health_port}/metrics")
    for s in secrets:
        assert s not in logs
        assert s.encode() not in health
        assert s.encode() not in metrics


def test_offline_licence_is_valid_and_handed_to_the_dashboard(dashboards, alm_stub):
    token = alm_stub.sign("--sub", "offline-customer-7", "--days", "200")
    d = dashboards("offline", env={"PI_LICENCE": token, "PI_LICENCE_PUBLIC_KEY_FILE": PUBKEY,
                                   "PI_EFS_MODE": "off"},
                   volumes=[alm_stub.mount()]).start()
    doc = d.wait_ready()
    lic = licence_check(doc)
    assert lic["status"] == "valid", lic
    assert lic["source"] == "inline"
    assert lic["days_left"] in (199, 200)
    # The dashboard sees the status the agent handed over: the status file,
    # and PI_LICENCE_STATUS in Tomcat's environment (the page shows it).
    status = json.loads(d.exec("cat", "/run/pi-agent/licence.json").stdout)
    assert status["status"] == "valid"
    page = http_get(f"http://127.0.0.1:{d.tomcat_port}/pi/")[1].decode()
    assert 'class="ok">valid<' in page
    assert_no_secret(d, token, token.split(".")[2])


def test_customer_key_exchanged_with_the_alm_stub(dashboards, alm_stub):
    alm_stub.start()
    key = "customer-key-for-container-test"
    d = dashboards("alm", env={"PI_LICENCE": key, "PI_ALM_URL": alm_stub.url,
                               "PI_ALM_CA_FILE": CA, "PI_LICENCE_PUBLIC_KEY_FILE": PUBKEY,
                               "PI_DEPLOYMENT_ID": "container-test", "PI_EFS_MODE": "off"},
                   volumes=[alm_stub.mount()]).start()
    lic = licence_check(d.wait_ready())
    assert lic["status"] == "valid", lic
    assert lic["source"] == "alm"
    assert_no_secret(d, key)


def test_rejected_key_with_licence_required_stops_the_start(dashboards, alm_stub):
    alm_stub.start()
    d = dashboards("rejected", env={"PI_LICENCE": "rejected-key", "PI_ALM_URL": alm_stub.url,
                                    "PI_ALM_CA_FILE": CA, "PI_LICENCE_PUBLIC_KEY_FILE": PUBKEY,
                                    "PI_AGENT_LICENCE_REQUIRED": "true", "PI_EFS_MODE": "off"},
                   volumes=[alm_stub.mount()]).start()
    docker("wait", d.name, timeout=120)
    assert d.exit_code() == 77
    assert "Server startup" not in d.logs()  # Tomcat never started
    assert_no_secret(d, "rejected-key")


def test_alm_down_uses_the_licence_cached_on_efs(dashboards, alm_stub, volume):
    efs = volume("licence-cache")
    key = "customer-key-cached"
    env = {"PI_LICENCE": key, "PI_ALM_URL": alm_stub.url, "PI_ALM_CA_FILE": CA,
           "PI_LICENCE_PUBLIC_KEY_FILE": PUBKEY, "PI_ALM_TIMEOUT_SECONDS": "5"}
    mounts = [alm_stub.mount(), f"{efs}:/mnt/efs"]

    alm_stub.start()
    first = dashboards("cache-1", env=env, volumes=mounts).start()
    assert licence_check(first.wait_ready())["source"] == "alm"
    assert first.exec("test", "-s", "/mnt/efs/.pi-agent/licence").returncode == 0
    assert first.stop() == 143
    alm_stub.stop()

    second = dashboards("cache-2", env=env, volumes=mounts).start()
    lic = licence_check(second.wait_ready())
    assert lic["status"] == "valid", lic
    assert lic["source"] == "cache"
    assert_no_secret(second, key)


def test_alm_down_without_a_cache_is_unreachable_but_the_dashboard_starts(dashboards, alm_stub):
    # Nothing listens on the stub's port: the default policy starts the
    # dashboard anyway so users see the product's own notice.
    d = dashboards("unreachable", env={"PI_LICENCE": "customer-key-no-cache",
                                       "PI_ALM_URL": alm_stub.url, "PI_ALM_CA_FILE": CA,
                                       "PI_LICENCE_PUBLIC_KEY_FILE": PUBKEY,
                                       "PI_ALM_TIMEOUT_SECONDS": "3", "PI_EFS_MODE": "off"},
                   volumes=[alm_stub.mount()]).start()
    lic = licence_check(d.wait_ready())
    assert lic["status"] == "unreachable", lic
    assert lic["reason"]


def test_expired_offline_licence_is_reported_and_the_dashboard_still_starts(dashboards, alm_stub):
    token = alm_stub.sign("--sub", "offline-customer-8", "--nbf-days", "-30", "--days", "-3")
    d = dashboards("expired", env={"PI_LICENCE": token, "PI_LICENCE_PUBLIC_KEY_FILE": PUBKEY,
                                   "PI_EFS_MODE": "off"},
                   volumes=[alm_stub.mount()]).start()
    lic = licence_check(d.wait_ready())
    assert lic["status"] == "expired", lic
    assert lic["reason"]
    # The product shows its own notice: the page gets the status, not "valid".
    page = http_get(f"http://127.0.0.1:{d.tomcat_port}/pi/")[1].decode()
    assert 'class="bad">expired<' in page
    errors = [r for r in d.records() if r["level"] == "error"]
    assert errors, "an unusable licence is logged at error level"
    assert_no_secret(d, token, token.split(".")[2])
