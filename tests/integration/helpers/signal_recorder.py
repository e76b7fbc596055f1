#!/usr/bin/env python3
"""A child that records every signal it gets in a file, one name per line.
SIGTERM and SIGINT are recorded and then end it with 128+N, like a JVM."""
import os
import signal
import sys
import time

out = sys.argv[1]
exit_on_term = len(sys.argv) < 3 or sys.argv[2] != "ignore-term"


def record(signum, frame):
    with open(out, "a") as f:
        f.write(signal.Signals(signum).name + "\n")
        f.flush()
        os.fsync(f.fileno())
    if signum in (signal.SIGTERM, signal.SIGINT) and exit_on_term:
        sys.exit(128 + signum)


for s in (signal.SIGTERM, signal.SIGINT, signal.SIGHUP, signal.SIGQUIT,
          signal.SIGUSR1, signal.SIGUSR2, signal.SIGWINCH):
    signal.signal(s, record)
with open(out + ".ready", "w") as f:
    f.write(str(os.getpid()))
deadline = time.time() + 120
while time.time() < deadline:
    signal.pause() if hasattr(signal, "pause") else time.sleep(1)
