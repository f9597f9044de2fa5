//! OAuth 2.0 / XOAUTH2 against the test's token endpoint and the in-process SMTP server:
//! token reuse and refresh, one request for concurrent probes, back-off, failure reasons
//! and classes, the 334 challenge, refresh-token rotation across a restart, and HTTPS
//! through our own rustls config.
//!
//! Most tests arrange the same [`Rig`]; what the token endpoint was sent is checked
//! against a table of form fields ([`assert_form`]), and the failure reasons of the
//! token client are one table ([`malformed_timeout_network_and_http_reasons`]).

use std::os::unix::fs::PermissionsExt;
use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime};

use smtp_canary::{
    auth::{CacheOptions, TokenCache, TokenClient, TokenError, TokenProvider},
    classify::Class,
    config::{Mailbox, OAuth2},
    demo::ServerHandle,
    metrics::Metrics,
    probe::{Phase, ProbeResult, TlsTrust, provider},
};

use crate::support::exposition::{metric_line, metric_value};
use crate::support::fixtures::{
    self, AADSTS7000222, CLIENT_ID, CLIENT_SECRET, SCOPE, USER, client_credentials, has_phase,
    oauth_of, probe_oauth as probe, refresh_grant, token_cache, token_cache_with,
};
use crate::support::pki::TestPki;
use crate::support::ports::free_port;
use crate::support::serial;
use crate::support::token_endpoint::{Mode, Recorded, TokenEndpoint};

/// An XOAUTH2 mailbox for port `port` trusting `ca`, with the 10 s timeout an OAuth probe
/// gets (a token request, then SMTP).
fn mailbox(name: &str, port: u16, ca: &Path, oauth: OAuth2) -> Mailbox {
    fixtures::mailbox(name, port)
        .ca(ca)
        .oauth(oauth)
        .timeout(Duration::from_secs(10))
        .build()
}

/// What most tests here arrange: a token endpoint, an SMTP server accepting exactly its
/// live tokens, a mailbox for that server, and the metrics its token caches export to.
struct Rig {
    ep: TokenEndpoint,
    pki: TestPki,
    smtp: ServerHandle,
    mb: Mailbox,
    metrics: Arc<Metrics>,
}

impl Rig {
    /// Mailbox `name` with client_credentials; the server answers a rejected token with
    /// Google's 334 challenge.
    async fn start(name: &str) -> Rig {
        Rig::with(name, true, |ep| client_credentials(&ep.url())).await
    }

    /// Mailbox `name` with the settings `oauth` makes for the endpoint; `challenge` as in
    /// [`TokenEndpoint::smtp_server`].
    async fn with(
        name: &str,
        challenge: bool,
        oauth: impl FnOnce(&TokenEndpoint) -> OAuth2,
    ) -> Rig {
        let ep = TokenEndpoint::start().await;
        let pki = TestPki::new();
        let smtp = ep.start_smtp(&pki, challenge).await;
        let mb = mailbox(name, smtp.local_addr().port(), pki.ca_path(), oauth(&ep));
        Rig {
            ep,
            pki,
            smtp,
            mb,
            metrics: Arc::new(Metrics::new()),
        }
    }

    /// The mailbox's token cache, exporting to the rig's metrics.
    fn cache(&self) -> Arc<TokenCache> {
        self.cache_with(CacheOptions::default())
    }

    /// [`Rig::cache`] with other options.
    fn cache_with(&self, opts: CacheOptions) -> Arc<TokenCache> {
        let opts = CacheOptions {
            metrics: Some(self.metrics.clone()),
            ..opts
        };
        token_cache(&self.mb, &opts)
    }

    async fn probe(&self, cache: &Arc<TokenCache>) -> ProbeResult {
        probe(&self.mb, cache).await
    }

    /// `oauth_token_failures_total` of the mailbox for `reason`.
    fn failures(&self, reason: &str) -> Option<f64> {
        failures(&self.metrics, &self.mb.name, reason)
    }
}

/// `oauth_token_failures_total{mailbox, reason}` in `metrics`.
fn failures(metrics: &Metrics, mailbox: &str, reason: &str) -> Option<f64> {
    metric_value(
        &metrics.render(),
        &format!(
            "smtp_canary_oauth_token_failures_total{{mailbox=\"{mailbox}\",reason=\"{reason}\"}}"
        ),
    )
}

