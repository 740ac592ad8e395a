# Makefile fragment: a local single-node Apache Kafka 4.x broker (KRaft) for the integration
# suite, run from Maven Central jars with the machine's Java (no Docker needed).
# The main Makefile includes it with `include deploy/kafka/kafka.mk`; it also works on its own:
# `make -f deploy/kafka/kafka.mk kafka-up`.
#
#   make kafka-up        fetch jars if absent, format storage once, start, wait until it answers
#   make kafka-down      stop it by its recorded PID (data is kept for the next kafka-up)
#   make kafka-version   print the broker version
#   make kafka-fetch     only resolve the jars into the tool cache (KAFKA_CACHE, see
#                        scripts/kafka-common.sh; outside the clone by default)
#
# Then: KAFKA_BROKERS=127.0.0.1:$(KAFKA_PORT) go test -tags integration ./test/integration/...

KAFKA_PORT ?= 19092
KAFKA_CONTROLLER_PORT ?= 19093
# Relative paths are taken from the repository root, wherever make runs from.
KAFKA_DIR ?= .cache/kafka
KAFKA_VERSION ?= 4.4.0

# The repository root, from this fragment's own location, so the scripts are found whether the
# fragment is included from the root Makefile or used with -f.
KAFKA_MK_ROOT := $(abspath $(dir $(lastword $(MAKEFILE_LIST)))/../..)

KAFKA_ENV = KAFKA_PORT='$(KAFKA_PORT)' KAFKA_CONTROLLER_PORT='$(KAFKA_CONTROLLER_PORT)' \
	KAFKA_DIR='$(KAFKA_DIR)' KAFKA_VERSION='$(KAFKA_VERSION)'

.PHONY: kafka-up kafka-down kafka-version kafka-fetch

kafka-up: ## Start a local Apache Kafka broker on 127.0.0.1:$(KAFKA_PORT)
	@$(KAFKA_ENV) bash '$(KAFKA_MK_ROOT)/scripts/kafka-up.sh'

kafka-down: ## Stop the local Apache Kafka broker (keeps its data)
	@$(KAFKA_ENV) bash '$(KAFKA_MK_ROOT)/scripts/kafka-down.sh'

kafka-version: ## Print the local Apache Kafka broker's version
	@$(KAFKA_ENV) bash '$(KAFKA_MK_ROOT)/scripts/kafka-version.sh'

kafka-fetch: ## Resolve the Apache Kafka jars from Maven Central
	@$(KAFKA_ENV) bash -c 'source "$$1"; kafka_fetch' _ '$(KAFKA_MK_ROOT)/scripts/kafka-common.sh'
