#!/bin/sh
# check-shape.sh: agent/ keeps a shape a newcomer can read: no .c file over
# 800 lines and no function over 100 lines (house style: a function's braces
# sit alone in column 0, so the body is the lines between them).
# Prints every offender and exits 1 when there is one.
set -eu
cd "$(dirname "$0")/.."
MAX_FILE=${MAX_FILE:-800}
MAX_FUNC=${MAX_FUNC:-100}
status=0
for f in agent/*.c; do
    n=$(wc -l < "$f")
    if [ "$n" -gt "$MAX_FILE" ]; then
        echo "$f: $n lines (at most $MAX_FILE)"
        status=1
    fi
    awk -v max="$MAX_FUNC" -v file="$f" '
        /^\{/ { start = NR; name = prev; next }
        /^\}/ && start { len = NR - start - 1
                         if (len > max) { printf "%s:%d: %s: %d lines (at most %d)\n", file, start, name, len, max; bad = 1 }
                         start = 0 }
        { if (!start && $0 != "") prev = $0 }
        END { exit bad }' "$f" || status=1
done
exit $status
