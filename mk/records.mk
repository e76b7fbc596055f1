# Run records area: how each run ended, the startup budget, /live, the
# fleet's shared budget walk (agent/exit_*.c, agent/startup.c,
# agent/efs_share.c).
#
#   make fuzz-records   libFuzzer over the run record, the scan record and
#                       the cgroup OOM counter, under ASan and UBSan, for
#                       FUZZ_RECORDS_RUNS executions (also `make fuzz`)

TEST_PACKAGES += clang libclang-rt-14-dev libcjson-dev

FUZZ_RUN_VARS += FUZZ_RECORDS_RUNS
FUZZ_RECORDS_RUNS ?= 300000
FUZZ_RECORDS_BIN  := $(BUILD)/fuzz/fuzz_exit_record
FUZZ_RECORDS_CFLAGS := -std=gnu11 -g -O1 -Wall -Wextra -Werror \
                       -fsanitize=fuzzer,address,undefined -fno-sanitize-recover=all \
                       -D_GNU_SOURCE -DPI_AGENT_VERSION='"$(VERSION)"' -Iagent

.PHONY: fuzz-records
fuzz: fuzz-records

$(FUZZ_RECORDS_BIN): tests/fuzz/fuzz_exit_record.c agent/exit_record.c agent/exit_record.h \
                     agent/efs_share.c agent/efs_share.h $(PACKAGES_STAMP)
	@mkdir -p $(dir $@)
	clang $(FUZZ_RECORDS_CFLAGS) -o $@ tests/fuzz/fuzz_exit_record.c agent/exit_record.c \
	    agent/efs_share.c -lcjson

# The seeds in tests/fuzz/corpus-records are only read; the working corpus
# lives under build/. Any crash input lands in build/fuzz/ and fails the target.
fuzz-records: $(FUZZ_RECORDS_BIN)
	@rm -rf $(BUILD)/fuzz/corpus-records-work && mkdir -p $(BUILD)/fuzz/corpus-records-work
	@set -o pipefail; $(FUZZ_RECORDS_BIN) -runs=$(FUZZ_RECORDS_RUNS) -max_len=4096 \
	    -print_final_stats=1 -artifact_prefix=$(BUILD)/fuzz/records- \
	    $(BUILD)/fuzz/corpus-records-work tests/fuzz/corpus-records > $(BUILD)/fuzz/fuzz-records.log 2>&1 \
	  || { tail -n 40 $(BUILD)/fuzz/fuzz-records.log; echo "fuzz-records: FINDING (see $(BUILD)/fuzz/)"; exit 1; }
	@runs=$$(sed -n 's/^stat::number_of_executed_units: *//p' $(BUILD)/fuzz/fuzz-records.log); \
	  echo "fuzz-records: $$runs executions under ASan+UBSan, no finding"; \
	  [ "$$runs" -ge "$(FUZZ_RECORDS_RUNS)" ]
