//! One timed SMTP session. Each phase of the contract is measured on its own and has its
//! own deadline inside the probe's total timeout, so a tarpit or a trickling server ends
//! as `timeout` in the phase where it stalled, never as a hung task.

use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime};

use rustls::pki_types::ServerName;
use tokio::io::{AsyncRead, AsyncWrite, AsyncWriteExt, BufReader};
use tokio::net::{TcpSocket, TcpStream};
use tokio::time::timeout_at;

use super::message::Template;
use super::result::{Failure, ProbeResult};
use super::transcript::{Direction, Transcript};
use crate::auth::{self, CredentialSource, Credentials};
use crate::classify::{self, Class, HintInput};
use crate::config::{Mailbox, Mechanism, Security};
use crate::resolve::Resolver;
use crate::smtp::{Phase, ReadError, Reply, read_reply};
use crate::tls::{TlsInfo, TlsTrust};

/// The longest each phase may take, before the probe's total timeout cuts it shorter.
/// AUTH is generous because servers delay failed logins on purpose (Dovecot ~1.6 s).
fn phase_cap(phase: Phase) -> Duration {
    let secs = match phase {
        Phase::Dns => 10,
        Phase::Connect => 10,
        Phase::Tls => 15,
        Phase::Greeting => 20,
        Phase::Ehlo => 10,
        Phase::Starttls => 20,
        Phase::OauthToken => 20,
        Phase::Auth => 20,
        Phase::Mail => 10,
        Phase::Rcpt => 10,
        Phase::Data => 30,
        Phase::Quit => 5,
    };
    Duration::from_secs(secs)
}

/// How long we wait for a polite QUIT after a failure; it is not part of the result.
const PARTING_QUIT: Duration = Duration::from_secs(2);

trait Io: AsyncRead + AsyncWrite + Unpin + Send {}
impl<T: AsyncRead + AsyncWrite + Unpin + Send> Io for T {}
type Conn = BufReader<Box<dyn Io>>;

/// Shared, long-lived probe machinery: resolver, TLS configs and the EHLO name.
/// Build one per process; every probe borrows it.
pub struct Prober {
    resolver: Resolver,
    tls: TlsTrust,
    helo_name: String,
}

/// Options for [`Prober::new`].
#[derive(Debug, Clone, Default)]
pub struct ProberOptions {
    /// `--dns-server`; `None` is the system resolver.
    pub dns_server: Option<SocketAddr>,
    pub helo_name: String,
}

impl Prober {
    pub fn new(opts: ProberOptions) -> Result<Prober, crate::resolve::ResolveError> {
        Ok(Prober {
            resolver: Resolver::new(opts.dns_server)?,
            tls: TlsTrust::new(),
            helo_name: opts.helo_name,
        })
    }

    pub fn resolver(&self) -> &Resolver {
        &self.resolver
    }

    pub fn tls(&self) -> &TlsTrust {
        &self.tls
    }

    pub fn helo_name(&self) -> &str {
        &self.helo_name
    }

