//! A scriptable, recording ESMTP submission server that runs inside the process.
//!
//! It owns the wire side of both users of this module: the demo relay (which only changes
//! reply texts, the credential check and a few scripted stages) and the integration tests,
//! which need replies and misbehaviour no real server can be made to produce on demand.
//!
//! Left alone, [`SmtpServer`] is a well-behaved submission server: greeting, EHLO with
//! the usual extensions, STARTTLS or implicit TLS, AUTH PLAIN / LOGIN / XOAUTH2, MAIL,
//! RCPT, DATA with dot-unstuffing and a size bound, RSET, NOOP and QUIT.
//!
//! A [`Script`] overrides what happens at a [`Stage`]: reply with other text, wait first,
//! close, reset, go silent, send raw bytes or trickle the reply. Whether the session then
//! moves on is decided by the reply actually sent: a reply starting with `2` or `3`
//! counts as success (a scripted `250` to MAIL opens the transaction, a scripted `535` to
//! AUTH leaves the client unauthenticated), so scripts never need to know the state
//! machine.
//!
//! Everything the client sent is recorded per connection ([`ServerHandle::sessions`]),
//! including raw SASL payload lines, so tests can assert what crossed the wire. Those
//! records are for tests only: nothing here passes a command line or a payload to
//! `tracing`, because they may hold passwords and tokens.

use std::collections::{HashMap, VecDeque};
use std::fmt;
use std::io;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::task::{Context, Poll};
use std::time::Duration;

use base64::Engine as _;
use base64::engine::general_purpose::{STANDARD, STANDARD_NO_PAD};
use rand::Rng as _;
use rustls::ServerConfig;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt, ReadBuf};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::oneshot;
use tokio::task::{JoinHandle, JoinSet};
use tokio_rustls::TlsAcceptor;
use tokio_rustls::server::TlsStream;

/// Longest command line accepted. RFC 5321 says 512 octets, but an XOAUTH2 initial
/// response carries a JWT that is routinely 2-4 KiB once base64 encoded.
pub const MAX_COMMAND_LINE: usize = 16 * 1024;
/// Default bound on one message's DATA, also advertised as `SIZE`.
pub const DEFAULT_MAX_MESSAGE_SIZE: usize = 10 * 1024 * 1024;
/// Base64 of Google's JSON error for a rejected XOAUTH2 token.
const XOAUTH2_CHALLENGE: &str = "eyJzdGF0dXMiOiI0MDAiLCJzY2hlbWVzIjoiQmVhcmVyIiwic2NvcGUiOiJodHRwczovL21haWwuZ29vZ2xlLmNvbS8ifQ==";

// ---------------------------------------------------------------------------------------
// Scripting
// ---------------------------------------------------------------------------------------

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
    fn matches(self, connection: usize, message: usize) -> bool {
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
    rules: HashMap<Stage, Vec<Rule>>,
    reply_delay: Duration,
    hide_starttls: bool,
    hide_auth: bool,
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

    fn rule(&self, stage: Stage, connection: usize, message: usize) -> Option<&Rule> {
        self.rules
            .get(&stage)?
            .iter()
            .find(|r| r.only.matches(connection, message))
    }
}

// ---------------------------------------------------------------------------------------
// Reply texts and authentication
// ---------------------------------------------------------------------------------------

/// The server's default reply texts, each a complete reply with its code.
///
/// Placeholders expanded in these and in scripted replies: `{host}` (the server's
/// hostname), `{peer_ip}`, `{date}` (RFC 2822, now), `{queue_id}` (random, per message)
/// and `{message_id}` (the message's `Message-ID` header, or one made from the queue id).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Texts {
    pub greeting: String,
    /// The first EHLO line, without its `250-`.
    pub ehlo_hello: String,
    pub starttls: String,
    pub auth_ok: String,
    /// Wrong credentials (used by [`AuthVerdict::Reject`]).
    pub auth_failed: String,
    /// MAIL before a required AUTH.
    pub auth_required: String,
    /// AUTH over plaintext when that is not allowed.
    pub auth_needs_tls: String,
    pub mail_ok: String,
    pub rcpt_ok: String,
    pub data_start: String,
    pub queued: String,
    pub quit: String,
}

impl Default for Texts {
    fn default() -> Texts {
        Texts {
            greeting: "220 {host} ESMTP smtp-canary test server".into(),
            ehlo_hello: "{host} Hello [{peer_ip}]".into(),
            starttls: "220 2.0.0 Ready to start TLS".into(),
            auth_ok: "235 2.7.0 Authentication successful".into(),
            auth_failed: "535 5.7.8 Authentication credentials invalid".into(),
            auth_required: "530 5.7.0 Authentication required".into(),
            auth_needs_tls: "538 5.7.11 Encryption required for requested authentication mechanism"
                .into(),
            mail_ok: "250 2.1.0 Ok".into(),
            rcpt_ok: "250 2.1.5 Ok".into(),
            data_start: "354 End data with <CR><LF>.<CR><LF>".into(),
            queued: "250 2.0.0 Ok: queued as {queue_id}".into(),
            quit: "221 2.0.0 Bye".into(),
        }
    }
}

/// A SASL mechanism the server implements.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Mechanism {
    Plain,
    Login,
    XOAuth2,
}

impl Mechanism {
    pub fn name(self) -> &'static str {
        match self {
            Mechanism::Plain => "PLAIN",
            Mechanism::Login => "LOGIN",
            Mechanism::XOAuth2 => "XOAUTH2",
        }
    }

    fn parse(name: &str) -> Option<Mechanism> {
        [Mechanism::Plain, Mechanism::Login, Mechanism::XOAuth2]
            .into_iter()
            .find(|m| m.name().eq_ignore_ascii_case(name))
    }
}

/// What a client presented in AUTH. `secret` is the password, or the bearer token for
/// XOAUTH2; `Debug` never prints it.
#[derive(Clone, PartialEq, Eq)]
pub struct Credentials {
    pub mechanism: Mechanism,
    /// The PLAIN authorization identity (usually empty).
    pub authzid: String,
    pub username: String,
    pub secret: String,
}

