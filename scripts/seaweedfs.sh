#!/usr/bin/env bash
# Builds SeaweedFS's `weed` binary from the Go module proxy into the tool cache, once per version,
# and prints its path. `go install` refuses the module (its go.mod has replace directives), so the
# module is downloaded with `go mod download`, copied to a writable folder and built inside it.
# About 8 minutes of CPU on 2 cores, a ~230 MB binary; run it under `nice` on a shared machine.
#
#   scripts/seaweedfs.sh           prints the path of the cached (or freshly built) weed binary
#
# Settings: see scripts/seaweedfs-common.sh.
set -euo pipefail
# shellcheck source=scripts/seaweedfs-common.sh
source "$(dirname "${BASH_SOURCE[0]}")/seaweedfs-common.sh"

build() {
	command -v "$GO" >/dev/null 2>&1 || s3_die "$GO not found; install Go (go.mod names the version) or set GO"
	local info dir work
	s3_log "downloading $SEAWEEDFS_MODULE@$SEAWEEDFS_VERSION from the Go module proxy"
	info="$(cd "$S3_REPO_ROOT" && GOFLAGS=-mod=mod "$GO" mod download -json "$SEAWEEDFS_MODULE@$SEAWEEDFS_VERSION")" ||
		s3_die "go mod download $SEAWEEDFS_MODULE@$SEAWEEDFS_VERSION failed; check GOPROXY and the network"
	dir="$(printf '%s\n' "$info" | sed -n 's/^[[:space:]]*"Dir": "\(.*\)",\{0,1\}$/\1/p' | head -n 1)"
	[[ -n "$dir" && -d "$dir" ]] || s3_die "go mod download printed no module folder for $SEAWEEDFS_MODULE@$SEAWEEDFS_VERSION"
	mkdir -p "$SEAWEEDFS_CACHE"
	work="$(mktemp -d "$SEAWEEDFS_CACHE/build.XXXXXX")"
	# The module cache is read-only; the build writes nothing there, but go may touch go.sum.
	cp -R "$dir/." "$work/src"
	chmod -R u+w "$work/src"
	s3_log "building weed (several minutes of CPU)"
	(cd "$work/src" && CGO_ENABLED=0 GOFLAGS=-mod=mod "$GO" build -trimpath -ldflags '-s -w' -o "$work/weed" ./weed) ||
		{ rm -rf "$work"; s3_die "go build ./weed failed (log above)"; }
	mv -f "$work/weed" "$SEAWEEDFS_BIN"
	rm -rf "$work"
}

main() {
	if [[ ! -x "$SEAWEEDFS_BIN" ]]; then
		cache_lock "$SEAWEEDFS_CACHE"
		[[ -x "$SEAWEEDFS_BIN" ]] || build
		cache_unlock
	fi
	printf '%s\n' "$SEAWEEDFS_BIN"
}

main "$@"
