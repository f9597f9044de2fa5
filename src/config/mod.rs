//! The configuration: YAML schema, validation, provider presets and secrets.
//!
//! [`load`] reads the file, applies presets, validates every rule of the contract and
//! loads secrets from `*_env` / `*_file`. Every error names the file, line, column and key.
//!
//! This file owns the resolved public types and the pipeline that produces them:
//! 1. `tree.rs` parses the text into a located node tree and reports every unknown or
//!    duplicate key, inline secret and misplaced list or mapping (with suggestions);
//! 2. serde maps the text onto the raw structs of `schema.rs` (types only);
//! 3. `validate.rs` (with its parts in `validate/`) applies defaults and the presets of
//!    `presets.rs`, checks every rule, including the provider rules of `rules.rs`, and
//!    loads secrets through `secrets.rs`.
//!
//! Each stage reports through `diag.rs`, naming keys with the paths of `keypath.rs`; a
//! stage runs only if the one before it found nothing, because its input would be
//! unreliable. `duration.rs` owns the duration syntax, `budget.rs` the 10% rule.

mod budget;
mod diag;
mod duration;
mod keypath;
mod presets;
mod rules;
mod schema;
mod secrets;
mod tree;
mod validate;

#[cfg(test)]
mod tests;

pub use budget::{
    MAX_DAILY_SHARE, MAX_MINUTE_SHARE, daily_budget, implied_per_day, minute_allowance,
};
pub use duration::{DurationError, format_duration, parse_duration};
pub use presets::{PRESETS, Preset, Provider, SINK_PRESETS, SinkPreset, UnknownProvider};
pub use secrets::Secret;

use std::net::IpAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

/// A validated configuration, presets applied and secrets loaded.
#[derive(Debug, Clone)]
pub struct Config {
    /// The file it was read from (used in messages).
    pub path: PathBuf,
    pub global: Global,
    pub mailboxes: Vec<Arc<Mailbox>>,
    pub dns_audit: DnsAudit,
    /// Mailboxes canaries are read back from (`sinks:`).
    pub sinks: Vec<Arc<Sink>>,
    pub delivery: Delivery,
}

impl Config {
    /// The mailbox called `name`.
    pub fn mailbox(&self, name: &str) -> Option<&Arc<Mailbox>> {
        self.mailboxes.iter().find(|m| m.name == name)
    }

    /// The sinks that verify `mb`'s canaries: those whose address is among its `to`.
    pub fn sinks_of(&self, mb: &Mailbox) -> Vec<Arc<Sink>> {
        self.sinks
            .iter()
            .filter(|s| mb.to.iter().any(|t| t.eq_ignore_ascii_case(&s.address)))
            .cloned()
            .collect()
    }

    /// The sinks that watch `mb`'s own inbox for bounces: those whose address is its
    /// `from`.
    pub fn bounce_sinks_of(&self, mb: &Mailbox) -> Vec<Arc<Sink>> {
        self.sinks
            .iter()
            .filter(|s| mb.from.eq_ignore_ascii_case(&s.address))
            .cloned()
            .collect()
    }

    /// The domains to audit: `dns_audit.domains` if given, else the distinct `from`
    /// domains of the mailboxes with their provider's DKIM selectors. `demo` mailboxes
    /// are skipped there: their relay is in-process, nothing of it is in DNS.
    pub fn audit_domains(&self) -> Vec<AuditDomain> {
        if !self.dns_audit.from_mailboxes {
            return self.dns_audit.domains.clone();
        }
        let mut out: Vec<AuditDomain> = Vec::new();
        for m in &self.mailboxes {
            let domain = m.from_domain();
            if m.provider == Provider::Demo
                || domain.is_empty()
                || out.iter().any(|d| d.domain == domain)
            {
                continue;
            }
            out.push(AuditDomain {
                domain: domain.to_string(),
                provider: m.provider,
                dkim_selectors: m
                    .provider
                    .preset()
                    .dkim_selectors
                    .iter()
                    .map(|s| s.to_string())
                    .collect(),
            });
        }
        out
    }
}

#[derive(Debug, Clone, PartialEq)]
pub struct Global {
    pub interval: Duration,
    pub timeout: Duration,
    pub helo_name: String,
}

