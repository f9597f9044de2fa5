//! Shared helpers for the integration tests that drive the real prober against the
//! in-process scriptable SMTP server: mailbox and prober builders, a throwaway PKI with
//! its CA in a temp PEM file, a tiny NXDOMAIN DNS responder, a byte-counting TCP proxy
//! and a lock that lets timing-sensitive tests run alone.
//!
//! Nothing here touches the network beyond 127.0.0.1, and no test uses the system
//! resolver: every prober gets an explicit `dns_server`.

#![allow(dead_code)]

use std::io::Write as _;
use std::net::SocketAddr;
use std::path::Path;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use smtp_canary::auth::Credentials;
use smtp_canary::classify::Class;
use smtp_canary::config::{
    AuthConfig, Budget, Limits, Mailbox, Provider, Secret, Security, TlsSettings,
};
use smtp_canary::demo::Pki;
use smtp_canary::demo::server::{Script, ServerHandle, SmtpServer};
use smtp_canary::probe::{Phase, ProbeResult, Prober, ProberOptions, Template};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpSocket, UdpSocket};
use tokio::sync::{RwLock, RwLockReadGuard, RwLockWriteGuard};
use tokio::task::JoinHandle;

pub const USER: &str = "canary@example.com";
pub const PASSWORD: &str = "S3cr3t-Pa55-xyz";
pub const FROM: &str = "canary@example.com";
pub const TO: &str = "sink@example.com";
pub const HELO: &str = "probe.canary.test";

/// Tests with tight timing assertions take this exclusively; every other test shares it,
/// so a 10 ms phase tolerance is not eaten by a neighbouring TLS handshake or flood.
static SERIAL: RwLock<()> = RwLock::const_new(());

pub async fn shared() -> RwLockReadGuard<'static, ()> {
    SERIAL.read().await
}

pub async fn exclusive() -> RwLockWriteGuard<'static, ()> {
    SERIAL.write().await
}

/// A throwaway CA with a leaf for `localhost` and `127.0.0.1`, and the CA's PEM in a temp
/// file for `tls.ca_file`.
pub struct TestPki {
    pub pki: Pki,
    pub ca_file: tempfile::NamedTempFile,
}

impl TestPki {
    pub fn new() -> TestPki {
        let pki = Pki::generate(&["localhost", "127.0.0.1"]).expect("generate PKI");
        let mut ca_file = tempfile::Builder::new()
            .prefix("smtp-canary-test-ca-")
            .suffix(".pem")
            .tempfile()
            .expect("temp CA file");
        ca_file
            .write_all(pki.ca_pem().as_bytes())
            .expect("write CA file");
        ca_file.flush().expect("flush CA file");
        TestPki { pki, ca_file }
    }

    pub fn ca_path(&self) -> &Path {
        self.ca_file.path()
    }

    /// A STARTTLS server presenting the good leaf.
    pub fn starttls_server(&self) -> SmtpServer {
        SmtpServer::new()
            .starttls(self.pki.server_config().expect("server config"))
            .users([(USER, PASSWORD)])
    }

    /// A port-465-style server presenting the good leaf.
    pub fn implicit_server(&self) -> SmtpServer {
        SmtpServer::new()
            .implicit_tls(self.pki.server_config().expect("server config"))
            .users([(USER, PASSWORD)])
    }

    /// A STARTTLS server with `script`, started.
    pub async fn start(&self, script: Script) -> ServerHandle {
        self.starttls_server()
            .script(script)
            .start()
            .await
            .expect("start server")
    }
}

/// A mailbox on 127.0.0.1 that authenticates with [`USER`] / [`PASSWORD`].
pub fn mailbox(name: &str, port: u16, security: Security, ca_file: &Path) -> Mailbox {
    Mailbox {
        name: name.to_owned(),
        provider: Provider::Generic,
        host: "127.0.0.1".to_owned(),
        port,
        security,
        auth: AuthConfig::Password {
            username: USER.to_owned(),
            password: Secret::new(PASSWORD),
        },
        auth_mechanism: None,
        from: FROM.to_owned(),
        to: vec![TO.to_owned()],
        interval: Duration::from_secs(60),
        timeout: Duration::from_secs(5),
        tls: TlsSettings {
            ca_file: Some(ca_file.to_path_buf()),
            server_name: None,
        },
        allow_insecure_auth: false,
        source_address: None,
        limits: Limits::default(),
        budget: Budget::default(),
        line: 0,
    }
}

