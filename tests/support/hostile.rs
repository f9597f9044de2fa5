//! A hostile SMTP server owned by the tests.
//!
//! Each [`Mode`] is one way a server (broken, malicious, or echoing what it was sent)
//! can misbehave. [`HostileServer::start`] serves one mode on a loopback port from a
//! background runtime; `daemon::run_measured` runs `smtp-canary` against it, so a test
//! can assert the four things every mode must hold: a class, a time bound, a memory
//! bound, and no secret in any output.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use base64::Engine;
use base64::engine::general_purpose::STANDARD as B64;
use tokio::io::{AsyncBufReadExt, AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt, BufReader};
use tokio::net::{TcpListener, TcpStream};

/// The ways the server misbehaves. Echo modes repeat what the client sent in AUTH (or
/// the password they decoded from it) in their replies.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Mode {
    /// `500 5.5.2 Syntax error, command unrecognized: AUTH PLAIN <base64>`.
    EchoAuthLineIn500,
    /// `535 5.7.8 bad password <base64 payload>`.
    EchoPayloadIn535,
    /// The PLAIN payload decoded, the password quoted in clear.
    EchoDecodedPassword,
    /// A line without a reply code that quotes the decoded password (a malformed reply,
    /// whose text our error message quotes).
    EchoPasswordInMalformedLine,
    /// The payload cut in two over a multi-line 535.
    EchoPayloadSplitOverLines,
    /// AUTH LOGIN: both client lines quoted in a multi-line 535.
    EchoLoginLines,
    /// AUTH LOGIN: the decoded password quoted.
    EchoLoginDecoded,
    /// XOAUTH2: the base64 payload quoted in the 535.
    EchoXoauth2Payload,
    /// XOAUTH2: the bearer token quoted in a 334 challenge, then in the 535.
    EchoXoauth2Token,
    /// AUTH succeeds; MAIL FROM is refused quoting the PLAIN payload.
    EchoPayloadInMailReply,
    /// AUTH succeeds; the message is refused after DATA quoting the password.
    EchoPasswordInDataReply,
    /// AUTH succeeds; RCPT TO is refused with a multi-line reply quoting the password.
    EchoPasswordInRcptReply,
    /// `220-` lines without end.
    EndlessMultilineGreeting,
    /// `250-` lines without end after EHLO.
    EndlessMultilineEhlo,
    /// A 10 MB line after AUTH.
    HugeLineAfterAuth,
    /// `334` to every line, forever.
    Loop334,
    /// The greeting, one byte every 300 ms.
    TrickleGreeting,
    /// The EHLO reply, one byte every 300 ms.
    TrickleEhlo,
    /// Accepts and never speaks.
    SilentGreeting,
    /// Never answers the end of DATA.
    SilentAfterData,
    /// Resets the connection before the greeting.
    ResetAtGreeting,
    /// Resets on EHLO.
    ResetAtEhlo,
    /// Resets on AUTH.
    ResetAtAuth,
    /// Resets on MAIL FROM.
    ResetAtMail,
    /// Resets on RCPT TO.
    ResetAtRcpt,
    /// Resets in the middle of the message.
    ResetInData,
    /// Not SMTP at all.
    GarbageGreeting,
    /// Binary garbage (not UTF-8) in place of the EHLO reply.
    BinaryEhloReply,
    /// `250` where DATA needs `354`.
    WrongCodeForData,
    /// A reply code outside 200-599.
    ImpossibleCode,
    /// STARTTLS is not offered (security: starttls).
    NoStarttls,
    /// STARTTLS is refused with 454.
    StarttlsRefused,
    /// `220` to STARTTLS, then bytes that are not TLS.
    GarbageAfterStarttls,
    /// `220` to STARTTLS with more data in the same packet (command injection).
    InjectionAfterStarttls,
    /// `220` to STARTTLS, then silence during the handshake.
    SilentTlsHandshake,
    /// A TLS handshake with a chain of 300 certificates.
    HugeCertificateChain,
}

