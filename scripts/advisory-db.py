#!/usr/bin/env python3
"""Builds a RustSec advisory database that cargo-deny can open offline.

Usage: advisory-db.py SOURCE DEST

SOURCE is a snapshot of the advisories, as a directory, .zip or .tar.* archive, in either form:
  - the RustSec repository layout (crates/<crate>/RUSTSEC-YYYY-NNNN.md), copied as it is;
  - OSV JSON files of the crates.io ecosystem (RustSec's OSV export, or osv.dev's crates.io
    dump), converted to that layout. Only RUSTSEC-* entries are kept: other ids (GHSA-*) mostly
    duplicate them, and the RustSec layout files advisories under their RUSTSEC id.
DEST becomes a git repository with a single commit, dated at the snapshot's newest advisory,
because cargo-deny reads the database's age from the HEAD commit.
"""

import io
import json
import os
import re
import shutil
import subprocess
import sys
import tarfile
import zipfile
from pathlib import Path

RUSTSEC_MD = re.compile(r"(?:^|/)crates/([^/]+)/(RUSTSEC-\d{4}-\d{4})\.md$")
DATE = re.compile(r"^date\s*=\s*\"(\d{4}-\d{2}-\d{2})\"", re.M)


def read_source(source: Path):
    """Yields (path inside the snapshot, bytes) for every file of the snapshot."""
    if source.is_dir():
        for path in sorted(source.rglob("*")):
            if path.is_file() and ".git" not in path.parts:
                yield path.relative_to(source).as_posix(), path.read_bytes()
    elif zipfile.is_zipfile(source):
        with zipfile.ZipFile(source) as archive:
            for name in sorted(archive.namelist()):
                if not name.endswith("/"):
                    yield name, archive.read(name)
    else:
        with tarfile.open(source) as archive:
            for member in archive:
                if member.isfile():
                    yield member.name, archive.extractfile(member).read()


def toml_str(value: str) -> str:
    return json.dumps(value, ensure_ascii=False)  # a JSON string is a valid TOML basic string


def toml_list(values) -> str:
    return "[" + ", ".join(toml_str(v) for v in values) + "]"


def version_reqs(ranges):
    """Turns OSV SEMVER events into RustSec's (patched, unaffected) requirement lists.

    OSV lists the affected intervals; RustSec lists the versions outside them, split into
    patched (after a fix) and unaffected (before the bug was introduced)."""
    intervals = []  # (introduced, end requirement or None when still affected)
    for events in ranges:
        start = None
        for event in events:
            if "introduced" in event:
                start = event["introduced"]
            elif "fixed" in event and start is not None:
                intervals.append((start, ">= " + event["fixed"], event["fixed"]))
                start = None
            elif "last_affected" in event and start is not None:
                intervals.append((start, "> " + event["last_affected"], event["last_affected"]))
                start = None
        if start is not None:
            intervals.append((start, None, None))
    patched, unaffected = [], []
    for i, (start, end_req, _) in enumerate(intervals):
        if i == 0 and start not in ("0", "0.0.0", "0.0.0-0"):
            unaffected.append("< " + start)
        if end_req is None:
            continue
        following = intervals[i + 1][0] if i + 1 < len(intervals) else None
        patched.append(end_req + (", < " + following if following else ""))
    return patched, unaffected


def convert_osv(entry):
    """Returns (crate, advisory markdown), or None when the entry has no RustSec form."""
    affected = [a for a in entry.get("affected", []) if a["package"]["ecosystem"] == "crates.io"]
    if not entry["id"].startswith("RUSTSEC-") or not affected:
        return None
    crate = affected[0]["package"]["name"]
    ranges = [
        r["events"]
        for a in affected
        if a["package"]["name"] == crate
        for r in a.get("ranges", [])
        if r["type"] in ("SEMVER", "ECOSYSTEM")
    ]
    if not ranges:
        return None  # only explicit version lists: not expressible as RustSec requirements
    patched, unaffected = version_reqs(ranges)
    refs = [r["url"] for r in entry.get("references", []) if r["type"] not in ("PACKAGE", "ADVISORY")]
    informational = (affected[0].get("database_specific") or {}).get("informational")

    lines = ["```toml", "[advisory]", f"id = {toml_str(entry['id'])}", f"package = {toml_str(crate)}"]
    lines.append(f"date = {toml_str(entry.get('published', entry['modified'])[:10])}")
    if refs:
        lines.append(f"url = {toml_str(refs[0])}")
    if entry.get("aliases"):
        lines.append(f"aliases = {toml_list(entry['aliases'])}")
    if informational:
        lines.append(f"informational = {toml_str(informational)}")
    if entry.get("withdrawn"):
        lines.append(f"withdrawn = {toml_str(entry['withdrawn'][:10])}")
    lines += ["", "[versions]", f"patched = {toml_list(patched)}"]
    if unaffected:
        lines.append(f"unaffected = {toml_list(unaffected)}")
    lines += ["```", "", "# " + entry.get("summary", entry["id"]), "", entry.get("details", ""), ""]
    return crate, "\n".join(lines)


def main():
    if len(sys.argv) != 3:
        sys.exit(__doc__)
    source, dest = Path(sys.argv[1]), Path(sys.argv[2])
    advisories = {}  # path in the database -> text
    newest = "1970-01-01"
    skipped = 0
    for name, data in read_source(source):
        md = RUSTSEC_MD.search(name)
        if md:
            text = data.decode()
            advisories[f"crates/{md[1]}/{md[2]}.md"] = text
            found = DATE.search(text)
            newest = max(newest, found[1] if found else newest)
        elif name.endswith(".json"):
            entry = json.load(io.BytesIO(data))
            converted = convert_osv(entry) if "id" in entry else None
            if converted is None:
                skipped += 1
                continue
            crate, text = converted
            advisories.setdefault(f"crates/{crate}/{entry['id']}.md", text)
            newest = max(newest, entry["modified"][:10])
    if not advisories:
        sys.exit(f"no RustSec advisories found in {source}")

    shutil.rmtree(dest, ignore_errors=True)
    for rel, text in advisories.items():
        (dest / rel).parent.mkdir(parents=True, exist_ok=True)
        (dest / rel).write_text(text)
    date = f"{newest}T00:00:00Z"
    who = {"NAME": "advisory-db", "EMAIL": "advisory-db@localhost", "DATE": date}
    env = dict(os.environ, **{f"GIT_{role}_{k}": v for role in ("AUTHOR", "COMMITTER") for k, v in who.items()})
    for args in (["init", "-q"], ["add", "-A"], ["commit", "-q", "-m", f"snapshot {newest}"]):
        subprocess.run(["git", "-C", str(dest), *args], check=True, env=env)
    print(f"advisory db: {len(advisories)} advisories, newest {newest}, {skipped} entries skipped")


if __name__ == "__main__":
    main()
