"""Why a task died, and staying up for the right reasons, against the real
binary: /live apart from /health, the startup budget, the exit status of a
requested stop, the run records (on a tmpfs EFS root shared by runs and by
concurrent agents) and one budget walk per interval for the fleet."""
import json
import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest

from conftest import AGENT, HELPERS, agent_env, wait_for
from efs_helpers import Run, make_image, storage_env

PY = sys.executable
RECORDER = HELPERS / "signal_recorder.py"


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def closed_port():
    """A loopback port nobody listens on: a probe there never passes."""
    return free_port()


def get(port, path):
    import http.client
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
    try:
        conn.request("GET", path)
        resp = conn.getresponse()
        return resp.status, resp.read()
    finally:
        conn.close()


def health_cli(port, *args):
    return subprocess.run([str(AGENT), "health", *args], capture_output=True, text=True, timeout=10,
                          env=agent_env(PI_AGENT_HEALTH_PORT=port, PI_AGENT_HEALTH_ADDR="127.0.0.1"))


def listening(port):
    try:
        socket.create_connection(("127.0.0.1", port), timeout=1).close()
        return True
    except OSError:
        return False


def run_dir_records(run_dir):
    folder = Path(run_dir) / "runs"
    if not folder.is_dir():
        return []
    return [json.loads(p.read_text()) for p in sorted(folder.glob("*.json"))]


@pytest.fixture
def run_dir(tmp_path):
    d = tmp_path / "run"
    d.mkdir()
    return d


def recorder_child(tmp_path, *extra):
    out = tmp_path / "signals"
    return out, ["--", PY, str(RECORDER), str(out), *extra]


def signals_of(out):
    return out.read_text().split() if out.exists() else []


# ---- /live apart from /health ---------------------------------------------------

def test_live_stays_200_while_health_fails_on_a_probe_that_never_passes(tmp_path, run_dir):
    port = free_port()
    out, args = recorder_child(tmp_path)
    r = Run(args, agent_env(PI_AGENT_HEALTH_PORT=port, PI_AGENT_HEALTH_ADDR="127.0.0.1",
                            PI_AGENT_PROBE_URL=f"http://127.0.0.1:{closed_port()}/pi/version",
                            PI_AGENT_PROBE_INTERVAL_SECONDS=1, PI_AGENT_RUN_DIR=run_dir))
    try:
        wait_for(lambda: listening(port), what="health endpoint")
        r.wait_for_log("Tomcat probe failed")
        status, body = get(port, "/health")
        assert status == 503 and json.loads(body)["status"] == "starting"
        status, body = get(port, "/live")
        assert status == 200, body
        live = json.loads(body)
        assert live["status"] == "alive" and live["child_running"] is True and live["reason"] is None
        ready, alive = health_cli(port), health_cli(port, "--live")
        assert ready.returncode == 1 and ready.stdout.startswith("503 starting")
        assert alive.returncode == 0 and alive.stdout.startswith("200 alive"), alive
    finally:
        r.signal_agent(signal.SIGTERM)
        r.wait()


def test_health_live_fails_when_the_child_is_gone(tmp_path, run_dir):
    port = free_port()
    r = Run(["--", "sh", "-c", "exit 3"],
            agent_env(PI_AGENT_HEALTH_PORT=port, PI_AGENT_HEALTH_ADDR="127.0.0.1",
                      PI_AGENT_RESTART="on-failure", PI_AGENT_MAX_RESTARTS=50,
                      PI_AGENT_RUN_DIR=run_dir))
    try:
        wait_for(lambda: listening(port), what="health endpoint")
        r.wait_for_log("restarting the child")
        # between restarts the child is not running: /live says so
        def not_running():
            status, body = get(port, "/live")
            return status == 503 and json.loads(body)["status"] == "child-not-running"
        wait_for(not_running, what="/live 503 child-not-running")
    finally:
        r.signal_agent(signal.SIGTERM)
        r.wait()


