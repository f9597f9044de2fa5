//! SMTP replies: parsing a (possibly multi-line) reply and reading one from the wire with
//! hard bounds, so a hostile server can neither make us buffer megabytes nor hang us.

use std::fmt;

use tokio::io::{AsyncBufRead, AsyncBufReadExt};

/// Longest reply line we accept. RFC 5321 allows 512 octets; real servers stay well under
/// 1 KiB. Anything longer is a protocol error, detected without buffering the rest.
pub const MAX_LINE: usize = 4096;
/// Most lines one reply may have (a long EHLO list is ~20).
pub const MAX_LINES: usize = 128;

/// An enhanced status code (RFC 3463), e.g. `5.7.139`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Enhanced {
    pub class: u8,
    pub subject: u16,
    pub detail: u16,
}

impl Enhanced {
    /// Parses `x.y.z` at the start of `text`, followed by a space or the end.
    pub fn parse_prefix(text: &str) -> Option<Enhanced> {
        let token = text.split_ascii_whitespace().next()?;
        let mut it = token.split('.');
        let class: u8 = it.next()?.parse().ok()?;
        let subject: u16 = it.next()?.parse().ok()?;
        let detail: u16 = it.next()?.parse().ok()?;
        if it.next().is_some() || !matches!(class, 2 | 4 | 5) || subject > 999 || detail > 999 {
            return None;
        }
        Some(Enhanced {
            class,
            subject,
            detail,
        })
    }
}

impl fmt::Display for Enhanced {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}.{}.{}", self.class, self.subject, self.detail)
    }
}

/// A complete server reply.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Reply {
    /// The three-digit reply code.
    pub code: u16,
    /// The text of each line, without the `NNN-`/`NNN ` prefix and without CRLF.
    pub lines: Vec<String>,
}

impl Reply {
    pub fn new(code: u16, text: &str) -> Reply {
        Reply {
            code,
            lines: text.lines().map(str::to_owned).collect(),
        }
    }

    /// The enhanced status code of the first line, if it has one.
    pub fn enhanced(&self) -> Option<Enhanced> {
        self.lines.first().and_then(|l| Enhanced::parse_prefix(l))
    }

    /// All line texts joined by a space: what provider-text matching reads.
    pub fn text(&self) -> String {
        self.lines.join(" ")
    }

    /// The reply as the server sent it (lines joined by `\n`), e.g. `535 5.7.139 ...`.
    pub fn raw(&self) -> String {
        let n = self.lines.len();
        let mut out = String::new();
        for (i, l) in self.lines.iter().enumerate() {
            if i > 0 {
                out.push('\n');
            }
            let sep = if i + 1 == n { ' ' } else { '-' };
            out.push_str(&format!("{}{}{}", self.code, sep, l));
        }
        if n == 0 {
            out = self.code.to_string();
        }
        out
    }

    pub fn is_positive(&self) -> bool {
        (200..400).contains(&self.code)
    }

    /// The contract's `code` label: the enhanced code if present, else the basic code.
    pub fn code_label(&self) -> String {
        match self.enhanced() {
            Some(e) => e.to_string(),
            None => self.code.to_string(),
        }
    }

    /// True when any line's first word is `keyword` (EHLO capability test).
    pub fn has_capability(&self, keyword: &str) -> bool {
        self.capability(keyword).is_some()
    }

    /// The parameters after an EHLO keyword, e.g. `AUTH` -> `["PLAIN", "LOGIN"]`.
    pub fn capability(&self, keyword: &str) -> Option<Vec<&str>> {
        self.lines.iter().skip(1).find_map(|l| {
            let mut words = l.split_ascii_whitespace();
            let first = words.next()?;
            first.eq_ignore_ascii_case(keyword).then(|| words.collect())
        })
    }
}

impl fmt::Display for Reply {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.raw())
    }
}

