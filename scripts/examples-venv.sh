#!/usr/bin/env bash
# Prepares the Python environment of examples/python-duckdb and examples/python-commands
# (confluent-kafka, fastavro, pyarrow,
# duckdb, pinned in its requirements.txt) in a virtualenv in the project's tool cache outside
# the clone (scripts/cache-common.sh), and prints the path of its python. A venv whose
# requirements match is reused as it is; pip runs only on a new machine or after a change.
#
#   EXAMPLES_PYTHON="$(scripts/examples-venv.sh)" make itest     # TestPythonExample uses it
#
# With an argument, the venv of another requirements file (its own venv, by the file's digest),
# e.g. the privacy interop check's Tink for Python:
#
#   scripts/examples-venv.sh internal/privacy/interop/python/requirements.txt
#
# Needs python3 (3.9+) with the venv module (Debian: apt-get install python3-venv) and PyPI.
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
# shellcheck source=scripts/cache-common.sh
source "$ROOT/scripts/cache-common.sh"

log() { printf 'examples-venv: %s\n' "$*" >&2; }
die() { log "error: $*"; exit 1; }

REQ="${1:-$ROOT/examples/python-duckdb/requirements.txt}"
case "$REQ" in /*) ;; *) REQ="$ROOT/$REQ" ;; esac
[[ -f "$REQ" ]] || die "no requirements file $REQ"
command -v python3 >/dev/null 2>&1 || die "python3 not found; install Python 3.9+ (apt-get install python3 python3-venv)"
VENV="$(cache_dir py-examples "$(cache_digest "$REQ")")"
MARKER="$VENV/.complete"
if [[ ! -f "$MARKER" ]]; then
	cache_lock "$VENV"
	if [[ ! -f "$MARKER" ]]; then
		start=$SECONDS
		log "creating $VENV and installing $(grep -cv '^#' "$REQ") packages from PyPI"
		tmp="$VENV.tmp.$$"
		rm -rf "$tmp"
		python3 -m venv "$tmp" || die "python3 -m venv failed; install the venv module (apt-get install python3-venv)"
		"$tmp/bin/pip" install -q --disable-pip-version-check -r "$REQ" >&2 ||
			{ rm -rf "$tmp"; die "pip install -r $REQ failed (see above)"; }
		touch "$tmp/.complete"
		rm -rf "$VENV"
		# A venv records its own path in its scripts; the python binary itself works from anywhere,
		# and only it is used, so the rename is safe.
		mv "$tmp" "$VENV"
		log "ready in $((SECONDS - start)) s"
	fi
	cache_unlock
fi
# The import names of the pinned packages (tink, fastavro, confluent_kafka, ...).
imports="$(sed -n 's/^\([A-Za-z0-9_-]*\)==.*/\1/p' "$REQ" | tr '-' '_' | paste -sd, -)"
"$VENV/bin/python" -c "import $imports" ||
	die "the venv $VENV is broken; remove it and run again"
printf '%s\n' "$VENV/bin/python"
