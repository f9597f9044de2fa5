//! OAuth 2.0 / XOAUTH2 against the test's token endpoint and the in-process SMTP server:
//! token reuse and refresh, one request for concurrent probes, back-off, failure reasons
//! and classes, the 334 challenge, refresh-token rotation across a restart, and HTTPS
//! through our own rustls config.

use std::os::unix::fs::PermissionsExt;
use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime};

use smtp_canary::auth::{CacheOptions, TokenCache, TokenClient, TokenProvider};
use smtp_canary::classify::Class;
use smtp_canary::config::{Mailbox, OAuth2};
use smtp_canary::metrics::Metrics;
use smtp_canary::probe::{Phase, ProbeResult, TlsTrust, provider};

use crate::support::exposition;
use crate::support::fixtures::{
    AADSTS7000222, CLIENT_ID, CLIENT_SECRET, SCOPE, USER, client_credentials, has_phase, oauth_of,
    probe_oauth as probe, refresh_grant, token_cache as cache,
};
use crate::support::pki::TestPki;
use crate::support::ports::free_port;
use crate::support::serial;
use crate::support::token_endpoint::{Mode, TokenEndpoint};

fn mailbox(name: &str, port: u16, ca: &Path, oauth: OAuth2) -> Mailbox {
    crate::support::fixtures::mailbox(name, port)
        .ca(ca)
        .oauth(oauth)
        .timeout(Duration::from_secs(10))
        .build()
}

fn ok(r: &ProbeResult) {
    assert!(
        r.success(),
        "probe failed: {:#?}\n{}",
        r.failure,
        r.transcript
    );
    assert_eq!(r.mechanism.map(|m| m.as_str()), Some("XOAUTH2"));
}

fn metric_line(m: &Metrics, starts: &str) -> Option<String> {
    exposition::metric_line(&m.render(), starts)
}

#[tokio::test]
async fn n_probes_within_a_tokens_life_make_one_request() {
    let _serial = serial::shared().await;
    let ep = TokenEndpoint::start().await;
    let pki = TestPki::new();
    let smtp = ep.start_smtp(&pki, true).await;
    let mb = mailbox(
        "n-probes",
        smtp.local_addr().port(),
        pki.ca_path(),
        client_credentials(&ep.url()),
    );
    let metrics = Arc::new(Metrics::new());
    let cache = cache(
        &mb,
        &CacheOptions {
            metrics: Some(metrics.clone()),
            ..CacheOptions::default()
        },
    );

    const N: usize = 5;
    for i in 0..N {
        let r = probe(&mb, &cache).await;
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
    assert_eq!(
        rec.form.get("grant_type").map(String::as_str),
        Some("client_credentials")
    );
    assert_eq!(
        rec.form.get("client_id").map(String::as_str),
        Some(CLIENT_ID)
    );
    assert_eq!(
        rec.form.get("client_secret").map(String::as_str),
        Some(CLIENT_SECRET)
    );
    assert_eq!(rec.form.get("scope").map(String::as_str), Some(SCOPE));
    assert!(!rec.form.contains_key("refresh_token"));

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
        &metrics,
        "smtp_canary_oauth_token_expiry_timestamp_seconds{mailbox=\"n-probes\"}",
    )
    .expect("expiry gauge");
    let value: f64 = expiry.rsplit(' ').next().unwrap().parse().unwrap();
    let now = SystemTime::now()
        .duration_since(SystemTime::UNIX_EPOCH)
        .unwrap()
        .as_secs_f64();
    assert!((value - (now + 3600.0)).abs() < 30.0, "{expiry}");
    assert!(!metrics.render().contains(token.as_str()));
}

#[tokio::test]
async fn expiry_makes_exactly_one_refresh() {
    let _serial = serial::exclusive().await;
    let ep = TokenEndpoint::start().await;
    ep.set_lifetime(2); // reused for 80% of its life: 1.6 s
    let pki = TestPki::new();
    let smtp = ep.start_smtp(&pki, true).await;
    let mb = mailbox(
        "expiry",
        smtp.local_addr().port(),
        pki.ca_path(),
        client_credentials(&ep.url()),
    );
    let cache = cache(&mb, &CacheOptions::default());

    let t0 = Instant::now();
    for _ in 0..3 {
        ok(&probe(&mb, &cache).await);
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
        let r = probe(&mb, &cache).await;
        ok(&r);
        fetched += usize::from(has_phase(&r, Phase::OauthToken));
    }
    assert_eq!(ep.requests(), 2, "expiry makes exactly one refresh");
    assert_eq!(fetched, 1);
    let issued = ep.issued();
    assert_ne!(issued[0], issued[1]);
    // The later sessions presented the new token (the server accepts both while live).
    let users: Vec<_> = smtp.sessions().iter().map(|s| s.user.clone()).collect();
    assert_eq!(users.len(), 6);
}