# ---- the startup budget ------------------------------------------------------------

def test_startup_budget_sends_one_sigquit_and_fails_live(tmp_path, run_dir):
    port = free_port()
    out, args = recorder_child(tmp_path)
    r = Run(args, agent_env(PI_AGENT_HEALTH_PORT=port, PI_AGENT_HEALTH_ADDR="127.0.0.1",
                            PI_AGENT_PROBE_URL=f"http://127.0.0.1:{closed_port()}/pi/version",
                            PI_AGENT_PROBE_INTERVAL_SECONDS=1, PI_AGENT_STARTUP_TIMEOUT_SECONDS=2,
                            PI_AGENT_RUN_DIR=run_dir))
    wait_for(lambda: listening(port), what="health endpoint")
    wait_for(lambda: (tmp_path / "signals.ready").exists(), what="child ready")
    assert get(port, "/live")[0] == 200
    line = r.wait_for_log("startup budget ran out", timeout=15)[0]
    assert line["level"] == "error" and line["timeout_s"] == 2
    wait_for(lambda: signals_of(out) == ["SIGQUIT"], what="the child's SIGQUIT")
    status, body = get(port, "/live")
    live = json.loads(body)
    assert status == 503 and live["status"] == "startup-timeout"
    assert "PI_AGENT_STARTUP_TIMEOUT_SECONDS=2" in live["reason"]
    cli = health_cli(port, "--live")
    assert cli.returncode == 1 and "startup-timeout" in cli.stdout
    assert "PI_AGENT_STARTUP_TIMEOUT_SECONDS=2" in cli.stdout
    # it stays that way, and the child got exactly one SIGQUIT
    time.sleep(3)
    assert signals_of(out) == ["SIGQUIT"]
    assert len(r.find("startup budget ran out")) == 1
    assert get(port, "/live")[0] == 503
    r.signal_agent(signal.SIGTERM)
    assert r.wait() == 143
    assert signals_of(out) == ["SIGQUIT", "SIGTERM"]
    ended = r.find("run ended")[0]
    assert ended["reason"] == "startup-timeout" and ended["exit_status"] == 143
    assert run_dir_records(run_dir)[-1]["reason"] == "startup-timeout"


def test_startup_budget_never_applies_once_ready(tmp_path, run_dir):
    port, dash = free_port(), free_port()
    out = tmp_path / "signals"
    # a dashboard that answers at once and records its signals
    script = (f"import http.server, signal, sys\n"
              f"signal.signal(signal.SIGQUIT, lambda *a: open({str(out)!r}, 'a').write('SIGQUIT\\n'))\n"
              f"signal.signal(signal.SIGTERM, lambda *a: sys.exit(143))\n"
              f"class H(http.server.BaseHTTPRequestHandler):\n"
              f"    def do_GET(self):\n"
              f"        self.send_response(200); self.send_header('Content-Length', '1'); self.end_headers(); self.wfile.write(b'4')\n"
              f"    def log_message(self, *a): pass\n"
              f"http.server.HTTPServer(('127.0.0.1', {dash}), H).serve_forever()\n")
    r = Run(["--", PY, "-c", script],
            agent_env(PI_AGENT_HEALTH_PORT=port, PI_AGENT_HEALTH_ADDR="127.0.0.1",
                      PI_AGENT_PROBE_URL=f"http://127.0.0.1:{dash}/pi/version",
                      PI_AGENT_PROBE_INTERVAL_SECONDS=1, PI_AGENT_STARTUP_TIMEOUT_SECONDS=2,
                      PI_AGENT_RUN_DIR=run_dir))
    r.wait_for_log("ready: /health answers 200", timeout=15)
    time.sleep(3)  # past the budget
    assert get(port, "/live")[0] == 200
    assert not r.find("startup budget ran out")
    assert signals_of(out) == []
    r.signal_agent(signal.SIGTERM)
    r.wait()
    rec = run_dir_records(run_dir)[-1]
    assert rec["reason"] == "stopped" and rec["ready_ms"] and rec["probe"].startswith("ok")


