#!/usr/bin/env bash
# Stops the SeaweedFS server scripts/s3-up.sh started, by the PID it recorded in $S3_DIR/weed.pid:
# TERM, then KILL after S3_STOP_TIMEOUT seconds. Data in $S3_DIR/data is kept. Stopping a server
# that is not running is not an error.
#
#   scripts/s3-down.sh             (or: make s3-down)
set -euo pipefail
# shellcheck source=scripts/seaweedfs-common.sh
source "$(dirname "${BASH_SOURCE[0]}")/seaweedfs-common.sh"

main() {
	local pid
	if ! pid="$(s3_alive_pid)"; then
		rm -f "$S3_PID_FILE"
		s3_log "not running"
		return 0
	fi
	s3_log "stopping SeaweedFS (pid $pid)"
	kill -TERM "$pid" 2>/dev/null || true
	local deadline=$((SECONDS + S3_STOP_TIMEOUT))
	while ((SECONDS < deadline)); do
		if ! s3_alive_pid >/dev/null; then
			rm -f "$S3_PID_FILE"
			s3_log "stopped"
			return 0
		fi
		sleep 0.2
	done
	s3_log "pid $pid still running ${S3_STOP_TIMEOUT}s after TERM; sending KILL"
	kill -KILL "$pid" 2>/dev/null || true
	rm -f "$S3_PID_FILE"
	s3_log "killed"
}

main "$@"
