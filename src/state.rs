//! Durable state in `--state.dir`: one small JSON file per mailbox holding its
//! [`Ledger`] (sends of the last day, pauses), so the budget survives restarts and
//! `kill -9`.
//!
//! Every write is atomic: a temp file, fsync, rename, fsync of the directory. A file that
//! cannot be read or parsed is never reset silently: it is moved aside
//! (`<name>.json.corrupt-<unix>`), an error is logged, and the mailbox is treated as
//! having spent today's budget, because sending too much is worse than skipping a day.

use std::io::Write;
use std::path::{Path, PathBuf};

use crate::quota::Ledger;

#[derive(Debug, thiserror::Error)]
pub enum StateError {
    #[error("state directory {path}: {source}")]
    Dir {
        path: String,
        source: std::io::Error,
    },
    #[error("writing {path}: {source}")]
    Write {
        path: String,
        source: std::io::Error,
    },
    #[error("encoding state: {0}")]
    Encode(#[from] serde_json::Error),
    #[error("state task failed: {0}")]
    Join(String),
}

/// What loading a mailbox's state found.
#[derive(Debug)]
pub enum Loaded {
    /// No file yet: a fresh ledger.
    Fresh(Ledger),
    Ok(Ledger),
    /// The file was unreadable or corrupt and was moved aside to this path.
    Corrupt {
        moved_to: Option<PathBuf>,
        reason: String,
    },
}

/// The state directory.
#[derive(Debug, Clone)]
pub struct StateStore {
    dir: PathBuf,
}

impl StateStore {
    /// Opens (creating) the directory; mode 0700, it may hold refresh tokens too.
    pub fn open(dir: &Path) -> Result<StateStore, StateError> {
        let err = |source| StateError::Dir {
            path: dir.display().to_string(),
            source,
        };
        std::fs::create_dir_all(dir).map_err(err)?;
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            let _ = std::fs::set_permissions(dir, std::fs::Permissions::from_mode(0o700));
        }
        Ok(StateStore {
            dir: dir.to_path_buf(),
        })
    }

    pub fn dir(&self) -> &Path {
        &self.dir
    }

    fn path(&self, mailbox: &str) -> PathBuf {
        // Mailbox names are [A-Za-z0-9_.-]+ (validated), so they are safe file names;
        // the prefix keeps `.`/`..` impossible.
        self.dir.join(format!("mailbox-{mailbox}.json"))
    }

    /// Reads a mailbox's ledger (blocking; call at start or via spawn_blocking).
    pub fn load(&self, mailbox: &str, now: u64) -> Loaded {
        let path = self.path(mailbox);
        let bytes = match std::fs::read(&path) {
            Ok(b) => b,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                return Loaded::Fresh(Ledger::default());
            }
            Err(e) => return self.corrupt(&path, format!("unreadable: {e}"), now),
        };
        match parse_ledger(&bytes) {
            Ok(mut l) => {
                l.settle_reservation();
                l.prune(now);
                Loaded::Ok(l)
            }
            Err(e) => self.corrupt(&path, format!("not valid state: {e}"), now),
        }
    }

    fn corrupt(&self, path: &Path, reason: String, now: u64) -> Loaded {
        let aside = path.with_extension(format!("json.corrupt-{now}"));
        let moved_to = std::fs::rename(path, &aside).ok().map(|_| aside);
        Loaded::Corrupt { moved_to, reason }
    }

    /// Writes a ledger atomically (blocking).
    pub fn save_blocking(&self, mailbox: &str, ledger: &Ledger) -> Result<(), StateError> {
        let path = self.path(mailbox);
        let data = serde_json::to_vec(ledger)?;
        write_atomic(&path, &data).map_err(|source| StateError::Write {
            path: path.display().to_string(),
            source,
        })
    }

    /// Writes a ledger atomically off the async runtime.
    pub async fn save(&self, mailbox: &str, ledger: Ledger) -> Result<(), StateError> {
        let store = self.clone();
        let name = mailbox.to_owned();
        tokio::task::spawn_blocking(move || store.save_blocking(&name, &ledger))
            .await
            .map_err(|e| StateError::Join(e.to_string()))?
    }
}

/// Decodes a state file's bytes. Nothing is settled or pruned: [`StateStore::load`] does
/// that with the clock; this is the parser alone, so it can be tested on any bytes.
pub fn parse_ledger(bytes: &[u8]) -> Result<Ledger, serde_json::Error> {
    serde_json::from_slice(bytes)
}

/// Replaces `path` atomically with `bytes`: a uniquely named temp file (mode 0600, never
/// shared by two writers), fsync, rename, fsync of the directory. A crash leaves the old
/// file or the new one, never a torn one. Blocking. Used for every file in the state
/// directory.
pub fn write_atomic(path: &Path, bytes: &[u8]) -> std::io::Result<()> {
    use std::os::unix::fs::{DirBuilderExt, OpenOptionsExt};
    let dir = path.parent().unwrap_or(Path::new("."));
    std::fs::DirBuilder::new()
        .recursive(true)
        .mode(0o700)
        .create(dir)?;
    let name = path.file_name().and_then(|n| n.to_str()).unwrap_or("state");
    let tmp = dir.join(format!(
        ".{name}.{}.{:08x}.tmp",
        std::process::id(),
        rand::random::<u32>()
    ));
    let result = (|| {
        let mut f = std::fs::OpenOptions::new()
            .write(true)
            .create_new(true)
            .mode(0o600)
            .open(&tmp)?;
        f.write_all(bytes)?;
        f.sync_all()?;
        std::fs::rename(&tmp, path)?;
        // The rename is durable only once the directory entry is.
        std::fs::File::open(dir)?.sync_all()
    })();
    if result.is_err() {
        let _ = std::fs::remove_file(&tmp);
    }
    result
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn roundtrip_and_corrupt_file_is_moved_aside() {
        let dir = tempfile::tempdir().unwrap();
        let s = StateStore::open(dir.path()).unwrap();
        assert!(matches!(s.load("a", 100), Loaded::Fresh(_)));
        let mut l = Ledger::default();
        l.record(100, 2);
        s.save_blocking("a", &l).unwrap();
        match s.load("a", 150) {
            Loaded::Ok(got) => assert_eq!(got, l),
            other => panic!("{other:?}"),
        }
        std::fs::write(dir.path().join("mailbox-a.json"), b"{not json").unwrap();
        match s.load("a", 200) {
            Loaded::Corrupt {
                moved_to: Some(p), ..
            } => assert!(p.exists()),
            other => panic!("{other:?}"),
        }
        assert!(!dir.path().join("mailbox-a.json").exists());
    }

    #[test]
    fn an_impossible_reservation_is_corrupt_state() {
        let json = br#"{"sends":[],"reserved":{"count":4294967295,"at":100,"recipients":1}}"#;
        let e = parse_ledger(json).unwrap_err().to_string();
        assert!(e.contains("at most 8 reserved sends"), "{e}");
        let ok = br#"{"sends":[],"reserved":{"count":8,"at":100,"recipients":1}}"#;
        let mut l = parse_ledger(ok).unwrap();
        l.settle_reservation();
        assert_eq!(l.sends.len(), 8);
        let dir = tempfile::tempdir().unwrap();
        let s = StateStore::open(dir.path()).unwrap();
        std::fs::write(dir.path().join("mailbox-a.json"), json).unwrap();
        assert!(matches!(s.load("a", 200), Loaded::Corrupt { .. }));
    }
}