/// The probe delivered, authenticated with XOAUTH2.
fn ok(r: &ProbeResult) {
    assert!(
        r.success(),
        "probe failed: {:#?}\n{}",
        r.failure,
        r.transcript
    );
    assert_eq!(r.mechanism.map(|m| m.as_str()), Some("XOAUTH2"));
}

/// The token request sent each form field as given (`None`: not at all).
fn assert_form(rec: &Recorded, fields: &[(&str, Option<&str>)]) {
    for (key, want) in fields {
        assert_eq!(
            rec.form.get(*key).map(String::as_str),
            *want,
            "{key} in {:?}",
            rec.form
        );
    }
}

/// What an endpoint that answers every token request with 503 is set to.
fn http_503() -> Mode {
    Mode::Fail {
        status: 503,
        body: "{}".into(),
    }
}

#[tokio::test]
async fn n_probes_within_a_tokens_life_make_one_request() {
    let _serial = serial::shared().await;
    let rig = Rig::start("n-probes").await;
    let (ep, smtp) = (&rig.ep, &rig.smtp);
    let cache = rig.cache();

    const N: usize = 5;
    for i in 0..N {
        let r = rig.probe(&cache).await;
        ok(&r);
        // Only the probe that fetched the token has the oauth_token phase.
        assert_eq!(
            has_phase(&r, Phase::OauthToken),
            i == 0,
            "probe {i}: {:?}",
            r.phases
        );
    }
    assert_eq!(ep.requests(), 1, "{N} probes within one token's life");
    assert_eq!(smtp.message_count(), N);

    // The request: client_credentials with client_secret_post and the scope.
    let rec = &ep.recorded()[0];
    assert_eq!(rec.path, "/contoso.onmicrosoft.com/oauth2/v2.0/token");
    assert_form(
        rec,
        &[
            ("grant_type", Some("client_credentials")),
            ("client_id", Some(CLIENT_ID)),
            ("client_secret", Some(CLIENT_SECRET)),
            ("scope", Some(SCOPE)),
            ("refresh_token", None),
        ],
    );

    // Every session presented the one issued token, through XOAUTH2.
    let token = &ep.issued()[0];
    for s in smtp.sessions() {
        assert_eq!(s.user.as_deref(), Some(USER));
        assert!(
            s.line_texts()
                .iter()
                .any(|l| l.starts_with("AUTH XOAUTH2 ")),
            "{:?}",
            s.line_texts()
        );
    }
    let expiry = metric_line(
        &rig.metrics.render(),
        "smtp_canary_oauth_token_expiry_timestamp_seconds{mailbox=\"n-probes\"}",
    )
    .expect("expiry gauge");
    let value: f64 = expiry.rsplit(' ').next().unwrap().parse().unwrap();
    let now = SystemTime::now()
        .duration_since(SystemTime::UNIX_EPOCH)
        .unwrap()
        .as_secs_f64();
    assert!((value - (now + 3600.0)).abs() < 30.0, "{expiry}");
    assert!(!rig.metrics.render().contains(token.as_str()));
}

#[tokio::test]
async fn expiry_makes_exactly_one_refresh() {
    let _serial = serial::exclusive().await;
    let rig = Rig::start("expiry").await;
    let ep = &rig.ep;
    ep.set_lifetime(2); // reused for 80% of its life: 1.6 s
    let cache = rig.cache();

    let t0 = Instant::now();
    for _ in 0..3 {
        ok(&rig.probe(&cache).await);
    }
    assert!(
        t0.elapsed() < Duration::from_millis(1500),
        "the first probes were too slow for this test: {:?}",
        t0.elapsed()
    );
    assert_eq!(ep.requests(), 1);

    tokio::time::sleep(Duration::from_millis(1700).saturating_sub(t0.elapsed())).await;
    let mut fetched = 0;
    for _ in 0..3 {
        let r = rig.probe(&cache).await;
        ok(&r);
        fetched += usize::from(has_phase(&r, Phase::OauthToken));
    }
    assert_eq!(ep.requests(), 2, "expiry makes exactly one refresh");
    assert_eq!(fetched, 1);
    let issued = ep.issued();
    assert_ne!(issued[0], issued[1]);
    // The later sessions presented the new token (the server accepts both while live).
    let users: Vec<_> = rig.smtp.sessions().iter().map(|s| s.user.clone()).collect();
    assert_eq!(users.len(), 6);
}

