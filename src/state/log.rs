//! A station's durable control log: an append-only file of checksummed records, made durable
//! (written and `fsync`ed) before a change is acknowledged, replayed at start, compacted when it
//! grows.
//!
//! Why a hand-written file rather than an embedded database: the log is a short sequence of small
//! immutable records that is only ever appended to and read whole at start. A length- and
//! CRC-framed append with `fdatasync` is the least work per change (one write, one sync), a torn
//! or damaged record is found exactly where it is (so recovery can keep everything before it and
//! say what it cut), and compaction is a rewrite-and-rename. An embedded store (redb, SQLite)
//! would add a page cache, a transaction layer and its own recovery rules for no gain here.
//!
//! File format (all integers little-endian), also in `docs/operations.md`:
//! ```text
//! "AURALOG1"                                  8 bytes, once
//! record: length u32 | crc32 u32 | body       body: `length` bytes of JSON
//! ```
//! The first record is the header (`{"kind":"header",...}`: station, seed, sample rate, chunk
//! frames, preset, epoch); then `{"kind":"entry","entry":{position,bar,params}}` for each accepted
//! change and `{"kind":"revoke","position":P}` for a durable change the synthesis thread then
//! refused (it never sounded).

use std::fs::{File, OpenOptions};
use std::io::{Read, Write};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use serde::{Deserialize, Serialize};

use crate::clock::unix_nanos;
use crate::synth::params::Preset;
use crate::synth::{ControlEntry, Timeline};

/// First bytes of every control-log file.
pub const FILE_MAGIC: &[u8; 8] = b"AURALOG1";
/// Version of the record bodies.
pub const FORMAT_VERSION: u32 = 1;
/// A record longer than this is damage, not data (an entry is a few hundred bytes).
const MAX_RECORD: usize = 64 * 1024;
/// Length and checksum before each record body.
const RECORD_PREFIX: usize = 8;

/// A station's history identity: a log replays only into a station with the same identity (the
/// same seed, rate, chunk grid and starting preset make the same music and sequence numbers).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct LogIdentity {
    pub station: String,
    pub seed: u64,
    pub sample_rate: u32,
    pub chunk_frames: u32,
    pub preset: Option<Preset>,
}

/// A station's epoch: changes only when its history cannot be replayed, so a client knows
/// whether resuming (asking for chunks by sequence number) is meaningful. 16 hex digits.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(transparent)]
pub struct Epoch(String);

