# shellcheck shell=bash
# Shared settings and helpers for scripts/registry-up.sh and registry-down.sh: Apicurio Registry
# (Apache-2.0) run from its Maven Central distribution with no build step, for the integration
# suite's registry mode. Its Confluent-compatible API is under /apis/ccompat/v7. Sourced, never
# executed.
#
# Environment (all optional):
#   REGISTRY_PORT             HTTP API on 127.0.0.1                     (default 18081)
#   REGISTRY_MANAGEMENT_PORT  Quarkus management interface (health) on 127.0.0.1 (default 18082)
#   REGISTRY_DIR              log and PID file; relative paths are taken from the repository
#                             root                                      (default .cache/registry)
#   REGISTRY_CACHE            the unpacked distribution (app/) and its Maven repository (m2/);
#                             relative paths are taken from the repository root
#                             (default <tool cache>/apicurio-$APICURIO_VERSION, scripts/cache-common.sh)
#   APICURIO_VERSION          io.apicurio:apicurio-registry-app version (default 3.3.3)
#   REGISTRY_START_TIMEOUT    seconds registry-up waits for readiness   (default 90)
#   REGISTRY_STOP_TIMEOUT     seconds registry-down waits after TERM    (default 30)
#   REGISTRY_HEAP_OPTS        JVM heap                                  (default -Xms64m -Xmx512m)
#   JAVA_HOME                 a Java 21+ to use; without it the scripts take the newest Java 21+
#                             under /usr/lib/jvm, else java on PATH if it is 21+
#
# Storage is in memory (H2, the distribution's default): every registry-up starts empty, which
# is what a test suite wants.

set -euo pipefail

REGISTRY_REPO_ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
# shellcheck source=scripts/cache-common.sh
source "$REGISTRY_REPO_ROOT/scripts/cache-common.sh"

registry_abs() { case "$1" in /*) printf '%s\n' "$1" ;; *) printf '%s\n' "$REGISTRY_REPO_ROOT/$1" ;; esac; }

REGISTRY_PORT="${REGISTRY_PORT:-18081}"
REGISTRY_MANAGEMENT_PORT="${REGISTRY_MANAGEMENT_PORT:-18082}"
REGISTRY_DIR="$(registry_abs "${REGISTRY_DIR:-.cache/registry}")"
APICURIO_VERSION="${APICURIO_VERSION:-3.3.3}"
if [[ -z "${REGISTRY_CACHE:-}" ]]; then
	REGISTRY_CACHE="$(cache_dir apicurio "$APICURIO_VERSION")"
fi
REGISTRY_CACHE="$(registry_abs "$REGISTRY_CACHE")"
REGISTRY_START_TIMEOUT="${REGISTRY_START_TIMEOUT:-90}"
REGISTRY_STOP_TIMEOUT="${REGISTRY_STOP_TIMEOUT:-30}"
REGISTRY_HEAP_OPTS="${REGISTRY_HEAP_OPTS:--Xms64m -Xmx512m}"

REGISTRY_APP="$REGISTRY_CACHE/app"
REGISTRY_M2="$REGISTRY_CACHE/m2"
REGISTRY_MARKER="$REGISTRY_APP/.complete-$APICURIO_VERSION"
REGISTRY_PID_FILE="$REGISTRY_DIR/registry.pid"
REGISTRY_LOG="$REGISTRY_DIR/registry.out"

registry_log() { printf 'registry: %s\n' "$*" >&2; }
registry_die() { registry_log "error: $*"; exit 1; }

for _p in REGISTRY_PORT REGISTRY_MANAGEMENT_PORT; do
	[[ "${!_p}" =~ ^[0-9]+$ ]] && ((${!_p} > 0 && ${!_p} < 65536)) ||
		registry_die "$_p=${!_p} is not a TCP port; set it to a number between 1 and 65535"
done
[[ "$REGISTRY_PORT" != "$REGISTRY_MANAGEMENT_PORT" ]] ||
	registry_die "REGISTRY_PORT and REGISTRY_MANAGEMENT_PORT are both $REGISTRY_PORT; give them different ports"

# java_major prints the feature version of the java binary $1 (17, 21, 25), or nothing.
java_major() {
	"$1" -XshowSettings:properties -version 2>&1 |
		sed -nE 's/^ *java\.specification\.version = ([0-9]+).*/\1/p' | head -n 1
}

