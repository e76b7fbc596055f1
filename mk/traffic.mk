# Traffic area: Tomcat's connections and received bytes from the kernel's
# socket table (agent/sockdiag.c, agent/traffic.c).
#
#   make fuzz-traffic   libFuzzer over the netlink and /proc/net/tcp parsers,
#                       under ASan and UBSan, for FUZZ_TRAFFIC_RUNS executions
#                       (default 1,000,000); prints the count (also `make fuzz`)
#   make bench-traffic  the cost of one sample with 10, 1,000 and 10,000
#                       established loopback connections, netlink against the
#                       /proc/net/tcp fallback in the same run (also `make bench`)

# python3-seccomp: a test refuses netlink to the agent to see the /proc fallback
TEST_PACKAGES += python3-seccomp clang libclang-rt-14-dev

FUZZ_TRAFFIC_RUNS ?= 1000000
FUZZ_RUN_VARS += FUZZ_TRAFFIC_RUNS
FUZZ_TRAFFIC_BIN  := $(BUILD)/fuzz/fuzz_sockdiag
FUZZ_TRAFFIC_CFLAGS := -std=gnu11 -g -O1 -Wall -Wextra -Werror \
                       -fsanitize=fuzzer,address,undefined -fno-sanitize-recover=all \
                       -D_GNU_SOURCE -Iagent
BENCH_TRAFFIC_BIN := $(BUILD)/bench/traffic_sample

.PHONY: fuzz-traffic bench-traffic
fuzz: fuzz-traffic
bench: bench-traffic

$(FUZZ_TRAFFIC_BIN): tests/fuzz/fuzz_sockdiag.c agent/sockdiag.c agent/sockdiag.h $(PACKAGES_STAMP)
	@mkdir -p $(dir $@)
	clang $(FUZZ_TRAFFIC_CFLAGS) -o $@ tests/fuzz/fuzz_sockdiag.c agent/sockdiag.c

# The working corpus lives under build/; the seeds in tests/fuzz/corpus-sockdiag
# are only read. Any crash input lands in build/fuzz/ and fails the target.
fuzz-traffic: $(FUZZ_TRAFFIC_BIN)
	@rm -rf $(BUILD)/fuzz/corpus-sockdiag-work && mkdir -p $(BUILD)/fuzz/corpus-sockdiag-work
	@set -o pipefail; $(FUZZ_TRAFFIC_BIN) -runs=$(FUZZ_TRAFFIC_RUNS) -max_len=8192 \
	    -print_final_stats=1 -artifact_prefix=$(BUILD)/fuzz/sockdiag- \
	    $(BUILD)/fuzz/corpus-sockdiag-work tests/fuzz/corpus-sockdiag \
	    > $(BUILD)/fuzz/fuzz-traffic.log 2>&1 \
	  || { tail -n 40 $(BUILD)/fuzz/fuzz-traffic.log; echo "fuzz-traffic: FINDING (see $(BUILD)/fuzz/)"; exit 1; }
	@runs=$$(sed -n 's/^stat::number_of_executed_units: *//p' $(BUILD)/fuzz/fuzz-traffic.log); \
	  echo "fuzz-traffic: $$runs executions under ASan+UBSan, no finding"; \
	  [ "$$runs" -ge "$(FUZZ_TRAFFIC_RUNS)" ]

# Built like the agent's own code (optimised, no sanitizer) against the same
# sampler the agent runs in its loop.
$(BENCH_TRAFFIC_BIN): bench/traffic_sample.c agent/traffic.c agent/traffic.h agent/sockdiag.c \
                      agent/sockdiag.h agent/config.c agent/health.c agent/log.c agent/loop.c \
                      $(PACKAGES_STAMP)
	@mkdir -p $(dir $@)
	$(HOST_CC) -std=gnu11 -O2 $(WARN) -D_GNU_SOURCE -DPI_AGENT_VERSION='"$(VERSION)"' -Iagent \
	    -o $@ bench/traffic_sample.c $(filter-out agent/main.c,$(AGENT_SRCS)) \
	    -lcurl -lmbedtls -lmbedx509 -lmbedcrypto -lcjson

bench-traffic: $(BENCH_TRAFFIC_BIN)
	$(BENCH_TRAFFIC_BIN)