/// [`mailbox`] with a builder-ish twist for the common overrides.
pub fn mailbox_with(
    name: &str,
    server: &ServerHandle,
    pki: &TestPki,
    f: impl FnOnce(&mut Mailbox),
) -> Mailbox {
    let mut mb = mailbox(
        name,
        server.local_addr().port(),
        Security::Starttls,
        pki.ca_path(),
    );
    f(&mut mb);
    mb
}

/// A UDP port on loopback that nobody answers on: the prober needs *a* DNS server, and
/// this guarantees the system resolver is never consulted (IP-literal hosts never ask).
pub fn unused_dns() -> SocketAddr {
    SocketAddr::from(([127, 0, 0, 1], 9))
}

pub fn prober_with_dns(dns: SocketAddr) -> Prober {
    Prober::new(ProberOptions {
        dns_server: Some(dns),
        helo_name: HELO.to_owned(),
    })
    .expect("build prober")
}

pub fn prober() -> Prober {
    prober_with_dns(unused_dns())
}

pub fn template(mb: &Mailbox) -> Template {
    Template::new(&mb.name, &mb.from, &mb.to, HELO).expect("template")
}

/// One probe of `mb` with a fresh prober; also returns how long the call itself took
/// (which includes any parting QUIT, unlike `ProbeResult::total`).
pub async fn probe_timed_with(prober: &Prober, mb: &Mailbox) -> (ProbeResult, Duration) {
    let template = template(mb);
    let creds = Credentials::from_config(&mb.auth);
    let started = Instant::now();
    let r = prober.probe(mb, &template, &creds).await;
    (r, started.elapsed())
}

pub async fn probe_timed(mb: &Mailbox) -> (ProbeResult, Duration) {
    probe_timed_with(&prober(), mb).await
}

pub async fn probe(mb: &Mailbox) -> ProbeResult {
    probe_timed(mb).await.0
}

/// A readable summary for assertion messages.
pub fn describe(r: &ProbeResult) -> String {
    format!(
        "failure: {:#?}\nphases: {:?}\ntranscript:\n{}",
        r.failure, r.phases, r.transcript
    )
}

/// Asserts the probe failed with `class` in `phase` with `code`, and that the failure
/// carries a hint (the contract: every failure has one).
pub fn assert_failure(r: &ProbeResult, class: Class, phase: Phase, code: &str) {
    let f = r
        .failure
        .as_ref()
        .unwrap_or_else(|| panic!("expected a {class} failure, got success\n{}", describe(r)));
    assert_eq!(
        (f.class, f.phase, f.code.as_str()),
        (class, phase, code),
        "wrong class/phase/code\n{}",
        describe(r)
    );
    assert!(!f.hint.is_empty(), "failure without hint\n{}", describe(r));
    // The failed phase is recorded, and it is the last one.
    assert_eq!(
        r.phases.last().map(|(p, _)| *p),
        Some(phase),
        "the failed phase is not the last recorded one\n{}",
        describe(r)
    );
}

pub fn assert_success(r: &ProbeResult) {
    assert!(r.success(), "expected success\n{}", describe(r));
}

/// The phases a probe recorded, in order.
pub fn phase_names(r: &ProbeResult) -> Vec<Phase> {
    r.phases.iter().map(|(p, _)| *p).collect()
}

pub fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1000.0
}

/// A port on 127.0.0.1 with nothing listening: bind, read the port, close.
pub fn closed_port() -> u16 {
    let l = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
    let port = l.local_addr().expect("local addr").port();
    drop(l);
    port
}

