//! Helpers for the OAuth tests (`tests/integration/oauth.rs`, `tests/integration/oauth_cli.rs`,
//! `tests/integration/oauth_stack.rs`):
//! - [`TokenEndpoint`]: a hyper 1 server that plays an OAuth 2.0 token endpoint (issues
//!   short-lived bearer tokens, counts and records requests, fails on demand, rotates
//!   refresh tokens) and answers Dovecot's token introspection for the tokens it issued;
//! - an in-process STARTTLS SMTP server that accepts exactly the endpoint's live tokens
//!   over XOAUTH2;
//! - mailbox, cache and prober builders, and a bare HTTP GET for the binary's endpoints.
//!
//! Only loopback addresses are used.

#![allow(dead_code)]

use std::collections::{HashMap, HashSet};
use std::convert::Infallible;
use std::io::{Read, Write};
use std::net::SocketAddr;
use std::path::Path;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use http_body_util::{BodyExt, Full};
use hyper::body::{Bytes, Incoming};
use hyper::server::conn::http1;
use hyper::service::service_fn;
use hyper::{Request, Response, StatusCode};
use hyper_util::rt::TokioIo;
use smtp_canary::auth::{CacheOptions, TokenCache, TokenClient};
use smtp_canary::config::{
    AuthConfig, Budget, Grant, Limits, Mailbox, OAuth2, Provider, Secret, Security, TlsSettings,
};
use smtp_canary::demo::Pki;
use smtp_canary::demo::server::{AuthVerdict, Mechanism, ServerHandle, SmtpServer};
use smtp_canary::probe::{Prober, ProberOptions, Template, TlsTrust};
use tokio::net::TcpListener;

pub const USER: &str = "canary@example.com";
pub const CLIENT_ID: &str = "11111111-2222-3333-4444-555555555555";
pub const CLIENT_SECRET: &str = "cs~Q8w-TopSecret.Value_0123456789";
pub const SCOPE: &str = "https://outlook.office365.com/.default";
pub const HELO: &str = "probe.canary.test";

/// Entra's answer for an expired client secret.
pub const AADSTS7000222: &str = "AADSTS7000222: The provided client secret keys for app \
    '11111111-2222-3333-4444-555555555555' are expired. Visit the Azure portal to create new keys \
    for your app: https://aka.ms/NewClientSecret, or consider using certificate credentials for \
    added security: https://aka.ms/certCreds.\r\nTrace ID: 0b1c2d3e-0000-4000-8000-000000000001\r\n\
    Correlation ID: 5f6e7d8c-0000-4000-8000-000000000002\r\nTimestamp: 2026-11-29 16:00:00Z";

/// What the token path answers.
#[derive(Debug, Clone)]
pub enum Mode {
    /// A fresh token (and a rotated refresh token when rotation is on).
    Issue,
    /// This status and JSON body.
    Fail { status: u16, body: String },
    /// 200 with a body that is not JSON.
    Garbage,
    /// Never answers (until the connection is dropped).
    Hang,
}

/// One recorded token request.
#[derive(Debug, Clone)]
pub struct Recorded {
    pub path: String,
    pub form: HashMap<String, String>,
}

#[derive(Default)]
struct State {
    mode: Mutex<Option<Mode>>,
    lifetime: Mutex<u64>,
    delay: Mutex<Duration>,
    rotate: AtomicBool,
    requests: AtomicUsize,
    introspections: AtomicUsize,
    recorded: Mutex<Vec<Recorded>>,
    live: Mutex<HashSet<String>>,
    issued: Mutex<Vec<String>>,
    refresh_issued: Mutex<Vec<String>>,
    username: Mutex<String>,
    seq: AtomicUsize,
}

/// The test's token endpoint (see the module docs). Paths: `/introspect` answers
/// Dovecot; any path containing `invalid-client` always answers Entra's AADSTS7000215
/// (with the client secret echoed, to prove it is cut out); every other path is the
/// token endpoint in its current [`Mode`].
#[derive(Clone)]
pub struct TokenEndpoint {
    addr: SocketAddr,
    state: Arc<State>,
}

impl TokenEndpoint {
    /// Serves on `127.0.0.1:0` on the current runtime.
    pub async fn start() -> TokenEndpoint {
        TokenEndpoint::start_at("127.0.0.1:0".parse().unwrap()).await
    }

    /// Serves on `addr` on the current runtime.
    pub async fn start_at(addr: SocketAddr) -> TokenEndpoint {
        let listener = TcpListener::bind(addr)
            .await
            .unwrap_or_else(|e| panic!("cannot listen on {addr}: {e}"));
        let ep = TokenEndpoint::new(listener.local_addr().unwrap());
        tokio::spawn(serve(listener, ep.state.clone()));
        ep
    }

