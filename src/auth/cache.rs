//! The per-mailbox access-token cache: the [`TokenProvider`] a probe asks for a token.
//!
//! - A token is reused until it is close to expiry: 5 minutes before it, or at 80% of its
//!   life when 5 minutes would be more than a fifth of it (short-lived tokens).
//! - Concurrent probes share one request: the first caller starts the fetch as a task of
//!   its own, later callers wait for the same result. Being a task, the fetch finishes (and
//!   its outcome is cached and counted) even when the probe that started it hits its
//!   deadline, so a slow endpoint never gets a second request for the same need.
//! - After a failure no new request is made until an exponential back-off (with a cap)
//!   has passed; probes in between get the last error, marked as such.
//! - Every request's failure is counted in `oauth_token_failures_total{reason}` and
//!   logged with the endpoint's `error_description`; success sets
//!   `oauth_token_expiry_timestamp_seconds`.
//! - With the refresh_token grant, a rotated refresh token replaces the old one in memory
//!   and in the state directory (`store.rs`) before the access token is handed out.

use std::future::Future;
use std::path::PathBuf;
use std::pin::Pin;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime};

use tokio::sync::watch;

use super::oauth::{Issued, TokenClient, TokenRequest, endpoint_label};
use super::store::RefreshStore;
use super::{AccessToken, TokenError, TokenProvider};
use crate::config::{Grant, OAuth2, Secret};

/// The margin before expiry at which a token is replaced.
pub const REFRESH_MARGIN: Duration = Duration::from_secs(5 * 60);

/// The first back-off after a failed request; it doubles with each further failure.
pub const BACKOFF_BASE: Duration = Duration::from_secs(30);

/// The longest back-off: a fixed secret is picked up within this time.
pub const BACKOFF_CAP: Duration = Duration::from_secs(10 * 60);

/// How long a token is reused: until 5 minutes before expiry, or until 80% of its life
/// if the 5-minute margin would be more than a fifth of it.
pub fn reuse_for(lifetime: Duration) -> Duration {
    lifetime - REFRESH_MARGIN.min(lifetime / 5)
}

/// The back-off after `failures` consecutive failed requests (1 or more).
pub fn backoff(failures: u32, base: Duration, cap: Duration) -> Duration {
    let exp = failures.saturating_sub(1).min(20);
    base.saturating_mul(1u32 << exp).min(cap)
}

/// What a token cache reports as it works. The metrics implement it; the cache knows
/// nothing of them.
pub trait TokenEvents: Send + Sync {
    /// A token request succeeded: the cached token expires at `expires_at`.
    fn token_fetched(&self, mailbox: &str, expires_at: std::time::SystemTime);
    /// The cached token is gone (rejected by the server, or expired after failed
    /// refreshes).
    fn token_dropped(&self, mailbox: &str);
    /// A token request failed for `reason` (an OAuth error code, `http_<status>`,
    /// `network`, `timeout` or `malformed`: a bounded set).
    fn token_failed(&self, mailbox: &str, reason: &str);
}

/// Everything a cache needs besides the mailbox's own settings.
#[derive(Clone)]
pub struct CacheOptions {
    /// `--state.dir`: where a rotated refresh token is kept. `None`: memory only.
    pub state_dir: Option<PathBuf>,
    /// Where token expiry and failures are reported (the daemon's metrics). `None`:
    /// nowhere (the `probe` command, tests).
    pub metrics: Option<Arc<dyn TokenEvents>>,
    pub backoff_base: Duration,
    pub backoff_cap: Duration,
    /// Every token request holds a read lock on this; a shutdown takes the write lock to
    /// wait for them, so a refresh token the endpoint just rotated is stored before the
    /// process exits (the old one may already be revoked).
    pub in_flight: Arc<tokio::sync::RwLock<()>>,
}

impl Default for CacheOptions {
    fn default() -> CacheOptions {
        CacheOptions {
            state_dir: None,
            metrics: None,
            backoff_base: BACKOFF_BASE,
            backoff_cap: BACKOFF_CAP,
            in_flight: Arc::new(tokio::sync::RwLock::new(())),
        }
    }
}

/// Why a cache could not be set up.
#[derive(Debug, thiserror::Error)]
pub enum CacheSetupError {
    #[error("oauth2.token_url {0:?} is not a URL")]
    BadUrl(String),
}

