//! TCP relays on loopback that see what crosses them: one that counts the bytes a
//! client was handed, one that records every byte a client sent; and connecting from a
//! chosen source address, which std cannot do.

use std::net::{Ipv4Addr, SocketAddr};
use std::sync::mpsc::{Receiver, channel};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpSocket, TcpStream};
use tokio::task::JoinHandle;

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
        let Ok(server) = TcpStream::connect(upstream).await else {
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

/// Connects to `to` from `from` (port chosen by the kernel).
pub async fn connect_from(from: Ipv4Addr, to: SocketAddr) -> std::io::Result<TcpStream> {
    let socket = TcpSocket::new_v4()?;
    socket.bind(SocketAddr::new(from.into(), 0))?;
    socket.connect(to).await
}

/// A current-thread runtime, for a synchronous test's few async steps.
pub fn rt() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("tokio runtime")
}

/// A one-shot TCP tee: accepts one client on 127.0.0.1, connects to `upstream` from
/// `upstream_source`, relays both ways and records every byte the client sent. It runs on
/// a thread of its own, so a synchronous test can drive the client.
pub struct Tee {
    pub addr: SocketAddr,
    pub peer: Receiver<SocketAddr>,
    client_bytes: Arc<Mutex<Vec<u8>>>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl Tee {
    pub fn start(upstream: SocketAddr, upstream_source: Ipv4Addr) -> Tee {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("tee listener");
        listener
            .set_nonblocking(true)
            .expect("nonblocking listener");
        let addr = listener.local_addr().expect("tee address");
        let client_bytes = Arc::new(Mutex::new(Vec::new()));
        let recorded = client_bytes.clone();
        let (peer_tx, peer) = channel();
        let thread = std::thread::spawn(move || {
            rt().block_on(async move {
                let listener = TcpListener::from_std(listener).expect("tokio listener");
                let Ok(Ok((client, peer_addr))) =
                    tokio::time::timeout(Duration::from_secs(30), listener.accept()).await
                else {
                    return;
                };
                let _ = peer_tx.send(peer_addr);
                let Ok(server) = connect_from(upstream_source, upstream).await else {
                    return;
                };
                let (mut cr, mut cw) = client.into_split();
                let (mut sr, mut sw) = server.into_split();
                let up = async {
                    let mut buf = [0u8; 4096];
                    loop {
                        let n = match cr.read(&mut buf).await {
                            Ok(0) | Err(_) => break,
                            Ok(n) => n,
                        };
                        recorded.lock().unwrap().extend_from_slice(&buf[..n]);
                        if sw.write_all(&buf[..n]).await.is_err() {
                            break;
                        }
                    }
                    let _ = sw.shutdown().await;
                };
                let down = async {
                    let _ = tokio::io::copy(&mut sr, &mut cw).await;
                    let _ = cw.shutdown().await;
                };
                let _ =
                    tokio::time::timeout(Duration::from_secs(30), async { tokio::join!(up, down) })
                        .await;
            });
        });
        Tee {
            addr,
            peer,
            client_bytes,
            thread: Some(thread),
        }
    }

    /// Everything the client sent, after the relay finished.
    pub fn finish(mut self) -> Vec<u8> {
        if let Some(t) = self.thread.take() {
            t.join().expect("tee thread");
        }
        self.client_bytes.lock().unwrap().clone()
    }
}

/// Reads one SMTP reply (all its lines) from a raw stream.
pub async fn read_smtp_reply<R: tokio::io::AsyncBufRead + Unpin>(
    r: &mut R,
) -> std::io::Result<String> {
    use tokio::io::AsyncBufReadExt;
    let mut all = String::new();
    loop {
        let mut line = String::new();
        if r.read_line(&mut line).await? == 0 {
            return Err(std::io::Error::new(
                std::io::ErrorKind::UnexpectedEof,
                format!("EOF after {all:?}"),
            ));
        }
        all.push_str(&line);
        if line.len() < 4 || line.as_bytes()[3] != b'-' {
            return Ok(all);
        }
    }
}
