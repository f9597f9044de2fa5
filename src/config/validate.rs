//! From the raw structs to the resolved [`Config`]: defaults, presets, every rule of the
//! contract, and secret loading.
//!
//! Each check records its error and carries on, so one run lists every problem; a
//! mailbox with any error is left out of the result, and the caller returns the errors
//! instead of a config. Errors point at the offending value when there is one, else at
//! the entry that lacks a required key.

use std::net::IpAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use serde_saphyr::{Location, Spanned};

use super::diag::{Diag, unknown_choice};
use super::duration::{format_duration, parse_duration};
use super::keypath::KeyPath;
use super::schema::{
    RawAuditDomain, RawConfig, RawDnsAudit, RawGlobal, RawMailbox, RawOAuth2, S, Scalar,
};
use super::secrets::{self, EnvLookup};
use super::{
    AuditDomain, AuthConfig, Budget, Config, DnsAudit, Global, Grant, Mailbox, Mechanism, OAuth2,
    Provider, Secret, Security, TlsSettings,
};

/// Accepted ranges. An interval under 10s hammers a provider that counts every login; a
/// timeout over 10m hides a hung probe for longer than any alert would wait.
pub(super) const INTERVAL_RANGE: (Duration, Duration) =
    (Duration::from_secs(10), Duration::from_secs(24 * 3600));
pub(super) const TIMEOUT_RANGE: (Duration, Duration) =
    (Duration::from_secs(1), Duration::from_secs(600));
/// DNS records change rarely and resolvers cache them; auditing more often than every
/// minute only loads the resolver, less often than weekly misses real breakage.
pub(super) const AUDIT_INTERVAL_RANGE: (Duration, Duration) =
    (Duration::from_secs(60), Duration::from_secs(7 * 24 * 3600));

pub(super) const DEFAULT_INTERVAL: Duration = Duration::from_secs(300);
pub(super) const DEFAULT_TIMEOUT: Duration = Duration::from_secs(30);
pub(super) const DEFAULT_AUDIT_INTERVAL: Duration = Duration::from_secs(3600);

/// The `provider:` spellings, for "did you mean" and "expected one of".
fn provider_names() -> [&'static str; 6] {
    Provider::ALL.map(Provider::as_str)
}

/// The message the contract prescribes for Exchange Online on port 465 / implicit TLS.
pub(super) const M365_NO_465: &str = "Exchange Online accepts client submission only with STARTTLS on 587; port 465 is not supported";

/// What validation needs besides the raw document.
pub(super) struct Ctx<'a> {
    pub diag: Diag,
    /// The config file's directory: relative `*_file` and `ca_file` paths resolve here, so
    /// the config means the same whatever the daemon's working directory.
    pub dir: PathBuf,
    pub env: EnvLookup<'a>,
    /// Used when `global.helo_name` is absent (a function so tests stay deterministic).
    pub default_helo: &'a dyn Fn() -> String,
    /// False for commands that never authenticate: secrets are left empty, unread.
    pub read_secrets: bool,
}

impl Ctx<'_> {
    fn err(&mut self, loc: &Location, key: &KeyPath, message: impl Into<String>) {
        self.diag.at(loc, key, message);
    }

    fn resolve_path(&self, p: &str) -> PathBuf {
        let p = Path::new(p);
        if p.is_absolute() {
            p.to_path_buf()
        } else {
            self.dir.join(p)
        }
    }
}

/// Resolves the whole config. `root` is where the document starts (for errors about
/// keys that are missing altogether). `None` means errors were recorded in `ctx.diag`.
pub(super) fn resolve(
    raw: RawConfig,
    root: (u64, u64),
    path: &Path,
    ctx: &mut Ctx<'_>,
) -> Option<Config> {
    let global = global(ctx, raw.global.as_ref());
    let mut mailboxes = Vec::new();
    match &raw.mailboxes {
        Some(list) if !list.value.is_empty() => {
            // (name, line) of every mailbox so far, for duplicate detection.
            let mut names: Vec<(String, u64)> = Vec::new();
            for (i, entry) in list.value.iter().enumerate() {
                let key = KeyPath::root("mailboxes").index(i);
                if let Some(n) = &entry.value.name {
                    if let Some((_, line)) = names.iter().find(|(name, _)| *name == n.value) {
                        ctx.err(
                            &n.referenced,
                            &key.key("name"),
                            format!(
                                "duplicate mailbox name `{}` (first used at line {line})",
                                n.value
                            ),
                        );
                    } else {
                        names.push((n.value.clone(), n.referenced.line()));
                    }
                }
                if let Some(mb) = mailbox(ctx, &key, entry, &global) {
                    mailboxes.push(Arc::new(mb));
                }
            }
        }
        Some(list) => ctx.err(
            &list.referenced,
            &KeyPath::root("mailboxes"),
            "no mailboxes configured",
        ),
        None => ctx.diag.at_pos(
            root.0,
            root.1,
            &KeyPath::root("mailboxes"),
            "no mailboxes configured",
        ),
    }
    let dns_audit = dns_audit(ctx, raw.dns_audit.as_ref(), &mailboxes);
    if !ctx.diag.is_empty() {
        return None;
    }
    Some(Config {
        path: path.to_path_buf(),
        global,
        mailboxes,
        dns_audit: dns_audit?,
    })
}