/// How the connection is secured (the `security:` words, matched without case).
#[derive(
    Debug, Clone, Copy, PartialEq, Eq, strum::IntoStaticStr, strum::Display, strum::EnumString,
)]
#[strum(serialize_all = "lowercase", ascii_case_insensitive)]
pub enum Security {
    /// Plain connect, then a mandatory STARTTLS (never a downgrade).
    Starttls,
    /// Implicit TLS from the first byte (port 465 style).
    Tls,
    /// No TLS at all.
    None,
}

impl Security {
    pub fn as_str(self) -> &'static str {
        self.into()
    }
}

/// A SASL mechanism the probe may use: named as SMTP names it (`PLAIN`, the
/// `auth_mechanism_info` label), written in the config in any case (`plain`).
#[derive(
    Debug, Clone, Copy, PartialEq, Eq, Hash, strum::IntoStaticStr, strum::Display, strum::EnumString,
)]
#[strum(serialize_all = "UPPERCASE", ascii_case_insensitive)]
pub enum Mechanism {
    Plain,
    Login,
    Xoauth2,
}

impl Mechanism {
    pub fn as_str(self) -> &'static str {
        self.into()
    }
}

/// How a mailbox authenticates.
#[derive(Debug, Clone, PartialEq)]
pub enum AuthConfig {
    /// No AUTH at all (e.g. an IP-allowlisted relay).
    None,
    /// AUTH PLAIN or LOGIN with a password.
    Password { username: String, password: Secret },
    /// XOAUTH2 with a token from an OAuth 2.0 endpoint.
    OAuth2 { username: String, oauth: OAuth2 },
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Grant {
    ClientCredentials,
    RefreshToken,
}

#[derive(Debug, Clone, PartialEq)]
pub struct OAuth2 {
    pub grant: Grant,
    pub token_url: String,
    pub scope: Option<String>,
    pub client_id: String,
    /// Empty only for `Grant::RefreshToken` without `client_secret_env`/`_file`: a public
    /// client, whose token request leaves `client_secret` out.
    pub client_secret: Secret,
    /// Only for `Grant::RefreshToken`.
    pub refresh_token: Option<Secret>,
}

#[derive(Debug, Clone, PartialEq, Default)]
pub struct TlsSettings {
    /// Extra trust anchors (PEM), added to the system roots.
    pub ca_file: Option<PathBuf>,
    /// Name to verify the certificate against; default: the host.
    pub server_name: Option<String>,
}

/// Provider limits per mailbox (from the preset, overridden by `limits`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Limits {
    pub messages_per_minute: Option<u32>,
    pub messages_per_day: Option<u32>,
    pub recipients_per_day: Option<u32>,
    pub concurrent_connections: Option<u32>,
}

/// The canary's own sending cap.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Budget {
    /// `None` means "what the interval implies".
    pub messages_per_day: Option<u32>,
}

/// One probed mailbox, presets applied.
#[derive(Debug, Clone, PartialEq)]
pub struct Mailbox {
    pub name: String,
    pub provider: Provider,
    /// For `provider: demo` this is filled in at start with the relay's address.
    pub host: String,
    pub port: u16,
    pub security: Security,
    pub auth: AuthConfig,
    /// Forced SASL mechanism (`auth_mechanism:`); default: the best one offered.
    pub auth_mechanism: Option<Mechanism>,
    pub from: String,
    pub to: Vec<String>,
    pub interval: Duration,
    pub timeout: Duration,
    pub tls: TlsSettings,
    pub allow_insecure_auth: bool,
    pub source_address: Option<IpAddr>,
    pub limits: Limits,
    pub budget: Budget,
    /// Line of the mailbox entry in the config file (for messages).
    pub line: u64,
}

impl Mailbox {
    /// The domain of `from`, lower-cased.
    pub fn from_domain(&self) -> &str {
        self.from.rsplit_once('@').map(|(_, d)| d).unwrap_or("")
    }

    pub fn uses_password(&self) -> bool {
        matches!(self.auth, AuthConfig::Password { .. })
    }
}

/// How a sink is read (`protocol:`).
#[derive(
    Debug, Clone, Copy, PartialEq, Eq, strum::IntoStaticStr, strum::Display, strum::EnumString,
)]
#[strum(serialize_all = "lowercase")]
pub enum SinkProtocol {
    Imap,
    Graph,
}

