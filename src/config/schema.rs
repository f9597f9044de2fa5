//! The config file's schema: the raw serde structs and the table of known keys.
//!
//! The raw structs mirror the YAML one to one. Every field is optional and wrapped in
//! [`Spanned`] so that validation can report *all* missing or invalid values, each at
//! its line and column, instead of serde stopping at the first missing field. Numbers are
//! `i64` for the same reason: a range check in `validate/mailbox.rs` says "port 70000 is out of
//! range" where a `u16` would make serde stop with "invalid u16".
//!
//! The [`Section`] tables list the same keys for `tree.rs`, which checks the document for
//! unknown keys before serde sees it, so every unknown key is reported with a suggestion
//! (serde's `deny_unknown_fields` stops at the first). `deny_unknown_fields` stays on as a
//! second line of defence. A test keeps the tables and the structs in step.

use serde::Deserialize;
use serde_saphyr::Spanned;

pub(super) type S<T> = Option<Spanned<T>>;

/// A non-string value (a number, a switch) as whatever YAML type the file gave it. A value
/// of the wrong type (`port: abc`, `allow_insecure_auth: 'yes'`) is then one more error
/// that validation reports beside the others, instead of serde stopping the whole load
/// at it. A quoted string is never taken for a boolean; a quoted number is still a
/// number (templating tools quote them). These keys never hold secrets.
#[derive(Debug, Clone, PartialEq)]
pub(super) enum Scalar {
    Bool(bool),
    Int(i64),
    Float,
    Str(String),
    /// A list, mapping or null where a scalar belongs (`tree.rs` reports those).
    Other,
}

impl Scalar {
    /// What the file had, for "expected X, found Y" messages. Never the value itself.
    pub(super) fn kind(&self) -> &'static str {
        match self {
            Scalar::Bool(_) => "a boolean",
            Scalar::Int(_) => "an integer",
            Scalar::Float => "a decimal number",
            Scalar::Str(_) => "a string",
            Scalar::Other => "not a single value",
        }
    }
}