/// A failed refresh does not end a token that is still valid: probes keep succeeding with
/// it while the failure is counted; once it expires, the probe fails as `oauth_token`.
#[tokio::test]
async fn a_failed_refresh_keeps_a_still_valid_token() {
    let _serial = serial::exclusive().await;
    let rig = Rig::start("refresh-fails").await;
    let ep = &rig.ep;
    ep.set_lifetime(4); // reused for 3.2 s, usable until 3.6 s (a tenth of its life left)
    let cache = rig.cache();
    let t0 = Instant::now();
    ok(&rig.probe(&cache).await);
    tokio::time::sleep(Duration::from_millis(3300).saturating_sub(t0.elapsed())).await;
    ep.set_mode(http_503());
    let r = rig.probe(&cache).await;
    assert!(
        t0.elapsed() < Duration::from_millis(3550),
        "too slow for this test: {:?}",
        t0.elapsed()
    );
    ok(&r);
    assert_eq!(ep.requests(), 2, "the refresh was attempted");
    assert_eq!(
        rig.failures("http_503"),
        Some(1.0),
        "the failure is counted"
    );
    // Once the token has really expired, the probe fails as oauth_token (backing off).
    tokio::time::sleep(Duration::from_millis(4100).saturating_sub(t0.elapsed())).await;
    let r = rig.probe(&cache).await;
    assert_eq!(r.failure.as_ref().map(|f| f.class), Some(Class::OauthToken));
    assert_eq!(ep.requests(), 2, "no request inside the back-off");
}

#[tokio::test]
async fn concurrent_probes_share_one_request() {
    let _serial = serial::shared().await;
    let rig = Rig::start("concurrent").await;
    rig.ep.set_delay(Duration::from_millis(400));
    let mb = Arc::new(rig.mb.clone());
    let cache = rig.cache();

    let mut set = tokio::task::JoinSet::new();
    for _ in 0..8 {
        let (mb, cache) = (mb.clone(), cache.clone());
        set.spawn(async move { probe(&mb, &cache).await });
    }
    let mut n = 0;
    while let Some(r) = set.join_next().await {
        let r = r.unwrap();
        ok(&r);
        // Every probe waited for the shared request.
        let waited = r
            .phases
            .iter()
            .find(|(p, _)| *p == Phase::OauthToken)
            .map(|(_, d)| *d);
        assert!(
            waited.is_some_and(|d| d >= Duration::from_millis(300)),
            "{:?}",
            r.phases
        );
        n += 1;
    }
    assert_eq!(n, 8);
    assert_eq!(
        rig.ep.requests(),
        1,
        "8 concurrent probes, one token request"
    );
}

#[tokio::test]
async fn invalid_client_is_class_oauth_token_with_the_description() {
    let _serial = serial::shared().await;
    let rig = Rig::start("expired-secret").await;
    let ep = &rig.ep;
    let body = serde_json::json!({"error": "invalid_client", "error_description": AADSTS7000222, "error_codes": [7000222]});
    ep.set_mode(Mode::Fail {
        status: 401,
        body: body.to_string(),
    });
    let cache = rig.cache();

    let r = rig.probe(&cache).await;
    let f = r.failure.as_ref().expect("failure");
    assert_eq!(f.class, Class::OauthToken);
    assert_eq!(f.phase, Phase::OauthToken);
    assert_eq!(f.code, "");
    let reply = f.reply.as_deref().unwrap();
    assert!(
        reply.starts_with("invalid_client: AADSTS7000222: The provided client secret keys"),
        "{reply}"
    );
    assert!(reply.contains("Correlation ID: 5f6e7d8c"), "{reply}");
    assert!(!reply.contains(CLIENT_SECRET));
    assert!(f.hint.contains("expired secret"), "{}", f.hint);
    assert_eq!(
        rig.smtp.connection_count(),
        0,
        "no SMTP connection without a token"
    );
    assert_eq!(rig.failures("invalid_client"), Some(1.0));

    // Within the back-off no new request is made; the probe still fails the same way.
    let r = rig.probe(&cache).await;
    let f = r.failure.as_ref().expect("failure");
    assert_eq!(f.class, Class::OauthToken);
    assert!(f.reply.as_deref().unwrap().contains("AADSTS7000222"));
    assert!(f.reply.as_deref().unwrap().contains("backing off"));
    assert_eq!(ep.requests(), 1);
    assert_eq!(rig.failures("invalid_client"), Some(1.0));
}

