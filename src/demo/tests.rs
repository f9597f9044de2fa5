//! Unit tests for the demo server and relay, driven by a deliberately dumb raw client so
//! that what is asserted is exactly what crosses the wire.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD as B64;
use rustls::ClientConfig;
use rustls_pki_types::ServerName;
use tokio::io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt, BufReader};
use tokio::net::TcpStream;
use tokio_rustls::TlsConnector;
use tokio_rustls::client::TlsStream;

use super::*;

const WAIT: Duration = Duration::from_secs(5);

enum Wire {
    Plain(BufReader<TcpStream>),
    Tls(Box<BufReader<TlsStream<TcpStream>>>),
    Gone,
}

struct Client {
    wire: Wire,
}

impl Client {
    async fn connect(addr: SocketAddr) -> Client {
        let tcp = TcpStream::connect(addr).await.unwrap();
        Client {
            wire: Wire::Plain(BufReader::new(tcp)),
        }
    }

    async fn connect_tls(addr: SocketAddr, config: Arc<ClientConfig>, name: &str) -> Client {
        let mut c = Client::connect(addr).await;
        c.handshake(config, name).await.unwrap();
        c
    }

    async fn handshake(&mut self, config: Arc<ClientConfig>, name: &str) -> std::io::Result<()> {
        let Wire::Plain(reader) = std::mem::replace(&mut self.wire, Wire::Gone) else {
            panic!("handshake on a non-plain stream");
        };
        assert!(reader.buffer().is_empty(), "server sent bytes before TLS");
        let name = ServerName::try_from(name.to_owned()).unwrap();
        let tls = TlsConnector::from(config)
            .connect(name, reader.into_inner())
            .await?;
        self.wire = Wire::Tls(Box::new(BufReader::new(tls)));
        Ok(())
    }

    async fn send(&mut self, bytes: &[u8]) {
        match &mut self.wire {
            Wire::Plain(r) => r.get_mut().write_all(bytes).await.unwrap(),
            Wire::Tls(r) => {
                r.get_mut().write_all(bytes).await.unwrap();
                r.get_mut().flush().await.unwrap();
            }
            Wire::Gone => panic!("gone"),
        }
    }

    /// One raw line, or `None` at EOF.
    async fn line(&mut self) -> std::io::Result<Option<String>> {
        let mut line = String::new();
        let n = match &mut self.wire {
            Wire::Plain(r) => r.read_line(&mut line).await?,
            Wire::Tls(r) => r.read_line(&mut line).await?,
            Wire::Gone => 0,
        };
        Ok((n > 0).then_some(line))
    }

    /// A complete (possibly multi-line) reply, lines joined with `\n`, CRLFs stripped.
    async fn reply(&mut self) -> String {
        let mut lines = Vec::new();
        loop {
            let line = tokio::time::timeout(WAIT, self.line())
                .await
                .expect("reply timed out")
                .unwrap()
                .expect("EOF while waiting for a reply");
            let line = line.trim_end_matches(['\r', '\n']).to_owned();
            let last = line.as_bytes().get(3) != Some(&b'-');
            lines.push(line);
            if last {
                return lines.join("\n");
            }
        }
    }

    async fn cmd(&mut self, line: &str) -> String {
        self.send(format!("{line}\r\n").as_bytes()).await;
        self.reply().await
    }

    async fn starttls(&mut self, config: Arc<ClientConfig>, name: &str) {
        let r = self.cmd("STARTTLS").await;
        assert!(r.starts_with("220"), "{r}");
        self.handshake(config, name).await.unwrap();
    }
}

fn plain(user: &str, pass: &str) -> String {
    B64.encode(format!("\0{user}\0{pass}"))
}

fn tls_server(pki: &Pki) -> SmtpServer {
    SmtpServer::new().starttls(pki.server_config().unwrap())
}

