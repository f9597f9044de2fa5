//! The transcript of one SMTP dialogue, kept for the status page and `probe --format text`.
//! Client lines that carry credentials are recorded as `<redacted>`; the message body is
//! summarised, not copied.

use std::fmt;
use std::time::{Duration, Instant};

use serde::Serialize;

/// Most lines a transcript keeps; a hostile server cannot grow it without bound.
const MAX_ENTRIES: usize = 256;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub enum Direction {
    /// Sent by us.
    #[serde(rename = "C")]
    Client,
    /// Received from the server.
    #[serde(rename = "S")]
    Server,
    /// A note of ours (TLS handshake, connection events).
    #[serde(rename = "*")]
    Note,
}

#[derive(Debug, Clone, Serialize)]
pub struct Entry {
    /// Seconds since the probe started.
    pub at: f64,
    pub dir: Direction,
    pub text: String,
}

#[derive(Debug, Clone, Default, Serialize)]
#[serde(transparent)]
pub struct Transcript {
    entries: Vec<Entry>,
}

impl Transcript {
    pub fn push(&mut self, start: Instant, dir: Direction, text: impl Into<String>) {
        if self.entries.len() >= MAX_ENTRIES {
            return;
        }
        let at = Instant::now().saturating_duration_since(start);
        self.entries.push(Entry {
            at: round_ms(at),
            dir,
            text: text.into(),
        });
    }

    /// Scrubs every entry of the credentials' forms (see [`crate::redact`]).
    pub fn scrub(&mut self, redactor: &crate::redact::Redactor) {
        if redactor.is_empty() {
            return;
        }
        // Line by line and across lines: a secret may be cut over two reply lines.
        let mut texts: Vec<String> = self
            .entries
            .iter_mut()
            .map(|e| std::mem::take(&mut e.text))
            .collect();
        redactor.scrub_lines(&mut texts);
        for (e, t) in self.entries.iter_mut().zip(texts) {
            e.text = t;
        }
    }

    pub fn entries(&self) -> &[Entry] {
        &self.entries
    }
}

fn round_ms(d: Duration) -> f64 {
    (d.as_secs_f64() * 1000.0).round() / 1000.0
}

impl fmt::Display for Transcript {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for e in &self.entries {
            let arrow = match e.dir {
                Direction::Client => "C:",
                Direction::Server => "S:",
                Direction::Note => "  *",
            };
            writeln!(f, "{:>8.3}s {arrow} {}", e.at, e.text)?;
        }
        Ok(())
    }
}