    /// Runs one probe of `mb`: the one entry point, for the scheduler, `probe NAME` and
    /// tests alike. Credentials come from `source` (fixed ones, or an OAuth token cache;
    /// `&creds.into()` makes a source of fixed credentials); `hook` is called right before
    /// the message is written (the send gate's permit records the send there). Never
    /// panics on server input and always returns within the mailbox's timeout plus a
    /// short parting QUIT (none after a timeout).
    pub async fn probe(
        &self,
        mb: &Mailbox,
        template: &Template,
        source: &CredentialSource,
        hook: Option<&dyn SendHook>,
    ) -> ProbeResult {
        let probe_id = new_probe_id();
        let start = Instant::now();
        let mut s = Session {
            prober: self,
            mb,
            creds: Credentials::None,
            start,
            deadline: start + mb.timeout,
            phases: Vec::with_capacity(12),
            transcript: Transcript::default(),
            tls: None,
            message_id: None,
            mechanism: None,
            conn: None,
            hook,
        };
        let outcome = match s.credentials(source).await {
            Ok(()) => s.run(template, &probe_id).await,
            Err(f) => Err(f),
        };
        // A rejected token (revoked, permission removed) must not be presented again
        // until it expires: the cache drops it and the next probe fetches a fresh one.
        if let (Err(f), CredentialSource::OAuth(p), Credentials::Bearer { token, .. }) =
            (&outcome, source, &s.creds)
            && f.class == Class::Auth
        {
            p.rejected(token);
        }
        // A failed probe ends at the failure, not after the courtesy QUIT.
        let total = start.elapsed();
        // The one place every consumer reads through (JSON, text, logs, the status page,
        // metrics): whatever the server sent, and whatever we wrote about it, is scrubbed
        // of every form of the credentials before it leaves the session.
        let redactor = s.creds.redactor();
        let failure = match outcome {
            Ok(()) => None,
            Err(mut f) => {
                f.hint = classify::hint(HintInput {
                    provider: mb.provider,
                    class: f.class,
                    code: &f.code,
                    reply: f.reply.as_deref(),
                    uses_password: mb.uses_password(),
                });
                // A server that let a deadline pass will not answer a QUIT in time either
                // (and its stream may stop mid-reply): close instead of waiting another
                // PARTING_QUIT, so a timed-out probe returns at its deadline.
                if f.class != Class::Timeout {
                    s.parting_quit().await;
                }
                if let Some(reply) = &mut f.reply {
                    redactor.scrub_in_place(reply);
                }
                redactor.scrub_in_place(&mut f.error);
                Some(f)
            }
        };
        s.transcript.scrub(&redactor);
        ProbeResult {
            mailbox: mb.name.clone(),
            probe_id,
            failure,
            phases: s.phases,
            total,
            tls: s.tls,
            message_id: s.message_id,
            mechanism: s.mechanism,
            transcript: s.transcript,
            finished_at: SystemTime::now(),
        }
    }
}

/// A probe id: unique enough to find one canary among millions.
pub fn new_probe_id() -> String {
    let now = SystemTime::now()
        .duration_since(SystemTime::UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0);
    format!("{now:x}-{:012x}", rand::random::<u64>() & 0xffff_ffff_ffff)
}

struct Session<'a> {
    prober: &'a Prober,
    mb: &'a Mailbox,
    creds: Credentials,
    start: Instant,
    deadline: Instant,
    phases: Vec<(Phase, Duration)>,
    transcript: Transcript,
    tls: Option<TlsInfo>,
    message_id: Option<String>,
    mechanism: Option<Mechanism>,
    conn: Option<Conn>,
    hook: Option<&'a dyn SendHook>,
}

/// Called right before the message is written (after the server's 354), so a send is on
/// record even if the process dies mid-DATA. `message_id` and `probe_id` name the canary
/// about to go out (delivery tracking writes it down here).
pub trait SendHook: Send + Sync {
    fn before_send<'a>(
        &'a self,
        recipients: u32,
        message_id: &'a str,
        probe_id: &'a str,
    ) -> std::pin::Pin<Box<dyn std::future::Future<Output = ()> + Send + 'a>>;
}

/// Shorthand for a failure that is not a server reply.
fn fail(class: Class, phase: Phase, error: impl Into<String>) -> Failure {
    Failure {
        class,
        phase,
        code: String::new(),
        reply: None,
        error: error.into(),
        hint: String::new(),
    }
}

