#!/bin/bash
# health-wrk.sh: load on pi-agent's /health against Debian's nginx with one
# worker answering `return 200`, in the same run, on loopback. Prints
# requests per second, p50 and p99 latency for both and the ratio.
#
#   PI_AGENT_BIN=build/pi-agent bench/health-wrk.sh
#   BENCH_SECONDS=5 BENCH_ROUNDS=3 BENCH_CONNECTIONS=32 BENCH_THREADS=1 (defaults)
#
# Both servers answer from memory; the agent's /health is its full JSON
# readiness report (about 800 bytes), nginx's body is 3 bytes. Each load run
# is bounded by BENCH_SECONDS and stops by itself.
set -euo pipefail

AGENT=${PI_AGENT_BIN:-build/pi-agent}
SECONDS_=${BENCH_SECONDS:-5}
CONNS=${BENCH_CONNECTIONS:-32}
THREADS=${BENCH_THREADS:-1}
ROUNDS=${BENCH_ROUNDS:-3}

for tool in wrk nginx python3; do
    command -v "$tool" >/dev/null || { echo "health-wrk: $tool is missing (make packages-test)" >&2; exit 1; }
done
[ -x "$AGENT" ] || { echo "health-wrk: $AGENT is missing: run make first" >&2; exit 1; }

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

# nginx: one worker, no logs, keep-alive without a request limit (like the agent).
mkdir -p "$work/tmp"
cat > "$work/nginx.conf" <<EOF
worker_processes 1;
daemon off;
pid $work/nginx.pid;
error_log $work/nginx-error.log warn;
events { worker_connections 1024; }
http {
    access_log off;
    keepalive_requests 100000000;
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

# The agent supervises a sleeping child and probes nginx as its "Tomcat".
env -i PATH="$PATH" \
    PI_AGENT_HEALTH_ADDR=127.0.0.1 PI_AGENT_HEALTH_PORT="$agent_port" \
    PI_AGENT_PROBE_URL="http://127.0.0.1:$nginx_port/pi/version" PI_AGENT_PROBE_INTERVAL_SECONDS=1 \
    PI_EFS_MODE=off PI_AGENT_HOOKS_DIR="$work/no-hooks" PI_AGENT_LOG_LEVEL=warn \
    PI_AGENT_RUN_DIR="$work" PI_AGENT_DRAIN_SECONDS=0 \
    "$AGENT" -- sleep 3600 > "$work/agent.log" 2>&1 &
agent_pid=$!

ready=0
for _ in $(seq 1 100); do
    if "$AGENT" health --port "$agent_port" >/dev/null 2>&1; then ready=1; break; fi
    sleep 0.1
done
if [ "$ready" != 1 ]; then
    echo "health-wrk: the agent never became ready:" >&2
    "$AGENT" health --port "$agent_port" >&2 || true
    tail -n 20 "$work/agent.log" >&2
    exit 1
fi

# wrk prints latencies as 123.45us, 1.23ms or 1.02s: convert to ms.
to_ms() {
    awk -v v="$1" 'BEGIN {
        n = v + 0
        if (v ~ /us$/) n /= 1000; else if (v ~ /ms$/) n = n; else if (v ~ /s$/) n *= 1000
        printf "%.3f", n }'
}

run_wrk() { # name url
    local out="$work/wrk.txt"
    wrk -t"$THREADS" -c"$CONNS" -d"${SECONDS_}s" --latency "$2" > "$out"
    local rps p50 p99 errors
    rps=$(awk '/^Requests\/sec:/ { print $2 }' "$out")
    p50=$(to_ms "$(awk '$1 == "50%" { print $2 }' "$out")")
    p99=$(to_ms "$(awk '$1 == "99%" { print $2 }' "$out")")
    errors=$(awk '/Non-2xx or 3xx responses:/ { print "non-2xx:" $NF } /Socket errors:/ { print "socket-errors" }' "$out" | paste -sd, -)
    printf '%-7s %-18s %12s %10s %10s  %s\n' "$round" "$1" "$rps" "$p50" "$p99" "${errors:-}"
    echo "$1 $rps $p50 $p99" >> "$work/results.txt"
}

# The machine may be shared: alternate the targets over ROUNDS rounds and
# report the median of each figure, so a burst of other load hits both.
echo "wrk: $THREADS thread(s), $CONNS connections, ${SECONDS_} s per run, $ROUNDS rounds, loopback"
printf '%-7s %-18s %12s %10s %10s\n' round target requests/s p50_ms p99_ms
: > "$work/results.txt"
for round in $(seq 1 "$ROUNDS"); do
    run_wrk nginx-return-200 "http://127.0.0.1:$nginx_port/"
    run_wrk pi-agent-health "http://127.0.0.1:$agent_port/health"
done

median() { # target column
    awk -v t="$1" -v c="$2" '$1 == t { print $c }' "$work/results.txt" | sort -g |
        awk '{ v[NR] = $1 } END { if (NR % 2) print v[(NR + 1) / 2]; else printf "%.3f\n", (v[NR / 2] + v[NR / 2 + 1]) / 2 }'
}
echo
printf '%-7s %-18s %12s %10s %10s\n' median target requests/s p50_ms p99_ms
for t in nginx-return-200 pi-agent-health; do
    printf '%-7s %-18s %12s %10s %10s\n' "" "$t" "$(median "$t" 2)" "$(median "$t" 3)" "$(median "$t" 4)"
done
awk -v a="$(median pi-agent-health 2)" -v n="$(median nginx-return-200 2)" \
    'BEGIN { printf "ratio pi-agent/nginx (median requests/s): %.2f\n", (n > 0 ? a / n : 0) }'

# Checks must stay cheap: the agent's CPU time for the whole run, including
# the load, from /proc (utime + stime, clock ticks).
ticks=$(getconf CLK_TCK)
awk -v t="$ticks" '{ printf "pi-agent CPU time so far: %.2f s\n", ($14 + $15) / t }' "/proc/$agent_pid/stat"