/// Greeting, EHLO, STARTTLS, EHLO, ready for AUTH.
async fn tls_session(addr: SocketAddr, pki: &Pki) -> Client {
    let mut c = Client::connect(addr).await;
    assert!(c.reply().await.starts_with("220 "));
    c.cmd("EHLO client.test").await;
    c.starttls(pki.client_config().unwrap(), "localhost").await;
    let ehlo = c.cmd("EHLO client.test").await;
    assert!(ehlo.starts_with("250-"), "{ehlo}");
    c
}

async fn send_message(c: &mut Client, body: &str) -> String {
    assert!(c.cmd("MAIL FROM:<a@example.com>").await.starts_with("250"));
    assert!(c.cmd("RCPT TO:<b@example.com>").await.starts_with("250"));
    assert!(c.cmd("DATA").await.starts_with("354"));
    c.send(format!("{body}\r\n.\r\n").as_bytes()).await;
    c.reply().await
}

#[tokio::test]
async fn happy_path_records_message_and_tls_state() {
    let pki = Pki::generate(&["localhost", "127.0.0.1", "smtp.demo.invalid"]).unwrap();
    let server = tls_server(&pki)
        .users([("alice@example.com", "s3cret")])
        .start()
        .await
        .unwrap();
    let mut c = Client::connect(server.local_addr()).await;
    assert!(c.reply().await.starts_with("220 "));
    let ehlo = c.cmd("EHLO client.test").await;
    for cap in [
        "PIPELINING",
        "SIZE 10485760",
        "8BITMIME",
        "ENHANCEDSTATUSCODES",
        "STARTTLS",
    ] {
        assert!(ehlo.contains(cap), "{cap} missing in {ehlo}");
    }
    assert!(!ehlo.contains("AUTH"), "AUTH offered before TLS: {ehlo}");
    c.starttls(pki.client_config().unwrap(), "localhost").await;
    let ehlo = c.cmd("EHLO client.test").await;
    assert!(ehlo.contains("250-AUTH PLAIN LOGIN"), "{ehlo}");
    assert!(!ehlo.contains("STARTTLS"), "{ehlo}");
    let auth = c
        .cmd(&format!(
            "AUTH PLAIN {}",
            plain("alice@example.com", "s3cret")
        ))
        .await;
    assert_eq!(auth, "235 2.7.0 Authentication successful");
    let queued = send_message(&mut c, "Subject: hi\r\n\r\n..dot\r\nline").await;
    assert!(queued.starts_with("250 2.0.0 Ok"), "{queued}");
    assert_eq!(c.cmd("QUIT").await, "221 2.0.0 Bye");

    let messages = server.messages();
    assert_eq!(messages.len(), 1);
    let m = &messages[0];
    assert_eq!(m.mail_from, "a@example.com");
    assert_eq!(m.rcpt_to, vec!["b@example.com".to_owned()]);
    assert_eq!(m.text(), "Subject: hi\r\n\r\n.dot\r\nline\r\n");
    assert_eq!(m.user.as_deref(), Some("alice@example.com"));
    assert!(m.tls);

    let s = &server.sessions()[0];
    assert_eq!(server.connection_count(), 1);
    assert_eq!(s.tls_version.as_deref(), Some("TLSv1.3"));
    assert_eq!(s.sni.as_deref(), Some("localhost"));
    assert_eq!(s.user.as_deref(), Some("alice@example.com"));
    assert!(!s.lines[0].tls && s.lines[0].line == "EHLO client.test");
    assert!(!s.lines[1].tls && s.lines[1].line == "STARTTLS");
    assert!(s.lines[2].tls && s.lines[2].line == "EHLO client.test");
    assert!(s.sent("auth") && s.sent("QUIT"));
    // The raw payload is kept for tests to assert on.
    assert!(s.lines[3].line.starts_with("AUTH PLAIN AGFsaWNl"));
}

