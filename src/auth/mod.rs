//! SASL for SMTP AUTH: the credentials a probe carries and the exact bytes each mechanism
//! sends. Payloads are secrets: they are built here, written to the wire by the session,
//! and never shown anywhere (the transcript records `<redacted>` in their place).
//!
//! This file owns the credential types, the SASL framing and [`credential_sources`], which
//! gives every mailbox its [`CredentialSource`]. XOAUTH2 tokens come from an OAuth 2.0
//! endpoint: `oauth.rs` is the HTTP client, `cache.rs` the per-mailbox token cache (the
//! [`TokenProvider`] probes ask), `store.rs` the rotated refresh token in the state
//! directory.

mod cache;
mod oauth;
mod store;

pub use cache::{
    BACKOFF_BASE, BACKOFF_CAP, CacheOptions, CacheSetupError, REFRESH_MARGIN, TokenCache,
    TokenEvents, backoff, reuse_for,
};
pub use oauth::{ClientSetupError, REQUEST_TIMEOUT, TokenClient, display_token_url};
pub use store::{RefreshStore, StoreError};

use std::collections::HashMap;
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::time::SystemTime;

use base64::Engine;
use base64::engine::general_purpose::STANDARD as B64;

use crate::config::{AuthConfig, Config, Mechanism, Secret};
use crate::redact::Redactor;

/// What a probe authenticates with.
#[derive(Debug, Clone)]
pub enum Credentials {
    None,
    Password {
        username: String,
        password: Secret,
    },
    /// An OAuth 2.0 access token for XOAUTH2.
    Bearer {
        username: String,
        token: Secret,
    },
}

impl Credentials {
    /// The credentials configured for a mailbox that needs no token fetch.
    pub fn from_config(auth: &AuthConfig) -> Credentials {
        match auth {
            AuthConfig::None => Credentials::None,
            AuthConfig::Password { username, password } => Credentials::Password {
                username: username.clone(),
                password: password.clone(),
            },
            // Its token comes from a TokenCache (see `credential_sources`), not from here.
            AuthConfig::OAuth2 { .. } => Credentials::None,
        }
    }

    /// A [`Redactor`] for every form in which these credentials cross the wire: the
    /// password or token (in all their encodings) and the SASL framings that carry them
    /// (the PLAIN payload, both LOGIN lines, the XOAUTH2 payload).
    pub fn redactor(&self) -> Redactor {
        match self {
            Credentials::None => Redactor::new(),
            Credentials::Password { username, password } => {
                let pw = password.expose();
                // The user name is no secret (it is the MAIL FROM of most canaries); its
                // base64 is the first LOGIN line, which is.
                Redactor::new()
                    .secret(pw)
                    .exact(&format!("\0{username}\0{pw}"))
                    .exact_base64(username)
            }
            Credentials::Bearer { username, token } => {
                let t = token.expose();
                Redactor::new()
                    .secret(t)
                    .exact(&format!("user={username}\x01auth=Bearer {t}\x01\x01"))
            }
        }
    }

    /// Mechanisms these credentials can use, best first.
    pub fn mechanisms(&self) -> &'static [Mechanism] {
        match self {
            Credentials::None => &[],
            Credentials::Password { .. } => &[Mechanism::Plain, Mechanism::Login],
            Credentials::Bearer { .. } => &[Mechanism::Xoauth2],
        }
    }

    /// Picks the mechanism: the forced one if any (when usable), else the best one the
    /// server offers.
    pub fn choose(&self, forced: Option<Mechanism>, offered: &[&str]) -> Option<Mechanism> {
        let usable = self.mechanisms();
        let is_offered = |m: Mechanism| offered.iter().any(|o| o.eq_ignore_ascii_case(m.as_str()));
        match forced {
            Some(m) => (usable.contains(&m) && is_offered(m)).then_some(m),
            None => usable.iter().copied().find(|m| is_offered(*m)),
        }
    }
}

/// Where a probe gets its credentials: fixed ones from the config, or an access token
/// from a [`TokenProvider`] (fetched, or reused from its cache).
#[derive(Clone)]
pub enum CredentialSource {
    Static(Credentials),
    OAuth(Arc<dyn TokenProvider>),
}

