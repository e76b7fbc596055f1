# Core (supervisor) benchmark.
.PHONY: bench-supervisor
bench: bench-supervisor
bench-supervisor: $(BUILD)/pi-agent
	PI_AGENT_BIN=$(BUILD)/pi-agent ./bench/supervisor.sh