#[tokio::test]
async fn auth_login_continuations_and_wrong_password() {
    let pki = Pki::generate(&["localhost"]).unwrap();
    let server = tls_server(&pki)
        .users([("bob", "pw")])
        .start()
        .await
        .unwrap();
    let mut c = tls_session(server.local_addr(), &pki).await;
    assert_eq!(c.cmd("AUTH LOGIN").await, "334 VXNlcm5hbWU6");
    assert_eq!(c.cmd(&B64.encode("bob")).await, "334 UGFzc3dvcmQ6");
    assert!(c.cmd(&B64.encode("nope")).await.starts_with("535 5.7.8"));
    // LOGIN with the username as initial response.
    assert_eq!(
        c.cmd(&format!("AUTH LOGIN {}", B64.encode("bob"))).await,
        "334 UGFzc3dvcmQ6"
    );
    assert!(c.cmd(&B64.encode("pw")).await.starts_with("235"));
    assert!(c.cmd("AUTH LOGIN").await.starts_with("503"));
    // PLAIN without initial response.
    let mut c = tls_session(server.local_addr(), &pki).await;
    assert_eq!(c.cmd("AUTH PLAIN").await, "334 ");
    assert!(c.cmd(&plain("bob", "pw")).await.starts_with("235"));
    let lines = server.sessions()[0].line_texts();
    assert_eq!(lines[4], B64.encode("bob"), "continuations are recorded");
}

#[tokio::test]
async fn auth_is_refused_and_hidden_before_tls() {
    let pki = Pki::generate(&["localhost"]).unwrap();
    let server = tls_server(&pki).start().await.unwrap();
    let mut c = Client::connect(server.local_addr()).await;
    c.reply().await;
    c.cmd("EHLO x").await;
    assert!(c.cmd("AUTH PLAIN AGEAYg==").await.starts_with("538 5.7.11"));
    assert!(c.cmd("MAIL FROM:<a@b>").await.starts_with("530"));

    let open = SmtpServer::new()
        .auth_without_tls(true)
        .start()
        .await
        .unwrap();
    let mut c = Client::connect(open.local_addr()).await;
    c.reply().await;
    let ehlo = c.cmd("EHLO x").await;
    assert!(
        ehlo.contains("AUTH PLAIN LOGIN") && !ehlo.contains("STARTTLS"),
        "{ehlo}"
    );
    assert!(c.cmd("AUTH PLAIN AGEAYg==").await.starts_with("235"));
}

#[tokio::test]
async fn scripted_auth_reply_and_reply_delay() {
    let pki = Pki::generate(&["localhost"]).unwrap();
    let script = Script::new()
        .on(
            Stage::Auth,
            Action::reply("535-5.7.139 Authentication unsuccessful, a\r\n535 5.7.139 b"),
        )
        .reply_delay(Duration::from_millis(50));
    let server = tls_server(&pki).script(script).start().await.unwrap();
    let mut c = tls_session(server.local_addr(), &pki).await;
    let started = Instant::now();
    let r = c.cmd(&format!("AUTH PLAIN {}", plain("u", "p"))).await;
    assert!(started.elapsed() >= Duration::from_millis(50));
    assert_eq!(
        r,
        "535-5.7.139 Authentication unsuccessful, a\n535 5.7.139 b"
    );
    // Not authenticated, so MAIL is refused.
    assert!(c.cmd("MAIL FROM:<a@b>").await.starts_with("530"));
    assert_eq!(server.sessions()[0].user, None);
}

#[tokio::test]
async fn stage_delay_applies_only_to_its_stage() {
    let server = SmtpServer::new()
        .require_auth(false)
        .script(Script::new().delay_at(Stage::Mail, Duration::from_millis(150)))
        .start()
        .await
        .unwrap();
    let mut c = Client::connect(server.local_addr()).await;
    let started = Instant::now();
    c.reply().await;
    c.cmd("EHLO x").await;
    assert!(started.elapsed() < Duration::from_millis(150));
    let started = Instant::now();
    assert!(c.cmd("MAIL FROM:<>").await.starts_with("250"));
    assert!(started.elapsed() >= Duration::from_millis(150));
}

