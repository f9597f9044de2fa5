//! Test data and the in-process prober: the credentials the test servers accept, the
//! mailbox builder, the OAuth settings, and one probe with an assertion-friendly summary.

use std::net::SocketAddr;
use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, Instant};

use smtp_canary::{
    auth::{CacheOptions, CredentialSource, Credentials, TokenCache, TokenClient},
    classify::Class,
    config::{
        AuthConfig, Budget, Grant, Limits, Mailbox, OAuth2, Provider, Secret, Security, TlsSettings,
    },
    probe::{Phase, ProbeResult, Prober, ProberOptions, Template, TlsTrust},
};

use super::ports::dead_dns;

pub const USER: &str = "canary@example.com";
pub const PASSWORD: &str = "S3cr3t-Pa55-xyz";
pub const FROM: &str = "canary@example.com";
pub const TO: &str = "sink@example.com";
pub const HELO: &str = "probe.canary.test";

pub const CLIENT_ID: &str = "11111111-2222-3333-4444-555555555555";
pub const CLIENT_SECRET: &str = "cs~Q8w-TopSecret.Value_0123456789";
pub const SCOPE: &str = "https://outlook.office365.com/.default";

/// Entra's answer for an expired client secret.
pub const AADSTS7000222: &str = "AADSTS7000222: The provided client secret keys for app \
    '11111111-2222-3333-4444-555555555555' are expired. Visit the Azure portal to create new keys \
    for your app: https://aka.ms/NewClientSecret, or consider using certificate credentials for \
    added security: https://aka.ms/certCreds.\r\nTrace ID: 0b1c2d3e-0000-4000-8000-000000000001\r\n\
    Correlation ID: 5f6e7d8c-0000-4000-8000-000000000002\r\nTimestamp: 2026-11-29 16:00:00Z";

/// A mailbox on 127.0.0.1:`port`: STARTTLS, [`USER`] / [`PASSWORD`], from [`FROM`] to
/// [`TO`], every 60 s with a 5 s timeout, trusting the system roots. Change what the
/// test is about, then [`MailboxBuilder::build`].
pub fn mailbox(name: &str, port: u16) -> MailboxBuilder {
    MailboxBuilder(Mailbox {
        name: name.to_owned(),
        provider: Provider::Generic,
        host: "127.0.0.1".to_owned(),
        port,
        security: Security::Starttls,
        auth: AuthConfig::Password {
            username: USER.to_owned(),
            password: Secret::new(PASSWORD),
        },
        auth_mechanism: None,
        from: FROM.to_owned(),
        to: vec![TO.to_owned()],
        interval: Duration::from_secs(60),
        timeout: Duration::from_secs(5),
        tls: TlsSettings {
            ca_file: None,
            server_name: None,
        },
        allow_insecure_auth: false,
        source_address: None,
        limits: Limits::default(),
        budget: Budget::default(),
        line: 0,
    })
}

/// See [`mailbox`].
pub struct MailboxBuilder(Mailbox);

impl MailboxBuilder {
    /// Trust the CA in `path` (`tls.ca_file`).
    pub fn ca(mut self, path: &Path) -> Self {
        self.0.tls.ca_file = Some(path.to_path_buf());
        self
    }

    pub fn provider(mut self, provider: Provider) -> Self {
        self.0.provider = provider;
        self
    }

    pub fn timeout(mut self, timeout: Duration) -> Self {
        self.0.timeout = timeout;
        self
    }

    pub fn interval(mut self, interval: Duration) -> Self {
        self.0.interval = interval;
        self
    }

    /// Log in with this username and password (from and to stay as they are).
    pub fn password(mut self, username: &str, password: &str) -> Self {
        self.0.auth = AuthConfig::Password {
            username: username.to_owned(),
            password: Secret::new(password),
        };
        self
    }

    /// XOAUTH2 as [`USER`] with `oauth`.
    pub fn oauth(mut self, oauth: OAuth2) -> Self {
        self.0.auth = AuthConfig::OAuth2 {
            username: USER.to_owned(),
            oauth,
        };
        self
    }

    /// Any other change.
    pub fn with(mut self, f: impl FnOnce(&mut Mailbox)) -> Self {
        f(&mut self.0);
        self
    }

