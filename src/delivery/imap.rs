//! One IMAP session to a sink, with async-imap on tokio over our own rustls config:
//! implicit TLS, or STARTTLS that must succeed (never a downgrade), or plain only where
//! the config allows it. Every command runs under a deadline, and every response under
//! a byte budget (async-imap alone would buffer up to 512 MiB for one response).

use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::task::{Context, Poll};
use std::time::Duration;

use async_imap::types::NameAttribute;
use async_imap::{Client, Session};
use futures_util::TryStreamExt;
use rustls_pki_types::ServerName;
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::TcpStream;

use super::store::{Fetched, FolderInfo, StoreError};
use crate::classify::Class;
use crate::config::{Security, Sink};
use crate::resolve::Resolver;

/// Bytes one command may bring back. Header fetches come in batches of
/// [`super::store::BATCH`] messages; a canary is a few KiB.
const RESPONSE_BUDGET: usize = 16 * 1024 * 1024;

pub(super) trait Io: AsyncRead + AsyncWrite + Unpin + Send + std::fmt::Debug {}
impl<T: AsyncRead + AsyncWrite + Unpin + Send + std::fmt::Debug> Io for T {}

/// A stream that fails once more than the budget was read since the last reset, or as
/// soon as the server announces a literal (`{N}`) larger than the budget: async-imap
/// would allocate (and zero) a buffer of that size before reading a byte of it.
#[derive(Debug)]
pub(super) struct Budgeted {
    inner: Box<dyn Io>,
    read: Arc<AtomicUsize>,
    literal: LiteralScan,
}

/// The longest response line outside literals. async-imap parses a response again from
/// its start on every read until it is complete, so one endless line would cost time
/// quadratic in its length; real lines are short (a SEARCH of a day's UIDs at most).
const MAX_LINE: u64 = 1024 * 1024;

/// Where the scan of the server's bytes stands, carried across reads: inside a literal
/// announcement (`{`, the digits so far), right after one (its size, until the line
/// ends), inside a literal's data (bytes left), and the length of the current line.
#[derive(Debug, Default, Clone, Copy)]
struct LiteralScan {
    open: Option<(u64, u8)>,
    announced: Option<u64>,
    skipping: u64,
    line: u64,
}

impl LiteralScan {
    /// Why `bytes` (the next ones from the server) are refused, if they are: a literal
    /// over `limit` announced, or a line over [`MAX_LINE`].
    fn check(&mut self, bytes: &[u8], limit: u64) -> Result<(), String> {
        for &b in bytes {
            if self.skipping > 0 {
                self.skipping -= 1;
                continue;
            }
            if b == b'\n' {
                self.line = 0;
                self.open = None;
                self.skipping = self.announced.take().unwrap_or(0);
                continue;
            }
            self.line += 1;
            if self.line > MAX_LINE {
                return Err(format!(
                    "the server sent a line longer than {MAX_LINE} bytes"
                ));
            }
            if b != b'\r' {
                self.announced = None;
            }
            self.open = match (self.open, b) {
                (_, b'{') => Some((0, 0)),
                (Some((n, d)), b'0'..=b'9') if d < 20 => Some((
                    n.saturating_mul(10).saturating_add(u64::from(b - b'0')),
                    d + 1,
                )),
                (Some((n, d)), b'}') if d > 0 => {
                    if n > limit {
                        return Err(format!(
                            "the server announced a {n}-byte literal; the limit is {limit}"
                        ));
                    }
                    self.announced = Some(n);
                    None
                }
                _ => None,
            };
        }
        Ok(())
    }
}

