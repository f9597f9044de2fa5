//! Scrubbing secrets out of text that came from outside: a server that echoes the AUTH
//! line it rejected (`500 5.5.2 ... AUTH PLAIN AHVzZXIAcGFzcw==`), quotes the password
//! it decoded, wraps the token in a base64 JSON challenge, or cuts a payload over two
//! reply lines; a certificate whose name is someone's password.
//!
//! A [`Redactor`] is built from the secrets a caller holds ([`Redactor::secret`]) and
//! the framings that carry them ([`Redactor::exact`]). Each secret is matched in every
//! form it can take on the way back: as is, in base64 at any of the three byte
//! alignments (an echo of a larger payload), form-encoded, and escaped as Rust debug
//! output escapes it. Every whole occurrence is replaced; so is every run of
//! [`FRAGMENT`] or more characters of a form (a secret quoted in part), a tail of a line
//! that is the start of a form (a line cut short), and, across lines, a secret split
//! between the end of one line and the start of the next (then both lines go).

use std::borrow::Cow;

use base64::Engine;
use base64::engine::general_purpose::STANDARD_NO_PAD as B64;

/// What a secret is replaced with.
pub const REDACTED: &str = "<redacted>";

/// The shortest piece of a secret that is scrubbed on its own. Shorter pieces (a few
/// base64 characters) would match innocent text; a whole secret of any length is
/// always scrubbed.
pub const FRAGMENT: usize = 12;

/// The shortest start of a secret that is scrubbed at the end of a line (a reply or an
/// error message cut to a length limit).
const CUT_TAIL: usize = 4;

/// The secrets of one caller, ready to scrub text with.
#[derive(Debug, Clone, Default)]
pub struct Redactor {
    /// Whole forms, longest first (so a payload goes before a part of it).
    whole: Vec<String>,
    /// The hash of every FRAGMENT-byte window of every secret form, sorted for a binary
    /// search (a collision only redacts a little more; it never lets a secret through).
    fragments: Vec<u64>,
    /// Forms whose starts are scrubbed at the end of a line.
    heads: Vec<String>,
}

impl Redactor {
    pub fn new() -> Redactor {
        Redactor::default()
    }

    /// Adds a secret in all its forms. Empty strings are ignored.
    pub fn secret(mut self, s: &str) -> Redactor {
        if s.is_empty() {
            return self;
        }
        let mut forms = vec![s.to_owned(), B64.encode(s)];
        // base64 of a payload that holds the secret at byte offset 1 or 2 (mod 3): the
        // characters that depend on the secret alone, without the first and last ones
        // that mix in the neighbouring bytes.
        for shift in 1..=2usize {
            let mut bytes = vec![0u8; shift];
            bytes.extend_from_slice(s.as_bytes());
            let enc = B64.encode(&bytes);
            let skip = shift + 1;
            if enc.len() > skip + 1 {
                forms.push(enc[skip..enc.len() - 1].to_owned());
            }
        }
        let escaped = s.escape_debug().to_string();
        if escaped != s {
            forms.push(escaped);
        }
        let encoded = form_encode(s);
        if encoded != s {
            forms.push(encoded);
        }
        for f in forms {
            self.fragments
                .extend(f.as_bytes().windows(FRAGMENT).map(window_hash));
            if f.len() >= CUT_TAIL {
                self.heads.push(f.clone());
            }
            self.push_whole(f);
        }
        self.fragments.sort_unstable();
        self.fragments.dedup();
        self
    }

    /// Adds a framing that carries a secret along with text that is not secret (the PLAIN
    /// payload holds the user name too), matched whole, in itself and in base64.
    pub fn exact(mut self, s: &str) -> Redactor {
        if !s.is_empty() {
            self.push_whole(s.to_owned());
            self.push_whole(B64.encode(s));
        }
        self
    }

    /// Adds the base64 of `s` (but not `s`): a client line that encodes text which is
    /// not secret by itself, such as the LOGIN user name.
    pub fn exact_base64(mut self, s: &str) -> Redactor {
        if !s.is_empty() {
            self.push_whole(B64.encode(s));
        }
        self
    }

    fn push_whole(&mut self, f: String) {
        if !f.is_empty() && !self.whole.contains(&f) {
            self.whole.push(f);
            self.whole.sort_by_key(|s| std::cmp::Reverse(s.len()));
        }
    }

    pub fn is_empty(&self) -> bool {
        self.whole.is_empty()
    }

