//! Collecting located errors, and "did you mean" suggestions.
//!
//! Every stage of the config pipeline reports through [`Diag`], so each error gets the
//! same `file:line:column: key: message` shape, and a stage can keep going after an
//! error: users fix a config faster when they see all its problems at once.

use serde_saphyr::Location;

use super::ConfigError;

/// The errors found so far in one file.
pub(super) struct Diag {
    file: String,
    pub(super) errors: Vec<ConfigError>,
}

impl Diag {
    pub(super) fn new(file: String) -> Diag {
        Diag {
            file,
            errors: Vec::new(),
        }
    }

    /// Records an error at `loc` (a `Spanned`'s `referenced` location).
    pub(super) fn at(
        &mut self,
        loc: &Location,
        key: impl Into<String>,
        message: impl Into<String>,
    ) {
        self.at_pos(loc.line(), loc.column(), key, message);
    }

    pub(super) fn at_pos(
        &mut self,
        line: u64,
        column: u64,
        key: impl Into<String>,
        message: impl Into<String>,
    ) {
        self.errors.push(ConfigError {
            file: self.file.clone(),
            line,
            column,
            key: key.into(),
            message: message.into(),
        });
    }

    pub(super) fn is_empty(&self) -> bool {
        self.errors.is_empty()
    }

    /// The errors in file order (stages find them in different orders).
    pub(super) fn into_sorted(mut self) -> Vec<ConfigError> {
        self.errors.sort_by_key(|e| (e.line, e.column));
        self.errors
    }
}

/// The candidate closest to `word`, if it is close enough to be a plausible typo.
pub(super) fn suggest<'a>(
    word: &str,
    candidates: impl IntoIterator<Item = &'a str>,
) -> Option<&'a str> {
    let w = word.to_ascii_lowercase();
    // Up to one edit per three characters, at least one: `prot` → `port`, `intervall` →
    // `interval`, but not `to` → `tls`.
    let len = w.chars().count();
    let limit = (len / 3).max(1);
    // The distance is at least the difference in length, so a word far longer than any
    // candidate is no typo of one: skipping it keeps a 30 MB key from costing a
    // 30 MB x 20 table per candidate (found by tests/fuzz.rs).
    candidates
        .into_iter()
        .filter(|c| len.abs_diff(c.chars().count()) <= limit)
        .map(|c| (distance(&w, c), c))
        .filter(|(d, _)| *d <= limit)
        .min_by_key(|(d, _)| *d)
        .map(|(_, c)| c)
}

/// Optimal string alignment distance: Levenshtein plus adjacent transpositions, the
/// commonest typo (`prot` for `port` is one edit, not two).
fn distance(a: &str, b: &str) -> usize {
    let a: Vec<char> = a.chars().collect();
    let b: Vec<char> = b.chars().collect();
    let (n, m) = (a.len(), b.len());
    let mut d = vec![vec![0usize; m + 1]; n + 1];
    for (i, row) in d.iter_mut().enumerate() {
        row[0] = i;
    }
    for (j, cell) in d[0].iter_mut().enumerate() {
        *cell = j;
    }
    for i in 1..=n {
        for j in 1..=m {
            let cost = usize::from(a[i - 1] != b[j - 1]);
            let mut v = (d[i - 1][j] + 1)
                .min(d[i][j - 1] + 1)
                .min(d[i - 1][j - 1] + cost);
            if i > 1 && j > 1 && a[i - 1] == b[j - 2] && a[i - 2] == b[j - 1] {
                v = v.min(d[i - 2][j - 2] + 1);
            }
            d[i][j] = v;
        }
    }
    d[n][m]
}

/// `unknown X \`v\`; did you mean \`w\`?` with the list of choices when nothing is close.
pub(super) fn unknown_choice(what: &str, value: &str, choices: &[&str]) -> String {
    // Escaped like every other value quoted back: a control character from the file
    // must not reach a terminal or a log line (found by tests/fuzz.rs).
    let shown = value.escape_debug();
    match suggest(value, choices.iter().copied()) {
        Some(s) => format!("unknown {what} `{shown}`; did you mean `{s}`?"),
        None => format!(
            "unknown {what} `{shown}`; expected one of {}",
            choices.join(", ")
        ),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn distances() {
        assert_eq!(distance("prot", "port"), 1);
        assert_eq!(distance("intervall", "interval"), 1);
        assert_eq!(distance("kitten", "sitting"), 3);
        assert_eq!(distance("", "abc"), 3);
    }

    #[test]
    fn suggestions() {
        let keys = ["interval", "timeout", "helo_name"];
        assert_eq!(suggest("intervall", keys), Some("interval"));
        assert_eq!(suggest("Timeout", keys), Some("timeout"));
        assert_eq!(suggest("helo", keys), None);
        assert_eq!(suggest("xyz", keys), None);
        assert_eq!(suggest(&"interval".repeat(100_000), keys), None);
        assert_eq!(
            unknown_choice("security", "startls", &["starttls", "tls", "none"]),
            "unknown security `startls`; did you mean `starttls`?"
        );
        assert_eq!(
            unknown_choice("security", "tls\x1b[2J", &["starttls", "tls", "none"]),
            "unknown security `tls\\u{1b}[2J`; expected one of starttls, tls, none"
        );
        assert_eq!(
            unknown_choice(
                "grant",
                "password",
                &["client_credentials", "refresh_token"]
            ),
            "unknown grant `password`; expected one of client_credentials, refresh_token"
        );
    }
}