impl Epoch {
    /// A new random epoch.
    pub fn fresh() -> Self {
        use std::hash::{BuildHasher, Hasher};
        // RandomState is seeded from the OS's randomness per process; mixing in the clock and the
        // pid keeps two epochs made in one process apart too.
        let mut hasher = std::collections::hash_map::RandomState::new().build_hasher();
        hasher.write_u128(unix_nanos() as u128);
        hasher.write_u32(std::process::id());
        Self(format!("{:016x}", hasher.finish()))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl std::fmt::Display for Epoch {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

/// What the start-up replay found wrong and repaired (never silently: each is logged and counted).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Recovery {
    /// The last record was cut short (a write interrupted by a crash): it was never acknowledged
    /// and never sounded, so it is dropped and the epoch is kept.
    TornTail,
    /// A damaged record with more after it: everything from it on is lost, and since those
    /// changes may have sounded, the epoch changes.
    Corrupt,
    /// A zero-length file: no history; a new one starts with a new epoch.
    Empty,
    /// Not a control log (wrong magic or no readable header): moved aside, new history and epoch.
    Unreadable,
    /// The station's seed, sample rate, chunk length or preset changed in the configuration: the
    /// old history is moved aside and a new one starts with a new epoch.
    ConfigChanged,
}

impl Recovery {
    pub const ALL: [Recovery; 5] = [
        Recovery::TornTail,
        Recovery::Corrupt,
        Recovery::Empty,
        Recovery::Unreadable,
        Recovery::ConfigChanged,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            Recovery::TornTail => "torn_tail",
            Recovery::Corrupt => "corrupt",
            Recovery::Empty => "empty",
            Recovery::Unreadable => "unreadable",
            Recovery::ConfigChanged => "config_changed",
        }
    }
}

/// The outcome of opening a log.
#[derive(Clone, Debug)]
pub struct Replayed {
    /// The history to play: never empty, its first entry is the station's start.
    pub entries: Vec<ControlEntry>,
    /// True when the history was kept from before (resuming across the restart is meaningful).
    pub continued: bool,
    /// What had to be repaired, with a sentence for the log.
    pub recovery: Option<(Recovery, String)>,
}

#[derive(Serialize, Deserialize, Debug)]
#[serde(tag = "kind", rename_all = "snake_case")]
enum Record {
    Header {
        format: u32,
        station: String,
        seed: u64,
        sample_rate: u32,
        chunk_frames: u32,
        preset: Option<Preset>,
        epoch: Epoch,
        created_unix_ms: u64,
    },
    Entry {
        entry: ControlEntry,
    },
    Revoke {
        position: u64,
    },
}

/// The log could not be opened or repaired at all (the directory is unusable).
#[derive(Debug, thiserror::Error)]
#[error("control log {path}: {source}")]
pub struct LogOpenError {
    pub path: PathBuf,
    pub source: std::io::Error,
}

/// How long one durable append took.
#[derive(Clone, Copy, Debug)]
pub struct Appended {
    pub took: Duration,
    pub bytes: u64,
}

/// A station's control log, on disk or (for an ephemeral server) in memory only.
#[derive(Debug)]
pub struct ControlLog {
    file: Option<(File, PathBuf)>,
    identity: LogIdentity,
    epoch: Epoch,
    records: usize,
    bytes: u64,
}

impl ControlLog {
    /// A log that keeps nothing (a server without a state directory): a new epoch every start.
    pub fn ephemeral(identity: LogIdentity, initial: ControlEntry) -> (Self, Replayed) {
        let log = Self {
            file: None,
            identity,
            epoch: Epoch::fresh(),
            records: 2,
            bytes: 0,
        };
        let replayed = Replayed {
            entries: vec![initial],
            continued: false,
            recovery: None,
        };
        (log, replayed)
    }

    /// Opens (or creates) the log at `path` and replays it. `initial` starts a new history.
    /// Whatever is wrong with the file is repaired as [`Recovery`] says; only an unusable
    /// directory is an error.
    ///
    /// # Errors
    /// [`LogOpenError`] when the file cannot be read, written or created.
    pub fn open(
        path: &Path,
        identity: LogIdentity,
        initial: ControlEntry,
    ) -> Result<(Self, Replayed), LogOpenError> {
        let io = |source| LogOpenError {
            path: path.to_path_buf(),
            source,
        };
        let bytes = match File::open(path) {
            Ok(mut file) => {
                let mut bytes = Vec::new();
                file.read_to_end(&mut bytes).map_err(io)?;
                Some(bytes)
            }
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => None,
            Err(e) => return Err(io(e)),
        };
        let Some(bytes) = bytes else {
            let log = Self::create(path, identity, Epoch::fresh(), &[initial]).map_err(io)?;
            return Ok((log, Replayed::fresh(initial, None)));
        };
        let scan = scan(&bytes);
        let fresh_start = |recovery: Recovery, why: String, aside: bool| {
            if aside {
                move_aside(path, recovery).map_err(io)?;
            }
            let log =
                Self::create(path, identity.clone(), Epoch::fresh(), &[initial]).map_err(io)?;
            Ok((log, Replayed::fresh(initial, Some((recovery, why)))))
        };
        if bytes.is_empty() {
            return fresh_start(Recovery::Empty, "the file was empty".into(), false);
        }
        let Some(header) = scan.header else {
            return fresh_start(
                Recovery::Unreadable,
                "the file is not a control log (no readable header)".into(),
                true,
            );
        };
        if header.identity != identity {
            return fresh_start(
                Recovery::ConfigChanged,
                format!(
                    "the log is for seed {} at {} Hz, {} frames per chunk, preset {:?}; the station is now seed {} at {} Hz, {} frames, preset {:?}",
                    header.identity.seed, header.identity.sample_rate, header.identity.chunk_frames, header.identity.preset,
                    identity.seed, identity.sample_rate, identity.chunk_frames, identity.preset
                ),
                true,
            );
        }
        let mut entries = resolve(&scan.records);
        let valid = valid_prefix(&identity, &entries);
        let mut damage = scan.damage;
        if valid < entries.len() {
            // Entries that do not replay may have sounded: always a new epoch.
            entries.truncate(valid);
            damage = Some(Damage {
                kind: Recovery::Corrupt,
                at: damage.map_or(scan.good_end, |d| d.at),
            });
        }
        if entries.is_empty() {
            entries.push(initial);
        }
        match damage {
            None => {
                let file = OpenOptions::new().append(true).open(path).map_err(io)?;
                let log = Self {
                    file: Some((file, path.to_path_buf())),
                    identity,
                    epoch: header.epoch,
                    records: scan.records.len() + 1,
                    bytes: bytes.len() as u64,
                };
                let replayed = Replayed {
                    entries,
                    continued: true,
                    recovery: None,
                };
                Ok((log, replayed))
            }
            Some(Damage {
                kind: Recovery::TornTail,
                at,
            }) => {
                // Cut back to the last whole record; what was cut was never acknowledged.
                let file = OpenOptions::new().write(true).open(path).map_err(io)?;
                file.set_len(at as u64).map_err(io)?;
                file.sync_all().map_err(io)?;
                drop(file);
                let file = OpenOptions::new().append(true).open(path).map_err(io)?;
                let why = format!(
                    "the last record was cut short ({} bytes dropped)",
                    bytes.len() - at
                );
                let log = Self {
                    file: Some((file, path.to_path_buf())),
                    identity,
                    epoch: header.epoch,
                    records: scan.records.len() + 1,
                    bytes: at as u64,
                };
                let replayed = Replayed {
                    entries,
                    continued: true,
                    recovery: Some((Recovery::TornTail, why)),
                };
                Ok((log, replayed))
            }
            Some(Damage { kind, at }) => {
                // Changes after the damage may have sounded: the history is no longer what was
                // streamed, so it continues under a new epoch, keeping what was good.
                let why = format!(
                    "a damaged record at byte {at}: {} later bytes dropped, {} entries kept",
                    bytes.len() - at,
                    entries.len()
                );
                move_aside(path, kind).map_err(io)?;
                let log = Self::create(path, identity, Epoch::fresh(), &entries).map_err(io)?;
                let replayed = Replayed {
                    entries,
                    continued: false,
                    recovery: Some((kind, why)),
                };
                Ok((log, replayed))
            }
        }
    }