/// The access-token source of one mailbox (see the module docs).
pub struct TokenCache {
    inner: Arc<Inner>,
}

type Outcome = Result<AccessToken, TokenError>;

struct Inner {
    mailbox: String,
    username: String,
    grant: Grant,
    url: reqwest::Url,
    endpoint: String,
    scope: Option<String>,
    client_id: String,
    client_secret: Secret,
    client: TokenClient,
    store: Option<RefreshStore>,
    metrics: Option<Arc<dyn TokenEvents>>,
    backoff_base: Duration,
    backoff_cap: Duration,
    in_flight: Arc<tokio::sync::RwLock<()>>,
    state: Mutex<State>,
}

struct State {
    token: Option<Cached>,
    /// The refresh token in use: the configured one, the stored one, or a rotated one.
    refresh_token: Option<Secret>,
    /// Whether the state directory was consulted for a rotated refresh token yet.
    store_checked: bool,
    failures: u32,
    last_failure: Option<(Instant, Instant, TokenError)>,
    in_flight: Option<watch::Receiver<Option<Outcome>>>,
}

/// Whether a cached token is still usable for a probe: a probe needs it for a few
/// seconds, so it must have a tenth of its life left (at most a minute, for clock skew).
fn still_valid(c: &Cached) -> bool {
    let margin = (c.lifetime / 10).min(Duration::from_secs(60));
    c.expires_at
        .duration_since(SystemTime::now())
        .is_ok_and(|left| left > margin)
}

struct Cached {
    token: Secret,
    expires_at: SystemTime,
    reuse_until: Instant,
    lifetime: Duration,
}

impl TokenCache {
    /// The cache of one mailbox, authenticating as `username` with `oauth`.
    pub fn new(
        mailbox: &str,
        username: &str,
        oauth: &OAuth2,
        client: TokenClient,
        opts: &CacheOptions,
    ) -> Result<TokenCache, CacheSetupError> {
        let url = reqwest::Url::parse(&oauth.token_url)
            .map_err(|_| CacheSetupError::BadUrl(super::display_token_url(&oauth.token_url)))?;
        let store = match (&opts.state_dir, oauth.grant, &oauth.refresh_token) {
            (Some(dir), Grant::RefreshToken, Some(rt)) => Some(RefreshStore::new(
                dir,
                mailbox,
                &oauth.token_url,
                &oauth.client_id,
                rt,
            )),
            _ => None,
        };
        Ok(TokenCache {
            inner: Arc::new(Inner {
                mailbox: mailbox.to_owned(),
                username: username.to_owned(),
                grant: oauth.grant,
                endpoint: endpoint_label(&url),
                url,
                scope: oauth.scope.clone(),
                client_id: oauth.client_id.clone(),
                client_secret: oauth.client_secret.clone(),
                client,
                store,
                metrics: opts.metrics.clone(),
                backoff_base: opts.backoff_base,
                backoff_cap: opts.backoff_cap,
                in_flight: opts.in_flight.clone(),
                state: Mutex::new(State {
                    token: None,
                    refresh_token: oauth.refresh_token.clone(),
                    store_checked: false,
                    failures: 0,
                    last_failure: None,
                    in_flight: None,
                }),
            }),
        })
    }

    /// The token endpoint, without user info or query (for logs and `check-config`).
    pub fn endpoint(&self) -> &str {
        &self.inner.endpoint
    }

    /// Where a rotated refresh token is kept, if anywhere.
    pub fn refresh_token_path(&self) -> Option<PathBuf> {
        self.inner.store.as_ref().map(|s| s.path().to_path_buf())
    }
}

impl TokenProvider for TokenCache {
    fn token(&self) -> Pin<Box<dyn Future<Output = Outcome> + Send + '_>> {
        Box::pin(self.inner.clone().get())
    }

    fn rejected(&self, token: &Secret) {
        let mut st = self.inner.lock();
        // Only that token: a newer one fetched meanwhile by another probe stays.
        if st.token.as_ref().is_some_and(|c| c.token == *token) {
            st.token = None;
            if let Some(m) = &self.inner.metrics {
                m.token_dropped(&self.inner.mailbox);
            }
            tracing::info!(mailbox = %self.inner.mailbox, "the SMTP server rejected the cached access token; the next probe fetches a new one");
        }
    }
}

