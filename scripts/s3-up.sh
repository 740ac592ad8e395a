#!/usr/bin/env bash
# Starts a single-node SeaweedFS (master, volume, filer and S3 gateway in one `weed server`) on
# 127.0.0.1 for the integration suite, and creates the bucket $S3_BUCKET. The weed binary is
# built once per version into the tool cache (scripts/seaweedfs.sh, ~8 min of CPU the first
# time). S3 answers anonymously (no identities configured) on 127.0.0.1:$S3_PORT.
#
#   scripts/s3-up.sh               (or: make s3-up)
#   S3_PORT=23100 S3_PORT_BASE=23101 scripts/s3-up.sh
#
# Idempotent: when the server recorded in $S3_DIR/weed.pid runs, it only checks it answers.
# Data lives in $S3_DIR/data and survives s3-down/up. Settings: scripts/seaweedfs-common.sh.
set -euo pipefail
# shellcheck source=scripts/seaweedfs-common.sh
source "$(dirname "${BASH_SOURCE[0]}")/seaweedfs-common.sh"

# ready reports whether the S3 gateway answers a bucket listing.
ready() {
	s3_tcp_open "$S3_PORT" || return 1
	curl -fsS -o /dev/null --max-time 5 "http://127.0.0.1:$S3_PORT/" 2>/dev/null
}

# create_bucket creates $S3_BUCKET (an existing one is fine), retrying for up to 60 s: right
# after a restart with existing data the gateway answers listings before it accepts writes.
create_bucket() {
	local code="" deadline=$((SECONDS + 60))
	while ((SECONDS < deadline)); do
		code="$(curl -sS -o /dev/null -w '%{http_code}' --max-time 10 -X PUT "http://127.0.0.1:$S3_PORT/$S3_BUCKET" 2>/dev/null)" || code="no answer"
		case "$code" in
			200 | 409) return 0 ;;
		esac
		sleep 1
	done
	s3_die "creating bucket $S3_BUCKET did not succeed within 60 s (last answer: $code); log: $S3_LOG"
}

main() {
	command -v curl >/dev/null 2>&1 || s3_die "curl not found; install it (apt-get install curl)"
	local pid
	if pid="$(s3_alive_pid)"; then
		if ready; then
			create_bucket
			s3_log "already running (pid $pid) on 127.0.0.1:$S3_PORT, bucket $S3_BUCKET"
			return 0
		fi
		s3_die "weed (pid $pid) runs but S3 does not answer on 127.0.0.1:$S3_PORT; run scripts/s3-down.sh first"
	fi
	local p
	for p in "$S3_PORT" $(seq "$S3_PORT_BASE" $((S3_PORT_BASE + 7))); do
		if s3_tcp_open "$p"; then
			s3_die "port 127.0.0.1:$p is in use; choose other S3_PORT / S3_PORT_BASE"
		fi
	done
	local weed
	weed="$("$S3_REPO_ROOT/scripts/seaweedfs.sh")"
	mkdir -p "$S3_DIR/data"
	local b=$S3_PORT_BASE
	s3_log "starting SeaweedFS: S3 on 127.0.0.1:$S3_PORT, other ports $b-$((b + 7)), data in $S3_DIR/data"
	# Every port set explicitly (defaults like 8888 or 9333 collide with other servers); the
	# optional services (Iceberg, Lance catalogs) are off; no telemetry.
	nohup "$weed" server -dir="$S3_DIR/data" -ip=127.0.0.1 -ip.bind=127.0.0.1 \
		-master.port="$b" -master.port.grpc=$((b + 1)) \
		-volume.port=$((b + 2)) -volume.port.grpc=$((b + 3)) \
		-filer -filer.port=$((b + 4)) -filer.port.grpc=$((b + 5)) \
		-s3 -s3.port="$S3_PORT" -s3.port.grpc=$((b + 6)) -s3.port.iceberg=0 -s3.port.lance=0 \
		-metricsPort=$((b + 7)) -master.telemetry=false -master.volumeSizeLimitMB=1024 -volume.max=64 \
		>"$S3_LOG" 2>&1 </dev/null &
	pid=$!
	echo "$pid" >"$S3_PID_FILE"
	local deadline=$((SECONDS + S3_START_TIMEOUT))
	while ((SECONDS < deadline)); do
		if ! kill -0 "$pid" 2>/dev/null; then
			tail -n 40 "$S3_LOG" >&2 || true
			s3_die "weed (pid $pid) exited during start-up (log: $S3_LOG)"
		fi
		if ready; then
			create_bucket
			s3_log "ready after ${SECONDS}s (pid $pid): S3_ENDPOINT=http://127.0.0.1:$S3_PORT bucket $S3_BUCKET"
			return 0
		fi
		sleep 0.5
	done
	tail -n 40 "$S3_LOG" >&2 || true
	s3_die "S3 did not answer on 127.0.0.1:$S3_PORT within ${S3_START_TIMEOUT}s (S3_START_TIMEOUT); log: $S3_LOG"
}

main "$@"
