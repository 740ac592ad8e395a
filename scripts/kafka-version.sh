#!/usr/bin/env bash
# Prints the version of the Apache Kafka broker scripts/kafka-up.sh runs (from its jars,
# fetching them first if needed), and whether it is running.
#
#   scripts/kafka-version.sh       (or: make kafka-version)
set -euo pipefail
# shellcheck source=scripts/kafka-common.sh
source "$(dirname "${BASH_SOURCE[0]}")/kafka-common.sh"

kafka_fetch
version="$(kafka_tool kafka.Kafka --version | tail -n 1)" ||
	kafka_die "could not read the version from the jars in $KAFKA_LIB"
if pid="$(kafka_alive_pid)"; then
	state="running on 127.0.0.1:$KAFKA_PORT (pid $pid)"
else
	state="not running"
fi
printf 'Apache Kafka %s (KRaft, jars in %s; %s)\n' "$version" "$KAFKA_LIB" "$state"
