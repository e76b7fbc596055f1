# Hooks area: the runner (agent/hooks.c) is unit-tested like every module;
# the hooks shipped under hooks/ (installed as /etc/pi-agent/hooks) are run by
# tests/integration/test_shipped_hooks.py under Debian's dash and under
# BusyBox sh, and checked by shellcheck as POSIX sh.
#
#   make hooks-lint   shellcheck over the shipped hooks

TEST_PACKAGES += busybox dash shellcheck

.PHONY: hooks-lint
hooks-lint: $(PACKAGES_STAMP)
	shellcheck -s sh hooks/*.d/*

# libFuzzer target over the env-file merge and the wait-tcp arguments, under
# ASan and UBSan, for FUZZ_HOOKS_RUNS executions (also `make fuzz`). Any crash,
# leak, sanitizer report or broken invariant fails it.
FUZZ_HOOKS_RUNS ?= 500000
FUZZ_RUN_VARS += FUZZ_HOOKS_RUNS
FUZZ_HOOKS_BIN  := $(BUILD)/fuzz/fuzz_hooks
FUZZ_HOOKS_SRCS := tests/fuzz/fuzz_hooks.c agent/hooks.c agent/hooks_env.c agent/hooks_list.c agent/wait_tcp.c agent/childenv.c agent/config.c \
                   agent/execprep.c agent/fsafe.c agent/licence_status.c agent/log.c agent/loop.c agent/reap.c \
                   agent/util.c

.PHONY: fuzz-hooks
fuzz: fuzz-hooks

$(FUZZ_HOOKS_BIN): $(FUZZ_HOOKS_SRCS) $(wildcard agent/*.h) $(PACKAGES_STAMP)
	@mkdir -p $(dir $@)
	clang -std=gnu11 -g -O1 -Wall -Wextra -Werror -Wno-missing-field-initializers \
	    -fsanitize=fuzzer,address,undefined -fno-sanitize-recover=all -D_GNU_SOURCE -Iagent \
	    -o $@ $(FUZZ_HOOKS_SRCS) -lm

fuzz-hooks: $(FUZZ_HOOKS_BIN)
	@work=$$(mktemp -d /tmp/fuzz-hooks.XXXXXX) && cp tests/fuzz/corpus-hooks/* $$work/ && \
	  $(FUZZ_HOOKS_BIN) -runs=$(FUZZ_HOOKS_RUNS) -max_len=4096 -timeout=10 -rss_limit_mb=1024 \
	    -artifact_prefix=$(dir $(FUZZ_HOOKS_BIN)) $$work > $$work.log 2>&1; rc=$$?; \
	  grep -E '^Done [0-9]+ runs' $$work.log || tail -n 40 $$work.log; rm -rf $$work $$work.log; \
	  if [ $$rc -ne 0 ]; then echo "fuzz-hooks: FAILED (input kept in $(dir $(FUZZ_HOOKS_BIN)))" >&2; exit 1; fi