/// A DNS server on loopback UDP that answers every query with NXDOMAIN (the question
/// echoed, no records). Returns its address and a counter of queries answered.
pub async fn nxdomain_responder() -> (SocketAddr, Arc<AtomicUsize>, JoinHandle<()>) {
    let sock = UdpSocket::bind("127.0.0.1:0").await.expect("bind udp");
    let addr = sock.local_addr().expect("udp addr");
    let answered = Arc::new(AtomicUsize::new(0));
    let counter = Arc::clone(&answered);
    let task = tokio::spawn(async move {
        let mut buf = [0u8; 1500];
        while let Ok((n, peer)) = sock.recv_from(&mut buf).await {
            if let Some(resp) = nxdomain(&buf[..n])
                && sock.send_to(&resp, peer).await.is_ok()
            {
                counter.fetch_add(1, Ordering::SeqCst);
            }
        }
    });
    (addr, answered, task)
}

/// Builds the NXDOMAIN response to `query` by hand (RFC 1035 §4.1): same ID, QR set,
/// opcode and RD copied, RA set, RCODE 3, the single question echoed, nothing else.
fn nxdomain(query: &[u8]) -> Option<Vec<u8>> {
    if query.len() < 12 || u16::from_be_bytes([query[4], query[5]]) != 1 {
        return None;
    }
    // Walk the QNAME labels to find where the question ends (no compression in queries).
    let mut i = 12;
    loop {
        let len = usize::from(*query.get(i)?);
        i += 1;
        if len == 0 {
            break;
        }
        if len & 0xC0 != 0 {
            return None;
        }
        i += len;
    }
    let end = i + 4; // QTYPE, QCLASS
    if end > query.len() {
        return None;
    }
    let mut r = Vec::with_capacity(end);
    r.extend_from_slice(&query[..2]); // ID
    r.push(0x80 | (query[2] & 0x79)); // QR | opcode | RD
    r.push(0x80 | 3); // RA | RCODE=NXDOMAIN
    r.extend_from_slice(&[0, 1, 0, 0, 0, 0, 0, 0]); // QD=1, AN=NS=AR=0
    r.extend_from_slice(&query[12..end]);
    Some(r)
}

/// A one-connection TCP proxy in front of `upstream` that counts the bytes it managed to
/// hand to the client (upstream to client direction). Its listening socket has a small
/// send buffer (inherited by the accepted socket), so the count stays close to what the
/// client actually read instead of what the kernel was willing to buffer.
pub async fn counting_proxy(upstream: SocketAddr) -> (SocketAddr, JoinHandle<u64>) {
    let sock = TcpSocket::new_v4().expect("socket");
    sock.set_send_buffer_size(16 * 1024).expect("SO_SNDBUF");
    sock.bind(SocketAddr::from(([127, 0, 0, 1], 0)))
        .expect("bind");
    let listener: TcpListener = sock.listen(4).expect("listen");
    let addr = listener.local_addr().expect("addr");
    let task = tokio::spawn(async move {
        let Ok((client, _)) = listener.accept().await else {
            return 0;
        };
        let Ok(server) = tokio::net::TcpStream::connect(upstream).await else {
            return 0;
        };
        let (mut client_rd, mut client_wr) = client.into_split();
        let (mut server_rd, mut server_wr) = server.into_split();
        let up = tokio::spawn(async move {
            let _ = tokio::io::copy(&mut client_rd, &mut server_wr).await;
        });
        let mut forwarded = 0u64;
        let mut buf = vec![0u8; 16 * 1024];
        loop {
            let n = match server_rd.read(&mut buf).await {
                Ok(0) | Err(_) => break,
                Ok(n) => n,
            };
            if client_wr.write_all(&buf[..n]).await.is_err() {
                break;
            }
            forwarded += n as u64;
        }
        up.abort();
        forwarded
    });
    (addr, task)
}

/// [`shared`] for a synchronous test (outside any runtime).
pub fn shared_blocking() -> RwLockReadGuard<'static, ()> {
    SERIAL.blocking_read()
}

/// [`exclusive`] for a synchronous test (outside any runtime).
pub fn exclusive_blocking() -> RwLockWriteGuard<'static, ()> {
    SERIAL.blocking_write()
}