fn global(ctx: &mut Ctx<'_>, raw: Option<&Spanned<RawGlobal>>) -> Global {
    let empty = RawGlobal::default();
    let g = raw.map_or(&empty, |g| &g.value);
    let p = KeyPath::root("global");
    let interval =
        duration(ctx, &g.interval, &p.key("interval"), INTERVAL_RANGE).unwrap_or(DEFAULT_INTERVAL);
    let timeout =
        duration(ctx, &g.timeout, &p.key("timeout"), TIMEOUT_RANGE).unwrap_or(DEFAULT_TIMEOUT);
    if timeout > interval {
        // Blame whichever of the two was written; with neither, the defaults cannot clash.
        if let Some(at) = g.timeout.as_ref().or(g.interval.as_ref()) {
            let key = if g.timeout.is_some() {
                "timeout"
            } else {
                "interval"
            };
            ctx.err(
                &at.referenced,
                &p.key(key),
                timeout_exceeds(timeout, interval),
            );
        }
    }
    let helo_name = match &g.helo_name {
        Some(h) => {
            if let Some(problem) = helo_problem(&h.value) {
                ctx.err(&h.referenced, &p.key("helo_name"), problem);
            }
            h.value.clone()
        }
        None => (ctx.default_helo)(),
    };
    Global {
        interval,
        timeout,
        helo_name,
    }
}

fn timeout_exceeds(timeout: Duration, interval: Duration) -> String {
    format!(
        "timeout {} must not exceed the interval {} (a probe must end before the next one is due)",
        format_duration(timeout),
        format_duration(interval)
    )
}

/// Parses an optional duration and checks its range. `None`: absent or invalid.
fn duration(
    ctx: &mut Ctx<'_>,
    v: &S<String>,
    key: &KeyPath,
    (min, max): (Duration, Duration),
) -> Option<Duration> {
    let v = v.as_ref()?;
    match parse_duration(&v.value) {
        Ok(d) if d < min || d > max => {
            ctx.err(
                &v.referenced,
                key,
                format!(
                    "{} is out of range: must be between {} and {}",
                    v.value.trim(),
                    format_duration(min),
                    format_duration(max)
                ),
            );
            None
        }
        Ok(d) => Some(d),
        Err(e) => {
            ctx.err(&v.referenced, key, e.to_string());
            None
        }
    }
}

/// A count such as a limit: at least 1. Zero is refused rather than read as "no limit",
/// which is what leaving the key out means.
/// The integer of a [`Scalar`] key, or an error that names the type the file had.
fn integer(ctx: &mut Ctx<'_>, v: &Spanned<Scalar>, key: &KeyPath, expected: &str) -> Option<i64> {
    match &v.value {
        Scalar::Int(n) => Some(*n),
        Scalar::Str(s) if s.trim().parse::<i64>().is_ok() => s.trim().parse().ok(),
        other => {
            ctx.err(
                &v.referenced,
                key,
                format!("expected {expected}, found {}", other.kind()),
            );
            None
        }
    }
}

/// The boolean of a [`Scalar`] key: only an unquoted `true` or `false`, never a string
/// such as `'yes'`.
fn boolean(ctx: &mut Ctx<'_>, v: &S<Scalar>, key: &KeyPath) -> bool {
    match v.as_ref() {
        None => false,
        Some(Spanned {
            value: Scalar::Bool(b),
            ..
        }) => *b,
        Some(v) => {
            ctx.err(
                &v.referenced,
                key,
                format!(
                    "expected true or false (unquoted), found {}",
                    v.value.kind()
                ),
            );
            false
        }
    }
}

fn count(ctx: &mut Ctx<'_>, v: &S<Scalar>, key: &KeyPath) -> Option<u32> {
    let v = v.as_ref()?;
    let n = integer(ctx, v, key, "a whole number")?;
    match u32::try_from(n) {
        Ok(0) => {
            ctx.err(
                &v.referenced,
                key,
                "must be at least 1 (leave the key out for no limit)",
            );
            None
        }
        Ok(n) => Some(n),
        Err(_) => {
            ctx.err(
                &v.referenced,
                key,
                format!("{n} is out of range (1 to {})", u32::MAX),
            );
            None
        }
    }
}