# registry_java prints a Java 21+ binary: JAVA_HOME's if it is one, else the newest under
# /usr/lib/jvm, else java on PATH. Apicurio Registry 3.x is built for Java 21; the project's
# default Java 17 (Kafka, the interop check) cannot run it.
registry_java() {
	local cand best="" best_v=0 v
	if [[ -n "${JAVA_HOME:-}" && -x "$JAVA_HOME/bin/java" ]]; then
		v="$(java_major "$JAVA_HOME/bin/java")"
		if [[ -n "$v" ]] && ((v >= 21)); then
			printf '%s\n' "$JAVA_HOME/bin/java"
			return 0
		fi
		registry_log "JAVA_HOME=$JAVA_HOME is Java ${v:-unknown}; Apicurio Registry needs 21+, looking for another"
	fi
	for cand in /usr/lib/jvm/*/bin/java "$(command -v java || true)"; do
		[[ -n "$cand" && -x "$cand" ]] || continue
		v="$(java_major "$cand")"
		if [[ -n "$v" ]] && ((v >= 21 && v > best_v)); then
			best="$cand" best_v="$v"
		fi
	done
	[[ -n "$best" ]] || return 1
	printf '%s\n' "$best"
}

# registry_fetch downloads and unpacks the distribution into REGISTRY_APP unless it is there,
# through a scratch folder and a rename under a lock (as kafka_fetch does), so an interrupted
# download is never taken for a complete one.
registry_fetch() {
	[[ -f "$REGISTRY_MARKER" ]] && return 0
	command -v mvn >/dev/null 2>&1 || registry_die "mvn not found; install Maven 3.8+ (apt-get install maven)"
	mkdir -p "$REGISTRY_CACHE" || registry_die "cannot create REGISTRY_CACHE=$REGISTRY_CACHE; point it (or IDNOW_KAFKA_CONNECTOR_CACHE) at a writable folder"
	cache_lock "$REGISTRY_CACHE"
	if [[ -f "$REGISTRY_MARKER" ]]; then
		cache_unlock
		return 0
	fi
	local tmp="$REGISTRY_CACHE/app.tmp.$$" start=$SECONDS
	rm -rf "$tmp"
	mkdir -p "$tmp/download"
	registry_log "fetching Apicurio Registry $APICURIO_VERSION (about 160 MB) from Maven Central into $REGISTRY_CACHE"
	# The plugin is named with its version: without a pom, Maven 3.8 would pick an ancient default.
	if ! (cd "$tmp/download" && mvn -B -q -ntp -Dstyle.color=never -Dmaven.repo.local="$REGISTRY_M2" \
		org.apache.maven.plugins:maven-dependency-plugin:3.8.1:copy \
		-Dartifact="io.apicurio:apicurio-registry-app:$APICURIO_VERSION:tar.gz:all" \
		-DoutputDirectory="$tmp/download" 2>&1 | sed -u 's/\x1b\[[0-9;]*m//g' >&2); then
		rm -rf "$tmp"
		cache_unlock
		registry_die "could not fetch io.apicurio:apicurio-registry-app:$APICURIO_VERSION:tar.gz:all with mvn (see output above)"
	fi
	tar -xzf "$tmp/download/apicurio-registry-app-$APICURIO_VERSION-all.tar.gz" -C "$tmp" ||
		{ rm -rf "$tmp"; cache_unlock; registry_die "could not unpack the Apicurio Registry distribution"; }
	rm -rf "$tmp/download"
	[[ -f "$tmp/quarkus-run.jar" ]] || { rm -rf "$tmp"; cache_unlock; registry_die "the distribution has no quarkus-run.jar"; }
	touch "$tmp/$(basename "$REGISTRY_MARKER")"
	rm -rf "$REGISTRY_APP"
	mv "$tmp" "$REGISTRY_APP"
	cache_unlock
	registry_log "fetched and unpacked in $((SECONDS - start)) s"
}

# registry_alive_pid prints the recorded PID if that process is alive and is this registry (a
# quarkus-run.jar JVM on REGISTRY_PORT), so a reused PID is never signalled.
registry_alive_pid() {
	[[ -f "$REGISTRY_PID_FILE" ]] || return 1
	local pid state cmdline
	pid="$(tr -dc '0-9' <"$REGISTRY_PID_FILE")"
	[[ -n "$pid" && -r "/proc/$pid/stat" ]] || return 1
	state="$(sed -E 's/^[0-9]+ \(.*\) ([A-Za-z]).*/\1/' "/proc/$pid/stat" 2>/dev/null)" || return 1
	[[ "$state" != "Z" && "$state" != "X" ]] || return 1
	cmdline="$(tr '\0' ' ' <"/proc/$pid/cmdline" 2>/dev/null)" || return 1
	[[ "$cmdline" == *"quarkus.http.port=$REGISTRY_PORT "*quarkus-run.jar* ]] || return 1
	printf '%s\n' "$pid"
}

registry_tcp_open() {
	timeout 2 bash -c "exec 3<>/dev/tcp/127.0.0.1/$1" 2>/dev/null
}

# registry_ready reports whether the management interface says ready and the ccompat API answers.
registry_ready() {
	curl -fsS -o /dev/null --max-time 2 "http://127.0.0.1:$REGISTRY_MANAGEMENT_PORT/health/ready" 2>/dev/null &&
		curl -fsS -o /dev/null --max-time 2 "http://127.0.0.1:$REGISTRY_PORT/apis/ccompat/v7/subjects" 2>/dev/null
}
