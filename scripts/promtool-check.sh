#!/usr/bin/env bash
# The Prometheus checks `make promtool-check` and .ci/run run, with promtool from
# scripts/promtool.sh:
#   1. promtool check rules   deploy/prometheus/alerts.yaml (syntax, PromQL, templates)
#   2. promtool test rules    deploy/prometheus/alerts_test.yaml (each alert fires on a synthetic
#                             series and stays silent on a healthy one)
#   3. promtool check metrics on a live /metrics of a short-lived `idnow-connector run`
#                             (scripts/live-metrics.sh), scraped after records have flowed, so
#                             the exposition holds every labelled series as operators see it
#
# Environment (all optional): BIN, the connector binary for step 3 (default: built); the
# variables of scripts/promtool.sh and scripts/live-metrics.sh.
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$ROOT"

step() { printf 'promtool-check: %s\n' "$*" >&2; }

promtool="$(scripts/promtool.sh --path)"
step "$("$promtool" --version 2>&1 | head -n 1)"

step "check rules deploy/prometheus/alerts.yaml"
"$promtool" check rules deploy/prometheus/alerts.yaml

step "test rules deploy/prometheus/alerts_test.yaml"
"$promtool" test rules deploy/prometheus/alerts_test.yaml

metrics="$(mktemp)"
trap 'rm -f "$metrics"' EXIT
step "check metrics on a live /metrics"
scripts/live-metrics.sh "$metrics"
# promtool prints one line per problem and exits non-zero on any; nothing means clean.
if ! out="$("$promtool" check metrics <"$metrics" 2>&1)"; then
	printf '%s\n' "$out" >&2
	step "FAILED: the live /metrics has the problems above"
	exit 1
fi
if [[ -n "$out" ]]; then
	printf '%s\n' "$out" >&2
fi
step "passed: $(grep -c '^# TYPE' "$metrics") metric families, $(grep -vc '^#' "$metrics") samples checked"
