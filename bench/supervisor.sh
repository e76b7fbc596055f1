#!/bin/sh
# pi-agent against its peers, tini-static and dumb-init, measured in one run
# with the sides interleaved so that a burst of other load hits all of them:
#
#   - size of the binary;
#   - idle memory as PID 1 of a fresh PID namespace supervising `sleep`:
#     VmRSS, and RssAnon (private memory: what a container really pays),
#     median of BENCH_ROUNDS rounds;
#   - idle on-CPU time of pi-agent over 3 s (from /proc/PID/schedstat);
#   - start overhead: `BIN -- /bin/true` against `/bin/true` alone, median of
#     BENCH_LAUNCHES launches each, in blocks of BENCH_BLOCK, sides interleaved.
#
# pi-agent runs with PI_EFS_MODE=off, no licence, its health endpoint on a free
# loopback port and a private run directory. Prints figures, the ratios and
# the targets (RssAnon <= 2.0x tini-static's, start overhead <= tini-static's
# + 1 ms, size <= 1.5 MB); asserts nothing.
set -eu
cd "$(dirname "$0")/.."
AGENT=${PI_AGENT_BIN:-build/pi-agent}
[ -x "$AGENT" ] || { echo "supervisor bench: $AGENT is missing: run make first" >&2; exit 1; }
for tool in tini-static dumb-init unshare python3; do
    command -v "$tool" >/dev/null || { echo "supervisor bench: $tool is missing (make packages-test)" >&2; exit 1; }
done

exec python3 - "$AGENT" "$(command -v tini-static)" "$(command -v dumb-init)" <<'EOF'
import os, shutil, socket, statistics, subprocess, sys, tempfile, time

agent, tini, dumb = (os.path.abspath(p) for p in sys.argv[1:4])
ROUNDS = int(os.environ.get("BENCH_ROUNDS", "5"))
LAUNCHES = int(os.environ.get("BENCH_LAUNCHES", "200"))
BLOCK = int(os.environ.get("BENCH_BLOCK", "20"))

work = tempfile.mkdtemp(prefix="pi-agent-bench-")
with socket.socket() as s:
    s.bind(("127.0.0.1", 0))
    port = s.getsockname()[1]
base = {k: v for k, v in os.environ.items() if not k.startswith(("PI_", "ECS_"))}
agent_env = dict(base, PI_EFS_MODE="off", PI_AGENT_HEALTH_ADDR="127.0.0.1",
                 PI_AGENT_HEALTH_PORT=str(port), PI_AGENT_RUN_DIR=os.path.join(work, "run"),
                 PI_AGENT_HOOKS_DIR=os.path.join(work, "no-hooks"), PI_AGENT_LOG_LEVEL="warn")
sides = [("pi-agent", [agent, "--"], agent_env), ("tini-static", [tini, "--"], base),
         ("dumb-init", [dumb, "--"], base)]


def status_kib(pid, field):
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith(field + ":"):
                return int(line.split()[1])
    return None


def on_cpu_ns(pid):
    with open(f"/proc/{pid}/schedstat") as f:
        return int(f.read().split()[0])


def idle(cmd, env, cpu_window=0.0):
    """(VmRSS, RssAnon, on-CPU ns over cpu_window) of cmd as PID 1 supervising sleep."""
    p = subprocess.Popen(["unshare", "--pid", "--fork", "--mount-proc", "--kill-child"] + cmd +
                         ["sleep", "60"], env=env, stdout=subprocess.DEVNULL,
                         stderr=subprocess.DEVNULL)
    inner = None
    try:
        deadline = time.monotonic() + 10
        while inner is None and time.monotonic() < deadline:
            try:
                with open(f"/proc/{p.pid}/task/{p.pid}/children") as f:
                    kids = f.read().split()
                # Settled: PID 1 has started its child (sleep).
                if kids and open(f"/proc/{kids[0]}/task/{kids[0]}/children").read().split():
                    inner = int(kids[0])
            except OSError:
                pass
            time.sleep(0.05)
        if inner is None:
            raise RuntimeError(f"{cmd[0]} did not start its child")
        time.sleep(1.0)
        cpu = None
        if cpu_window:
            c0 = on_cpu_ns(inner)
            time.sleep(cpu_window)
            cpu = on_cpu_ns(inner) - c0
        return status_kib(inner, "VmRSS"), status_kib(inner, "RssAnon"), cpu
    finally:
        # Stop PID 1 itself (unshare would only wait for it).
        try:
            if inner is not None:
                os.kill(inner, 15)
            else:
                p.terminate()
        except ProcessLookupError:
            pass
        try:
            p.wait(timeout=10)
        except subprocess.TimeoutExpired:
            p.kill()
            p.wait()


