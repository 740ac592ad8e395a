#!/usr/bin/env bash
# Stops the broker scripts/kafka-up.sh started, by the PID it recorded in $KAFKA_DIR/kafka.pid:
# TERM (a clean, controlled shutdown), then KILL if it has not exited within KAFKA_STOP_TIMEOUT
# seconds. Data in $KAFKA_DIR/data is kept, so kafka-up restarts the same cluster.
# Stopping a broker that is not running is not an error.
#
#   scripts/kafka-down.sh          (or: make kafka-down)
set -euo pipefail
# shellcheck source=scripts/kafka-common.sh
source "$(dirname "${BASH_SOURCE[0]}")/kafka-common.sh"

main() {
	local pid
	if ! pid="$(kafka_alive_pid)"; then
		rm -f "$KAFKA_PID_FILE"
		kafka_log "not running"
		return 0
	fi
	kafka_log "stopping broker (pid $pid)"
	kill -TERM "$pid" 2>/dev/null || true
	local deadline=$((SECONDS + KAFKA_STOP_TIMEOUT))
	while ((SECONDS < deadline)); do
		if ! kafka_alive_pid >/dev/null; then
			rm -f "$KAFKA_PID_FILE"
			kafka_log "stopped"
			return 0
		fi
		sleep 0.2
	done
	kafka_log "broker (pid $pid) still running ${KAFKA_STOP_TIMEOUT}s after TERM; sending KILL"
	kill -KILL "$pid" 2>/dev/null || true
	local i
	for ((i = 0; i < 50; i++)); do
		kafka_alive_pid >/dev/null || break
		sleep 0.2
	done
	if kafka_alive_pid >/dev/null; then
		kafka_die "broker (pid $pid) survived KILL"
	fi
	rm -f "$KAFKA_PID_FILE"
	kafka_log "killed"
}

main "$@"