fn mailbox(
    ctx: &mut Ctx<'_>,
    p: &KeyPath,
    entry: &Spanned<RawMailbox>,
    global: &Global,
) -> Option<Mailbox> {
    let errors_before = ctx.diag.errors.len();
    let m = &entry.value;
    let at_entry = entry.referenced;

    let name = match &m.name {
        Some(n) if valid_name(&n.value) => n.value.clone(),
        Some(n) if n.value.len() > MAX_NAME_LEN && valid_chars(&n.value) => {
            ctx.err(
                &n.referenced,
                &p.key("name"),
                format!(
                    "the mailbox name is {} characters long; the limit is {MAX_NAME_LEN}, so that every file derived from it in --state.dir stays a valid file name",
                    n.value.len()
                ),
            );
            String::new()
        }
        Some(n) => {
            ctx.err(
                &n.referenced,
                &p.key("name"),
                format!(
                    "`{}` is not a valid mailbox name: use letters, digits, `_`, `.` and `-`",
                    n.value.escape_debug()
                ),
            );
            String::new()
        }
        None => {
            ctx.err(&at_entry, &p.key("name"), "name is required");
            String::new()
        }
    };

    // An unknown provider is reported once; the checks below then run as for `generic`
    // but skip those that would only repeat the same mistake.
    let (provider, provider_known) = match &m.provider {
        None => (Provider::Generic, true),
        Some(v) => match Provider::from_name(&v.value) {
            Some(pr) => (pr, true),
            None => {
                ctx.err(
                    &v.referenced,
                    &p.key("provider"),
                    unknown_choice("provider", &v.value, &provider_names()),
                );
                (Provider::Generic, false)
            }
        },
    };
    let preset = provider.preset();

    // Host and port.
    let (host, port);
    if provider == Provider::Demo {
        for (v, k) in [
            (m.host.as_ref().map(|h| h.referenced), "host"),
            (m.port.as_ref().map(|h| h.referenced), "port"),
        ] {
            if let Some(loc) = v {
                ctx.err(
                    &loc,
                    &p.key(k),
                    format!("provider demo uses its in-process relay on loopback; remove `{k}`"),
                );
            }
        }
        host = preset.host.unwrap_or("127.0.0.1").to_string();
        port = preset.port;
    } else {
        host = match (&m.host, preset.host) {
            (Some(h), _) => {
                if let Some(problem) = host_problem(&h.value) {
                    ctx.err(&h.referenced, &p.key("host"), problem);
                }
                h.value.clone()
            }
            (None, Some(default)) => default.to_string(),
            (None, None) => {
                if provider_known {
                    let example = preset.host_example.unwrap_or("smtp.example.com");
                    let message = match provider {
                        Provider::Ses => format!(
                            "provider ses needs host: the SMTP endpoint of your region, e.g. {example}"
                        ),
                        _ => format!("host is required for provider {provider}, e.g. {example}"),
                    };
                    ctx.err(&at_entry, &p.key("host"), message);
                }
                String::new()
            }
        };
        let port_key = p.key("port");
        port = match &m.port {
            Some(v) => match integer(ctx, v, &port_key, "a port number (1 to 65535)") {
                None => 0,
                Some(0) => {
                    ctx.err(
                        &v.referenced,
                        &port_key,
                        "port 0 is not valid (1 to 65535; usually 587)",
                    );
                    0
                }
                Some(n) => u16::try_from(n).unwrap_or_else(|_| {
                    ctx.err(
                        &v.referenced,
                        &port_key,
                        format!("port {n} is out of range (1 to 65535)"),
                    );
                    0
                }),
            },
            // Implicit TLS lives on 465 by convention; 587 with `security: tls` is a
            // handshake against a plain-text greeting.
            None if security_word(&m.security) == Some(Security::Tls) => 465,
            None => preset.port,
        };
    }

    // Security: explicit, else implied by port 465, else the preset's.
    let security = match &m.security {
        Some(v) => match security_word(&m.security) {
            Some(s) => s,
            None => {
                let message = if v.value.eq_ignore_ascii_case("ssl") {
                    "unknown security `ssl`; did you mean `tls` (implicit TLS, port 465)?"
                        .to_string()
                } else {
                    unknown_choice("security", &v.value, &["starttls", "tls", "none"])
                };
                ctx.err(&v.referenced, &p.key("security"), message);
                preset.security
            }
        },
        None if port == 465 => Security::Tls,
        None => preset.security,
    };

    if provider == Provider::Microsoft365 && (port == 465 || security == Security::Tls) {
        let at = match (&m.port, &m.security) {
            (Some(v), _)
                if matches!(&v.value, Scalar::Int(465))
                    || matches!(&v.value, Scalar::Str(t) if t.trim() == "465") =>
            {
                Some((v.referenced, "port"))
            }
            (_, Some(v)) => Some((v.referenced, "security")),
            (Some(v), None) => Some((v.referenced, "port")),
            (None, None) => None,
        };
        if let Some((loc, k)) = at {
            ctx.err(&loc, &p.key(k), M365_NO_465);
        }
    }

    // Credentials.
    let username = m.username.as_ref().and_then(|u| {
        if u.value.is_empty() || u.value.chars().any(char::is_control) {
            ctx.err(
                &u.referenced,
                &p.key("username"),
                "username must be non-empty and contain no control characters",
            );
            None
        } else {
            Some(u.value.clone())
        }
    });
    if provider == Provider::Sendgrid
        && let Some(u) = &m.username
        && u.value != "apikey"
    {
        ctx.err(
            &u.referenced,
            &p.key("username"),
            "SendGrid expects the username `apikey` (the API key itself is the password)",
        );
    }
    let password = secret(
        ctx,
        p,
        ("password_env", &m.password_env),
        ("password_file", &m.password_file),
    );
    let oauth = m
        .oauth2
        .as_ref()
        .map(|o| (o.referenced, oauth2(ctx, &p.key("oauth2"), o, provider)));

    let has_password = m.password_env.is_some() || m.password_file.is_some();
    if has_password && let Some((loc, _)) = &oauth {
        ctx.err(
            loc,
            &p.key("oauth2"),
            "set either a password (password_env / password_file) or oauth2, not both",
        );
    }
    let needs_username = (has_password || oauth.is_some())
        && provider != Provider::Demo
        && provider != Provider::Sendgrid;
    if needs_username && m.username.is_none() {
        let with = if oauth.is_some() {
            "oauth2 (the mailbox to send as)"
        } else {
            "a password"
        };
        ctx.err(
            &at_entry,
            &p.key("username"),
            format!("username is required with {with}"),
        );
    }
    if let Some(u) = &m.username
        && !has_password
        && oauth.is_none()
        && provider != Provider::Demo
    {
        ctx.err(
            &u.referenced,
            &p.key("username"),
            "username is set but there is no password_env, password_file or oauth2 to authenticate with",
        );
    }

    let from = match &m.from {
        Some(v) => match address_problem(&v.value) {
            None => lowercase_domain(&v.value),
            Some(problem) => {
                ctx.err(&v.referenced, &p.key("from"), problem);
                String::new()
            }
        },
        None => {
            ctx.err(
                &at_entry,
                &p.key("from"),
                "from is required (the canary's sender address)",
            );
            String::new()
        }
    };
    let mut to = Vec::new();
    match &m.to {
        None => ctx.err(
            &at_entry,
            &p.key("to"),
            "to is required (at least one recipient)",
        ),
        Some(list) if list.value.is_empty() => ctx.err(
            &list.referenced,
            &p.key("to"),
            "to must list at least one recipient",
        ),
        Some(list) => {
            for (j, v) in list.value.iter().enumerate() {
                match address_problem(&v.value) {
                    None => to.push(v.value.clone()),
                    Some(problem) => ctx.err(&v.referenced, &p.key("to").index(j), problem),
                }
            }
        }
    }

    let auth = match (password, oauth) {
        (Some(Some(password)), None) => AuthConfig::Password {
            username: username
                .clone()
                .unwrap_or_else(|| default_username(provider, &from)),
            password,
        },
        (_, Some((_, Some(oauth)))) => AuthConfig::OAuth2 {
            username: username.clone().unwrap_or_else(|| from.clone()),
            oauth,
        },
        // The demo relay accepts whatever the daemon generates at start; an empty
        // password here is the placeholder it fills in.
        (Some(None), None) if provider == Provider::Demo => AuthConfig::Password {
            username: username.clone().unwrap_or_else(|| from.clone()),
            password: Secret::new(""),
        },
        _ => AuthConfig::None,
    };

    let auth_mechanism = m.auth_mechanism.as_ref().and_then(|v| {
        let key = p.key("auth_mechanism");
        let mech = match v.value.to_ascii_lowercase().as_str() {
            "plain" => Mechanism::Plain,
            "login" => Mechanism::Login,
            "xoauth2" => Mechanism::Xoauth2,
            _ => {
                ctx.err(
                    &v.referenced,
                    &key,
                    unknown_choice("auth_mechanism", &v.value, &["plain", "login", "xoauth2"]),
                );
                return None;
            }
        };
        let fits = match (&auth, mech) {
            (AuthConfig::OAuth2 { .. }, Mechanism::Xoauth2) => true,
            (AuthConfig::Password { .. }, Mechanism::Plain | Mechanism::Login) => true,
            // The credentials are broken and already reported; do not pile on.
            _ if ctx.diag.errors.len() > errors_before => true,
            _ => false,
        };
        if !fits {
            let message = match mech {
                Mechanism::Xoauth2 => "auth_mechanism xoauth2 needs oauth2:",
                _ => {
                    "auth_mechanism plain and login need a password (password_env or password_file)"
                }
            };
            ctx.err(&v.referenced, &key, message);
        }
        Some(mech)
    });

    // Timing.
    let interval =
        duration(ctx, &m.interval, &p.key("interval"), INTERVAL_RANGE).unwrap_or(global.interval);
    let timeout =
        duration(ctx, &m.timeout, &p.key("timeout"), TIMEOUT_RANGE).unwrap_or(global.timeout);
    if timeout > interval {
        // A clash of two global values is reported once, at `global`.
        if let Some((v, k)) = m
            .timeout
            .as_ref()
            .map(|v| (v, "timeout"))
            .or(m.interval.as_ref().map(|v| (v, "interval")))
        {
            ctx.err(&v.referenced, &p.key(k), timeout_exceeds(timeout, interval));
        }
    }

    // TLS.
    let mut tls = TlsSettings::default();
    if let Some(t) = &m.tls {
        if let Some(ca) = &t.value.ca_file {
            let path = ctx.resolve_path(&ca.value);
            if let Some(problem) = ca_file_problem(&path) {
                ctx.err(&ca.referenced, &p.key("tls").key("ca_file"), problem);
            }
            tls.ca_file = Some(path);
        }
        if let Some(sn) = &t.value.server_name {
            if let Some(problem) = host_problem(&sn.value) {
                ctx.err(&sn.referenced, &p.key("tls").key("server_name"), problem);
            }
            tls.server_name = Some(sn.value.clone());
        }
    }

    let allow_insecure_auth = boolean(ctx, &m.allow_insecure_auth, &p.key("allow_insecure_auth"));
    if security == Security::None && auth != AuthConfig::None && !allow_insecure_auth {
        let loc = m.security.as_ref().map_or(at_entry, |v| v.referenced);
        ctx.err(
            &loc,
            &p.key("security"),
            "security: none would send the credentials in clear text; use starttls or tls, or set allow_insecure_auth: true",
        );
    }

    let source_address = m
        .source_address
        .as_ref()
        .and_then(|v| match v.value.parse::<IpAddr>() {
            Ok(ip) => Some(ip),
            Err(_) => {
                ctx.err(
                    &v.referenced,
                    &p.key("source_address"),
                    format!("`{}` is not an IP address", v.value.escape_debug()),
                );
                None
            }
        });

    // Limits: the preset's, each field overridden by an explicit key.
    let mut limits = preset.limits;
    if let Some(l) = &m.limits {
        let l = &l.value;
        let key = p.key("limits");
        for (slot, v, k) in [
            (
                &mut limits.messages_per_minute,
                &l.messages_per_minute,
                "messages_per_minute",
            ),
            (
                &mut limits.messages_per_day,
                &l.messages_per_day,
                "messages_per_day",
            ),
            (
                &mut limits.recipients_per_day,
                &l.recipients_per_day,
                "recipients_per_day",
            ),
            (
                &mut limits.concurrent_connections,
                &l.concurrent_connections,
                "concurrent_connections",
            ),
        ] {
            if v.is_some() {
                *slot = count(ctx, v, &key.key(k));
            }
        }
    }
    let budget = Budget {
        messages_per_day: m.budget.as_ref().and_then(|b| {
            count(
                ctx,
                &b.value.messages_per_day,
                &p.key("budget").key("messages_per_day"),
            )
        }),
    };

    if ctx.diag.errors.len() > errors_before {
        return None;
    }
    let mailbox = Mailbox {
        name,
        provider,
        host,
        port,
        security,
        auth,
        auth_mechanism,
        from,
        to,
        interval,
        timeout,
        tls,
        allow_insecure_auth,
        source_address,
        limits,
        budget,
        line: at_entry.line(),
    };
    // The canary must never be what burns a mailbox's quota: point at the key that sets
    // the rate (the budget if given, else the interval, else the mailbox entry).
    if let Err(msg) = super::budget::check_share(&mailbox) {
        let (loc, key) = match (m.budget.as_ref(), m.interval.as_ref()) {
            (Some(b), _) => (b.referenced, p.key("budget").key("messages_per_day")),
            (None, Some(i)) => (i.referenced, p.key("interval")),
            (None, None) => (at_entry, p.key("interval")),
        };
        ctx.err(&loc, &key, msg);
        return None;
    }
    Some(mailbox)
}

