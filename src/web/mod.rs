//! The HTTP side: `/metrics`, `/-/healthy`, `/-/ready`, `POST /-/reload` and a plain `/`
//! status page that lists every mailbox with its last result, its phases and the redacted
//! transcript of its last failure. Nothing served here can contain a secret: results
//! carry only redacted transcripts and hints built from tables.

pub mod config;
mod status;

use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use http_body_util::Full;
use hyper::body::{Bytes, Incoming};
use hyper::server::conn::http1;
use hyper::service::service_fn;
use hyper::{Method, Request, Response, StatusCode};
use hyper_util::rt::TokioIo;
use tokio::net::TcpListener;
use tokio::sync::{mpsc, oneshot, watch};

use crate::metrics::Metrics;
use crate::scheduler::Board;

/// A reload request: the daemon answers on the oneshot with the outcome.
pub type ReloadRequest = oneshot::Sender<Result<(), String>>;

/// What the handlers read.
pub struct WebState {
    pub metrics: Arc<Metrics>,
    pub board: Arc<Board>,
    /// Config loaded and scheduler running.
    pub ready: AtomicBool,
    pub reload: Option<mpsc::Sender<ReloadRequest>>,
    /// A reload is running: another request is answered at once instead of queueing.
    pub reloading: AtomicBool,
    /// `--web.config.file` in force (TLS and basic-auth users); swapped on reload, read
    /// per connection and per request.
    web: std::sync::RwLock<config::WebConfig>,
}

impl WebState {
    pub fn new(
        metrics: Arc<Metrics>,
        board: Arc<Board>,
        reload: Option<mpsc::Sender<ReloadRequest>>,
    ) -> WebState {
        WebState {
            metrics,
            board,
            ready: AtomicBool::new(false),
            reload,
            reloading: AtomicBool::new(false),
            web: std::sync::RwLock::new(config::WebConfig::default()),
        }
    }
}

impl WebState {
    /// Puts a (re)loaded `--web.config.file` in force for new connections and requests.
    pub fn set_web_config(&self, cfg: config::WebConfig) {
        *self.web.write().unwrap_or_else(|e| e.into_inner()) = cfg;
    }

    pub fn web_config(&self) -> config::WebConfig {
        self.web.read().unwrap_or_else(|e| e.into_inner()).clone()
    }
}

/// Checks the form of `--web.listen-address` (`HOST:PORT`, `[IPv6]:PORT` or `:PORT`) so
/// that a typo is a usage error (exit 2), not a failure to start.
pub fn check_listen_address(addr: &str) -> Result<(), String> {
    let (host, port) = addr
        .rsplit_once(':')
        .ok_or_else(|| "expected HOST:PORT, e.g. 127.0.0.1:9587 or :9587".to_string())?;
    port.parse::<u16>()
        .map_err(|_| format!("port {port:?} is not a number from 0 to 65535"))?;
    let host = host.trim_start_matches('[').trim_end_matches(']');
    let name_ok = !host.is_empty()
        && host.len() <= 253
        && host
            .split('.')
            .all(|l| !l.is_empty() && l.chars().all(|c| c.is_ascii_alphanumeric() || c == '-'));
    if host.is_empty() || host.parse::<std::net::IpAddr>().is_ok() || name_ok {
        Ok(())
    } else {
        Err(format!("{host:?} is neither an IP address nor a host name"))
    }
}

/// Binds the listener (so a bad address fails at start, not later). `:PORT` listens on
/// every IPv4 address, as the Prometheus exporters do.
pub async fn bind(addr: &str) -> std::io::Result<TcpListener> {
    match addr.strip_prefix(':') {
        Some(port) => TcpListener::bind(format!("0.0.0.0:{port}")).await,
        None => TcpListener::bind(addr).await,
    }
}

/// Serves until `shutdown` turns true.
pub async fn serve(
    listener: TcpListener,
    state: Arc<WebState>,
    mut shutdown: watch::Receiver<bool>,
) {
    loop {
        let (stream, peer) = tokio::select! {
            r = listener.accept() => match r {
                Ok(x) => x,
                Err(e) => {
                    tracing::warn!(error = %e, "accept failed");
                    tokio::time::sleep(std::time::Duration::from_millis(50)).await;
                    continue;
                }
            },
            _ = crate::scheduler::stopped(&mut shutdown) => return,
        };
        let state = state.clone();
        let tls = state.web_config().tls;
        tokio::spawn(async move {
            match tls {
                None => serve_connection(stream, state, peer).await,
                Some(acceptor) => {
                    let handshake =
                        tokio::time::timeout(HANDSHAKE_TIMEOUT, acceptor.accept(stream)).await;
                    match handshake {
                        Ok(Ok(s)) => serve_connection(s, state, peer).await,
                        Ok(Err(e)) => tracing::debug!(error = %e, %peer, "HTTPS handshake failed"),
                        Err(_) => tracing::debug!(%peer, "HTTPS handshake timed out"),
                    }
                }
            }
        });
    }
}

/// A client that connects and never finishes its TLS handshake is dropped after this.
const HANDSHAKE_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(10);

async fn serve_connection<I>(io: I, state: Arc<WebState>, peer: SocketAddr)
where
    I: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin + Send + 'static,
{
    let svc = service_fn(move |req| handle(req, state.clone(), peer));
    let conn = http1::Builder::new()
        .timer(hyper_util::rt::TokioTimer::new())
        .header_read_timeout(std::time::Duration::from_secs(10))
        .serve_connection(TokioIo::new(io), svc);
    if let Err(e) = conn.await {
        tracing::debug!(error = %e, %peer, "HTTP connection error");
    }
}