impl Mode {
    pub const ALL: [Mode; 36] = [
        Mode::EchoAuthLineIn500,
        Mode::EchoPayloadIn535,
        Mode::EchoDecodedPassword,
        Mode::EchoPasswordInMalformedLine,
        Mode::EchoPayloadSplitOverLines,
        Mode::EchoLoginLines,
        Mode::EchoLoginDecoded,
        Mode::EchoXoauth2Payload,
        Mode::EchoXoauth2Token,
        Mode::EchoPayloadInMailReply,
        Mode::EchoPasswordInDataReply,
        Mode::EchoPasswordInRcptReply,
        Mode::EndlessMultilineGreeting,
        Mode::EndlessMultilineEhlo,
        Mode::HugeLineAfterAuth,
        Mode::Loop334,
        Mode::TrickleGreeting,
        Mode::TrickleEhlo,
        Mode::SilentGreeting,
        Mode::SilentAfterData,
        Mode::ResetAtGreeting,
        Mode::ResetAtEhlo,
        Mode::ResetAtAuth,
        Mode::ResetAtMail,
        Mode::ResetAtRcpt,
        Mode::ResetInData,
        Mode::GarbageGreeting,
        Mode::BinaryEhloReply,
        Mode::WrongCodeForData,
        Mode::ImpossibleCode,
        Mode::NoStarttls,
        Mode::StarttlsRefused,
        Mode::GarbageAfterStarttls,
        Mode::InjectionAfterStarttls,
        Mode::SilentTlsHandshake,
        Mode::HugeCertificateChain,
    ];

    /// Whether this mode quotes a secret back (its output must show `<redacted>`).
    pub fn echoes(self) -> bool {
        format!("{self:?}").starts_with("Echo")
    }

    /// Whether the mailbox probing this mode uses STARTTLS (else `security: none` with
    /// `allow_insecure_auth`, so the echo modes need no TLS).
    pub fn starttls(self) -> bool {
        matches!(
            self,
            Mode::NoStarttls
                | Mode::StarttlsRefused
                | Mode::GarbageAfterStarttls
                | Mode::InjectionAfterStarttls
                | Mode::SilentTlsHandshake
                | Mode::HugeCertificateChain
        )
    }

    /// The SASL mechanism the mailbox is made to use.
    pub fn mechanism(self) -> &'static str {
        match self {
            Mode::EchoLoginLines | Mode::EchoLoginDecoded => "login",
            Mode::EchoXoauth2Payload | Mode::EchoXoauth2Token => "xoauth2",
            _ => "plain",
        }
    }

    pub fn name(self) -> String {
        let dbg = format!("{self:?}");
        let mut out = String::from("hostile");
        for c in dbg.chars() {
            if c.is_ascii_uppercase() {
                out.push('-');
                out.push(c.to_ascii_lowercase());
            } else {
                out.push(c);
            }
        }
        out
    }
}

/// A running hostile server.
pub struct HostileServer {
    pub addr: SocketAddr,
}

impl HostileServer {
    /// Serves `mode` on a fresh loopback port, on `rt`. The modes that get as far as a
    /// TLS handshake present `tls`.
    pub fn start(
        rt: &tokio::runtime::Runtime,
        mode: Mode,
        tls: Arc<rustls::ServerConfig>,
    ) -> HostileServer {
        let listener = rt
            .block_on(TcpListener::bind("127.0.0.1:0"))
            .expect("bind hostile server");
        let addr = listener.local_addr().expect("addr");
        rt.spawn(async move {
            loop {
                let Ok((stream, _)) = listener.accept().await else {
                    continue;
                };
                let tls = tls.clone();
                tokio::spawn(async move {
                    let _ = session(stream, mode, tls).await;
                });
            }
        });
        HostileServer { addr }
    }
}

type Res = std::io::Result<()>;

