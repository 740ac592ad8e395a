#!/usr/bin/env bash
# Reads the connector's Avro interop vectors (schemas/testdata/interop, written by
# schemas/interop_test.go) with Apache Avro for Java, the reference implementation, and fails if
# any record does not decode to its expected value; then checks with Java's SchemaCompatibility
# that each current schema is FULL-compatible with every released version in schemas/history.
# `make interop` runs it; so does .ci/run.
#
# Needs Java 17+ and Maven 3.8+. The Avro jars come from Maven Central into the project's tool
# cache outside the clone (scripts/cache-common.sh; nothing in ~/.m2), so a fresh clone reuses
# them; compiling uses javac, or the Eclipse compiler (ecj, from Maven Central) on a machine with
# only a JRE.
#
# Environment (all optional):
#   INTEROP_DIR       the compiled check (classes/); relative paths are taken from the
#                     repository root                              (default .cache/interop)
#   INTEROP_CACHE     jars (lib/, ecj-*/) and their Maven repository (m2/); relative paths are
#                     taken from the repository root
#                     (default <tool cache>/avro-java-$AVRO_VERSION)
#   IDNOW_KAFKA_CONNECTOR_CACHE  the tool cache root: default
#                     ${XDG_CACHE_HOME:-$HOME/.cache}/idnow-kafka-connector; .cache keeps the
#                     jars in the clone as before
#   INTEROP_VECTORS   the vectors to read                          (default schemas/testdata/interop)
#   AVRO_VERSION      org.apache.avro:avro version                 (default 1.12.2)
#   INTEROP_COMPILER  javac or ecj                                 (default javac if present)
#   JAVA_HOME         which Java to use (else java on PATH)
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
# shellcheck source=scripts/cache-common.sh
source "$ROOT/scripts/cache-common.sh"
abs() { case "$1" in /*) printf '%s\n' "$1" ;; *) printf '%s\n' "$ROOT/$1" ;; esac; }
INTEROP_DIR="$(abs "${INTEROP_DIR:-.cache/interop}")"
INTEROP_VECTORS="$(abs "${INTEROP_VECTORS:-schemas/testdata/interop}")"
AVRO_VERSION="${AVRO_VERSION:-1.12.2}"
if [[ -z "${INTEROP_CACHE:-}" ]]; then
	INTEROP_CACHE="$(cache_dir avro-java "$AVRO_VERSION")"
fi
INTEROP_CACHE="$(abs "$INTEROP_CACHE")"
# The Eclipse compiler, used only where no javac is installed; 3.38 runs on Java 17.
ECJ_VERSION="3.38.0"

PROJECT="$ROOT/schemas/interop/java"
LIB="$INTEROP_CACHE/lib"
M2="$INTEROP_CACHE/m2"
CLASSES="$INTEROP_DIR/classes"
# The lib marker names a digest of the pom too: the cache is shared by every clone on the
# machine, and a clone whose pom asks for other artifacts must not take another's jars.
LIB_MARKER=".complete-$AVRO_VERSION-$(cache_digest "$PROJECT/pom.xml")"

log() { printf 'interop: %s\n' "$*" >&2; }
die() { log "error: $*"; exit 2; }

if [[ -n "${JAVA_HOME:-}" && -x "$JAVA_HOME/bin/java" ]]; then
	JAVA="$JAVA_HOME/bin/java"
	JAVAC="$JAVA_HOME/bin/javac"
else
	JAVA="java"
	JAVAC="$(command -v javac || true)"
fi
command -v "$JAVA" >/dev/null 2>&1 || die "java not found; install Java 17+ or set JAVA_HOME"
command -v mvn >/dev/null 2>&1 || die "mvn not found; install Maven 3.8+ (apt-get install maven)"
[[ -f "$INTEROP_VECTORS/manifest.tsv" ]] ||
	die "no $INTEROP_VECTORS/manifest.tsv; generate the vectors with: go test ./schemas -run TestInteropVectors -update"

# mvn_quiet runs Maven in batch mode against the repo-local cache. Debian's Maven 3.8 prints
# colour codes even in batch mode; they are stripped from the log.
mvn_quiet() {
	mvn -B -q -ntp -Dstyle.color=never -Dmaven.repo.local="$M2" "$@" 2>&1 | sed -u 's/\x1b\[[0-9;]*m//g' >&2
}

# fetch_into DIR MARKER MAVEN-ARGS... fills DIR unless DIR/MARKER exists. It resolves into a
# scratch folder and renames it, so an interrupted download never leaves a half-filled folder
# that a later run would take for a complete one, under a lock so two clones sharing the cache
# do not fill it at once.
fetch_into() {
	local dir="$1" marker="$2"
	shift 2
	[[ -f "$dir/$marker" ]] && return 0
	mkdir -p "$INTEROP_CACHE" || die "cannot create INTEROP_CACHE=$INTEROP_CACHE; point it (or IDNOW_KAFKA_CONNECTOR_CACHE) at a writable folder"
	cache_lock "$dir"
	if [[ -f "$dir/$marker" ]]; then # another clone filled it while we waited
		cache_unlock
		return 0
	fi
	local tmp="$dir.tmp.$$"
	rm -rf "$tmp"
	if ! mvn_quiet "$@" -DoutputDirectory="$tmp"; then
		rm -rf "$tmp"
		cache_unlock
		return 1
	fi
	touch "$tmp/$marker"
	rm -rf "$dir"
	mv "$tmp" "$dir"
	cache_unlock
}

start=$SECONDS
if [[ ! -f "$LIB/$LIB_MARKER" ]]; then
	log "fetching Apache Avro $AVRO_VERSION for Java from Maven Central into $LIB"
fi
fetch_into "$LIB" "$LIB_MARKER" -f "$PROJECT/pom.xml" -Davro.version="$AVRO_VERSION" \
	dependency:copy-dependencies -DincludeScope=runtime ||
	die "could not resolve org.apache.avro:avro:$AVRO_VERSION with mvn (see output above)"

compiler="${INTEROP_COMPILER:-}"
if [[ -z "$compiler" ]]; then
	if [[ -n "$JAVAC" && -x "$JAVAC" ]]; then compiler=javac; else compiler=ecj; fi
fi
sources=()
while IFS= read -r -d '' f; do sources+=("$f"); done < <(find "$PROJECT/src/main/java" -name '*.java' -print0)
rm -rf "$CLASSES"
mkdir -p "$CLASSES"
case "$compiler" in
javac)
	[[ -n "$JAVAC" && -x "$JAVAC" ]] || die "javac not found; install a JDK 17+ or set INTEROP_COMPILER=ecj"
	"$JAVAC" --release 17 -encoding UTF-8 -Xlint:all -Werror -d "$CLASSES" -cp "$LIB/*" "${sources[@]}"
	;;
ecj)
	ecj_dir="$INTEROP_CACHE/ecj-$ECJ_VERSION"
	fetch_into "$ecj_dir" ".complete-$ECJ_VERSION" -f "$PROJECT/pom.xml" \
		dependency:copy -Dartifact="org.eclipse.jdt:ecj:$ECJ_VERSION" ||
		die "could not resolve org.eclipse.jdt:ecj:$ECJ_VERSION with mvn (see output above)"
	# ecj does not expand "dir/*" class path entries as javac does; list the jars.
	jars="$(find "$LIB" -name '*.jar' | sort | paste -sd: -)"
	"$JAVA" -jar "$ecj_dir/ecj-$ECJ_VERSION.jar" --release 17 -encoding UTF-8 -warn:+unused -failOnWarning \
		-d "$CLASSES" -cp "$jars" "${sources[@]}" ||
		die "ecj could not compile the interop check"
	;;
*) die "INTEROP_COMPILER=$compiler; use javac or ecj" ;;
esac

log "reading $INTEROP_VECTORS with Apache Avro $AVRO_VERSION for Java (compiled with $compiler)"
set +e
"$JAVA" -Xshare:auto -XX:TieredStopAtLevel=1 -XX:+UseSerialGC -cp "$CLASSES:$LIB/*" \
	io.idnow.connector.interop.InteropCheck "$ROOT/schemas" "$INTEROP_VECTORS"
rc=$?
set -e
if ((rc != 0)); then
	log "FAILED (exit $rc): a reader in another language would not get the connector's records right"
	exit "$rc"
fi

# The privacy vectors (internal/privacy/testdata/interop): encrypted EnrichedSessions decrypted
# with Tink for Java; the tampered and moved cases must fail authentication.
log "decrypting internal/privacy/testdata/interop with Tink for Java"
set +e
"$JAVA" -Xshare:auto -XX:TieredStopAtLevel=1 -XX:+UseSerialGC -cp "$CLASSES:$LIB/*" \
	io.idnow.connector.interop.PrivacyCheck "$ROOT"
rc=$?
set -e
if ((rc != 0)); then
	log "FAILED (exit $rc): a Java consumer with Tink would not decrypt the connector's records"
	exit "$rc"
fi

# FULL compatibility of each current schema with every released version (schemas/history), as
# Apache Avro for Java's SchemaCompatibility judges it. First a known-incompatible fixture, so a
# check that stopped detecting anything fails here instead of passing silently.
run_compat() {
	"$JAVA" -Xshare:auto -XX:TieredStopAtLevel=1 -XX:+UseSerialGC -cp "$CLASSES:$LIB/*" \
		io.idnow.connector.interop.CompatCheck "$1"
}
fixture="$PROJECT/testdata/incompatible"
set +e
fixture_out="$(run_compat "$fixture" 2>&1)"
fixture_rc=$?
set -e
if ((fixture_rc != 1)) || ! grep -q 'status' <<<"$fixture_out"; then
	printf '%s\n' "$fixture_out" >&2
	die "the compatibility check did not refuse $fixture (a removed field without a default) naming the field: exit $fixture_rc"
fi
log "reading schemas/history with SchemaCompatibility (FULL: backward and forward)"
set +e
run_compat "$ROOT/schemas"
rc=$?
set -e
if ((rc == 0)); then
	log "passed in $((SECONDS - start)) s"
else
	log "FAILED (exit $rc): a current schema is not FULL-compatible with a released version; see docs/data-contract.md"
fi
exit "$rc"
