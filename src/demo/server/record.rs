//! Recording: what every connection sent, kept for the tests to assert on.

use super::*;

/// One line the client sent outside DATA: a command or a SASL continuation.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ReceivedLine {
    /// The line without its line end (lossily decoded if it was not UTF-8).
    pub line: String,
    /// Whether TLS was active when the line arrived.
    pub tls: bool,
}

/// Everything one connection did, as seen by the server.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SessionRecord {
    /// 1-based, in accept order.
    pub connection: usize,
    pub peer: SocketAddr,
    pub lines: Vec<ReceivedLine>,
    /// `"TLSv1.2"` or `"TLSv1.3"` once a handshake completed.
    pub tls_version: Option<String>,
    /// The SNI the client sent, if any.
    pub sni: Option<String>,
    /// Why the TLS handshake failed, if it did (e.g. the client refused the certificate).
    pub tls_error: Option<String>,
    /// The username of a successful AUTH.
    pub user: Option<String>,
    /// Whether the connection has ended.
    pub ended: bool,
}

impl SessionRecord {
    /// The text of every recorded line, in order.
    pub fn line_texts(&self) -> Vec<String> {
        self.lines.iter().map(|l| l.line.clone()).collect()
    }

    /// Whether the client sent the command `verb` (case-insensitive), e.g. `"AUTH"`.
    pub fn sent(&self, verb: &str) -> bool {
        self.lines.iter().any(|l| {
            l.line
                .split_ascii_whitespace()
                .next()
                .is_some_and(|v| v.eq_ignore_ascii_case(verb))
        })
    }
}

/// A message the server accepted (its DataEnd reply was `2xx`).
#[derive(Clone, PartialEq, Eq)]
pub struct ReceivedMessage {
    pub connection: usize,
    /// The server-wide message number (see [`Only`]).
    pub number: usize,
    /// The reverse path, without angle brackets (empty for `<>`).
    pub mail_from: String,
    pub rcpt_to: Vec<String>,
    /// The content after dot-unstuffing, line ends as received, final dot line excluded.
    pub data: Vec<u8>,
    /// The authenticated username, if any.
    pub user: Option<String>,
    pub tls: bool,
}

impl ReceivedMessage {
    /// The data as text, lossily decoded.
    pub fn text(&self) -> String {
        String::from_utf8_lossy(&self.data).into_owned()
    }
}

impl fmt::Debug for ReceivedMessage {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ReceivedMessage")
            .field("connection", &self.connection)
            .field("number", &self.number)
            .field("mail_from", &self.mail_from)
            .field("rcpt_to", &self.rcpt_to)
            .field("data_len", &self.data.len())
            .field("user", &self.user)
            .field("tls", &self.tls)
            .finish()
    }
}

/// State shared by the accept loop, the sessions and the handle.
pub(super) struct Shared {
    pub(super) connections: AtomicUsize,
    pub(super) messages: AtomicUsize,
    pub(super) record: Mutex<Record>,
}

/// Bounded so a long-running demo relay does not grow without limit.
pub(super) struct Record {
    pub(super) sessions: VecDeque<SessionRecord>,
    pub(super) messages: VecDeque<ReceivedMessage>,
    pub(super) keep_sessions: usize,
    pub(super) keep_messages: usize,
    pub(super) max_lines: usize,
}

impl Shared {
    pub(super) fn record(&self) -> MutexGuard<'_, Record> {
        // A panic while holding the lock cannot leave a record half-written in a way that
        // matters to tests, so a poisoned lock is still usable.
        self.record.lock().unwrap_or_else(|e| e.into_inner())
    }

    pub(super) fn update(&self, connection: usize, f: impl FnOnce(&mut SessionRecord, usize)) {
        let mut record = self.record();
        let max_lines = record.max_lines;
        if let Some(s) = record
            .sessions
            .iter_mut()
            .rev()
            .find(|s| s.connection == connection)
        {
            f(s, max_lines);
        }
    }
}