fn security_word(v: &S<String>) -> Option<Security> {
    match v.as_ref()?.value.to_ascii_lowercase().as_str() {
        "starttls" => Some(Security::Starttls),
        "tls" => Some(Security::Tls),
        "none" => Some(Security::None),
        _ => None,
    }
}

/// With a password but no username: SendGrid's fixed `apikey`, else the sender.
fn default_username(provider: Provider, from: &str) -> String {
    if provider == Provider::Sendgrid {
        "apikey".to_string()
    } else {
        from.to_string()
    }
}

/// Loads a secret given as `*_env` or `*_file`. `None`: an error was recorded;
/// `Some(None)`: neither key is set.
fn secret(
    ctx: &mut Ctx<'_>,
    p: &KeyPath,
    (env_name, env): (&str, &S<String>),
    (file_name, file): (&str, &S<String>),
) -> Option<Option<Secret>> {
    match (env, file) {
        (None, None) => Some(None),
        (Some(_), None) | (None, Some(_)) if !ctx.read_secrets => Some(Some(Secret::new(""))),
        (Some(_), Some(f)) => {
            ctx.err(
                &f.referenced,
                &p.key(file_name),
                format!("set only one of {env_name} and {file_name}"),
            );
            None
        }
        (Some(e), None) => match secrets::from_env(&e.value, ctx.env) {
            Ok(s) => Some(Some(s)),
            Err(err) => {
                ctx.err(&e.referenced, &p.key(env_name), err.to_string());
                None
            }
        },
        (None, Some(f)) => match secrets::from_file(&ctx.resolve_path(&f.value)) {
            Ok(s) => Some(Some(s)),
            Err(err) => {
                ctx.err(&f.referenced, &p.key(file_name), err.to_string());
                None
            }
        },
    }
}