#[tokio::test]
async fn silent_never_replies() {
    let server = SmtpServer::new()
        .script(Script::new().on(Stage::Greeting, Action::Silent))
        .start()
        .await
        .unwrap();
    let mut c = Client::connect(server.local_addr()).await;
    let waited = tokio::time::timeout(Duration::from_millis(200), c.line()).await;
    assert!(waited.is_err(), "server spoke: {waited:?}");
    c.send(b"EHLO x\r\n").await;
    let waited = tokio::time::timeout(Duration::from_millis(200), c.line()).await;
    assert!(waited.is_err(), "server spoke: {waited:?}");
}

#[tokio::test]
async fn close_reset_raw_and_trickle() {
    let script = Script::new()
        .on(
            Stage::Greeting,
            Rule::new(Action::Close).only(Only::Connection(1)),
        )
        .on(
            Stage::Greeting,
            Rule::new(Action::Reset).only(Only::Connection(2)),
        )
        .on(
            Stage::Greeting,
            Rule::new(Action::raw("HTTP/1.1 400 Bad Request\r\n")).only(Only::Connection(3)),
        )
        .on(
            Stage::Greeting,
            Rule::new(Action::trickle("220 slow", Duration::from_millis(20)))
                .only(Only::Connection(4)),
        );
    let server = SmtpServer::new().script(script).start().await.unwrap();
    let addr = server.local_addr();

    let mut c = Client::connect(addr).await;
    assert!(c.line().await.unwrap().is_none(), "expected EOF");

    let mut c = Client::connect(addr).await;
    let err = c.line().await.unwrap_err();
    assert_eq!(err.kind(), std::io::ErrorKind::ConnectionReset);

    let mut c = Client::connect(addr).await;
    assert_eq!(c.reply().await, "HTTP/1.1 400 Bad Request");

    let mut c = Client::connect(addr).await;
    let started = Instant::now();
    assert_eq!(c.reply().await, "220 slow");
    assert!(started.elapsed() >= Duration::from_millis(20 * 9));

    let mut c = Client::connect(addr).await;
    assert!(c.reply().await.starts_with("220 smtp.test.invalid"));
    assert_eq!(server.connection_count(), 5);
}

#[tokio::test]
async fn flood_sends_a_long_line_without_newline() {
    let server = SmtpServer::new()
        .script(Script::new().on(Stage::Greeting, Action::flood(1024 * 1024)))
        .start()
        .await
        .unwrap();
    let mut tcp = TcpStream::connect(server.local_addr()).await.unwrap();
    let mut buf = vec![0u8; 64 * 1024];
    let mut total = 0;
    while total < 1024 * 1024 {
        let n = tcp.read(&mut buf).await.unwrap();
        assert!(n > 0);
        assert!(!buf[..n].contains(&b'\n'));
        total += n;
    }
    assert_eq!(total, 1024 * 1024);
}

#[tokio::test]
async fn overlong_lines_and_messages_are_bounded() {
    let server = SmtpServer::new()
        .require_auth(false)
        .max_message_size(1000)
        .start()
        .await
        .unwrap();
    let mut c = Client::connect(server.local_addr()).await;
    c.reply().await;
    let long = format!("NOOP {}", "x".repeat(40_000));
    assert!(c.cmd(&long).await.starts_with("500 5.5.2"));
    assert!(c.cmd("EHLO x").await.contains("SIZE 1000"));
    let r = send_message(&mut c, &"y".repeat(2000)).await;
    assert!(r.starts_with("552 5.3.4"), "{r}");
    // The session is still in sync afterwards.
    assert!(c.cmd("NOOP").await.starts_with("250"));
    assert!(c.cmd("MAIL FROM:<a@b> SIZE=5000").await.starts_with("552"));
    assert!(server.messages().is_empty());
}

