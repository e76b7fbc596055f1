# Storage area: EFS mount check, layout, seeding, links, budget scans, log
# housekeeping and `pi-agent check` (agent/efs*.c, agent/housekeeping.c,
# agent/check.c).
#
#   make bench-efs   the budget walk (`pi-agent du`) against `du -s
#                    --apparent-size -b` on 200,000 files in 2,000 folders,
#                    median of warm runs, plus peak memory (also `make bench`)
#   make fuzz-efs    libFuzzer over the pure parsers (PI_EFS_LINKS, mountinfo,
#                    seed marker) for FUZZ_EFS_RUNS executions (also `make fuzz`)

# unshare/mount for the mount-point tests, du/find for the figures they compare
TEST_PACKAGES += util-linux mount coreutils findutils time clang libclang-rt-14-dev

FUZZ_EFS_RUNS ?= 300000
FUZZ_RUN_VARS += FUZZ_EFS_RUNS
FUZZ_EFS_BIN  := $(BUILD)/fuzz/fuzz_efs_parsers
FUZZ_EFS_CFLAGS := -std=gnu11 -g -O1 -Wall -Wextra -Werror \
                   -fsanitize=fuzzer,address,undefined -fno-sanitize-recover=all \
                   -D_GNU_SOURCE -DPI_AGENT_VERSION='"$(VERSION)"' -Iagent

.PHONY: bench-efs fuzz-efs
bench: bench-efs
fuzz: fuzz-efs

bench-efs: $(BUILD)/pi-agent $(PACKAGES_STAMP)
	PI_AGENT_BIN=$(BUILD)/pi-agent ./bench/efs-scan.sh

# The parsers live next to code that walks folders, drops to the run-as user
# and forks the write probe: those modules link too (they are not fuzzed).
FUZZ_EFS_SRCS := tests/fuzz/fuzz_efs_parsers.c agent/efs_layout.c agent/efs_seed.c agent/config.c \
                 agent/fsafe.c agent/runas.c agent/util.c agent/worker.c agent/reap.c \
                 agent/loop.c agent/log.c agent/execprep.c

$(FUZZ_EFS_BIN): $(FUZZ_EFS_SRCS) $(wildcard agent/*.h) $(PACKAGES_STAMP)
	@mkdir -p $(dir $@)
	clang $(FUZZ_EFS_CFLAGS) -o $@ $(FUZZ_EFS_SRCS)

fuzz-efs: $(FUZZ_EFS_BIN)
	@rm -rf $(BUILD)/fuzz/corpus-efs-work && mkdir -p $(BUILD)/fuzz/corpus-efs-work
	@set -o pipefail; $(FUZZ_EFS_BIN) -runs=$(FUZZ_EFS_RUNS) -max_len=4096 \
	    -print_final_stats=1 -artifact_prefix=$(BUILD)/fuzz/efs- \
	    $(BUILD)/fuzz/corpus-efs-work > $(BUILD)/fuzz/fuzz-efs.log 2>&1 \
	  || { tail -n 40 $(BUILD)/fuzz/fuzz-efs.log; echo "fuzz-efs: FINDING (see $(BUILD)/fuzz/)"; exit 1; }
	@runs=$$(sed -n 's/^stat::number_of_executed_units: *//p' $(BUILD)/fuzz/fuzz-efs.log); \
	  echo "fuzz-efs: $$runs executions under ASan+UBSan, no finding"; \
	  [ "$$runs" -ge "$(FUZZ_EFS_RUNS)" ]
