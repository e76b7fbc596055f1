#!/bin/sh
# docker-demo.sh up|down: the docker-compose stack of docker-compose.yml.
#   up    engine and images (scripts/docker-setup.sh, scripts/docker-images.sh),
#         `docker-compose up -d`, waits until pi-agent's /health answers 200,
#         then prints the URLs and the health JSON.
#   down  `docker-compose down`: containers go, volumes (EFS, database) stay.
set -eu

TOP=$(cd "$(dirname "$0")/.." && pwd)
PROJECT=${PI_DEMO_PROJECT:-pi-agent-demo}
TOMCAT_PORT=${PI_DEMO_TOMCAT_PORT:-8224}
HEALTH_PORT=${PI_DEMO_HEALTH_PORT:-8225}
WAIT_SECONDS=${PI_DEMO_WAIT_SECONDS:-240}
export DOCKER_BUILDKIT=0 COMPOSE_DOCKER_CLI_BUILD=0

compose() {
    docker-compose -p "$PROJECT" -f "$TOP/docker-compose.yml" "$@"
}

# get URL: prints the body (JSON indented), whatever the status; exits 0 on
# 200 only (python3: no curl needed).
get() {
    python3 - "$1" <<'PY'
import json, sys, urllib.request, urllib.error
try:
    r = urllib.request.urlopen(sys.argv[1], timeout=3)
    status, body = r.status, r.read()
except urllib.error.HTTPError as e:
    status, body = e.code, e.read()
except OSError as e:
    print(f"no answer: {e}", file=sys.stderr)
    sys.exit(2)
text = body.decode(errors="replace")
try:
    text = json.dumps(json.loads(text), indent=2)
except ValueError:
    pass
print(text)
sys.exit(0 if status == 200 else 1)
PY
}

# check_ports: every port the stack listens on must be free on the host (host
# networking), unless this stack is already running. One line names the
# variable that moves a busy port.
check_ports() {
    running=$(compose ps -q 2>/dev/null || true)
    [ -n "$running" ] && return 0
    python3 - "$@" <<'PY'
import socket, sys
busy = []
for spec in sys.argv[1:]:
    var, port = spec.split("=", 1)
    if not port.isdigit() or not 1 <= int(port) <= 65535:
        busy.append(f"{var} must be a port number from 1 to 65535, got {port!r}")
        continue
    s = socket.socket()
    try:
        s.bind(("0.0.0.0", int(port)))
    except OSError:
        busy.append(f"port {port} ({var}) is in use on this host; set {var} to a free port")
    finally:
        s.close()
for line in busy:
    print(f"demo: {line}", file=sys.stderr)
sys.exit(1 if busy else 0)
PY
}

case "${1:-}" in
up)
    "$TOP/scripts/docker-setup.sh"
    command -v python3 >/dev/null 2>&1 || "$TOP/scripts/install-packages.sh" python3-minimal
    check_ports "PI_DEMO_TOMCAT_PORT=$TOMCAT_PORT" "PI_DEMO_HEALTH_PORT=$HEALTH_PORT" \
        "PI_DEMO_ALM_PORT=${PI_DEMO_ALM_PORT:-8443}" "PI_DEMO_DB_PORT=${PI_DEMO_DB_PORT:-3306}"
    "$TOP/scripts/docker-images.sh" all
    compose up -d --no-build
    echo "demo: waiting up to ${WAIT_SECONDS}s for http://127.0.0.1:$HEALTH_PORT/health to be ok" >&2
    i=0
    until get "http://127.0.0.1:$HEALTH_PORT/health" >/dev/null 2>&1; do
        i=$((i + 1))
        if [ "$i" -gt "$WAIT_SECONDS" ] || [ -z "$(compose ps -q dashboard)" ] \
           || [ "$(docker inspect -f '{{.State.Running}}' "$(compose ps -q dashboard)")" != true ]; then
            echo "demo: the dashboard did not become healthy; its last log lines:" >&2
            compose logs --tail=40 dashboard >&2 || true
            get "http://127.0.0.1:$HEALTH_PORT/health" >&2 || true
            exit 1
        fi
        sleep 1
    done
    cat <<MSG

The demo is up.
  Dashboard (stand-in)   http://127.0.0.1:$TOMCAT_PORT/pi/
  Dashboard version      http://127.0.0.1:$TOMCAT_PORT/pi/version
  pi-agent health (ALB)  http://127.0.0.1:$HEALTH_PORT/health
  pi-agent metrics       http://127.0.0.1:$HEALTH_PORT/metrics
  ALM stub               https://127.0.0.1:${PI_DEMO_ALM_PORT:-8443}/
  MariaDB                127.0.0.1:${PI_DEMO_DB_PORT:-3306} (schema dashboard, user pi)
  Logs                   docker-compose -p $PROJECT logs -f dashboard
  Stop (keeps volumes)   make demo-down

/health:
MSG
    get "http://127.0.0.1:$HEALTH_PORT/health"
    ;;
down)
    "$TOP/scripts/docker-setup.sh"
    compose down --remove-orphans
    echo "demo: stopped; the volumes (EFS, database, ALM keys) are kept: docker volume ls -f name=${PROJECT}_" >&2
    ;;
*)
    echo "usage: docker-demo.sh up|down" >&2
    exit 2
    ;;
esac
