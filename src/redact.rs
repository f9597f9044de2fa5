//! Scrubbing secrets out of text that came from outside: a server that echoes the AUTH
//! line it rejected (`500 5.5.2 ... AUTH PLAIN AHVzZXIAcGFzcw==`), a certificate whose
//! name is someone's password, a reply that wraps a long XOAUTH2 payload over two lines.
//!
//! A [`Redactor`] holds every form of every secret a probe carries (the caller lists
//! them: the password and its base64, the SASL payloads, the token). It replaces each
//! whole occurrence, and also every run of [`FRAGMENT`] or more characters that is part
//! of one, so a secret cut by a line break or quoted in part is still not shown.

use std::borrow::Cow;
use std::collections::HashSet;

/// What a secret is replaced with.
pub const REDACTED: &str = "<redacted>";

/// The shortest piece of a secret that is scrubbed on its own. Shorter pieces (a few
/// base64 characters) would match innocent text; a whole secret of any length is
/// always scrubbed.
pub const FRAGMENT: usize = 12;

/// The secrets of one probe, ready to scrub text with.
#[derive(Debug, Clone, Default)]
pub struct Redactor {
    /// Whole secrets, longest first (so a payload is replaced before a part of it).
    whole: Vec<String>,
    /// Every FRAGMENT-byte window of every secret.
    fragments: HashSet<Vec<u8>>,
}

impl Redactor {
    /// A redactor for these secret forms; empty strings are ignored.
    pub fn new<I, S>(forms: I) -> Redactor
    where
        I: IntoIterator<Item = S>,
        S: Into<String>,
    {
        let mut whole: Vec<String> = forms
            .into_iter()
            .map(Into::into)
            .filter(|s| !s.is_empty())
            .collect();
        whole.sort_by_key(|s| std::cmp::Reverse(s.len()));
        whole.dedup();
        let fragments = whole
            .iter()
            .flat_map(|s| s.as_bytes().windows(FRAGMENT).map(<[u8]>::to_vec))
            .collect();
        Redactor { whole, fragments }
    }

    pub fn is_empty(&self) -> bool {
        self.whole.is_empty()
    }

    /// `text` with every secret, and every long enough piece of one, replaced.
    pub fn scrub<'a>(&self, text: &'a str) -> Cow<'a, str> {
        if self.whole.is_empty() {
            return Cow::Borrowed(text);
        }
        let mut out = Cow::Borrowed(text);
        for s in &self.whole {
            if out.contains(s.as_str()) {
                out = Cow::Owned(out.replace(s.as_str(), REDACTED));
            }
        }
        if out.len() < FRAGMENT || self.fragments.is_empty() {
            return out;
        }
        // Every window that is part of a secret gives a covered range; overlapping
        // ranges merge, and each is widened to character boundaries and replaced once.
        let text: &str = &out;
        let mut runs: Vec<(usize, usize)> = Vec::new();
        for (i, w) in text.as_bytes().windows(FRAGMENT).enumerate() {
            if !self.fragments.contains(w) {
                continue;
            }
            let (mut start, mut end) = (i, i + FRAGMENT);
            while !text.is_char_boundary(start) {
                start -= 1;
            }
            while !text.is_char_boundary(end) {
                end += 1;
            }
            match runs.last_mut() {
                Some(last) if start <= last.1 => last.1 = last.1.max(end),
                _ => runs.push((start, end)),
            }
        }
        if runs.is_empty() {
            return out;
        }
        let mut result = String::with_capacity(text.len());
        let mut at = 0;
        for (start, end) in runs {
            result.push_str(&text[at..start]);
            result.push_str(REDACTED);
            at = end;
        }
        result.push_str(&text[at..]);
        Cow::Owned(result)
    }

    /// Scrubs `s` in place.
    pub fn scrub_in_place(&self, s: &mut String) {
        if let Cow::Owned(clean) = self.scrub(s) {
            *s = clean;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn whole_secrets_and_their_pieces_are_scrubbed() {
        let r = Redactor::new([
            "hunter2",
            "AGFsaWNlAGh1bnRlcjI=",
            "dGhpcy1pcy1hLWxvbmctdG9rZW4",
        ]);
        assert_eq!(r.scrub("535 bad hunter2"), "535 bad <redacted>");
        assert_eq!(
            r.scrub("500 AUTH PLAIN AGFsaWNlAGh1bnRlcjI= ?"),
            "500 AUTH PLAIN <redacted> ?"
        );
        // A token cut by a line break: both halves are long enough pieces.
        assert_eq!(
            r.scrub("334 dGhpcy1pcy1h\n334 LWxvbmctdG9rZW4 end"),
            "334 <redacted>\n334 <redacted> end"
        );
        assert_eq!(r.scrub("250 OK"), "250 OK");
        assert!(matches!(r.scrub("250 OK"), Cow::Borrowed(_)));
    }

    #[test]
    fn multibyte_text_around_a_secret_stays_valid() {
        let r = Redactor::new(["abcdefghijklmnop"]);
        let s = r.scrub("é abcdefghijklmnopé ü");
        assert_eq!(s, "é <redacted>é ü");
        let s = r.scrub("ébcdefghijklmnopé");
        assert!(!s.contains("bcdefghijklmnop"), "{s}");
    }
}