impl AsyncRead for Budgeted {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<std::io::Result<()>> {
        let before = buf.filled().len();
        let r = Pin::new(&mut self.inner).poll_read(cx, buf);
        let n = buf.filled().len() - before;
        if self.read.fetch_add(n, Ordering::Relaxed) + n > RESPONSE_BUDGET {
            return Poll::Ready(Err(std::io::Error::other(format!(
                "the server sent more than {RESPONSE_BUDGET} bytes for one command"
            ))));
        }
        let fresh = &buf.filled()[before..];
        let mut scan = self.literal;
        let checked = scan.check(fresh, RESPONSE_BUDGET as u64);
        self.literal = scan;
        if let Err(why) = checked {
            return Poll::Ready(Err(std::io::Error::other(why)));
        }
        r
    }
}

impl AsyncWrite for Budgeted {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<std::io::Result<usize>> {
        Pin::new(&mut self.inner).poll_write(cx, buf)
    }
    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.inner).poll_flush(cx)
    }
    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.inner).poll_shutdown(cx)
    }
}

/// How to log in.
pub(super) enum Login<'a> {
    Password {
        username: &'a str,
        password: &'a str,
    },
    XOAuth2 {
        username: &'a str,
        token: &'a str,
    },
}

struct XOAuth2(Option<String>);

impl async_imap::Authenticator for XOAuth2 {
    type Response = String;
    // The first challenge gets the payload; a second one is the server's error
    // (Gmail's base64 JSON), which is answered with an empty line.
    fn process(&mut self, _challenge: &[u8]) -> String {
        self.0.take().unwrap_or_default()
    }
}

pub(super) struct ImapStore {
    session: Option<Session<Budgeted>>,
    read: Arc<AtomicUsize>,
    deadline: Duration,
    pub(super) idle: bool,
    uidplus: bool,
}

fn err(class: Class, message: impl Into<String>) -> StoreError {
    StoreError {
        class,
        message: message.into(),
    }
}

fn imap_err(e: async_imap::error::Error) -> StoreError {
    use async_imap::error::Error as E;
    match e {
        E::Io(io) => err(Class::Network, format!("connection failed: {io}")),
        E::ConnectionLost => err(Class::Network, "the server closed the connection"),
        E::No(text) => err(
            Class::Protocol,
            format!("the server refused: NO {}", server_text(&text)),
        ),
        E::Bad(text) => err(
            Class::Protocol,
            format!("the server refused: BAD {}", server_text(&text)),
        ),
        E::Parse(p) => err(Class::Protocol, format!("unreadable response: {p}")),
        other => err(Class::Protocol, other.to_string()),
    }
}

impl ImapStore {
    fn session(&mut self) -> Result<&mut Session<Budgeted>, StoreError> {
        self.session
            .as_mut()
            .ok_or_else(|| err(Class::Network, "the session is closed"))
    }