impl<'de> Deserialize<'de> for Scalar {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Scalar, D::Error> {
        struct V;
        impl<'de> serde::de::Visitor<'de> for V {
            type Value = Scalar;
            fn expecting(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
                f.write_str("a value")
            }
            fn visit_bool<E>(self, b: bool) -> Result<Scalar, E> {
                Ok(Scalar::Bool(b))
            }
            fn visit_i64<E>(self, n: i64) -> Result<Scalar, E> {
                Ok(Scalar::Int(n))
            }
            fn visit_u64<E>(self, n: u64) -> Result<Scalar, E> {
                // Beyond i64 is out of every range we check anyway.
                Ok(Scalar::Int(i64::try_from(n).unwrap_or(i64::MAX)))
            }
            fn visit_i128<E>(self, n: i128) -> Result<Scalar, E> {
                Ok(Scalar::Int(
                    n.clamp(i64::MIN as i128, i64::MAX as i128) as i64
                ))
            }
            fn visit_u128<E>(self, n: u128) -> Result<Scalar, E> {
                Ok(Scalar::Int(i64::try_from(n).unwrap_or(i64::MAX)))
            }
            fn visit_f64<E>(self, _: f64) -> Result<Scalar, E> {
                Ok(Scalar::Float)
            }
            fn visit_str<E>(self, s: &str) -> Result<Scalar, E> {
                Ok(Scalar::Str(s.to_owned()))
            }
            fn visit_unit<E>(self) -> Result<Scalar, E> {
                Ok(Scalar::Other)
            }
            fn visit_none<E>(self) -> Result<Scalar, E> {
                Ok(Scalar::Other)
            }
            fn visit_some<D: serde::Deserializer<'de>>(self, d: D) -> Result<Scalar, D::Error> {
                d.deserialize_any(V)
            }
            fn visit_seq<A: serde::de::SeqAccess<'de>>(self, mut a: A) -> Result<Scalar, A::Error> {
                while a.next_element::<serde::de::IgnoredAny>()?.is_some() {}
                Ok(Scalar::Other)
            }
            fn visit_map<A: serde::de::MapAccess<'de>>(self, mut a: A) -> Result<Scalar, A::Error> {
                while a
                    .next_entry::<serde::de::IgnoredAny, serde::de::IgnoredAny>()?
                    .is_some()
                {}
                Ok(Scalar::Other)
            }
        }
        d.deserialize_any(V)
    }
}
pub(super) type List<T> = Option<Spanned<Vec<Spanned<T>>>>;

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawConfig {
    pub global: S<RawGlobal>,
    pub mailboxes: List<RawMailbox>,
    pub dns_audit: S<RawDnsAudit>,
    pub sinks: List<RawSink>,
    pub delivery: S<RawDelivery>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawGlobal {
    pub interval: S<String>,
    pub timeout: S<String>,
    pub helo_name: S<String>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawMailbox {
    pub name: S<String>,
    pub provider: S<String>,
    pub host: S<String>,
    pub port: S<Scalar>,
    pub security: S<String>,
    pub username: S<String>,
    pub password_env: S<String>,
    pub password_file: S<String>,
    pub oauth2: S<RawOAuth2>,
    pub auth_mechanism: S<String>,
    pub from: S<String>,
    pub to: List<String>,
    pub interval: S<String>,
    pub timeout: S<String>,
    pub tls: S<RawTls>,
    pub allow_insecure_auth: S<Scalar>,
    pub source_address: S<String>,
    pub limits: S<RawLimits>,
    pub budget: S<RawBudget>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawOAuth2 {
    pub grant: S<String>,
    pub tenant: S<String>,
    pub token_url: S<String>,
    pub scope: S<String>,
    pub client_id: S<String>,
    pub client_secret_env: S<String>,
    pub client_secret_file: S<String>,
    pub refresh_token_env: S<String>,
    pub refresh_token_file: S<String>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawTls {
    pub ca_file: S<String>,
    pub server_name: S<String>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawLimits {
    pub messages_per_minute: S<Scalar>,
    pub messages_per_day: S<Scalar>,
    pub recipients_per_day: S<Scalar>,
    pub concurrent_connections: S<Scalar>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawBudget {
    pub messages_per_day: S<Scalar>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawDnsAudit {
    pub interval: S<String>,
    pub domains: List<RawAuditDomain>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawAuditDomain {
    pub domain: S<String>,
    pub provider: S<String>,
    pub dkim_selectors: List<String>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawSink {
    pub name: S<String>,
    pub address: S<String>,
    pub protocol: S<String>,
    pub provider: S<String>,
    pub host: S<String>,
    pub port: S<Scalar>,
    pub security: S<String>,
    pub username: S<String>,
    pub password_env: S<String>,
    pub password_file: S<String>,
    pub oauth2: S<RawOAuth2>,
    pub folders: List<String>,
    pub poll_interval: S<String>,
    pub cleanup: S<String>,
    pub tls: S<RawTls>,
    pub allow_insecure_auth: S<Scalar>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawDelivery {
    pub timeout: S<String>,
}

/// What kind of YAML node a key holds.
pub(super) enum Shape {
    /// A scalar (string, number, boolean).
    Scalar,
    /// A sequence of scalars.
    List,
    /// A mapping with the keys of the section.
    Map(&'static Section),
    /// A sequence of mappings with the keys of the section.
    MapList(&'static Section),
}

/// One known key.
pub(super) struct Field {
    pub name: &'static str,
    pub shape: Shape,
    /// What the value must be, for type errors: "expected {what}".
    pub what: &'static str,
}

/// The keys one mapping accepts.
pub(super) struct Section {
    pub fields: &'static [Field],
    /// Keys refused because they would hold a secret inline, with the message that names
    /// the alternatives. The message never includes the value.
    pub inline_secrets: &'static [(&'static str, &'static str)],
}

impl Section {
    pub(super) fn field(&self, name: &str) -> Option<&'static Field> {
        self.fields.iter().find(|f| f.name == name)
    }
}

const fn f(name: &'static str, shape: Shape, what: &'static str) -> Field {
    Field { name, shape, what }
}

const DURATION: &str = "a duration such as 30s, 5m or 1h";
const TEXT: &str = "a string";
const COUNT: &str = "a whole number";
const ACCESS_TOKEN: &str = "access tokens are fetched, never configured; use oauth2: with client_secret_env / client_secret_file (or refresh_token_env / refresh_token_file)";

pub(super) static TOP: Section = Section {
    fields: &[
        f(
            "global",
            Shape::Map(&GLOBAL),
            "a mapping (interval, timeout, helo_name)",
        ),
        f("mailboxes", Shape::MapList(&MAILBOX), "a list of mailboxes"),
        f(
            "dns_audit",
            Shape::Map(&DNS_AUDIT),
            "a mapping (interval, domains)",
        ),
        f(
            "sinks",
            Shape::MapList(&SINK),
            "a list of sinks (mailboxes canaries are read back from)",
        ),
        f("delivery", Shape::Map(&DELIVERY), "a mapping (timeout)"),
    ],
    inline_secrets: &[],
};

pub(super) static GLOBAL: Section = Section {
    fields: &[
        f("interval", Shape::Scalar, DURATION),
        f("timeout", Shape::Scalar, DURATION),
        f("helo_name", Shape::Scalar, "a host name"),
    ],
    inline_secrets: &[],
};

pub(super) static MAILBOX: Section = Section {
    fields: &[
        f("name", Shape::Scalar, TEXT),
        f("provider", Shape::Scalar, "a provider name"),
        f("host", Shape::Scalar, "a host name"),
        f("port", Shape::Scalar, "a port number (1 to 65535)"),
        f("security", Shape::Scalar, "starttls, tls or none"),
        f("username", Shape::Scalar, TEXT),
        f(
            "password_env",
            Shape::Scalar,
            "an environment variable name",
        ),
        f("password_file", Shape::Scalar, "a file path"),
        f(
            "oauth2",
            Shape::Map(&OAUTH2),
            "a mapping (grant, client_id, ...)",
        ),
        f("auth_mechanism", Shape::Scalar, "plain, login or xoauth2"),
        f("from", Shape::Scalar, "an email address"),
        f(
            "to",
            Shape::List,
            "a list of email addresses, e.g. [canary@example.com]",
        ),
        f("interval", Shape::Scalar, DURATION),
        f("timeout", Shape::Scalar, DURATION),
        f("tls", Shape::Map(&TLS), "a mapping (ca_file, server_name)"),
        f("allow_insecure_auth", Shape::Scalar, "true or false"),
        f("source_address", Shape::Scalar, "an IP address"),
        f("limits", Shape::Map(&LIMITS), "a mapping of limits"),
        f(
            "budget",
            Shape::Map(&BUDGET),
            "a mapping (messages_per_day)",
        ),
    ],
    inline_secrets: &[
        (
            "password",
            "inline secrets are refused; use password_env (an environment variable) or password_file (a file) instead",
        ),
        (
            "client_secret",
            "inline secrets are refused; use oauth2.client_secret_env or oauth2.client_secret_file instead",
        ),
        (
            "refresh_token",
            "inline secrets are refused; use oauth2.refresh_token_env or oauth2.refresh_token_file instead",
        ),
        ("token", ACCESS_TOKEN),
        ("access_token", ACCESS_TOKEN),
    ],
};

pub(super) static OAUTH2: Section = Section {
    fields: &[
        f(
            "grant",
            Shape::Scalar,
            "client_credentials or refresh_token",
        ),
        f("tenant", Shape::Scalar, "a tenant name or ID"),
        f("token_url", Shape::Scalar, "an https:// URL"),
        f("scope", Shape::Scalar, TEXT),
        f("client_id", Shape::Scalar, TEXT),
        f(
            "client_secret_env",
            Shape::Scalar,
            "an environment variable name",
        ),
        f("client_secret_file", Shape::Scalar, "a file path"),
        f(
            "refresh_token_env",
            Shape::Scalar,
            "an environment variable name",
        ),
        f("refresh_token_file", Shape::Scalar, "a file path"),
    ],
    inline_secrets: &[
        (
            "client_secret",
            "inline secrets are refused; use client_secret_env (an environment variable) or client_secret_file (a file) instead",
        ),
        (
            "refresh_token",
            "inline secrets are refused; use refresh_token_env (an environment variable) or refresh_token_file (a file) instead",
        ),
        (
            "password",
            "inline secrets are refused, and oauth2 takes no password; use client_secret_env or client_secret_file",
        ),
        ("token", ACCESS_TOKEN),
        ("access_token", ACCESS_TOKEN),
    ],
};

pub(super) static TLS: Section = Section {
    fields: &[
        f("ca_file", Shape::Scalar, "a file path"),
        f("server_name", Shape::Scalar, "a host name"),
    ],
    inline_secrets: &[],
};

pub(super) static LIMITS: Section = Section {
    fields: &[
        f("messages_per_minute", Shape::Scalar, COUNT),
        f("messages_per_day", Shape::Scalar, COUNT),
        f("recipients_per_day", Shape::Scalar, COUNT),
        f("concurrent_connections", Shape::Scalar, COUNT),
    ],
    inline_secrets: &[],
};

pub(super) static BUDGET: Section = Section {
    fields: &[f("messages_per_day", Shape::Scalar, COUNT)],
    inline_secrets: &[],
};

pub(super) static DNS_AUDIT: Section = Section {
    fields: &[
        f("interval", Shape::Scalar, DURATION),
        f(
            "domains",
            Shape::MapList(&AUDIT_DOMAIN),
            "a list of domains",
        ),
    ],
    inline_secrets: &[],
};

pub(super) static AUDIT_DOMAIN: Section = Section {
    fields: &[
        f("domain", Shape::Scalar, "a domain name"),
        f("provider", Shape::Scalar, "a provider name"),
        f(
            "dkim_selectors",
            Shape::List,
            "a list of DKIM selectors, e.g. [selector1]",
        ),
    ],
    inline_secrets: &[],
};

pub(super) static SINK: Section = Section {
    fields: &[
        f("name", Shape::Scalar, TEXT),
        f("address", Shape::Scalar, "an email address"),
        f("protocol", Shape::Scalar, "imap or graph"),
        f(
            "provider",
            Shape::Scalar,
            "microsoft365, google, generic or demo",
        ),
        f("host", Shape::Scalar, "a host name"),
        f("port", Shape::Scalar, "a port number (1 to 65535)"),
        f("security", Shape::Scalar, "tls, starttls or none"),
        f("username", Shape::Scalar, TEXT),
        f(
            "password_env",
            Shape::Scalar,
            "an environment variable name",
        ),
        f("password_file", Shape::Scalar, "a file path"),
        f(
            "oauth2",
            Shape::Map(&OAUTH2),
            "a mapping (grant, client_id, ...)",
        ),
        f(
            "folders",
            Shape::List,
            "a list of folder names, e.g. [INBOX, Junk]",
        ),
        f("poll_interval", Shape::Scalar, DURATION),
        f("cleanup", Shape::Scalar, "delete or keep"),
        f("tls", Shape::Map(&TLS), "a mapping (ca_file, server_name)"),
        f("allow_insecure_auth", Shape::Scalar, "true or false"),
    ],
    inline_secrets: MAILBOX.inline_secrets,
};

pub(super) static DELIVERY: Section = Section {
    fields: &[f("timeout", Shape::Scalar, DURATION)],
    inline_secrets: &[],
};

/// Every section with the path under which it appears, for "this key belongs under X"
/// hints when a known key is put in the wrong place.
pub(super) static SECTIONS: &[(&str, &Section)] = &[
    ("the top level", &TOP),
    ("global", &GLOBAL),
    ("mailboxes[]", &MAILBOX),
    ("mailboxes[].oauth2", &OAUTH2),
    ("mailboxes[].tls", &TLS),
    ("mailboxes[].limits", &LIMITS),
    ("mailboxes[].budget", &BUDGET),
    ("dns_audit", &DNS_AUDIT),
    ("dns_audit.domains[]", &AUDIT_DOMAIN),
    ("sinks[]", &SINK),
    ("sinks[].oauth2", &OAUTH2),
    ("sinks[].tls", &TLS),
    ("delivery", &DELIVERY),
];
