# Core (supervisor) benchmark: size, idle memory (VmRSS, RssAnon), idle CPU
# and start overhead against tini-static and dumb-init in one run.
TEST_PACKAGES += tini dumb-init util-linux

.PHONY: bench-supervisor
bench: bench-supervisor
bench-supervisor: $(BUILD)/pi-agent $(PACKAGES_STAMP)
	PI_AGENT_BIN=$(BUILD)/pi-agent ./bench/supervisor.sh