#[tokio::test]
async fn sequence_errors_and_pipelining() {
    let server = SmtpServer::new().require_auth(false).start().await.unwrap();
    let mut c = Client::connect(server.local_addr()).await;
    c.reply().await;
    assert!(c.cmd("MAIL FROM:<a@b>").await.starts_with("503"));
    c.cmd("EHLO x").await;
    assert!(c.cmd("RCPT TO:<a@b>").await.starts_with("503"));
    assert!(c.cmd("DATA").await.starts_with("503"));
    assert!(c.cmd("BOGUS").await.starts_with("500"));
    c.send(b"MAIL FROM:<a@b>\r\nRCPT TO:<c@d>\r\nRCPT TO:<e@f>\r\nDATA\r\n")
        .await;
    for expected in ["250 2.1.0", "250 2.1.5", "250 2.1.5", "354"] {
        let r = c.reply().await;
        assert!(r.starts_with(expected), "{r}");
    }
    c.send(b"body\r\n.\r\nRSET\r\nNOOP\r\n").await;
    assert!(c.reply().await.starts_with("250 2.0.0 Ok: queued"));
    assert!(c.reply().await.starts_with("250"));
    assert!(c.reply().await.starts_with("250"));
    assert_eq!(server.messages()[0].rcpt_to.len(), 2);
}

#[tokio::test]
async fn xoauth2_good_and_bad_token() {
    let pki = Pki::generate(&["localhost"]).unwrap();
    let server = tls_server(&pki)
        .with_xoauth2()
        .users([("carol@example.com", "tok")])
        .start()
        .await
        .unwrap();
    let ir = |token: &str| {
        B64.encode(format!(
            "user=carol@example.com\x01auth=Bearer {token}\x01\x01"
        ))
    };
    let mut c = tls_session(server.local_addr(), &pki).await;
    let r = c.cmd(&format!("AUTH XOAUTH2 {}", ir("bad"))).await;
    assert!(r.starts_with("334 eyJ"), "{r}");
    let json = B64.decode(&r[4..]).unwrap();
    assert!(
        String::from_utf8(json)
            .unwrap()
            .contains("\"status\":\"400\"")
    );
    assert!(c.cmd("").await.starts_with("535 5.7.8"));
    assert!(
        c.cmd(&format!("AUTH XOAUTH2 {}", ir("tok")))
            .await
            .starts_with("235")
    );
    let lines = server.sessions()[0].line_texts();
    assert!(
        lines.iter().any(String::is_empty),
        "the empty answer to the challenge is recorded"
    );
}

#[tokio::test]
async fn implicit_tls_handshakes_before_greeting() {
    let pki = Pki::generate(&["localhost", "127.0.0.1"]).unwrap();
    let server = SmtpServer::new()
        .implicit_tls(pki.server_config().unwrap())
        .start()
        .await
        .unwrap();
    let config = pki.client_config().unwrap();
    let mut c = Client::connect_tls(server.local_addr(), config, "127.0.0.1").await;
    assert!(c.reply().await.starts_with("220 "));
    let ehlo = c.cmd("EHLO x").await;
    assert!(
        ehlo.contains("AUTH PLAIN LOGIN") && !ehlo.contains("STARTTLS"),
        "{ehlo}"
    );
    assert!(server.sessions()[0].lines[0].tls);
}

#[tokio::test]
async fn untrusted_ca_and_wrong_name_fail_the_handshake() {
    let pki = Pki::generate(&["localhost"]).unwrap();
    let server = tls_server(&pki).start().await.unwrap();
    let other = Ca::new("someone else").unwrap();
    for (config, name) in [
        (other.client_config().unwrap(), "localhost"),
        (pki.client_config().unwrap(), "smtp.other.invalid"),
    ] {
        let mut c = Client::connect(server.local_addr()).await;
        c.reply().await;
        c.cmd("EHLO x").await;
        assert!(c.cmd("STARTTLS").await.starts_with("220"));
        assert!(c.handshake(config, name).await.is_err());
    }
    // Give the server a moment to see the client's alert.
    tokio::time::sleep(Duration::from_millis(100)).await;
    for s in server.sessions() {
        assert!(s.tls_error.is_some(), "{s:?}");
        assert!(s.tls_version.is_none());
    }
}