    /// Writes a new log file holding `entries` under `epoch`, atomically (a temporary file,
    /// synced, renamed over the old one, the directory synced).
    fn create(
        path: &Path,
        identity: LogIdentity,
        epoch: Epoch,
        entries: &[ControlEntry],
    ) -> std::io::Result<Self> {
        let mut body = Vec::with_capacity(FILE_MAGIC.len() + 256 * (entries.len() + 1));
        body.extend_from_slice(FILE_MAGIC);
        encode_record(&header_record(&identity, &epoch), &mut body);
        for entry in entries {
            encode_record(&Record::Entry { entry: *entry }, &mut body);
        }
        let tmp = path.with_extension("log.tmp");
        {
            let mut file = File::create(&tmp)?;
            file.write_all(&body)?;
            file.sync_all()?;
        }
        std::fs::rename(&tmp, path)?;
        sync_dir(path)?;
        let file = OpenOptions::new().append(true).open(path)?;
        Ok(Self {
            file: Some((file, path.to_path_buf())),
            identity,
            epoch,
            records: entries.len() + 1,
            bytes: body.len() as u64,
        })
    }

    pub fn epoch(&self) -> &Epoch {
        &self.epoch
    }

    /// Bytes in the log file (0 when ephemeral).
    pub fn bytes(&self) -> u64 {
        self.bytes
    }

    /// Records in the log (the header included).
    pub fn records(&self) -> usize {
        self.records
    }

    pub fn is_durable(&self) -> bool {
        self.file.is_some()
    }

    /// Appends an accepted change and waits until it is on disk.
    ///
    /// # Errors
    /// The write or sync failed; the caller must not apply the change.
    pub fn append_entry(&mut self, entry: ControlEntry) -> std::io::Result<Appended> {
        self.append(&Record::Entry { entry })
    }

