#!/bin/sh
# fuzz-licence.sh: runs the licence parser's libFuzzer target (built by
# `make fuzz-licence`) for FUZZ_RUNS executions (default 1,000,000) under ASan
# and UBSan, starting from tests/fuzz/corpus-licence, and reports the count.
# Any crash, leak or sanitizer report fails the run. New inputs go to a
# scratch corpus, never into the repository.
set -eu
TOP=$(cd "$(dirname "$0")/.." && pwd)
BIN=${FUZZ_BIN:-$TOP/build/fuzz/fuzz_licence}
RUNS=${FUZZ_RUNS:-1000000}
[ -x "$BIN" ] || { echo "fuzz-licence: $BIN is missing: run make fuzz-licence" >&2; exit 1; }

work=$(mktemp -d /tmp/fuzz-licence.XXXXXX)
trap 'rm -rf "$work"' EXIT
mkdir -p "$work/corpus" "$work/artifacts"
cp "$TOP"/tests/fuzz/corpus-licence/* "$work/corpus/"

# One process (the machine is shared), bounded input size, leak detection on.
if ! "$BIN" -runs="$RUNS" -max_len=4096 -timeout=10 -rss_limit_mb=1024 -print_final_stats=1 \
        -artifact_prefix="$work/artifacts/" "$work/corpus" >"$work/log" 2>&1; then
    tail -n 60 "$work/log" >&2
    mkdir -p "$TOP/build/fuzz/licence-findings"
    cp "$work"/artifacts/* "$TOP/build/fuzz/licence-findings/" 2>/dev/null || true
    echo "fuzz-licence: FAILED (inputs kept in build/fuzz/licence-findings)" >&2
    exit 1
fi
done_line=$(grep -E '^Done [0-9]+ runs' "$work/log" | tail -n 1)
runs=$(echo "$done_line" | sed -E 's/^Done ([0-9]+) runs in ([0-9]+) second.*/\1/')
secs=$(echo "$done_line" | sed -E 's/^Done ([0-9]+) runs in ([0-9]+) second.*/\2/')
cov=$(grep -E '^stat::' "$work/log" | tr '\n' ' ')
if [ -z "$runs" ] || [ "$runs" -lt "$RUNS" ]; then
    tail -n 20 "$work/log" >&2
    echo "fuzz-licence: FAILED: expected $RUNS executions, libFuzzer reported '${done_line:-nothing}'" >&2
    exit 1
fi
echo "fuzz-licence: $runs executions in ${secs}s, no crash, leak or sanitizer report"
echo "fuzz-licence: $cov"