    /// Serves on `addr` from a thread of its own that lives as long as the test process,
    /// so every test of a binary can share it (e.g. the fixed introspection port).
    pub fn start_detached(addr: SocketAddr) -> TokenEndpoint {
        let std_listener = std::net::TcpListener::bind(addr).unwrap_or_else(|e| {
            panic!("cannot listen on {addr}: {e} (is another test process using it?)")
        });
        std_listener.set_nonblocking(true).unwrap();
        let ep = TokenEndpoint::new(std_listener.local_addr().unwrap());
        let state = ep.state.clone();
        std::thread::spawn(move || {
            let rt = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .unwrap();
            rt.block_on(async move {
                let listener = TcpListener::from_std(std_listener).unwrap();
                serve(listener, state).await;
            });
        });
        ep
    }

    fn new(addr: SocketAddr) -> TokenEndpoint {
        let state = State::default();
        *state.mode.lock().unwrap() = Some(Mode::Issue);
        *state.lifetime.lock().unwrap() = 3600;
        *state.username.lock().unwrap() = USER.to_owned();
        TokenEndpoint {
            addr,
            state: Arc::new(state),
        }
    }

    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// The token URL (an Entra-like path).
    pub fn url(&self) -> String {
        format!(
            "http://{}/contoso.onmicrosoft.com/oauth2/v2.0/token",
            self.addr
        )
    }

    /// A token URL that always answers `invalid_client`.
    pub fn invalid_client_url(&self) -> String {
        format!("http://{}/invalid-client/oauth2/v2.0/token", self.addr)
    }

    pub fn set_mode(&self, mode: Mode) {
        *self.state.mode.lock().unwrap() = Some(mode);
    }

    /// `expires_in` of the tokens issued from now on.
    pub fn set_lifetime(&self, secs: u64) {
        *self.state.lifetime.lock().unwrap() = secs;
    }

    /// How long each token request waits before it is answered.
    pub fn set_delay(&self, d: Duration) {
        *self.state.delay.lock().unwrap() = d;
    }

    /// Whether each answer carries a new refresh token.
    pub fn set_rotate(&self, on: bool) {
        self.state.rotate.store(on, Ordering::SeqCst);
    }

    /// The username introspection reports for live tokens.
    pub fn set_username(&self, user: &str) {
        *self.state.username.lock().unwrap() = user.to_owned();
    }

    /// Token requests received (every path except `/introspect`).
    pub fn requests(&self) -> usize {
        self.state.requests.load(Ordering::SeqCst)
    }

    pub fn introspections(&self) -> usize {
        self.state.introspections.load(Ordering::SeqCst)
    }

    pub fn recorded(&self) -> Vec<Recorded> {
        self.state.recorded.lock().unwrap().clone()
    }

    /// Every access token issued so far.
    pub fn issued(&self) -> Vec<String> {
        self.state.issued.lock().unwrap().clone()
    }

    /// Every refresh token issued (rotated) so far.
    pub fn refresh_issued(&self) -> Vec<String> {
        self.state.refresh_issued.lock().unwrap().clone()
    }

    /// Revokes every token issued so far (the SMTP side then rejects them).
    pub fn revoke_all(&self) {
        self.state.live.lock().unwrap().clear();
    }

    /// Revokes one token.
    pub fn revoke(&self, token: &str) {
        self.state.live.lock().unwrap().remove(token);
    }

    /// Token requests received on `path`.
    pub fn requests_to(&self, path: &str) -> usize {
        self.recorded().iter().filter(|r| r.path == path).count()
    }

    pub fn is_live(&self, token: &str) -> bool {
        self.state.live.lock().unwrap().contains(token)
    }

    /// An in-process STARTTLS SMTP server that accepts XOAUTH2 for [`USER`] with exactly
    /// this endpoint's live tokens; a rejected token gets Google's 334 challenge when
    /// `challenge` is true.
    pub fn smtp_server(&self, pki: &Pki, challenge: bool) -> SmtpServer {
        let ep = self.clone();
        SmtpServer::new()
            .starttls(pki.server_config().expect("server config"))
            .mechanisms([Mechanism::XOAuth2])
            .xoauth2_challenge(challenge)
            .auth_check(move |c| {
                if c.mechanism == Mechanism::XOAuth2 && c.username == USER && ep.is_live(&c.secret)
                {
                    AuthVerdict::Accept
                } else {
                    AuthVerdict::Reject
                }
            })
    }
}

