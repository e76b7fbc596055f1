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
