#!/usr/bin/env bash
# Installs Chromium from Debian's packages for the status page's headless-browser test
# (internal/app TestStatusPageInChromium). Idempotent: a machine that has a chromium binary
# already installs nothing. Prints the binary's path on stdout.
set -euo pipefail
for bin in chromium chromium-browser; do
	if path="$(command -v "$bin")"; then
		echo "$path"
		exit 0
	fi
done
if [[ "$(id -u)" != 0 ]] || ! command -v apt-get >/dev/null 2>&1; then
	echo "chromium is not installed and this is not a root Debian/Ubuntu shell: install Chromium (apt-get install chromium) and rerun" >&2
	exit 1
fi
apt-get update -qq >&2
DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends chromium fonts-dejavu-core >&2
command -v chromium