/// A failed refresh does not end a token that is still valid: probes keep succeeding with
/// it while the failure is counted; once it expires, the probe fails as `oauth_token`.
#[tokio::test]
async fn a_failed_refresh_keeps_a_still_valid_token() {
    let _serial = serial::exclusive().await;
    let ep = TokenEndpoint::start().await;
    ep.set_lifetime(4); // reused for 3.2 s, usable until 3.6 s (a tenth of its life left)
    let pki = TestPki::new();
    let smtp = ep.start_smtp(&pki, true).await;
    let mb = mailbox(
        "refresh-fails",
        smtp.local_addr().port(),
        pki.ca_path(),
        client_credentials(&ep.url()),
    );
    let metrics = Arc::new(Metrics::new());
    let cache = cache(
        &mb,
        &CacheOptions {
            metrics: Some(metrics.clone()),
            ..CacheOptions::default()
        },
    );
    let t0 = Instant::now();
    ok(&probe(&mb, &cache).await);
    tokio::time::sleep(Duration::from_millis(3300).saturating_sub(t0.elapsed())).await;
    ep.set_mode(Mode::Fail {
        status: 503,
        body: "{}".into(),
    });
    let r = probe(&mb, &cache).await;
    assert!(
        t0.elapsed() < Duration::from_millis(3550),
        "too slow for this test: {:?}",
        t0.elapsed()
    );
    ok(&r);
    assert_eq!(ep.requests(), 2, "the refresh was attempted");
    assert!(
        metrics.render().contains(
            "smtp_canary_oauth_token_failures_total{mailbox=\"refresh-fails\",reason=\"http_503\"} 1"
        ),
        "the failure is counted"
    );
    // Once the token has really expired, the probe fails as oauth_token (backing off).
    tokio::time::sleep(Duration::from_millis(4100).saturating_sub(t0.elapsed())).await;
    let r = probe(&mb, &cache).await;
    assert_eq!(r.failure.as_ref().map(|f| f.class), Some(Class::OauthToken));
    assert_eq!(ep.requests(), 2, "no request inside the back-off");
}

#[tokio::test]
async fn concurrent_probes_share_one_request() {
    let _serial = serial::shared().await;
    let ep = TokenEndpoint::start().await;
    ep.set_delay(Duration::from_millis(400));
    let pki = TestPki::new();
    let smtp = ep.start_smtp(&pki, true).await;
    let mb = Arc::new(mailbox(
        "concurrent",
        smtp.local_addr().port(),
        pki.ca_path(),
        client_credentials(&ep.url()),
    ));
    let cache = cache(&mb, &CacheOptions::default());

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
    assert_eq!(ep.requests(), 1, "8 concurrent probes, one token request");
}

#[tokio::test]
async fn invalid_client_is_class_oauth_token_with_the_description() {
    let _serial = serial::shared().await;
    let ep = TokenEndpoint::start().await;
    let body = serde_json::json!({"error": "invalid_client", "error_description": AADSTS7000222, "error_codes": [7000222]});
    ep.set_mode(Mode::Fail {
        status: 401,
        body: body.to_string(),
    });
    let pki = TestPki::new();
    let smtp = ep.start_smtp(&pki, true).await;
    let mb = mailbox(
        "expired-secret",
        smtp.local_addr().port(),
        pki.ca_path(),
        client_credentials(&ep.url()),
    );
    let metrics = Arc::new(Metrics::new());
    let cache = cache(
        &mb,
        &CacheOptions {
            metrics: Some(metrics.clone()),
            ..CacheOptions::default()
        },
    );

    let r = probe(&mb, &cache).await;
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
        smtp.connection_count(),
        0,
        "no SMTP connection without a token"
    );
    assert_eq!(
        metric_line(&metrics, "smtp_canary_oauth_token_failures_total{mailbox=\"expired-secret\",reason=\"invalid_client\"}").as_deref(),
        Some("smtp_canary_oauth_token_failures_total{mailbox=\"expired-secret\",reason=\"invalid_client\"} 1")
    );

    // Within the back-off no new request is made; the probe still fails the same way.
    let r = probe(&mb, &cache).await;
    let f = r.failure.as_ref().expect("failure");
    assert_eq!(f.class, Class::OauthToken);
    assert!(f.reply.as_deref().unwrap().contains("AADSTS7000222"));
    assert!(f.reply.as_deref().unwrap().contains("backing off"));
    assert_eq!(ep.requests(), 1);
    assert!(metrics.render().contains("reason=\"invalid_client\"} 1"));
}