/// What happens to a verified canary in the sink (`cleanup:`).
#[derive(
    Debug, Clone, Copy, PartialEq, Eq, strum::IntoStaticStr, strum::Display, strum::EnumString,
)]
#[strum(serialize_all = "lowercase")]
pub enum Cleanup {
    /// Expunge it once verified; sweep our canaries older than a day.
    Delete,
    /// Leave everything as it is.
    Keep,
}

/// A mailbox canaries are read back from, presets applied.
#[derive(Debug, Clone, PartialEq)]
pub struct Sink {
    pub name: String,
    /// Lower-cased; canaries to this address are verified here.
    pub address: String,
    pub protocol: SinkProtocol,
    pub provider: Provider,
    /// For `provider: demo` the in-process sink has no address.
    pub host: String,
    pub port: u16,
    pub security: Security,
    pub auth: AuthConfig,
    /// Folders to read; empty means INBOX plus the junk folder found on the server.
    pub folders: Vec<String>,
    /// How often to look for new mail when the server has no IDLE.
    pub poll_interval: Duration,
    pub cleanup: Cleanup,
    pub tls: TlsSettings,
    pub allow_insecure_auth: bool,
    pub line: u64,
}

/// The `delivery:` section.
#[derive(Debug, Clone, PartialEq)]
pub struct Delivery {
    /// A canary not found by then is `lost`; found later, `late`.
    pub timeout: Duration,
}

#[derive(Debug, Clone, PartialEq)]
pub struct DnsAudit {
    pub interval: Duration,
    /// Explicit domains (used when `from_mailboxes` is false).
    pub domains: Vec<AuditDomain>,
    /// True when no `dns_audit.domains` are configured: audit every distinct `from`
    /// domain instead. A sharded daemon turns it off and lists its share of the domains.
    pub from_mailboxes: bool,
}

#[derive(Debug, Clone, PartialEq)]
pub struct AuditDomain {
    pub domain: String,
    pub provider: Provider,
    pub dkim_selectors: Vec<String>,
}

/// A config error, located in the file. Line 0 means the error is about the file as a
/// whole (unreadable, not UTF-8, too large): it is shown without a location.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub struct ConfigError {
    pub file: String,
    pub line: u64,
    pub column: u64,
    /// Dotted path of the offending key, e.g. `mailboxes[1].password`.
    pub key: String,
    pub message: String,
}

impl std::fmt::Display for ConfigError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match (self.line, self.key.is_empty()) {
            (0, true) => write!(f, "{}: {}", self.file, self.message),
            (0, false) => write!(f, "{}: {}: {}", self.file, self.key, self.message),
            _ => write!(
                f,
                "{}:{}:{}: {}: {}",
                self.file, self.line, self.column, self.key, self.message
            ),
        }
    }
}

/// Reads the config file's text: a regular file of at most [`crate::fsutil::CONFIG`]
/// bytes, UTF-8, opened without blocking (a FIFO is refused, not waited on).
fn read_config(path: &Path) -> Result<String, Vec<ConfigError>> {
    let whole_file = |message: String| {
        vec![ConfigError {
            file: path.display().to_string(),
            line: 0,
            column: 0,
            key: String::new(),
            message,
        }]
    };
    crate::fsutil::read_text(path, crate::fsutil::CONFIG).map_err(|e| match e {
        Some(e) => whole_file(format!("cannot read config file: {e}")),
        None => whole_file("config file is not valid UTF-8".to_string()),
    })
}

/// Reads, validates and resolves the config file at `path`, loading secrets.
pub fn load(path: &Path) -> Result<Config, Vec<ConfigError>> {
    let text = read_config(path)?;
    parse(&text, path)
}

/// Like [`load`], from text already read. `path` names the file in errors, and relative
/// `*_file` / `ca_file` paths resolve against its directory.
pub fn parse(text: &str, path: &Path) -> Result<Config, Vec<ConfigError>> {
    parse_with(text, path, &|name| std::env::var(name), &default_helo_name)
}

/// Like [`load`], for commands that need the mailboxes but never authenticate (`audit`):
/// every rule is checked, but no secret is read (each is left empty), so the command
/// works without the daemon's environment.
pub fn load_without_secrets(path: &Path) -> Result<Config, Vec<ConfigError>> {
    let text = read_config(path)?;
    parse_inner(
        text.as_str(),
        path,
        &|name| std::env::var(name),
        &default_helo_name,
        false,
    )
}

