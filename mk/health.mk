# Health area: the HTTP endpoint, Tomcat probe, metrics and EMF
# (agent/http_parser.c, agent/health*.c, agent/probe.c, agent/emf.c).
#
#   make fuzz-http      the libFuzzer target over the request parser, under ASan
#                       and UBSan, for FUZZ_HTTP_RUNS executions (default
#                       1,000,000); prints the count (also `make fuzz`)
#   make bench-health   wrk against /health and against a one-worker nginx
#                       `return 200` on loopback, same run (also `make bench`)
#   make bench-health-flood
#                       idle, slowloris and garbage flood from 127.0.0.2 while
#                       /health and `pi-agent health` are checked, against
#                       nginx `return 200` in the same run (also `make bench`)

TEST_PACKAGES += python3-prometheus-client wrk nginx-light clang libclang-rt-14-dev

FUZZ_HTTP_RUNS ?= 1000000
FUZZ_RUN_VARS += FUZZ_HTTP_RUNS
FUZZ_HTTP_BIN  := $(BUILD)/fuzz/fuzz_http_parser
FUZZ_HTTP_CFLAGS := -std=gnu11 -g -O1 -Wall -Wextra -Werror \
                    -fsanitize=fuzzer,address,undefined -fno-sanitize-recover=all \
                    -D_GNU_SOURCE -Iagent

.PHONY: fuzz-http bench-health bench-health-flood
fuzz: fuzz-http
bench: bench-health bench-health-flood

$(FUZZ_HTTP_BIN): tests/fuzz/fuzz_http_parser.c agent/http_parser.c agent/http_parser.h \
                  $(PACKAGES_STAMP)
	@mkdir -p $(dir $@)
	clang $(FUZZ_HTTP_CFLAGS) -o $@ tests/fuzz/fuzz_http_parser.c agent/http_parser.c

# The working corpus lives under build/; the seeds in tests/fuzz/corpus-http
# are only read. Any crash input lands in build/fuzz/ and fails the target.
fuzz-http: $(FUZZ_HTTP_BIN)
	@rm -rf $(BUILD)/fuzz/corpus-http-work && mkdir -p $(BUILD)/fuzz/corpus-http-work
	@set -o pipefail; $(FUZZ_HTTP_BIN) -runs=$(FUZZ_HTTP_RUNS) -max_len=10000 \
	    -print_final_stats=1 -artifact_prefix=$(BUILD)/fuzz/http- \
	    $(BUILD)/fuzz/corpus-http-work tests/fuzz/corpus-http > $(BUILD)/fuzz/fuzz-http.log 2>&1 \
	  || { tail -n 40 $(BUILD)/fuzz/fuzz-http.log; echo "fuzz-http: FINDING (see $(BUILD)/fuzz/)"; exit 1; }
	@runs=$$(sed -n 's/^stat::number_of_executed_units: *//p' $(BUILD)/fuzz/fuzz-http.log); \
	  echo "fuzz-http: $$runs executions under ASan+UBSan, no finding"; \
	  [ "$$runs" -ge "$(FUZZ_HTTP_RUNS)" ]

bench-health: $(BUILD)/pi-agent $(PACKAGES_STAMP)
	PI_AGENT_BIN=$(BUILD)/pi-agent ./bench/health-wrk.sh

bench-health-flood: $(BUILD)/pi-agent $(PACKAGES_STAMP)
	PI_AGENT_BIN=$(BUILD)/pi-agent ./bench/health-flood.sh
