//! The rotated refresh token of one mailbox, kept in the state directory so a restart
//! uses the newest one (servers that rotate may invalidate the configured one).
//!
//! File: `<state.dir>/oauth/<mailbox>.refresh-token.json`, mode 0600 in a 0700 directory,
//! written atomically (temporary file, fsync, rename, fsync of the directory) on a
//! blocking thread, never on the runtime. It records what it descends from: the token
//! endpoint, the client ID and a SHA-256 fingerprint of the *configured* refresh token.
//! When an operator configures a new refresh token, the fingerprint no longer matches
//! and the stored one is ignored: the config is newer than the file.

use std::path::{Path, PathBuf};

use crate::config::Secret;

/// Why the stored refresh token could not be read or written. Never holds token text.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("{path}: {source}")]
    Io {
        path: String,
        #[source]
        source: std::io::Error,
    },
    #[error("{path}: not a refresh-token file of this version ({reason})")]
    Corrupt { path: String, reason: String },
    #[error("writing {path} was interrupted")]
    Interrupted { path: String },
}

/// What the file holds.
#[derive(serde::Serialize, serde::Deserialize)]
struct Stored {
    version: u32,
    mailbox: String,
    token_url: String,
    client_id: String,
    /// SHA-256 (hex) of the configured refresh token this one was rotated from.
    configured_sha256: String,
    refresh_token: String,
    updated_at: String,
}

/// Where a mailbox's rotated refresh token lives, and what it must descend from.
#[derive(Debug, Clone)]
pub struct RefreshStore {
    path: PathBuf,
    mailbox: String,
    token_url: String,
    client_id: String,
    configured_sha256: String,
}

