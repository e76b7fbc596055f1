#!/bin/sh
# The storage budget walk against du, in the same run on the same tree.
#
# Builds 200,000 small files in 2,000 folders (FILES/DIRS override), warms the
# cache, then times `pi-agent du TREE` and `du -s -x --apparent-size -b TREE`
# alternately RUNS times (default 7) and prints the median wall time of each,
# whether the byte counts agree, and the scan's peak memory (max RSS of the
# pi-agent du process; the walk in the agent's scan worker is the same code).
# Target: pi-agent no slower than du.
set -eu
cd "$(dirname "$0")/.."
AGENT=${PI_AGENT_BIN:-build/pi-agent}
[ -x "$AGENT" ] || make
FILES=${FILES:-200000}
DIRS=${DIRS:-2000}
RUNS=${RUNS:-7}
[ -x /usr/bin/time ] || ./scripts/install-packages.sh time

TREE=$(mktemp -d "${TMPDIR:-/tmp}/pi-efs-bench-XXXXXX")
trap 'rm -rf "$TREE"' EXIT INT TERM

echo "building $FILES files in $DIRS folders under $TREE ..."
per=$((FILES / DIRS))
python3 - "$TREE" "$DIRS" "$per" <<'PY'
import os, sys
root, dirs, per = sys.argv[1], int(sys.argv[2]), int(sys.argv[3])
for d in range(dirs):
    sub = os.path.join(root, f"group{d // 100:02d}", f"folder{d:04d}")
    os.makedirs(sub)
    for f in range(per):
        with open(os.path.join(sub, f"file{f:03d}.png"), "wb") as fh:
            fh.write(b"x" * ((d * per + f) % 4096))
PY

now_ns() { date +%s%N; }
elapsed_ms() { # elapsed_ms COMMAND...: wall time in milliseconds
    t0=$(now_ns); "$@" >/dev/null; t1=$(now_ns)
    echo $(((t1 - t0) / 1000000))
}
median() { sort -n | awk '{a[NR]=$1} END {print a[int((NR + 1) / 2)]}'; }

# warm the dentry and inode caches
du -s -x --apparent-size -b "$TREE" >/dev/null
"$AGENT" du "$TREE" >/dev/null

agent_bytes=$("$AGENT" du "$TREE" | awk -v t="$TREE" '$2 == t {print $1}')
agent_files=$("$AGENT" du "$TREE" | awk '$2 == "files" {print $1}')
du_bytes=$(du -s -x --apparent-size -b "$TREE" | awk '{print $1}')

agent_times=""
du_times=""
i=0
while [ $i -lt "$RUNS" ]; do
    agent_times="$agent_times $(elapsed_ms "$AGENT" du "$TREE")"
    du_times="$du_times $(elapsed_ms du -s -x --apparent-size -b "$TREE")"
    i=$((i + 1))
done
# shellcheck disable=SC2086 # the lists are split on purpose
agent_ms=$(printf '%s\n' $agent_times | median)
# shellcheck disable=SC2086
du_ms=$(printf '%s\n' $du_times | median)
peak_kib=$(/usr/bin/time -f %M "$AGENT" du "$TREE" 2>&1 >/dev/null | tail -n 1)
du_peak_kib=$(/usr/bin/time -f %M du -s -x --apparent-size -b "$TREE" 2>&1 >/dev/null | tail -n 1)

printf '%-26s %14s %14s\n' "" "pi-agent du" "du -s -b"
printf '%-26s %14s %14s\n' "bytes (apparent)" "$agent_bytes" "$du_bytes"
printf '%-26s %14s %14s\n' "median wall ms ($RUNS runs)" "$agent_ms" "$du_ms"
printf '%-26s %14s %14s\n' "peak RSS KiB" "$peak_kib" "$du_peak_kib"
printf '%-26s %14s\n' "files counted" "$agent_files"
echo "runs (ms) pi-agent:$agent_times"
echo "runs (ms) du:      $du_times"
if [ "$agent_bytes" = "$du_bytes" ]; then
    echo "byte counts agree"
else
    echo "BYTE COUNTS DIFFER"
    exit 1
fi
awk -v a="$agent_ms" -v d="$du_ms" 'BEGIN {
    printf "pi-agent/du time ratio: %.2f (target <= 1.00)\n", (d > 0 ? a / d : 0)
}'
