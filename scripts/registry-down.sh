#!/usr/bin/env bash
# Stops the registry scripts/registry-up.sh started, by the PID it recorded: TERM, then KILL if
# it has not exited within REGISTRY_STOP_TIMEOUT seconds. Storage is in memory, so everything
# registered is gone. Stopping a registry that is not running is not an error.
#
#   scripts/registry-down.sh        (or: make registry-down)
set -euo pipefail
# shellcheck source=scripts/registry-common.sh
source "$(dirname "${BASH_SOURCE[0]}")/registry-common.sh"

main() {
	local pid
	if ! pid="$(registry_alive_pid)"; then
		rm -f "$REGISTRY_PID_FILE"
		registry_log "not running"
		return 0
	fi
	registry_log "stopping Apicurio Registry (pid $pid)"
	kill -TERM "$pid" 2>/dev/null || true
	local deadline=$((SECONDS + REGISTRY_STOP_TIMEOUT))
	while ((SECONDS < deadline)); do
		if ! registry_alive_pid >/dev/null; then
			rm -f "$REGISTRY_PID_FILE"
			registry_log "stopped"
			return 0
		fi
		sleep 0.2
	done
	registry_log "registry (pid $pid) still running ${REGISTRY_STOP_TIMEOUT}s after TERM; sending KILL"
	kill -KILL "$pid" 2>/dev/null || true
	sleep 1
	registry_alive_pid >/dev/null && registry_die "registry (pid $pid) survived KILL"
	rm -f "$REGISTRY_PID_FILE"
	registry_log "killed"
}

main "$@"