#[tokio::test]
async fn backoff_doubles_and_a_fixed_endpoint_recovers() {
    let _serial = serial::exclusive().await;
    let rig = Rig::start("backoff").await;
    let ep = &rig.ep;
    ep.set_mode(http_503());
    let cache = rig.cache_with(CacheOptions {
        backoff_base: Duration::from_millis(500),
        backoff_cap: Duration::from_millis(1000),
        ..CacheOptions::default()
    });
    let class = |r: &ProbeResult| r.failure.as_ref().map(|f| f.class);
    // Each "inside the back-off" check has a margin of 400 ms or more against a slow
    // machine; each "after it" check only gets later when the machine is slow.

    let r = rig.probe(&cache).await; // failure 1: back-off 500 ms
    assert_eq!(class(&r), Some(Class::OauthToken));
    assert_eq!(ep.requests(), 1);
    // (wait before the probe, requests the endpoint has seen after it, why)
    for (wait, requests, why) in [
        (0, 1, "inside the first back-off"),
        (550, 2, "failure 2: back-off 1000 ms"),
        (550, 2, "the back-off doubled"),
        (500, 3, "failure 3: 2000 ms, capped at 1000 ms"),
    ] {
        tokio::time::sleep(Duration::from_millis(wait)).await;
        rig.probe(&cache).await;
        assert_eq!(ep.requests(), requests, "{why}");
    }
    ep.set_mode(Mode::Issue);
    tokio::time::sleep(Duration::from_millis(1050)).await;
    let r = rig.probe(&cache).await;
    ok(&r);
    assert_eq!(ep.requests(), 4);
    assert_eq!(rig.failures("http_503"), Some(3.0));
}

#[tokio::test]
async fn revoked_token_is_class_auth_after_the_334_challenge_and_then_replaced() {
    let _serial = serial::shared().await;
    for challenge in [true, false] {
        let rig = Rig::with("revoked", challenge, |ep| client_credentials(&ep.url())).await;
        let ep = &rig.ep;
        let cache = rig.cache();
        ok(&rig.probe(&cache).await);

        ep.revoke_all(); // the endpoint still works; the SMTP server now refuses the token
        let r = rig.probe(&cache).await;
        let f = r.failure.as_ref().expect("failure");
        assert_eq!(
            (f.class, f.phase, f.code.as_str()),
            (Class::Auth, Phase::Auth, "5.7.8"),
            "challenge {challenge}\n{}",
            r.transcript
        );
        assert_eq!(
            f.reply.as_deref(),
            Some("535 5.7.8 Authentication credentials invalid")
        );
        assert_eq!(ep.requests(), 1, "the cached token was used");
        let lines = rig.smtp.session(2).unwrap().line_texts();
        let auth = lines
            .iter()
            .position(|l| l.starts_with("AUTH XOAUTH2 "))
            .unwrap();
        if challenge {
            // Google's flow: 334 <JSON>, answered with an empty line, then the 535.
            assert_eq!(lines[auth + 1], "", "{lines:?}");
            let t = r.transcript.to_string();
            assert!(t.contains("334 eyJ"), "{t}");
        } else {
            assert_ne!(
                lines.get(auth + 1).map(String::as_str),
                Some(""),
                "{lines:?}"
            );
        }

        // The rejected token was dropped: the next probe fetches a new one and delivers.
        let r = rig.probe(&cache).await;
        ok(&r);
        assert!(has_phase(&r, Phase::OauthToken));
        assert_eq!(ep.requests(), 2);
    }
}

