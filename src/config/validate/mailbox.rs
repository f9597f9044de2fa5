//! One `mailboxes:` entry, checked by parts: identity, endpoint, username, provider
//! rules, credentials, addresses, schedule, TLS, and limits with the canary's budget.
//!
//! [`mailbox`] composes the parts in the order their errors have always been recorded:
//! two errors at the same line and column keep that order in the output, so moving a
//! part changes what users see. Provider-specific refusals are not here but in the
//! table of `rules.rs`; what a provider fills in is its preset.

use std::net::IpAddr;

use serde_saphyr::Spanned;

use super::values::{
    MAX_NAME_LEN, address_problem, boolean, ca_file_problem, count, duration, host_problem,
    integer, lowercase_domain, secret, valid_chars, valid_name,
};
use super::{Ctx, INTERVAL_RANGE, TIMEOUT_RANGE, oauth2, provider_names, timeout_exceeds};
use crate::config::budget::check_share;
use crate::config::diag::unknown_choice;
use crate::config::keypath::KeyPath;
use crate::config::presets::Preset;
use crate::config::rules::{self, Subject};
use crate::config::schema::{RawMailbox, RawTls, S};
use crate::config::{
    AuthConfig, Budget, Global, Limits, Mailbox, Mechanism, OAuth2, Provider, Secret, Security,
    TlsSettings,
};

/// The mailbox at `p`, or `None` if it has any error (all of them recorded).
pub(super) fn mailbox(
    ctx: &mut Ctx<'_>,
    p: &KeyPath,
    entry: &Spanned<RawMailbox>,
    global: &Global,
) -> Option<Mailbox> {
    let errors_before = ctx.diag.errors.len();
    let m = &entry.value;
    let name = name(ctx, p, entry);
    let (provider, provider_known) = provider(ctx, p, m);
    let preset = provider.preset();
    let endpoint = endpoint(ctx, p, m, preset);
    let username = username(ctx, p, m);
    // An unknown provider is already reported; its rules (as `generic`) would only
    // repeat the same mistake.
    if provider_known {
        let subject = Subject::Mailbox {
            entry,
            port: endpoint.port,
            security: endpoint.security,
        };
        ctx.record(rules::check(provider, p, &subject));
    }
    let credentials = credentials(ctx, p, entry, provider);
    let from = from(ctx, p, entry);
    let to = to(ctx, p, entry);
    let auth = credentials.into_auth(username, &from, preset);
    let earlier_errors = ctx.diag.errors.len() > errors_before;
    let auth_mechanism = auth_mechanism(ctx, p, m, &auth, earlier_errors);
    let (interval, timeout) = schedule(ctx, p, m, global);
    let tls = tls(ctx, p, &m.tls);
    let allow_insecure_auth = insecure_auth(ctx, p, entry, endpoint.security, &auth);
    let source_address = source_address(ctx, p, m);
    let limits = limits(ctx, p, m, preset);
    let budget = budget(ctx, p, m);
    if ctx.diag.errors.len() > errors_before {
        return None;
    }
    let mailbox = Mailbox {
        name,
        provider,
        host: endpoint.host,
        port: endpoint.port,
        security: endpoint.security,
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
        line: entry.referenced.line(),
    };
    within_share(ctx, p, entry, &mailbox).then_some(mailbox)
}

fn name(ctx: &mut Ctx<'_>, p: &KeyPath, entry: &Spanned<RawMailbox>) -> String {
    let key = p.key("name");
    let Some(n) = &entry.value.name else {
        ctx.err(&entry.referenced, &key, "name is required");
        return String::new();
    };
    if valid_name(&n.value) {
        return n.value.clone();
    }
    let message = if n.value.len() > MAX_NAME_LEN && valid_chars(&n.value) {
        format!(
            "the mailbox name is {} characters long; the limit is {MAX_NAME_LEN}, so that every file derived from it in --state.dir stays a valid file name",
            n.value.len()
        )
    } else {
        format!(
            "`{}` is not a valid mailbox name: use letters, digits, `_`, `.` and `-`",
            n.value.escape_debug()
        )
    };
    ctx.err(&n.referenced, &key, message);
    String::new()
}

/// The provider, and whether it was known. An unknown one is reported once and the
/// mailbox is then checked as `generic`.
fn provider(ctx: &mut Ctx<'_>, p: &KeyPath, m: &RawMailbox) -> (Provider, bool) {
    let Some(v) = &m.provider else {
        return (Provider::Generic, true);
    };
    match Provider::from_name(&v.value) {
        Some(pr) => (pr, true),
        None => {
            ctx.err(
                &v.referenced,
                &p.key("provider"),
                unknown_choice("provider", &v.value, &provider_names()),
            );
            (Provider::Generic, false)
        }
    }
}