#[tokio::test]
async fn backoff_doubles_and_a_fixed_endpoint_recovers() {
    let _serial = serial::exclusive().await;
    let ep = TokenEndpoint::start().await;
    ep.set_mode(Mode::Fail {
        status: 503,
        body: "{}".into(),
    });
    let pki = TestPki::new();
    let smtp = ep.start_smtp(&pki, true).await;
    let mb = mailbox(
        "backoff",
        smtp.local_addr().port(),
        pki.ca_path(),
        client_credentials(&ep.url()),
    );
    let metrics = Arc::new(Metrics::new());
    let opts = CacheOptions {
        metrics: Some(metrics.clone()),
        backoff_base: Duration::from_millis(500),
        backoff_cap: Duration::from_millis(1000),
        ..CacheOptions::default()
    };
    let cache = cache(&mb, &opts);
    let class = |r: &ProbeResult| r.failure.as_ref().map(|f| f.class);
    // Each "inside the back-off" check has a margin of 400 ms or more against a slow
    // machine; each "after it" check only gets later when the machine is slow.

    let r = probe(&mb, &cache).await; // failure 1: back-off 500 ms
    assert_eq!(class(&r), Some(Class::OauthToken));
    assert_eq!(ep.requests(), 1);
    probe(&mb, &cache).await;
    assert_eq!(ep.requests(), 1, "inside the first back-off");
    tokio::time::sleep(Duration::from_millis(550)).await;
    probe(&mb, &cache).await; // failure 2: back-off 1000 ms
    assert_eq!(ep.requests(), 2);
    tokio::time::sleep(Duration::from_millis(550)).await;
    probe(&mb, &cache).await;
    assert_eq!(ep.requests(), 2, "the back-off doubled");
    tokio::time::sleep(Duration::from_millis(500)).await;
    probe(&mb, &cache).await; // failure 3: 2000 ms, capped at 1000 ms
    assert_eq!(ep.requests(), 3);
    ep.set_mode(Mode::Issue);
    tokio::time::sleep(Duration::from_millis(1050)).await;
    let r = probe(&mb, &cache).await;
    ok(&r);
    assert_eq!(ep.requests(), 4);
    assert!(metrics.render().contains(
        "smtp_canary_oauth_token_failures_total{mailbox=\"backoff\",reason=\"http_503\"} 3"
    ));
}

#[tokio::test]
async fn revoked_token_is_class_auth_after_the_334_challenge_and_then_replaced() {
    let _serial = serial::shared().await;
    for challenge in [true, false] {
        let ep = TokenEndpoint::start().await;
        let pki = TestPki::new();
        let smtp = ep.start_smtp(&pki, challenge).await;
        let mb = mailbox(
            "revoked",
            smtp.local_addr().port(),
            pki.ca_path(),
            client_credentials(&ep.url()),
        );
        let cache = cache(&mb, &CacheOptions::default());
        ok(&probe(&mb, &cache).await);

        ep.revoke_all(); // the endpoint still works; the SMTP server now refuses the token
        let r = probe(&mb, &cache).await;
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
        let lines = smtp.session(2).unwrap().line_texts();
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
        let r = probe(&mb, &cache).await;
        ok(&r);
        assert!(has_phase(&r, Phase::OauthToken));
        assert_eq!(ep.requests(), 2);
    }
}