fn oauth2(
    ctx: &mut Ctx<'_>,
    p: &KeyPath,
    o: &Spanned<RawOAuth2>,
    provider: Provider,
) -> Option<OAuth2> {
    let errors_before = ctx.diag.errors.len();
    let r = &o.value;
    let at = o.referenced;
    let preset = provider.preset();
    let has_refresh = r.refresh_token_env.is_some() || r.refresh_token_file.is_some();

    // Without `grant:` the keys present decide: a refresh token means the delegated flow.
    let grant = match &r.grant {
        Some(g) => match g.value.as_str() {
            "client_credentials" => Grant::ClientCredentials,
            "refresh_token" => Grant::RefreshToken,
            other => {
                ctx.err(
                    &g.referenced,
                    &p.key("grant"),
                    unknown_choice("grant", other, &["client_credentials", "refresh_token"]),
                );
                if has_refresh {
                    Grant::RefreshToken
                } else {
                    Grant::ClientCredentials
                }
            }
        },
        None if has_refresh => Grant::RefreshToken,
        None => Grant::ClientCredentials,
    };

    let client_id = match &r.client_id {
        Some(c) if !c.value.trim().is_empty() => c.value.clone(),
        Some(c) => {
            ctx.err(
                &c.referenced,
                &p.key("client_id"),
                "client_id must not be empty",
            );
            String::new()
        }
        None => {
            ctx.err(
                &at,
                &p.key("client_id"),
                "client_id is required (the application's client ID)",
            );
            String::new()
        }
    };

    if let Some(t) = &r.tenant {
        if provider != Provider::Microsoft365 {
            ctx.err(
                &t.referenced,
                &p.key("tenant"),
                format!(
                    "tenant applies only to provider microsoft365; for {provider} set token_url"
                ),
            );
        } else if t.value.is_empty()
            || !t
                .value
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || c == '.' || c == '-')
        {
            // It goes into a URL path; anything else would change the URL.
            ctx.err(
                &t.referenced,
                &p.key("tenant"),
                "tenant must be a domain (contoso.onmicrosoft.com) or a tenant ID (a GUID)",
            );
        }
    }

    let token_url = match (&r.token_url, preset.oauth_token_url) {
        (Some(u), _) => {
            if let Some(problem) = url_problem(&u.value) {
                ctx.err(&u.referenced, &p.key("token_url"), problem);
            }
            u.value.clone()
        }
        (None, Some(template)) if template.contains("{tenant}") => match &r.tenant {
            Some(t) => template.replace("{tenant}", &t.value),
            None => {
                ctx.err(
                    &at,
                    &p.key("tenant"),
                    format!("provider {provider} needs tenant: (e.g. contoso.onmicrosoft.com) or token_url: to find the token endpoint"),
                );
                String::new()
            }
        },
        (None, Some(url)) => {
            if provider == Provider::Google && grant == Grant::ClientCredentials {
                let loc = r.grant.as_ref().map_or(at, |g| g.referenced);
                ctx.err(
                    &loc,
                    &p.key("grant"),
                    "Google's token endpoint has no client_credentials grant for SMTP; use grant: refresh_token",
                );
            }
            url.to_string()
        }
        (None, None) => {
            ctx.err(
                &at,
                &p.key("token_url"),
                format!("token_url is required: provider {provider} has no default token endpoint"),
            );
            String::new()
        }
    };

    let scope = match &r.scope {
        Some(s) if s.value.trim().is_empty() => {
            ctx.err(
                &s.referenced,
                &p.key("scope"),
                "scope must not be empty (leave the key out for the default)",
            );
            None
        }
        Some(s) => Some(s.value.clone()),
        None => match grant {
            Grant::ClientCredentials => preset.oauth_scope_app,
            Grant::RefreshToken => preset.oauth_scope_delegated,
        }
        .map(str::to_string),
    };

    let client_secret = secret(
        ctx,
        p,
        ("client_secret_env", &r.client_secret_env),
        ("client_secret_file", &r.client_secret_file),
    );
    let client_secret = match (client_secret, grant) {
        (Some(Some(s)), _) => Some(s),
        (Some(None), Grant::ClientCredentials) => {
            ctx.err(
                &at,
                &p.key("client_secret_env"),
                "grant client_credentials needs client_secret_env or client_secret_file",
            );
            None
        }
        // A public client (device code, authorization code with PKCE) has no secret; the
        // empty value tells the token client to leave `client_secret` out.
        (Some(None), Grant::RefreshToken) => Some(Secret::new("")),
        (None, _) => None,
    };

    let refresh_token = match grant {
        Grant::RefreshToken => {
            match secret(
                ctx,
                p,
                ("refresh_token_env", &r.refresh_token_env),
                ("refresh_token_file", &r.refresh_token_file),
            ) {
                Some(Some(s)) => Some(s),
                Some(None) => {
                    ctx.err(
                        &at,
                        &p.key("refresh_token_env"),
                        "grant refresh_token needs refresh_token_env or refresh_token_file",
                    );
                    None
                }
                None => None,
            }
        }
        Grant::ClientCredentials => {
            if let Some((v, k)) = r
                .refresh_token_env
                .as_ref()
                .map(|v| (v, "refresh_token_env"))
                .or(r
                    .refresh_token_file
                    .as_ref()
                    .map(|v| (v, "refresh_token_file")))
            {
                ctx.err(
                    &v.referenced,
                    &p.key(k),
                    format!("{k} applies only to grant: refresh_token"),
                );
            }
            None
        }
    };

    if ctx.diag.errors.len() > errors_before {
        return None;
    }
    Some(OAuth2 {
        grant,
        token_url,
        scope,
        client_id,
        client_secret: client_secret?,
        refresh_token,
    })
}