/// Why a reply could not be read.
#[derive(Debug, thiserror::Error)]
pub enum ReadError {
    #[error("connection closed by server")]
    Eof,
    #[error("i/o error: {0}")]
    Io(#[from] std::io::Error),
    #[error("reply line longer than {MAX_LINE} bytes")]
    LineTooLong,
    #[error("reply with more than {MAX_LINES} lines")]
    TooManyLines,
    #[error("malformed reply line: {0:?}")]
    Malformed(String),
}

/// Reads one line (up to LF) into `out`, never holding more than `MAX_LINE` bytes.
async fn read_line<R: AsyncBufRead + Unpin>(r: &mut R, out: &mut Vec<u8>) -> Result<(), ReadError> {
    out.clear();
    loop {
        let buf = r.fill_buf().await?;
        if buf.is_empty() {
            return Err(ReadError::Eof);
        }
        let (take, done) = match buf.iter().position(|&b| b == b'\n') {
            Some(i) => (i + 1, true),
            None => (buf.len(), false),
        };
        if out.len() + take > MAX_LINE + 2 {
            return Err(ReadError::LineTooLong);
        }
        out.extend_from_slice(&buf[..take]);
        r.consume(take);
        if done {
            while matches!(out.last(), Some(b'\n' | b'\r')) {
                out.pop();
            }
            return Ok(());
        }
    }
}

/// Reads one complete reply. A `NNN-` line continues it; `NNN ` (or a bare `NNN`) ends it.
/// Every line must carry the same code.
pub async fn read_reply<R: AsyncBufRead + Unpin>(r: &mut R) -> Result<Reply, ReadError> {
    let mut buf = Vec::with_capacity(128);
    let mut code = None;
    let mut lines = Vec::new();
    loop {
        read_line(r, &mut buf).await?;
        let line = String::from_utf8_lossy(&buf);
        let bytes = line.as_bytes();
        let digits_ok = bytes.len() >= 3 && bytes[..3].iter().all(u8::is_ascii_digit);
        let sep = bytes.get(3).copied();
        if !digits_ok || !matches!(sep, None | Some(b' ') | Some(b'-')) {
            return Err(ReadError::Malformed(truncate(&line, 80)));
        }
        let this: u16 = line[..3]
            .parse()
            .map_err(|_| ReadError::Malformed(truncate(&line, 80)))?;
        if !(200..600).contains(&this) || code.is_some_and(|c| c != this) {
            return Err(ReadError::Malformed(truncate(&line, 80)));
        }
        code = Some(this);
        lines.push(line.get(4..).unwrap_or("").to_owned());
        if sep != Some(b'-') {
            return Ok(Reply { code: this, lines });
        }
        if lines.len() >= MAX_LINES {
            return Err(ReadError::TooManyLines);
        }
    }
}

fn truncate(s: &str, max: usize) -> String {
    match s.char_indices().nth(max) {
        Some((i, _)) => format!("{}...", &s[..i]),
        None => s.to_owned(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    async fn parse(s: &str) -> Result<Reply, ReadError> {
        let mut r = tokio::io::BufReader::new(s.as_bytes());
        read_reply(&mut r).await
    }

    #[tokio::test]
    async fn multi_line_google_reply() {
        let r = parse("535-5.7.8 Username and Password not accepted. Learn more at\r\n535 5.7.8  https://support.google.com/mail/?p=BadCredentials\r\n").await.unwrap();
        assert_eq!(r.code, 535);
        assert_eq!(r.lines.len(), 2);
        assert_eq!(r.code_label(), "5.7.8");
        assert!(r.raw().starts_with("535-5.7.8 Username"));
    }

    #[tokio::test]
    async fn no_enhanced_code_uses_basic() {
        let r = parse("454 Throttling failure: Maximum sending rate exceeded.\r\n")
            .await
            .unwrap();
        assert_eq!(r.enhanced(), None);
        assert_eq!(r.code_label(), "454");
    }

    #[tokio::test]
    async fn bare_code_line() {
        let r = parse("250\r\n").await.unwrap();
        assert_eq!(r.code, 250);
    }

    #[tokio::test]
    async fn garbage_is_malformed() {
        assert!(matches!(
            parse("HTTP/1.1 400 Bad Request\r\n").await,
            Err(ReadError::Malformed(_))
        ));
        assert!(matches!(
            parse("250-a\r\n251 b\r\n").await,
            Err(ReadError::Malformed(_))
        ));
    }

    #[tokio::test]
    async fn long_line_is_bounded() {
        let long = format!("220 {}\r\n", "x".repeat(MAX_LINE * 10));
        assert!(matches!(parse(&long).await, Err(ReadError::LineTooLong)));
    }

    #[tokio::test]
    async fn eof_mid_reply() {
        assert!(matches!(parse("250-a\r\n").await, Err(ReadError::Eof)));
    }

    #[test]
    fn enhanced_parse() {
        assert_eq!(
            Enhanced::parse_prefix("5.7.139 Auth").unwrap().to_string(),
            "5.7.139"
        );
        assert!(Enhanced::parse_prefix("Auth 5.7.1").is_none());
        assert!(Enhanced::parse_prefix("1.2.3 x").is_none());
    }

    #[test]
    fn capabilities() {
        let r = Reply::new(250, "mail.example\nPIPELINING\nAUTH PLAIN LOGIN\nSTARTTLS");
        assert_eq!(r.capability("auth").unwrap(), vec!["PLAIN", "LOGIN"]);
        assert!(r.has_capability("STARTTLS"));
        assert!(!r.has_capability("mail.example"));
    }
}