impl fmt::Debug for Credentials {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Credentials")
            .field("mechanism", &self.mechanism)
            .field("authzid", &self.authzid)
            .field("username", &self.username)
            .field("secret", &"<redacted>")
            .finish()
    }
}

/// The credential check's answer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum AuthVerdict {
    /// `Texts::auth_ok`.
    Accept,
    /// Accept, and from now on this connection also follows `Script`'s rules (consulted
    /// before the server's own script; its delays and hide flags are ignored). Lets an
    /// account carry its own failures, like the demo's quota-exceeded mailbox.
    AcceptWith(Script),
    /// `Texts::auth_failed`.
    Reject,
    /// Reject with this reply.
    RejectWith(String),
}

type AuthCheck = Arc<dyn Fn(&Credentials) -> AuthVerdict + Send + Sync>;

// ---------------------------------------------------------------------------------------
// Recording
// ---------------------------------------------------------------------------------------

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
struct Shared {
    connections: AtomicUsize,
    messages: AtomicUsize,
    record: Mutex<Record>,
}

/// Bounded so a long-running demo relay does not grow without limit.
struct Record {
    sessions: VecDeque<SessionRecord>,
    messages: VecDeque<ReceivedMessage>,
    keep_sessions: usize,
    keep_messages: usize,
    max_lines: usize,
}

impl Shared {
    fn record(&self) -> MutexGuard<'_, Record> {
        // A panic while holding the lock cannot leave a record half-written in a way that
        // matters to tests, so a poisoned lock is still usable.
        self.record.lock().unwrap_or_else(|e| e.into_inner())
    }

    fn update(&self, connection: usize, f: impl FnOnce(&mut SessionRecord, usize)) {
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

// ---------------------------------------------------------------------------------------
// Builder and handle
// ---------------------------------------------------------------------------------------

#[derive(Clone)]
enum TlsMode {
    None,
    Starttls(Arc<ServerConfig>),
    Implicit(Arc<ServerConfig>),
}

/// A server under construction; [`SmtpServer::start`] binds and spawns it.
#[derive(Clone)]
pub struct SmtpServer {
    tls: TlsMode,
    script: Script,
    texts: Texts,
    hostname: String,
    auth_check: AuthCheck,
    mechanisms: Vec<Mechanism>,
    auth_without_tls: bool,
    require_auth: bool,
    xoauth2_challenge: bool,
    extra_capabilities: Vec<String>,
    max_message_size: usize,
    max_recipients: usize,
    idle_timeout: Duration,
    keep_sessions: usize,
    keep_messages: usize,
}

impl Default for SmtpServer {
    fn default() -> SmtpServer {
        SmtpServer::new()
    }
}

impl SmtpServer {
    /// Plaintext, AUTH PLAIN and LOGIN, any credentials accepted, no script.
    pub fn new() -> SmtpServer {
        SmtpServer {
            tls: TlsMode::None,
            script: Script::new(),
            texts: Texts::default(),
            hostname: "smtp.test.invalid".into(),
            auth_check: Arc::new(|_| AuthVerdict::Accept),
            mechanisms: vec![Mechanism::Plain, Mechanism::Login],
            auth_without_tls: false,
            require_auth: true,
            xoauth2_challenge: true,
            extra_capabilities: Vec::new(),
            max_message_size: DEFAULT_MAX_MESSAGE_SIZE,
            max_recipients: 100,
            idle_timeout: Duration::from_secs(300),
            keep_sessions: 10_000,
            keep_messages: 1_000,
        }
    }

    /// Offer STARTTLS with this config (port-587 style).
    pub fn starttls(mut self, config: Arc<ServerConfig>) -> SmtpServer {
        self.tls = TlsMode::Starttls(config);
        self
    }

    /// Handshake before the greeting (port-465 style).
    pub fn implicit_tls(mut self, config: Arc<ServerConfig>) -> SmtpServer {
        self.tls = TlsMode::Implicit(config);
        self
    }

    pub fn script(mut self, script: Script) -> SmtpServer {
        self.script = script;
        self
    }

    pub fn texts(mut self, texts: Texts) -> SmtpServer {
        self.texts = texts;
        self
    }

    /// The name in `{host}` (greeting, EHLO, replies).
    pub fn hostname(mut self, hostname: impl Into<String>) -> SmtpServer {
        self.hostname = hostname.into();
        self
    }

    /// Accept exactly these username / secret pairs (the secret is the bearer token for
    /// XOAUTH2); anything else gets `Texts::auth_failed`.
    pub fn users<U, S>(self, users: impl IntoIterator<Item = (U, S)>) -> SmtpServer
    where
        U: Into<String>,
        S: Into<String>,
    {
        let table: HashMap<String, String> = users
            .into_iter()
            .map(|(u, s)| (u.into(), s.into()))
            .collect();
        self.auth_check(move |c| match table.get(&c.username) {
            Some(secret) if *secret == c.secret => AuthVerdict::Accept,
            _ => AuthVerdict::Reject,
        })
    }

    /// Decide every AUTH with `check`.
    pub fn auth_check(
        mut self,
        check: impl Fn(&Credentials) -> AuthVerdict + Send + Sync + 'static,
    ) -> SmtpServer {
        self.auth_check = Arc::new(check);
        self
    }

    /// The mechanisms advertised and accepted, in EHLO order.
    pub fn mechanisms(mut self, mechanisms: impl IntoIterator<Item = Mechanism>) -> SmtpServer {
        self.mechanisms = mechanisms.into_iter().collect();
        self
    }

    /// Adds XOAUTH2 to the mechanisms.
    pub fn with_xoauth2(mut self) -> SmtpServer {
        if !self.mechanisms.contains(&Mechanism::XOAuth2) {
            self.mechanisms.push(Mechanism::XOAuth2);
        }
        self
    }

    /// Offer and accept AUTH before TLS (off by default, as on every real submission
    /// server, so tests can prove a client refuses to send credentials in the clear).
    pub fn auth_without_tls(mut self, allow: bool) -> SmtpServer {
        self.auth_without_tls = allow;
        self
    }

    /// Refuse MAIL before AUTH (on by default).
    pub fn require_auth(mut self, require: bool) -> SmtpServer {
        self.require_auth = require;
        self
    }

    /// Whether a rejected XOAUTH2 token first gets Google's `334 <base64 JSON>` and waits
    /// for the client's empty line (on by default; Exchange answers 535 directly).
    pub fn xoauth2_challenge(mut self, challenge: bool) -> SmtpServer {
        self.xoauth2_challenge = challenge;
        self
    }

    /// More EHLO keywords, listed after the built-in ones (e.g. `DSN`, `SMTPUTF8`).
    pub fn extra_capabilities<S: Into<String>>(
        mut self,
        capabilities: impl IntoIterator<Item = S>,
    ) -> SmtpServer {
        self.extra_capabilities = capabilities.into_iter().map(Into::into).collect();
        self
    }

    /// The DATA bound, also advertised as `SIZE`.
    pub fn max_message_size(mut self, bytes: usize) -> SmtpServer {
        self.max_message_size = bytes;
        self
    }

    /// How long the server waits for client input (or for a write to drain) before it
    /// gives up with `421`.
    pub fn idle_timeout(mut self, timeout: Duration) -> SmtpServer {
        self.idle_timeout = timeout;
        self
    }

    /// How many session records and accepted messages to keep (oldest dropped first).
    pub fn keep_records(mut self, sessions: usize, messages: usize) -> SmtpServer {
        self.keep_sessions = sessions;
        self.keep_messages = messages;
        self
    }

    /// Binds 127.0.0.1 on an ephemeral port and starts serving.
    pub async fn start(self) -> io::Result<ServerHandle> {
        self.start_on(SocketAddr::from(([127, 0, 0, 1], 0))).await
    }

    /// Binds `addr` and starts serving.
    pub async fn start_on(self, addr: SocketAddr) -> io::Result<ServerHandle> {
        let listener = TcpListener::bind(addr).await?;
        let local_addr = listener.local_addr()?;
        let shared = Arc::new(Shared {
            connections: AtomicUsize::new(0),
            messages: AtomicUsize::new(0),
            record: Mutex::new(Record {
                sessions: VecDeque::new(),
                messages: VecDeque::new(),
                keep_sessions: self.keep_sessions.max(1),
                keep_messages: self.keep_messages,
                max_lines: 10_000,
            }),
        });
        let (stop_tx, stop_rx) = oneshot::channel();
        let task = tokio::spawn(accept_loop(
            listener,
            Arc::new(self),
            Arc::clone(&shared),
            stop_rx,
        ));
        tracing::debug!(%local_addr, "in-process SMTP server listening");
        Ok(ServerHandle {
            local_addr,
            shared,
            stop: Some(stop_tx),
            task: Some(task),
        })
    }
}

/// A running server. Dropping it stops the server and aborts every open connection.
pub struct ServerHandle {
    local_addr: SocketAddr,
    shared: Arc<Shared>,
    stop: Option<oneshot::Sender<()>>,
    task: Option<JoinHandle<()>>,
}

impl fmt::Debug for ServerHandle {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ServerHandle")
            .field("local_addr", &self.local_addr)
            .finish_non_exhaustive()
    }
}