fn text(
    status: StatusCode,
    content_type: &'static str,
    body: impl Into<Bytes>,
) -> Response<Full<Bytes>> {
    let mut r = Response::new(Full::new(body.into()));
    *r.status_mut() = status;
    r.headers_mut().insert(
        hyper::header::CONTENT_TYPE,
        hyper::header::HeaderValue::from_static(content_type),
    );
    r
}

async fn handle(
    req: Request<Incoming>,
    state: Arc<WebState>,
    _peer: SocketAddr,
) -> Result<Response<Full<Bytes>>, Infallible> {
    const PLAIN: &str = "text/plain; charset=utf-8";
    if let Some(auth) = state.web_config().auth {
        let header = req
            .headers()
            .get(hyper::header::AUTHORIZATION)
            .and_then(|v| v.to_str().ok())
            .map(str::to_owned);
        let ok = match auth.quick(header.as_deref()) {
            config::Quick::Known(ok) => ok,
            config::Quick::NeedsBcrypt { user, password } => {
                // bcrypt is deliberately slow: off the async workers, and only a couple at
                // a time.
                match auth.bcrypt_slots.clone().acquire_owned().await {
                    Ok(permit) => tokio::task::spawn_blocking(move || {
                        let ok = auth.verify(&user, &password);
                        drop(permit);
                        ok
                    })
                    .await
                    .unwrap_or(false),
                    Err(_) => false,
                }
            }
        };
        if !ok {
            let mut r = text(StatusCode::UNAUTHORIZED, PLAIN, "Unauthorized.\n");
            r.headers_mut().insert(
                hyper::header::WWW_AUTHENTICATE,
                hyper::header::HeaderValue::from_static("Basic realm=\"smtp-canary\""),
            );
            return Ok(r);
        }
    }
    let resp = match (req.method(), req.uri().path()) {
        (&Method::GET | &Method::HEAD, "/metrics") => {
            // Rendering 10,000 mailboxes' series takes about a second of CPU: off the
            // async workers, so probes keep their schedule during a scrape.
            let metrics = state.metrics.clone();
            match tokio::task::spawn_blocking(move || metrics.render()).await {
                Ok(body) => text(
                    StatusCode::OK,
                    "text/plain; version=0.0.4; charset=utf-8",
                    body,
                ),
                Err(_) => text(
                    StatusCode::INTERNAL_SERVER_ERROR,
                    PLAIN,
                    "Rendering metrics failed.\n",
                ),
            }
        }
        (&Method::GET | &Method::HEAD, "/-/healthy") => text(StatusCode::OK, PLAIN, "Healthy.\n"),
        (&Method::GET | &Method::HEAD, "/-/ready") => {
            if state.ready.load(Ordering::Relaxed) {
                text(StatusCode::OK, PLAIN, "Ready.\n")
            } else {
                text(StatusCode::SERVICE_UNAVAILABLE, PLAIN, "Not ready.\n")
            }
        }
        (&Method::POST | &Method::PUT, "/-/reload") => reload(&state).await,
        (_, "/-/reload") => text(
            StatusCode::METHOD_NOT_ALLOWED,
            PLAIN,
            "Use POST to reload.\n",
        ),
        (&Method::GET | &Method::HEAD, "/") => {
            let board = state.board.clone();
            match tokio::task::spawn_blocking(move || status::page(&board.snapshot())).await {
                Ok(page) => text(StatusCode::OK, "text/html; charset=utf-8", page),
                Err(_) => text(
                    StatusCode::INTERNAL_SERVER_ERROR,
                    PLAIN,
                    "Rendering the page failed.\n",
                ),
            }
        }
        _ => text(StatusCode::NOT_FOUND, PLAIN, "Not found.\n"),
    };
    Ok(resp)
}

async fn reload(state: &WebState) -> Response<Full<Bytes>> {
    const PLAIN: &str = "text/plain; charset=utf-8";
    let Some(tx) = &state.reload else {
        return text(
            StatusCode::SERVICE_UNAVAILABLE,
            PLAIN,
            "Reload is not available.\n",
        );
    };
    let busy = || {
        text(
            StatusCode::CONFLICT,
            PLAIN,
            "A reload is already in progress; try again when it has finished.\n",
        )
    };
    if state.reloading.load(Ordering::SeqCst) {
        return busy();
    }
    let (done, wait) = oneshot::channel();
    match tx.try_send(done) {
        Ok(()) => {}
        Err(mpsc::error::TrySendError::Full(_)) => return busy(),
        Err(mpsc::error::TrySendError::Closed(_)) => {
            return text(StatusCode::SERVICE_UNAVAILABLE, PLAIN, "Shutting down.\n");
        }
    }
    match wait.await {
        Ok(Ok(())) => text(StatusCode::OK, PLAIN, "Config reloaded.\n"),
        Ok(Err(e)) => text(
            StatusCode::INTERNAL_SERVER_ERROR,
            PLAIN,
            format!("Reload failed; the previous config stays active:\n{e}\n"),
        ),
        Err(_) => text(StatusCode::SERVICE_UNAVAILABLE, PLAIN, "Shutting down.\n"),
    }
}
