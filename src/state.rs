//! Durable state in `--state.dir`: one small JSON file per mailbox holding its
//! [`Ledger`] (sends of the last day, pauses), so the budget survives restarts and
//! `kill -9`; and the directory's lock, so two processes never share one ledger.
//!
//! The directory is checked before anything is written into it (it must be ours, not
//! writable by others), files in it are never read or written through symbolic links,
//! and new files are created exclusively under unguessable temporary names.
//!
//! Every write is atomic: a temp file, fsync, rename, fsync of the directory. A file that
//! cannot be read or parsed is never reset silently: it is moved aside
//! (`<name>.json.corrupt-<unix>`), an error is logged, and the mailbox is treated as
//! having spent today's budget, because sending too much is worse than skipping a day.

use std::io::Write;
use std::os::fd::AsRawFd;
use std::os::unix::fs::{DirBuilderExt, OpenOptionsExt};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use crate::fsutil::{self, write_atomic};
use crate::quota::Ledger;

#[derive(Debug, thiserror::Error)]
pub enum StateError {
    #[error("state directory {path}: {source}")]
    Dir {
        path: String,
        source: std::io::Error,
    },
    /// The directory is not safe to write into as this user (see [`StateStore::open`]).
    #[error("state directory {path}: {reason}")]
    Unsafe { path: String, reason: String },
    /// Another process holds the directory's lock.
    #[error(
        "state directory {path} is in use by another smtp-canary ({holder}); two processes must not share one send ledger. Stop it, or use another --state.dir"
    )]
    Locked { path: String, holder: String },
    #[error("writing {path}: {source}")]
    Write {
        path: String,
        source: std::io::Error,
    },
    #[error("encoding state: {0}")]
    Encode(#[from] serde_json::Error),
    #[error("state task failed: {0}")]
    Join(String),
    #[error("no answer from the disk within {0:?}")]
    Timeout(Duration),
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

/// Who holds the state directory's lock, written into the lock file for the message
/// another process shows.
#[derive(Debug, Clone, Copy, PartialEq, Eq, strum::IntoStaticStr)]
#[strum(serialize_all = "lowercase")]
pub enum Role {
    Daemon,
    /// `smtp-canary probe NAME`.
    Probe,
}

impl Role {
    fn as_str(self) -> &'static str {
        self.into()
    }
}

/// The file in the state directory that says who holds its lock.
pub const LOCK_FILE: &str = ".lock";

/// The state directory, locked for this process. The lock is an `flock` on the
/// directory: the kernel drops it when the process dies, `kill -9` included.
#[derive(Debug, Clone)]
pub struct StateStore {
    dir: PathBuf,
    _lock: Arc<std::fs::File>,
}

impl StateStore {
    /// Opens (creating, mode 0700) and locks the directory. It may hold refresh tokens
    /// and decides how many canaries are sent, so it must be ours: a directory another
    /// (non-root) user owns is refused; one that others can write is fixed to 0700 when
    /// it is ours and refused otherwise. Group write is accepted only for our own group
    /// (a Kubernetes volume with `fsGroup`). Fails at once if another process holds it.
    pub fn open(dir: &Path, role: Role) -> Result<StateStore, StateError> {
        Self::open_waiting(dir, role, Duration::ZERO)
    }