impl ServerHandle {
    pub fn local_addr(&self) -> SocketAddr {
        self.local_addr
    }

    /// Connections accepted so far (never truncated by `keep_records`).
    pub fn connection_count(&self) -> usize {
        self.shared.connections.load(Ordering::SeqCst)
    }

    /// Messages started (MAIL commands that reached the Mail stage) so far.
    pub fn message_count(&self) -> usize {
        self.shared.messages.load(Ordering::SeqCst)
    }

    /// A snapshot of the recorded sessions, oldest first.
    pub fn sessions(&self) -> Vec<SessionRecord> {
        self.shared.record().sessions.iter().cloned().collect()
    }

    /// The record of connection `n` (1-based), if still kept.
    pub fn session(&self, connection: usize) -> Option<SessionRecord> {
        self.shared
            .record()
            .sessions
            .iter()
            .find(|s| s.connection == connection)
            .cloned()
    }

    /// A snapshot of the accepted messages, oldest first.
    pub fn messages(&self) -> Vec<ReceivedMessage> {
        self.shared.record().messages.iter().cloned().collect()
    }

    /// Stops accepting, aborts every connection and waits until they are gone, so the
    /// port is closed when this returns.
    pub async fn shutdown(mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        if let Some(task) = self.task.take() {
            let _ = task.await;
        }
    }
}

impl Drop for ServerHandle {
    fn drop(&mut self) {
        if let Some(task) = self.task.take() {
            // Aborting drops the JoinSet inside, which aborts every session.
            task.abort();
        }
    }
}

async fn accept_loop(
    listener: TcpListener,
    config: Arc<SmtpServer>,
    shared: Arc<Shared>,
    mut stop: oneshot::Receiver<()>,
) {
    let mut sessions = JoinSet::new();
    loop {
        tokio::select! {
            _ = &mut stop => break,
            accepted = listener.accept() => match accepted {
                Ok((tcp, peer)) => {
                    let connection = shared.connections.fetch_add(1, Ordering::SeqCst) + 1;
                    // Small replies and trickled bytes must leave immediately.
                    let _ = tcp.set_nodelay(true);
                    start_record(&shared, connection, peer);
                    let session = Session::new(tcp, peer, connection, &config, &shared);
                    sessions.spawn(session.run());
                }
                Err(error) => {
                    // Usually fd exhaustion; back off instead of spinning.
                    tracing::debug!(%error, "accept failed");
                    tokio::time::sleep(Duration::from_millis(20)).await;
                }
            },
            Some(_) = sessions.join_next(), if !sessions.is_empty() => {}
        }
    }
    drop(listener);
    sessions.shutdown().await;
}

fn start_record(shared: &Shared, connection: usize, peer: SocketAddr) {
    let mut record = shared.record();
    if record.sessions.len() >= record.keep_sessions {
        record.sessions.pop_front();
    }
    record.sessions.push_back(SessionRecord {
        connection,
        peer,
        lines: Vec::new(),
        tls_version: None,
        sni: None,
        tls_error: None,
        user: None,
        ended: false,
    });
}