/// Where and how to connect.
struct Endpoint {
    host: String,
    port: u16,
    security: Security,
}

fn endpoint(ctx: &mut Ctx<'_>, p: &KeyPath, m: &RawMailbox, preset: &Preset) -> Endpoint {
    let (host, port) = if preset.in_process {
        // Written ones are refused by the provider rules; the relay's are filled in at
        // start.
        (preset.host.unwrap_or("127.0.0.1").to_string(), preset.port)
    } else {
        (host(ctx, p, m, preset), port(ctx, p, m, preset))
    };
    let security = security(ctx, p, m, port, preset);
    Endpoint {
        host,
        port,
        security,
    }
}

/// `host:`, else the preset's. Empty when both lack one: a provider rule asks for it.
fn host(ctx: &mut Ctx<'_>, p: &KeyPath, m: &RawMailbox, preset: &Preset) -> String {
    match (&m.host, preset.host) {
        (Some(h), _) => {
            if let Some(problem) = host_problem(&h.value) {
                ctx.err(&h.referenced, &p.key("host"), problem);
            }
            h.value.clone()
        }
        (None, Some(default)) => default.to_string(),
        (None, None) => String::new(),
    }
}

/// `port:`, else 465 for `security: tls`, else the preset's. `0` after an error.
fn port(ctx: &mut Ctx<'_>, p: &KeyPath, m: &RawMailbox, preset: &Preset) -> u16 {
    let key = p.key("port");
    let Some(v) = &m.port else {
        // Implicit TLS lives on 465 by convention; 587 with `security: tls` is a
        // handshake against a plain-text greeting.
        return if security_word(&m.security) == Some(Security::Tls) {
            465
        } else {
            preset.port
        };
    };
    match integer(ctx, v, &key, "a port number (1 to 65535)") {
        None => 0,
        Some(0) => {
            ctx.err(
                &v.referenced,
                &key,
                "port 0 is not valid (1 to 65535; usually 587)",
            );
            0
        }
        Some(n) => u16::try_from(n).unwrap_or_else(|_| {
            ctx.err(
                &v.referenced,
                &key,
                format!("port {n} is out of range (1 to 65535)"),
            );
            0
        }),
    }
}

/// `security:`, else implied by port 465, else the preset's.
fn security(
    ctx: &mut Ctx<'_>,
    p: &KeyPath,
    m: &RawMailbox,
    port: u16,
    preset: &Preset,
) -> Security {
    let Some(v) = &m.security else {
        return if port == 465 {
            Security::Tls
        } else {
            preset.security
        };
    };
    if let Some(s) = security_word(&m.security) {
        return s;
    }
    let message = if v.value.eq_ignore_ascii_case("ssl") {
        "unknown security `ssl`; did you mean `tls` (implicit TLS, port 465)?".to_string()
    } else {
        unknown_choice("security", &v.value, &["starttls", "tls", "none"])
    };
    ctx.err(&v.referenced, &p.key("security"), message);
    preset.security
}

fn security_word(v: &S<String>) -> Option<Security> {
    v.as_ref()?.value.parse().ok()
}

/// `username:` if it can go on an AUTH line; `None` if absent or refused.
fn username(ctx: &mut Ctx<'_>, p: &KeyPath, m: &RawMailbox) -> Option<String> {
    let u = m.username.as_ref()?;
    if u.value.is_empty() || u.value.chars().any(char::is_control) {
        ctx.err(
            &u.referenced,
            &p.key("username"),
            "username must be non-empty and contain no control characters",
        );
        return None;
    }
    Some(u.value.clone())
}

/// The credentials as loaded. `None` where loading failed (the error is recorded).
struct Credentials {
    /// `Some(None)`: no password key written.
    password: Option<Option<Secret>>,
    /// `None`: no `oauth2:` written.
    oauth: Option<Option<OAuth2>>,
}