def test_startup_timeout_setting_is_checked(run_dir):
    for bad in ("-1", "86401", "soon"):
        r = subprocess.run([str(AGENT), "--", "true"], capture_output=True, text=True, timeout=10,
                           env=agent_env(PI_AGENT_STARTUP_TIMEOUT_SECONDS=bad, PI_AGENT_RUN_DIR=run_dir))
        assert r.returncode == 78
        assert "PI_AGENT_STARTUP_TIMEOUT_SECONDS" in r.stderr


# ---- the exit status of a requested stop ---------------------------------------------

@pytest.mark.parametrize("setting,want", [(None, 143), ("child", 143), ("0", 0), ("7", 7)])
def test_requested_stop_exits_with_the_configured_status(tmp_path, run_dir, setting, want):
    out, args = recorder_child(tmp_path)
    r = Run(args, agent_env(PI_AGENT_STOP_EXIT_STATUS=setting, PI_AGENT_RUN_DIR=run_dir))
    wait_for(lambda: (tmp_path / "signals.ready").exists(), what="child ready")
    r.signal_agent(signal.SIGTERM)
    assert r.wait() == want
    ended = r.find("run ended")[0]
    assert ended["reason"] == "stopped" and ended["exit_status"] == want
    rec = run_dir_records(run_dir)[-1]
    assert rec["reason"] == "stopped" and rec["exit_status"] == want and rec["stop_ms"]


def test_a_crash_keeps_its_own_status(run_dir):
    r = Run(["--", "sh", "-c", "exit 3"], agent_env(PI_AGENT_STOP_EXIT_STATUS="0",
                                                   PI_AGENT_RUN_DIR=run_dir))
    assert r.wait() == 3
    assert run_dir_records(run_dir)[-1]["reason"] == "exited"
    r = Run(["--", "sh", "-c", "kill -SEGV $$"], agent_env(PI_AGENT_STOP_EXIT_STATUS="0",
                                                          PI_AGENT_RUN_DIR=run_dir))
    assert r.wait() == 128 + signal.SIGSEGV
    rec = run_dir_records(run_dir)[-1]
    assert rec["reason"] == "signal" and rec["exit_status"] == 139


def test_a_child_killed_after_the_grace_keeps_137(tmp_path, run_dir):
    out, args = recorder_child(tmp_path, "ignore-term")
    r = Run(args, agent_env(PI_AGENT_STOP_EXIT_STATUS="0", PI_AGENT_STOP_GRACE_SECONDS=1,
                            PI_AGENT_RUN_DIR=run_dir))
    wait_for(lambda: (tmp_path / "signals.ready").exists(), what="child ready")
    r.signal_agent(signal.SIGTERM)
    assert r.wait() == 137
    rec = run_dir_records(run_dir)[-1]
    assert rec["reason"] == "killed-after-grace" and rec["exit_status"] == 137
    assert "PI_AGENT_STOP_GRACE_SECONDS" in rec["detail"]


def test_stop_exit_status_setting_is_checked(run_dir):
    r = subprocess.run([str(AGENT), "--", "true"], capture_output=True, text=True, timeout=10,
                       env=agent_env(PI_AGENT_STOP_EXIT_STATUS="256", PI_AGENT_RUN_DIR=run_dir))
    assert r.returncode == 78
    assert "PI_AGENT_STOP_EXIT_STATUS" in r.stderr and "child" in r.stderr
    # a configuration error is a run that ended too
    rec = run_dir_records(run_dir)[-1]
    assert rec["reason"] == "config" and rec["exit_status"] == 78


# ---- run records on a tmpfs EFS root ------------------------------------------------

