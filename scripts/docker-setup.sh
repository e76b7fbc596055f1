#!/bin/sh
# docker-setup.sh: makes a Docker engine answer on this machine.
#   - installs Debian's docker.io and docker-compose when missing;
#   - starts `dockerd --bridge=none --iptables=false` in the background when
#     no daemon answers (nothing here may touch the host's network set-up:
#     every container and build uses host networking).
# Idempotent and safe to run from several make invocations at once (a lock
# serialises the start). Prints nothing when the engine already answers.
set -eu

TOP=$(cd "$(dirname "$0")/.." && pwd)
DOCKERD_LOG=${PI_DOCKERD_LOG:-/var/log/pi-agent-dockerd.log}
LOCK=/run/pi-agent-docker-setup.lock

engine_answers() {
    docker info >/dev/null 2>&1
}

if ! command -v dockerd >/dev/null 2>&1 || ! command -v docker-compose >/dev/null 2>&1 \
        || ! command -v docker >/dev/null 2>&1; then
    "$TOP/scripts/install-packages.sh" docker.io docker-compose
fi

engine_answers && exit 0

exec 9>"$LOCK"
flock 9
engine_answers && exit 0

if ! pgrep -x dockerd >/dev/null 2>&1; then
    echo "docker-setup: starting dockerd (log: $DOCKERD_LOG)" >&2
    # setsid: the daemon must outlive the make that started it.
    setsid dockerd --bridge=none --iptables=false --ip-masq=false \
        </dev/null >>"$DOCKERD_LOG" 2>&1 9>&- &
fi

i=0
while ! engine_answers; do
    i=$((i + 1))
    if [ "$i" -gt 120 ]; then
        echo "docker-setup: dockerd did not answer within 60 s; see $DOCKERD_LOG" >&2
        tail -n 20 "$DOCKERD_LOG" >&2 || true
        exit 1
    fi
    sleep 0.5
done
echo "docker-setup: Docker engine $(docker version --format '{{.Server.Version}}') is up" >&2
