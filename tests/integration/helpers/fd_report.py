#!/usr/bin/env python3
"""Writes the open file descriptors, blocked signals, ignored signals and ids
of this process to the file named in argv[1], then exits 0."""
import json
import os
import sys

status = {}
with open("/proc/self/status") as f:
    for line in f:
        k, _, v = line.partition(":")
        status[k] = v.strip()
fds = sorted(int(x) for x in os.listdir("/proc/self/fd"))
report = {
    "fds": fds,
    "sigblk": status["SigBlk"],
    "sigign": status["SigIgn"],
    "uid": os.getuid(),
    "gid": os.getgid(),
    "groups": os.getgroups(),
    "pgid": os.getpgid(0),
    "pid": os.getpid(),
}
with open(sys.argv[1], "w") as f:
    json.dump(report, f)
