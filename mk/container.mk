# Container area: the derived image, docker-compose, the demo and the tests
# that drive a real Docker engine (tests/container).
#
#   make images           the local base images (debootstrap, stand-in dashboard,
#                         MariaDB, ALM stub) when absent, then the derived image
#   make test-container   pytest over tests/container (builds what it needs)
#   make demo             the compose stack; waits for /health ok, prints URLs
#   make demo-down        stops the stack, keeps its volumes
#
# Nothing is pulled from a registry: every base image is built here, and every
# build and container uses host networking.

TEST_PACKAGES += docker.io docker-compose debootstrap haproxy openssl python3-minimal

CONTAINER_IMAGE := pi-agent/dashboard:local

.PHONY: images docker-engine

docker-engine:
	./scripts/docker-setup.sh

images: docker-engine
	PI_AGENT_IMAGE=$(CONTAINER_IMAGE) ./scripts/docker-images.sh all

test-container: images $(PACKAGES_STAMP)
	PI_AGENT_IMAGE=$(CONTAINER_IMAGE) $(PYTEST) tests/container

demo: images
	./scripts/docker-demo.sh up

demo-down:
	./scripts/docker-demo.sh down
