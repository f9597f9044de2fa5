//! Reading files that the config names (and the daemon's own state files) as untrusted
//! input: each read is bounded in size, refuses anything that is not a regular file, and
//! never blocks on open.
//!
//! A config that points `password_file` at `/dev/zero`, a 4 GB log or a FIFO must give a
//! clear error at once, not grow memory by GB/s or hang a reload. So every such file is
//! opened with `O_NONBLOCK` (a FIFO with no writer opens at once instead of waiting),
//! `fstat`ed, and refused unless it is a regular file no larger than the cap for its kind.
//! The caps are stated here, once, and quoted in the error.

use std::io::Read;
use std::os::unix::fs::{FileTypeExt, OpenOptionsExt};
use std::path::Path;

/// A kind of file and the largest one of that kind we read.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Kind {
    /// What the file is, for messages: "config file", "secret file", ...
    pub what: &'static str,
    pub max_bytes: u64,
}

const KIB: u64 = 1024;
const MIB: u64 = 1024 * KIB;

/// `--config.file`: 10,000 mailboxes are about 3 MiB of YAML.
pub const CONFIG: Kind = Kind {
    what: "config file",
    max_bytes: 32 * MIB,
};
/// `password_file`, `client_secret_file`, `refresh_token_file`.
pub const SECRET: Kind = Kind {
    what: "secret file",
    max_bytes: 64 * KIB,
};
/// `tls.ca_file`, and the certificate and key files of `--web.config.file`: a full
/// system bundle is about 200 KiB.
pub const PEM: Kind = Kind {
    what: "PEM file",
    max_bytes: 4 * MIB,
};
/// `--web.config.file`.
pub const WEB_CONFIG: Kind = Kind {
    what: "web config file",
    max_bytes: MIB,
};
/// A mailbox's ledger in `--state.dir`: a day of sends at a budget of 100,000 a day is
/// about 3 MiB of JSON.
pub const STATE: Kind = Kind {
    what: "state file",
    max_bytes: 8 * MIB,
};
/// A stored refresh token in `--state.dir`.
pub const TOKEN_STORE: Kind = Kind {
    what: "token store file",
    max_bytes: 64 * KIB,
};

/// Why a file could not be read. The messages never quote the file's content.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum FileError {
    #[error("no such file")]
    NotFound,
    #[error("permission denied")]
    PermissionDenied,
    #[error("is {0}, not a regular file")]
    NotRegular(&'static str),
    #[error("is a symbolic link; files in the state directory are never followed through links")]
    Symlink,
    #[error("is larger than {max} bytes, the limit for a {what}")]
    TooLarge { what: &'static str, max: u64 },
    #[error("{0}")]
    Io(String),
}

impl FileError {
    fn from_io(e: &std::io::Error) -> FileError {
        match e.kind() {
            std::io::ErrorKind::NotFound => FileError::NotFound,
            std::io::ErrorKind::PermissionDenied => FileError::PermissionDenied,
            _ if e.raw_os_error() == Some(libc::ELOOP) => FileError::Symlink,
            _ => FileError::Io(e.to_string()),
        }
    }
}

/// Reads a regular file of `kind`, following symbolic links (Kubernetes mounts secrets
/// and config maps through them). Blocking: call it off the async workers.
pub fn read(path: &Path, kind: Kind) -> Result<Vec<u8>, FileError> {
    read_with(path, kind, false)
}

/// Like [`read`], but a symbolic link in the last component is refused: for files the
/// daemon itself wrote into `--state.dir`.
pub fn read_nofollow(path: &Path, kind: Kind) -> Result<Vec<u8>, FileError> {
    read_with(path, kind, true)
}

/// Like [`read`], as UTF-8 text; `Err(None)` means the bytes are not UTF-8.
pub fn read_text(path: &Path, kind: Kind) -> Result<String, Option<FileError>> {
    let bytes = read(path, kind).map_err(Some)?;
    String::from_utf8(bytes).map_err(|_| None)
}

fn read_with(path: &Path, kind: Kind, nofollow: bool) -> Result<Vec<u8>, FileError> {
    let mut flags = libc::O_NONBLOCK | libc::O_NOCTTY | libc::O_CLOEXEC;
    if nofollow {
        flags |= libc::O_NOFOLLOW;
    }
    let file = std::fs::OpenOptions::new()
        .read(true)
        .custom_flags(flags)
        .open(path)
        .map_err(|e| FileError::from_io(&e))?;
    let meta = file.metadata().map_err(|e| FileError::from_io(&e))?;
    let ft = meta.file_type();
    if !ft.is_file() {
        return Err(FileError::NotRegular(if ft.is_dir() {
            "a directory"
        } else if ft.is_fifo() {
            "a FIFO"
        } else if ft.is_char_device() {
            "a character device"
        } else if ft.is_block_device() {
            "a block device"
        } else if ft.is_socket() {
            "a socket"
        } else {
            "not a regular file"
        }));
    }
    let too_large = FileError::TooLarge {
        what: kind.what,
        max: kind.max_bytes,
    };
    if meta.len() > kind.max_bytes {
        return Err(too_large);
    }
    // The file may grow between fstat and read: never read past the cap.
    let mut buf = Vec::with_capacity(meta.len() as usize);
    file.take(kind.max_bytes + 1)
        .read_to_end(&mut buf)
        .map_err(|e| FileError::from_io(&e))?;
    if buf.len() as u64 > kind.max_bytes {
        return Err(too_large);
    }
    Ok(buf)
}

#[cfg(test)]
mod tests {
    use super::*;

    const SMALL: Kind = Kind {
        what: "test file",
        max_bytes: 8,
    };

    #[test]
    fn regular_files_within_the_cap_are_read() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("f");
        std::fs::write(&p, b"12345678").unwrap();
        assert_eq!(read(&p, SMALL).unwrap(), b"12345678");
        std::fs::write(&p, b"123456789").unwrap();
        let e = read(&p, SMALL).unwrap_err();
        assert_eq!(
            e.to_string(),
            "is larger than 8 bytes, the limit for a test file"
        );
    }

    #[test]
    fn devices_fifos_and_directories_are_refused_without_blocking() {
        let dir = tempfile::tempdir().unwrap();
        assert_eq!(
            read(Path::new("/dev/zero"), SMALL),
            Err(FileError::NotRegular("a character device"))
        );
        assert_eq!(
            read(dir.path(), SMALL),
            Err(FileError::NotRegular("a directory"))
        );
        let fifo = dir.path().join("fifo");
        let c = std::ffi::CString::new(fifo.to_str().unwrap()).unwrap();
        assert_eq!(unsafe { libc::mkfifo(c.as_ptr(), 0o600) }, 0);
        assert_eq!(read(&fifo, SMALL), Err(FileError::NotRegular("a FIFO")));
        assert_eq!(
            read(&dir.path().join("none"), SMALL),
            Err(FileError::NotFound)
        );
    }

    #[test]
    fn nofollow_refuses_links_and_read_follows_them() {
        let dir = tempfile::tempdir().unwrap();
        let target = dir.path().join("t");
        std::fs::write(&target, b"x").unwrap();
        let link = dir.path().join("l");
        std::os::unix::fs::symlink(&target, &link).unwrap();
        assert_eq!(read(&link, SMALL).unwrap(), b"x");
        assert_eq!(read_nofollow(&link, SMALL), Err(FileError::Symlink));
    }
}