#[tokio::test]
async fn refresh_token_rotation_is_persisted_0600_and_used_after_a_restart() {
    let _serial = serial::shared().await;
    let ep = TokenEndpoint::start().await;
    ep.set_rotate(true);
    let pki = TestPki::new();
    let smtp = ep.start_smtp(&pki, true).await;
    let state = tempfile::tempdir().unwrap();
    let configured = "rt-configured-0123456789abcdef";
    let mb = mailbox(
        "rotating",
        smtp.local_addr().port(),
        pki.ca_path(),
        refresh_grant(&ep.url(), configured, CLIENT_SECRET),
    );
    let opts = CacheOptions {
        state_dir: Some(state.path().to_path_buf()),
        ..CacheOptions::default()
    };

    let first = cache(&mb, &opts);
    ok(&probe(&mb, &first).await);
    let rec = ep.recorded();
    assert_eq!(
        rec[0].form.get("grant_type").map(String::as_str),
        Some("refresh_token")
    );
    assert_eq!(
        rec[0].form.get("refresh_token").map(String::as_str),
        Some(configured)
    );
    assert_eq!(
        rec[0].form.get("client_secret").map(String::as_str),
        Some(CLIENT_SECRET)
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
    let second = cache(&mb, &opts);
    ok(&probe(&mb, &second).await);
    assert_eq!(ep.recorded()[1].form.get("refresh_token"), Some(&rotated1));
    let rotated2 = ep.refresh_issued()[1].clone();
    assert!(std::fs::read_to_string(&path).unwrap().contains(&rotated2));

    // A newly configured refresh token wins over the stored one.
    let reconfigured = mailbox(
        "rotating",
        smtp.local_addr().port(),
        pki.ca_path(),
        refresh_grant(&ep.url(), "rt-new-config-42", CLIENT_SECRET),
    );
    let third = cache(&reconfigured, &opts);
    ok(&probe(&reconfigured, &third).await);
    assert_eq!(
        ep.recorded()[2]
            .form
            .get("refresh_token")
            .map(String::as_str),
        Some("rt-new-config-42")
    );
}

#[tokio::test]
async fn public_client_sends_no_client_secret() {
    let _serial = serial::shared().await;
    let ep = TokenEndpoint::start().await;
    let pki = TestPki::new();
    let smtp = ep.start_smtp(&pki, true).await;
    let mb = mailbox(
        "public",
        smtp.local_addr().port(),
        pki.ca_path(),
        refresh_grant(&ep.url(), "rt-public-1", ""),
    );
    let cache = cache(&mb, &CacheOptions::default());
    ok(&probe(&mb, &cache).await);
    let form = &ep.recorded()[0].form;
    assert!(!form.contains_key("client_secret"), "{form:?}");
    assert_eq!(form.get("client_id").map(String::as_str), Some(CLIENT_ID));
    assert_eq!(
        form.get("scope").map(String::as_str),
        Some("https://mail.google.com/")
    );
}

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
    let reason_of = |name: &str, url: &str, client: TokenClient| {
        let mb = mailbox(name, 9, pki.ca_path(), client_credentials(url));
        let (username, oauth) = oauth_of(&mb);
        let cache = TokenCache::new(&mb.name, username, oauth, client, &opts).unwrap();
        async move { cache.token().await.map(|_| ()).unwrap_err() }
    };
    let tls = || {
        TlsTrust::new()
            .client_config(None)
            .map(|c| (*c).clone())
            .unwrap()
    };

    ep.set_mode(Mode::Garbage);
    let e = reason_of("garbage", &ep.url(), TokenClient::with_tls(tls()).unwrap()).await;
    assert_eq!(e.reason, "malformed", "{e:?}");

    ep.set_mode(Mode::Fail {
        status: 500,
        body: "oops".into(),
    });
    let e = reason_of("http500", &ep.url(), TokenClient::with_tls(tls()).unwrap()).await;
    assert_eq!(e.reason, "http_500", "{e:?}");
    assert!(!e.description.contains("oops"));

    ep.set_mode(Mode::Hang);
    let started = Instant::now();
    let client = TokenClient::with_tls_and_timeout(tls(), Duration::from_millis(400)).unwrap();
    let e = reason_of("hang", &ep.url(), client).await;
    assert_eq!(e.reason, "timeout", "{e:?}");
    assert!(started.elapsed() < Duration::from_secs(3));

    let closed = format!("http://127.0.0.1:{}/token", free_port());
    let e = reason_of("closed", &closed, TokenClient::with_tls(tls()).unwrap()).await;
    assert_eq!(e.reason, "network", "{e:?}");
    assert!(e.description.contains("refused"), "{e:?}");

    let text = metrics.render();
    for (mb, reason) in [
        ("garbage", "malformed"),
        ("http500", "http_500"),
        ("hang", "timeout"),
        ("closed", "network"),
    ] {
        assert!(
            text.contains(&format!(
                "smtp_canary_oauth_token_failures_total{{mailbox=\"{mb}\",reason=\"{reason}\"}} 1"
            )),
            "{mb}\n{text}"
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
        "https://localhost:{}/contoso.onmicrosoft.com/oauth2/v2.0/token",
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
    let cache = cache(&mb, &CacheOptions::default());
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