async fn serve(listener: TcpListener, state: Arc<State>) {
    loop {
        let Ok((stream, _)) = listener.accept().await else {
            tokio::time::sleep(Duration::from_millis(20)).await;
            continue;
        };
        let state = state.clone();
        tokio::spawn(async move {
            let svc = service_fn(move |req| handle(req, state.clone()));
            let _ = http1::Builder::new()
                .serve_connection(TokioIo::new(stream), svc)
                .await;
        });
    }
}

fn json(status: u16, body: String) -> Response<Full<Bytes>> {
    let mut r = Response::new(Full::new(Bytes::from(body)));
    *r.status_mut() = StatusCode::from_u16(status).unwrap();
    r.headers_mut().insert(
        hyper::header::CONTENT_TYPE,
        hyper::header::HeaderValue::from_static("application/json"),
    );
    r
}

async fn handle(
    req: Request<Incoming>,
    st: Arc<State>,
) -> Result<Response<Full<Bytes>>, Infallible> {
    let path = req.uri().path().to_owned();
    let body = req
        .into_body()
        .collect()
        .await
        .map(|b| b.to_bytes())
        .unwrap_or_default();
    let form = parse_form(&String::from_utf8_lossy(&body));
    if path == "/introspect" {
        st.introspections.fetch_add(1, Ordering::SeqCst);
        let token = form.get("token").cloned().unwrap_or_default();
        let live = st.live.lock().unwrap().contains(&token);
        let answer = if live {
            serde_json::json!({"active": true, "username": *st.username.lock().unwrap()})
        } else {
            serde_json::json!({"active": false})
        };
        return Ok(json(200, answer.to_string()));
    }
    st.requests.fetch_add(1, Ordering::SeqCst);
    st.recorded.lock().unwrap().push(Recorded {
        path: path.clone(),
        form: form.clone(),
    });
    let delay = *st.delay.lock().unwrap();
    if !delay.is_zero() {
        tokio::time::sleep(delay).await;
    }
    if path.contains("invalid-client") {
        let secret = form.get("client_secret").cloned().unwrap_or_default();
        let body = serde_json::json!({
            "error": "invalid_client",
            "error_description": format!("AADSTS7000215: Invalid client secret provided ({secret}). Ensure the secret being sent in the request is the client secret value, not the client secret ID.\r\nTrace ID: 7"),
            "error_codes": [7000215],
        });
        return Ok(json(401, body.to_string()));
    }
    let mode = st.mode.lock().unwrap().clone().unwrap_or(Mode::Issue);
    let resp = match mode {
        Mode::Issue => {
            let n = st.seq.fetch_add(1, Ordering::SeqCst) + 1;
            let token = format!("at-{n}-{:016x}", rand::random::<u64>());
            st.live.lock().unwrap().insert(token.clone());
            st.issued.lock().unwrap().push(token.clone());
            let mut answer = serde_json::json!({
                "token_type": "Bearer",
                "expires_in": *st.lifetime.lock().unwrap(),
                "ext_expires_in": *st.lifetime.lock().unwrap(),
                "access_token": token,
            });
            // Only a refresh_token grant gets a new refresh token (as with real
            // endpoints); client_credentials answers never carry one.
            if st.rotate.load(Ordering::SeqCst)
                && form.get("grant_type").map(String::as_str) == Some("refresh_token")
            {
                let rt = format!("rt-rotated-{n}-{:016x}", rand::random::<u64>());
                st.refresh_issued.lock().unwrap().push(rt.clone());
                answer["refresh_token"] = serde_json::Value::String(rt);
            }
            json(200, answer.to_string())
        }
        Mode::Fail { status, body } => json(status, body),
        Mode::Garbage => {
            let mut r = json(200, "<html>Sign in to your account</html>".into());
            r.headers_mut().insert(
                hyper::header::CONTENT_TYPE,
                hyper::header::HeaderValue::from_static("text/html"),
            );
            r
        }
        Mode::Hang => {
            tokio::time::sleep(Duration::from_secs(3600)).await;
            json(500, "{}".into())
        }
    };
    Ok(resp)
}

/// `application/x-www-form-urlencoded`, decoded.
pub fn parse_form(body: &str) -> HashMap<String, String> {
    body.split('&')
        .filter(|kv| !kv.is_empty())
        .map(|kv| {
            let (k, v) = kv.split_once('=').unwrap_or((kv, ""));
            (decode(k), decode(v))
        })
        .collect()
}