async fn session(stream: TcpStream, mode: Mode, tls: Arc<rustls::ServerConfig>) -> Res {
    let _ = stream.set_nodelay(true);
    match mode {
        Mode::ResetAtGreeting => {
            // After the client's connect has completed: a reset, not a refusal.
            tokio::time::sleep(Duration::from_millis(200)).await;
            return reset(stream);
        }
        Mode::SilentGreeting => {
            tokio::time::sleep(Duration::from_secs(120)).await;
            return Ok(());
        }
        Mode::GarbageGreeting => {
            let mut s = stream;
            s.write_all(b"HTTP/1.1 400 Bad Request\r\n\r\n").await?;
            tokio::time::sleep(Duration::from_secs(5)).await;
            return Ok(());
        }
        Mode::EndlessMultilineGreeting => {
            let mut s = stream;
            loop {
                s.write_all(b"220-still greeting you\r\n").await?;
            }
        }
        Mode::TrickleGreeting => {
            let mut s = stream;
            for b in b"220 slowly.example ESMTP\r\n".iter().cycle() {
                s.write_all(&[*b]).await?;
                tokio::time::sleep(Duration::from_millis(300)).await;
            }
            return Ok(());
        }
        _ => {}
    }
    let mut conn = BufReader::new(stream);
    conn.get_mut()
        .write_all(b"220 hostile.example ESMTP\r\n")
        .await?;
    // The plain-text part, up to STARTTLS (for the TLS modes) or the end.
    let Some(line) = read_line(&mut conn).await? else {
        return Ok(());
    };
    if mode == Mode::ResetAtEhlo {
        return reset(conn.into_inner());
    }
    debug_assert!(line.to_ascii_uppercase().starts_with("EHLO"));
    match mode {
        Mode::EndlessMultilineEhlo => loop {
            conn.get_mut()
                .write_all(b"250-AUTH PLAIN LOGIN\r\n")
                .await?;
        },
        Mode::TrickleEhlo => {
            for b in b"250-hostile\r\n250 AUTH PLAIN\r\n".iter().cycle() {
                conn.get_mut().write_all(&[*b]).await?;
                tokio::time::sleep(Duration::from_millis(300)).await;
            }
            return Ok(());
        }
        Mode::BinaryEhloReply => {
            conn.get_mut()
                .write_all(b"\xff\xfe\x00\x80 garbage\r\n")
                .await?;
            tokio::time::sleep(Duration::from_secs(5)).await;
            return Ok(());
        }
        Mode::ImpossibleCode => {
            conn.get_mut().write_all(b"999 what\r\n").await?;
            tokio::time::sleep(Duration::from_secs(5)).await;
            return Ok(());
        }
        Mode::NoStarttls => {
            conn.get_mut()
                .write_all(b"250-hostile\r\n250 AUTH PLAIN\r\n")
                .await?;
            let _ = read_line(&mut conn).await?;
            conn.get_mut().write_all(b"221 bye\r\n").await?;
            return Ok(());
        }
        _ if mode.starttls() => {
            conn.get_mut()
                .write_all(b"250-hostile\r\n250 STARTTLS\r\n")
                .await?;
            let _ = read_line(&mut conn).await?;
            return starttls(conn, mode, &tls).await;
        }
        _ => {
            conn.get_mut()
                .write_all(b"250-hostile\r\n250-8BITMIME\r\n250 AUTH PLAIN LOGIN XOAUTH2\r\n")
                .await?;
        }
    }
    after_ehlo(conn, mode).await
}

async fn starttls(
    mut conn: BufReader<TcpStream>,
    mode: Mode,
    tls: &Arc<rustls::ServerConfig>,
) -> Res {
    match mode {
        Mode::StarttlsRefused => {
            conn.get_mut()
                .write_all(b"454 4.7.0 TLS not available due to temporary reason\r\n")
                .await?;
            let _ = read_line(&mut conn).await?;
            Ok(())
        }
        Mode::GarbageAfterStarttls => {
            conn.get_mut()
                .write_all(b"220 2.0.0 Ready to start TLS\r\n")
                .await?;
            tokio::time::sleep(Duration::from_millis(50)).await;
            conn.get_mut()
                .write_all(b"this is not a TLS record at all\r\n")
                .await?;
            tokio::time::sleep(Duration::from_secs(5)).await;
            Ok(())
        }
        Mode::InjectionAfterStarttls => {
            conn.get_mut()
                .write_all(b"220 2.0.0 Ready to start TLS\r\n250-injected\r\n250 AUTH PLAIN\r\n")
                .await?;
            tokio::time::sleep(Duration::from_secs(5)).await;
            Ok(())
        }
        Mode::SilentTlsHandshake => {
            conn.get_mut()
                .write_all(b"220 2.0.0 Ready to start TLS\r\n")
                .await?;
            tokio::time::sleep(Duration::from_secs(120)).await;
            Ok(())
        }
        _ => {
            conn.get_mut()
                .write_all(b"220 2.0.0 Ready to start TLS\r\n")
                .await?;
            let acceptor = tokio_rustls::TlsAcceptor::from(tls.clone());
            let _ = acceptor.accept(conn.into_inner()).await;
            Ok(())
        }
    }
}