    /// Connects, secures and logs in.
    pub(super) async fn connect(
        sink: &Sink,
        resolver: &Resolver,
        tls: Arc<rustls::ClientConfig>,
        login: Login<'_>,
        deadline: Duration,
    ) -> Result<ImapStore, StoreError> {
        let read = Arc::new(AtomicUsize::new(0));
        let step = |what: &'static str| {
            move |_| {
                err(
                    Class::Timeout,
                    format!("{what}: no answer within {deadline:?}"),
                )
            }
        };
        let addrs = match sink.host.parse::<std::net::IpAddr>() {
            Ok(ip) => vec![ip],
            Err(_) => tokio::time::timeout(deadline, resolver.lookup(&sink.host))
                .await
                .map_err(step("DNS lookup"))?
                .map_err(|e| err(Class::Dns, e.to_string()))?,
        };
        let addr = std::net::SocketAddr::new(addrs[0], sink.port);
        let tcp = tokio::time::timeout(deadline, TcpStream::connect(addr))
            .await
            .map_err(step("TCP connect"))?
            .map_err(|e| err(Class::Connect, format!("cannot connect to {addr}: {e}")))?;
        let name = sink
            .tls
            .server_name
            .clone()
            .unwrap_or_else(|| sink.host.clone());
        let server_name = ServerName::try_from(name.clone())
            .map_err(|_| err(Class::Tls, format!("{name} is not a valid TLS server name")))?;
        let connector = tokio_rustls::TlsConnector::from(tls);
        let budget = |inner: Box<dyn Io>| Budgeted {
            inner,
            read: read.clone(),
            literal: LiteralScan::default(),
        };
        let tls_failed = |e: std::io::Error| err(Class::Tls, format!("TLS handshake failed: {e}"));
        let client = match sink.security {
            Security::Tls => {
                let s = tokio::time::timeout(deadline, connector.connect(server_name, tcp))
                    .await
                    .map_err(step("TLS handshake"))?
                    .map_err(tls_failed)?;
                greeted(Client::new(budget(Box::new(s))), deadline).await?
            }
            Security::None => greeted(Client::new(budget(Box::new(tcp))), deadline).await?,
            Security::Starttls => {
                let mut plain = greeted(Client::new(budget(Box::new(tcp))), deadline).await?;
                tokio::time::timeout(deadline, plain.run_command_and_check_ok("STARTTLS", None))
                    .await
                    .map_err(step("STARTTLS"))?
                    .map_err(|e| err(Class::Tls, format!("STARTTLS refused: {e}")))?;
                let inner = plain.into_inner().inner;
                let s = tokio::time::timeout(deadline, connector.connect(server_name, inner))
                    .await
                    .map_err(step("TLS handshake"))?
                    .map_err(tls_failed)?;
                Client::new(budget(Box::new(s)))
            }
        };
        read.store(0, Ordering::Relaxed);
        let logged_in = match login {
            Login::Password { username, password } => {
                tokio::time::timeout(deadline, client.login(username, password)).await
            }
            Login::XOAuth2 { username, token } => {
                let payload = format!("user={username}\x01auth=Bearer {token}\x01\x01");
                tokio::time::timeout(
                    deadline,
                    client.authenticate("XOAUTH2", XOAuth2(Some(payload))),
                )
                .await
            }
        };
        let mut session = match logged_in {
            Err(_) => {
                return Err(err(
                    Class::Timeout,
                    format!("login: no answer within {deadline:?}"),
                ));
            }
            Ok(Err((e, _))) => {
                return Err(match e {
                    async_imap::error::Error::No(text) | async_imap::error::Error::Bad(text) => {
                        err(
                            Class::Auth,
                            format!("login refused: {}", server_text(&text)),
                        )
                    }
                    other => imap_err(other),
                });
            }
            Ok(Ok(s)) => s,
        };
        read.store(0, Ordering::Relaxed);
        let caps = tokio::time::timeout(deadline, session.capabilities())
            .await
            .map_err(step("CAPABILITY"))?
            .map_err(imap_err)?;
        let idle = caps.has_str("IDLE");
        let uidplus = caps.has_str("UIDPLUS");
        Ok(ImapStore {
            session: Some(session),
            read,
            deadline,
            idle,
            uidplus,
        })
    }

    /// Every selectable folder, with whether it is marked `\Junk`.
    pub(super) async fn folders(&mut self) -> Result<Vec<(String, bool)>, StoreError> {
        let deadline = self.deadline;
        self.read.store(0, Ordering::Relaxed);
        let s = self.session()?;
        let names = tokio::time::timeout(deadline, async {
            let stream = s.list(Some(""), Some("*")).await.map_err(imap_err)?;
            stream.try_collect::<Vec<_>>().await.map_err(imap_err)
        })
        .await
        .map_err(|_| err(Class::Timeout, "LIST: no answer"))??;
        Ok(names
            .iter()
            .filter(|n| !n.attributes().contains(&NameAttribute::NoSelect))
            .map(|n| {
                (
                    n.name().to_string(),
                    n.attributes().contains(&NameAttribute::Junk),
                )
            })
            .collect())
    }

    pub(super) async fn select(&mut self, folder: &str) -> Result<FolderInfo, StoreError> {
        let deadline = self.deadline;
        self.read.store(0, Ordering::Relaxed);
        let s = self.session()?;
        // async-imap quotes the name itself.
        let mb = tokio::time::timeout(deadline, s.select(folder))
            .await
            .map_err(|_| err(Class::Timeout, "SELECT: no answer"))?
            .map_err(imap_err)?;
        Ok(FolderInfo {
            uidvalidity: mb.uid_validity.unwrap_or(0),
            uidnext: mb.uid_next.unwrap_or(0),
        })
    }

    /// UIDs of messages carrying our header that arrived since `date` (an IMAP date).
    pub(super) async fn search(&mut self, criteria: &str) -> Result<Vec<u32>, StoreError> {
        let deadline = self.deadline;
        self.read.store(0, Ordering::Relaxed);
        let s = self.session()?;
        let found = tokio::time::timeout(deadline, s.uid_search(criteria))
            .await
            .map_err(|_| err(Class::Timeout, "UID SEARCH: no answer"))?
            .map_err(imap_err)?;
        let mut v: Vec<u32> = found.into_iter().collect();
        v.sort_unstable();
        Ok(v)
    }

    pub(super) async fn fetch(
        &mut self,
        set: &str,
        items: &str,
    ) -> Result<Vec<Fetched>, StoreError> {
        let deadline = self.deadline;
        self.read.store(0, Ordering::Relaxed);
        let s = self.session()?;
        let fetched = tokio::time::timeout(deadline, async {
            let stream = s.uid_fetch(set, items).await.map_err(imap_err)?;
            stream.try_collect::<Vec<_>>().await.map_err(imap_err)
        })
        .await
        .map_err(|_| err(Class::Timeout, "UID FETCH: no answer"))??;
        Ok(fetched
            .iter()
            .filter_map(|f| {
                Some(Fetched {
                    uid: f.uid?,
                    size: f.size,
                    internal_date: f.internal_date().map(|d| d.timestamp()),
                    header: f.header().map(<[u8]>::to_vec),
                    body: f.body().map(<[u8]>::to_vec),
                })
            })
            .collect())
    }

    /// Marks the messages deleted and expunges exactly them (UIDPLUS). Without UIDPLUS
    /// they stay flagged: a plain EXPUNGE would remove every `\Deleted` message in the
    /// folder, including ones that are not ours.
    pub(super) async fn delete(&mut self, uids: &[u32]) -> Result<(), StoreError> {
        if uids.is_empty() {
            return Ok(());
        }
        let set = uid_set(uids);
        let deadline = self.deadline;
        let uidplus = self.uidplus;
        self.read.store(0, Ordering::Relaxed);
        let s = self.session()?;
        tokio::time::timeout(deadline, async {
            let stream = s
                .uid_store(&set, "+FLAGS.SILENT (\\Deleted)")
                .await
                .map_err(imap_err)?;
            stream.try_collect::<Vec<_>>().await.map_err(imap_err)?;
            if uidplus {
                let stream = s.uid_expunge(&set).await.map_err(imap_err)?;
                stream.try_collect::<Vec<_>>().await.map_err(imap_err)?;
            }
            Ok::<(), StoreError>(())
        })
        .await
        .map_err(|_| err(Class::Timeout, "UID STORE/EXPUNGE: no answer"))?
    }

    /// Waits for new mail in the selected folder (IDLE) for at most `limit`.
    pub(super) async fn idle(&mut self, limit: Duration) -> Result<(), StoreError> {
        let deadline = self.deadline;
        let session = self
            .session
            .take()
            .ok_or_else(|| err(Class::Network, "the session is closed"))?;
        self.read.store(0, Ordering::Relaxed);
        let mut handle = session.idle();
        tokio::time::timeout(deadline, handle.init())
            .await
            .map_err(|_| err(Class::Timeout, "IDLE: no answer"))?
            .map_err(imap_err)?;
        let (wait, _stop) = handle.wait_with_timeout(limit);
        // The wait itself is bounded by `limit`; a server that stops answering is caught
        // by the outer deadline.
        let waited = tokio::time::timeout(limit + deadline, wait).await;
        if let Ok(Err(e)) = waited {
            return Err(imap_err(e));
        }
        drop(_stop);
        self.read.store(0, Ordering::Relaxed);
        let session = tokio::time::timeout(deadline, handle.done())
            .await
            .map_err(|_| err(Class::Timeout, "DONE: no answer"))?
            .map_err(imap_err)?;
        self.session = Some(session);
        Ok(())
    }
}

