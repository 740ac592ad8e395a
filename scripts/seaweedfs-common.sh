# shellcheck shell=bash
# Shared settings and helpers for scripts/seaweedfs.sh, s3-up.sh and s3-down.sh: a single-node
# SeaweedFS (Apache-2.0) with its S3 gateway on 127.0.0.1, built from the Go module proxy, for the
# integration suite's archive tests. Sourced, never executed.
#
# Environment (all optional):
#   S3_PORT              S3 gateway on 127.0.0.1                     (default 18333)
#   S3_PORT_BASE         first of the eight further ports SeaweedFS needs (master, volume, filer,
#                        each with a gRPC port, the S3 gRPC port, the metrics port):
#                        S3_PORT_BASE..+7                            (default 18334)
#   S3_BUCKET            bucket s3-up creates                        (default idnow-evidence)
#   S3_DIR               the server's state: data, logs, PID; relative paths are taken from the
#                        repository root                            (default .cache/seaweedfs)
#   SEAWEEDFS_VERSION    github.com/seaweedfs/seaweedfs module version
#                                          (default v0.0.0-20261109003541-7506e5f91cd6)
#   SEAWEEDFS_CACHE      where the built `weed` binary is kept, outside the clone so a fresh
#                        clone reuses it (default <tool cache>/seaweedfs-$SEAWEEDFS_VERSION)
#   S3_START_TIMEOUT     seconds s3-up waits for an answering S3 gateway (default 90)
#   S3_STOP_TIMEOUT      seconds s3-down waits after TERM                (default 30)
#   GO                   the go command used for the build           (default go)
set -euo pipefail

S3_REPO_ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
# shellcheck source=scripts/cache-common.sh
source "$S3_REPO_ROOT/scripts/cache-common.sh"

SEAWEEDFS_MODULE="github.com/seaweedfs/seaweedfs"
SEAWEEDFS_VERSION="${SEAWEEDFS_VERSION:-v0.0.0-20261109003541-7506e5f91cd6}"
if [[ -z "${SEAWEEDFS_CACHE:-}" ]]; then
	SEAWEEDFS_CACHE="$(cache_dir seaweedfs "$SEAWEEDFS_VERSION")"
fi
case "$SEAWEEDFS_CACHE" in
	/*) ;;
	*) SEAWEEDFS_CACHE="$S3_REPO_ROOT/$SEAWEEDFS_CACHE" ;;
esac
SEAWEEDFS_BIN="$SEAWEEDFS_CACHE/weed"
GO="${GO:-go}"

S3_PORT="${S3_PORT:-18333}"
S3_PORT_BASE="${S3_PORT_BASE:-18334}"
S3_DIR="${S3_DIR:-.cache/seaweedfs}"
case "$S3_DIR" in
	/*) ;;
	*) S3_DIR="$S3_REPO_ROOT/$S3_DIR" ;;
esac
S3_START_TIMEOUT="${S3_START_TIMEOUT:-90}"
S3_STOP_TIMEOUT="${S3_STOP_TIMEOUT:-30}"
S3_PID_FILE="$S3_DIR/weed.pid"
S3_LOG="$S3_DIR/weed.log"

s3_log() { printf 's3: %s\n' "$*" >&2; }
s3_die() { s3_log "error: $*"; exit 1; }

s3_check_port() {
	local name="$1" value="$2"
	[[ "$value" =~ ^[0-9]+$ ]] && ((value > 0 && value < 65530)) ||
		s3_die "$name=$value is not a usable TCP port; set it to a number between 1 and 65529"
}
s3_check_port S3_PORT "$S3_PORT"
s3_check_port S3_PORT_BASE "$S3_PORT_BASE"
if ((S3_PORT >= S3_PORT_BASE && S3_PORT <= S3_PORT_BASE + 7)); then
	s3_die "S3_PORT=$S3_PORT falls inside S3_PORT_BASE..+7 ($S3_PORT_BASE-$((S3_PORT_BASE + 7))); move one of them"
fi
S3_BUCKET="${S3_BUCKET:-idnow-evidence}"

# s3_alive_pid prints the PID recorded in S3_PID_FILE when that process is a running weed.
s3_alive_pid() {
	[[ -s "$S3_PID_FILE" ]] || return 1
	local pid
	pid="$(cat "$S3_PID_FILE")"
	[[ "$pid" =~ ^[0-9]+$ ]] || return 1
	kill -0 "$pid" 2>/dev/null || return 1
	grep -q weed "/proc/$pid/cmdline" 2>/dev/null || return 1
	printf '%s\n' "$pid"
}

# s3_tcp_open PORT reports whether something accepts TCP connections on 127.0.0.1:PORT.
s3_tcp_open() {
	(exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null
}