#[tokio::test]
async fn hidden_starttls_and_auth() {
    let pki = Pki::generate(&["localhost"]).unwrap();
    let server = tls_server(&pki)
        .auth_without_tls(true)
        .script(Script::new().without_starttls().without_auth())
        .start()
        .await
        .unwrap();
    let mut c = Client::connect(server.local_addr()).await;
    c.reply().await;
    let ehlo = c.cmd("EHLO x").await;
    assert!(
        !ehlo.contains("STARTTLS") && !ehlo.contains("AUTH"),
        "{ehlo}"
    );
    assert!(c.cmd("STARTTLS").await.starts_with("454"));
    assert!(c.cmd("AUTH PLAIN AGEAYg==").await.starts_with("503"));
}

#[tokio::test]
async fn message_filters_and_scripted_data_end() {
    let script = Script::new()
        .on(
            Stage::DataEnd,
            Rule::new(Action::reply("451 4.3.0 try later")).only(Only::Message(2)),
        )
        .on(
            Stage::Rcpt,
            Rule::new(Action::reply("550 5.1.1 no such user")).only(Only::Message(3)),
        );
    let server = SmtpServer::new()
        .require_auth(false)
        .script(script)
        .start()
        .await
        .unwrap();
    let mut c = Client::connect(server.local_addr()).await;
    c.reply().await;
    c.cmd("EHLO x").await;
    assert!(send_message(&mut c, "one").await.starts_with("250"));
    assert!(send_message(&mut c, "two").await.starts_with("451 4.3.0"));
    assert!(c.cmd("MAIL FROM:<a@b>").await.starts_with("250"));
    assert!(c.cmd("RCPT TO:<x@y>").await.starts_with("550 5.1.1"));
    assert!(c.cmd("DATA").await.starts_with("554"));
    assert_eq!(server.messages().len(), 1);
    assert_eq!(server.message_count(), 3);
}

#[tokio::test]
async fn shutdown_closes_the_port() {
    let server = SmtpServer::new().start().await.unwrap();
    let addr = server.local_addr();
    let mut c = Client::connect(addr).await;
    c.reply().await;
    server.shutdown().await;
    assert!(TcpStream::connect(addr).await.is_err());
    // The open connection was aborted too.
    let end = tokio::time::timeout(WAIT, c.line()).await.unwrap();
    assert!(matches!(end, Ok(None) | Err(_)), "{end:?}");
}

// ----------------------------------------------------------------------------------------
// Demo relay
// ----------------------------------------------------------------------------------------

fn relay_client_config(relay: &DemoRelay) -> Arc<ClientConfig> {
    let mut roots = rustls::RootCertStore::empty();
    roots.add(relay.ca_der()).unwrap();
    Arc::new(
        ClientConfig::builder_with_provider(
            Arc::new(rustls::crypto::aws_lc_rs::default_provider()),
        )
        .with_safe_default_protocol_versions()
        .unwrap()
        .with_root_certificates(roots)
        .with_no_client_auth(),
    )
}

/// Connects to the relay, upgrades to TLS and authenticates with AUTH LOGIN.
async fn relay_login(relay: &DemoRelay, user: &str, password: &str) -> (Client, String) {
    let mut c = Client::connect(relay.addr()).await;
    c.reply().await;
    c.cmd("EHLO client.test").await;
    c.starttls(relay_client_config(relay), "127.0.0.1").await;
    c.cmd("EHLO client.test").await;
    assert_eq!(c.cmd("AUTH LOGIN").await, "334 VXNlcm5hbWU6");
    c.cmd(&B64.encode(user)).await;
    let r = c.cmd(&B64.encode(password)).await;
    (c, r)
}