impl Inner {
    fn lock(&self) -> std::sync::MutexGuard<'_, State> {
        // Poisoning means a panic elsewhere mid-update; every field is still valid.
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    async fn get(self: Arc<Self>) -> Outcome {
        let mut rx = {
            let mut st = self.lock();
            let now = Instant::now();
            if let Some(c) = &st.token
                && now < c.reuse_until
            {
                return Ok(self.access(c.token.clone(), c.expires_at, false));
            }
            // A sender that is gone (its task died) no longer counts as in flight.
            let joinable = st
                .in_flight
                .as_ref()
                .filter(|rx| rx.has_changed().is_ok())
                .cloned();
            match joinable {
                Some(rx) => rx,
                None => {
                    if let Some((at, retry_at, e)) = &st.last_failure
                        && now < *retry_at
                    {
                        // Backing off, but the old token still works: use it.
                        if let Some(c) = st.token.as_ref().filter(|c| still_valid(c)) {
                            return Ok(self.access(c.token.clone(), c.expires_at, false));
                        }
                        return Err(TokenError {
                            reason: e.reason.clone(),
                            description: format!(
                                "{} (token request failed {}s ago; backing off, next request in {}s)",
                                e.description,
                                now.duration_since(*at).as_secs(),
                                retry_at.duration_since(now).as_secs().max(1)
                            ),
                        });
                    }
                    let Ok(guard) = self.in_flight.clone().try_read_owned() else {
                        return Err(TokenError {
                            reason: "network".into(),
                            description: "shutting down; no new token request".into(),
                        });
                    };
                    let (tx, rx) = watch::channel(None);
                    st.in_flight = Some(rx.clone());
                    let me = self.clone();
                    tokio::spawn(async move {
                        me.fetch(tx).await;
                        drop(guard);
                    });
                    rx
                }
            }
        };
        let outcome = match rx.wait_for(Option::is_some).await {
            Ok(v) => v.clone(),
            Err(_) => None,
        };
        outcome.unwrap_or_else(|| {
            Err(TokenError {
                reason: "network".into(),
                description: "the token request was abandoned".into(),
            })
        })
    }

    fn access(&self, token: Secret, expires_at: SystemTime, fetched: bool) -> AccessToken {
        AccessToken {
            username: self.username.clone(),
            token,
            expires_at,
            fetched,
        }
    }

    /// One token request, run as its own task; its outcome goes to every waiter.
    async fn fetch(self: Arc<Self>, tx: watch::Sender<Option<Outcome>>) {
        tracing::debug!(mailbox = %self.mailbox, endpoint = %self.endpoint, grant = grant_name(self.grant), "requesting an access token");
        let result = self.request().await;
        let outcome = {
            let mut st = self.lock();
            st.in_flight = None;
            match result {
                Ok((issued, expires_at)) => {
                    st.failures = 0;
                    st.last_failure = None;
                    st.token = Some(Cached {
                        token: issued.access_token.clone(),
                        expires_at,
                        reuse_until: Instant::now() + reuse_for(issued.lifetime),
                        lifetime: issued.lifetime,
                    });
                    if let Some(m) = &self.metrics {
                        m.token_fetched(&self.mailbox, expires_at);
                    }
                    tracing::debug!(
                        mailbox = %self.mailbox,
                        expires_in_seconds = issued.lifetime.as_secs(),
                        reuse_seconds = reuse_for(issued.lifetime).as_secs(),
                        "access token fetched"
                    );
                    Ok(self.access(issued.access_token, expires_at, true))
                }
                Err(e) => {
                    st.failures = st.failures.saturating_add(1);
                    // A failed refresh does not end a token that is still valid: the
                    // failure is counted and logged (and alerts), but probes keep
                    // working until the token really expires.
                    if st.token.as_ref().is_some_and(|c| !still_valid(c)) {
                        st.token = None;
                        if let Some(m) = &self.metrics {
                            m.token_dropped(&self.mailbox);
                        }
                    }
                    let wait = backoff(st.failures, self.backoff_base, self.backoff_cap);
                    let now = Instant::now();
                    st.last_failure = Some((now, now + wait, e.clone()));
                    if let Some(m) = &self.metrics {
                        m.token_failed(&self.mailbox, &e.reason);
                    }
                    tracing::warn!(
                        mailbox = %self.mailbox,
                        endpoint = %self.endpoint,
                        reason = %e.reason,
                        error_description = %e.description,
                        consecutive_failures = st.failures,
                        backoff_seconds = wait.as_secs(),
                        "access token request failed"
                    );
                    match st.token.as_ref() {
                        Some(c) => Ok(self.access(c.token.clone(), c.expires_at, false)),
                        None => Err(e),
                    }
                }
            }
        };
        // Nobody may be waiting any more (their probes timed out): that is fine.
        let _ = tx.send(Some(outcome));
    }