    pub fn build(self) -> Mailbox {
        self.0
    }
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

/// The username and OAuth settings of an OAuth mailbox.
pub fn oauth_of(mb: &Mailbox) -> (&str, &OAuth2) {
    let AuthConfig::OAuth2 { username, oauth } = &mb.auth else {
        panic!("{} is not an OAuth mailbox", mb.name)
    };
    (username, oauth)
}

/// The token cache of OAuth mailbox `mb`, on `client`.
pub fn token_cache_with(mb: &Mailbox, client: TokenClient, opts: &CacheOptions) -> TokenCache {
    let (username, oauth) = oauth_of(mb);
    TokenCache::new(&mb.name, username, oauth, client, opts).expect("token cache")
}

/// The token cache of OAuth mailbox `mb`, on a client that trusts the system roots.
pub fn token_cache(mb: &Mailbox, opts: &CacheOptions) -> Arc<TokenCache> {
    let client = TokenClient::new(&TlsTrust::new()).expect("token client");
    Arc::new(token_cache_with(mb, client, opts))
}

pub fn prober_with_dns(dns: SocketAddr) -> Prober {
    Prober::new(ProberOptions {
        dns_server: Some(dns),
        helo_name: HELO.to_owned(),
    })
    .expect("build prober")
}

/// A prober whose DNS server is [`dead_dns`](super::ports::dead_dns).
pub fn prober() -> Prober {
    prober_with_dns(dead_dns())
}

pub fn template(mb: &Mailbox) -> Template {
    Template::new(&mb.name, &mb.from, &mb.to, HELO).expect("template")
}

/// One probe of `mb` (with its configured credentials) by `prober`; also returns how long
/// the call itself took (which includes any parting QUIT, unlike `ProbeResult::total`).
pub async fn probe_timed_with(prober: &Prober, mb: &Mailbox) -> (ProbeResult, Duration) {
    let template = template(mb);
    let creds = Credentials::from_config(&mb.auth);
    let started = Instant::now();
    let r = prober.probe(mb, &template, &creds.into(), None).await;
    (r, started.elapsed())
}

pub async fn probe_timed(mb: &Mailbox) -> (ProbeResult, Duration) {
    probe_timed_with(&prober(), mb).await
}

pub async fn probe(mb: &Mailbox) -> ProbeResult {
    probe_timed(mb).await.0
}

/// One probe of OAuth mailbox `mb` with the tokens of `cache`.
pub async fn probe_oauth(mb: &Mailbox, cache: &Arc<TokenCache>) -> ProbeResult {
    let source = CredentialSource::OAuth(cache.clone());
    prober().probe(mb, &template(mb), &source, None).await
}

/// A readable summary for assertion messages.
pub fn describe(r: &ProbeResult) -> String {
    format!(
        "failure: {:#?}\nphases: {:?}\ntranscript:\n{}",
        r.failure, r.phases, r.transcript
    )
}

/// Asserts the probe failed with `class` in `phase` with `code`, and that the failure
/// carries a hint (the contract: every failure has one).
pub fn assert_failure(r: &ProbeResult, class: Class, phase: Phase, code: &str) {
    let f = r
        .failure
        .as_ref()
        .unwrap_or_else(|| panic!("expected a {class} failure, got success\n{}", describe(r)));
    assert_eq!(
        (f.class, f.phase, f.code.as_str()),
        (class, phase, code),
        "wrong class/phase/code\n{}",
        describe(r)
    );
    assert!(!f.hint.is_empty(), "failure without hint\n{}", describe(r));
    // The failed phase is recorded, and it is the last one.
    assert_eq!(
        r.phases.last().map(|(p, _)| *p),
        Some(phase),
        "the failed phase is not the last recorded one\n{}",
        describe(r)
    );
}

pub fn assert_success(r: &ProbeResult) {
    assert!(r.success(), "expected success\n{}", describe(r));
}

/// The phases a probe recorded, in order.
pub fn phase_names(r: &ProbeResult) -> Vec<Phase> {
    r.phases.iter().map(|(p, _)| *p).collect()
}

/// Whether the probe recorded phase `p`.
pub fn has_phase(r: &ProbeResult, p: Phase) -> bool {
    r.phases.iter().any(|(q, _)| *q == p)
}

pub fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1000.0
}