// ---------------------------------------------------------------------------------------
// Transport
// ---------------------------------------------------------------------------------------

enum Stream {
    Plain(TcpStream),
    Tls(Box<TlsStream<TcpStream>>),
    /// Only while the TCP stream is being moved into a TLS handshake.
    Gone,
}

impl Stream {
    fn tcp(&self) -> Option<&TcpStream> {
        match self {
            Stream::Plain(s) => Some(s),
            Stream::Tls(s) => Some(s.get_ref().0),
            Stream::Gone => None,
        }
    }
}

impl AsyncRead for Stream {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        match self.get_mut() {
            Stream::Plain(s) => Pin::new(s).poll_read(cx, buf),
            Stream::Tls(s) => Pin::new(s.as_mut()).poll_read(cx, buf),
            Stream::Gone => Poll::Ready(Ok(())),
        }
    }
}

impl AsyncWrite for Stream {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        match self.get_mut() {
            Stream::Plain(s) => Pin::new(s).poll_write(cx, buf),
            Stream::Tls(s) => Pin::new(s.as_mut()).poll_write(cx, buf),
            Stream::Gone => Poll::Ready(Err(io::ErrorKind::NotConnected.into())),
        }
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        match self.get_mut() {
            Stream::Plain(s) => Pin::new(s).poll_flush(cx),
            Stream::Tls(s) => Pin::new(s.as_mut()).poll_flush(cx),
            Stream::Gone => Poll::Ready(Ok(())),
        }
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        match self.get_mut() {
            Stream::Plain(s) => Pin::new(s).poll_shutdown(cx),
            Stream::Tls(s) => Pin::new(s.as_mut()).poll_shutdown(cx),
            Stream::Gone => Poll::Ready(Ok(())),
        }
    }
}

enum Line {
    Data(Vec<u8>),
    TooLong,
    Eof,
}

/// Why a session ended; only used to choose a debug log line.
#[derive(Debug)]
enum End {
    Quit,
    Eof,
    Scripted,
    Tls,
    Io(io::Error),
}

impl From<io::Error> for End {
    fn from(e: io::Error) -> End {
        End::Io(e)
    }
}

fn timed_out() -> io::Error {
    io::Error::new(io::ErrorKind::TimedOut, "client idle timeout")
}

/// The socket plus our own read buffer, which is what keeps every read bounded.
struct Io {
    stream: Stream,
    buf: Vec<u8>,
    idle: Duration,
}

impl Io {
    async fn fill(&mut self, deadline: bool) -> io::Result<usize> {
        let mut chunk = [0u8; 8192];
        let n = if deadline {
            tokio::time::timeout(self.idle, self.stream.read(&mut chunk))
                .await
                .map_err(|_| timed_out())??
        } else {
            self.stream.read(&mut chunk).await?
        };
        self.buf.extend_from_slice(&chunk[..n]);
        Ok(n)
    }

    /// One line including its `\n`. A line longer than `limit` is consumed and discarded
    /// as it streams in, so the buffer never holds much more than `limit` bytes.
    async fn read_line(&mut self, limit: usize) -> io::Result<Line> {
        let mut discarding = false;
        loop {
            if let Some(pos) = self.buf.iter().position(|&b| b == b'\n') {
                let line: Vec<u8> = self.buf.drain(..=pos).collect();
                if discarding || line.len() > limit {
                    return Ok(Line::TooLong);
                }
                return Ok(Line::Data(line));
            }
            if self.buf.len() > limit {
                discarding = true;
                self.buf.clear();
            }
            if self.fill(true).await? == 0 {
                return Ok(Line::Eof);
            }
        }
    }

    async fn write(&mut self, bytes: &[u8]) -> io::Result<()> {
        tokio::time::timeout(self.idle, async {
            self.stream.write_all(bytes).await?;
            self.stream.flush().await
        })
        .await
        .map_err(|_| timed_out())?
    }
}

fn trim_line_end(line: &[u8]) -> &[u8] {
    let line = line.strip_suffix(b"\n").unwrap_or(line);
    line.strip_suffix(b"\r").unwrap_or(line)
}

fn is_positive(first: Option<u8>) -> bool {
    matches!(first, Some(b'2' | b'3'))
}

fn tls_version_name(v: rustls::ProtocolVersion) -> String {
    match v {
        rustls::ProtocolVersion::TLSv1_2 => "TLSv1.2".into(),
        rustls::ProtocolVersion::TLSv1_3 => "TLSv1.3".into(),
        other => format!("{other:?}"),
    }
}

/// Parses `FROM:<addr> params` / `TO:<addr> params` (keyword matched case-insensitively).
fn parse_path<'a>(args: &'a str, keyword: &str) -> Option<(&'a str, &'a str)> {
    let head = args.get(..keyword.len())?;
    if !head.eq_ignore_ascii_case(keyword) {
        return None;
    }
    let rest = args.get(keyword.len()..)?.trim_start();
    let rest = rest.strip_prefix('<')?;
    let end = rest.find('>')?;
    Some((&rest[..end], rest[end + 1..].trim()))
}

fn decode_b64(text: &str) -> Option<Vec<u8>> {
    let text = text.trim();
    STANDARD
        .decode(text)
        .or_else(|_| STANDARD_NO_PAD.decode(text))
        .ok()
}

/// The `Message-ID` header's value, looked for only in the header section.
fn message_id_header(data: &[u8]) -> Option<String> {
    let head = &data[..data.len().min(64 * 1024)];
    for raw in head.split(|&b| b == b'\n') {
        let line = trim_line_end(raw);
        if line.is_empty() {
            break;
        }
        let text = String::from_utf8_lossy(line);
        if let Some((name, value)) = text.split_once(':')
            && name.trim().eq_ignore_ascii_case("message-id")
        {
            let value = value.trim();
            if !value.is_empty() {
                return Some(value.to_owned());
            }
        }
    }
    None
}

