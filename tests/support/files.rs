//! Files the tests write: configs, secrets, and the files that are not regular or are
//! too large, which the daemon must refuse by name.

use std::path::{Path, PathBuf};

/// Writes `text` to `path`; returns the path.
pub fn write(path: &Path, text: &str) -> PathBuf {
    std::fs::write(path, text).unwrap_or_else(|e| panic!("write {}: {e}", path.display()));
    path.to_path_buf()
}

/// A FIFO at `path`: opening it for reading blocks until a writer comes.
pub fn mkfifo(path: &Path) {
    let c = std::ffi::CString::new(path.to_str().expect("utf-8 path")).expect("path");
    // SAFETY: a valid NUL-terminated path.
    assert_eq!(unsafe { libc::mkfifo(c.as_ptr(), 0o600) }, 0, "mkfifo");
}

/// A sparse file of `len` bytes at `path`: as large as a test needs, costing nothing on
/// disk.
pub fn sparse(path: &Path, len: u64) {
    std::fs::File::create(path)
        .and_then(|f| f.set_len(len))
        .expect("sparse file");
}
