//! Provider presets: the table of what each `provider:` fills in and what it expects.
//!
//! This file owns the one static table [`PRESETS`] (host, port, security, limits, the
//! OAuth 2.0 defaults, and the SPF include and DKIM selectors the DNS audit expects),
//! plus name lookup for `provider:` values. The rules a provider *checks* (Exchange Online
//! refuses port 465, SendGrid wants the username `apikey`) are the table in `rules.rs`,
//! so every provider refusal is found in one place.

use std::str::FromStr;

use super::{Limits, Security};

/// The `provider:` of a mailbox.
#[derive(
    Debug,
    Clone,
    Copy,
    PartialEq,
    Eq,
    Hash,
    strum::IntoStaticStr,
    strum::Display,
    strum::VariantArray,
)]
#[strum(serialize_all = "lowercase")]
pub enum Provider {
    Microsoft365,
    Google,
    Ses,
    Sendgrid,
    Generic,
    /// The in-process loopback relay; classified like Microsoft 365.
    Demo,
}

impl Provider {
    /// Every provider, in the order the contract lists them (the declaration order).
    pub const ALL: &'static [Provider] = <Provider as strum::VariantArray>::VARIANTS;

    pub fn as_str(self) -> &'static str {
        self.into()
    }

    /// The provider spelled exactly as in the config (`microsoft365`, ...).
    pub fn from_name(name: &str) -> Option<Provider> {
        Provider::ALL.iter().copied().find(|p| p.as_str() == name)
    }

    /// This provider's row of [`PRESETS`].
    pub fn preset(self) -> &'static Preset {
        // The table is indexed by the same order as `ALL`; a test keeps them in step.
        &PRESETS[self as usize]
    }
}

/// The error of [`Provider::from_str`]: the name is not a known provider.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("unknown provider `{0}` (known: microsoft365, google, ses, sendgrid, generic, demo)")]
pub struct UnknownProvider(pub String);

impl FromStr for Provider {
    type Err = UnknownProvider;

    fn from_str(s: &str) -> Result<Provider, UnknownProvider> {
        Provider::from_name(s).ok_or_else(|| UnknownProvider(s.to_string()))
    }
}

/// What a provider preset fills in.
#[derive(Debug, Clone, Copy)]
pub struct Preset {
    pub provider: Provider,
    /// `None`: the mailbox must set `host:` (generic, ses) or it is set at start (demo).
    pub host: Option<&'static str>,
    /// `0` only for `demo`, whose relay picks its port at start.
    pub port: u16,
    pub security: Security,
    /// The provider's own per-mailbox limits; explicit `limits:` keys override each field.
    pub limits: Limits,
    /// The `include:` the provider's sending IPs need in the domain's SPF record.
    pub spf_include: Option<&'static str>,
    /// The DKIM selectors the provider publishes under.
    pub dkim_selectors: &'static [&'static str],
    /// Default OAuth 2.0 token endpoint; `{tenant}` is replaced by `oauth2.tenant`.
    pub oauth_token_url: Option<&'static str>,
    /// Default scope for `grant: client_credentials` (app-only).
    pub oauth_scope_app: Option<&'static str>,
    /// Default scope for `grant: refresh_token` (delegated).
    pub oauth_scope_delegated: Option<&'static str>,
    /// Shown when a required `host:` is missing.
    pub host_example: Option<&'static str>,
    /// The username every account of the provider has (SendGrid's `apikey`): the default
    /// when `username:` is left out, so a mailbox needs none of its own.
    pub username: Option<&'static str>,
    /// The in-process relay (demo): its address, port and credentials are filled in at
    /// start, so a mailbox gives none of them.
    pub in_process: bool,
}

/// Exchange Online's per-mailbox limits (also used by `demo`, which mimics it).
const M365_LIMITS: Limits = Limits {
    messages_per_minute: Some(30),
    messages_per_day: None,
    recipients_per_day: Some(10_000),
    concurrent_connections: Some(3),
};

const NO_LIMITS: Limits = Limits {
    messages_per_minute: None,
    messages_per_day: None,
    recipients_per_day: None,
    concurrent_connections: None,
};