// ---------------------------------------------------------------------------------------
// The session
// ---------------------------------------------------------------------------------------

struct Transaction {
    number: usize,
    from: String,
    rcpts: Vec<String>,
}

/// The outcome of one SASL continuation.
enum Step {
    Response(String),
    Refused(&'static str),
}

struct Session {
    io: Io,
    config: Arc<SmtpServer>,
    shared: Arc<Shared>,
    connection: usize,
    peer: SocketAddr,
    tls: bool,
    ehlo: bool,
    user: Option<String>,
    overlay: Option<Script>,
    transaction: Option<Transaction>,
    queue_id: String,
    message_id: String,
}

impl Session {
    fn new(
        tcp: TcpStream,
        peer: SocketAddr,
        connection: usize,
        config: &Arc<SmtpServer>,
        shared: &Arc<Shared>,
    ) -> Session {
        Session {
            io: Io {
                stream: Stream::Plain(tcp),
                buf: Vec::new(),
                idle: config.idle_timeout,
            },
            config: Arc::clone(config),
            shared: Arc::clone(shared),
            connection,
            peer,
            tls: false,
            ehlo: false,
            user: None,
            overlay: None,
            transaction: None,
            queue_id: String::new(),
            message_id: String::new(),
        }
    }

    async fn run(mut self) {
        let end = self.serve().await;
        match &end {
            Ok(()) | Err(End::Quit | End::Eof | End::Scripted) => {
                tracing::debug!(connection = self.connection, "SMTP session ended")
            }
            Err(other) => {
                tracing::debug!(connection = self.connection, reason = ?other, "SMTP session aborted")
            }
        }
        if let Err(End::Io(e)) = &end
            && e.kind() == io::ErrorKind::TimedOut
        {
            let _ = self.io.write(b"421 4.4.2 Idle timeout, closing\r\n").await;
        }
        self.shared.update(self.connection, |s, _| s.ended = true);
    }

    async fn serve(&mut self) -> Result<(), End> {
        if let TlsMode::Implicit(config) = &self.config.tls {
            let config = Arc::clone(config);
            self.handshake(config).await?;
        }
        let greeting = self.config.texts.greeting.clone();
        self.respond(Stage::Greeting, &greeting).await?;
        loop {
            let line = match self.io.read_line(MAX_COMMAND_LINE).await? {
                Line::Data(line) => line,
                Line::TooLong => {
                    self.send("500 5.5.2 Line too long").await?;
                    continue;
                }
                Line::Eof => return Err(End::Eof),
            };
            let text = String::from_utf8_lossy(trim_line_end(&line)).into_owned();
            self.record_line(&text);
            let (verb, args) = match text.split_once(' ') {
                Some((v, a)) => (v.to_ascii_uppercase(), a.trim().to_owned()),
                None => (text.trim().to_ascii_uppercase(), String::new()),
            };
            match verb.as_str() {
                "EHLO" | "HELO" => self.ehlo(&verb, &args).await?,
                "STARTTLS" => self.starttls().await?,
                "AUTH" => self.auth(&args).await?,
                "MAIL" => self.mail(&args).await?,
                "RCPT" => self.rcpt(&args).await?,
                "DATA" => self.data().await?,
                "RSET" => {
                    self.transaction = None;
                    self.send("250 2.0.0 Ok").await?;
                }
                "NOOP" => {
                    self.send("250 2.0.0 Ok").await?;
                }
                "VRFY" => {
                    self.send("252 2.5.2 Cannot VRFY user").await?;
                }
                "HELP" => {
                    self.send("214 2.0.0 See RFC 5321").await?;
                }
                "QUIT" => {
                    let quit = self.config.texts.quit.clone();
                    self.respond(Stage::Quit, &quit).await?;
                    let _ = self.io.stream.shutdown().await;
                    return Err(End::Quit);
                }
                "" => {
                    self.send("500 5.5.2 Error: bad syntax").await?;
                }
                _ => {
                    self.send("500 5.5.2 Error: command not recognized").await?;
                }
            }
        }
    }

    fn record_line(&self, text: &str) {
        let line = ReceivedLine {
            line: text.to_owned(),
            tls: self.tls,
        };
        self.shared.update(self.connection, |s, max| {
            if s.lines.len() < max {
                s.lines.push(line);
            }
        });
    }

    fn message_number(&self) -> usize {
        self.transaction.as_ref().map_or(0, |t| t.number)
    }

    /// The scripted action and extra delay for `stage`, the session's overlay first.
    fn rule(&self, stage: Stage) -> (Action, Duration) {
        let message = self.message_number();
        self.overlay
            .as_ref()
            .and_then(|o| o.rule(stage, self.connection, message))
            .or_else(|| self.config.script.rule(stage, self.connection, message))
            .map_or((Action::Default, Duration::ZERO), |r| {
                (r.action.clone(), r.delay)
            })
    }

    fn expand(&self, text: &str) -> String {
        if !text.contains('{') {
            return text.to_owned();
        }
        let mut out = text
            .replace("{host}", &self.config.hostname)
            .replace("{peer_ip}", &self.peer.ip().to_string())
            .replace("{queue_id}", &self.queue_id)
            .replace("{message_id}", &self.message_id);
        if out.contains("{date}") {
            let date = time::OffsetDateTime::now_utc()
                .format(&time::format_description::well_known::Rfc2822)
                .unwrap_or_default();
            out = out.replace("{date}", &date);
        }
        out
    }

    /// Reply lines as wire bytes: each line CRLF-terminated, whatever the script used.
    fn wire(&self, text: &str) -> Vec<u8> {
        let mut out = Vec::with_capacity(text.len() + 2);
        for line in self.expand(text).lines() {
            out.extend_from_slice(line.as_bytes());
            out.extend_from_slice(b"\r\n");
        }
        out
    }

    /// Sends an unscripted reply (after the script's per-reply delay).
    async fn send(&mut self, text: &str) -> Result<Option<u8>, End> {
        self.pause(self.config.script.reply_delay).await;
        let bytes = self.wire(text);
        self.io.write(&bytes).await?;
        Ok(bytes.first().copied())
    }

