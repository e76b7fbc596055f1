# Docs-and-exports area: what operators copy from docs/ and what they feed to
# Prometheus and CloudWatch, each checked against the authority that reads it
# (tests/exports).
#
#   make test-exports   (also `make test`) a live run of build/pi-agent with
#                       every figure known: /metrics through `promtool check
#                       metrics` and prometheus_client's parser, every EMF line
#                       through an EMF validator; the docs' ```json task and
#                       container definitions against botocore's ECS model,
#                       ```hcl blocks through @cdktf/hcl2json, ```dockerfile
#                       blocks through Docker's own parser, and every metric
#                       name the docs mention against the live run.
#
# Nothing is skipped: each tool is installed here (Debian packages, and the
# npm package under build/npm, never committed).

TEST_PACKAGES += prometheus python3-prometheus-client python3-botocore python3-cryptography \
                 python3-pytest util-linux nodejs

HCL2JSON_VERSION := 0.21.0
HCL2JSON_DIR     := $(BUILD)/npm
HCL2JSON_STAMP   := $(HCL2JSON_DIR)/.hcl2json-$(HCL2JSON_VERSION)

.PHONY: test-exports hcl2json

# npm comes with some Node.js builds and is a package of its own in Debian.
$(HCL2JSON_STAMP): mk/exports.mk $(PACKAGES_STAMP)
	command -v npm >/dev/null 2>&1 || ./scripts/install-packages.sh npm
	@mkdir -p $(HCL2JSON_DIR)
	npm install --prefix $(HCL2JSON_DIR) --no-audit --no-fund --loglevel=error \
	    @cdktf/hcl2json@$(HCL2JSON_VERSION)
	@touch $@
hcl2json: $(HCL2JSON_STAMP)

test-exports: $(BUILD)/pi-agent $(PACKAGES_STAMP) $(HCL2JSON_STAMP) docker-engine
	HCL2JSON_MODULE=$(HCL2JSON_DIR)/node_modules/@cdktf/hcl2json $(PYTEST) tests/exports

test: test-exports
