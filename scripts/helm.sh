#!/usr/bin/env bash
# Runs the helm CLI, building it first if needed: from source through the Go module proxy
# (helm.sh/helm/v3, the only way this project's machines can get it; no prebuilt binary is
# downloaded), with the machine's Go, into the tool cache keyed by version
# (scripts/cache-common.sh: ${XDG_CACHE_HOME:-$HOME/.cache}/idnow-kafka-connector/helm-<version>,
# or the clone's git-ignored .cache/). The first build takes a few minutes on a 2-core machine;
# later runs, from any clone, start at once.
#
#   scripts/helm.sh lint --strict deploy/helm/idnow-kafka-connector
#   scripts/helm.sh --path      print the path of the binary (building it if needed)
#
# Environment (all optional):
#   HELM_VERSION                 the version to build (default v3.22.0; a v3 release)
#   IDNOW_KAFKA_CONNECTOR_CACHE  the cache root (see scripts/cache-common.sh)
set -euo pipefail
# shellcheck source=scripts/cache-common.sh
source "$(dirname "${BASH_SOURCE[0]}")/cache-common.sh"

VERSION="${HELM_VERSION:-v3.22.0}"

log() { printf 'helm.sh: %s\n' "$*" >&2; }
die() { log "error: $*"; exit 2; }

[[ "$VERSION" =~ ^v3\.[0-9]+\.[0-9]+$ ]] ||
	die "HELM_VERSION=$VERSION: give a Helm 3 release such as v3.22.0 (the chart is apiVersion v2, built for Helm 3)"
command -v go >/dev/null 2>&1 || die "go not found; helm is built from source with the Go toolchain"

dir="$(cache_dir helm "$VERSION")" || exit 2
bin="$dir/helm"
if [[ ! -x "$bin" || ! -f "$dir/.kube-version" ]]; then
	cache_lock "$dir"
	if [[ ! -x "$bin" || ! -f "$dir/.kube-version" ]]; then
		tmp="$(mktemp -d "$dir.tmp.XXXXXX")"
		trap 'rm -rf "$tmp"' EXIT
		log "building helm $VERSION from the Go module proxy into $dir (a few minutes, once per machine)"
		start=$SECONDS
		# The module's go.mod names the client-go it is built with; Helm's Makefile stamps that
		# Kubernetes version as the default of `helm template` and `helm lint` (unstamped it is
		# 1.20, which the chart's kubeVersion >=1.30 rejects), and the release version.
		gomod="$(cd "$tmp" && GOFLAGS= go mod download -json "helm.sh/helm/v3@$VERSION" | sed -n 's/^[[:space:]]*"GoMod": "\(.*\)",$/\1/p')"
		[[ -n "$gomod" && -f "$gomod" ]] || die "go mod download helm.sh/helm/v3@$VERSION failed (see output above)"
		k8s_minor="$(sed -nE 's/^[[:space:]]*k8s\.io\/client-go v0\.([0-9]+)\..*/\1/p' "$gomod")"
		[[ -n "$k8s_minor" ]] || die "no k8s.io/client-go requirement in $gomod; cannot tell which Kubernetes version helm $VERSION targets"
		ldflags="-s -w -X helm.sh/helm/v3/internal/version.version=$VERSION"
		for pkg in helm.sh/helm/v3/pkg/chartutil helm.sh/helm/v3/pkg/lint/rules; do
			ldflags+=" -X $pkg.k8sVersionMajor=1 -X $pkg.k8sVersionMinor=$k8s_minor"
		done
		# From a neutral folder so the project's GOFLAGS (-mod=vendor and the like) stay out.
		if ! (cd "$tmp" && GOBIN="$tmp/bin" GOFLAGS= CGO_ENABLED=0 go install -ldflags "$ldflags" "helm.sh/helm/v3/cmd/helm@$VERSION"); then
			# go install pkg@version refuses modules whose go.mod has replace directives; then
			# build inside the downloaded module, with its own go.mod and go.sum.
			log "go install failed; building inside the downloaded module instead"
			moddir="$(cd "$tmp" && GOFLAGS= go mod download -json "helm.sh/helm/v3@$VERSION" | sed -n 's/^[[:space:]]*"Dir": "\(.*\)",$/\1/p')"
			[[ -n "$moddir" ]] || die "go mod download helm.sh/helm/v3@$VERSION failed (see output above)"
			mkdir -p "$tmp/bin"
			(cd "$moddir" && GOFLAGS=-mod=readonly CGO_ENABLED=0 go build -ldflags "$ldflags" -o "$tmp/bin/helm" ./cmd/helm) ||
				die "go build of helm $VERSION in $moddir failed (see output above)"
		fi
		"$tmp/bin/helm" version --short >/dev/null || die "the built helm does not run"
		# A stamp file: a helm built by an earlier version of this script (default Kubernetes
		# 1.20) is rebuilt rather than trusted.
		printf '1.%s\n' "$k8s_minor" >"$tmp/bin/.kube-version"
		rm -rf "$dir"
		mv "$tmp/bin" "$dir"
		log "helm $VERSION built in $((SECONDS - start)) s"
	fi
	cache_unlock
fi

if [[ "${1:-}" == "--path" ]]; then
	printf '%s\n' "$bin"
	exit 0
fi
cd "$CACHE_REPO_ROOT"
exec "$bin" "$@"