/// Loads the password or the OAuth 2.0 settings, and checks that exactly one way to
/// authenticate is given, with the username it needs.
fn credentials(
    ctx: &mut Ctx<'_>,
    p: &KeyPath,
    entry: &Spanned<RawMailbox>,
    provider: Provider,
) -> Credentials {
    let m = &entry.value;
    let preset = provider.preset();
    let password = secret(
        ctx,
        p,
        ("password_env", &m.password_env),
        ("password_file", &m.password_file),
    );
    let oauth = m
        .oauth2
        .as_ref()
        .map(|o| oauth2::oauth2(ctx, &p.key("oauth2"), o, provider));

    let has_password = m.password_env.is_some() || m.password_file.is_some();
    if has_password && let Some(o) = &m.oauth2 {
        ctx.err(
            &o.referenced,
            &p.key("oauth2"),
            "set either a password (password_env / password_file) or oauth2, not both",
        );
    }
    // The relay's credentials and a fixed username need no `username:`.
    let needs_username =
        (has_password || oauth.is_some()) && !preset.in_process && preset.username.is_none();
    if needs_username && m.username.is_none() {
        let with = if oauth.is_some() {
            "oauth2 (the mailbox to send as)"
        } else {
            "a password"
        };
        ctx.err(
            &entry.referenced,
            &p.key("username"),
            format!("username is required with {with}"),
        );
    }
    if let Some(u) = &m.username
        && !has_password
        && oauth.is_none()
        && !preset.in_process
    {
        ctx.err(
            &u.referenced,
            &p.key("username"),
            "username is set but there is no password_env, password_file or oauth2 to authenticate with",
        );
    }
    Credentials { password, oauth }
}

impl Credentials {
    /// The way to authenticate. Without `username:` it is the preset's fixed one (for a
    /// password), else the sender.
    fn into_auth(self, username: Option<String>, from: &str, preset: &Preset) -> AuthConfig {
        match (self.password, self.oauth) {
            (Some(Some(password)), None) => AuthConfig::Password {
                username: username.unwrap_or_else(|| preset.username.unwrap_or(from).to_string()),
                password,
            },
            (_, Some(Some(oauth))) => AuthConfig::OAuth2 {
                username: username.unwrap_or_else(|| from.to_string()),
                oauth,
            },
            // The demo relay accepts whatever the daemon generates at start; an empty
            // password here is the placeholder it fills in.
            (Some(None), None) if preset.in_process => AuthConfig::Password {
                username: username.unwrap_or_else(|| from.to_string()),
                password: Secret::new(""),
            },
            _ => AuthConfig::None,
        }
    }
}

/// `from:`, its domain lower-cased; empty after an error.
fn from(ctx: &mut Ctx<'_>, p: &KeyPath, entry: &Spanned<RawMailbox>) -> String {
    let Some(v) = &entry.value.from else {
        ctx.err(
            &entry.referenced,
            &p.key("from"),
            "from is required (the canary's sender address)",
        );
        return String::new();
    };
    match address_problem(&v.value) {
        None => lowercase_domain(&v.value),
        Some(problem) => {
            ctx.err(&v.referenced, &p.key("from"), problem);
            String::new()
        }
    }
}

/// The valid addresses of `to:` (each invalid one is reported).
fn to(ctx: &mut Ctx<'_>, p: &KeyPath, entry: &Spanned<RawMailbox>) -> Vec<String> {
    let key = p.key("to");
    let list = match &entry.value.to {
        None => {
            ctx.err(
                &entry.referenced,
                &key,
                "to is required (at least one recipient)",
            );
            return Vec::new();
        }
        Some(list) if list.value.is_empty() => {
            ctx.err(
                &list.referenced,
                &key,
                "to must list at least one recipient",
            );
            return Vec::new();
        }
        Some(list) => list,
    };
    let mut to = Vec::new();
    for (j, v) in list.value.iter().enumerate() {
        match address_problem(&v.value) {
            None => to.push(v.value.clone()),
            Some(problem) => ctx.err(&v.referenced, &key.index(j), problem),
        }
    }
    to
}

/// `auth_mechanism:`, which must suit the credentials. A mismatch is not reported when
/// the mailbox already has errors: the credentials are likely what is broken.
fn auth_mechanism(
    ctx: &mut Ctx<'_>,
    p: &KeyPath,
    m: &RawMailbox,
    auth: &AuthConfig,
    earlier_errors: bool,
) -> Option<Mechanism> {
    let v = m.auth_mechanism.as_ref()?;
    let key = p.key("auth_mechanism");
    let mech = match v.value.parse::<Mechanism>() {
        Ok(m) => m,
        Err(_) => {
            ctx.err(
                &v.referenced,
                &key,
                unknown_choice("auth_mechanism", &v.value, &["plain", "login", "xoauth2"]),
            );
            return None;
        }
    };
    let fits = matches!(
        (auth, mech),
        (AuthConfig::OAuth2 { .. }, Mechanism::Xoauth2)
            | (
                AuthConfig::Password { .. },
                Mechanism::Plain | Mechanism::Login
            )
    );
    if !fits && !earlier_errors {
        let message = match mech {
            Mechanism::Xoauth2 => "auth_mechanism xoauth2 needs oauth2:",
            _ => "auth_mechanism plain and login need a password (password_env or password_file)",
        };
        ctx.err(&v.referenced, &key, message);
    }
    Some(mech)
}