fn decode(s: &str) -> String {
    let bytes = s.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        match bytes[i] {
            b'+' => out.push(b' '),
            b'%' if i + 2 < bytes.len() => {
                let hex = std::str::from_utf8(&bytes[i + 1..i + 3]).unwrap_or("");
                match u8::from_str_radix(hex, 16) {
                    Ok(b) => {
                        out.push(b);
                        i += 2;
                    }
                    Err(_) => out.push(b'%'),
                }
            }
            b => out.push(b),
        }
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// client_credentials settings pointing at `url`.
pub fn client_credentials(url: &str) -> OAuth2 {
    OAuth2 {
        grant: Grant::ClientCredentials,
        token_url: url.to_owned(),
        scope: Some(SCOPE.to_owned()),
        client_id: CLIENT_ID.to_owned(),
        client_secret: Secret::new(CLIENT_SECRET),
        refresh_token: None,
    }
}

/// refresh_token settings pointing at `url`; an empty `client_secret` is a public client.
pub fn refresh_grant(url: &str, refresh_token: &str, client_secret: &str) -> OAuth2 {
    OAuth2 {
        grant: Grant::RefreshToken,
        token_url: url.to_owned(),
        scope: Some("https://mail.google.com/".to_owned()),
        client_id: CLIENT_ID.to_owned(),
        client_secret: Secret::new(client_secret),
        refresh_token: Some(Secret::new(refresh_token)),
    }
}

/// An XOAUTH2 mailbox on 127.0.0.1:`port` (STARTTLS, trusting `ca_file`).
pub fn mailbox(name: &str, port: u16, ca_file: &Path, oauth: OAuth2) -> Mailbox {
    Mailbox {
        name: name.to_owned(),
        provider: Provider::Generic,
        host: "127.0.0.1".to_owned(),
        port,
        security: Security::Starttls,
        auth: AuthConfig::OAuth2 {
            username: USER.to_owned(),
            oauth,
        },
        auth_mechanism: None,
        from: USER.to_owned(),
        to: vec!["sink@example.com".to_owned()],
        interval: Duration::from_secs(60),
        timeout: Duration::from_secs(10),
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

/// The token cache of `mb` (which must be an OAuth mailbox) on a fresh client.
pub fn cache(mb: &Mailbox, opts: &CacheOptions) -> Arc<TokenCache> {
    let AuthConfig::OAuth2 { username, oauth } = &mb.auth else {
        panic!("not an OAuth mailbox")
    };
    let client = TokenClient::new(&TlsTrust::new()).expect("token client");
    Arc::new(TokenCache::new(&mb.name, username, oauth, client, opts).expect("token cache"))
}

pub fn prober() -> Prober {
    Prober::new(ProberOptions {
        // IP-literal hosts never ask; this only keeps the system resolver out of it.
        dns_server: Some("127.0.0.1:9".parse().unwrap()),
        helo_name: HELO.to_owned(),
    })
    .expect("prober")
}

pub fn template(mb: &Mailbox) -> Template {
    Template::new(&mb.name, &mb.from, &mb.to, HELO).expect("template")
}

/// A throwaway PKI for `localhost` / `127.0.0.1` with its CA in a temp file.
pub struct TestPki {
    pub pki: Pki,
    pub ca_file: tempfile::NamedTempFile,
}

impl TestPki {
    pub fn new() -> TestPki {
        let pki = Pki::generate(&["localhost", "127.0.0.1"]).expect("PKI");
        let mut ca_file = tempfile::NamedTempFile::new().expect("temp file");
        ca_file.write_all(pki.ca_pem().as_bytes()).unwrap();
        ca_file.flush().unwrap();
        TestPki { pki, ca_file }
    }

    pub fn ca_path(&self) -> &Path {
        self.ca_file.path()
    }
}

/// Starts [`TokenEndpoint::smtp_server`].
pub async fn start_smtp(ep: &TokenEndpoint, pki: &TestPki, challenge: bool) -> ServerHandle {
    ep.smtp_server(&pki.pki, challenge)
        .start()
        .await
        .expect("start SMTP server")
}

/// A bare HTTP/1.0 GET on loopback (for the binary's `/metrics` and `/`); `None` if
/// nothing answers.
pub fn http_get(addr: SocketAddr, path: &str) -> Option<String> {
    let mut s = std::net::TcpStream::connect_timeout(&addr, Duration::from_secs(2)).ok()?;
    s.set_read_timeout(Some(Duration::from_secs(5))).ok()?;
    write!(s, "GET {path} HTTP/1.0\r\nHost: {addr}\r\n\r\n").ok()?;
    let mut out = String::new();
    s.read_to_string(&mut out).ok()?;
    Some(out)
}

/// A free loopback port (bound and released; good enough for a test).
pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}