def launch(cmd, env):
    t0 = time.perf_counter_ns()
    pid = os.posix_spawn(cmd[0], cmd, env)
    _, status = os.waitpid(pid, 0)
    t = time.perf_counter_ns() - t0
    if os.waitstatus_to_exitcode(status) != 0:
        raise RuntimeError(f"{' '.join(cmd)} failed")
    return t


try:
    # Memory: rounds, the three sides interleaved in each.
    mem = {name: [] for name, _, _ in sides}
    agent_cpu = None
    for r in range(ROUNDS):
        for name, cmd, env in sides:
            window = 3.0 if name == "pi-agent" and r == 0 else 0.0
            rss, anon, cpu = idle(cmd, env, window)
            mem[name].append((rss, anon))
            if cpu is not None:
                agent_cpu = cpu

    # Start overhead: blocks of launches, /bin/true alone as the floor.
    true = shutil.which("true") or "/bin/true"
    starts = {"/bin/true alone": []}
    starts.update({name: [] for name, _, _ in sides})
    null = os.open(os.devnull, os.O_WRONLY)
    saved = os.dup(1), os.dup(2)
    os.dup2(null, 1)
    os.dup2(null, 2)
    try:
        for _ in range(max(1, LAUNCHES // BLOCK)):
            for name, cmd, env in [("/bin/true alone", [], base)] + sides:
                for _ in range(BLOCK):
                    starts[name].append(launch(cmd + [true], env))
    finally:
        os.dup2(saved[0], 1)
        os.dup2(saved[1], 2)
finally:
    shutil.rmtree(work, ignore_errors=True)

floor = statistics.median(starts["/bin/true alone"]) / 1e6
print(f"{ROUNDS} rounds of idle memory (PID 1 supervising sleep), {len(starts['pi-agent'])} launches "
      f"of BIN -- /bin/true per side in blocks of {BLOCK}; sides interleaved")
print(f"{'program':<14} {'size (bytes)':>12} {'VmRSS KiB':>10} {'RssAnon KiB':>12} "
      f"{'start ms':>9} {'overhead ms':>12}")
fig = {}
for name, cmd, _ in sides:
    rss = statistics.median(m[0] for m in mem[name])
    anon = statistics.median(m[1] for m in mem[name])
    start = statistics.median(starts[name]) / 1e6
    fig[name] = (os.stat(cmd[0]).st_size, rss, anon, start - floor)
    print(f"{name:<14} {fig[name][0]:>12} {rss:>10} {anon:>12} {start:>9.3f} {start - floor:>12.3f}")
print(f"{'/bin/true':<14} {'':>12} {'':>10} {'':>12} {floor:>9.3f} {'(floor)':>12}")
a, t = fig["pi-agent"], fig["tini-static"]
print()
print(f"RssAnon pi-agent/tini-static: {a[2] / t[2]:.2f}x (target <= 2.00x)")
print(f"start overhead pi-agent - tini-static: {a[3] - t[3]:+.3f} ms (target <= +1.000 ms)")
print(f"VmRSS pi-agent/tini-static: {a[1] / t[1]:.2f}x")
print(f"size: {a[0] / 1048576:.2f} MB (target <= 1.50 MB)")
try:
    hdr = subprocess.run(["readelf", "-hdlW", agent], capture_output=True, text=True).stdout
    marks = [("PIE", "Position-Independent" in hdr), ("RELRO", "GNU_RELRO" in hdr),
             ("BIND_NOW", "BIND_NOW" in hdr), ("non-exec stack", "GNU_STACK" in hdr and " RWE " not in hdr)]
    print("hardening: " + ", ".join(f"{n} {'yes' if ok else 'NO'}" for n, ok in marks) +
          " (stack protector and FORTIFY are build flags: see the Makefile)")
except OSError:
    pass
if agent_cpu is not None:
    print(f"pi-agent idle on-CPU time: {agent_cpu / 1e6:.3f} ms in 3 s (target < 1 ms)")
EOF