/// [`parse`] with the environment and the HELO default supplied, so tests need neither
/// process-wide `set_var` nor the machine's host name.
fn parse_with(
    text: &str,
    path: &Path,
    env: secrets::EnvLookup<'_>,
    default_helo: &dyn Fn() -> String,
) -> Result<Config, Vec<ConfigError>> {
    parse_inner(text, path, env, default_helo, true)
}

fn parse_inner(
    text: &str,
    path: &Path,
    env: secrets::EnvLookup<'_>,
    default_helo: &dyn Fn() -> String,
    read_secrets: bool,
) -> Result<Config, Vec<ConfigError>> {
    let mut diag = diag::Diag::new(path.display().to_string());
    let root = match tree::parse(text) {
        Ok(root) => root,
        Err(e) => {
            // YAML syntax: there is no tree, hence no key path.
            let (line, column) = location_of(&e);
            diag.at_pos(line, column, "yaml", error_text(&e));
            return Err(diag.into_sorted());
        }
    };
    tree::check(&root, &mut diag);
    if !diag.is_empty() {
        return Err(diag.into_sorted());
    }
    let raw: schema::RawConfig = if matches!(root.value, tree::Node::Null) {
        // An empty file (or only comments): validation says what is missing.
        schema::RawConfig::default()
    } else {
        match serde_saphyr::from_str(text) {
            Ok(raw) => raw,
            Err(e) => {
                let (line, column) = location_of(&e);
                let path = tree::locate(&root, line, column);
                // The tree check already vetted keys and shapes, so what serde still
                // refuses is a scalar of the wrong type; serde's own words for that
                // ("invalid i64") mean nothing to a user, the schema's do.
                let message = match tree::field_at(&path) {
                    Some(field) if matches!(field.shape, schema::Shape::Scalar) => {
                        format!("invalid value; expected {}", field.what)
                    }
                    Some(field) => format!("{}; expected {}", error_text(&e), field.what),
                    None => error_text(&e),
                };
                diag.at_pos(line, column, tree::render(&path), message);
                return Err(diag.into_sorted());
            }
        }
    };
    let mut ctx = validate::Ctx {
        diag,
        dir: path.parent().map(Path::to_path_buf).unwrap_or_default(),
        env,
        default_helo,
        read_secrets,
    };
    let root_pos = (
        root.referenced.line().max(1),
        root.referenced.column().max(1),
    );
    match validate::resolve(raw, root_pos, path, &mut ctx) {
        Some(config) if ctx.diag.is_empty() => Ok(config),
        _ => Err(ctx.diag.into_sorted()),
    }
}

fn location_of(e: &serde_saphyr::Error) -> (u64, u64) {
    e.location()
        .map_or((1, 1), |l| (l.line().max(1), l.column().max(1)))
}

/// The bare message of a serde-saphyr error: no snippet (it would quote the file, and
/// the file is ours to quote or not), no location suffix (ours comes first).
pub(crate) fn error_text(e: &serde_saphyr::Error) -> String {
    use serde_saphyr::{Error, MessageFormatter, UserMessageFormatter};
    let mut inner = e;
    while let Error::AliasError { error, .. } | Error::WithSnippet { error, .. } = inner {
        inner = error;
    }
    UserMessageFormatter
        .format_message(inner)
        .chars()
        .map(|c| if c.is_control() { ' ' } else { c })
        .collect()
}

/// The machine's host name if it is a valid DNS name, else `smtp-canary.invalid`. An
/// EHLO name that is not a name at all gets some servers to refuse the session.
pub fn default_helo_name() -> String {
    let candidates = [
        std::fs::read_to_string("/proc/sys/kernel/hostname").ok(),
        std::env::var("HOSTNAME").ok(),
    ];
    candidates
        .into_iter()
        .flatten()
        .map(|h| h.trim().to_string())
        .find(|h| {
            !h.is_empty() && h.parse::<IpAddr>().is_err() && validate::host_problem(h).is_none()
        })
        .unwrap_or_else(|| "smtp-canary.invalid".to_string())
}
