//! The session: one client connection, command by command.

use super::*;

pub(super) struct Transaction {
    pub(super) number: usize,
    pub(super) from: String,
    pub(super) rcpts: Vec<String>,
}

/// The outcome of one SASL continuation.
pub(super) enum Step {
    Response(String),
    Refused(&'static str),
}

pub(super) struct Session {
    pub(super) io: Io,
    pub(super) config: Arc<SmtpServer>,
    pub(super) shared: Arc<Shared>,
    pub(super) connection: usize,
    pub(super) peer: SocketAddr,
    pub(super) tls: bool,
    pub(super) ehlo: bool,
    pub(super) user: Option<String>,
    pub(super) overlay: Option<Script>,
    pub(super) transaction: Option<Transaction>,
    pub(super) queue_id: String,
    pub(super) message_id: String,
}

impl Session {
    pub(super) fn new(
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

    pub(super) async fn run(mut self) {
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

    pub(super) async fn serve(&mut self) -> Result<(), End> {
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

    pub(super) fn record_line(&self, text: &str) {
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

    pub(super) fn message_number(&self) -> usize {
        self.transaction.as_ref().map_or(0, |t| t.number)
    }

    /// The scripted action and extra delay for `stage`, the session's overlay first.
    pub(super) fn rule(&self, stage: Stage) -> (Action, Duration) {
        let message = self.message_number();
        self.overlay
            .as_ref()
            .and_then(|o| o.rule(stage, self.connection, message))
            .or_else(|| self.config.script.rule(stage, self.connection, message))
            .map_or((Action::Default, Duration::ZERO), |r| {
                (r.action.clone(), r.delay)
            })
    }

    pub(super) fn expand(&self, text: &str) -> String {
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
    pub(super) fn wire(&self, text: &str) -> Vec<u8> {
        let mut out = Vec::with_capacity(text.len() + 2);
        for line in self.expand(text).lines() {
            out.extend_from_slice(line.as_bytes());
            out.extend_from_slice(b"\r\n");
        }
        out
    }

    /// Sends an unscripted reply (after the script's per-reply delay).
    pub(super) async fn send(&mut self, text: &str) -> Result<Option<u8>, End> {
        self.pause(self.config.script.reply_delay).await;
        let bytes = self.wire(text);
        self.io.write(&bytes).await?;
        Ok(bytes.first().copied())
    }

    pub(super) async fn pause(&self, delay: Duration) {
        if !delay.is_zero() {
            tokio::time::sleep(delay).await;
        }
    }

    /// Runs `stage`: its scripted action, or `default` as the reply. Returns the first
    /// byte sent (the reply's code class); `Err` when the connection is over.
    pub(super) async fn respond(&mut self, stage: Stage, default: &str) -> Result<Option<u8>, End> {
        let (action, delay) = self.rule(stage);
        self.act(action, delay, default).await
    }

    pub(super) async fn act(
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

    pub(super) async fn handshake(&mut self, config: Arc<ServerConfig>) -> Result<(), End> {
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

    pub(super) fn offers_starttls(&self) -> bool {
        matches!(self.config.tls, TlsMode::Starttls(_))
            && !self.tls
            && !self.config.script.hide_starttls
    }

    pub(super) fn offers_auth(&self) -> bool {
        !self.config.script.hide_auth
            && !self.config.mechanisms.is_empty()
            && (self.tls || self.config.auth_without_tls)
    }

    pub(super) fn ehlo_reply(&self, verb: &str) -> String {
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

    pub(super) async fn ehlo(&mut self, verb: &str, args: &str) -> Result<(), End> {
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

    pub(super) async fn starttls(&mut self) -> Result<(), End> {
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
    pub(super) async fn sasl_step(&mut self, challenge: &str) -> Result<Step, End> {
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
    pub(super) async fn collect_credentials(
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

    pub(super) async fn auth(&mut self, args: &str) -> Result<(), End> {
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

    pub(super) async fn mail(&mut self, args: &str) -> Result<(), End> {
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

    pub(super) async fn rcpt(&mut self, args: &str) -> Result<(), End> {
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

    pub(super) async fn data(&mut self) -> Result<(), End> {
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
    pub(super) async fn read_message(&mut self) -> Result<Option<Vec<u8>>, End> {
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

pub(super) fn random_id(len: usize) -> String {
    const ALPHABET: &[u8] = b"0123456789ABCDEF";
    let mut rng = rand::rng();
    (0..len)
        .map(|_| ALPHABET[rng.random_range(0..ALPHABET.len())] as char)
        .collect()
}