async fn greeted(
    mut c: Client<Budgeted>,
    deadline: Duration,
) -> Result<Client<Budgeted>, StoreError> {
    match tokio::time::timeout(deadline, c.read_response()).await {
        Err(_) => Err(err(
            Class::Timeout,
            format!("greeting: none within {deadline:?}"),
        )),
        Ok(Err(e)) => Err(err(
            Class::Network,
            format!("reading the greeting failed: {e}"),
        )),
        Ok(Ok(None)) => Err(err(
            Class::Network,
            "the server closed the connection before its greeting",
        )),
        Ok(Ok(Some(_))) => Ok(c),
    }
}

/// The server's own words out of async-imap's NO/BAD text, which is a debug rendering
/// (`... information: Some("...") ...`); anything else as it is. Control characters go.
fn server_text(debug: &str) -> String {
    let inner = debug
        .split_once("Some(\"")
        .and_then(|(_, rest)| rest.rsplit_once("\")"))
        .map(|(text, _)| text.replace("\\\"", "\""))
        .unwrap_or_else(|| debug.to_string());
    inner
        .chars()
        .filter(|c| !c.is_control())
        .take(512)
        .collect()
}

/// `1,3,5:7` from sorted or unsorted UIDs.
pub(super) fn uid_set(uids: &[u32]) -> String {
    let mut v = uids.to_vec();
    v.sort_unstable();
    v.dedup();
    let mut out = String::new();
    let mut i = 0;
    while i < v.len() {
        let start = v[i];
        let mut end = start;
        while i + 1 < v.len() && v[i + 1] == end + 1 {
            i += 1;
            end = v[i];
        }
        if !out.is_empty() {
            out.push(',');
        }
        if start == end {
            out.push_str(&start.to_string());
        } else {
            out.push_str(&format!("{start}:{end}"));
        }
        i += 1;
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn oversized_literals_and_lines_are_seen_across_reads() {
        let mut scan = LiteralScan::default();
        assert!(scan.check(b"* 1 FETCH (BODY[] {12}\r\n", 100).is_ok());
        // The literal's own bytes are skipped, braces included.
        assert!(scan.check(b"{99999}{1}\r\n)\r\n", 100).is_ok());
        assert!(scan.check(b"* 1 FETCH (BODY[] {10", 100).is_ok());
        let e = scan.check(b"00}\r\n", 100).unwrap_err();
        assert!(e.contains("1000-byte literal"), "{e}");
        let mut scan = LiteralScan::default();
        assert!(scan.check(b"{99999999999999999999999}", 100).is_ok());
        let mut scan = LiteralScan::default();
        let long = vec![b'a'; (MAX_LINE + 1) as usize];
        assert!(scan.check(&long, 100).unwrap_err().contains("line longer"));
        // A literal's data may be longer than a line.
        let mut scan = LiteralScan::default();
        assert!(
            scan.check(b"* 1 FETCH (BODY[] {2000000}\r\n", u64::MAX)
                .is_ok()
        );
        assert!(scan.check(&vec![b'x'; 2_000_000], u64::MAX).is_ok());
        assert!(scan.check(b")\r\n", u64::MAX).is_ok());
    }

    #[test]
    fn sets_and_quotes() {
        assert_eq!(uid_set(&[5, 1, 2, 3, 9, 10]), "1:3,5,9:10");
        assert_eq!(
            server_text(
                r#"outcome: Outcome { code: None, information: Some("Mailbox doesn't exist: \"X\"") }"#
            ),
            "Mailbox doesn't exist: \"X\""
        );
        assert_eq!(server_text("plain"), "plain");
    }
}
