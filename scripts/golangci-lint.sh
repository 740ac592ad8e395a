#!/usr/bin/env bash
# Runs golangci-lint with the project's .golangci.yml, building it first if needed: from source
# through the Go module proxy (`go install ...@version`, the only way this project's machines can
# get it; no prebuilt binary is downloaded), with the machine's Go, into the tool cache keyed by
# version (scripts/cache-common.sh:
# ${XDG_CACHE_HOME:-$HOME/.cache}/idnow-kafka-connector/golangci-lint-<version>). The first build
# takes a few minutes on a 2-core machine; later runs, from any clone, start at once.
#
#   scripts/golangci-lint.sh run ./...
#   scripts/golangci-lint.sh --path      print the path of the binary (building it if needed)
#
# Environment (all optional):
#   GOLANGCI_LINT_VERSION        the version to build (default v2.15.0; must be a v2 release, the
#                                configuration is in v2 format)
#   IDNOW_KAFKA_CONNECTOR_CACHE  the cache root (see scripts/cache-common.sh)
set -euo pipefail
# shellcheck source=scripts/cache-common.sh
source "$(dirname "${BASH_SOURCE[0]}")/cache-common.sh"

VERSION="${GOLANGCI_LINT_VERSION:-v2.15.0}"

log() { printf 'golangci-lint.sh: %s\n' "$*" >&2; }
die() { log "error: $*"; exit 2; }

[[ "$VERSION" =~ ^v2\.[0-9]+\.[0-9]+$ ]] ||
	die "GOLANGCI_LINT_VERSION=$VERSION: give a v2 release such as v2.15.0 (.golangci.yml is in v2 format)"
command -v go >/dev/null 2>&1 || die "go not found; golangci-lint is built from source with the Go toolchain"

dir="$(cache_dir golangci-lint "$VERSION")" || exit 2
bin="$dir/golangci-lint"
if [[ ! -x "$bin" ]]; then
	cache_lock "$dir"
	if [[ ! -x "$bin" ]]; then
		tmp="$(mktemp -d "$dir.tmp.XXXXXX")"
		trap 'rm -rf "$tmp"' EXIT
		log "building golangci-lint $VERSION from the Go module proxy into $dir (a few minutes, once per machine)"
		start=$SECONDS
		# Outside the module: go install pkg@version ignores go.mod anyway, but running it from
		# a neutral folder keeps GOFLAGS like -mod=vendor of the project out of it.
		(cd "$tmp" && GOBIN="$tmp/bin" GOFLAGS= go install "github.com/golangci/golangci-lint/v2/cmd/golangci-lint@$VERSION") ||
			die "go install github.com/golangci/golangci-lint/v2/cmd/golangci-lint@$VERSION failed (see output above)"
		"$tmp/bin/golangci-lint" version >/dev/null || die "the built golangci-lint does not run"
		rm -rf "$dir"
		mv "$tmp/bin" "$dir"
		log "golangci-lint $VERSION built in $((SECONDS - start)) s"
	fi
	cache_unlock
fi

if [[ "${1:-}" == "--path" ]]; then
	printf '%s\n' "$bin"
	exit 0
fi
cd "$CACHE_REPO_ROOT"
exec "$bin" "$@"
