# pi-agent in the Panintelligence dashboard image.
#
#   docker build --network host -t my/dashboard .         the dashboard with pi-agent as PID 1
#   docker build --network host --target agent -t pi-agent .
#                                                         the binary alone, for COPY --from
#
# PI_DASHBOARD_IMAGE is the vendor's image (copy it into your own registry, as
# the vendor recommends, and pass that name). Everything is built from Debian's
# archive; the build needs no other registry than the one the base images come from.
ARG PI_DASHBOARD_IMAGE=ghcr.io/pi-cr/server:2025_10.1

# --- builder: the static musl binary, with the Makefile --------------------
FROM debian:bookworm-slim AS builder
RUN apt-get update -qq \
 && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends \
        gcc libc6-dev make musl-tools dpkg-dev pkg-config xz-utils >/dev/null
WORKDIR /src
# The static libraries first, in their own layer: they change only when the
# pinned versions do, and they are the slow part.
COPY scripts/build-deps.sh scripts/install-packages.sh scripts/
RUN ./scripts/build-deps.sh && mkdir -p build/deps && touch build/deps/.stamp
COPY VERSION Makefile ./
COPY mk/ mk/
COPY scripts/musl-static-pie.specs scripts/
COPY agent/ agent/
RUN make -j2 build/pi-agent && ./build/pi-agent --version

# --- agent: only the binary ------------------------------------------------
FROM scratch AS agent
COPY --from=builder /src/build/pi-agent /pi-agent
ENTRYPOINT ["/pi-agent"]

# --- dashboard: the vendor's image with pi-agent as its entrypoint ---------
FROM ${PI_DASHBOARD_IMAGE} AS dashboard
ARG PI_DASHBOARD_IMAGE
ARG PI_AGENT_VERSION=unknown
COPY --from=builder /src/build/pi-agent /usr/local/bin/pi-agent
COPY hooks/ /etc/pi-agent/hooks/
# For a read-only root file system (ECS readonlyRootFilesystem) with one EFS
# root volume: --build-arg PI_AGENT_IMAGE_LINKS=true moves each dashboard
# folder's content to /usr/local/share/pi-agent/seed and leaves a link to
# /mnt/efs/NAME in its place, so the agent writes nothing to the root at run
# time (docs/ecs.md). Off by default: today's task definitions mount one volume
# per folder at the dashboard's own paths.
ARG PI_AGENT_IMAGE_LINKS=false
RUN if [ "$PI_AGENT_IMAGE_LINKS" = true ]; then /usr/local/bin/pi-agent image-links; fi
LABEL org.opencontainers.image.title="Panintelligence dashboard with pi-agent" \
      org.opencontainers.image.description="The dashboard's Tomcat supervised by pi-agent: licence, EFS layout, health on :8225, drain on stop, lifecycle hooks" \
      org.opencontainers.image.version="${PI_AGENT_VERSION}" \
      org.opencontainers.image.base.name="${PI_DASHBOARD_IMAGE}"
# Docker and compose use this; ECS has its own healthCheck with the same command.
# Liveness, not readiness: a container check that fails gets the task replaced,
# which cures a hung JVM but not a licence or storage problem (docs/health.md).
HEALTHCHECK --interval=10s --timeout=5s --start-period=120s --retries=3 \
    CMD ["/usr/local/bin/pi-agent", "health", "--live"]
# pi-agent drains on SIGTERM, then stops Tomcat within PI_AGENT_STOP_GRACE_SECONDS.
STOPSIGNAL SIGTERM
EXPOSE 8224 8225
ENTRYPOINT ["/usr/local/bin/pi-agent"]
CMD ["/var/panintelligence/Dashboard/tomcat/bin/catalina.sh", "run"]