#[tokio::test]
async fn refresh_token_rotation_is_persisted_0600_and_used_after_a_restart() {
    let _serial = serial::shared().await;
    let configured = "rt-configured-0123456789abcdef";
    let rig = Rig::with("rotating", true, |ep| {
        refresh_grant(&ep.url(), configured, CLIENT_SECRET)
    })
    .await;
    let ep = &rig.ep;
    ep.set_rotate(true);
    let state = tempfile::tempdir().unwrap();
    let opts = || CacheOptions {
        state_dir: Some(state.path().to_path_buf()),
        ..CacheOptions::default()
    };

    let first = rig.cache_with(opts());
    ok(&rig.probe(&first).await);
    assert_form(
        &ep.recorded()[0],
        &[
            ("grant_type", Some("refresh_token")),
            ("refresh_token", Some(configured)),
            ("client_secret", Some(CLIENT_SECRET)),
        ],
    );
    let rotated1 = ep.refresh_issued()[0].clone();

    let path = first.refresh_token_path().expect("a state file");
    assert_eq!(path, state.path().join("oauth/rotating.refresh-token.json"));
    assert_eq!(
        std::fs::metadata(&path).unwrap().permissions().mode() & 0o777,
        0o600
    );
    let text = std::fs::read_to_string(&path).unwrap();
    assert!(text.contains(&rotated1));
    assert!(
        !text.contains(configured),
        "only a fingerprint of the configured token is kept"
    );
    drop(first);

    // "Restart": a new cache with the same config uses the rotated token from the file.
    let second = rig.cache_with(opts());
    ok(&rig.probe(&second).await);
    assert_form(&ep.recorded()[1], &[("refresh_token", Some(&rotated1))]);
    let rotated2 = ep.refresh_issued()[1].clone();
    assert!(std::fs::read_to_string(&path).unwrap().contains(&rotated2));

    // A newly configured refresh token wins over the stored one.
    let reconfigured = mailbox(
        "rotating",
        rig.smtp.local_addr().port(),
        rig.pki.ca_path(),
        refresh_grant(&ep.url(), "rt-new-config-42", CLIENT_SECRET),
    );
    let third = token_cache(&reconfigured, &opts());
    ok(&probe(&reconfigured, &third).await);
    assert_form(
        &ep.recorded()[2],
        &[("refresh_token", Some("rt-new-config-42"))],
    );
}

#[tokio::test]
async fn public_client_sends_no_client_secret() {
    let _serial = serial::shared().await;
    let rig = Rig::with("public", true, |ep| {
        refresh_grant(&ep.url(), "rt-public-1", "")
    })
    .await;
    ok(&rig.probe(&rig.cache()).await);
    assert_form(
        &rig.ep.recorded()[0],
        &[
            ("client_secret", None),
            ("client_id", Some(CLIENT_ID)),
            ("scope", Some("https://mail.google.com/")),
        ],
    );
}

/// A mailbox, the endpoint's mode, the token URL, the client, the reason the request must
/// fail with, and what else holds of the error and of how long the request took.
type ReasonCase<'a> = (
    &'a str,
    Mode,
    &'a str,
    TokenClient,
    &'a str,
    fn(&TokenError, Duration),
);

/// Each way a token request fails is its own `reason`: the endpoint's mode, the token
/// URL, the client, the reason, and what else the error must (not) say.
#[tokio::test]
async fn malformed_timeout_network_and_http_reasons() {
    let _serial = serial::shared().await;
    let ep = TokenEndpoint::start().await;
    let pki = TestPki::new();
    let metrics = Arc::new(Metrics::new());
    let opts = CacheOptions {
        metrics: Some(metrics.clone()),
        ..CacheOptions::default()
    };
    let tls = || {
        TlsTrust::new()
            .client_config(None)
            .map(|c| (*c).clone())
            .unwrap()
    };
    let client = || TokenClient::with_tls(tls()).unwrap();
    let closed = format!("http://127.0.0.1:{}/token", free_port());
    let cases: [ReasonCase; 4] = [
        (
            "garbage",
            Mode::Garbage,
            &ep.url(),
            client(),
            "malformed",
            |_, _| {},
        ),
        (
            "http500",
            Mode::Fail {
                status: 500,
                body: "oops".into(),
            },
            &ep.url(),
            client(),
            "http_500",
            |e, _| assert!(!e.description.contains("oops")),
        ),
        (
            "hang",
            Mode::Hang,
            &ep.url(),
            TokenClient::with_tls_and_timeout(tls(), Duration::from_millis(400)).unwrap(),
            "timeout",
            // The client's own timeout ends a request the endpoint never answers.
            |_, took| assert!(took < Duration::from_secs(3), "{took:?}"),
        ),
        (
            "closed",
            Mode::Hang,
            &closed,
            client(),
            "network",
            |e, _| assert!(e.description.contains("refused"), "{e:?}"),
        ),
    ];
    for (name, mode, url, client, reason, then) in cases {
        ep.set_mode(mode);
        let mb = mailbox(name, 9, pki.ca_path(), client_credentials(url));
        let cache = token_cache_with(&mb, client, &opts);
        let started = Instant::now();
        let e = cache.token().await.map(|_| ()).unwrap_err();
        assert_eq!(e.reason, reason, "{e:?}");
        then(&e, started.elapsed());
    }

    for (mb, reason) in [
        ("garbage", "malformed"),
        ("http500", "http_500"),
        ("hang", "timeout"),
        ("closed", "network"),
    ] {
        assert_eq!(
            failures(&metrics, mb, reason),
            Some(1.0),
            "{mb}\n{}",
            metrics.render()
        );
    }
}