    /// Like [`StateStore::open`], waiting up to `wait` for another `probe` command to
    /// finish (a daemon holds the lock for its whole life: that fails at once).
    pub fn open_waiting(dir: &Path, role: Role, wait: Duration) -> Result<StateStore, StateError> {
        let shown = dir.display().to_string();
        let err = |source| StateError::Dir {
            path: shown.clone(),
            source,
        };
        std::fs::DirBuilder::new()
            .recursive(true)
            .mode(0o700)
            .create(dir)
            .map_err(err)?;
        check_dir(dir).map_err(|reason| StateError::Unsafe {
            path: shown.clone(),
            reason,
        })?;
        // The lock is on a regular file opened for writing (NFS emulates flock with
        // fcntl locks, which need that); where it cannot be opened so (a read-only or
        // full file system) on the directory itself, so the daemon still starts and
        // skips its probes (reason `state`) rather than refusing to run.
        let file = std::fs::OpenOptions::new()
            .read(true)
            .write(true)
            .create(true)
            .truncate(false)
            .mode(0o600)
            .custom_flags(libc::O_NOFOLLOW | libc::O_CLOEXEC)
            .open(dir.join(LOCK_FILE))
            .or_else(|_| {
                std::fs::OpenOptions::new()
                    .read(true)
                    .custom_flags(libc::O_DIRECTORY | libc::O_CLOEXEC)
                    .open(dir)
            })
            .map_err(err)?;
        let holder_file = dir.join(LOCK_FILE);
        let until = std::time::Instant::now() + wait;
        loop {
            // SAFETY: flock on a file descriptor we own; no memory is involved.
            if unsafe { libc::flock(file.as_raw_fd(), libc::LOCK_EX | libc::LOCK_NB) } == 0 {
                break;
            }
            let e = std::io::Error::last_os_error();
            if e.raw_os_error() != Some(libc::EWOULDBLOCK) {
                return Err(err(e));
            }
            let holder = fsutil::read_nofollow(&holder_file, fsutil::TOKEN_STORE)
                .ok()
                .map(|b| {
                    String::from_utf8_lossy(&b)
                        .trim()
                        .chars()
                        .take(64)
                        .collect::<String>()
                })
                .filter(|s| !s.is_empty())
                .unwrap_or_else(|| "unknown process".to_string());
            if holder.starts_with(Role::Daemon.as_str()) || std::time::Instant::now() >= until {
                return Err(StateError::Locked {
                    path: shown,
                    holder,
                });
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        // Who holds it, for the next process's message; failing to say so (a full or
        // read-only directory) is harmless.
        if file.metadata().is_ok_and(|m| m.is_file()) {
            let mut f = &file;
            let _ = file.set_len(0);
            let _ = write!(f, "{} pid {}", role.as_str(), std::process::id());
        }
        Ok(StateStore {
            dir: dir.to_path_buf(),
            _lock: Arc::new(file),
        })
    }

    pub fn dir(&self) -> &Path {
        &self.dir
    }

    fn path(&self, mailbox: &str) -> PathBuf {
        // Mailbox names are [A-Za-z0-9_.-]{1,MAX_NAME_LEN} (validated), so they are safe
        // file names of bounded length; the prefix keeps `.`/`..` impossible.
        self.dir.join(format!("mailbox-{mailbox}.json"))
    }

    /// Reads a mailbox's ledger (blocking; call at start or via spawn_blocking).
    pub fn load(&self, mailbox: &str, now: u64) -> Loaded {
        let path = self.path(mailbox);
        let bytes = match fsutil::read_nofollow(&path, fsutil::STATE) {
            Ok(b) => b,
            Err(fsutil::FileError::NotFound) => return Loaded::Fresh(Ledger::default()),
            Err(e) => return self.corrupt(&path, format!("unreadable: {e}"), now),
        };
        match parse_ledger(&bytes, now) {
            Ok(l) => Loaded::Ok(l),
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

impl StateStore {
    /// Another document in the state directory (delivery's in-flight canaries, a sink's
    /// read position): `kind-NAME.json`, where NAME is a validated mailbox or sink name.
    fn doc_path(&self, kind: &str, name: &str) -> PathBuf {
        self.dir.join(format!("{kind}-{name}.json"))
    }

    /// Reads a document (blocking). `Ok(None)`: there is none yet. An unreadable one is
    /// moved aside and reported, so it is never parsed twice.
    pub fn load_doc(&self, kind: &str, name: &str) -> Result<Option<Vec<u8>>, String> {
        let path = self.doc_path(kind, name);
        match fsutil::read_nofollow(&path, fsutil::STATE) {
            Ok(b) => Ok(Some(b)),
            Err(fsutil::FileError::NotFound) => Ok(None),
            Err(e) => {
                let _ = std::fs::rename(&path, path.with_extension("json.corrupt"));
                Err(format!("{}: {e}", path.display()))
            }
        }
    }

    /// Writes a document atomically off the async runtime.
    pub async fn save_doc(&self, kind: &str, name: &str, data: Vec<u8>) -> Result<(), StateError> {
        let path = self.doc_path(kind, name);
        tokio::task::spawn_blocking(move || {
            write_atomic(&path, &data).map_err(|source| StateError::Write {
                path: path.display().to_string(),
                source,
            })
        })
        .await
        .map_err(|e| StateError::Join(e.to_string()))?
    }
}

/// Parses a ledger file's bytes: the sends a previous process reserved count as made
/// now, and sends older than a day are dropped. A reservation larger than any process
/// takes is refused by the decoder itself ([`crate::quota::MAX_RESERVATION`]).
pub fn parse_ledger(bytes: &[u8], now: u64) -> Result<Ledger, serde_json::Error> {
    let mut l = serde_json::from_slice::<Ledger>(bytes)?;
    l.settle_reservation(now);
    l.prune(now);
    Ok(l)
}

/// This process's supplementary groups (Kubernetes adds `fsGroup` as one).
fn supplementary_groups() -> Vec<libc::gid_t> {
    // SAFETY: getgroups with size 0 returns the count; then it fills a buffer of that
    // size. A failure returns -1, which gives an empty list.
    unsafe {
        let n = libc::getgroups(0, std::ptr::null_mut());
        if n <= 0 {
            return Vec::new();
        }
        let mut groups = vec![0 as libc::gid_t; n as usize];
        let got = libc::getgroups(n, groups.as_mut_ptr());
        groups.truncate(got.max(0) as usize);
        groups
    }
}

/// Whether `dir` is safe to keep the ledger in (see [`StateStore::open`]); fixes the
/// mode of a directory of ours that others could write.
fn check_dir(dir: &Path) -> Result<(), String> {
    use std::os::unix::fs::{MetadataExt, PermissionsExt};
    let meta = std::fs::metadata(dir).map_err(|e| e.to_string())?;
    if !meta.is_dir() {
        return Err("is not a directory".to_string());
    }
    // SAFETY: geteuid/getegid have no preconditions and cannot fail.
    let (uid, gid) = unsafe { (libc::geteuid(), libc::getegid()) };
    let mode = meta.mode() & 0o7777;
    let group_ok =
        mode & 0o020 == 0 || meta.gid() == gid || supplementary_groups().contains(&meta.gid());
    let others_ok = mode & 0o002 == 0;
    if meta.uid() == uid {
        if !(group_ok && others_ok) {
            std::fs::set_permissions(dir, std::fs::Permissions::from_mode(0o700)).map_err(|e| {
                format!("mode {mode:o} lets other users write it, and chmod 0700 failed: {e}")
            })?;
            tracing::warn!(path = %dir.display(), mode = format!("{mode:o}"), "the state directory was writable by other users; its mode is now 0700");
        }
        return Ok(());
    }
    if meta.uid() != 0 {
        return Err(format!(
            "is owned by uid {}, not by this process (uid {uid}); another user could plant links or edit the send ledger. chown it, or use another --state.dir",
            meta.uid()
        ));
    }
    if !(group_ok && others_ok) {
        return Err(format!(
            "mode {mode:o} lets other users write it; make it writable by this user only (chmod 0700), or use another --state.dir"
        ));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn roundtrip_and_corrupt_file_is_moved_aside() {
        let dir = tempfile::tempdir().unwrap();
        let s = StateStore::open(dir.path(), Role::Daemon).unwrap();
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
    fn a_second_process_cannot_take_the_lock() {
        let dir = tempfile::tempdir().unwrap();
        let held = StateStore::open(dir.path(), Role::Daemon).unwrap();
        // flock locks belong to the open file description: a second open conflicts even
        // within one process, as another process would.
        let e = StateStore::open_waiting(dir.path(), Role::Probe, Duration::from_millis(200))
            .unwrap_err()
            .to_string();
        assert!(
            e.contains("in use by another smtp-canary (daemon pid"),
            "{e}"
        );
        drop(held);
        StateStore::open(dir.path(), Role::Probe).unwrap();
    }

    #[test]
    fn an_open_directory_of_ours_is_fixed_and_links_are_not_followed() {
        use std::os::unix::fs::PermissionsExt;
        let dir = tempfile::tempdir().unwrap();
        std::fs::set_permissions(dir.path(), std::fs::Permissions::from_mode(0o777)).unwrap();
        let s = StateStore::open(dir.path(), Role::Daemon).unwrap();
        let mode = std::fs::metadata(dir.path()).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode, 0o700);
        // A link planted where a ledger goes is not read through (it counts as a corrupt
        // file: today's budget is spent) and is replaced, not followed, on write.
        let victim = dir.path().join("victim");
        std::fs::write(&victim, b"keep").unwrap();
        std::os::unix::fs::symlink(&victim, dir.path().join("mailbox-a.json")).unwrap();
        assert!(matches!(s.load("a", 1), Loaded::Corrupt { .. }));
        std::os::unix::fs::symlink(&victim, dir.path().join("mailbox-b.json")).unwrap();
        s.save_blocking("b", &Ledger::default()).unwrap();
        assert_eq!(std::fs::read(&victim).unwrap(), b"keep");
    }
}
