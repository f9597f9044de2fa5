//! Secrets: values that must never be printed. `Debug` and `Display` redact them.
//!
//! This file also owns *loading* secrets from `*_env` / `*_file` keys. The config never
//! holds a secret inline, so an error here can name the variable or the file but has
//! no secret value to leak: the loaders never put the content they read into a message.

use std::fmt;
use std::path::Path;

/// A secret string (password, client secret, token). Read it only with [`Secret::expose`].
#[derive(Clone, PartialEq, Eq)]
pub struct Secret(String);

impl Secret {
    pub fn new(s: impl Into<String>) -> Secret {
        Secret(s.into())
    }

    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl fmt::Debug for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Secret(<redacted>)")
    }
}

impl fmt::Display for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("<redacted>")
    }
}

/// How environment variables are read; a parameter so tests need no process-wide
/// `set_var` (unsafe and racy under the parallel test runner).
pub(crate) type EnvLookup<'a> = &'a dyn Fn(&str) -> Result<String, std::env::VarError>;

/// Why a secret could not be loaded. Messages name the variable or file, never content.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub(crate) enum SecretError {
    /// The `_env` value is not a variable name. It is not echoed: someone who put the
    /// secret itself into `password_env` must not see it printed back into logs.
    #[error(
        "this must name an environment variable (letters, digits and `_`, not starting with a digit); the value is not shown in case it is the secret itself"
    )]
    BadName,
    #[error("environment variable {0} is not set")]
    EnvMissing(String),
    #[error("environment variable {0} is empty")]
    EnvEmpty(String),
    #[error("environment variable {0} is not valid UTF-8")]
    EnvNotUnicode(String),
    #[error("cannot read secret file {path}: {reason}")]
    FileUnreadable { path: String, reason: String },
    #[error("secret file {0} is empty")]
    FileEmpty(String),
    #[error("secret file {0} is not valid UTF-8")]
    FileNotUnicode(String),
}

/// Whether `name` is a conventional environment variable name.
fn is_env_name(name: &str) -> bool {
    let mut chars = name.chars();
    matches!(chars.next(), Some(c) if c.is_ascii_alphabetic() || c == '_')
        && chars.all(|c| c.is_ascii_alphanumeric() || c == '_')
}

/// Reads a secret from the environment variable `name`; it must be set and non-empty.
pub(crate) fn from_env(name: &str, env: EnvLookup<'_>) -> Result<Secret, SecretError> {
    if !is_env_name(name) {
        return Err(SecretError::BadName);
    }
    match env(name) {
        Ok(v) if v.is_empty() => Err(SecretError::EnvEmpty(name.to_string())),
        Ok(v) => Ok(Secret(v)),
        Err(std::env::VarError::NotPresent) => Err(SecretError::EnvMissing(name.to_string())),
        Err(std::env::VarError::NotUnicode(_)) => Err(SecretError::EnvNotUnicode(name.to_string())),
    }
}

/// Reads a secret from the file at `path`, minus one trailing newline (what `echo` and
/// most editors add, and what Kubernetes secret mounts usually do not).
pub(crate) fn from_file(path: &Path) -> Result<Secret, SecretError> {
    let shown = path.display().to_string();
    let bytes = crate::fsutil::read(path, crate::fsutil::SECRET).map_err(|e| {
        SecretError::FileUnreadable {
            path: shown.clone(),
            reason: e.to_string(),
        }
    })?;
    // Not `FromUtf8Error`'s message: it is harmless today, but nothing derived from the
    // content goes into a message.
    let mut text =
        String::from_utf8(bytes).map_err(|_| SecretError::FileNotUnicode(shown.clone()))?;
    if text.ends_with("\r\n") {
        text.truncate(text.len() - 2);
    } else if text.ends_with('\n') {
        text.truncate(text.len() - 1);
    }
    if text.is_empty() {
        return Err(SecretError::FileEmpty(shown));
    }
    Ok(Secret(text))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn secret_is_redacted() {
        let s = Secret::new("hunter2");
        assert_eq!(format!("{s} {s:?}"), "<redacted> Secret(<redacted>)");
        assert_eq!(s.expose(), "hunter2");
    }

    #[test]
    fn env_rules() {
        let env = |k: &str| match k {
            "SET" => Ok("v".to_string()),
            "EMPTY" => Ok(String::new()),
            _ => Err(std::env::VarError::NotPresent),
        };
        assert_eq!(
            from_env("SET", &env).map(|s| s.expose().to_string()),
            Ok("v".into())
        );
        assert_eq!(
            from_env("EMPTY", &env),
            Err(SecretError::EnvEmpty("EMPTY".into()))
        );
        assert_eq!(
            from_env("NOPE", &env),
            Err(SecretError::EnvMissing("NOPE".into()))
        );
        let e = from_env("correct horse battery", &env).unwrap_err();
        assert_eq!(e, SecretError::BadName);
        assert!(!e.to_string().contains("horse"));
    }

    #[test]
    fn file_rules() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("pw");
        std::fs::write(&p, "s3cret\n\n").unwrap();
        // Only one newline is trimmed: a secret may legitimately end in whitespace.
        assert_eq!(from_file(&p).unwrap().expose(), "s3cret\n");
        std::fs::write(&p, "s3cret\r\n").unwrap();
        assert_eq!(from_file(&p).unwrap().expose(), "s3cret");
        std::fs::write(&p, "\n").unwrap();
        assert!(matches!(from_file(&p), Err(SecretError::FileEmpty(_))));
        std::fs::write(&p, [0xff, 0xfe]).unwrap();
        assert!(matches!(from_file(&p), Err(SecretError::FileNotUnicode(_))));
        let missing = dir.path().join("missing");
        let e = from_file(&missing).unwrap_err().to_string();
        assert!(e.contains("missing") && e.contains("no such file"), "{e}");
    }
}