/// The token endpoint over HTTPS, served with a throwaway CA: reqwest runs on our rustls
/// config (aws-lc-rs), and an untrusted certificate is reason `network`.
#[tokio::test]
async fn https_token_endpoint_through_our_rustls_config() {
    let _serial = serial::shared().await;
    let ep = TokenEndpoint::start().await;
    let pki = TestPki::new();
    let acceptor = tokio_rustls::TlsAcceptor::from(pki.pki.server_config().unwrap());
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let tls_addr = listener.local_addr().unwrap();
    let plain = ep.addr();
    // A TLS terminator in front of the plain endpoint.
    tokio::spawn(async move {
        loop {
            let Ok((tcp, _)) = listener.accept().await else {
                continue;
            };
            let acceptor = acceptor.clone();
            tokio::spawn(async move {
                let Ok(mut tls) = acceptor.accept(tcp).await else {
                    return;
                };
                let Ok(mut backend) = tokio::net::TcpStream::connect(plain).await else {
                    return;
                };
                let _ = tokio::io::copy_bidirectional(&mut tls, &mut backend).await;
            });
        }
    });
    let url = format!(
        "https://127.0.0.1:{}/contoso.onmicrosoft.com/oauth2/v2.0/token",
        tls_addr.port()
    );
    let trusting = rustls::ClientConfig::builder_with_provider(provider())
        .with_safe_default_protocol_versions()
        .unwrap()
        .with_root_certificates(pki.pki.ca().root_store())
        .with_no_client_auth();
    let mb = mailbox("https", 9, pki.ca_path(), client_credentials(&url));
    let (username, oauth) = oauth_of(&mb);
    let cache = TokenCache::new(
        "https",
        username,
        oauth,
        TokenClient::with_tls(trusting).unwrap(),
        &CacheOptions::default(),
    )
    .unwrap();
    let t = cache.token().await.expect("token over https");
    assert!(t.fetched);
    assert_eq!(
        Some(t.token.expose()),
        ep.issued().first().map(String::as_str)
    );

    // The system roots do not know the throwaway CA.
    let untrusting = TokenClient::new(&TlsTrust::new()).unwrap();
    let cache = TokenCache::new(
        "https2",
        username,
        oauth,
        untrusting,
        &CacheOptions::default(),
    )
    .unwrap();
    let e = cache.token().await.unwrap_err();
    assert_eq!(e.reason, "network");
    assert!(
        e.description.to_lowercase().contains("certificate"),
        "{e:?}"
    );
    assert_eq!(ep.requests(), 1);
}

/// The fetch is a task of its own: a probe that gives up (its deadline) does not cancel
/// it, and the next probe gets its result instead of a second request.
#[tokio::test]
async fn an_abandoned_wait_does_not_cost_a_second_request() {
    let _serial = serial::shared().await;
    let ep = TokenEndpoint::start().await;
    ep.set_delay(Duration::from_millis(500));
    let pki = TestPki::new();
    let mb = mailbox("abandoned", 9, pki.ca_path(), client_credentials(&ep.url()));
    let cache = token_cache(&mb, &CacheOptions::default());
    assert!(
        tokio::time::timeout(Duration::from_millis(100), cache.token())
            .await
            .is_err()
    );
    let t = cache.token().await.expect("token");
    assert_eq!(ep.requests(), 1);
    assert_eq!(
        Some(t.token.expose()),
        ep.issued().first().map(String::as_str)
    );
    // Not a Secret leak: Debug of the token redacts.
    assert!(!format!("{t:?}").contains(t.token.expose()));
}