@pytest.fixture
def efs(tmp_path):
    """A tmpfs mounted at tmp_path/efs on the host (so that every run sees
    the same one), and a dashboard image; unmounted afterwards."""
    root = tmp_path / "efs"
    root.mkdir()
    subprocess.run(["mount", "-t", "tmpfs", "-o", "size=64m,mode=0755", "tmpfs", str(root)],
                   check=True)
    home = make_image(tmp_path / "image" / "Dashboard")
    try:
        yield home, root
    finally:
        subprocess.run(["umount", "-l", str(root)], check=False)


def efs_env(home, root, tmp_path, **extra):
    return storage_env(home, root, PI_AGENT_RUN_DIR=tmp_path / "local-run", **extra)


def runs_on(root):
    return sorted((root / ".pi-agent" / "runs").glob("*.json"))


def test_records_across_runs_on_efs(efs, tmp_path):
    home, root = efs
    env = efs_env(home, root, tmp_path)
    # 1: a crash
    r1 = Run(["--", "sh", "-c", "exit 3"], env)
    assert r1.wait() == 3
    assert not r1.find("previous run")
    assert len(runs_on(root)) == 1
    # 2: tells of run 1; asked to stop, its Tomcat ignores SIGTERM, and the
    # agent is killed outright (SIGKILL) within the grace, as ECS does when
    # stopTimeout is shorter than drain + grace
    out, args = recorder_child(tmp_path, "ignore-term")
    r2 = Run(args, dict(env, PI_AGENT_STOP_GRACE_SECONDS="60"))
    prev = r2.wait_for_log("previous run")[0]
    assert (prev["reason"], prev["exit_status"], prev["ran_s"]) == ("exited", 3, 0)
    assert prev["task"] and prev["level"] == "warn"
    wait_for(lambda: (tmp_path / "signals.ready").exists(), what="child ready")
    r2.signal_agent(signal.SIGTERM)
    r2.wait_for_log("stopping the child")
    # the stop request reaches the record while the run lives (a worker writes it)
    newest = lambda: json.loads(runs_on(root)[-1].read_text())  # noqa: E731
    wait_for(lambda: newest()["stop_ms"], what="stop_ms in the live record")
    assert newest()["end_ms"] is None
    r2.signal_agent(signal.SIGKILL)
    r2.wait()
    # 3: tells of the killed run 2 with the stopTimeout hint
    r3 = Run(["--", "true"], env)
    assert r3.wait() == 0
    prev = r3.find("previous run")[0]
    assert prev["reason"] == "killed" and prev["exit_status"] == 137
    assert prev["ran_s_at_least"] is True
    assert "killed while it stopped" in prev["hint"] and "stopTimeout" in prev["hint"]
    # 4: tells of run 3, a clean exit
    r4 = Run(["--", "true"], env)
    assert r4.wait() == 0
    prev = r4.find("previous run")[0]
    assert (prev["reason"], prev["exit_status"], prev["level"]) == ("exited", 0, "info")

    files = runs_on(root)
    assert len(files) == 4
    recs = [json.loads(p.read_text()) for p in files]
    assert [r["reason"] for r in recs] == ["exited", None, "exited", "exited"]
    assert recs[1]["end_ms"] is None  # run 2 never completed its record
    for p in files:
        st = p.stat()
        assert st.st_uid == 0 and (st.st_mode & 0o777) == 0o644
    folder = (root / ".pi-agent" / "runs").stat()
    assert folder.st_uid == 0 and (folder.st_mode & 0o022) == 0
    assert not list((root / ".pi-agent" / "runs").glob(".tmp-*"))
    # only the killed run left its lock file behind (unheld)
    assert [p.name for p in (root / ".pi-agent" / "runs").glob("*.live")] == [files[1].name + ".live"]
    assert not (tmp_path / "local-run" / "runs").exists()  # on EFS, not in the run dir

    # check prints them, newest first
    c = subprocess.run([str(AGENT), "check"], capture_output=True, text=True, timeout=30,
                       env=env)
    runs = [l for l in c.stdout.splitlines() if l.startswith("ok    run ")]
    assert len(runs) == 4
    assert "killed, exit 137, ran at least" in runs[2]
    assert "exited, exit 3" in runs[3]
    # /metrics and EMF count the abnormal ends of the last hour: the crash and the kill
    port = free_port()
    r5 = Run(["--", "sleep", "30"], dict(env, PI_AGENT_HEALTH_PORT=str(port),
                                         PI_AGENT_HEALTH_ADDR="127.0.0.1"))
    try:
        wait_for(lambda: listening(port), what="health endpoint")
        status, body = get(port, "/metrics")
        assert "\npi_agent_recent_abnormal_exits 2\n" in body.decode()
        status, body = get(port, "/health")
        prev = json.loads(body)["previous_run"]
        assert prev["reason"] == "exited" and prev["exit_status"] == 0
    finally:
        r5.signal_agent(signal.SIGTERM)
        r5.wait()