/// The preset table, one row per [`Provider`], in the order of [`Provider::ALL`].
/// Facts from the contract's table and `notes/providers.md` (checked November 2026).
pub static PRESETS: [Preset; 6] = [
    Preset {
        provider: Provider::Microsoft365,
        host: Some("smtp.office365.com"),
        port: 587,
        security: Security::Starttls,
        limits: M365_LIMITS,
        spf_include: Some("spf.protection.outlook.com"),
        dkim_selectors: &["selector1", "selector2"],
        oauth_token_url: Some("https://login.microsoftonline.com/{tenant}/oauth2/v2.0/token"),
        oauth_scope_app: Some("https://outlook.office365.com/.default"),
        // Delegated tokens need SMTP.Send; offline_access keeps the refresh token alive.
        oauth_scope_delegated: Some("https://outlook.office.com/SMTP.Send offline_access"),
        host_example: None,
        username: None,
        in_process: false,
    },
    Preset {
        provider: Provider::Google,
        host: Some("smtp.gmail.com"),
        port: 587,
        security: Security::Starttls,
        limits: Limits {
            messages_per_minute: None,
            messages_per_day: Some(2_000),
            recipients_per_day: Some(10_000),
            concurrent_connections: None,
        },
        spf_include: Some("_spf.google.com"),
        dkim_selectors: &["google"],
        oauth_token_url: Some("https://oauth2.googleapis.com/token"),
        oauth_scope_app: Some("https://mail.google.com/"),
        oauth_scope_delegated: Some("https://mail.google.com/"),
        host_example: None,
        username: None,
        in_process: false,
    },
    Preset {
        provider: Provider::Ses,
        // The endpoint depends on the region and the contract has no `region:` key.
        host: None,
        port: 587,
        security: Security::Starttls,
        // SES quotas are per account and region; nothing sensible to default to.
        limits: NO_LIMITS,
        spf_include: Some("amazonses.com"),
        dkim_selectors: &[],
        oauth_token_url: None,
        oauth_scope_app: None,
        oauth_scope_delegated: None,
        host_example: Some("email-smtp.eu-west-1.amazonaws.com"),
        username: None,
        in_process: false,
    },
    Preset {
        provider: Provider::Sendgrid,
        host: Some("smtp.sendgrid.net"),
        port: 587,
        security: Security::Starttls,
        // Plan-specific.
        limits: NO_LIMITS,
        spf_include: Some("sendgrid.net"),
        dkim_selectors: &["s1", "s2"],
        oauth_token_url: None,
        oauth_scope_app: None,
        oauth_scope_delegated: None,
        host_example: None,
        username: Some("apikey"),
        in_process: false,
    },
    Preset {
        provider: Provider::Generic,
        host: None,
        port: 587,
        security: Security::Starttls,
        limits: NO_LIMITS,
        spf_include: None,
        dkim_selectors: &[],
        oauth_token_url: None,
        oauth_scope_app: None,
        oauth_scope_delegated: None,
        host_example: Some("smtp.example.com"),
        username: None,
        in_process: false,
    },
    Preset {
        provider: Provider::Demo,
        // Replaced at start by the in-process relay's loopback address and port.
        host: Some("127.0.0.1"),
        port: 0,
        security: Security::Starttls,
        limits: M365_LIMITS,
        spf_include: None,
        dkim_selectors: &[],
        oauth_token_url: None,
        oauth_scope_app: None,
        oauth_scope_delegated: None,
        host_example: None,
        username: None,
        in_process: true,
    },
];

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn table_rows_follow_provider_order() {
        for p in Provider::ALL.iter().copied() {
            assert_eq!(p.preset().provider, p);
            assert_eq!(Provider::from_name(p.as_str()), Some(p));
            assert_eq!(p.as_str().parse::<Provider>(), Ok(p));
        }
        assert!("office365".parse::<Provider>().is_err());
    }

    #[test]
    fn contract_table_values() {
        let m = Provider::Microsoft365.preset();
        assert_eq!(
            (m.host, m.port, m.security),
            (Some("smtp.office365.com"), 587, Security::Starttls)
        );
        assert_eq!(m.limits.messages_per_minute, Some(30));
        assert_eq!(m.limits.recipients_per_day, Some(10_000));
        assert_eq!(m.limits.concurrent_connections, Some(3));
        assert_eq!(m.dkim_selectors, &["selector1", "selector2"]);
        let g = Provider::Google.preset();
        assert_eq!(g.limits.messages_per_day, Some(2_000));
        assert_eq!(g.spf_include, Some("_spf.google.com"));
        assert_eq!(Provider::Ses.preset().host, None);
        assert_eq!(Provider::Sendgrid.preset().dkim_selectors, &["s1", "s2"]);
        assert_eq!(Provider::Demo.preset().limits, M365_LIMITS);
    }
}

/// What a sink's `provider:` fills in (the IMAP side of a provider).
#[derive(Debug, Clone, Copy)]
pub struct SinkPreset {
    pub provider: Provider,
    /// `None`: `host:` is required (generic) or filled in at start (demo).
    pub host: Option<&'static str>,
    pub port: u16,
    pub security: Security,
    /// The server takes no password: Exchange Online has had no Basic auth for IMAP
    /// since 2022, so a password can only fail.
    pub oauth_only: bool,
    /// The in-process demo sink: nothing to connect to, no credentials.
    pub in_process: bool,
}

/// The sink presets. Providers without a row (ses, sendgrid) send mail but hold no
/// mailbox to read back.
pub static SINK_PRESETS: &[SinkPreset] = &[
    SinkPreset {
        provider: Provider::Microsoft365,
        host: Some("outlook.office365.com"),
        port: 993,
        security: Security::Tls,
        oauth_only: true,
        in_process: false,
    },
    SinkPreset {
        provider: Provider::Google,
        host: Some("imap.gmail.com"),
        port: 993,
        security: Security::Tls,
        oauth_only: false,
        in_process: false,
    },
    SinkPreset {
        provider: Provider::Generic,
        host: None,
        port: 993,
        security: Security::Tls,
        oauth_only: false,
        in_process: false,
    },
    SinkPreset {
        provider: Provider::Demo,
        host: None,
        port: 0,
        security: Security::Tls,
        oauth_only: false,
        in_process: true,
    },
];

impl Provider {
    /// This provider's row of [`SINK_PRESETS`], if it can be a sink.
    pub fn sink_preset(self) -> Option<&'static SinkPreset> {
        SINK_PRESETS.iter().find(|p| p.provider == self)
    }
}