/// `interval:` and `timeout:`, else the global ones; the timeout must end before the
/// next probe is due.
fn schedule(
    ctx: &mut Ctx<'_>,
    p: &KeyPath,
    m: &RawMailbox,
    global: &Global,
) -> (std::time::Duration, std::time::Duration) {
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
    (interval, timeout)
}

/// The `tls:` section of a mailbox or a sink.
pub(super) fn tls(ctx: &mut Ctx<'_>, p: &KeyPath, raw: &S<RawTls>) -> TlsSettings {
    let mut tls = TlsSettings::default();
    let Some(t) = raw else {
        return tls;
    };
    let key = p.key("tls");
    if let Some(ca) = &t.value.ca_file {
        let path = ctx.resolve_path(&ca.value);
        if let Some(problem) = ca_file_problem(&path) {
            ctx.err(&ca.referenced, &key.key("ca_file"), problem);
        }
        tls.ca_file = Some(path);
    }
    if let Some(sn) = &t.value.server_name {
        if let Some(problem) = host_problem(&sn.value) {
            ctx.err(&sn.referenced, &key.key("server_name"), problem);
        }
        tls.server_name = Some(sn.value.clone());
    }
    tls
}

/// `allow_insecure_auth:`, which credentials over `security: none` need.
fn insecure_auth(
    ctx: &mut Ctx<'_>,
    p: &KeyPath,
    entry: &Spanned<RawMailbox>,
    security: Security,
    auth: &AuthConfig,
) -> bool {
    let m = &entry.value;
    let allow = boolean(ctx, &m.allow_insecure_auth, &p.key("allow_insecure_auth"));
    if security == Security::None && *auth != AuthConfig::None && !allow {
        let loc = m
            .security
            .as_ref()
            .map_or(entry.referenced, |v| v.referenced);
        ctx.err(
            &loc,
            &p.key("security"),
            "security: none would send the credentials in clear text; use starttls or tls, or set allow_insecure_auth: true",
        );
    }
    allow
}

fn source_address(ctx: &mut Ctx<'_>, p: &KeyPath, m: &RawMailbox) -> Option<IpAddr> {
    let v = m.source_address.as_ref()?;
    match v.value.parse::<IpAddr>() {
        Ok(ip) => Some(ip),
        Err(_) => {
            ctx.err(
                &v.referenced,
                &p.key("source_address"),
                format!("`{}` is not an IP address", v.value.escape_debug()),
            );
            None
        }
    }
}

/// The preset's limits, each field overridden by an explicit key.
fn limits(ctx: &mut Ctx<'_>, p: &KeyPath, m: &RawMailbox, preset: &Preset) -> Limits {
    let mut limits = preset.limits;
    let Some(l) = &m.limits else {
        return limits;
    };
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
    limits
}

fn budget(ctx: &mut Ctx<'_>, p: &KeyPath, m: &RawMailbox) -> Budget {
    Budget {
        messages_per_day: m.budget.as_ref().and_then(|b| {
            count(
                ctx,
                &b.value.messages_per_day,
                &p.key("budget").key("messages_per_day"),
            )
        }),
    }
}

/// The 10% rule of `budget.rs`: the canary must never be what burns a mailbox's quota.
/// The error points at the key that sets the rate: the budget if given, else the
/// interval, else the mailbox entry.
fn within_share(
    ctx: &mut Ctx<'_>,
    p: &KeyPath,
    entry: &Spanned<RawMailbox>,
    mailbox: &Mailbox,
) -> bool {
    let Err(msg) = check_share(mailbox) else {
        return true;
    };
    let m = &entry.value;
    let (loc, key) = match (m.budget.as_ref(), m.interval.as_ref()) {
        (Some(b), _) => (b.referenced, p.key("budget").key("messages_per_day")),
        (None, Some(i)) => (i.referenced, p.key("interval")),
        (None, None) => (entry.referenced, p.key("interval")),
    };
    ctx.err(&loc, &key, msg);
    false
}
