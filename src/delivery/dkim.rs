//! smtp-canary's own DKIM check of a received canary, with mail-auth's verifier.
//!
//! mail-auth 0.13 looks keys up through its own resolver, but it asks the caller's TXT
//! cache first. So the keys are fetched here through *our* resolver (the system's, or
//! `--dns-server`), put in a per-message cache, and mail-auth's own resolver is built
//! with no name servers at all: it can never reach the network, and a key we could not
//! fetch reads as "key missing".

use std::borrow::Borrow;
use std::collections::HashMap;
use std::hash::Hash;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use hickory_resolver::config::{ResolverConfig, ResolverOpts};
use hickory_resolver::proto::rr::{RData, RecordType};
use mail_auth::common::parse::TxtRecordParser;
use mail_auth::common::verify::DomainKey;
use mail_auth::dkim::DkimError;
use mail_auth::{
    AuthenticatedMessage, DkimResult, MessageAuthenticator, Parameters, ResolverCache, Txt,
};

use crate::resolve::Resolver;
use crate::util::lock;

/// A key lookup may take this long.
const LOOKUP_DEADLINE: Duration = Duration::from_secs(5);
/// Signatures looked at per message; a hostile message may carry hundreds.
const MAX_SIGNATURES: usize = 4;

/// What the check found.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DkimCheck {
    /// A signature verified and its `d=` is aligned (relaxed) with the `from` domain.
    pub valid: bool,
    /// Why not, in words an operator can act on; `None` when valid.
    pub reason: Option<String>,
}

/// Verifies canaries' signatures. Built once; cheap to share.
pub struct DkimVerifier {
    auth: MessageAuthenticator,
    resolver: Resolver,
}

impl DkimVerifier {
    pub fn new(resolver: Resolver) -> Result<DkimVerifier, String> {
        let auth = MessageAuthenticator::new(
            ResolverConfig::from_parts(None, vec![], vec![]),
            ResolverOpts::default(),
        )
        .map_err(|e| format!("cannot set up the DKIM verifier: {e}"))?;
        Ok(DkimVerifier { auth, resolver })
    }

    /// Checks `raw` (the whole received message) against the `from` domain.
    pub async fn verify(&self, raw: &[u8], from_domain: &str) -> DkimCheck {
        let Some(msg) = AuthenticatedMessage::parse(raw) else {
            return fail("the received message could not be parsed");
        };
        if msg.dkim_headers.is_empty() {
            return fail("the received canary carries no DKIM-Signature");
        }
        let cache = KeyCache::default();
        for h in msg.dkim_headers.iter().take(MAX_SIGNATURES) {
            let name = format!("{}._domainkey.{}.", h.header.s, h.header.d).to_ascii_lowercase();
            if let Some(key) = self.fetch_key(&name).await {
                cache.put(name, key);
            }
        }
        let outputs = self
            .auth
            .verify_dkim(Parameters::new(&msg).with_txt_cache(&cache))
            .await;
        let from = from_domain.to_ascii_lowercase();
        let mut reason: Option<String> = None;
        for out in &outputs {
            let d = out
                .signature()
                .map(|s| s.d.to_ascii_lowercase())
                .unwrap_or_default();
            match out.result() {
                DkimResult::Pass if aligned(&d, &from) => {
                    return DkimCheck {
                        valid: true,
                        reason: None,
                    };
                }
                DkimResult::Pass => {
                    reason.get_or_insert(format!(
                        "the signature verifies but d={d} is not aligned with the from domain {from}"
                    ));
                }
                other => {
                    reason.get_or_insert(explain(other, &d));
                }
            }
        }
        fail(
            reason
                .as_deref()
                .unwrap_or("no DKIM signature could be checked"),
        )
    }

    async fn fetch_key(&self, name: &str) -> Option<Txt> {
        let lookup = tokio::time::timeout(
            LOOKUP_DEADLINE,
            self.resolver.hickory().lookup(name, RecordType::TXT),
        )
        .await
        .ok()?
        .ok()?;
        for r in lookup.answers() {
            if let RData::TXT(txt) = &r.data {
                let bytes: Vec<u8> = txt
                    .txt_data
                    .iter()
                    .flat_map(|s| s.iter().copied())
                    .collect();
                if let Ok(key) = DomainKey::parse(&bytes) {
                    return Some(Txt::DomainKey(Arc::new(key)));
                }
            }
        }
        None
    }
}

fn fail(reason: &str) -> DkimCheck {
    DkimCheck {
        valid: false,
        reason: Some(reason.to_string()),
    }
}

/// Relaxed alignment (RFC 7489 §3.1.1): the same organizational domain.
fn aligned(d: &str, from: &str) -> bool {
    if d.is_empty() || from.is_empty() {
        return false;
    }
    if d == from {
        return true;
    }
    let org = |s: &str| {
        psl::domain_str(s)
            .map(str::to_owned)
            .unwrap_or_else(|| s.to_string())
    };
    org(d) == org(from)
}

fn explain(result: &DkimResult, d: &str) -> String {
    use mail_auth::Error as E;
    let err = match result {
        DkimResult::Neutral(e)
        | DkimResult::Fail(e)
        | DkimResult::PermError(e)
        | DkimResult::TempError(e) => e,
        DkimResult::Pass | DkimResult::None => return "no DKIM signature".to_string(),
    };
    match err {
        E::Dkim(DkimError::FailedBodyHashMatch) => {
            "body hash mismatch: the body was changed after signing".to_string()
        }
        E::Crypto(_) => format!(
            "the signature of d={d} does not verify: a signed header was changed, or the published key is not the signing key"
        ),
        E::Dns(_) => format!("key missing: no usable DKIM record for d={d}"),
        E::Dkim(DkimError::RevokedPublicKey) => format!("the key of d={d} is revoked (empty p=)"),
        E::Dkim(DkimError::SignatureExpired) => "the signature has expired".to_string(),
        other => format!("DKIM check failed: {other}"),
    }
}

/// The keys fetched for one message, handed to mail-auth as its TXT cache.
#[derive(Default)]
struct KeyCache(Mutex<HashMap<Box<str>, Txt>>);

impl KeyCache {
    fn put(&self, name: String, key: Txt) {
        lock(&self.0).insert(name.into_boxed_str(), key);
    }
}

impl ResolverCache<Box<str>, Txt> for KeyCache {
    fn get<Q>(&self, name: &Q) -> Option<Txt>
    where
        Box<str>: Borrow<Q>,
        Q: Hash + Eq + ?Sized,
    {
        lock(&self.0).get(name).cloned()
    }

    fn remove<Q>(&self, name: &Q) -> Option<Txt>
    where
        Box<str>: Borrow<Q>,
        Q: Hash + Eq + ?Sized,
    {
        lock(&self.0).remove(name)
    }

    fn insert(&self, key: Box<str>, value: Txt, _valid_until: Instant) {
        lock(&self.0).insert(key, value);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn alignment() {
        assert!(aligned("example.test", "example.test"));
        assert!(aligned("mail.contoso.com", "contoso.com"));
        assert!(!aligned("sendgrid.net", "contoso.com"));
        assert!(!aligned("", "contoso.com"));
    }
}