impl From<Credentials> for CredentialSource {
    fn from(c: Credentials) -> Self {
        CredentialSource::Static(c)
    }
}

/// An OAuth 2.0 access token for XOAUTH2.
#[derive(Debug, Clone)]
pub struct AccessToken {
    pub username: String,
    pub token: Secret,
    pub expires_at: SystemTime,
    /// True when this call fetched it from the token endpoint (the probe then times the
    /// `oauth_token` phase); false when it came from the cache.
    pub fetched: bool,
}

/// Why no access token could be obtained.
#[derive(Debug, Clone, thiserror::Error)]
#[error("{description}")]
pub struct TokenError {
    /// The `reason` label: the OAuth `error` code, `http_<status>`, `network`, `timeout`
    /// or `malformed`.
    pub reason: String,
    /// For logs and the probe's `reply`: the endpoint's `error_description` (AADSTS
    /// codes live there). Never the secret or a token.
    pub description: String,
}

/// A source of access tokens for one mailbox.
pub trait TokenProvider: Send + Sync {
    fn token(&self) -> Pin<Box<dyn Future<Output = Result<AccessToken, TokenError>> + Send + '_>>;

    /// The SMTP server rejected `token` (AUTH failed with class `auth`). A cache drops
    /// it, so the next probe fetches a fresh token rather than presenting a revoked one
    /// until it expires.
    fn rejected(&self, _token: &Secret) {}
}

/// Gives every mailbox its [`CredentialSource`]: a [`TokenCache`] for `oauth2:`
/// mailboxes (all sharing one HTTP client), the configured credentials otherwise.
///
/// Caches are kept across reloads for as long as a mailbox's username and `oauth2:`
/// settings stay the same, so a reload neither refetches tokens nor lets two caches use
/// (and rotate) one refresh token.
pub struct CredentialSources {
    client: TokenClient,
    opts: CacheOptions,
    caches: std::sync::Mutex<HashMap<String, KeptCache>>,
}

struct KeptCache {
    username: String,
    oauth: crate::config::OAuth2,
    cache: Arc<TokenCache>,
}

impl CredentialSources {
    /// Waits (at most `limit`) for token requests in flight to finish and store what
    /// they got; new ones are refused from now on. Call at shutdown.
    pub async fn drain(&self, limit: std::time::Duration) {
        if tokio::time::timeout(limit, self.opts.in_flight.write())
            .await
            .is_err()
        {
            tracing::warn!("a token request was still running at shutdown");
        }
    }

    pub fn new(client: TokenClient, opts: CacheOptions) -> CredentialSources {
        CredentialSources {
            client,
            opts,
            caches: std::sync::Mutex::new(HashMap::new()),
        }
    }

    /// The sources for `cfg`, by mailbox name. Caches of mailboxes no longer configured
    /// (or configured differently) are dropped.
    pub fn for_config(&self, cfg: &Config) -> HashMap<String, CredentialSource> {
        let mut kept = self.caches.lock().unwrap_or_else(|e| e.into_inner());
        let mut previous = std::mem::take(&mut *kept);
        // Mailboxes and sinks alike (their names are unique across both).
        let entries = cfg
            .mailboxes
            .iter()
            .map(|m| (m.name.as_str(), &m.auth))
            .chain(cfg.sinks.iter().map(|s| (s.name.as_str(), &s.auth)));
        let mut out = HashMap::with_capacity(cfg.mailboxes.len() + cfg.sinks.len());
        for (name, auth) in entries {
            let source = match auth {
                AuthConfig::OAuth2 { username, oauth } => {
                    let reuse = previous
                        .remove(name)
                        .filter(|k| k.username == *username && k.oauth == *oauth);
                    let cache = match reuse {
                        Some(k) => k.cache,
                        None => match TokenCache::new(
                            name,
                            username,
                            oauth,
                            self.client.clone(),
                            &self.opts,
                        ) {
                            Ok(c) => Arc::new(c),
                            Err(e) => {
                                // Validation accepted the URL, so this is rare; the
                                // mailbox still runs and each probe says what is wrong.
                                tracing::error!(mailbox = %name, error = %e, "cannot set up the token source");
                                out.insert(
                                    name.to_owned(),
                                    CredentialSource::OAuth(Arc::new(Unusable(e.to_string()))),
                                );
                                continue;
                            }
                        },
                    };
                    kept.insert(
                        name.to_owned(),
                        KeptCache {
                            username: username.clone(),
                            oauth: oauth.clone(),
                            cache: cache.clone(),
                        },
                    );
                    CredentialSource::OAuth(cache)
                }
                other => CredentialSource::Static(Credentials::from_config(other)),
            };
            out.insert(name.to_owned(), source);
        }
        out
    }
}

