# shellcheck shell=bash
# Shared settings and helpers for scripts/kafka-up.sh, kafka-down.sh and kafka-version.sh:
# a single-node Apache Kafka broker (KRaft, combined broker+controller) run from Maven jars,
# for CI machines without a Docker engine. Sourced, never executed.
#
# Environment (all optional):
#   KAFKA_PORT             client listener on 127.0.0.1            (default 19092)
#   KAFKA_CONTROLLER_PORT  KRaft controller listener on 127.0.0.1  (default 19093)
#   KAFKA_DIR              the broker's state: config, data, logs, PID; relative paths are
#                          taken from the repository root          (default .cache/kafka)
#   KAFKA_CACHE            the jars (lib/) and the Maven repository they came from (m2/), kept
#                          outside the clone so a fresh clone reuses them; relative paths are
#                          taken from the repository root
#                          (default <tool cache>/kafka-$KAFKA_VERSION, see below)
#   IDNOW_KAFKA_CONNECTOR_CACHE  the tool cache root (scripts/cache-common.sh): default
#                          ${XDG_CACHE_HOME:-$HOME/.cache}/idnow-kafka-connector; set it to
#                          .cache to keep the jars in the clone as before
#   KAFKA_VERSION          org.apache.kafka:kafka_2.13 version     (default 4.4.0)
#   KAFKA_START_TIMEOUT    seconds kafka-up waits for readiness    (default 90)
#   KAFKA_STOP_TIMEOUT     seconds kafka-down waits after TERM     (default 60)
#   KAFKA_HEAP_OPTS        broker heap                             (default -Xms256m -Xmx512m)
#   JAVA_HOME              which Java to use (else java on PATH)

set -euo pipefail