async fn after_ehlo<S: AsyncRead + AsyncWrite + Unpin>(mut conn: BufReader<S>, mode: Mode) -> Res {
    // What this session's AUTH sent: the payload line and the decoded secret.
    let (mut payload, mut password) = (String::new(), String::new());
    loop {
        let Some(line) = read_line(&mut conn).await? else {
            return Ok(());
        };
        let upper = line.to_ascii_uppercase();
        let w = conn.get_mut();
        if upper.starts_with("AUTH") {
            if mode == Mode::ResetAtAuth {
                return Ok(());
            }
            (payload, password) = auth(&mut conn, mode, &line).await?;
            if !matches!(
                mode,
                Mode::EchoPayloadInMailReply
                    | Mode::EchoPasswordInDataReply
                    | Mode::EchoPasswordInRcptReply
                    | Mode::ResetAtMail
                    | Mode::ResetAtRcpt
                    | Mode::ResetInData
                    | Mode::SilentAfterData
                    | Mode::WrongCodeForData
            ) {
                return Ok(());
            }
            continue;
        }
        if upper.starts_with("MAIL") {
            match mode {
                Mode::ResetAtMail => return Ok(()),
                Mode::EchoPayloadInMailReply => {
                    w.write_all(format!("550 5.7.1 sender refused for {payload}\r\n").as_bytes())
                        .await?;
                }
                _ => w.write_all(b"250 2.1.0 ok\r\n").await?,
            }
        } else if upper.starts_with("RCPT") {
            match mode {
                Mode::ResetAtRcpt => return Ok(()),
                Mode::EchoPasswordInRcptReply => {
                    w.write_all(
                        format!("550-5.1.1 unknown user\r\n550 5.1.1 (your password {password} is fine)\r\n")
                            .as_bytes(),
                    )
                    .await?;
                }
                _ => w.write_all(b"250 2.1.5 ok\r\n").await?,
            }
        } else if upper.starts_with("DATA") {
            if mode == Mode::WrongCodeForData {
                w.write_all(b"250 2.0.0 sure\r\n").await?;
                continue;
            }
            w.write_all(b"354 go ahead\r\n").await?;
            if mode == Mode::ResetInData {
                let mut buf = [0u8; 64];
                let _ = conn.read(&mut buf).await?;
                return Ok(());
            }
            // Read the message up to the lone dot.
            loop {
                let Some(l) = read_line(&mut conn).await? else {
                    return Ok(());
                };
                if l == "." {
                    break;
                }
            }
            let w = conn.get_mut();
            match mode {
                Mode::SilentAfterData => {
                    tokio::time::sleep(Duration::from_secs(120)).await;
                    return Ok(());
                }
                Mode::EchoPasswordInDataReply => {
                    w.write_all(
                        format!("554 5.6.0 message refused, password={password}\r\n").as_bytes(),
                    )
                    .await?;
                }
                _ => w.write_all(b"250 2.0.0 queued\r\n").await?,
            }
        } else if upper.starts_with("QUIT") {
            w.write_all(b"221 2.0.0 bye\r\n").await?;
            return Ok(());
        } else {
            w.write_all(b"502 5.5.2 what\r\n").await?;
        }
    }
}

/// The password in a PLAIN payload (`\0user\0password`).
fn plain_password(b64: &str) -> String {
    let bytes = B64.decode(b64.trim()).unwrap_or_default();
    let text = String::from_utf8_lossy(&bytes).into_owned();
    text.rsplit('\0').next().unwrap_or_default().to_owned()
}

/// The bearer token in an XOAUTH2 payload.
fn xoauth2_token(b64: &str) -> String {
    let bytes = B64.decode(b64.trim()).unwrap_or_default();
    let text = String::from_utf8_lossy(&bytes).into_owned();
    text.split("auth=Bearer ")
        .nth(1)
        .and_then(|t| t.split('\x01').next())
        .unwrap_or_default()
        .to_owned()
}