#[tokio::test]
async fn demo_relay_speaks_like_exchange_online() {
    let relay = DemoRelay::start().await.unwrap();
    let host = relay.hostname().to_owned();
    assert!(host.starts_with("DM6PR") && host.ends_with(".prod.outlook.com"));
    assert!(relay.ca_pem().starts_with("-----BEGIN CERTIFICATE-----"));
    let mut c = Client::connect(relay.addr()).await;
    let greeting = c.reply().await;
    assert!(
        greeting.starts_with(&format!(
            "220 {host} Microsoft ESMTP MAIL Service ready at "
        )),
        "{greeting}"
    );
    let ehlo = c.cmd("EHLO client.test").await;
    assert!(
        ehlo.starts_with(&format!("250-{host} Hello [127.0.0.1]")),
        "{ehlo}"
    );
    assert!(
        ehlo.contains("250-STARTTLS") && !ehlo.contains("AUTH"),
        "{ehlo}"
    );
    assert!(c.cmd("MAIL FROM:<a@b>").await.starts_with("530 5.7.57"));
    c.starttls(relay_client_config(&relay), "localhost").await;
    let ehlo = c.cmd("EHLO client.test").await;
    assert!(ehlo.contains("250-AUTH LOGIN XOAUTH2"), "{ehlo}");
    assert!(c.cmd("AUTH PLAIN AGEAYg==").await.starts_with("504"));

    let (mut c, r) = relay_login(&relay, "canary@contoso.com", &relay.password()).await;
    assert_eq!(r, "235 2.7.0 Authentication successful");
    assert_eq!(
        c.cmd("MAIL FROM:<canary@contoso.com>").await,
        "250 2.1.0 Sender OK"
    );
    assert_eq!(
        c.cmd("RCPT TO:<sink@contoso.com>").await,
        "250 2.1.5 Recipient OK"
    );
    assert_eq!(
        c.cmd("DATA").await,
        "354 Start mail input; end with <CRLF>.<CRLF>"
    );
    c.send(b"Message-ID: <abc@canary>\r\nSubject: x\r\n\r\nhi\r\n.\r\n")
        .await;
    assert_eq!(
        c.reply().await,
        format!("250 2.0.0 OK <abc@canary> [Hostname={host}]")
    );
    assert_eq!(
        c.cmd("QUIT").await,
        "221 2.0.0 Service closing transmission channel"
    );

    let (_c, r) = relay_login(&relay, "canary@contoso.com", "wrong").await;
    assert_eq!(r, format!("535 5.7.3 Authentication unsuccessful [{host}]"));

    // XOAUTH2 with the password as token; a bad one gets 535 at once, no 334.
    let mut c = Client::connect(relay.addr()).await;
    c.reply().await;
    c.cmd("EHLO x").await;
    c.starttls(relay_client_config(&relay), "127.0.0.1").await;
    c.cmd("EHLO x").await;
    let ir = |t: &str| {
        B64.encode(format!(
            "user=canary@contoso.com\x01auth=Bearer {t}\x01\x01"
        ))
    };
    assert!(
        c.cmd(&format!("AUTH XOAUTH2 {}", ir("bad")))
            .await
            .starts_with("535 5.7.3")
    );
    let ok = c
        .cmd(&format!("AUTH XOAUTH2 {}", ir(&relay.password())))
        .await;
    assert!(ok.starts_with("235"), "{ok}");
}

