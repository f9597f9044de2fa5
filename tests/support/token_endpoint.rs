//! The OAuth 2.0 token endpoint the tests talk to: a hyper 1 server that issues
//! short-lived bearer tokens, counts and records requests, fails on demand and rotates
//! refresh tokens. It also answers Dovecot's token introspection for the tokens it
//! issued, and builds the in-process STARTTLS SMTP server that accepts exactly its live
//! tokens over XOAUTH2. Only loopback addresses are used.

use std::collections::{HashMap, HashSet};
use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use http_body_util::{BodyExt, Full};
use hyper::body::{Bytes, Incoming};
use hyper::server::conn::http1;
use hyper::service::service_fn;
use hyper::{Request, Response, StatusCode};
use hyper_util::rt::TokioIo;
use smtp_canary::demo::server::{AuthVerdict, Mechanism, ServerHandle, SmtpServer};
use tokio::net::TcpListener;

use super::fixtures::USER;
use super::pki::{self, TestPki};

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
    pub fn smtp_server(&self, pki: &TestPki, challenge: bool) -> SmtpServer {
        let ep = self.clone();
        SmtpServer::new()
            .starttls(pki.pki.server_config().expect("server config"))
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

    /// [`TokenEndpoint::smtp_server`], started.
    pub async fn start_smtp(&self, pki: &TestPki, challenge: bool) -> ServerHandle {
        pki::start(self.smtp_server(pki, challenge)).await
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
