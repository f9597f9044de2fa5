//! OAuth token series: the cached access token's expiry and failed token requests, fed
//! by the token caches through [`crate::auth::TokenEvents`].

use std::collections::{HashMap, HashSet};
use std::sync::Mutex;
use std::time::SystemTime;

use prometheus::{GaugeVec, IntCounterVec, Registry};

use super::register;
use crate::util::{lock, unix};

pub(super) struct OAuthMetrics {
    oauth_token_expiry_timestamp_seconds: GaugeVec,
    oauth_token_failures_total: IntCounterVec,
    /// The failure reasons seen per mailbox, so a removed mailbox's series all go.
    reasons: Mutex<HashMap<String, HashSet<String>>>,
}

impl OAuthMetrics {
    pub(super) fn new(r: &Registry) -> OAuthMetrics {
        OAuthMetrics {
            oauth_token_expiry_timestamp_seconds: register(
                r,
                "oauth_token_expiry_timestamp_seconds",
                "Expiry of the cached OAuth access token (Unix seconds).",
                &["mailbox"],
            ),
            oauth_token_failures_total: register(
                r,
                "oauth_token_failures_total",
                "OAuth token requests that failed, by reason.",
                &["mailbox", "reason"],
            ),
            reasons: Mutex::new(HashMap::new()),
        }
    }

    pub(super) fn remove_mailbox(&self, name: &str) {
        let _ = self
            .oauth_token_expiry_timestamp_seconds
            .remove_label_values(&[name]);
        for reason in lock(&self.reasons).remove(name).unwrap_or_default() {
            let _ = self
                .oauth_token_failures_total
                .remove_label_values(&[name, &reason]);
        }
    }
}

/// The token caches report here.
impl crate::auth::TokenEvents for OAuthMetrics {
    fn token_fetched(&self, mailbox: &str, expires_at: SystemTime) {
        self.oauth_token_expiry_timestamp_seconds
            .with_label_values(&[mailbox])
            .set(unix(expires_at) as f64);
    }

    /// Its expiry no longer describes anything.
    fn token_dropped(&self, mailbox: &str) {
        let _ = self
            .oauth_token_expiry_timestamp_seconds
            .remove_label_values(&[mailbox]);
    }

    fn token_failed(&self, mailbox: &str, reason: &str) {
        self.oauth_token_failures_total
            .with_label_values(&[mailbox, reason])
            .inc();
        lock(&self.reasons)
            .entry(mailbox.to_owned())
            .or_default()
            .insert(reason.to_owned());
    }
}