KAFKA_REPO_ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
# shellcheck source=scripts/cache-common.sh
source "$KAFKA_REPO_ROOT/scripts/cache-common.sh"
KAFKA_PORT="${KAFKA_PORT:-19092}"
KAFKA_CONTROLLER_PORT="${KAFKA_CONTROLLER_PORT:-19093}"
KAFKA_DIR="${KAFKA_DIR:-.cache/kafka}"
case "$KAFKA_DIR" in
	/*) ;;
	*) KAFKA_DIR="$KAFKA_REPO_ROOT/$KAFKA_DIR" ;;
esac
KAFKA_VERSION="${KAFKA_VERSION:-4.4.0}"
if [[ -z "${KAFKA_CACHE:-}" ]]; then
	KAFKA_CACHE="$(cache_dir kafka "$KAFKA_VERSION")"
fi
case "$KAFKA_CACHE" in
	/*) ;;
	*) KAFKA_CACHE="$KAFKA_REPO_ROOT/$KAFKA_CACHE" ;;
esac
KAFKA_START_TIMEOUT="${KAFKA_START_TIMEOUT:-90}"
KAFKA_STOP_TIMEOUT="${KAFKA_STOP_TIMEOUT:-60}"
KAFKA_HEAP_OPTS="${KAFKA_HEAP_OPTS:--Xms256m -Xmx512m}"

KAFKA_POM="$KAFKA_REPO_ROOT/deploy/kafka/pom.xml"
KAFKA_LIB="$KAFKA_CACHE/lib"
KAFKA_M2="$KAFKA_CACHE/m2"
KAFKA_CONFIG_DIR="$KAFKA_DIR/config"
KAFKA_DATA="$KAFKA_DIR/data"
KAFKA_LOGS="$KAFKA_DIR/logs"
KAFKA_PID_FILE="$KAFKA_DIR/kafka.pid"
KAFKA_PROPERTIES="$KAFKA_CONFIG_DIR/server.properties"
KAFKA_LOG4J="$KAFKA_CONFIG_DIR/log4j2.properties"
# Written after the data directory is formatted; records what the stored metadata depends on.
KAFKA_STATE_FILE="$KAFKA_DIR/cluster.env"

if [[ -n "${JAVA_HOME:-}" && -x "$JAVA_HOME/bin/java" ]]; then
	KAFKA_JAVA="$JAVA_HOME/bin/java"
else
	KAFKA_JAVA="java"
fi

kafka_log() { printf 'kafka: %s\n' "$*" >&2; }
kafka_die() { kafka_log "error: $*"; exit 1; }

kafka_check_port() {
	local name="$1" value="$2"
	[[ "$value" =~ ^[0-9]+$ ]] && ((value > 0 && value < 65536)) ||
		kafka_die "$name=$value is not a TCP port; set it to a number between 1 and 65535"
}
kafka_check_port KAFKA_PORT "$KAFKA_PORT"
kafka_check_port KAFKA_CONTROLLER_PORT "$KAFKA_CONTROLLER_PORT"
[[ "$KAFKA_PORT" != "$KAFKA_CONTROLLER_PORT" ]] ||
	kafka_die "KAFKA_PORT and KAFKA_CONTROLLER_PORT are both $KAFKA_PORT; give them different ports"

# kafka_marker is the file whose presence says the jars of KAFKA_VERSION are complete in KAFKA_LIB.
# It names a digest of deploy/kafka/pom.xml too: the cache is shared by every clone on the
# machine, and a clone whose pom asks for other artifacts must not take another's jars.
kafka_marker() { printf '%s/.complete-%s-%s' "$KAFKA_LIB" "$KAFKA_VERSION" "$(cache_digest "$KAFKA_POM")"; }

# kafka_fetch resolves the broker jars from Maven Central into KAFKA_LIB unless they are there.
# It copies into a scratch folder and renames it, so an interrupted download never leaves a
# half-filled lib folder that a later run would mistake for a complete one; a lock keeps two
# clones that share the cache from fetching into it at once.
kafka_fetch() {
	if [[ -f "$(kafka_marker)" ]]; then
		return 0
	fi
	command -v mvn >/dev/null 2>&1 || kafka_die "mvn not found; install Maven 3.8+ (apt-get install maven)"
	command -v "$KAFKA_JAVA" >/dev/null 2>&1 || kafka_die "java not found; install Java 17+ or set JAVA_HOME"
	mkdir -p "$KAFKA_CACHE" || kafka_die "cannot create KAFKA_CACHE=$KAFKA_CACHE; point it (or IDNOW_KAFKA_CONNECTOR_CACHE) at a writable folder"
	cache_lock "$KAFKA_CACHE"
	if [[ -f "$(kafka_marker)" ]]; then # another clone fetched them while we waited
		cache_unlock
		return 0
	fi
	local tmp="$KAFKA_CACHE/lib.tmp.$$"
	rm -rf "$tmp"
	kafka_log "fetching Apache Kafka $KAFKA_VERSION jars from Maven Central into $KAFKA_LIB"
	local start=$SECONDS
	# Debian's Maven 3.8 prints colour codes even in batch mode; strip them from the log.
	if ! mvn -B -q -ntp -Dstyle.color=never \
		-Dmaven.repo.local="$KAFKA_M2" \
		-Dkafka.version="$KAFKA_VERSION" \
		-f "$KAFKA_POM" \
		dependency:copy-dependencies \
		-DincludeScope=runtime \
		-DoutputDirectory="$tmp" 2>&1 | sed -u 's/\x1b\[[0-9;]*m//g' >&2; then
		rm -rf "$tmp"
		kafka_die "could not resolve org.apache.kafka:kafka_2.13:$KAFKA_VERSION with mvn (see output above)"
	fi
	touch "$tmp/$(basename "$(kafka_marker)")"
	rm -rf "$KAFKA_LIB"
	mv "$tmp" "$KAFKA_LIB"
	# Released before anything long-lived starts: the broker would inherit the lock otherwise.
	cache_unlock
	kafka_log "fetched $(find "$KAFKA_LIB" -name '*.jar' | wc -l) jars in $((SECONDS - start)) s"
}

# kafka_tool runs a Kafka command-line class with a small, fast-starting JVM.
kafka_tool() {
	"$KAFKA_JAVA" -Xmx256m -XX:TieredStopAtLevel=1 -XX:+UseSerialGC \
		-Dlog4j2.configurationFile="$KAFKA_REPO_ROOT/deploy/kafka/log4j2-tools.properties" \
		-cp "$KAFKA_LIB/*" "$@"
}

# kafka_alive_pid prints the recorded PID if that process is alive and is this broker
# (a kafka.Kafka JVM started with this KAFKA_DIR's server.properties), so a stale PID file whose
# number was reused by an unrelated process is never signalled.
kafka_alive_pid() {
	[[ -f "$KAFKA_PID_FILE" ]] || return 1
	local pid state cmdline
	pid="$(tr -dc '0-9' <"$KAFKA_PID_FILE")"
	[[ -n "$pid" ]] || return 1
	[[ -r "/proc/$pid/stat" ]] || return 1
	# A zombie has exited; only its parent has not reaped it yet.
	state="$(sed -E 's/^[0-9]+ \(.*\) ([A-Za-z]).*/\1/' "/proc/$pid/stat" 2>/dev/null)" || return 1
	[[ "$state" != "Z" && "$state" != "X" ]] || return 1
	cmdline="$(tr '\0' ' ' <"/proc/$pid/cmdline" 2>/dev/null)" || return 1
	[[ "$cmdline" == *kafka.Kafka*"$KAFKA_PROPERTIES"* ]] || return 1
	printf '%s\n' "$pid"
}

# kafka_tcp_open reports whether something accepts TCP connections on 127.0.0.1:$1.
kafka_tcp_open() {
	timeout 2 bash -c "exec 3<>/dev/tcp/127.0.0.1/$1" 2>/dev/null
}
