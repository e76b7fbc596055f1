# pi-agent: a static PID-1 agent for the Panintelligence dashboard on ECS.
#
#   make            build/pi-agent (static, musl, stripped)
#   make test       every test suite (unit, fuzz targets briefly, integration, container, exports)
#   make demo       the docker-compose stack with a stand-in dashboard
#   make fuzz       libFuzzer targets under ASan and UBSan
#   make bench      the benchmarks under bench/
#
# Areas add their own targets, sources and packages in mk/*.mk.

SHELL := /bin/bash
.DEFAULT_GOAL := all

BUILD     := build
DEPS_DIR  := build/deps
PREFIX    := $(DEPS_DIR)/prefix
VERSION   := $(shell cat VERSION 2>/dev/null || echo 0.0.0)

AGENT_SRCS := $(sort $(wildcard agent/*.c))
AGENT_LIB_SRCS := $(filter-out agent/main.c,$(AGENT_SRCS))

# --- the shipped binary: musl, static-pie, hardened, stripped --------------
MUSL_CC   := gcc -specs scripts/musl-static-pie.specs
WARN      := -Wall -Wextra -Werror -Wshadow -Wformat=2 -Wno-missing-field-initializers
HARDEN    := -fstack-protector-strong -D_FORTIFY_SOURCE=2 -fPIE
CFLAGS_REL := -std=gnu11 -Os $(WARN) $(HARDEN) -ffunction-sections -fdata-sections \
              -DPI_AGENT_VERSION='"$(VERSION)"' -D_GNU_SOURCE -I$(PREFIX)/include -Iagent
LDFLAGS_REL := -Wl,--gc-sections -Wl,-z,relro,-z,now -Wl,-z,noexecstack -s
LIBS_REL  := -L$(PREFIX)/lib -lcurl -lmbedtls -lmbedx509 -lmbedcrypto -lcjson

REL_OBJS := $(patsubst agent/%.c,$(BUILD)/rel/%.o,$(AGENT_SRCS))
DEPS_STAMP := $(DEPS_DIR)/.stamp

.PHONY: all deps test test-unit test-fuzz test-shape test-integration test-container clean fuzz bench demo demo-down packages-test

all: $(BUILD)/pi-agent

deps: $(DEPS_STAMP)
$(DEPS_STAMP): scripts/build-deps.sh
	./scripts/build-deps.sh
	@mkdir -p $(dir $@) && touch $@

$(BUILD)/rel/%.o: agent/%.c $(wildcard agent/*.h) $(DEPS_STAMP) VERSION
	@mkdir -p $(dir $@)
	$(MUSL_CC) $(CFLAGS_REL) -c $< -o $@

$(BUILD)/pi-agent: $(REL_OBJS)
	$(MUSL_CC) $(CFLAGS_REL) $(LDFLAGS_REL) -o $@ $(REL_OBJS) $(LIBS_REL)
	@size=$$(stat -c %s $@); echo "pi-agent $(VERSION): $$size bytes"; \
	  if [ $$size -gt 1572864 ]; then echo "pi-agent is larger than 1.5 MB" >&2; exit 1; fi

# --- tests: glibc builds with Debian's -dev packages ----------------------
# Areas append to TEST_PACKAGES in mk/*.mk, and name the variable that sets
# the run count of each fuzz target of theirs in FUZZ_RUN_VARS.
TEST_PACKAGES := gcc make libcmocka-dev libmbedtls-dev libcjson-dev libcurl4-openssl-dev \
                 python3 python3-pytest util-linux procps tomcat10 default-jre-headless

HOST_CC     := gcc
CFLAGS_TEST := -std=gnu11 -g -O1 $(WARN) -D_GNU_SOURCE -DPI_AGENT_VERSION='"$(VERSION)"' \
               -DPI_UNIT_TEST -Iagent -fsanitize=address,undefined -fno-omit-frame-pointer
LIBS_TEST   := -lcmocka -lcurl -lmbedtls -lmbedx509 -lmbedcrypto -lcjson

UNIT_SRCS  := $(sort $(wildcard tests/unit/test_*.c))
UNIT_BINS  := $(patsubst tests/unit/%.c,$(BUILD)/unit/%,$(UNIT_SRCS))
TEST_OBJS  := $(patsubst agent/%.c,$(BUILD)/test/%.o,$(AGENT_LIB_SRCS))
PACKAGES_STAMP := $(BUILD)/.packages-test

$(PACKAGES_STAMP): Makefile $(wildcard mk/*.mk)
	./scripts/install-packages.sh $(sort $(TEST_PACKAGES))
	@mkdir -p $(dir $@) && touch $@
packages-test: $(PACKAGES_STAMP)

$(BUILD)/test/%.o: agent/%.c $(wildcard agent/*.h) $(PACKAGES_STAMP)
	@mkdir -p $(dir $@)
	$(HOST_CC) $(CFLAGS_TEST) -c $< -o $@

$(BUILD)/unit/%: tests/unit/%.c $(TEST_OBJS)
	@mkdir -p $(dir $@)
	$(HOST_CC) $(CFLAGS_TEST) -Itests/unit -o $@ $< $(TEST_OBJS) $(LIBS_TEST)

test-unit: $(UNIT_BINS)
	@set -e; for t in $(UNIT_BINS); do echo "== $$t"; $$t; done

PYTEST := /usr/bin/python3 -m pytest -q -p no:cacheprovider

test-integration: $(BUILD)/pi-agent $(PACKAGES_STAMP)
	$(PYTEST) tests/integration

# Every fuzz target, briefly, so that none can stop building or running
# unnoticed; `make fuzz` runs them at full length.
FUZZ_SMOKE_RUNS := 20000
test-fuzz: $(PACKAGES_STAMP)
	$(MAKE) fuzz $(foreach v,$(FUZZ_RUN_VARS),$(v)=$(FUZZ_SMOKE_RUNS))
	@for src in tests/fuzz/fuzz_*.c; do bin=$(BUILD)/fuzz/$$(basename $$src .c); \
	  [ -x $$bin ] || { echo "test-fuzz: $$src has no target under make fuzz" >&2; exit 1; }; done

# agent/ keeps a readable shape: no source over 800 lines, no function over 100.
test-shape:
	./scripts/check-shape.sh

test: test-unit test-fuzz test-shape test-integration test-container

# Keep test objects between runs (they are intermediate files to make).
.SECONDARY:

clean:
	rm -rf $(BUILD)/rel $(BUILD)/test $(BUILD)/unit $(BUILD)/pi-agent $(BUILD)/fuzz

-include $(sort $(wildcard mk/*.mk))