#[tokio::test]
async fn demo_accounts_fail_as_specified() {
    let relay = DemoRelay::start().await.unwrap();
    let pw = relay.password();
    let (_c, r) = relay_login(&relay, "smtp-auth-disabled@contoso.com", &pw).await;
    assert!(
        r.starts_with("535 5.7.139 Authentication unsuccessful, SmtpClientAuthentication is disabled for the Mailbox. Visit https://aka.ms/smtp_auth_disabled"),
        "{r}"
    );
    let (_c, r) = relay_login(&relay, "Basic-Auth-Disabled@contoso.com", &pw).await;
    assert!(
        r.starts_with("535 5.7.139 Authentication unsuccessful, basic authentication is disabled."),
        "{r}"
    );
    // A wrong password is 5.7.3 even for a policy-blocked account.
    let (_c, r) = relay_login(&relay, "smtp-auth-disabled@contoso.com", "nope").await;
    assert!(r.starts_with("535 5.7.3"), "{r}");

    let (mut c, r) = relay_login(&relay, "quota-exceeded@contoso.com", &pw).await;
    assert!(r.starts_with("235"));
    let r = send_message(&mut c, "Subject: q\r\n\r\nbody").await;
    assert!(
        r.starts_with("554 5.2.0 STOREDRV.Submission.Exception:SubmissionQuotaExceededException; Failed to process message due to a permanent exception with message"),
        "{r}"
    );
    let (mut c, _) = relay_login(&relay, "send-as-denied@contoso.com", &pw).await;
    assert!(c.cmd("MAIL FROM:<x@y>").await.starts_with("550 5.7.60"));
    assert!(relay.server().messages().is_empty());
}

#[tokio::test]
async fn demo_relay_throttles_every_seventh_message() {
    let relay = DemoRelay::start().await.unwrap();
    let pw = relay.password();
    for n in 1..=8 {
        // One message per connection, as the probe does.
        let (mut c, r) = relay_login(&relay, "canary@contoso.com", &pw).await;
        assert!(r.starts_with("235"));
        let r = send_message(&mut c, "Subject: t\r\n\r\nbody").await;
        if n == 7 {
            assert!(
                r.starts_with(
                    "432 4.3.2 STOREDRV.ClientSubmit; sender thread limit exceeded [Hostname=DM6PR"
                ),
                "{r}"
            );
        } else {
            assert!(r.starts_with("250 2.0.0 OK <"), "message {n}: {r}");
        }
    }
    assert_eq!(relay.server().messages().len(), 7);
}

#[tokio::test]
async fn malformed_client_input_is_answered_not_panicked_on() {
    let pki = Pki::generate(&["localhost"]).unwrap();
    let server = tls_server(&pki).with_xoauth2().start().await.unwrap();
    let mut c = tls_session(server.local_addr(), &pki).await;
    let odd = B64.encode("user=x\x01auth=b\u{e9}\u{20ac}rer tok\x01\x01");
    assert!(
        c.cmd(&format!("AUTH XOAUTH2 {odd}"))
            .await
            .starts_with("501")
    );
    assert!(c.cmd("AUTH PLAIN !!!not-base64").await.starts_with("501"));
    assert!(
        c.cmd(&format!("AUTH PLAIN {}", B64.encode("no-nuls")))
            .await
            .starts_with("501")
    );
    assert!(c.cmd("AUTH LOGIN").await.starts_with("334"));
    assert!(c.cmd("*").await.starts_with("501"));
    assert!(c.cmd("AUTH CRAM-MD5").await.starts_with("504"));
    c.send(b"\xff\xfe\x00garbage\r\n").await;
    assert!(c.reply().await.starts_with("500"));
    assert!(
        c.cmd(&format!("AUTH PLAIN {}", plain("u", "p")))
            .await
            .starts_with("235")
    );
    assert!(c.cmd("MAIL FROM:a@b").await.starts_with("501"));
    assert!(c.cmd("MAIL FROM:<\u{e9}@b>").await.starts_with("250"));
    assert!(c.cmd("RCPT TO:<>").await.starts_with("501"));
    assert!(c.cmd("NOOP").await.starts_with("250"));
}
