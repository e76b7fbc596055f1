#!/bin/sh
# docker-images.sh [base|all]: builds the images the Dockerfile, the demo and
# the container tests use, on a machine where no registry can be reached.
#
#   debian:bookworm-slim            debootstrap --variant=minbase + docker import
#   ghcr.io/pi-cr/server:2025_10.1  the stand-in dashboard (tests/container/dashboard)
#   pi-agent-test/mariadb:local     MariaDB for the repository (tests/container/mariadb)
#   pi-agent-test/alm-stub:local    an HTTPS ALM stub (tests/container/alm)
#   pi-agent/dashboard:local        the derived image: Dockerfile at the top (only with "all")
#   pi-agent/agent:local            its `agent` target, the binary alone (only with "all")
#   pi-agent/dashboard:local-links  the derived image built with PI_AGENT_IMAGE_LINKS=true
#                                   (links into /mnt/efs, for a read-only root; only with "all")
#
# debian:bookworm-slim is built only when absent (debootstrap is slow); the
# others when absent or when their directory changed; the derived image every
# time. Docker's layer cache keeps the rebuilds quick (the JRE layer stays). Every build uses host networking. A lock serialises concurrent
# runs so that two suites never debootstrap at once.
set -eu

TOP=$(cd "$(dirname "$0")/.." && pwd)
WHAT=${1:-all}
case "$WHAT" in
    base|all) ;;
    *) echo "usage: docker-images.sh [base|all]" >&2; exit 2 ;;
esac

# The legacy builder: Debian's docker.io has no buildx, and a newer docker CLI
# refuses to build without it unless told to use the classic builder.
DOCKER_BUILDKIT=0
export DOCKER_BUILDKIT

DEBIAN_IMAGE=debian:bookworm-slim
DASHBOARD_BASE_IMAGE=ghcr.io/pi-cr/server:2025_10.1
MARIADB_IMAGE=pi-agent-test/mariadb:local
ALM_IMAGE=pi-agent-test/alm-stub:local
DERIVED_IMAGE=${PI_AGENT_IMAGE:-pi-agent/dashboard:local}
AGENT_IMAGE=${PI_AGENT_ONLY_IMAGE:-pi-agent/agent:local}
LINKED_IMAGE=${PI_AGENT_LINKED_IMAGE:-$DERIVED_IMAGE-links}

LOCK=/run/pi-agent-docker-images.lock
exec 9>"$LOCK"
flock 9

have_image() {
    docker image inspect "$1" >/dev/null 2>&1
}

# The first URI of the host's Debian sources: debootstrap needs a mirror
# argument, and the host's own apt configuration is the only one known to
# work here.
host_mirror() {
    if [ -f /etc/apt/sources.list.d/debian.sources ]; then
        awk '/^URIs:/ { print $2; exit }' /etc/apt/sources.list.d/debian.sources
    elif [ -f /etc/apt/sources.list ]; then
        awk '$1 == "deb" { print $2; exit }' /etc/apt/sources.list
    fi
}

build_debian() {
    have_image "$DEBIAN_IMAGE" && return 0
    command -v debootstrap >/dev/null 2>&1 || "$TOP/scripts/install-packages.sh" debootstrap
    mirror=$(host_mirror)
    if [ -z "$mirror" ]; then
        echo "docker-images: no Debian mirror in /etc/apt/sources.list.d/debian.sources or /etc/apt/sources.list" >&2
        exit 1
    fi
    root=$(mktemp -d /var/tmp/pi-agent-debootstrap.XXXXXX)
    trap 'rm -rf "$root"' EXIT
    echo "docker-images: debootstrap --variant=minbase bookworm (a few minutes)" >&2
    if ! debootstrap --variant=minbase bookworm "$root" "$mirror" >"$root.log" 2>&1; then
        echo "docker-images: debootstrap failed; the last lines of $root.log:" >&2
        tail -n 20 "$root.log" >&2
        exit 1
    fi
    rm -f "$root.log"
    # The image gets the host's apt sources and apt options exactly, so that
    # apt-get inside image builds reaches the same archive the host does.
    if [ -f /etc/apt/sources.list.d/debian.sources ]; then
        cp /etc/apt/sources.list.d/debian.sources "$root/etc/apt/sources.list.d/debian.sources"
        rm -f "$root/etc/apt/sources.list"
    else
        cp /etc/apt/sources.list "$root/etc/apt/sources.list"
    fi
    for f in /etc/apt/apt.conf.d/*; do
        [ -f "$f" ] && grep -q '^Acquire::' "$f" && cp "$f" "$root/etc/apt/apt.conf.d/"
    done
    # Like Debian's slim images: no caches or docs in layers.
    rm -rf "$root"/var/cache/apt/archives/*.deb "$root"/var/lib/apt/lists/* \
        "$root"/usr/share/doc/* "$root"/usr/share/man/* "$root"/usr/share/info/*
    tar -C "$root" -c . | docker import \
        --change 'CMD ["/bin/bash"]' \
        --change 'ENV PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin' \
        - "$DEBIAN_IMAGE" >/dev/null
    rm -rf "$root"
    trap - EXIT
    echo "docker-images: imported $DEBIAN_IMAGE" >&2
}

# build IMAGE DIR [ARG...]: docker build with host networking; the output
# is kept in a log and shown only when the build fails.
build() {
    image=$1 dir=$2
    shift 2
    log=$(mktemp /var/tmp/pi-agent-docker-build.XXXXXX)
    if ! docker build --network host -t "$image" "$@" "$dir" >"$log" 2>&1; then
        echo "docker-images: building $image failed; the last lines of its log ($log):" >&2
        grep -v -e '^DEPRECATED' -e 'BuildKit is currently disabled' -e '^ *environment-variable' \
            "$log" | tail -n 40 >&2
        exit 1
    fi
    rm -f "$log"
}

# source_hash DIR: a digest of every file under DIR (names and contents).
source_hash() {
    (cd "$1" && find . -type f ! -name '*.pyc' -print0 | sort -z | xargs -0 sha256sum | sha256sum | cut -c1-16)
}

# build_local IMAGE DIR: builds DIR's Dockerfile once, and again only when a
# file under DIR has changed since (the image carries the digest as a label).
build_local() {
    hash=$(source_hash "$2")
    built=$(docker image inspect -f '{{ index .Config.Labels "pi-agent.source-hash" }}' "$1" 2>/dev/null || true)
    [ "$built" = "$hash" ] && return 0
    echo "docker-images: building $1 from ${2#"$TOP"/}" >&2
    build "$1" "$2" --label "pi-agent.source-hash=$hash"
}

build_derived() {
    echo "docker-images: building $DERIVED_IMAGE from the Dockerfile" >&2
    build "$DERIVED_IMAGE" "$TOP" --build-arg "PI_AGENT_VERSION=$(cat "$TOP/VERSION")"
    build "$AGENT_IMAGE" "$TOP" --target agent
    build "$LINKED_IMAGE" "$TOP" --build-arg "PI_AGENT_VERSION=$(cat "$TOP/VERSION")" \
        --build-arg PI_AGENT_IMAGE_LINKS=true
}

build_debian
build_local "$DASHBOARD_BASE_IMAGE" "$TOP/tests/container/dashboard"
build_local "$ALM_IMAGE" "$TOP/tests/container/alm"
build_local "$MARIADB_IMAGE" "$TOP/tests/container/mariadb"
if [ "$WHAT" = all ]; then
    build_derived
fi