    /// `text` with every secret, and every long enough piece of one, replaced. A text of
    /// several lines (a multi-line reply) is scrubbed as [`Redactor::scrub_lines`] does.
    pub fn scrub<'a>(&self, text: &'a str) -> Cow<'a, str> {
        if self.whole.is_empty() {
            return Cow::Borrowed(text);
        }
        if text.contains('\n') {
            let mut lines: Vec<String> = text.split('\n').map(str::to_owned).collect();
            self.scrub_lines(&mut lines);
            let joined = lines.join("\n");
            return if joined == text {
                Cow::Borrowed(text)
            } else {
                Cow::Owned(joined)
            };
        }
        self.scrub_line(text)
    }

    /// Scrubs `s` in place.
    pub fn scrub_in_place(&self, s: &mut String) {
        if let Cow::Owned(clean) = self.scrub(s) {
            *s = clean;
        }
    }

    /// Scrubs each line, and looks across them: a secret that runs from the end of one
    /// line into the next (after the next one's reply code) takes both lines with it.
    /// The look across comes first, on the lines as they came, so that scrubbing a piece
    /// in one line cannot hide the whole.
    pub fn scrub_lines(&self, lines: &mut [String]) {
        if self.whole.is_empty() {
            return;
        }
        // The text of every line after its reply code, end to end, and which line each
        // byte came from.
        let mut joined = String::new();
        let mut owner = Vec::new();
        for (i, l) in lines.iter().enumerate() {
            let body = reply_text(l);
            joined.push_str(body);
            owner.extend(std::iter::repeat_n(i, body.len()));
        }
        let mut wipe = vec![false; lines.len()];
        for f in &self.whole {
            for (at, _) in joined.match_indices(f.as_str()) {
                let (first, last) = (owner[at], owner[at + f.len() - 1]);
                if first != last {
                    wipe[first..=last].iter_mut().for_each(|w| *w = true);
                }
            }
        }
        for (l, w) in lines.iter_mut().zip(wipe) {
            if w {
                *l = REDACTED.to_owned();
            } else if let Cow::Owned(clean) = self.scrub_line(l) {
                *l = clean;
            }
        }
    }

    fn scrub_line<'a>(&self, text: &'a str) -> Cow<'a, str> {
        let mut out = Cow::Borrowed(text);
        for s in &self.whole {
            if out.contains(s.as_str()) {
                out = Cow::Owned(out.replace(s.as_str(), REDACTED));
            }
        }
        // Every window that is part of a secret gives a covered range; overlapping
        // ranges merge, and each is widened to character boundaries and replaced once.
        let text: &str = &out;
        let mut runs: Vec<(usize, usize)> = Vec::new();
        if text.len() >= FRAGMENT {
            for (i, w) in text.as_bytes().windows(FRAGMENT).enumerate() {
                if self.fragments.binary_search(&window_hash(w)).is_err() {
                    continue;
                }
                push_run(&mut runs, text, i, i + FRAGMENT);
            }
        }
        // A line cut short in the middle of a secret: its end is the start of a form.
        // Only lengths whose last byte matches the line's are compared in full.
        if let Some(&last) = text.as_bytes().last() {
            let cut = self
                .heads
                .iter()
                .filter_map(|h| {
                    let hb = h.as_bytes();
                    (CUT_TAIL..hb.len()).rev().find(|&n| {
                        hb[n - 1] == last && h.is_char_boundary(n) && text.ends_with(&h[..n])
                    })
                })
                .max();
            if let Some(cut) = cut {
                push_run(&mut runs, text, text.len() - cut, text.len());
            }
        }
        if runs.is_empty() {
            return out;
        }
        runs.sort_unstable();
        let mut merged: Vec<(usize, usize)> = Vec::with_capacity(runs.len());
        for (start, end) in runs {
            match merged.last_mut() {
                Some(last) if start <= last.1 => last.1 = last.1.max(end),
                _ => merged.push((start, end)),
            }
        }
        let mut result = String::with_capacity(text.len());
        let mut at = 0;
        for (start, end) in merged {
            result.push_str(&text[at..start]);
            result.push_str(REDACTED);
            at = end;
        }
        result.push_str(&text[at..]);
        Cow::Owned(result)
    }
}

/// FNV-1a of a window: cheap, and no allocation per window.
fn window_hash(w: &[u8]) -> u64 {
    w.iter().fold(0xcbf2_9ce4_8422_2325, |h, b| {
        (h ^ u64::from(*b)).wrapping_mul(0x0100_0000_01b3)
    })
}