    async fn pause(&self, delay: Duration) {
        if !delay.is_zero() {
            tokio::time::sleep(delay).await;
        }
    }

    /// Runs `stage`: its scripted action, or `default` as the reply. Returns the first
    /// byte sent (the reply's code class); `Err` when the connection is over.
    async fn respond(&mut self, stage: Stage, default: &str) -> Result<Option<u8>, End> {
        let (action, delay) = self.rule(stage);
        self.act(action, delay, default).await
    }

    async fn act(
        &mut self,
        action: Action,
        delay: Duration,
        default: &str,
    ) -> Result<Option<u8>, End> {
        self.pause(delay).await;
        match action {
            Action::Default => self.send(default).await,
            Action::Reply(text) => self.send(&text).await,
            Action::Trickle { reply, interval } => {
                self.pause(self.config.script.reply_delay).await;
                let bytes = self.wire(&reply);
                for byte in &bytes {
                    self.io.write(std::slice::from_ref(byte)).await?;
                    self.pause(interval).await;
                }
                Ok(bytes.first().copied())
            }
            Action::Raw(bytes) => {
                self.pause(self.config.script.reply_delay).await;
                self.io.write(&bytes).await?;
                Ok(bytes.first().copied())
            }
            Action::RawRepeat { chunk, times } => {
                self.pause(self.config.script.reply_delay).await;
                for _ in 0..times {
                    self.io.write(&chunk).await?;
                }
                Ok(chunk.first().copied())
            }
            Action::Close => {
                self.pause(self.config.script.reply_delay).await;
                let _ = self.io.stream.shutdown().await;
                Err(End::Scripted)
            }
            Action::Reset => {
                self.pause(self.config.script.reply_delay).await;
                if let Some(tcp) = self.io.stream.tcp() {
                    // A zero linger makes the close below an RST; unlike a non-zero linger
                    // it never blocks the runtime thread.
                    let _ = tcp.set_zero_linger();
                }
                self.io.stream = Stream::Gone;
                Err(End::Scripted)
            }
            Action::Silent => {
                // Keep draining so a client that gives up is noticed and the task ends;
                // no idle timeout here, silence is meant to last.
                self.io.buf.clear();
                while self.io.fill(false).await? > 0 {
                    self.io.buf.clear();
                }
                Err(End::Scripted)
            }
        }
    }

    async fn handshake(&mut self, config: Arc<ServerConfig>) -> Result<(), End> {
        let tcp = match std::mem::replace(&mut self.io.stream, Stream::Gone) {
            Stream::Plain(tcp) => tcp,
            other => {
                self.io.stream = other;
                return Err(End::Tls);
            }
        };
        // Anything the client pipelined after STARTTLS was sent in the clear and must not
        // be treated as if it had arrived over TLS (CVE-2011-0411).
        self.io.buf.clear();
        let accepted = tokio::time::timeout(
            self.config.idle_timeout,
            TlsAcceptor::from(config).accept(tcp),
        )
        .await;
        match accepted {
            Ok(Ok(tls)) => {
                let (_, conn) = tls.get_ref();
                let version = conn.protocol_version().map(tls_version_name);
                let sni = conn.server_name().map(str::to_owned);
                self.shared.update(self.connection, |s, _| {
                    s.tls_version = version;
                    s.sni = sni;
                });
                self.io.stream = Stream::Tls(Box::new(tls));
                self.tls = true;
                Ok(())
            }
            Ok(Err(e)) => {
                let reason = e.to_string();
                self.shared
                    .update(self.connection, |s, _| s.tls_error = Some(reason));
                Err(End::Tls)
            }
            Err(_) => {
                self.shared.update(self.connection, |s, _| {
                    s.tls_error = Some("handshake timed out".into())
                });
                Err(End::Tls)
            }
        }
    }

    fn offers_starttls(&self) -> bool {
        matches!(self.config.tls, TlsMode::Starttls(_))
            && !self.tls
            && !self.config.script.hide_starttls
    }

    fn offers_auth(&self) -> bool {
        !self.config.script.hide_auth
            && !self.config.mechanisms.is_empty()
            && (self.tls || self.config.auth_without_tls)
    }

    fn ehlo_reply(&self, verb: &str) -> String {
        let hello = &self.config.texts.ehlo_hello;
        if verb == "HELO" {
            return format!("250 {hello}");
        }
        let mut lines = vec![
            hello.clone(),
            format!("SIZE {}", self.config.max_message_size),
            "PIPELINING".into(),
            "ENHANCEDSTATUSCODES".into(),
        ];
        if self.offers_starttls() {
            lines.push("STARTTLS".into());
        }
        if self.offers_auth() {
            let names: Vec<&str> = self.config.mechanisms.iter().map(|m| m.name()).collect();
            lines.push(format!("AUTH {}", names.join(" ")));
        }
        lines.push("8BITMIME".into());
        lines.extend(self.config.extra_capabilities.iter().cloned());
        let last = lines.len() - 1;
        lines
            .iter()
            .enumerate()
            .map(|(i, l)| format!("250{}{l}", if i == last { ' ' } else { '-' }))
            .collect::<Vec<_>>()
            .join("\r\n")
    }

    async fn ehlo(&mut self, verb: &str, args: &str) -> Result<(), End> {
        if args.is_empty() {
            self.send(&format!("501 5.5.4 Syntax: {verb} hostname"))
                .await?;
            return Ok(());
        }
        let reply = self.ehlo_reply(verb);
        if is_positive(self.respond(Stage::Ehlo, &reply).await?) {
            self.ehlo = true;
            self.transaction = None;
        }
        Ok(())
    }

    async fn starttls(&mut self) -> Result<(), End> {
        let config = match &self.config.tls {
            _ if self.tls => {
                self.send("503 5.5.1 TLS already active").await?;
                return Ok(());
            }
            TlsMode::Starttls(config) if !self.config.script.hide_starttls => Arc::clone(config),
            _ => {
                self.send("454 4.7.0 TLS not available").await?;
                return Ok(());
            }
        };
        let ready = self.config.texts.starttls.clone();
        if !is_positive(self.respond(Stage::Starttls, &ready).await?) {
            return Ok(());
        }
        self.handshake(config).await?;
        // RFC 3207: the client must start over, and forget everything from before.
        self.ehlo = false;
        self.user = None;
        self.overlay = None;
        self.transaction = None;
        Ok(())
    }

