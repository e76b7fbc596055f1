"""What an idle or short-lived agent does not do: no licence worker when
there is no licence (the start path forks nothing before the child)."""
from conftest import agent_env


def child_pid_in_namespace(start_agent, tmp_path, **env):
    out = tmp_path / "pid"
    agent = start_agent(["--", "sh", "-c", f"echo $$ > {out}"], env=agent_env(**env))
    assert agent.wait() == 0
    return int(out.read_text())


def test_no_licence_worker_without_a_licence(start_agent, tmp_path):
    # PID 1 in a fresh namespace: the child is pid 2 only if nothing was
    # forked before it (EFS off, no hooks, no licence).
    assert child_pid_in_namespace(start_agent, tmp_path) == 2
    # With a licence to resolve, the worker still runs first.
    assert child_pid_in_namespace(start_agent, tmp_path, PI_LICENCE="ACME-CUSTOMER-0001") == 3