/// Adds `[start, end)` widened to character boundaries.
fn push_run(runs: &mut Vec<(usize, usize)>, text: &str, mut start: usize, mut end: usize) {
    while !text.is_char_boundary(start) {
        start -= 1;
    }
    while !text.is_char_boundary(end) {
        end += 1;
    }
    runs.push((start, end));
}

/// A line's text after its SMTP reply code and enhanced status code, if it has them
/// (`535-5.7.8 rest` -> `rest`), so a secret cut over two reply lines joins up.
fn reply_text(line: &str) -> &str {
    let b = line.as_bytes();
    let mut rest = line;
    if b.len() >= 4 && b[..3].iter().all(u8::is_ascii_digit) && matches!(b[3], b' ' | b'-') {
        rest = &line[4..];
    }
    if let Some((code, after)) = rest.split_once(' ')
        && code.split('.').count() == 3
        && code
            .split('.')
            .all(|p| !p.is_empty() && p.bytes().all(|c| c.is_ascii_digit()))
    {
        rest = after;
    }
    rest
}

/// `application/x-www-form-urlencoded`, as the secret travels to a token endpoint.
fn form_encode(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for b in s.bytes() {
        match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'.' | b'_' | b'*' => {
                out.push(b as char)
            }
            b' ' => out.push('+'),
            _ => out.push_str(&format!("%{b:02X}")),
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use base64::engine::general_purpose::STANDARD;

    fn r() -> Redactor {
        Redactor::new()
            .secret("hunter2")
            .exact("\0alice\0hunter2")
            .secret("dGhpcy1pcy1hLWxvbmctdG9rZW4")
    }

    #[test]
    fn whole_secrets_and_their_pieces_are_scrubbed() {
        let r = r();
        assert_eq!(r.scrub("535 bad hunter2"), "535 bad <redacted>");
        let payload = STANDARD.encode("\0alice\0hunter2");
        assert_eq!(
            r.scrub(&format!("500 AUTH PLAIN {payload} ?")),
            "500 AUTH PLAIN <redacted>= ?"
        );
        // A token cut by a line break: both lines go; a long piece alone goes too.
        assert_eq!(
            r.scrub("334 dGhpcy1pcy1h\n334 LWxvbmctdG9rZW4 end"),
            "<redacted>\n<redacted>"
        );
        assert_eq!(r.scrub("334 x LWxvbmctdG9rZW4 end"), "334 x <redacted> end");
        assert_eq!(r.scrub("250 OK"), "250 OK");
        assert!(matches!(r.scrub("250 OK"), Cow::Borrowed(_)));
    }

    #[test]
    fn a_short_secret_split_over_reply_lines_takes_both_lines() {
        let r = r();
        assert_eq!(
            r.scrub("535-5.7.8 you sent hun\n535 5.7.8 ter2 which is wrong\n535 bye"),
            "<redacted>\n<redacted>\n535 bye"
        );
    }

    #[test]
    fn base64_at_any_alignment_escaped_and_cut_forms_are_scrubbed() {
        let token = "tok-ABCDEFGHIJKLMNOPQRSTUVWXYZ";
        let r = Redactor::new().secret(token).secret("pa\"ss wd1");
        for prefix in ["", "x", "xy", r#"{"status":"401","token":""#] {
            let wrapped = STANDARD.encode(format!("{prefix}{token}\"}}"));
            let line = format!("334 {wrapped}");
            let out = r.scrub(&line);
            let decoded = STANDARD
                .decode(out.trim_start_matches("334 "))
                .unwrap_or_default();
            assert!(
                !String::from_utf8_lossy(&decoded).contains("ABCDEFGHIJKL"),
                "{prefix:?}: {out}"
            );
            assert!(out.contains(REDACTED), "{prefix:?}: {out}");
        }
        assert_eq!(
            r.scrub(r#"bad line "pa\"ss wd1""#),
            r#"bad line "<redacted>""#
        );
        assert_eq!(r.scrub("secret=pa%22ss+wd1&x"), "secret=<redacted>&x");
        // Cut at a length limit in the middle of the secret.
        assert_eq!(r.scrub("line ends in tok-ABC"), "line ends in <redacted>");
    }

    #[test]
    fn multibyte_text_around_a_secret_stays_valid() {
        let r = Redactor::new().secret("abcdefghijklmnop");
        let s = r.scrub("é abcdefghijklmnopé ü");
        assert_eq!(s, "é <redacted>é ü");
        let s = r.scrub("ébcdefghijklmnopé");
        assert!(!s.contains("bcdefghijklmnop"), "{s}");
    }
}
