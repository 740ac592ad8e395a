#!/usr/bin/env bash
# Starts Apicurio Registry on 127.0.0.1:$REGISTRY_PORT (Confluent-compatible API under
# /apis/ccompat/v7) with in-memory storage, from the Maven Central distribution cached outside the
# clone, with a Java 21+ found on the machine; waits until it is ready and records its PID.
# Settings: scripts/registry-common.sh.
#
#   scripts/registry-up.sh          (or: make registry-up)
#   SCHEMA_REGISTRY_URL=http://127.0.0.1:18081/apis/ccompat/v7 make itest
set -euo pipefail
# shellcheck source=scripts/registry-common.sh
source "$(dirname "${BASH_SOURCE[0]}")/registry-common.sh"

main() {
	local pid java
	if pid="$(registry_alive_pid)"; then
		registry_ready || registry_die "a registry (pid $pid) is running but not ready; make registry-down and retry"
		registry_log "already running: Apicurio Registry on http://127.0.0.1:$REGISTRY_PORT/apis/ccompat/v7 (pid $pid)"
		return 0
	fi
	rm -f "$REGISTRY_PID_FILE"
	java="$(registry_java)" || registry_die "Apicurio Registry $APICURIO_VERSION needs Java 21 or newer, and none was found (JAVA_HOME, /usr/lib/jvm/*, PATH): install one (apt-get install openjdk-21-jre-headless, or a Temurin 21+ JDK) or set JAVA_HOME to it"
	local start=$SECONDS
	registry_fetch
	local port
	for port in "$REGISTRY_PORT" "$REGISTRY_MANAGEMENT_PORT"; do
		if registry_tcp_open "$port"; then
			registry_die "127.0.0.1:$port is already in use by another process; stop it or choose other ports (REGISTRY_PORT, REGISTRY_MANAGEMENT_PORT)"
		fi
	done
	mkdir -p "$REGISTRY_DIR"
	printf '===== %s starting Apicurio Registry %s with %s =====\n' "$(date -u +%Y-%m-%dT%H:%M:%SZ)" "$APICURIO_VERSION" "$java" >>"$REGISTRY_LOG"
	# setsid detaches the registry from the caller's session so it outlives make; the inner shell
	# records its own PID and becomes the JVM (exec), so the PID file names the registry itself.
	# The management interface (health) gets its own port; both bind to loopback only.
	# shellcheck disable=SC2086 # REGISTRY_HEAP_OPTS is a list of JVM flags.
	(cd "$REGISTRY_APP" && setsid bash -c 'echo $$ >"$0"; exec "$@"' "$REGISTRY_PID_FILE" \
		"$java" $REGISTRY_HEAP_OPTS -XX:+UseSerialGC -XX:TieredStopAtLevel=1 -Djava.awt.headless=true \
		-Dquarkus.http.host=127.0.0.1 -Dquarkus.http.port="$REGISTRY_PORT" \
		-Dquarkus.management.host=127.0.0.1 -Dquarkus.management.port="$REGISTRY_MANAGEMENT_PORT" \
		-Dapicurio.storage.kind=sql -Dapicurio.storage.sql.kind=h2 \
		-jar quarkus-run.jar </dev/null >>"$REGISTRY_LOG" 2>&1 &)
	local i
	for ((i = 0; i < 100; i++)); do
		[[ -s "$REGISTRY_PID_FILE" ]] && break
		sleep 0.1
	done
	pid="$(tr -dc '0-9' <"$REGISTRY_PID_FILE" 2>/dev/null || true)"
	[[ -n "$pid" ]] || registry_die "the registry process did not start (no PID in $REGISTRY_PID_FILE)"
	local deadline=$((SECONDS + REGISTRY_START_TIMEOUT))
	while ! registry_ready; do
		if ! registry_alive_pid >/dev/null; then
			tail -n 40 "$REGISTRY_LOG" >&2
			rm -f "$REGISTRY_PID_FILE"
			registry_die "the registry (pid $pid) exited during start-up; its log is above and in $REGISTRY_LOG"
		fi
		if ((SECONDS >= deadline)); then
			tail -n 40 "$REGISTRY_LOG" >&2
			"$REGISTRY_REPO_ROOT/scripts/registry-down.sh" || true
			registry_die "the registry was not ready within ${REGISTRY_START_TIMEOUT}s (REGISTRY_START_TIMEOUT)"
		fi
		sleep 0.5
	done
	registry_log "Apicurio Registry $APICURIO_VERSION ready on http://127.0.0.1:$REGISTRY_PORT/apis/ccompat/v7 (pid $pid, Java $(java_major "$java"), $((SECONDS - start)) s; log in $REGISTRY_LOG)"
}

main "$@"
