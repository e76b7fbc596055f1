#!/bin/sh
# install-packages.sh PKG...: installs the Debian packages that are missing.
# Adds a deb-src entry (copied from the system's own sources) when apt has
# none, because the static build needs `apt-get source`.
set -eu
missing=""
for p in "$@"; do
    dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q 'install ok installed' || missing="$missing $p"
done
need_src=0
if ! grep -rqs '^\(Types:.*deb-src\|deb-src\)' /etc/apt/sources.list /etc/apt/sources.list.d/; then
    src=/etc/apt/sources.list.d/debian.sources
    if [ -f "$src" ]; then
        sed 's/^Types: deb$/Types: deb-src/' "$src" > /etc/apt/sources.list.d/pi-agent-deb-src.sources
    elif [ -f /etc/apt/sources.list ]; then
        sed -n 's/^deb /deb-src /p' /etc/apt/sources.list > /etc/apt/sources.list.d/pi-agent-deb-src.list
    fi
    need_src=1
fi
[ -z "$missing" ] && [ "$need_src" = 0 ] && exit 0
if [ "$need_src" = 1 ] || [ ! -f /var/lib/apt/periodic/pi-agent-updated ] ; then
    apt-get update -qq >/dev/null
    mkdir -p /var/lib/apt/periodic && touch /var/lib/apt/periodic/pi-agent-updated
fi
[ -z "$missing" ] && exit 0
echo "install-packages:$missing" >&2
DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends $missing >/dev/null