    /// Sends a `334` challenge and reads the client's answer (recorded like a command).
    async fn sasl_step(&mut self, challenge: &str) -> Result<Step, End> {
        self.send(&format!("334 {challenge}")).await?;
        let line = match self.io.read_line(MAX_COMMAND_LINE).await? {
            Line::Data(line) => line,
            Line::TooLong => return Ok(Step::Refused("500 5.5.6 Authentication line too long")),
            Line::Eof => return Err(End::Eof),
        };
        let text = String::from_utf8_lossy(trim_line_end(&line)).into_owned();
        self.record_line(&text);
        if text.trim() == "*" {
            return Ok(Step::Refused("501 5.7.0 Authentication cancelled"));
        }
        Ok(Step::Response(text))
    }

    /// Runs the SASL exchange up to the point where credentials are known.
    async fn collect_credentials(
        &mut self,
        mechanism: Mechanism,
        initial: Option<&str>,
    ) -> Result<Result<Credentials, &'static str>, End> {
        const BAD_B64: &str = "501 5.5.2 Cannot decode response";
        // An initial response of "=" is an empty one (RFC 4954).
        let initial = initial.map(|i| if i == "=" { "" } else { i });
        macro_rules! step {
            ($challenge:expr) => {
                match self.sasl_step($challenge).await? {
                    Step::Response(r) => r,
                    Step::Refused(reply) => return Ok(Err(reply)),
                }
            };
        }
        macro_rules! decode {
            ($text:expr) => {
                match decode_b64(&$text) {
                    Some(bytes) => String::from_utf8_lossy(&bytes).into_owned(),
                    None => return Ok(Err(BAD_B64)),
                }
            };
        }
        match mechanism {
            Mechanism::Plain => {
                let response = match initial {
                    Some(i) => i.to_owned(),
                    None => step!(""),
                };
                let decoded = decode!(response);
                let mut parts = decoded.split('\0');
                match (parts.next(), parts.next(), parts.next(), parts.next()) {
                    (Some(authzid), Some(user), Some(pass), None) => Ok(Ok(Credentials {
                        mechanism,
                        authzid: authzid.to_owned(),
                        username: user.to_owned(),
                        secret: pass.to_owned(),
                    })),
                    _ => Ok(Err(BAD_B64)),
                }
            }
            Mechanism::Login => {
                let user = match initial {
                    Some(i) => i.to_owned(),
                    None => step!("VXNlcm5hbWU6"),
                };
                let username = decode!(user);
                let pass = step!("UGFzc3dvcmQ6");
                let secret = decode!(pass);
                Ok(Ok(Credentials {
                    mechanism,
                    authzid: String::new(),
                    username,
                    secret,
                }))
            }
            Mechanism::XOAuth2 => {
                let response = match initial {
                    Some(i) => i.to_owned(),
                    None => step!(""),
                };
                let decoded = decode!(response);
                let mut username = None;
                let mut token = None;
                for field in decoded.split('\x01') {
                    if let Some(u) = field.strip_prefix("user=") {
                        username = Some(u.to_owned());
                    } else if let Some(a) = field.strip_prefix("auth=") {
                        // `get`, not slicing: the client controls where char boundaries are.
                        let a = a.trim();
                        if let (Some(scheme), Some(rest)) = (a.get(..7), a.get(7..))
                            && scheme.eq_ignore_ascii_case("bearer ")
                        {
                            token = Some(rest.trim().to_owned());
                        }
                    }
                }
                match (username, token) {
                    (Some(username), Some(secret)) => Ok(Ok(Credentials {
                        mechanism,
                        authzid: String::new(),
                        username,
                        secret,
                    })),
                    _ => Ok(Err("501 5.5.2 Malformed XOAUTH2 response")),
                }
            }
        }
    }

    async fn auth(&mut self, args: &str) -> Result<(), End> {
        if !self.ehlo {
            self.send("503 5.5.1 Error: send EHLO first").await?;
            return Ok(());
        }
        if self.config.script.hide_auth || self.config.mechanisms.is_empty() {
            self.send("503 5.5.1 Error: authentication not enabled")
                .await?;
            return Ok(());
        }
        if self.user.is_some() {
            self.send("503 5.5.1 Error: already authenticated").await?;
            return Ok(());
        }
        if self.transaction.is_some() {
            self.send("503 5.5.1 Error: MAIL transaction in progress")
                .await?;
            return Ok(());
        }
        if !self.tls && !self.config.auth_without_tls {
            let text = self.config.texts.auth_needs_tls.clone();
            self.send(&text).await?;
            return Ok(());
        }
        let mut words = args.split_ascii_whitespace();
        let mechanism = match words.next().and_then(Mechanism::parse) {
            Some(m) if self.config.mechanisms.contains(&m) => m,
            _ => {
                self.send("504 5.5.4 Unrecognized authentication type")
                    .await?;
                return Ok(());
            }
        };
        let credentials = match self.collect_credentials(mechanism, words.next()).await? {
            Ok(c) => c,
            Err(reply) => {
                self.send(reply).await?;
                return Ok(());
            }
        };
        let (action, delay) = self.rule(Stage::Auth);
        let sent = if action == Action::Default {
            let (reply, overlay) = match (self.config.auth_check)(&credentials) {
                AuthVerdict::Accept => (self.config.texts.auth_ok.clone(), None),
                AuthVerdict::AcceptWith(script) => {
                    (self.config.texts.auth_ok.clone(), Some(script))
                }
                AuthVerdict::Reject => (self.config.texts.auth_failed.clone(), None),
                AuthVerdict::RejectWith(reply) => (reply, None),
            };
            let accepted = is_positive(reply.as_bytes().first().copied());
            if !accepted && mechanism == Mechanism::XOAuth2 && self.config.xoauth2_challenge {
                // Google's flow: the error details come as a challenge, the client answers
                // with an empty line, and only then comes the final reply.
                if let Step::Refused(refusal) = self.sasl_step(XOAUTH2_CHALLENGE).await? {
                    self.send(refusal).await?;
                    return Ok(());
                }
            }
            if accepted {
                self.overlay = overlay;
            }
            self.act(Action::Default, delay, &reply).await?
        } else {
            self.act(action, delay, "").await?
        };
        if is_positive(sent) {
            self.shared.update(self.connection, |s, _| {
                s.user = Some(credentials.username.clone())
            });
            self.user = Some(credentials.username);
        } else {
            self.overlay = None;
        }
        Ok(())
    }

