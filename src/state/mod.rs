//! What survives a restart: the state directory, held by one server at a time, and in it each
//! station's durable control log ([`log`]).
//!
//! Layout: `<state-dir>/LOCK` (an advisory lock held while the server runs) and
//! `<state-dir>/stations/<name>.log`. Station names are letters, digits, `-` and `_`, so they are
//! safe file names.

pub mod log;

use std::fs::{File, OpenOptions};
use std::path::{Path, PathBuf};

pub use log::{ControlLog, Epoch, LogIdentity, Recovery, Replayed};

/// The state directory cannot be used.
#[derive(Debug, thiserror::Error)]
pub enum StateError {
    #[error("cannot create the state directory {path}: {source}")]
    Create {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("another server is using the state directory {path} (it holds {path}/LOCK); give each server its own --state-dir")]
    Locked { path: PathBuf },
    #[error("state directory {path}: {source}")]
    Io {
        path: PathBuf,
        source: std::io::Error,
    },
}

/// An open, locked state directory. The lock is released when this is dropped (or the process
/// ends, however it ends: it is an advisory `flock`, never a stale file to delete by hand).
#[derive(Debug)]
pub struct StateDir {
    path: PathBuf,
    _lock: File,
}

impl StateDir {
    /// Creates `path` (and `stations/` inside it) if missing and takes its lock.
    ///
    /// # Errors
    /// [`StateError::Locked`] when another server holds it; the others when the directory
    /// cannot be created or opened.
    pub fn open(path: &Path) -> Result<Self, StateError> {
        let stations = path.join("stations");
        std::fs::create_dir_all(&stations).map_err(|source| StateError::Create {
            path: path.to_path_buf(),
            source,
        })?;
        let lock_path = path.join("LOCK");
        let lock = OpenOptions::new()
            .create(true)
            .truncate(false)
            .write(true)
            .open(&lock_path)
            .map_err(|source| StateError::Io {
                path: lock_path.clone(),
                source,
            })?;
        match lock.try_lock() {
            Ok(()) => {}
            Err(std::fs::TryLockError::WouldBlock) => {
                return Err(StateError::Locked {
                    path: path.to_path_buf(),
                })
            }
            Err(std::fs::TryLockError::Error(source)) => {
                return Err(StateError::Io {
                    path: lock_path,
                    source,
                })
            }
        }
        Ok(Self {
            path: path.to_path_buf(),
            _lock: lock,
        })
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Where a station's control log lives.
    pub fn station_log(&self, station: &str) -> PathBuf {
        self.path.join("stations").join(format!("{station}.log"))
    }
}

/// The default state directory: `$XDG_STATE_HOME/auralis`, else `~/.local/state/auralis`, else
/// `./auralis-state`.
pub fn default_state_dir() -> PathBuf {
    if let Some(state) = std::env::var_os("XDG_STATE_HOME").filter(|s| !s.is_empty()) {
        return PathBuf::from(state).join("auralis");
    }
    if let Some(home) = std::env::var_os("HOME").filter(|s| !s.is_empty()) {
        return PathBuf::from(home).join(".local/state/auralis");
    }
    PathBuf::from("auralis-state")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_second_server_cannot_take_the_same_directory() {
        let dir = tempfile::tempdir().unwrap();
        let first = StateDir::open(dir.path()).unwrap();
        let second = StateDir::open(dir.path()).unwrap_err();
        assert!(matches!(second, StateError::Locked { .. }), "{second}");
        assert!(second.to_string().contains("another server"));
        drop(first);
        StateDir::open(dir.path()).expect("free again once the first is gone");
    }

    #[test]
    fn a_missing_directory_is_created() {
        let dir = tempfile::tempdir().unwrap();
        let nested = dir.path().join("a/b/state");
        let state = StateDir::open(&nested).unwrap();
        assert!(nested.join("stations").is_dir());
        assert_eq!(state.station_log("jazz"), nested.join("stations/jazz.log"));
    }
}
