#!/usr/bin/env bash
# Fetch the pinned Apache Kafka broker jars from Maven Central into a cache outside the repository.
# Idempotent: a complete cache (marked by .complete) is left alone. Prints the jar directory.
# -C: a jar whose checksum does not match Maven Central's is an error, not a warning.
#   QSCRYPT_KAFKA_JARS  overrides the cache directory (default ~/.cache/qscrypt/kafka-4.3.1)
set -euo pipefail

here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
version="4.3.1"  # keep in step with pom.xml and qscrypt/devnet/kafka.py
dest="${QSCRYPT_KAFKA_JARS:-${XDG_CACHE_HOME:-$HOME/.cache}/qscrypt/kafka-${version}}"

if [[ -f "$dest/.complete" ]]; then
  echo "$dest"
  exit 0
fi
command -v mvn >/dev/null || { echo "fetch-jars: Maven (mvn) is needed: apt-get install maven" >&2; exit 1; }
command -v java >/dev/null || { echo "fetch-jars: Java 17 is needed: apt-get install openjdk-17-jre-headless" >&2; exit 1; }

# A staging directory renamed into place, so an interrupted fetch never looks complete.
mkdir -p "$(dirname "$dest")"
staging="$(mktemp -d "${dest}.partial.XXXXXX")"
trap 'rm -rf "$staging"' EXIT
mvn -q -B -C -Dstyle.color=never -f "$here/pom.xml" dependency:copy-dependencies \
  -DincludeScope=runtime -DoutputDirectory="$staging" >&2
ls "$staging"/kafka_2.13-"$version".jar >/dev/null
touch "$staging/.complete"
rm -rf "$dest"
mv "$staging" "$dest"
trap - EXIT
echo "$dest"