def test_only_the_newest_100_are_kept(efs, tmp_path):
    home, root = efs
    env = efs_env(home, root, tmp_path)
    Run(["--", "true"], env).wait()
    folder = root / ".pi-agent" / "runs"
    template = json.loads(runs_on(root)[0].read_text())
    for i in range(120):  # old runs, written as the agent writes them
        rec = dict(template, start_ms=1000000000000 + i, end_ms=1000000000001 + i)
        (folder / f"{1000000000000 + i:013d}-{i:016x}.json").write_text(json.dumps(rec) + "\n")
    (folder / "notes.txt").write_text("not a record: left alone\n")
    r = Run(["--", "true"], env)
    assert r.wait() == 0
    names = sorted(p.name for p in folder.glob("*.json"))
    assert len(names) == 100
    assert names[-1] == runs_on(root)[-1].name and names[0] == f"{1000000000000 + 22:013d}-{22:016x}.json"
    assert (folder / "notes.txt").exists()


def test_concurrent_agents_keep_their_own_records(efs, tmp_path):
    home, root = efs
    env = efs_env(home, root, tmp_path)
    assert Run(["--", "sh", "-c", "exit 5"], env).wait() == 5
    runs = []
    for i in range(3):
        out = tmp_path / f"signals{i}"
        runs.append((Run(["--", PY, str(RECORDER), str(out)], env), out))
    for r, out in runs:
        wait_for(lambda: Path(str(out) + ".ready").exists(), what="children ready")
        r.wait_for_log("child started")
    # a fourth start while three run: none of the running ones is "killed"
    r4 = Run(["--", "true"], env)
    assert r4.wait() == 0
    prev = r4.find("previous run")
    assert len(prev) == 1 and (prev[0]["reason"], prev[0]["exit_status"]) == ("exited", 5)
    for r, _ in runs:
        r.signal_agent(signal.SIGTERM)
    for r, _ in runs:
        assert r.wait() == 143
    recs = [json.loads(p.read_text()) for p in runs_on(root)]
    assert len(recs) == 5
    assert sorted(r["reason"] for r in recs) == ["exited", "exited", "stopped", "stopped", "stopped"]
    assert not list((root / ".pi-agent" / "runs").glob(".tmp-*"))


def test_a_planted_link_is_refused(efs, tmp_path):
    home, root = efs
    (root / ".pi-agent").mkdir()
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    (root / ".pi-agent" / "runs").symlink_to(elsewhere)
    r = Run(["--", "true"], efs_env(home, root, tmp_path))
    assert r.wait() == 0
    warn = r.find("run records are not kept")
    assert warn and "runs" in warn[0]["error"] and warn[0]["level"] == "warn"
    assert list(elsewhere.iterdir()) == []