/// Answers one AUTH exchange as `mode` does; returns the payload line and the secret
/// decoded from it, for the modes that quote them later.
async fn auth<S: AsyncRead + AsyncWrite + Unpin>(
    conn: &mut BufReader<S>,
    mode: Mode,
    line: &str,
) -> std::io::Result<(String, String)> {
    let mut words = line.split_whitespace().skip(1);
    let mech = words.next().unwrap_or_default().to_ascii_uppercase();
    let initial = words.next().unwrap_or_default().to_owned();
    match mode {
        Mode::HugeLineAfterAuth => {
            let chunk = vec![b'x'; 64 * 1024];
            for _ in 0..160 {
                conn.get_mut().write_all(&chunk).await?;
            }
            conn.get_mut().write_all(b"\r\n").await?;
            return Ok(Default::default());
        }
        Mode::Loop334 => loop {
            conn.get_mut().write_all(b"334 \r\n").await?;
            if read_line(conn).await?.is_none() {
                return Ok(Default::default());
            }
        },
        _ => {}
    }
    let secrets: (String, String);
    let reply = match (mech.as_str(), mode) {
        ("LOGIN", _) => {
            conn.get_mut().write_all(b"334 VXNlcm5hbWU6\r\n").await?;
            let user = read_line(conn).await?.unwrap_or_default();
            conn.get_mut().write_all(b"334 UGFzc3dvcmQ6\r\n").await?;
            let pass = read_line(conn).await?.unwrap_or_default();
            let decoded =
                String::from_utf8_lossy(&B64.decode(pass.trim()).unwrap_or_default()).into_owned();
            secrets = (pass.clone(), decoded.clone());
            if mode == Mode::EchoLoginDecoded {
                format!("535 5.7.8 password {decoded} is wrong for this account\r\n")
            } else {
                format!(
                    "535-5.7.8 you sent {user}\r\n535-5.7.8 and then {pass}\r\n535 5.7.8 no\r\n"
                )
            }
        }
        ("XOAUTH2", _) => {
            let token = xoauth2_token(&initial);
            secrets = (initial.clone(), token.clone());
            if mode == Mode::EchoXoauth2Token {
                let json = format!(r#"{{"status":"401","token":"{token}"}}"#);
                conn.get_mut()
                    .write_all(format!("334 {}\r\n", B64.encode(json)).as_bytes())
                    .await?;
                let _ = read_line(conn).await?;
                format!("535 5.7.8 token {token} rejected\r\n")
            } else {
                format!("535 5.7.8 rejected {initial}\r\n")
            }
        }
        _ => {
            let password = plain_password(&initial);
            secrets = (initial.clone(), password.clone());
            match mode {
                Mode::EchoAuthLineIn500 => {
                    format!("500 5.5.2 Syntax error, command unrecognized: {line}\r\n")
                }
                Mode::EchoPayloadIn535 => format!("535 5.7.8 bad password {initial}\r\n"),
                Mode::EchoDecodedPassword => {
                    format!("535 5.7.8 wrong password \"{password}\"\r\n")
                }
                Mode::EchoPasswordInMalformedLine => {
                    format!("bad password {password}\r\n")
                }
                Mode::EchoPayloadSplitOverLines => {
                    let (a, b) = initial.split_at(initial.len() / 2);
                    format!("535-5.7.8 you sent {a}\r\n535 5.7.8 {b} which is wrong\r\n")
                }
                _ => "235 2.7.0 ok\r\n".to_owned(),
            }
        }
    };
    conn.get_mut().write_all(reply.as_bytes()).await?;
    Ok(secrets)
}

/// One CRLF- (or LF-) terminated line, at most 64 KiB; `None` at EOF.
async fn read_line<R: AsyncRead + Unpin>(
    conn: &mut BufReader<R>,
) -> std::io::Result<Option<String>> {
    let mut buf = Vec::new();
    let n = (&mut *conn)
        .take(64 * 1024)
        .read_until(b'\n', &mut buf)
        .await?;
    if n == 0 {
        return Ok(None);
    }
    while buf.last().is_some_and(|b| *b == b'\n' || *b == b'\r') {
        buf.pop();
    }
    Ok(Some(String::from_utf8_lossy(&buf).into_owned()))
}

/// Closes with a TCP reset (SO_LINGER 0), not a FIN.
fn reset(stream: TcpStream) -> Res {
    let std = stream.into_std()?;
    let sock = socket2_linger_zero(&std);
    drop(std);
    sock
}

fn socket2_linger_zero(s: &std::net::TcpStream) -> Res {
    use std::os::fd::AsRawFd;
    let linger = libc::linger {
        l_onoff: 1,
        l_linger: 0,
    };
    // SAFETY: setsockopt on a socket we own with a correctly sized struct.
    let rc = unsafe {
        libc::setsockopt(
            s.as_raw_fd(),
            libc::SOL_SOCKET,
            libc::SO_LINGER,
            &linger as *const libc::linger as *const libc::c_void,
            std::mem::size_of::<libc::linger>() as libc::socklen_t,
        )
    };
    if rc == 0 {
        Ok(())
    } else {
        Err(std::io::Error::last_os_error())
    }
}
