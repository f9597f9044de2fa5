//! Provider rules: what a `provider:` refuses or requires beyond the defaults its preset
//! fills in.
//!
//! This file owns the one table [`RULES`] and the one function that evaluates it,
//! [`check`]. A row names the provider, a declarative condition, and the message the
//! user sees; the key blamed follows from the condition. What a preset *fills in* (host,
//! port, a fixed username, the in-process relay) stays in `presets.rs`, and the share
//! of a provider's limits the canary may use (the 10% rule) is arithmetic in
//! `budget.rs`. A new provider rule is a new row here; a new kind of condition is a new
//! [`When`] and one arm in `mailbox_hits` or `oauth2_hit`, by what it looks at.

use serde_saphyr::{Location, Spanned};

use super::keypath::KeyPath;
use super::presets::Preset;
use super::schema::{RawMailbox, RawOAuth2, S, Scalar};
use super::{Grant, Provider, Security};

/// The message the contract prescribes for Exchange Online on port 465 / implicit TLS.
pub(super) const M365_NO_465: &str = "Exchange Online accepts client submission only with STARTTLS on 587; port 465 is not supported";

/// One rule of one provider (or of every provider).
pub(super) struct ProviderRule {
    /// `None`: the rule applies to every provider, its condition reads the preset.
    pub provider: Option<Provider>,
    pub when: When,
    /// `{key}` is replaced by the key blamed, `{example}` by the preset's host example,
    /// `{provider}` by the provider's name.
    pub message: &'static str,
}

/// When a rule is broken. Each says which key it blames, so the error points at the
/// value that has to change, or at the entry when a key is missing.
#[derive(Clone, Copy)]
pub(super) enum When {
    /// `host:` is absent and the preset has none. Blames the mailbox entry.
    HostMissing,
    /// `host:` or `port:` is written, though the provider fixes the endpoint. Blames
    /// each key written.
    EndpointWritten,
    /// The port is 465 or the security is `tls`, written or implied. Blames the port if
    /// it is written as 465, else the security, else the port.
    ImplicitTls,
    /// `username:` is written, and is not the preset's fixed username.
    UsernameNotFixed,
    /// The grant is this one and no `token_url:` is written, so the preset's endpoint
    /// would be asked for it. Blames `grant:`, else the `oauth2:` entry.
    GrantAtDefaultEndpoint(Grant),
    /// `tenant:` is written, but the preset's token endpoint has no `{tenant}` to put it in.
    TenantWithoutTemplate,
}

/// The provider rules, in the order they are reported when several blame the same spot.
pub(super) static RULES: &[ProviderRule] = &[
    ProviderRule {
        provider: Some(Provider::Generic),
        when: When::HostMissing,
        message: "host is required for provider {provider}, e.g. {example}",
    },
    ProviderRule {
        provider: Some(Provider::Ses),
        when: When::HostMissing,
        message: "provider ses needs host: the SMTP endpoint of your region, e.g. {example}",
    },
    ProviderRule {
        provider: Some(Provider::Demo),
        when: When::EndpointWritten,
        message: "provider demo uses its in-process relay on loopback; remove `{key}`",
    },
    ProviderRule {
        provider: Some(Provider::Microsoft365),
        when: When::ImplicitTls,
        message: M365_NO_465,
    },
    ProviderRule {
        provider: Some(Provider::Sendgrid),
        when: When::UsernameNotFixed,
        message: "SendGrid expects the username `apikey` (the API key itself is the password)",
    },
    ProviderRule {
        provider: Some(Provider::Google),
        when: When::GrantAtDefaultEndpoint(Grant::ClientCredentials),
        message: "Google's token endpoint has no client_credentials grant for SMTP; use grant: refresh_token",
    },
    ProviderRule {
        provider: None,
        when: When::TenantWithoutTemplate,
        message: "tenant applies only to provider microsoft365; for {provider} set token_url",
    },
];

/// What the rules look at: a section as written, with the values resolved from it that
/// a rule depends on.
pub(super) enum Subject<'a> {
    /// A mailbox entry; its port and security as resolved (written, implied or the
    /// preset's).
    Mailbox {
        entry: &'a Spanned<RawMailbox>,
        port: u16,
        security: Security,
    },
    /// An `oauth2:` entry and its grant (written or implied).
    OAuth2 {
        entry: &'a Spanned<RawOAuth2>,
        grant: Grant,
    },
}

/// A broken rule: where, which key (under the subject's path) and why.
pub(super) struct Finding {
    pub at: Location,
    pub key: KeyPath,
    pub message: String,
}

