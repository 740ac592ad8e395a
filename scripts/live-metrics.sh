#!/usr/bin/env bash
# Scrapes /metrics from a short-lived `idnow-connector run` (embedded broker, IDnow simulator,
# ingress and enricher in one process, deploy/local/config.yaml) once records have flowed through
# both Kafka clients, and writes the exposition to OUT (default: standard output). The process
# listens on free 127.0.0.1 ports, keeps its data in a temporary folder, and is stopped by its
# PID at the end, whatever happened.
#
#   scripts/live-metrics.sh [OUT]
#   make promtool-check        (runs this, then `promtool check metrics` on the result)
#
# Environment (all optional):
#   BIN                  the connector binary (default: built into a temporary folder)
#   LIVE_METRICS_WAIT    seconds to wait for records produced and fetched (default 60)
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
OUT="${1:-}"
WAIT="${LIVE_METRICS_WAIT:-60}"
[[ "$WAIT" =~ ^[0-9]+$ ]] || { echo "live-metrics.sh: LIVE_METRICS_WAIT=$WAIT is not a number of seconds" >&2; exit 2; }

log() { printf 'live-metrics.sh: %s\n' "$*" >&2; }
die() { log "error: $*"; exit 1; }

WORK="$(mktemp -d)"
PID=""
cleanup() {
	if [[ -n "$PID" ]] && kill -0 "$PID" 2>/dev/null; then
		kill -TERM "$PID" 2>/dev/null || true
		local i
		for ((i = 0; i < 100; i++)); do
			kill -0 "$PID" 2>/dev/null || break
			sleep 0.1
		done
		if kill -0 "$PID" 2>/dev/null; then
			log "connector (pid $PID) still running 10 s after TERM; sending KILL"
			kill -KILL "$PID" 2>/dev/null || true
		fi
		wait "$PID" 2>/dev/null || true
	fi
	rm -rf "$WORK"
}
trap cleanup EXIT

bin="${BIN:-}"
if [[ -z "$bin" ]]; then
	bin="$WORK/idnow-connector"
	(cd "$ROOT" && go build -o "$bin" ./cmd/idnow-connector) || die "go build failed"
fi
[[ -x "$bin" && -f "$bin" ]] || die "BIN=$bin is not an executable file"
# The connector runs from the temporary folder (its relative paths land there): make the path
# to the binary absolute first.
bin="$(cd "$(dirname "$bin")" && pwd)/$(basename "$bin")"

# free_port prints a 127.0.0.1 TCP port nothing listens on. A port can still be taken between
# this check and the connector's bind; the connector then exits with the address in its error,
# and the run fails visibly rather than scraping someone else's process.
declare -A taken=()
free_port() {
	local p i
	for ((i = 0; i < 200; i++)); do
		p=$((20000 + RANDOM % 40000))
		[[ -z "${taken[$p]:-}" ]] || continue
		if ! timeout 1 bash -c "exec 3<>/dev/tcp/127.0.0.1/$p" 2>/dev/null; then
			taken[$p]=1
			printf '%s\n' "$p"
			return 0
		fi
	done
	die "found no free 127.0.0.1 port"
}
admin_port="$(free_port)"
ingress_port="$(free_port)"
sim_port="$(free_port)"
kafka_port="$(free_port)"

log "starting $bin run on 127.0.0.1 (admin :$admin_port, ingress :$ingress_port, simulator :$sim_port, embedded Kafka :$kafka_port)"
(
	cd "$WORK"
	export IDNOW_CONNECTOR_ADMIN__LISTEN="127.0.0.1:$admin_port"
	export IDNOW_CONNECTOR_INGRESS__LISTEN="127.0.0.1:$ingress_port"
	export IDNOW_CONNECTOR_SIMULATOR__LISTEN="127.0.0.1:$sim_port"
	export IDNOW_CONNECTOR_KAFKA__EMBEDDED__LISTEN="127.0.0.1:$kafka_port"
	export IDNOW_CONNECTOR_KAFKA__EMBEDDED__DATA_DIR="$WORK/kafka"
	# More sessions per second than the local default so both clients move records quickly.
	export IDNOW_CONNECTOR_SIMULATOR__RATE=20
	exec "$bin" run --config "$ROOT/deploy/local/config.yaml"
) >"$WORK/connector.log" 2>&1 &
PID=$!

# scrape writes /metrics to $WORK/metrics.txt.
scrape() {
	local body
	body="$(timeout 5 bash -c '
		exec 3<>/dev/tcp/127.0.0.1/'"$admin_port"'
		printf "GET /metrics HTTP/1.0\r\nHost: 127.0.0.1\r\n\r\n" >&3
		cat <&3' 2>/dev/null)" || return 1
	[[ "$body" == "HTTP/1."?" 200"* ]] || return 1
	# Drop the status line and headers (up to the first empty line) and the CRs they end with.
	sed '1,/^\r\{0,1\}$/d' <<<"$body" >"$WORK/metrics.txt"
}

# has_samples NAME reports whether the scrape holds a sample of NAME with a value above 0.
has_samples() {
	awk -v n="$1" '$0 !~ /^#/ { split($1, a, "{"); if (a[1] == n && $NF + 0 > 0) found = 1 } END { exit !found }' "$WORK/metrics.txt"
}

deadline=$((SECONDS + WAIT))
while :; do
	if ! kill -0 "$PID" 2>/dev/null; then
		tail -n 30 "$WORK/connector.log" >&2
		die "the connector exited early (its log is above)"
	fi
	if scrape && has_samples idnow_connector_kafka_produce_records_total && has_samples idnow_connector_kafka_fetch_records_total &&
		has_samples idnow_connector_enrich_records_enriched_total; then
		break
	fi
	if ((SECONDS >= deadline)); then
		tail -n 30 "$WORK/connector.log" >&2
		die "no records produced, fetched and enriched within ${WAIT}s (log above; last scrape: $(wc -l <"$WORK/metrics.txt" 2>/dev/null || echo 0) lines)"
	fi
	sleep 1
done
log "scraped $(grep -vc '^#' "$WORK/metrics.txt") samples after records flowed"
if [[ -n "$OUT" ]]; then
	cp "$WORK/metrics.txt" "$OUT"
else
	cat "$WORK/metrics.txt"
fi