impl Session<'_> {
    /// Takes the credentials from their source; fetching a token is the `oauth_token`
    /// phase (only when one is actually fetched, not when it comes from the cache).
    async fn credentials(&mut self, source: &CredentialSource) -> Result<(), Failure> {
        let provider = match source {
            CredentialSource::Static(c) => {
                self.creds = c.clone();
                return Ok(());
            }
            CredentialSource::OAuth(p) => p,
        };
        let t = Instant::now();
        let r = timeout_at(self.phase_deadline(Phase::OauthToken), provider.token()).await;
        match r {
            Err(_) => {
                self.record(Phase::OauthToken, t);
                Err(self.timeout(Phase::OauthToken, t))
            }
            Ok(Err(e)) => {
                self.record(Phase::OauthToken, t);
                Err(Failure {
                    class: Class::OauthToken,
                    phase: Phase::OauthToken,
                    code: String::new(),
                    reply: Some(e.description.clone()),
                    error: format!("no access token ({})", e.reason),
                    hint: String::new(),
                })
            }
            Ok(Ok(tok)) => {
                if tok.fetched {
                    self.record(Phase::OauthToken, t);
                    self.note("access token fetched");
                }
                self.creds = Credentials::Bearer {
                    username: tok.username,
                    token: tok.token,
                };
                Ok(())
            }
        }
    }

    async fn run(&mut self, template: &Template, probe_id: &str) -> Result<(), Failure> {
        let addrs = self.resolve().await?;
        let tcp = self.connect(&addrs).await?;
        let mut stream: Box<dyn Io> = Box::new(tcp);
        if self.mb.security == Security::Tls {
            let t = Instant::now();
            let r = self.handshake(Phase::Tls, stream).await;
            self.record(Phase::Tls, t);
            stream = r?;
        }
        self.conn = Some(BufReader::new(stream));

        let t = Instant::now();
        let r = self.expect_greeting().await;
        self.record(Phase::Greeting, t);
        r?;

        let t = Instant::now();
        let ehlo = self.ehlo(Phase::Ehlo).await;
        self.record(Phase::Ehlo, t);
        let mut ehlo = ehlo?;

        if self.mb.security == Security::Starttls {
            let t = Instant::now();
            let r = self.starttls(&ehlo).await;
            self.record(Phase::Starttls, t);
            ehlo = r?;
        }

        if !matches!(self.creds, Credentials::None) {
            let t = Instant::now();
            let r = self.authenticate(&ehlo).await;
            self.record(Phase::Auth, t);
            r?;
        }

        let t = Instant::now();
        let from = format!("MAIL FROM:<{}>", self.mb.from);
        let r = self.simple(Phase::Mail, &from).await;
        self.record(Phase::Mail, t);
        r?;

        let t = Instant::now();
        let r = self.recipients().await;
        self.record(Phase::Rcpt, t);
        r?;

        let t = Instant::now();
        let r = self.data(template, probe_id).await;
        self.record(Phase::Data, t);
        r?;

        // The canary is accepted: a failing QUIT no longer fails the probe.
        let t = Instant::now();
        let q = self.command(Phase::Quit, "QUIT", None).await;
        self.record(Phase::Quit, t);
        if let Err(f) = q {
            self.note(format!(
                "QUIT failed after the message was accepted: {}",
                f.error
            ));
        }
        self.conn = None;
        Ok(())
    }

    fn record(&mut self, phase: Phase, t: Instant) {
        self.phases.push((phase, t.elapsed()));
    }

    fn note(&mut self, text: impl Into<String>) {
        self.transcript.push(self.start, Direction::Note, text);
    }

    /// The deadline of a phase that starts now.
    fn phase_deadline(&self, phase: Phase) -> tokio::time::Instant {
        let d = (Instant::now() + phase_cap(phase)).min(self.deadline);
        tokio::time::Instant::from_std(d)
    }

    fn timeout(&self, phase: Phase, started: Instant) -> Failure {
        let waited = started.elapsed().as_secs_f64();
        let why = if Instant::now() >= self.deadline {
            format!("probe timeout ({:?}) reached", self.mb.timeout)
        } else {
            format!("phase deadline ({:?}) reached", phase_cap(phase))
        };
        fail(
            Class::Timeout,
            phase,
            format!("no answer in {phase} after {waited:.3}s: {why}"),
        )
    }

    async fn resolve(&mut self) -> Result<Vec<IpAddr>, Failure> {
        let host = self.mb.host.trim_start_matches('[').trim_end_matches(']');
        if let Ok(ip) = host.parse::<IpAddr>() {
            return Ok(vec![ip]);
        }
        let t = Instant::now();
        let r = timeout_at(
            self.phase_deadline(Phase::Dns),
            self.prober.resolver.lookup(host),
        )
        .await;
        self.record(Phase::Dns, t);
        match r {
            Err(_) => Err(self.timeout(Phase::Dns, t)),
            Ok(Err(e)) => Err(fail(
                Class::Dns,
                Phase::Dns,
                format!("cannot resolve {host}: {e}"),
            )),
            Ok(Ok(addrs)) => {
                self.note(format!("{host} resolved to {addrs:?}"));
                Ok(addrs)
            }
        }
    }

    async fn connect(&mut self, addrs: &[IpAddr]) -> Result<TcpStream, Failure> {
        let t = Instant::now();
        let deadline = self.phase_deadline(Phase::Connect);
        let mut last_err = String::from("no usable address");
        let source = self.mb.source_address;
        let mut result = None;
        for ip in addrs {
            if source.is_some_and(|s| s.is_ipv4() != ip.is_ipv4()) {
                last_err = format!(
                    "source address {} cannot reach {ip}",
                    source.map(|s| s.to_string()).unwrap_or_default()
                );
                continue;
            }
            let addr = SocketAddr::new(*ip, self.mb.port);
            match timeout_at(deadline, connect_one(addr, source)).await {
                Err(_) => {
                    self.record(Phase::Connect, t);
                    return Err(self.timeout(Phase::Connect, t));
                }
                Ok(Err(e)) => last_err = format!("{addr}: {e}"),
                Ok(Ok(s)) => {
                    self.note(format!("connected to {addr}"));
                    result = Some(s);
                    break;
                }
            }
        }
        self.record(Phase::Connect, t);
        result.ok_or_else(|| fail(Class::Connect, Phase::Connect, last_err))
    }

    async fn handshake(
        &mut self,
        phase: Phase,
        stream: Box<dyn Io>,
    ) -> Result<Box<dyn Io>, Failure> {
        let t = Instant::now();
        let ca = self.mb.tls.ca_file.as_deref();
        let config = self
            .prober
            .tls
            .client_config_async(ca)
            .await
            .map_err(|e| fail(Class::Tls, phase, e.to_string()))?;
        let name = self
            .mb
            .tls
            .server_name
            .as_deref()
            .unwrap_or(self.mb.host.trim_start_matches('[').trim_end_matches(']'));
        let server_name = ServerName::try_from(name.to_owned()).map_err(|e| {
            fail(
                Class::Tls,
                phase,
                format!("invalid TLS server name {name:?}: {e}"),
            )
        })?;
        let connector = tokio_rustls::TlsConnector::from(Arc::clone(&config));
        match timeout_at(
            self.phase_deadline(phase),
            connector.connect(server_name, stream),
        )
        .await
        {
            Err(_) => Err(self.timeout(phase, t)),
            Ok(Err(e)) => Err(fail(
                Class::Tls,
                phase,
                format!("TLS handshake with {name} failed: {e}"),
            )),
            Ok(Ok(tls)) => {
                let info = TlsInfo::from_connection(tls.get_ref().1);
                self.note(format!("TLS established: {}", info.version));
                self.tls = Some(info);
                Ok(Box::new(tls))
            }
        }
    }

    async fn expect_greeting(&mut self) -> Result<(), Failure> {
        let reply = self.read(Phase::Greeting, Instant::now()).await?;
        if reply.code != 220 {
            return Err(self.rejected(Phase::Greeting, &reply));
        }
        Ok(())
    }

    async fn ehlo(&mut self, phase: Phase) -> Result<Reply, Failure> {
        let line = format!("EHLO {}", self.prober.helo_name);
        self.simple(phase, &line).await
    }

    async fn starttls(&mut self, ehlo: &Reply) -> Result<Reply, Failure> {
        if !ehlo.has_capability("STARTTLS") {
            // Never downgrade: without STARTTLS no credentials and no message are sent.
            return Err(fail(
                Class::Tls,
                Phase::Starttls,
                "server did not offer STARTTLS (security: starttls requires it)",
            ));
        }
        self.simple(Phase::Starttls, "STARTTLS").await?;
        let conn = self
            .conn
            .take()
            .ok_or_else(|| fail(Class::Protocol, Phase::Starttls, "no connection"))?;
        if !conn.buffer().is_empty() {
            // Bytes after the 220 would be processed as if they came over TLS
            // (STARTTLS command injection): refuse rather than trust them.
            return Err(fail(
                Class::Protocol,
                Phase::Starttls,
                "server sent data after its STARTTLS reply, before the TLS handshake",
            ));
        }
        let stream = self.handshake(Phase::Starttls, conn.into_inner()).await?;
        self.conn = Some(BufReader::new(stream));
        self.ehlo(Phase::Starttls).await
    }

    async fn authenticate(&mut self, ehlo: &Reply) -> Result<(), Failure> {
        let tls_active = self.tls.is_some();
        if !tls_active && !self.mb.allow_insecure_auth {
            return Err(fail(
                Class::AuthPolicy,
                Phase::Auth,
                "refusing to send credentials without TLS (allow_insecure_auth is false)",
            ));
        }
        let offered = ehlo.capability("AUTH").unwrap_or_default();
        let Some(mech) = self.creds.choose(self.mb.auth_mechanism, &offered) else {
            return Err(fail(
                Class::AuthPolicy,
                Phase::Auth,
                format!(
                    "server offers no usable AUTH mechanism (offered: {}; usable: {})",
                    if offered.is_empty() {
                        "none".to_owned()
                    } else {
                        offered.join(" ")
                    },
                    self.creds
                        .mechanisms()
                        .iter()
                        .map(|m| m.as_str())
                        .collect::<Vec<_>>()
                        .join(" ")
                ),
            ));
        };
        self.mechanism = Some(mech);
        let Some((first, steps)) = auth::exchange(mech, &self.creds) else {
            return Err(fail(
                Class::AuthPolicy,
                Phase::Auth,
                "credentials do not fit the mechanism",
            ));
        };
        let shown = format!("AUTH {} <redacted>", mech.as_str());
        let shown = if mech == Mechanism::Login {
            "AUTH LOGIN".to_owned()
        } else {
            shown
        };
        let mut reply = self
            .command(Phase::Auth, first.expose(), Some(&shown))
            .await?;
        let mut steps = steps.into_iter();
        while reply.code == 334 {
            let Some(step) = steps.next() else {
                return Err(self.rejected(Phase::Auth, &reply));
            };
            reply = self
                .command(Phase::Auth, step.0.expose(), Some("<redacted>"))
                .await?;
        }
        if reply.code != 235 {
            return Err(self.rejected(Phase::Auth, &reply));
        }
        Ok(())
    }

    async fn recipients(&mut self) -> Result<(), Failure> {
        for rcpt in &self.mb.to {
            let line = format!("RCPT TO:<{rcpt}>");
            self.simple(Phase::Rcpt, &line).await?;
        }
        Ok(())
    }

    async fn data(&mut self, template: &Template, probe_id: &str) -> Result<(), Failure> {
        let (message_id, body) = template
            .render(probe_id)
            .map_err(|e| fail(Class::MessageRejected, Phase::Data, e.to_string()))?;
        let reply = self.command(Phase::Data, "DATA", None).await?;
        if reply.code != 354 {
            return Err(self.rejected(Phase::Data, &reply));
        }
        self.message_id = Some(message_id.clone());
        if let Some(hook) = self.hook {
            // A stalled disk must not hold the probe past its deadline; without the send
            // on record the message is not sent at all.
            let recipients = u32::try_from(self.mb.to.len()).unwrap_or(u32::MAX);
            let t = Instant::now();
            if timeout_at(
                self.phase_deadline(Phase::Data),
                hook.before_send(recipients, &message_id, probe_id),
            )
            .await
            .is_err()
            {
                return Err(self.timeout(Phase::Data, t));
            }
        }
        let t = Instant::now();
        let deadline = self.phase_deadline(Phase::Data);
        self.transcript.push(
            self.start,
            Direction::Client,
            format!("<message {} bytes>", body.len()),
        );
        let conn = self.conn_mut(Phase::Data)?;
        match timeout_at(deadline, write_flush(conn, &body)).await {
            Err(_) => return Err(self.timeout(Phase::Data, t)),
            Ok(Err(e)) => {
                return Err(fail(
                    Class::Network,
                    Phase::Data,
                    format!("sending the message failed: {e}"),
                ));
            }
            Ok(Ok(())) => {}
        }
        let reply = self.read(Phase::Data, t).await?;
        if !reply.is_positive() {
            return Err(self.rejected(Phase::Data, &reply));
        }
        Ok(())
    }

    /// Sends a command and requires a positive reply.
    async fn simple(&mut self, phase: Phase, line: &str) -> Result<Reply, Failure> {
        let reply = self.command(phase, line, None).await?;
        if !reply.is_positive() {
            return Err(self.rejected(phase, &reply));
        }
        Ok(reply)
    }

    fn conn_mut(&mut self, phase: Phase) -> Result<&mut Conn, Failure> {
        self.conn
            .as_mut()
            .ok_or_else(|| fail(Class::Network, phase, "connection already closed"))
    }

    /// Sends `line` (shown in the transcript as `shown`, for secrets) and reads the reply.
    async fn command(
        &mut self,
        phase: Phase,
        line: &str,
        shown: Option<&str>,
    ) -> Result<Reply, Failure> {
        let t = Instant::now();
        let deadline = self.phase_deadline(phase);
        self.transcript
            .push(self.start, Direction::Client, shown.unwrap_or(line));
        let mut bytes = Vec::with_capacity(line.len() + 2);
        bytes.extend_from_slice(line.as_bytes());
        bytes.extend_from_slice(b"\r\n");
        let conn = self.conn_mut(phase)?;
        match timeout_at(deadline, write_flush(conn, &bytes)).await {
            Err(_) => return Err(self.timeout(phase, t)),
            Ok(Err(e)) => return Err(fail(Class::Network, phase, format!("write failed: {e}"))),
            Ok(Ok(())) => {}
        }
        self.read(phase, t).await
    }

    /// Reads one reply within the phase deadline (counted from `started`).
    async fn read(&mut self, phase: Phase, started: Instant) -> Result<Reply, Failure> {
        let deadline =
            tokio::time::Instant::from_std((started + phase_cap(phase)).min(self.deadline));
        let conn = self.conn_mut(phase)?;
        let r = timeout_at(deadline, read_reply(conn)).await;
        match r {
            Err(_) => Err(self.timeout(phase, started)),
            Ok(Err(e)) => {
                let class = match e {
                    ReadError::Eof | ReadError::Io(_) => Class::Network,
                    ReadError::LineTooLong | ReadError::TooManyLines | ReadError::Malformed(_) => {
                        Class::Protocol
                    }
                };
                self.note(format!("read failed: {e}"));
                // The stream is unusable after a protocol or network error.
                self.conn = None;
                Err(fail(class, phase, format!("{e} (in {phase})")))
            }
            Ok(Ok(reply)) => {
                for l in reply.raw().lines() {
                    self.transcript.push(self.start, Direction::Server, l);
                }
                Ok(reply)
            }
        }
    }

    /// A failure built from a negative (or unexpected) reply.
    fn rejected(&self, phase: Phase, reply: &Reply) -> Failure {
        let class = if reply.is_positive() {
            Class::Protocol
        } else {
            classify::classify_reply(self.mb.provider, phase, reply)
        };
        let code = if reply.is_positive() {
            String::new()
        } else {
            reply.code_label()
        };
        Failure {
            class,
            phase,
            code,
            reply: Some(reply.raw()),
            error: format!("unexpected reply in {phase}"),
            hint: String::new(),
        }
    }

    /// After a failure on a live connection, say goodbye so the server frees the slot;
    /// bounded by a short deadline and never part of the result.
    async fn parting_quit(&mut self) {
        let Some(conn) = self.conn.as_mut() else {
            return;
        };
        let deadline = tokio::time::Instant::now() + PARTING_QUIT;
        let _ = timeout_at(deadline, async {
            write_flush(conn, b"QUIT\r\n").await.ok()?;
            read_reply(conn).await.ok()
        })
        .await;
        self.conn = None;
    }
}

async fn connect_one(addr: SocketAddr, source: Option<IpAddr>) -> std::io::Result<TcpStream> {
    let socket = if addr.is_ipv4() {
        TcpSocket::new_v4()?
    } else {
        TcpSocket::new_v6()?
    };
    if let Some(src) = source {
        socket.bind(SocketAddr::new(src, 0))?;
    }
    socket.set_nodelay(true)?;
    socket.connect(addr).await
}

async fn write_flush(conn: &mut Conn, bytes: &[u8]) -> std::io::Result<()> {
    let w = conn.get_mut();
    w.write_all(bytes).await?;
    w.flush().await
}