def test_a_folder_writable_by_others_is_refused(efs, tmp_path):
    home, root = efs
    (root / ".pi-agent").mkdir(mode=0o755)
    (root / ".pi-agent" / "runs").mkdir()
    os.chmod(root / ".pi-agent" / "runs", 0o777)
    r = Run(["--", "true"], efs_env(home, root, tmp_path))
    assert r.wait() == 0
    warn = r.find("run records are not kept")
    assert warn and "writable by it alone" in warn[0]["error"]
    assert list((root / ".pi-agent" / "runs").iterdir()) == []


# ---- one budget walk per interval for the fleet ----------------------------------------

def test_four_agents_share_one_walk_per_interval(efs, tmp_path):
    home, root = efs
    (root / "files").mkdir(parents=True, exist_ok=True)
    for i in range(50):
        (root / "files" / f"f{i}").write_bytes(b"x" * 1000)
    env = efs_env(home, root, tmp_path, PI_EFS_SCAN_INTERVAL_SECONDS=10)
    runs = [Run(["--", "sleep", "60"], env) for _ in range(4)]
    try:
        def evaluations():
            return [[x for x in r.records() if x.get("scan")] for r in runs]
        # every agent: its first scan and one rescan (about 10 s later)
        wait_for(lambda: all(len(e) >= 2 for e in evaluations()), timeout=40,
                 what="two evaluations per agent")
        evs = [x for e in evaluations() for x in e[:2]]
        walked = [x for x in evs if x["scan"] == "walked"]
        shared = [x for x in evs if x["scan"] == "shared"]
        # 8 evaluations within about one interval and a half: at most two walks
        assert 1 <= len(walked) <= 2, [x["scan"] for x in evs]
        assert len(shared) == 8 - len(walked)
        # a shared evaluation reports the walk's figures
        assert len({x["total_bytes"] for x in evs}) == 1
        assert all(0 <= x["scan_age_s"] < 10 for x in shared)
        rec = (root / ".pi-agent" / "scan").read_text()
        assert rec.startswith("pi-agent-scan/1\n") and rec.endswith("end\n")
    finally:
        for r in runs:
            r.signal_agent(signal.SIGTERM)
        for r in runs:
            r.wait()


def test_a_stale_or_foreign_scan_record_means_a_walk(efs, tmp_path):
    home, root = efs
    env = efs_env(home, root, tmp_path, PI_EFS_SCAN_INTERVAL_SECONDS=10)
    (root / ".pi-agent").mkdir(mode=0o755)
    # an old record (an hour ago), a forged one would say 0 bytes
    old = int(time.time() * 1000) - 3600 * 1000
    (root / ".pi-agent" / "scan").write_text(
        f"pi-agent-scan/1\nwriter 0123456789abcdef\ntime_ms {old}\ntotal_bytes 0\nfiles 0\nerrors 0\n"
        "scan_seconds 0\nend\n")
    r = Run(["--", "sleep", "30"], env)
    try:
        first = r.wait_for(lambda: [x for x in r.records() if x.get("scan")], "first scan")[0]
        assert first["scan"] == "walked"
    finally:
        r.signal_agent(signal.SIGTERM)
        r.wait()
    # the record is now this walk's, and fresh
    text = (root / ".pi-agent" / "scan").read_text()
    assert f"time_ms {old}\n" not in text


def test_a_start_stopped_by_the_licence_is_recorded_and_told(run_dir):
    env = agent_env(PI_AGENT_LICENCE_REQUIRED="true", PI_AGENT_RUN_DIR=run_dir)
    r = Run(["--", "true"], env)
    assert r.wait() == 77
    assert r.find("run ended")[0]["reason"] == "licence"
    rec = run_dir_records(run_dir)[-1]
    assert (rec["reason"], rec["exit_status"]) == ("licence", 77) and rec["detail"]
    # a crash loop of such starts: each tells of the one before
    r = Run(["--", "true"], env)
    assert r.wait() == 77
    prev = r.find("previous run")
    assert prev and (prev[0]["reason"], prev[0]["exit_status"]) == ("licence", 77)
    assert len(run_dir_records(run_dir)) == 2