fn dns_audit(
    ctx: &mut Ctx<'_>,
    raw: Option<&Spanned<RawDnsAudit>>,
    mailboxes: &[Arc<Mailbox>],
) -> Option<DnsAudit> {
    let errors_before = ctx.diag.errors.len();
    let empty = RawDnsAudit::default();
    let a = raw.map_or(&empty, |a| &a.value);
    let p = KeyPath::root("dns_audit");
    let interval = duration(ctx, &a.interval, &p.key("interval"), AUDIT_INTERVAL_RANGE)
        .unwrap_or(DEFAULT_AUDIT_INTERVAL);
    let domains_key = p.key("domains");
    let mut domains: Vec<AuditDomain> = Vec::new();
    let mut seen: Vec<(String, u64)> = Vec::new();
    for (i, entry) in a.domains.iter().flat_map(|d| d.value.iter()).enumerate() {
        if let Some(d) = audit_domain(ctx, &domains_key.index(i), entry, mailboxes) {
            let line = entry.referenced.line();
            if let Some((_, first)) = seen.iter().find(|(name, _)| *name == d.domain) {
                let loc = entry
                    .value
                    .domain
                    .as_ref()
                    .map_or(entry.referenced, |v| v.referenced);
                ctx.err(
                    &loc,
                    &domains_key.index(i).key("domain"),
                    format!("duplicate domain `{}` (first at line {first})", d.domain),
                );
            } else {
                seen.push((d.domain.clone(), line));
                domains.push(d);
            }
        }
    }
    if ctx.diag.errors.len() > errors_before {
        return None;
    }
    let from_mailboxes = domains.is_empty();
    Some(DnsAudit {
        interval,
        domains,
        from_mailboxes,
    })
}

