#!/usr/bin/env bash
# Runs Prometheus's promtool, installing it first if needed: the binary is taken from Debian's
# `prometheus` package (the only registry this project's machines reach that ships it), extracted
# with dpkg-deb without installing the package (no service, no user, no root needed once the
# package lists are there), into the tool cache keyed by the package version
# (scripts/cache-common.sh: ${XDG_CACHE_HOME:-$HOME/.cache}/idnow-kafka-connector/promtool-<version>).
#
#   scripts/promtool.sh check rules deploy/prometheus/alerts.yaml
#   scripts/promtool.sh --path       print the path of the binary (installing it if needed)
#
# Environment (all optional):
#   PROMTOOL                     use this promtool binary instead; nothing is downloaded
#   PROMTOOL_DEB_VERSION         the Debian package version to use (default: apt's candidate;
#                                when apt knows none, the newest one already in the cache)
#   IDNOW_KAFKA_CONNECTOR_CACHE  the cache root (see scripts/cache-common.sh)
set -euo pipefail
# shellcheck source=scripts/cache-common.sh
source "$(dirname "${BASH_SOURCE[0]}")/cache-common.sh"

log() { printf 'promtool.sh: %s\n' "$*" >&2; }
die() { log "error: $*"; exit 2; }

# candidate prints the version apt would install of the prometheus package, or nothing when the
# package lists do not know it (a fresh machine before `apt-get update`).
candidate() {
	command -v apt-cache >/dev/null 2>&1 || return 0
	apt-cache policy prometheus 2>/dev/null | sed -nE 's/^ *Candidate: *([^ ]+) *$/\1/p' | grep -v '^(none)$' || true
}

# newest_cached prints the path of the newest promtool already in the cache, if any.
newest_cached() {
	local root
	root="$(cache_root)" || return 0
	find "$root" -maxdepth 2 -path "$root/promtool-*/promtool" -type f -perm -u+x 2>/dev/null | sort -V | tail -n 1
}

apt_update() {
	[[ "$(id -u)" == 0 ]] ||
		die "apt does not know the prometheus package; run 'sudo apt-get update' once, or set PROMTOOL to a promtool binary"
	log "apt knows no prometheus package; running apt-get update"
	apt-get update -qq >&2 || die "apt-get update failed (see output above)"
}

# install VERSION DIR downloads prometheus=VERSION and extracts only usr/bin/promtool into DIR.
install() {
	local version="$1" dir="$2" tmp
	cache_lock "$dir"
	if [[ -x "$dir/promtool" ]]; then # another process finished it while we waited
		cache_unlock
		return 0
	fi
	# The download goes to the system's temporary folder: apt-get download writes into the
	# current directory and, as root, does so as its _apt user, which cannot enter a 0700 home.
	# The result is staged next to DIR and renamed, so an interrupted run never leaves a
	# half-filled DIR that a later run would trust.
	local dl
	dl="$(mktemp -d)"
	chmod 0777 "$dl"
	tmp="$(mktemp -d "$dir.tmp.XXXXXX")"
	log "downloading Debian's prometheus $version to extract promtool into $dir"
	local start=$SECONDS
	if ! (cd "$dl" && apt-get download -qq "prometheus=$version" >&2); then
		rm -rf "$tmp" "$dl"
		cache_unlock
		return 1
	fi
	local deb
	deb="$(find "$dl" -maxdepth 1 -name 'prometheus_*.deb' | head -n 1)"
	[[ -n "$deb" ]] || { rm -rf "$tmp" "$dl"; cache_unlock; die "apt-get download left no prometheus_*.deb"; }
	mkdir -p "$tmp/root"
	if ! dpkg-deb --fsys-tarfile "$deb" | tar -xf - -C "$tmp/root" ./usr/bin/promtool; then
		rm -rf "$tmp" "$dl"
		cache_unlock
		die "$(basename "$deb") holds no ./usr/bin/promtool"
	fi
	rm -rf "$dl"
	mkdir -p "$tmp/out"
	mv "$tmp/root/usr/bin/promtool" "$tmp/out/promtool"
	printf '%s\n' "$version" >"$tmp/out/deb-version"
	"$tmp/out/promtool" --version >/dev/null 2>&1 || { rm -rf "$tmp"; cache_unlock; die "the extracted promtool does not run on this machine"; }
	rm -rf "$dir"
	mv "$tmp/out" "$dir"
	rm -rf "$tmp"
	cache_unlock
	log "promtool $version ready in $((SECONDS - start)) s"
}

# resolve prints the path of a promtool binary, installing it if needed.
resolve() {
	if [[ -n "${PROMTOOL:-}" ]]; then
		[[ -x "$PROMTOOL" ]] || die "PROMTOOL=$PROMTOOL is not an executable file"
		printf '%s\n' "$PROMTOOL"
		return 0
	fi
	if ! command -v apt-get >/dev/null 2>&1 || ! command -v dpkg-deb >/dev/null 2>&1; then
		# Not a Debian-family machine: a promtool on PATH or in the cache is the only option.
		local p
		p="$(command -v promtool || newest_cached)"
		[[ -n "$p" ]] || die "no apt-get/dpkg-deb to fetch Debian's prometheus package; install promtool and set PROMTOOL to it"
		printf '%s\n' "$p"
		return 0
	fi
	local version="${PROMTOOL_DEB_VERSION:-}"
	if [[ -z "$version" ]]; then
		version="$(candidate)"
	fi
	if [[ -z "$version" ]]; then
		# Reuse a cached one before touching the package lists: a fresh clone on a machine that
		# has run this before needs no network at all.
		local cached
		cached="$(newest_cached)"
		if [[ -n "$cached" ]]; then
			printf '%s\n' "$cached"
			return 0
		fi
		apt_update
		version="$(candidate)"
		[[ -n "$version" ]] || die "apt knows no prometheus package even after apt-get update; is Debian's main archive in the sources?"
	fi
	local dir
	dir="$(cache_dir promtool "${version//:/_}")" || exit 2
	if [[ ! -x "$dir/promtool" ]]; then
		if ! install "$version" "$dir"; then
			# Stale package lists name a version the mirror no longer has: refresh them and take
			# the candidate they name now (unless a version was asked for).
			apt_update
			if [[ -z "${PROMTOOL_DEB_VERSION:-}" ]]; then
				version="$(candidate)"
				[[ -n "$version" ]] || die "apt knows no prometheus package after apt-get update"
				dir="$(cache_dir promtool "${version//:/_}")" || exit 2
			fi
			if [[ ! -x "$dir/promtool" ]]; then
				install "$version" "$dir" || die "apt-get download prometheus=$version failed (see output above)"
			fi
		fi
	fi
	printf '%s\n' "$dir/promtool"
}

bin="$(resolve)"
if [[ "${1:-}" == "--path" ]]; then
	printf '%s\n' "$bin"
	exit 0
fi
exec "$bin" "$@"
