//! The limits every HTTP connection lives under: how many may be open at once, how long a
//! response write may make no progress, and how long a connection may sit idle. hyper 1
//! has a header-read timeout but no write or idle timeout, so [`Guarded`] wraps the TCP
//! stream (below TLS, so the handshake is covered too) and fails the IO when a limit
//! passes; the connection then ends and its buffers are freed.
//!
//! Without these, a client that requests `/metrics` and never reads pins the whole
//! rendered exposition (megabytes for thousands of mailboxes) for as long as it likes.

use std::io;
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::task::{Context, Poll, ready};
use std::time::Duration;

use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::TcpStream;
use tokio::time::{Instant, Sleep};

/// A write (or flush) that makes no progress for this long fails and the connection is
/// reset. A Prometheus server reads a scrape as fast as it arrives; 10 s with not one
/// byte taken means the reader is gone or hostile, and it is what pins memory.
pub const WRITE_STALL_TIMEOUT: Duration = Duration::from_secs(10);

/// A connection on which nothing was read or written for this long, with no request
/// being handled, is closed. hyper's header-read timeout already closes a connection
/// that does not send a request; this also covers a request body that stops arriving
/// mid-way. Long enough for any legitimate pause on a working link.
pub const IDLE_TIMEOUT: Duration = Duration::from_secs(30);

/// At most this many connections are served at once; beyond it the listener stops
/// accepting (the kernel backlog holds new clients) until one ends. With the timeouts
/// above, this is what bounds per-connection buffers whatever the number of clients; a
/// handful of Prometheus servers and browsers need far fewer.
pub const MAX_CONNECTIONS: usize = 256;

/// Requests being handled on one connection; while there is one, the connection is not
/// idle (a reload or a large render may take a while without any IO).
#[derive(Clone, Default)]
pub struct Busy(Arc<AtomicUsize>);

impl Busy {
    /// Marks a request in progress until the returned guard is dropped (also when the
    /// request's future is cancelled).
    pub fn enter(&self) -> BusyGuard {
        self.0.fetch_add(1, Ordering::Relaxed);
        BusyGuard(self.0.clone())
    }

    fn is_busy(&self) -> bool {
        self.0.load(Ordering::Relaxed) > 0
    }
}

pub struct BusyGuard(Arc<AtomicUsize>);

impl Drop for BusyGuard {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::Relaxed);
    }
}

/// A TCP stream with a write-stall and an idle timeout (see the module doc).
pub struct Guarded {
    tcp: TcpStream,
    busy: Busy,
    /// Last time a read or write moved bytes.
    last_progress: Instant,
    /// Fires at `last_progress + IDLE_TIMEOUT` (reset lazily when it fires early).
    idle: Pin<Box<Sleep>>,
    /// Armed on the first write that cannot proceed, disarmed by any write progress.
    stall: Pin<Box<Sleep>>,
    stall_armed: bool,
    write_stall: Duration,
    idle_timeout: Duration,
}

impl Guarded {
    pub fn new(tcp: TcpStream, busy: Busy) -> Guarded {
        Guarded::with_timeouts(tcp, busy, WRITE_STALL_TIMEOUT, IDLE_TIMEOUT)
    }

    fn with_timeouts(
        tcp: TcpStream,
        busy: Busy,
        write_stall: Duration,
        idle_timeout: Duration,
    ) -> Guarded {
        let now = Instant::now();
        Guarded {
            tcp,
            busy,
            last_progress: now,
            idle: Box::pin(tokio::time::sleep_until(now + idle_timeout)),
            stall: Box::pin(tokio::time::sleep_until(now + write_stall)),
            stall_armed: false,
            write_stall,
            idle_timeout,
        }
    }

    /// Fails the connection: the socket is closed with a reset, so the kernel drops the
    /// unsent data at once instead of retrying it into a zero window for minutes.
    fn timed_out(&self, what: &str) -> io::Error {
        let _ = self.tcp.set_zero_linger();
        io::Error::new(io::ErrorKind::TimedOut, what.to_owned())
    }

    fn progress(&mut self) {
        self.last_progress = Instant::now();
    }

