#!/usr/bin/env bash
# Runs every benchmark of issue 6 and prints the ratios (BENCHMARKS.md explains them):
#   1. micro-benchmarks (go test -bench, -benchmem): Avro, codecs, webhook verification, the
#      ingress handler path, the enrichment mapping;
#   2. ingress load vs a minimal reference receiver at concurrency 16/64/256;
#   3. enricher throughput vs the API-bound limit at C=64/256 in both delivery modes;
#   4. enricher memory while draining a backlog;
#   5. state restore of 1 000 000 session states (issue 11; ~10 s, embedded broker).
#
#   scripts/bench.sh                 (or: make bench)
#   KAFKA_BROKERS=127.0.0.1:19092 scripts/bench.sh    also against a real broker (make kafka-up)
#
# Everything binds to 127.0.0.1 and every load run is bounded in requests and seconds; the
# whole script takes about 6 minutes on a 2-core machine (15 at most). Results go to stdout and to
# $BENCH_OUT (default bin/bench), with CPU profiles of the ingress targets.
# Extra arguments are passed to idnow-bench, e.g. scripts/bench.sh -events 100000.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."

GO=${GO:-go}
OUT=${BENCH_OUT:-bin/bench}
mkdir -p "$OUT"

echo "== micro-benchmarks"
"$GO" test -run '^$' -bench . -benchmem -count=1 \
	./schemas/ ./internal/serde/ ./internal/webhook/... ./internal/connector/ingress/ ./internal/connector/enrich/ | tee "$OUT/micro.txt"

echo "== load benchmarks"
"$GO" build -o "$OUT/idnow-bench" ./cmd/idnow-bench
# The embedded broker always runs; with KAFKA_BROKERS the ingress load runs again against it.
KAFKA_BROKERS= "$OUT/idnow-bench" all -cpuprofile-dir "$OUT" "$@" | tee "$OUT/load.txt"
KAFKA_BROKERS= "$OUT/idnow-bench" restore | tee "$OUT/restore.txt"
if [ -n "${KAFKA_BROKERS:-}" ]; then
	"$OUT/idnow-bench" ingress -brokers "$KAFKA_BROKERS" "$@" | tee "$OUT/load-kafka.txt"
fi

if [ -n "${BENCH_ROUND2:-}" ]; then
	# Issue 16's measurements (~15 min more on 2 cores): CPU per webhook against the reference,
	# ingress replicas, end-to-end latency at 25/50/90 % of the peak, enricher members.
	# BENCHMARKS.md's round-2 sections add -before-exe with a build of an older commit.
	echo "== round 2: ingress CPU, scale-out, end-to-end latency, enricher members"
	KAFKA_BROKERS= "$OUT/idnow-bench" ingress-cpu | tee "$OUT/ingress-cpu.txt"
	KAFKA_BROKERS= "$OUT/idnow-bench" ingress-scaleout | tee "$OUT/ingress-scaleout.txt"
	KAFKA_BROKERS= "$OUT/idnow-bench" latency | tee "$OUT/latency.txt"
	KAFKA_BROKERS= "$OUT/idnow-bench" scaleout | tee "$OUT/scaleout.txt"
fi

echo "== where the ingress spends its CPU (go tool pprof -top)"
"$GO" tool pprof -top -nodecount=15 "$OUT/idnow-bench" "$OUT/ingress.pprof" 2>/dev/null | sed -n '1,25p'