/// Every rule of `provider` that `subject` breaks, in table order. `path` is the
/// subject's key path.
pub(super) fn check(provider: Provider, path: &KeyPath, subject: &Subject<'_>) -> Vec<Finding> {
    let preset = provider.preset();
    let mut found = Vec::new();
    for rule in RULES
        .iter()
        .filter(|r| r.provider.is_none_or(|p| p == provider))
    {
        for (at, key) in hits(rule.when, provider, subject) {
            let message = rule
                .message
                .replace("{key}", key)
                .replace(
                    "{example}",
                    preset.host_example.unwrap_or("smtp.example.com"),
                )
                .replace("{provider}", provider.as_str());
            found.push(Finding {
                at,
                key: path.key(key),
                message,
            });
        }
    }
    found
}

/// Where `subject` breaks a rule with this condition: (location, key) pairs, none if it
/// keeps it. A condition about another kind of subject never hits.
fn hits(when: When, provider: Provider, subject: &Subject<'_>) -> Vec<(Location, &'static str)> {
    match *subject {
        Subject::Mailbox {
            entry,
            port,
            security,
        } => mailbox_hits(when, provider.preset(), entry, port, security),
        Subject::OAuth2 { entry, grant } => oauth2_hit(when, provider, entry, grant)
            .into_iter()
            .collect(),
    }
}

fn mailbox_hits(
    when: When,
    preset: &Preset,
    entry: &Spanned<RawMailbox>,
    port: u16,
    security: Security,
) -> Vec<(Location, &'static str)> {
    let m = &entry.value;
    match when {
        When::HostMissing if m.host.is_none() && preset.host.is_none() => {
            vec![(entry.referenced, "host")]
        }
        When::EndpointWritten => [written(&m.host, "host"), written(&m.port, "port")]
            .into_iter()
            .flatten()
            .collect(),
        When::ImplicitTls if port == 465 || security == Security::Tls => {
            implicit_tls_at(m).into_iter().collect()
        }
        When::UsernameNotFixed => match (&m.username, preset.username) {
            (Some(u), Some(fixed)) if u.value != fixed => vec![(u.referenced, "username")],
            _ => vec![],
        },
        _ => vec![],
    }
}

/// What to blame for implicit TLS: the port if it is written as 465, else the security,
/// else the port. Neither written means the preset's endpoint, which keeps the rule.
fn implicit_tls_at(m: &RawMailbox) -> Option<(Location, &'static str)> {
    let written_465 = |v: &Scalar| match v {
        Scalar::Int(n) => *n == 465,
        Scalar::Str(t) => t.trim() == "465",
        _ => false,
    };
    match (&m.port, &m.security) {
        (Some(v), _) if written_465(&v.value) => Some((v.referenced, "port")),
        (_, Some(v)) => Some((v.referenced, "security")),
        (Some(v), None) => Some((v.referenced, "port")),
        (None, None) => None,
    }
}

fn oauth2_hit(
    when: When,
    provider: Provider,
    entry: &Spanned<RawOAuth2>,
    grant: Grant,
) -> Option<(Location, &'static str)> {
    let r = &entry.value;
    match when {
        When::GrantAtDefaultEndpoint(g) if grant == g && r.token_url.is_none() => {
            let at = r.grant.as_ref().map_or(entry.referenced, |v| v.referenced);
            Some((at, "grant"))
        }
        When::TenantWithoutTemplate if !takes_tenant(provider) => written(&r.tenant, "tenant"),
        _ => None,
    }
}

/// The location of `key` if it is written.
fn written<T>(v: &S<T>, key: &'static str) -> Option<(Location, &'static str)> {
    v.as_ref().map(|v| (v.referenced, key))
}

/// Whether the provider's default token endpoint is per tenant (`{tenant}` in the URL).
pub(super) fn takes_tenant(provider: Provider) -> bool {
    provider
        .preset()
        .oauth_token_url
        .is_some_and(|u| u.contains("{tenant}"))
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Every provider without a default host has a rule that asks for one; without it a
    /// mailbox would pass with an empty host and fail only at its first probe.
    #[test]
    fn every_provider_without_a_host_asks_for_one() {
        for p in Provider::ALL.iter().copied() {
            let asks = RULES
                .iter()
                .any(|r| r.provider == Some(p) && matches!(r.when, When::HostMissing));
            assert_eq!(asks, p.preset().host.is_none(), "{p}");
        }
    }

    /// Validation ignores the endpoint of an in-process preset; a rule must refuse a
    /// written one rather than let it be silently dropped.
    #[test]
    fn in_process_presets_refuse_a_written_endpoint() {
        for p in Provider::ALL.iter().copied() {
            let refuses = RULES
                .iter()
                .any(|r| r.provider == Some(p) && matches!(r.when, When::EndpointWritten));
            assert_eq!(refuses, p.preset().in_process, "{p}");
        }
    }

    /// A fixed username is only a rule if some provider has one.
    #[test]
    fn username_rules_name_providers_with_a_fixed_username() {
        for r in RULES {
            if matches!(r.when, When::UsernameNotFixed) {
                let p = r.provider.expect("a username rule names its provider");
                assert!(p.preset().username.is_some(), "{p}");
            }
        }
    }
}
