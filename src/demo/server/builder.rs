//! Builder and handle: [`SmtpServer`] configures a server, [`ServerHandle`] runs it
//! and reads its records.

use super::*;

#[derive(Clone)]
pub(super) enum TlsMode {
    None,
    Starttls(Arc<ServerConfig>),
    Implicit(Arc<ServerConfig>),
}

/// A server under construction; [`SmtpServer::start`] binds and spawns it.
#[derive(Clone)]
pub struct SmtpServer {
    pub(super) tls: TlsMode,
    pub(super) script: Script,
    pub(super) texts: Texts,
    pub(super) hostname: String,
    pub(super) auth_check: AuthCheck,
    pub(super) mechanisms: Vec<Mechanism>,
    pub(super) auth_without_tls: bool,
    pub(super) require_auth: bool,
    pub(super) xoauth2_challenge: bool,
    pub(super) extra_capabilities: Vec<String>,
    pub(super) max_message_size: usize,
    pub(super) max_recipients: usize,
    pub(super) idle_timeout: Duration,
    pub(super) keep_sessions: usize,
    pub(super) keep_messages: usize,
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
    pub(super) local_addr: SocketAddr,
    pub(super) shared: Arc<Shared>,
    pub(super) stop: Option<oneshot::Sender<()>>,
    pub(super) task: Option<JoinHandle<()>>,
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

pub(super) async fn accept_loop(
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

pub(super) fn start_record(shared: &Shared, connection: usize, peer: SocketAddr) {
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