    /// Records that the durable change at `position` never sounded (the synthesis thread refused
    /// it), so a replay leaves it out.
    ///
    /// # Errors
    /// The write or sync failed.
    pub fn append_revoke(&mut self, position: u64) -> std::io::Result<Appended> {
        self.append(&Record::Revoke { position })
    }

    fn append(&mut self, record: &Record) -> std::io::Result<Appended> {
        let started = Instant::now();
        let Some((file, _)) = &mut self.file else {
            self.records += 1;
            return Ok(Appended {
                took: started.elapsed(),
                bytes: 0,
            });
        };
        let mut bytes = Vec::with_capacity(256);
        encode_record(record, &mut bytes);
        let written = file.write_all(&bytes).and_then(|()| file.sync_data());
        if let Err(error) = written {
            // Cut a partial record back off, so later appends do not follow damage (which the
            // next start would read as corruption and lose them with it).
            let _ = file.set_len(self.bytes);
            return Err(error);
        }
        self.records += 1;
        self.bytes += bytes.len() as u64;
        Ok(Appended {
            took: started.elapsed(),
            bytes: bytes.len() as u64,
        })
    }

    /// Rewrites the log as exactly `entries` (the history still needed), same epoch.
    ///
    /// # Errors
    /// The rewrite failed; the old file is untouched (the rename is atomic).
    pub fn compact(&mut self, entries: &[ControlEntry]) -> std::io::Result<()> {
        let Some((_, path)) = &self.file else {
            self.records = entries.len() + 1;
            return Ok(());
        };
        let path = path.clone();
        *self = Self::create(&path, self.identity.clone(), self.epoch.clone(), entries)?;
        Ok(())
    }
}

#[cfg(test)]
impl ControlLog {
    /// A log whose every write fails as on a full disk (`/dev/full` answers ENOSPC).
    pub(crate) fn failing_for_tests(identity: LogIdentity) -> Self {
        let file = OpenOptions::new()
            .append(true)
            .open("/dev/full")
            .expect("/dev/full exists on Linux");
        Self {
            file: Some((file, PathBuf::from("/dev/full"))),
            identity,
            epoch: Epoch::fresh(),
            records: 2,
            bytes: 0,
        }
    }
}

impl Replayed {
    fn fresh(initial: ControlEntry, recovery: Option<(Recovery, String)>) -> Self {
        Self {
            entries: vec![initial],
            continued: false,
            recovery,
        }
    }
}

fn header_record(identity: &LogIdentity, epoch: &Epoch) -> Record {
    Record::Header {
        format: FORMAT_VERSION,
        station: identity.station.clone(),
        seed: identity.seed,
        sample_rate: identity.sample_rate,
        chunk_frames: identity.chunk_frames,
        preset: identity.preset,
        epoch: epoch.clone(),
        created_unix_ms: (unix_nanos() / 1_000_000),
    }
}

fn encode_record(record: &Record, out: &mut Vec<u8>) {
    // Serialising these plain structs cannot fail.
    let body = serde_json::to_vec(record).unwrap_or_default();
    out.extend_from_slice(&(body.len() as u32).to_le_bytes());
    out.extend_from_slice(&crc32fast::hash(&body).to_le_bytes());
    out.extend_from_slice(&body);
}

struct Header {
    identity: LogIdentity,
    epoch: Epoch,
}

struct Damage {
    kind: Recovery,
    /// Byte offset of the first bad record: everything before it is good.
    at: usize,
}

/// What a file holds: its header, the good records after it, and where the damage starts.
struct Scan {
    header: Option<Header>,
    records: Vec<Record>,
    good_end: usize,
    damage: Option<Damage>,
}

fn scan(bytes: &[u8]) -> Scan {
    let mut result = Scan {
        header: None,
        records: Vec::new(),
        good_end: 0,
        damage: None,
    };
    if bytes.len() < FILE_MAGIC.len() || &bytes[..FILE_MAGIC.len()] != FILE_MAGIC {
        return result;
    }
    let mut at = FILE_MAGIC.len();
    result.good_end = at;
    while at < bytes.len() {
        let rest = &bytes[at..];
        let kind = match read_record(rest) {
            Ok((record, used)) => {
                match (&result.header, record) {
                    (
                        None,
                        Record::Header {
                            format: FORMAT_VERSION,
                            station,
                            seed,
                            sample_rate,
                            chunk_frames,
                            preset,
                            epoch,
                            ..
                        },
                    ) => {
                        result.header = Some(Header {
                            identity: LogIdentity {
                                station,
                                seed,
                                sample_rate,
                                chunk_frames,
                                preset,
                            },
                            epoch,
                        });
                    }
                    // A log must start with its header...
                    (None, _) => return result,
                    // ...and has only one: a second is damage (later records are not trusted).
                    (Some(_), Record::Header { .. }) => {
                        result.damage = Some(Damage {
                            kind: Recovery::Corrupt,
                            at,
                        });
                        return result;
                    }
                    (Some(_), record) => result.records.push(record),
                }
                at += used;
                result.good_end = at;
                continue;
            }
            Err(RecordError::Truncated) => Recovery::TornTail,
            // A crash can leave the end of the file zero-filled (the size was extended, the data
            // never written): a torn tail too, not damage.
            Err(RecordError::Bad { .. }) if rest.iter().all(|b| *b == 0) => Recovery::TornTail,
            // A bad checksum on the very last record is a torn write (its length arrived, its
            // body did not); anywhere else it is damage.
            Err(RecordError::Bad { len }) if at + RECORD_PREFIX + len == bytes.len() => {
                Recovery::TornTail
            }
            Err(RecordError::Bad { .. }) => Recovery::Corrupt,
        };
        if result.header.is_some() {
            result.damage = Some(Damage { kind, at });
        }
        return result;
    }
    result
}

enum RecordError {
    Truncated,
    Bad { len: usize },
}

fn read_record(bytes: &[u8]) -> Result<(Record, usize), RecordError> {
    if bytes.len() < RECORD_PREFIX {
        return Err(RecordError::Truncated);
    }
    let len = u32::from_le_bytes([bytes[0], bytes[1], bytes[2], bytes[3]]) as usize;
    let crc = u32::from_le_bytes([bytes[4], bytes[5], bytes[6], bytes[7]]);
    if len > MAX_RECORD {
        return Err(RecordError::Bad { len: 0 });
    }
    let Some(body) = bytes.get(RECORD_PREFIX..RECORD_PREFIX + len) else {
        return Err(RecordError::Truncated);
    };
    if crc32fast::hash(body) != crc {
        return Err(RecordError::Bad { len });
    }
    let record = serde_json::from_slice(body).map_err(|_| RecordError::Bad { len })?;
    Ok((record, RECORD_PREFIX + len))
}

/// The history the records describe: revoked changes removed, and several changes at one bar
/// line merged into the last (as the live timeline merges them).
fn resolve(records: &[Record]) -> Vec<ControlEntry> {
    let mut entries: Vec<ControlEntry> = Vec::new();
    let mut stacked: Vec<ControlEntry> = Vec::new();
    for record in records {
        match record {
            Record::Entry { entry } => stacked.push(*entry),
            Record::Revoke { position } => {
                if stacked.last().is_some_and(|e| e.position == *position) {
                    stacked.pop();
                }
            }
            Record::Header { .. } => {}
        }
    }
    for entry in stacked {
        match entries.last_mut() {
            Some(last) if last.position == entry.position => *last = entry,
            _ => entries.push(entry),
        }
    }
    entries
}

/// How many leading entries form a playable timeline (each on the bar grid of the one before).
fn valid_prefix(identity: &LogIdentity, entries: &[ControlEntry]) -> usize {
    (0..=entries.len())
        .rev()
        .find(|&n| {
            n == 0 || Timeline::from_log(identity.seed, identity.sample_rate, &entries[..n]).is_ok()
        })
        .unwrap_or(0)
}

/// Renames a log that cannot be continued to `<name>.log.<why>-<unix ms>`, kept for inspection.
fn move_aside(path: &Path, why: Recovery) -> std::io::Result<PathBuf> {
    let stamp = unix_nanos() / 1_000_000;
    let aside = path.with_extension(format!("log.{}-{stamp}", why.as_str()));
    std::fs::rename(path, &aside)?;
    sync_dir(path)?;
    Ok(aside)
}

fn sync_dir(path: &Path) -> std::io::Result<()> {
    match path.parent() {
        Some(dir) if !dir.as_os_str().is_empty() => File::open(dir)?.sync_all(),
        _ => Ok(()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::synth::params::MusicParams;

    const SR: u32 = 48_000;

    fn identity() -> LogIdentity {
        LogIdentity {
            station: "main".into(),
            seed: 7,
            sample_rate: SR,
            chunk_frames: 4800,
            preset: None,
        }
    }

    fn start() -> ControlEntry {
        Timeline::new(7, SR, MusicParams::from_seed(7)).latest_entry()
    }

    /// Three changes on successive bar lines, as a live station would log them.
    fn changes() -> Vec<ControlEntry> {
        let mut timeline = Timeline::new(7, SR, MusicParams::from_seed(7));
        let mut at = 10_000_000;
        [90.0, 120.0, 140.0]
            .into_iter()
            .map(|bpm| {
                let params = MusicParams {
                    bpm,
                    ..MusicParams::from_seed(7)
                };
                let entry = timeline.schedule(params, at).unwrap();
                at = entry.position + 1;
                entry
            })
            .collect()
    }

    fn written(dir: &Path) -> (PathBuf, Vec<ControlEntry>) {
        let path = dir.join("main.log");
        let (mut log, replayed) = ControlLog::open(&path, identity(), start()).unwrap();
        assert!(!replayed.continued);
        for entry in changes() {
            log.append_entry(entry).unwrap();
        }
        let mut all = vec![start()];
        all.extend(changes());
        (path, all)
    }

    #[test]
    fn a_log_replays_every_change_and_keeps_its_epoch() {
        let dir = tempfile::tempdir().unwrap();
        let (path, all) = written(dir.path());
        let epoch = {
            let (log, _) = ControlLog::open(&path, identity(), start()).unwrap();
            log.epoch().clone()
        };
        let (log, replayed) = ControlLog::open(&path, identity(), start()).unwrap();
        assert_eq!(replayed.entries, all);
        assert!(replayed.continued);
        assert!(replayed.recovery.is_none());
        assert_eq!(log.epoch(), &epoch);
    }

    #[test]
    fn a_torn_last_record_is_cut_and_the_epoch_kept() {
        let dir = tempfile::tempdir().unwrap();
        let (path, all) = written(dir.path());
        let (before, _) = ControlLog::open(&path, identity(), start()).unwrap();
        let len = std::fs::metadata(&path).unwrap().len();
        OpenOptions::new()
            .write(true)
            .open(&path)
            .unwrap()
            .set_len(len - 5)
            .unwrap();
        let (log, replayed) = ControlLog::open(&path, identity(), start()).unwrap();
        assert_eq!(replayed.entries, all[..all.len() - 1]);
        assert_eq!(replayed.recovery.as_ref().unwrap().0, Recovery::TornTail);
        assert!(replayed.continued);
        assert_eq!(log.epoch(), before.epoch());
        // Cut back for good: the next start finds a clean log.
        let (_, again) = ControlLog::open(&path, identity(), start()).unwrap();
        assert!(again.recovery.is_none());
        assert_eq!(again.entries, replayed.entries);
    }

    #[test]
    fn a_corrupt_byte_in_the_middle_keeps_what_is_before_it_under_a_new_epoch() {
        let dir = tempfile::tempdir().unwrap();
        let (path, all) = written(dir.path());
        let (before, _) = ControlLog::open(&path, identity(), start()).unwrap();
        let mut bytes = std::fs::read(&path).unwrap();
        // Damage the second change's record (the fourth record: header, start, change 1, change 2).
        let mut at = FILE_MAGIC.len();
        for _ in 0..3 {
            let len = u32::from_le_bytes(bytes[at..at + 4].try_into().unwrap()) as usize;
            at += RECORD_PREFIX + len;
        }
        bytes[at + RECORD_PREFIX + 3] ^= 0x20;
        std::fs::write(&path, &bytes).unwrap();
        let (log, replayed) = ControlLog::open(&path, identity(), start()).unwrap();
        assert_eq!(replayed.entries, all[..2]);
        assert_eq!(replayed.recovery.as_ref().unwrap().0, Recovery::Corrupt);
        assert!(!replayed.continued);
        assert_ne!(log.epoch(), before.epoch());
        let kept = std::fs::read_dir(dir.path())
            .unwrap()
            .filter(|e| {
                e.as_ref()
                    .unwrap()
                    .file_name()
                    .to_string_lossy()
                    .contains(".log.corrupt-")
            })
            .count();
        assert_eq!(kept, 1, "the damaged file is kept for inspection");
        let (_, again) = ControlLog::open(&path, identity(), start()).unwrap();
        assert_eq!(again.entries, all[..2]);
        assert!(again.recovery.is_none());
    }

    #[test]
    fn empty_foreign_and_reconfigured_files_start_a_new_history() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("main.log");
        std::fs::write(&path, b"").unwrap();
        let (_, empty) = ControlLog::open(&path, identity(), start()).unwrap();
        assert_eq!(empty.recovery.unwrap().0, Recovery::Empty);
        assert_eq!(empty.entries, vec![start()]);

        std::fs::write(&path, b"not a control log at all").unwrap();
        let (_, foreign) = ControlLog::open(&path, identity(), start()).unwrap();
        assert_eq!(foreign.recovery.unwrap().0, Recovery::Unreadable);

        let elsewhere = tempfile::tempdir().unwrap();
        let (path, _) = written(elsewhere.path());
        let other = LogIdentity {
            seed: 8,
            ..identity()
        };
        let (_, changed) = ControlLog::open(&path, other, start()).unwrap();
        assert_eq!(changed.recovery.unwrap().0, Recovery::ConfigChanged);
        assert_eq!(changed.entries.len(), 1);
    }

    #[test]
    fn a_zero_filled_tail_is_torn_and_a_second_header_is_damage() {
        let dir = tempfile::tempdir().unwrap();
        let (path, all) = written(dir.path());
        let mut bytes = std::fs::read(&path).unwrap();
        bytes.extend_from_slice(&[0; 4096]);
        std::fs::write(&path, &bytes).unwrap();
        let (_, zeroed) = ControlLog::open(&path, identity(), start()).unwrap();
        assert_eq!(zeroed.recovery.unwrap().0, Recovery::TornTail);
        assert_eq!(zeroed.entries, all);

        let mut bytes = std::fs::read(&path).unwrap();
        encode_record(&header_record(&identity(), &Epoch::fresh()), &mut bytes);
        encode_record(&Record::Entry { entry: all[1] }, &mut bytes);
        std::fs::write(&path, &bytes).unwrap();
        let (_, doubled) = ControlLog::open(&path, identity(), start()).unwrap();
        assert_eq!(doubled.recovery.unwrap().0, Recovery::Corrupt);
        assert_eq!(doubled.entries, all, "what came before the second header");
        assert!(!doubled.continued);
    }

    #[test]
    fn revoked_changes_and_merged_bar_lines_replay_as_they_sounded() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("main.log");
        let (mut log, _) = ControlLog::open(&path, identity(), start()).unwrap();
        let [first, second, _] = changes()[..] else {
            unreachable!()
        };
        let merged = ControlEntry {
            params: MusicParams {
                bpm: 100.0,
                ..first.params
            },
            ..first
        };
        log.append_entry(first).unwrap();
        log.append_entry(merged).unwrap();
        log.append_entry(second).unwrap();
        log.append_revoke(second.position).unwrap();
        let (_, replayed) = ControlLog::open(&path, identity(), start()).unwrap();
        assert_eq!(replayed.entries, vec![start(), merged]);
    }

    #[test]
    fn a_write_that_fails_is_an_error_and_counts_nothing() {
        let mut log = ControlLog::failing_for_tests(identity());
        let error = log.append_entry(changes()[0]).unwrap_err();
        assert_eq!(error.raw_os_error(), Some(28), "ENOSPC: {error}");
        assert_eq!((log.records(), log.bytes()), (2, 0));
    }

    #[test]
    fn compaction_keeps_the_epoch_and_only_what_it_is_given() {
        let dir = tempfile::tempdir().unwrap();
        let (path, all) = written(dir.path());
        let (mut log, _) = ControlLog::open(&path, identity(), start()).unwrap();
        let epoch = log.epoch().clone();
        let before = log.bytes();
        log.compact(&all[2..]).unwrap();
        assert!(log.bytes() < before);
        let (log, replayed) = ControlLog::open(&path, identity(), start()).unwrap();
        assert_eq!(replayed.entries, all[2..]);
        assert_eq!(log.epoch(), &epoch);
    }
}