/// A token source that cannot work (its setup failed): every probe gets the reason.
struct Unusable(String);

impl TokenProvider for Unusable {
    fn token(&self) -> Pin<Box<dyn Future<Output = Result<AccessToken, TokenError>> + Send + '_>> {
        let e = TokenError {
            reason: "malformed".into(),
            description: self.0.clone(),
        };
        Box::pin(async move { Err(e) })
    }
}

/// One client step of a SASL exchange: the line to send (without CRLF).
pub struct Step(pub Secret);

/// The initial `AUTH` command line (with initial response where the mechanism has one)
/// and the responses to the server's `334` challenges, in order.
pub fn exchange(mech: Mechanism, creds: &Credentials) -> Option<(Secret, Vec<Step>)> {
    match (mech, creds) {
        (Mechanism::Plain, Credentials::Password { username, password }) => {
            let ir = B64.encode(format!("\0{username}\0{}", password.expose()));
            Some((Secret::new(format!("AUTH PLAIN {ir}")), Vec::new()))
        }
        (Mechanism::Login, Credentials::Password { username, password }) => Some((
            Secret::new("AUTH LOGIN".to_owned()),
            vec![
                Step(Secret::new(B64.encode(username))),
                Step(Secret::new(B64.encode(password.expose()))),
            ],
        )),
        (Mechanism::Xoauth2, Credentials::Bearer { username, token }) => {
            let ir = B64.encode(format!(
                "user={username}\x01auth=Bearer {}\x01\x01",
                token.expose()
            ));
            // A 334 here carries the server's JSON error; the client must answer with an
            // empty line to get the final reply (Google's behaviour).
            Some((
                Secret::new(format!("AUTH XOAUTH2 {ir}")),
                vec![Step(Secret::new(String::new()))],
            ))
        }
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pw() -> Credentials {
        Credentials::Password {
            username: "u@example.com".into(),
            password: Secret::new("s3cret"),
        }
    }

    #[test]
    fn plain_initial_response() {
        let (cmd, steps) = exchange(Mechanism::Plain, &pw()).unwrap();
        assert_eq!(cmd.expose(), "AUTH PLAIN AHVAZXhhbXBsZS5jb20AczNjcmV0");
        assert!(steps.is_empty());
        assert_eq!(format!("{cmd:?}"), "Secret(<redacted>)");
    }

    #[test]
    fn login_steps() {
        let (cmd, steps) = exchange(Mechanism::Login, &pw()).unwrap();
        assert_eq!(cmd.expose(), "AUTH LOGIN");
        assert_eq!(steps[1].0.expose(), B64.encode("s3cret"));
    }

    #[test]
    fn xoauth2_format() {
        let creds = Credentials::Bearer {
            username: "a@b.c".into(),
            token: Secret::new("tok"),
        };
        let (cmd, _) = exchange(Mechanism::Xoauth2, &creds).unwrap();
        let b = B64
            .decode(cmd.expose().trim_start_matches("AUTH XOAUTH2 "))
            .unwrap();
        assert_eq!(b, b"user=a@b.c\x01auth=Bearer tok\x01\x01");
    }

    #[test]
    fn choose_prefers_plain_and_honours_forced() {
        let c = pw();
        assert_eq!(c.choose(None, &["LOGIN", "PLAIN"]), Some(Mechanism::Plain));
        assert_eq!(
            c.choose(Some(Mechanism::Login), &["LOGIN", "PLAIN"]),
            Some(Mechanism::Login)
        );
        assert_eq!(c.choose(None, &["CRAM-MD5"]), None);
        assert_eq!(c.choose(Some(Mechanism::Xoauth2), &["XOAUTH2"]), None);
    }
}