    /// The request itself, plus the refresh-token bookkeeping around it.
    async fn request(&self) -> Result<(Issued, SystemTime), TokenError> {
        if self.grant == Grant::RefreshToken {
            self.load_stored_refresh_token().await;
        }
        // Only one fetch runs at a time, so this snapshot cannot go stale mid-request.
        let refresh_token = self.lock().refresh_token.clone();
        let req = TokenRequest {
            url: &self.url,
            grant: self.grant,
            client_id: &self.client_id,
            client_secret: &self.client_secret,
            refresh_token: refresh_token.as_ref(),
            scope: self.scope.as_deref(),
        };
        let issued = self.client.request(&req).await?;
        let expires_at = SystemTime::now() + issued.lifetime;
        // A refresh token next to a client_credentials token has no use (RFC 6749 §4.4.3
        // says none should be sent): it is neither kept nor stored.
        if self.grant == Grant::RefreshToken
            && let Some(new) = &issued.refresh_token
            && refresh_token.as_ref() != Some(new)
        {
            self.lock().refresh_token = Some(new.clone());
            if let Some(store) = &self.store {
                match store.save(new).await {
                    Ok(()) => {
                        tracing::info!(mailbox = %self.mailbox, path = %store.path().display(), "the token endpoint rotated the refresh token; the new one is stored")
                    }
                    Err(e) => {
                        tracing::error!(mailbox = %self.mailbox, error = %e, "the token endpoint rotated the refresh token but it could not be stored; after a restart the configured one is used")
                    }
                }
            } else {
                tracing::info!(mailbox = %self.mailbox, "the token endpoint rotated the refresh token (kept in memory only: no state directory)");
            }
        }
        Ok((issued, expires_at))
    }

    async fn load_stored_refresh_token(&self) {
        let Some(store) = &self.store else { return };
        if std::mem::replace(&mut self.lock().store_checked, true) {
            return;
        }
        match store.load().await {
            Ok(Some(rt)) => {
                tracing::info!(mailbox = %self.mailbox, path = %store.path().display(), "using the rotated refresh token from the state directory");
                self.lock().refresh_token = Some(rt);
            }
            Ok(None) => {}
            Err(e) => {
                tracing::warn!(mailbox = %self.mailbox, error = %e, "ignoring the stored refresh token; using the configured one")
            }
        }
    }
}

fn grant_name(g: Grant) -> &'static str {
    match g {
        Grant::ClientCredentials => "client_credentials",
        Grant::RefreshToken => "refresh_token",
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reuse_window() {
        // One hour: 5 minutes before expiry.
        assert_eq!(
            reuse_for(Duration::from_secs(3600)),
            Duration::from_secs(3300)
        );
        // Ten minutes: 80% of the life (the 5-minute margin would be half of it).
        assert_eq!(
            reuse_for(Duration::from_secs(600)),
            Duration::from_secs(480)
        );
        assert_eq!(
            reuse_for(Duration::from_secs(2)),
            Duration::from_millis(1600)
        );
        // 25 minutes: both rules agree.
        assert_eq!(
            reuse_for(Duration::from_secs(1500)),
            Duration::from_secs(1200)
        );
    }

    #[test]
    fn backoff_doubles_up_to_the_cap() {
        let b = |n| backoff(n, BACKOFF_BASE, BACKOFF_CAP).as_secs();
        assert_eq!(
            [b(1), b(2), b(3), b(4), b(5), b(6), b(100)],
            [30, 60, 120, 240, 480, 600, 600]
        );
    }
}
