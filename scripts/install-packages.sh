#!/bin/sh
# install-packages.sh PKG...: installs the Debian packages that are missing.
# Adds a deb-src entry (derived from the system's own sources, so no mirror
# is named here) when apt has none: the static build needs `apt-get source`.
set -eu

have_deb_src() {
    grep -rqsE '^(Types:.*deb-src|deb-src )' /etc/apt/sources.list /etc/apt/sources.list.d/
}

added_src=0
if ! have_deb_src; then
    if [ -f /etc/apt/sources.list.d/debian.sources ]; then
        sed 's/^Types: deb$/Types: deb-src/' /etc/apt/sources.list.d/debian.sources \
            > /etc/apt/sources.list.d/pi-agent-deb-src.sources
    elif [ -f /etc/apt/sources.list ]; then
        sed -n 's/^deb /deb-src /p' /etc/apt/sources.list > /etc/apt/sources.list.d/pi-agent-deb-src.list
    fi
    added_src=1
fi

missing=""
for p in "$@"; do
    dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q 'install ok installed' || missing="$missing $p"
done

if [ "$added_src" = 1 ] || [ -n "$missing" ]; then
    apt-get update -qq >/dev/null
fi
[ -z "$missing" ] && exit 0
echo "install-packages:$missing" >&2
DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends $missing >/dev/null
