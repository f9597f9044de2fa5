//! The HTTP side: `/metrics`, `/-/healthy`, `/-/ready`, `POST /-/reload` and a plain `/`
//! status page that lists every mailbox with its last result, its phases and the redacted
//! transcript of its last failure. Nothing served here can contain a secret: results
//! carry only redacted transcripts and hints built from tables.
//!
//! Hostile clients are bounded here too: connection limits and timeouts (`conn`), one
//! shared rendering for concurrent scrapes (`flight`), a failed-login limiter (`limit`),
//! and cross-site state-changing requests refused (403).

pub mod config;
mod conn;
mod flight;
mod limit;
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

use crate::board::Board;
use crate::metrics::Metrics;

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
    metrics_page: Arc<flight::SingleFlight>,
    status_page: Arc<flight::SingleFlight>,
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
            metrics_page: Arc::default(),
            status_page: Arc::default(),
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

/// Serves until `shutdown` turns true, at most [`conn::MAX_CONNECTIONS`] connections at
/// a time.
pub async fn serve(
    listener: TcpListener,
    state: Arc<WebState>,
    mut shutdown: watch::Receiver<bool>,
) {
    let slots = Arc::new(tokio::sync::Semaphore::new(conn::MAX_CONNECTIONS));
    loop {
        // A slot before accept: past the cap, new clients wait in the kernel's backlog
        // rather than each costing a task and buffers here.
        let permit = tokio::select! {
            p = slots.clone().acquire_owned() => match p {
                Ok(p) => p,
                Err(_) => return,
            },
            _ = crate::util::stopped(&mut shutdown) => return,
        };
        let (stream, peer) = tokio::select! {
            r = listener.accept() => match r {
                Ok(x) => x,
                Err(e) => {
                    tracing::warn!(error = %e, "accept failed");
                    tokio::time::sleep(std::time::Duration::from_millis(50)).await;
                    continue;
                }
            },
            _ = crate::util::stopped(&mut shutdown) => return,
        };
        let state = state.clone();
        let tls = state.web_config().tls;
        tokio::spawn(async move {
            let _permit = permit;
            let busy = conn::Busy::default();
            let stream = conn::Guarded::new(stream, busy.clone());
            match tls {
                None => serve_connection(stream, state, peer, busy).await,
                Some(acceptor) => {
                    let handshake =
                        tokio::time::timeout(HANDSHAKE_TIMEOUT, acceptor.accept(stream)).await;
                    match handshake {
                        Ok(Ok(s)) => serve_connection(s, state, peer, busy).await,
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

async fn serve_connection<I>(io: I, state: Arc<WebState>, peer: SocketAddr, busy: conn::Busy)
where
    I: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin + Send + 'static,
{
    let svc = service_fn(move |req| {
        let guard = busy.enter();
        let state = state.clone();
        async move {
            let r = handle(req, state, peer).await;
            drop(guard);
            r
        }
    });
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
    // Before auth: a browser sends cached basic-auth credentials cross-site too, and a
    // forged request should not cost a bcrypt check.
    if !matches!(*req.method(), Method::GET | Method::HEAD | Method::OPTIONS)
        && cross_site(req.headers())
    {
        return Ok(text(
            StatusCode::FORBIDDEN,
            PLAIN,
            "Cross-site request refused: send it without a foreign Origin (e.g. curl -X POST).\n",
        ));
    }
    if let Some(auth) = state.web_config().auth {
        let header = req
            .headers()
            .get(hyper::header::AUTHORIZATION)
            .and_then(|v| v.to_str().ok());
        match auth.authorize(header).await {
            config::Verdict::Allowed => {}
            config::Verdict::Denied => {
                let mut r = text(StatusCode::UNAUTHORIZED, PLAIN, "Unauthorized.\n");
                r.headers_mut().insert(
                    hyper::header::WWW_AUTHENTICATE,
                    hyper::header::HeaderValue::from_static("Basic realm=\"smtp-canary\""),
                );
                return Ok(r);
            }
            config::Verdict::Limited(wait) => {
                let r = text(
                    StatusCode::TOO_MANY_REQUESTS,
                    PLAIN,
                    "Too many failed logins for this user; retry later.\n",
                );
                return Ok(retry_after(r, wait));
            }
            config::Verdict::Busy => {
                let r = text(
                    StatusCode::SERVICE_UNAVAILABLE,
                    PLAIN,
                    "Too many logins being checked; retry later.\n",
                );
                return Ok(retry_after(r, std::time::Duration::from_secs(1)));
            }
        }
    }
    let resp = match (req.method(), req.uri().path()) {
        (&Method::GET | &Method::HEAD, "/metrics") => {
            // Rendering 10,000 mailboxes' series takes about a second of CPU: off the
            // async workers, so probes keep their schedule during a scrape; and once for
            // all the scrapes that arrive meanwhile.
            let metrics = state.metrics.clone();
            let body = state
                .metrics_page
                .get(move || Bytes::from(metrics.render()))
                .await;
            match body {
                Some(body) => text(
                    StatusCode::OK,
                    "text/plain; version=0.0.4; charset=utf-8",
                    body,
                ),
                None => text(
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
            let page = state
                .status_page
                .get(move || Bytes::from(status::page(&board.snapshot())))
                .await;
            match page {
                Some(page) => text(StatusCode::OK, "text/html; charset=utf-8", page),
                None => text(
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

fn retry_after(mut r: Response<Full<Bytes>>, wait: std::time::Duration) -> Response<Full<Bytes>> {
    // Whole seconds, rounded up: "0" would invite an immediate retry.
    let secs = wait.as_secs() + u64::from(wait.subsec_nanos() > 0);
    r.headers_mut()
        .insert(hyper::header::RETRY_AFTER, secs.max(1).into());
    r
}

/// Whether a state-changing request comes from another site (CSRF): its `Origin` is
/// present and is not this server as named by `Host`, or the browser says so in
/// `Sec-Fetch-Site`. A request with neither header (curl, scripts) is not cross-site.
fn cross_site(headers: &hyper::HeaderMap) -> bool {
    let header = |name| headers.get(name).map(|v| v.to_str().unwrap_or(""));
    if let Some(site) = header(hyper::header::HeaderName::from_static("sec-fetch-site")) {
        let site = site.trim();
        if site.eq_ignore_ascii_case("cross-site") || site.eq_ignore_ascii_case("same-site") {
            return true;
        }
    }
    let Some(origin) = header(hyper::header::ORIGIN) else {
        return false;
    };
    let Some(host) = header(hyper::header::HOST) else {
        return true;
    };
    !same_authority(origin.trim(), host.trim())
}

/// `Origin` (`scheme://host[:port]`, or `null`) against `Host` (`host[:port]`), with the
/// scheme's default port filled in on both sides.
fn same_authority(origin: &str, host: &str) -> bool {
    let Some((scheme, authority)) = origin.split_once("://") else {
        return false;
    };
    let default_port = match scheme.to_ascii_lowercase().as_str() {
        "http" => "80",
        "https" => "443",
        _ => return false,
    };
    let normalize = |a: &str| {
        let a = a.to_ascii_lowercase();
        // A port follows the last ':' unless that ':' is inside an IPv6 literal.
        match a.rsplit_once(':') {
            Some((h, p)) if !p.contains(']') && !p.is_empty() => (h.to_owned(), p.to_owned()),
            _ => (a, default_port.to_owned()),
        }
    };
    !authority.is_empty() && !authority.contains('/') && normalize(authority) == normalize(host)
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

#[cfg(test)]
mod tests {
    use super::*;

    fn headers(pairs: &[(&'static str, &'static str)]) -> hyper::HeaderMap {
        let mut h = hyper::HeaderMap::new();
        for (k, v) in pairs {
            h.insert(*k, hyper::header::HeaderValue::from_static(v));
        }
        h
    }

    #[test]
    fn cross_site_requests_are_told_from_same_origin_and_scripts() {
        let host = ("host", "127.0.0.1:9587");
        assert!(!cross_site(&headers(&[host])), "curl sends no Origin");
        assert!(!cross_site(&headers(&[
            host,
            ("origin", "http://127.0.0.1:9587")
        ])));
        assert!(!cross_site(&headers(&[
            ("host", "Canary.example"),
            ("origin", "https://canary.example:443")
        ])));
        assert!(!cross_site(&headers(&[
            ("host", "[::1]:9587"),
            ("origin", "http://[::1]:9587")
        ])));
        assert!(!cross_site(&headers(&[
            host,
            ("sec-fetch-site", "same-origin")
        ])));
        assert!(!cross_site(&headers(&[host, ("sec-fetch-site", "none")])));
        for origin in [
            "http://evil.example",
            "http://127.0.0.1:9588",
            "http://127.0.0.1",
            "null",
            "127.0.0.1:9587",
            "ftp://127.0.0.1:9587",
        ] {
            let h = [host, ("origin", origin)];
            let mut map = hyper::HeaderMap::new();
            for (k, v) in h {
                map.insert(k, hyper::header::HeaderValue::from_str(v).unwrap());
            }
            assert!(cross_site(&map), "{origin}");
        }
        assert!(
            cross_site(&headers(&[("origin", "http://127.0.0.1:9587")])),
            "no Host"
        );
        assert!(cross_site(&headers(&[
            host,
            ("sec-fetch-site", "cross-site")
        ])));
        assert!(cross_site(&headers(&[
            host,
            ("sec-fetch-site", "same-site")
        ])));
    }
}
