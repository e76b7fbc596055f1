# Licence area: offline tokens, the ALM callback, licence URLs (agent/licence*.c,
# agent/alm.c, agent/fetch.c).
#
#   make fuzz-licence     the libFuzzer target over the licence parser, under
#                         ASan and UBSan, for FUZZ_LICENCE_RUNS executions
#                         (default 1,000,000); prints the count (also `make fuzz`)
#
# The integration tests make a throwaway CA, server certificate and ES256 keys
# with openssl and python3-cryptography at test time.

TEST_PACKAGES += openssl python3-cryptography clang libclang-rt-14-dev

FUZZ_LICENCE_RUNS ?= 1000000
FUZZ_RUN_VARS += FUZZ_LICENCE_RUNS
FUZZ_LICENCE_BIN  := $(BUILD)/fuzz/fuzz_licence
# cJSON is compiled into the target from the pinned source so that the
# sanitizers see its reads of fuzzed input too.
FUZZ_CJSON_SRC := $(DEPS_DIR)/src/cjson-1.7.15/cJSON.c
FUZZ_LICENCE_CFLAGS := -std=gnu11 -g -O1 -Wall -Wextra -Werror -Wno-missing-field-initializers \
                       -fsanitize=fuzzer,address,undefined -fno-sanitize-recover=all \
                       -D_GNU_SOURCE -Iagent -I$(dir $(FUZZ_CJSON_SRC))

.PHONY: fuzz-licence
fuzz: fuzz-licence

$(FUZZ_LICENCE_BIN): tests/fuzz/fuzz_licence.c agent/licence_token.c agent/licence_token.h agent/licence_keys.c agent/licence_status.c \
                     $(DEPS_STAMP) $(PACKAGES_STAMP)
	@mkdir -p $(dir $@) $(dir $@)include/cjson
	cp $(dir $(FUZZ_CJSON_SRC))cJSON.h $(dir $@)include/cjson/cJSON.h
	clang $(FUZZ_LICENCE_CFLAGS) -I$(dir $@)include -o $@ tests/fuzz/fuzz_licence.c \
	    agent/licence_token.c agent/licence_keys.c agent/licence_status.c $(FUZZ_CJSON_SRC) -lmbedtls -lmbedx509 -lmbedcrypto

fuzz-licence: $(FUZZ_LICENCE_BIN)
	FUZZ_BIN=$(FUZZ_LICENCE_BIN) FUZZ_RUNS=$(FUZZ_LICENCE_RUNS) ./bench/fuzz-licence.sh