    async fn mail(&mut self, args: &str) -> Result<(), End> {
        if !self.ehlo {
            self.send("503 5.5.1 Error: send HELO/EHLO first").await?;
            return Ok(());
        }
        if self.config.require_auth && self.user.is_none() {
            let text = self.config.texts.auth_required.clone();
            self.send(&text).await?;
            return Ok(());
        }
        if self.transaction.is_some() {
            self.send("503 5.5.1 Error: nested MAIL command").await?;
            return Ok(());
        }
        let Some((from, params)) = parse_path(args, "FROM:") else {
            self.send("501 5.5.4 Syntax: MAIL FROM:<address>").await?;
            return Ok(());
        };
        let declared_size = params
            .split_ascii_whitespace()
            .filter_map(|p| p.split_once('='))
            .find(|(k, _)| k.eq_ignore_ascii_case("SIZE"))
            .and_then(|(_, v)| v.parse::<u64>().ok());
        if declared_size.is_some_and(|s| s > self.config.max_message_size as u64) {
            self.send("552 5.3.4 Message size exceeds fixed maximum message size")
                .await?;
            return Ok(());
        }
        let number = self.shared.messages.fetch_add(1, Ordering::SeqCst) + 1;
        self.transaction = Some(Transaction {
            number,
            from: from.to_owned(),
            rcpts: Vec::new(),
        });
        let ok = self.config.texts.mail_ok.clone();
        if !is_positive(self.respond(Stage::Mail, &ok).await?) {
            self.transaction = None;
        }
        Ok(())
    }

    async fn rcpt(&mut self, args: &str) -> Result<(), End> {
        let Some(count) = self.transaction.as_ref().map(|t| t.rcpts.len()) else {
            self.send("503 5.5.1 Error: need MAIL command").await?;
            return Ok(());
        };
        let Some((to, _)) = parse_path(args, "TO:") else {
            self.send("501 5.5.4 Syntax: RCPT TO:<address>").await?;
            return Ok(());
        };
        if to.is_empty() {
            self.send("501 5.1.3 Bad recipient address syntax").await?;
            return Ok(());
        }
        if count >= self.config.max_recipients {
            self.send("452 4.5.3 Error: too many recipients").await?;
            return Ok(());
        }
        let to = to.to_owned();
        let ok = self.config.texts.rcpt_ok.clone();
        if is_positive(self.respond(Stage::Rcpt, &ok).await?)
            && let Some(t) = self.transaction.as_mut()
        {
            t.rcpts.push(to);
        }
        Ok(())
    }

    async fn data(&mut self) -> Result<(), End> {
        match &self.transaction {
            None => {
                self.send("503 5.5.1 Error: need MAIL command").await?;
                return Ok(());
            }
            Some(t) if t.rcpts.is_empty() => {
                self.send("554 5.5.1 Error: no valid recipients").await?;
                return Ok(());
            }
            Some(_) => {}
        }
        let start = self.config.texts.data_start.clone();
        if self.respond(Stage::Data, &start).await? != Some(b'3') {
            self.transaction = None;
            return Ok(());
        }
        let Some(data) = self.read_message().await? else {
            self.transaction = None;
            self.send("552 5.3.4 Message size exceeds fixed maximum message size")
                .await?;
            return Ok(());
        };
        self.queue_id = random_id(12);
        self.message_id = message_id_header(&data)
            .unwrap_or_else(|| format!("<{}@{}>", self.queue_id, self.config.hostname));
        let queued = self.config.texts.queued.clone();
        let sent = self.respond(Stage::DataEnd, &queued).await;
        let transaction = self.transaction.take();
        if is_positive(sent?)
            && let Some(t) = transaction
        {
            let message = ReceivedMessage {
                connection: self.connection,
                number: t.number,
                mail_from: t.from,
                rcpt_to: t.rcpts,
                data,
                user: self.user.clone(),
                tls: self.tls,
            };
            let mut record = self.shared.record();
            if record.keep_messages > 0 {
                if record.messages.len() >= record.keep_messages {
                    record.messages.pop_front();
                }
                record.messages.push_back(message);
            }
        }
        Ok(())
    }

    /// Reads up to the final dot. `None` when the message exceeded the size bound (the
    /// rest is read and dropped so the session stays in sync).
    async fn read_message(&mut self) -> Result<Option<Vec<u8>>, End> {
        let max = self.config.max_message_size;
        let mut data = Vec::new();
        let mut too_big = false;
        loop {
            let line = match self.io.read_line(max.saturating_add(2)).await? {
                Line::Data(line) => line,
                Line::TooLong => {
                    too_big = true;
                    data = Vec::new();
                    continue;
                }
                Line::Eof => return Err(End::Eof),
            };
            if trim_line_end(&line) == b"." {
                return Ok(if too_big { None } else { Some(data) });
            }
            if too_big {
                continue;
            }
            let content = line.strip_prefix(b".").unwrap_or(&line);
            if data.len() + content.len() > max {
                too_big = true;
                data = Vec::new();
                continue;
            }
            data.extend_from_slice(content);
        }
    }
}

fn random_id(len: usize) -> String {
    const ALPHABET: &[u8] = b"0123456789ABCDEF";
    let mut rng = rand::rng();
    (0..len)
        .map(|_| ALPHABET[rng.random_range(0..ALPHABET.len())] as char)
        .collect()
}