fn audit_domain(
    ctx: &mut Ctx<'_>,
    p: &KeyPath,
    entry: &Spanned<RawAuditDomain>,
    mailboxes: &[Arc<Mailbox>],
) -> Option<AuditDomain> {
    let errors_before = ctx.diag.errors.len();
    let r = &entry.value;
    let domain = match &r.domain {
        Some(d) => {
            if let Some(problem) = host_problem(&d.value) {
                ctx.err(&d.referenced, &p.key("domain"), problem);
            }
            d.value.trim_end_matches('.').to_ascii_lowercase()
        }
        None => {
            ctx.err(&entry.referenced, &p.key("domain"), "domain is required");
            String::new()
        }
    };
    // Without `provider:` the domain's own mailboxes say which provider sends for it.
    let provider = match &r.provider {
        Some(v) => Provider::from_name(&v.value).unwrap_or_else(|| {
            ctx.err(
                &v.referenced,
                &p.key("provider"),
                unknown_choice("provider", &v.value, &provider_names()),
            );
            Provider::Generic
        }),
        None => mailboxes
            .iter()
            .find(|m| m.from_domain() == domain)
            .map_or(Provider::Generic, |m| m.provider),
    };
    let dkim_selectors = match &r.dkim_selectors {
        Some(list) => {
            for (j, s) in list.value.iter().enumerate() {
                let ok = !s.value.is_empty()
                    && s.value.split('.').all(|l| {
                        !l.is_empty()
                            && l.chars()
                                .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_')
                    });
                if !ok {
                    ctx.err(
                        &s.referenced,
                        &p.key("dkim_selectors").index(j),
                        format!("`{}` is not a valid DKIM selector", s.value.escape_debug()),
                    );
                }
            }
            list.value.iter().map(|s| s.value.clone()).collect()
        }
        None => provider
            .preset()
            .dkim_selectors
            .iter()
            .map(|s| s.to_string())
            .collect(),
    };
    if ctx.diag.errors.len() > errors_before {
        return None;
    }
    Some(AuditDomain {
        domain,
        provider,
        dkim_selectors,
    })
}

/// The longest mailbox (or sink) name. Names become file names in `--state.dir`
/// (`mailbox-NAME.json`, its temporary `.mailbox-NAME.json.PID.RANDOM.tmp` and
/// `mailbox-NAME.json.corrupt-UNIXTIME`, `oauth/NAME.refresh-token.json`): the longest
/// adds about 40 bytes, and file systems allow 255. 128 leaves room, and is plenty for
/// a label value.
pub const MAX_NAME_LEN: usize = 128;

/// `[A-Za-z0-9_.-]{1,MAX_NAME_LEN}`: the name becomes a label value, a CLI argument and
/// part of file names.
pub(super) fn valid_name(s: &str) -> bool {
    !s.is_empty() && s.len() <= MAX_NAME_LEN && valid_chars(s)
}

fn valid_chars(s: &str) -> bool {
    s.chars()
        .all(|c| c.is_ascii_alphanumeric() || matches!(c, '_' | '.' | '-'))
}

/// Why `s` is not a host name or IP address, if it is not.
pub(super) fn host_problem(s: &str) -> Option<String> {
    if s.parse::<IpAddr>().is_ok() {
        return None;
    }
    let shown = s.escape_debug();
    if s.is_empty() {
        return Some("must not be empty".to_string());
    }
    let name = s.strip_suffix('.').unwrap_or(s);
    let label_ok = |l: &str| {
        (1..=63).contains(&l.len())
            && l.chars()
                .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_')
            && !l.starts_with('-')
            && !l.ends_with('-')
    };
    if name.len() > 253 || !name.split('.').all(label_ok) {
        return Some(format!("`{shown}` is not a valid host name"));
    }
    None
}

