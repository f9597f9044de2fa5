//! Key paths: the dotted name of a key in the document, as errors show it
//! (`mailboxes[1].oauth2.tenant`).
//!
//! Validation builds every path through [`KeyPath`], so the spelling (dots between keys,
//! brackets around indexes) is decided once and a typo in a key name cannot hide in a
//! format string.

use std::fmt;

/// A path from the document root to one key or list entry.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) struct KeyPath(String);

impl KeyPath {
    /// A top-level key: `mailboxes`, `global`, `dns_audit`.
    pub(super) fn root(key: &str) -> KeyPath {
        KeyPath(key.to_string())
    }

    /// The key `key` of the mapping at this path.
    pub(super) fn key(&self, key: &str) -> KeyPath {
        KeyPath(format!("{}.{key}", self.0))
    }

    /// Entry `i` (from 0) of the list at this path.
    pub(super) fn index(&self, i: usize) -> KeyPath {
        KeyPath(format!("{}[{i}]", self.0))
    }
}

impl fmt::Display for KeyPath {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl From<&KeyPath> for String {
    fn from(p: &KeyPath) -> String {
        p.0.clone()
    }
}

#[cfg(test)]
mod tests {
    use super::KeyPath;

    #[test]
    fn spelled_like_the_error_messages() {
        let mb = KeyPath::root("mailboxes").index(1);
        assert_eq!(mb.to_string(), "mailboxes[1]");
        assert_eq!(mb.key("port").to_string(), "mailboxes[1].port");
        assert_eq!(
            mb.key("limits").key("messages_per_day").to_string(),
            "mailboxes[1].limits.messages_per_day"
        );
        assert_eq!(mb.key("to").index(0).to_string(), "mailboxes[1].to[0]");
        assert_eq!(String::from(&KeyPath::root("global")), "global");
    }
}
