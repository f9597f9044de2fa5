//! Scripting: the stages of a session, the actions a script can take at each, and
//! the rules that say when.

use super::*;

/// A point in the session where a [`Script`] can take over the server's reply.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Stage {
    /// The banner, sent right after connect (after the handshake in implicit TLS mode).
    Greeting,
    /// The reply to EHLO (and HELO).
    Ehlo,
    /// The reply to STARTTLS; a `2xx` reply is followed by the TLS handshake.
    Starttls,
    /// The final reply of the AUTH exchange, after any `334` continuations.
    Auth,
    /// The reply to MAIL FROM.
    Mail,
    /// The reply to each RCPT TO.
    Rcpt,
    /// The reply to the DATA command; a `3xx` reply is followed by reading the message.
    Data,
    /// The reply after the message's final dot; a `2xx` reply records the message.
    DataEnd,
    /// The reply to QUIT; the server closes the connection afterwards.
    Quit,
}

/// What the server does at a scripted [`Stage`].
#[derive(Clone, PartialEq, Eq)]
pub enum Action {
    /// What the server would have done anyway; combine with a delay to slow a stage down.
    Default,
    /// Reply with this text: complete reply lines with their codes, separated by `\r\n`
    /// or `\n` (e.g. `"535-5.7.8 a\r\n535 5.7.8 b"`); the final CRLF is added. The
    /// placeholders of [`Texts`] are expanded.
    Reply(String),
    /// Like `Reply`, but written one byte at a time, pausing `interval` after each byte.
    Trickle { reply: String, interval: Duration },
    /// Write these bytes exactly (no CRLF added, no placeholders), e.g. a garbage greeting.
    Raw(Vec<u8>),
    /// Write `chunk` `times` times, e.g. a 10 MB line with no newline, without building it.
    RawRepeat { chunk: Vec<u8>, times: usize },
    /// Close the connection cleanly (TLS close_notify if TLS is up, then FIN).
    Close,
    /// Abort the connection with a TCP RST (`SO_LINGER` 0, then drop).
    Reset,
    /// Never reply: keep reading and discarding input until the client gives up.
    Silent,
}

impl Action {
    /// [`Action::Reply`] with `text`.
    pub fn reply(text: impl Into<String>) -> Action {
        Action::Reply(text.into())
    }

    /// [`Action::Trickle`]: `text` one byte per `interval`.
    pub fn trickle(text: impl Into<String>, interval: Duration) -> Action {
        Action::Trickle {
            reply: text.into(),
            interval,
        }
    }

    /// [`Action::Raw`] with `bytes`.
    pub fn raw(bytes: impl Into<Vec<u8>>) -> Action {
        Action::Raw(bytes.into())
    }

    /// `len` bytes of `x` with no line end, written in 64 KiB chunks (rounded up).
    pub fn flood(len: usize) -> Action {
        const CHUNK: usize = 64 * 1024;
        Action::RawRepeat {
            chunk: vec![b'x'; CHUNK],
            times: len.div_ceil(CHUNK),
        }
    }
}

impl fmt::Debug for Action {
    // Raw payloads can be megabytes; print their size instead.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Action::Default => f.write_str("Default"),
            Action::Reply(t) => f.debug_tuple("Reply").field(t).finish(),
            Action::Trickle { reply, interval } => f
                .debug_struct("Trickle")
                .field("reply", reply)
                .field("interval", interval)
                .finish(),
            Action::Raw(b) => write!(f, "Raw({} bytes)", b.len()),
            Action::RawRepeat { chunk, times } => {
                write!(f, "RawRepeat({} x {} bytes)", times, chunk.len())
            }
            Action::Close => f.write_str("Close"),
            Action::Reset => f.write_str("Reset"),
            Action::Silent => f.write_str("Silent"),
        }
    }
}

/// Which connections or messages a [`Rule`] applies to. Connections and messages are
/// numbered from 1 across the server's whole life; a message is numbered when its MAIL
/// command arrives, so message filters only match at Mail, Rcpt, Data and DataEnd.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Only {
    #[default]
    Always,
    /// Only the Nth connection.
    Connection(usize),
    /// Only the Nth message.
    Message(usize),
    /// Messages N, 2N, 3N, ... (so never the first unless N is 1).
    EveryNthMessage(usize),
}

impl Only {
    pub(super) fn matches(self, connection: usize, message: usize) -> bool {
        match self {
            Only::Always => true,
            Only::Connection(n) => connection == n,
            Only::Message(n) => message != 0 && message == n,
            Only::EveryNthMessage(n) => n != 0 && message != 0 && message.is_multiple_of(n),
        }
    }
}

/// One scripted override: an action, an extra delay before it, and where it applies.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Rule {
    pub action: Action,
    /// Waited before the action, on top of the script's per-reply delay.
    pub delay: Duration,
    pub only: Only,
}

impl Rule {
    pub fn new(action: Action) -> Rule {
        Rule {
            action,
            delay: Duration::ZERO,
            only: Only::Always,
        }
    }

    pub fn delay(mut self, delay: Duration) -> Rule {
        self.delay = delay;
        self
    }

    pub fn only(mut self, only: Only) -> Rule {
        self.only = only;
        self
    }
}

impl From<Action> for Rule {
    fn from(action: Action) -> Rule {
        Rule::new(action)
    }
}

/// The data that overrides the server's default behaviour. Empty by default.
///
/// Per stage, rules are tried in the order they were added; the first whose [`Only`]
/// matches wins, and a stage with no matching rule behaves normally.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Script {
    pub(super) rules: HashMap<Stage, Vec<Rule>>,
    pub(super) reply_delay: Duration,
    pub(super) hide_starttls: bool,
    pub(super) hide_auth: bool,
}

impl Script {
    pub fn new() -> Script {
        Script::default()
    }

    /// Adds a rule (or a bare [`Action`]) for `stage`.
    pub fn on(mut self, stage: Stage, rule: impl Into<Rule>) -> Script {
        self.rules.entry(stage).or_default().push(rule.into());
        self
    }

    /// Keeps the default behaviour of `stage` but waits `delay` first.
    pub fn delay_at(self, stage: Stage, delay: Duration) -> Script {
        self.on(stage, Rule::new(Action::Default).delay(delay))
    }

    /// Waits `delay` before every reply the server writes, `334` continuations included.
    pub fn reply_delay(mut self, delay: Duration) -> Script {
        self.reply_delay = delay;
        self
    }

    /// Leaves STARTTLS out of the EHLO reply and refuses the command with `454`.
    pub fn without_starttls(mut self) -> Script {
        self.hide_starttls = true;
        self
    }

    /// Leaves AUTH out of the EHLO reply and refuses the command with `503`.
    pub fn without_auth(mut self) -> Script {
        self.hide_auth = true;
        self
    }

    pub(super) fn rule(&self, stage: Stage, connection: usize, message: usize) -> Option<&Rule> {
        self.rules
            .get(&stage)?
            .iter()
            .find(|r| r.only.matches(connection, message))
    }
}