impl RefreshStore {
    /// The store of `mailbox` under `state_dir`. Mailbox names are `[A-Za-z0-9_.-]+`,
    /// so as a prefix of the file name they can never leave the directory.
    pub fn new(
        state_dir: &Path,
        mailbox: &str,
        token_url: &str,
        client_id: &str,
        configured: &Secret,
    ) -> RefreshStore {
        RefreshStore {
            path: state_dir
                .join("oauth")
                .join(format!("{mailbox}.refresh-token.json")),
            mailbox: mailbox.to_owned(),
            token_url: token_url.to_owned(),
            client_id: client_id.to_owned(),
            configured_sha256: sha256_hex(configured.expose()),
        }
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    /// The stored refresh token, if there is one that descends from the configured one
    /// for the same endpoint and client; `Ok(None)` when there is no usable file.
    pub async fn load(&self) -> Result<Option<Secret>, StoreError> {
        // Our own file, in our own directory: never through a link, and bounded.
        let path = self.path.clone();
        let read = tokio::task::spawn_blocking(move || {
            crate::fsutil::read_nofollow(&path, crate::fsutil::TOKEN_STORE)
        })
        .await
        .map_err(|e| self.io(std::io::Error::other(e.to_string())))?;
        let bytes = match read {
            Ok(b) => b,
            Err(crate::fsutil::FileError::NotFound) => return Ok(None),
            Err(e) => return Err(self.io(std::io::Error::other(e.to_string()))),
        };
        let text = String::from_utf8(bytes).map_err(|_| StoreError::Corrupt {
            path: self.path.display().to_string(),
            reason: "not UTF-8".to_string(),
        })?;
        // serde_json's messages quote no input values, so the token cannot leak here.
        let stored: Stored = serde_json::from_str(&text).map_err(|e| StoreError::Corrupt {
            path: self.path.display().to_string(),
            reason: e.to_string(),
        })?;
        if stored.version != 1 || stored.refresh_token.is_empty() {
            return Err(StoreError::Corrupt {
                path: self.path.display().to_string(),
                reason: format!("version {}", stored.version),
            });
        }
        let same_origin = stored.mailbox == self.mailbox
            && stored.token_url == self.token_url
            && stored.client_id == self.client_id
            && stored.configured_sha256 == self.configured_sha256;
        Ok(same_origin.then(|| Secret::new(stored.refresh_token)))
    }

    /// Replaces the stored refresh token atomically (mode 0600).
    pub async fn save(&self, refresh_token: &Secret) -> Result<(), StoreError> {
        let stored = Stored {
            version: 1,
            mailbox: self.mailbox.clone(),
            token_url: self.token_url.clone(),
            client_id: self.client_id.clone(),
            configured_sha256: self.configured_sha256.clone(),
            refresh_token: refresh_token.expose().to_owned(),
            updated_at: crate::util::rfc3339(crate::util::unix(std::time::SystemTime::now())),
        };
        let bytes = serde_json::to_vec_pretty(&stored).map_err(|e| StoreError::Corrupt {
            path: self.path.display().to_string(),
            reason: e.to_string(),
        })?;
        let path = self.path.clone();
        tokio::task::spawn_blocking(move || write_atomic(&path, &bytes))
            .await
            .map_err(|_| StoreError::Interrupted {
                path: self.path.display().to_string(),
            })?
    }

    fn io(&self, source: std::io::Error) -> StoreError {
        StoreError::Io {
            path: self.path.display().to_string(),
            source,
        }
    }
}

/// temp file (0600, never pre-existing) + write + fsync + rename + fsync(dir): after a
/// crash the file is either the old token or the new one, never half of one.
fn write_atomic(path: &Path, bytes: &[u8]) -> Result<(), StoreError> {
    crate::fsutil::write_atomic(path, bytes).map_err(|source| StoreError::Io {
        path: path.display().to_string(),
        source,
    })
}

fn sha256_hex(s: &str) -> String {
    let digest = aws_lc_rs::digest::digest(&aws_lc_rs::digest::SHA256, s.as_bytes());
    digest.as_ref().iter().map(|b| format!("{b:02x}")).collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::PermissionsExt;

    fn store(dir: &Path, configured: &str) -> RefreshStore {
        RefreshStore::new(
            dir,
            "m1",
            "https://t.example/token",
            "cid",
            &Secret::new(configured),
        )
    }

    #[tokio::test]
    async fn round_trip_mode_and_origin() {
        let dir = tempfile::tempdir().unwrap();
        let s = store(dir.path(), "configured-rt");
        assert!(s.load().await.unwrap().is_none());
        s.save(&Secret::new("rotated-1")).await.unwrap();
        s.save(&Secret::new("rotated-2")).await.unwrap();
        assert_eq!(s.load().await.unwrap().unwrap().expose(), "rotated-2");
        let meta = std::fs::metadata(s.path()).unwrap();
        assert_eq!(meta.permissions().mode() & 0o777, 0o600);
        let dir_mode = std::fs::metadata(s.path().parent().unwrap())
            .unwrap()
            .permissions()
            .mode();
        assert_eq!(dir_mode & 0o777, 0o700);
        // No temporary files are left behind.
        let names: Vec<_> = std::fs::read_dir(s.path().parent().unwrap())
            .unwrap()
            .map(|e| e.unwrap().file_name())
            .collect();
        assert_eq!(names.len(), 1, "{names:?}");
        // The file does not hold the configured token, only its fingerprint.
        let text = std::fs::read_to_string(s.path()).unwrap();
        assert!(!text.contains("configured-rt"));
        // A newly configured refresh token wins over the stored one.
        assert!(
            store(dir.path(), "new-configured")
                .load()
                .await
                .unwrap()
                .is_none()
        );
    }

    #[tokio::test]
    async fn corrupt_file_is_an_error_without_content() {
        let dir = tempfile::tempdir().unwrap();
        let s = store(dir.path(), "c");
        std::fs::create_dir_all(s.path().parent().unwrap()).unwrap();
        std::fs::write(s.path(), "{\"refresh_token\": \"leak-me\"").unwrap();
        let e = s.load().await.unwrap_err().to_string();
        assert!(!e.contains("leak-me"), "{e}");
    }
}
