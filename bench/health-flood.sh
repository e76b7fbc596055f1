#!/bin/bash
# health-flood.sh: the health endpoint under hostile traffic, against Debian's
# nginx (`return 200`, default worker_connections) in the same run.
#
#   PI_AGENT_BIN=build/pi-agent bench/health-flood.sh
#   BENCH_SECONDS=15 BENCH_IDLE=3000 BENCH_SLOWLORIS=200 (defaults)
#
# For each server in turn: BENCH_IDLE idle connections (each one the server
# closes is opened again), BENCH_SLOWLORIS slowloris connections and a stream
# of garbage, all from 127.0.0.2, for BENCH_SECONDS; meanwhile sequential
# checks from 127.0.0.1: a fresh `GET /health` and a `pi-agent health` run
# (for nginx: `pi-agent health --port`). Prints for both: success rate and
# how many checks were answered within 1 s, p50/p99 of the checks, the
# server's peak descriptor count and its CPU time. Asserts nothing.
#
# The flood (tests/integration/helpers/health_flood.py) targets loopback only,
# opens a bounded number of connections and stops by itself.
set -euo pipefail

AGENT=${PI_AGENT_BIN:-build/pi-agent}
SECONDS_=${BENCH_SECONDS:-15}
IDLE=${BENCH_IDLE:-3000}
SLOW=${BENCH_SLOWLORIS:-200}
HERE=$(cd "$(dirname "$0")" && pwd)
FLOOD="$HERE/../tests/integration/helpers/health_flood.py"

for tool in nginx python3; do
    command -v "$tool" >/dev/null || { echo "health-flood: $tool is missing (make packages-test)" >&2; exit 1; }
done
[ -x "$AGENT" ] || { echo "health-flood: $AGENT is missing: run make first" >&2; exit 1; }
AGENT=$(cd "$(dirname "$AGENT")" && pwd)/$(basename "$AGENT")

work=$(mktemp -d)
agent_pid=""
nginx_pid=""
cleanup() {
    # Never let a failing kill or wait (set -e) skip the rest of the clean-up.
    if [ -n "$nginx_pid" ]; then kill -TERM "$nginx_pid" 2>/dev/null || true; wait "$nginx_pid" 2>/dev/null || true; fi
    if [ -n "$agent_pid" ]; then kill -TERM "$agent_pid" 2>/dev/null || true; wait "$agent_pid" 2>/dev/null || true; fi
    rm -rf "$work"
}
trap cleanup EXIT

free_port() {
    python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'
}
nginx_port=$(free_port)
agent_port=$(free_port)
app_port=$(free_port)

# nginx as a user would run it: Debian's defaults (one worker, the default
# worker_connections), no logs, answering `return 200`.
mkdir -p "$work/tmp"
cat > "$work/nginx.conf" <<EOF
daemon off;
pid $work/nginx.pid;
error_log $work/nginx-error.log warn;
events { }
http {
    access_log off;
    client_body_temp_path $work/tmp;
    proxy_temp_path $work/tmp;
    fastcgi_temp_path $work/tmp;
    uwsgi_temp_path $work/tmp;
    scgi_temp_path $work/tmp;
    server {
        listen 127.0.0.1:$nginx_port;
        location / { return 200 "ok\n"; }
    }
}
EOF
nginx -c "$work/nginx.conf" -p "$work" &
nginx_pid=$!

# The agent supervises a small HTTP app (its "Tomcat") and probes it.
mkdir -p "$work/app/pi" "$work/run"
echo 4.0.0 > "$work/app/pi/version"
env -i PATH="$PATH" \
    PI_AGENT_HEALTH_ADDR=127.0.0.1 PI_AGENT_HEALTH_PORT="$agent_port" \
    PI_AGENT_PROBE_URL="http://127.0.0.1:$app_port/pi/version" PI_AGENT_PROBE_INTERVAL_SECONDS=1 \
    PI_EFS_MODE=off PI_AGENT_HOOKS_DIR="$work/no-hooks" PI_AGENT_LOG_LEVEL=warn \
    PI_AGENT_RUN_DIR="$work/run" PI_AGENT_DRAIN_SECONDS=0 \
    "$AGENT" -- python3 -m http.server "$app_port" --bind 127.0.0.1 --directory "$work/app" \
    > "$work/agent.log" 2>&1 &
agent_pid=$!

check_env=(env -i PATH="$PATH" PI_AGENT_RUN_DIR="$work/run" PI_AGENT_HEALTH_PORT="$agent_port"
           PI_AGENT_HEALTH_ADDR=127.0.0.1)
ready=0
for _ in $(seq 1 100); do
    if "${check_env[@]}" "$AGENT" health >/dev/null 2>&1 &&
       "$AGENT" health --port "$nginx_port" >/dev/null 2>&1; then ready=1; break; fi
    sleep 0.1
done
if [ "$ready" != 1 ]; then
    echo "health-flood: the agent or nginx never became ready:" >&2
    "${check_env[@]}" "$AGENT" health >&2 || true
    tail -n 20 "$work/agent.log" "$work/nginx-error.log" >&2
    exit 1
fi

echo "flood from 127.0.0.2 for ${SECONDS_} s per server: $IDLE idle (reopened when closed)," \
     "$SLOW slowloris, a garbage stream; checks from 127.0.0.1, one after another"
run_flood_agent() {
    "${check_env[@]}" python3 "$FLOOD" --port "$agent_port" --pid "$agent_pid" --no-children \
        --seconds "$SECONDS_" --idle "$IDLE" --slowloris "$SLOW" -- "$AGENT" health > "$work/pi-agent.json"
}
run_flood_nginx() {
    python3 "$FLOOD" --port "$nginx_port" --pid "$nginx_pid" \
        --seconds "$SECONDS_" --idle "$IDLE" --slowloris "$SLOW" -- "$AGENT" health --port "$nginx_port" \
        > "$work/nginx.json"
}
run_flood_nginx
sleep 2 # let nginx's closed connections go before the next flood
run_flood_agent

python3 - "$work/nginx.json" "$work/pi-agent.json" <<'EOF'
import json, sys
rows = [("nginx-return-200", json.load(open(sys.argv[1]))), ("pi-agent", json.load(open(sys.argv[2])))]
fmt = "%-17s %-22s %7s %8s %9s %9s %9s"
print()
print(fmt % ("server", "check", "checks", "success", "within1s", "p50_ms", "p99_ms"))
for name, r in rows:
    for kind, label in (("http", "fresh GET /health"), ("command", "pi-agent health")):
        c = r[kind]
        rate = "-" if c["success_rate"] is None else "%.1f%%" % (100 * c["success_rate"])
        print(fmt % (name, label, c["checks"], rate, c["within_1s"], c["p50_ms"], c["p99_ms"]))
print()
print("%-17s %9s %10s %14s %16s" % ("server", "peak_fds", "cpu_s", "flood_connects", "closed_by_server"))
for name, r in rows:
    print("%-17s %9s %10s %14s %16s" % (name, r["max_fds"], r["cpu_seconds"], r["flood_connects"],
                                        r["closed_by_server"]))
print()
print("target: 100% of checks answered 200 within 1 s, for /health and pi-agent health")
print("(pi-agent health asks the agent's unix socket; for nginx it asks its TCP port)")
EOF