/// A host name or an address literal (`[192.0.2.1]`, `[IPv6:2001:db8::1]`), and nothing
/// that could break the EHLO line.
fn helo_problem(s: &str) -> Option<String> {
    if let Some(inner) = s.strip_prefix('[').and_then(|r| r.strip_suffix(']')) {
        let ip = inner.strip_prefix("IPv6:").unwrap_or(inner);
        return match ip.parse::<IpAddr>() {
            Ok(_) => None,
            Err(_) => Some(format!(
                "`{}` is not a valid address literal",
                s.escape_debug()
            )),
        };
    }
    host_problem(s)
}

/// Why `s` is not a plain address (`local@domain`), if it is not. Deliberately loose on
/// the local part (providers accept more than they should), strict on what would break
/// an SMTP command line.
pub(super) fn address_problem(s: &str) -> Option<String> {
    let shown = s.escape_debug();
    if s.chars()
        .any(|c| c.is_whitespace() || c.is_control() || matches!(c, '<' | '>' | ',' | ';'))
    {
        return Some(format!(
            "`{shown}` is not a plain email address (no spaces, display names or <>)"
        ));
    }
    let mut parts = s.split('@');
    let (Some(local), Some(domain), None) = (parts.next(), parts.next(), parts.next()) else {
        return Some(format!(
            "`{shown}` is not an email address: it needs exactly one @"
        ));
    };
    if local.is_empty() || domain.is_empty() {
        return Some(format!(
            "`{shown}` is not an email address: it needs text before and after the @"
        ));
    }
    if host_problem(domain).is_some() {
        return Some(format!("`{shown}` has an invalid domain"));
    }
    // The canary message is built with lettre: an address it cannot parse would pass
    // here and then leave the mailbox unprobed at run time.
    s.parse::<lettre::Address>()
        .err()
        .map(|e| format!("`{shown}` is not an email address: {e}"))
}

/// The address with its domain lower-cased (domains are case-insensitive; the DNS audit
/// and `Mailbox::from_domain` compare them).
fn lowercase_domain(s: &str) -> String {
    match s.split_once('@') {
        Some((local, domain)) => format!("{local}@{}", domain.to_ascii_lowercase()),
        None => s.to_string(),
    }
}

/// Why `s` is not an acceptable token endpoint: HTTPS, or plain HTTP on loopback only
/// (a test server), since the request carries the client secret.
fn url_problem(s: &str) -> Option<String> {
    // Parsed the way the HTTP client will read it, so `http://[::1]@evil.example/` cannot
    // pass as loopback and send the client secret off the host in clear text.
    let Ok(url) = reqwest::Url::parse(s) else {
        return Some("token_url is not a URL".to_string());
    };
    if !url.username().is_empty() || url.password().is_some() {
        return Some("token_url must not contain user info (user@ or user:password@)".to_string());
    }
    let Some(host) = url.host_str().filter(|h| !h.is_empty()) else {
        return Some("token_url has no host".to_string());
    };
    let host = host.trim_start_matches('[').trim_end_matches(']');
    let loopback = host.eq_ignore_ascii_case("localhost")
        || host
            .parse::<std::net::IpAddr>()
            .is_ok_and(|ip| ip.is_loopback());
    match url.scheme() {
        "https" => None,
        "http" if loopback => None,
        "http" => Some(
            "token_url must use https:// (plain http is accepted only on loopback)".to_string(),
        ),
        _ => Some("token_url must be an https:// URL".to_string()),
    }
}

/// Why the CA file cannot be used, if it cannot. Checked now so a typo fails at load,
/// not at the first probe hours later.
fn ca_file_problem(path: &Path) -> Option<String> {
    let shown = path.display();
    match crate::fsutil::read(path, crate::fsutil::PEM) {
        Err(e) => Some(format!("cannot read ca_file {shown}: {e}")),
        Ok(bytes)
            if !bytes
                .windows(27)
                .any(|w| w == b"-----BEGIN CERTIFICATE-----") =>
        {
            Some(format!(
                "ca_file {shown} contains no PEM certificate (-----BEGIN CERTIFICATE-----)"
            ))
        }
        Ok(_) => None,
    }
}

#[cfg(test)]
mod url_and_address_tests {
    use super::{address_problem, url_problem};

    #[test]
    fn token_url_loopback_is_judged_on_the_parsed_host() {
        assert_eq!(url_problem("https://login.example/token"), None);
        assert_eq!(url_problem("http://127.0.0.1:8080/token"), None);
        assert_eq!(url_problem("http://[::1]:8080/token"), None);
        assert_eq!(url_problem("http://localhost/token"), None);
        assert!(url_problem("http://[::1]@evil.example.com/token").is_some());
        assert!(url_problem("http://127.0.0.1.evil.example/token").is_some());
        assert!(url_problem("https://user:pw@login.example/token").is_some());
        assert!(url_problem("ftp://login.example/token").is_some());
        assert!(url_problem("not a url").is_some());
    }

    #[test]
    fn addresses_lettre_cannot_use_are_refused() {
        assert_eq!(address_problem("a@example.com"), None);
        for bad in ["a..b@example.com", "a(b@example.com", "\"x@example.com"] {
            assert!(address_problem(bad).is_some(), "{bad}");
        }
    }
}
