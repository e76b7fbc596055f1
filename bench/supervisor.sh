#!/bin/sh
# Size and idle memory of pi-agent against its peers, measured in one run:
# each supervises `sleep` as PID 1 of a fresh PID namespace, and its VmRSS is
# read once it has settled. Targets: size <= 1.5 MB, idle RSS <= tini-static's.
set -eu
cd "$(dirname "$0")/.."
AGENT=${PI_AGENT_BIN:-build/pi-agent}
[ -x "$AGENT" ] || make
./scripts/install-packages.sh tini dumb-init util-linux

rss_kib() { # rss_kib COMMAND...: VmRSS of COMMAND running as PID 1 supervising sleep
    unshare --pid --fork --mount-proc "$@" sleep 60 >/dev/null 2>&1 &
    outer=$!
    sleep 2
    inner=$(cat /proc/$outer/task/$outer/children | awk '{print $1}')
    rss=$(awk '/^VmRSS:/ {print $2}' /proc/$inner/status)
    kill -TERM "$inner" 2>/dev/null || true
    wait "$outer" 2>/dev/null || true
    echo "$rss"
}

agent_size=$(stat -c %s "$AGENT")
tini=$(command -v tini-static)
dumb=$(command -v dumb-init)

agent_rss=$(PI_EFS_MODE=off PI_AGENT_HEALTH_PORT=0 rss_kib "$AGENT" --)
tini_rss=$(rss_kib "$tini" --)
dumb_rss=$(rss_kib "$dumb" --)

printf '%-12s %12s %14s\n' program "size (bytes)" "idle RSS (KiB)"
printf '%-12s %12s %14s\n' pi-agent "$agent_size" "$agent_rss"
printf '%-12s %12s %14s\n' tini-static "$(stat -c %s "$tini")" "$tini_rss"
printf '%-12s %12s %14s\n' dumb-init "$(stat -c %s "$dumb")" "$dumb_rss"
awk -v a="$agent_rss" -v t="$tini_rss" -v s="$agent_size" 'BEGIN {
    printf "idle RSS ratio pi-agent/tini-static: %.2f (target <= 1.00)\n", a / t
    printf "size: %.2f MB (target <= 1.50 MB)\n", s / 1048576
}'