    /// Called when a read cannot proceed: is the connection past its idle limit?
    fn poll_idle(&mut self, cx: &mut Context<'_>) -> Poll<io::Error> {
        loop {
            ready!(self.idle.as_mut().poll(cx));
            let due = self.last_progress + self.idle_timeout;
            if self.busy.is_busy() {
                let next = Instant::now() + self.idle_timeout;
                self.idle.as_mut().reset(next);
            } else if due > Instant::now() {
                self.idle.as_mut().reset(due);
            } else {
                return Poll::Ready(self.timed_out("connection idle"));
            }
        }
    }

    /// Called when a write cannot proceed: has it been stuck for too long?
    fn poll_stall(&mut self, cx: &mut Context<'_>) -> Poll<io::Error> {
        if !self.stall_armed {
            self.stall_armed = true;
            let at = Instant::now() + self.write_stall;
            self.stall.as_mut().reset(at);
        }
        ready!(self.stall.as_mut().poll(cx));
        Poll::Ready(self.timed_out("response write stalled"))
    }

    fn wrote<T>(&mut self, cx: &mut Context<'_>, r: Poll<io::Result<T>>) -> Poll<io::Result<T>> {
        match r {
            Poll::Ready(r) => {
                self.stall_armed = false;
                self.progress();
                Poll::Ready(r)
            }
            Poll::Pending => match self.poll_stall(cx) {
                Poll::Ready(e) => Poll::Ready(Err(e)),
                Poll::Pending => Poll::Pending,
            },
        }
    }
}

impl AsyncRead for Guarded {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        match Pin::new(&mut this.tcp).poll_read(cx, buf) {
            Poll::Ready(r) => {
                this.progress();
                Poll::Ready(r)
            }
            Poll::Pending => match this.poll_idle(cx) {
                Poll::Ready(e) => Poll::Ready(Err(e)),
                Poll::Pending => Poll::Pending,
            },
        }
    }
}

impl AsyncWrite for Guarded {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        let this = self.get_mut();
        let r = Pin::new(&mut this.tcp).poll_write(cx, buf);
        this.wrote(cx, r)
    }

    // Forwarded so hyper keeps its vectored write strategy, which queues the shared
    // response `Bytes` instead of copying each response into a per-connection buffer.
    fn poll_write_vectored(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        let this = self.get_mut();
        let r = Pin::new(&mut this.tcp).poll_write_vectored(cx, bufs);
        this.wrote(cx, r)
    }

    fn is_write_vectored(&self) -> bool {
        self.tcp.is_write_vectored()
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        let r = Pin::new(&mut this.tcp).poll_flush(cx);
        this.wrote(cx, r)
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        let r = Pin::new(&mut this.tcp).poll_shutdown(cx);
        this.wrote(cx, r)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tokio::io::{AsyncReadExt, AsyncWriteExt};

    async fn pair() -> (TcpStream, TcpStream) {
        let l = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = l.local_addr().unwrap();
        let (c, s) = tokio::join!(TcpStream::connect(addr), l.accept());
        (c.unwrap(), s.unwrap().0)
    }

    #[tokio::test]
    async fn a_write_nobody_reads_fails_after_the_stall_timeout() {
        let (_client, server) = pair().await;
        let mut g = Guarded::with_timeouts(
            server,
            Busy::default(),
            Duration::from_millis(200),
            Duration::from_secs(60),
        );
        let chunk = vec![0u8; 1 << 20];
        let started = std::time::Instant::now();
        let e = loop {
            if let Err(e) = g.write_all(&chunk).await {
                break e;
            }
            assert!(started.elapsed() < Duration::from_secs(20), "never stalled");
        };
        assert_eq!(e.kind(), io::ErrorKind::TimedOut);
    }

    #[tokio::test]
    async fn an_idle_connection_is_closed_unless_a_request_is_in_progress() {
        let (_client, server) = pair().await;
        let busy = Busy::default();
        let mut g = Guarded::with_timeouts(
            server,
            busy.clone(),
            Duration::from_secs(60),
            Duration::from_millis(200),
        );
        let guard = busy.enter();
        let mut buf = [0u8; 16];
        let r = tokio::time::timeout(Duration::from_millis(600), g.read(&mut buf)).await;
        assert!(r.is_err(), "closed while a request was in progress");
        drop(guard);
        let e = g.read(&mut buf).await.unwrap_err();
        assert_eq!(e.kind(), io::ErrorKind::TimedOut);
    }
}
