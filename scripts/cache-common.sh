# shellcheck shell=bash
# Where the project's scripts keep downloaded tools (Kafka and Avro jars, promtool,
# golangci-lint): one folder per tool and version, outside the clone by default, so a fresh clone
# (CI runs every submission in a new one) reuses what an earlier run downloaded on this machine.
# Sourced, never executed.
#
#   IDNOW_KAFKA_CONNECTOR_CACHE   the cache root; a relative path is taken from the repository
#                                 root, so IDNOW_KAFKA_CONNECTOR_CACHE=.cache keeps everything in
#                                 the clone's git-ignored .cache/ as before
#                                 (default ${XDG_CACHE_HOME:-$HOME/.cache}/idnow-kafka-connector,
#                                 or .cache/ in the clone when that cannot be created)
#
# The variable deliberately does not start with IDNOW_CONNECTOR_: the connector reads every such
# variable as a configuration key and would reject this one as unknown.

CACHE_REPO_ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"

# cache_root prints the cache root, creating it.
cache_root() {
	local root="${IDNOW_KAFKA_CONNECTOR_CACHE:-}"
	if [[ -n "$root" ]]; then
		case "$root" in
			/*) ;;
			*) root="$CACHE_REPO_ROOT/$root" ;;
		esac
		mkdir -p "$root" || {
			printf 'cache: IDNOW_KAFKA_CONNECTOR_CACHE=%s cannot be created; point it at a writable folder\n' "$root" >&2
			return 1
		}
		printf '%s\n' "$root"
		return 0
	fi
	local base="${XDG_CACHE_HOME:-}"
	if [[ -z "$base" && -n "${HOME:-}" ]]; then
		base="$HOME/.cache"
	fi
	# A machine without a usable home (a locked-down CI user, HOME=/nonexistent) still works:
	# the clone's own .cache/, which .gitignore excludes.
	if [[ -n "$base" ]] && mkdir -p "$base/idnow-kafka-connector" 2>/dev/null && [[ -w "$base/idnow-kafka-connector" ]]; then
		printf '%s\n' "$base/idnow-kafka-connector"
		return 0
	fi
	mkdir -p "$CACHE_REPO_ROOT/.cache"
	printf '%s\n' "$CACHE_REPO_ROOT/.cache"
}

# cache_dir TOOL VERSION prints the folder for one version of one tool (not created).
cache_dir() {
	local root
	root="$(cache_root)" || return 1
	printf '%s/%s-%s\n' "$root" "$1" "$2"
}

# cache_lock DIR takes an exclusive lock for filling DIR, so two clones fetching the same tool at
# once do not race on the rename of a finished download; cache_unlock releases it. Release it
# before starting anything long-lived: a child process inherits the descriptor and would hold
# the lock for its whole life. Without flock(1) (not util-linux) both do nothing: the
# download-then-rename pattern alone is still safe for one process at a time.
CACHE_LOCK_FD=""
cache_lock() {
	command -v flock >/dev/null 2>&1 || return 0
	cache_unlock
	mkdir -p "$(dirname "$1")"
	exec {CACHE_LOCK_FD}>"$1.lock"
	flock "$CACHE_LOCK_FD"
}

cache_unlock() {
	[[ -n "$CACHE_LOCK_FD" ]] || return 0
	exec {CACHE_LOCK_FD}>&-
	CACHE_LOCK_FD=""
}

# cache_digest FILE prints a short digest of FILE, for markers that must change with it.
cache_digest() {
	sha256sum "$1" | cut -c1-12
}
