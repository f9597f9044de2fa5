//! The `sinks:` entries and the `delivery:` section: where canaries are read back from,
//! with the same credential schema and secret handling as mailboxes, and the sink
//! presets of `presets.rs` (SINK_PRESETS).

use std::sync::Arc;
use std::time::Duration;

use serde_saphyr::Spanned;

use super::mailbox::tls;
use super::values::{
    address_problem, boolean, duration, host_problem, integer, lowercase_domain, secret, valid_name,
};
use super::{Ctx, oauth2};
use crate::config::diag::unknown_choice;
use crate::config::keypath::KeyPath;
use crate::config::schema::{RawDelivery, RawSink};
use crate::config::{
    AuthConfig, Cleanup, Delivery, Mailbox, Provider, Security, Sink, SinkPreset, SinkProtocol,
};

/// A poll more often than every 5 s loads a shared server for nothing; less often than
/// every 10 minutes makes the latency figure meaningless.
const POLL_RANGE: (Duration, Duration) = (Duration::from_secs(5), Duration::from_secs(600));
const DEFAULT_POLL: Duration = Duration::from_secs(30);
/// Under a minute no real MX path is done; over two days nobody waits for a canary.
const TIMEOUT_RANGE: (Duration, Duration) =
    (Duration::from_secs(10), Duration::from_secs(2 * 24 * 3600));
const DEFAULT_TIMEOUT: Duration = Duration::from_secs(15 * 60);

/// `delivery:`.
pub(super) fn delivery(ctx: &mut Ctx<'_>, raw: Option<&Spanned<RawDelivery>>) -> Delivery {
    let p = KeyPath::root("delivery");
    let timeout = raw
        .and_then(|d| duration(ctx, &d.value.timeout, &p.key("timeout"), TIMEOUT_RANGE))
        .unwrap_or(DEFAULT_TIMEOUT);
    Delivery { timeout }
}

/// The sinks without errors. Names are unique among sinks and mailboxes alike: both name
/// files in `--state.dir` and token caches.
pub(super) fn sinks(
    ctx: &mut Ctx<'_>,
    raw: Option<&Spanned<Vec<Spanned<RawSink>>>>,
    mailboxes: &[Arc<Mailbox>],
) -> Vec<Arc<Sink>> {
    let Some(list) = raw else {
        return Vec::new();
    };
    let p = KeyPath::root("sinks");
    let mut out: Vec<Arc<Sink>> = Vec::new();
    let mut names = super::Names::new("sink");
    for (i, entry) in list.value.iter().enumerate() {
        let key = p.index(i);
        if let Some(n) = &entry.value.name
            && names.check(ctx, &key, n)
            && mailboxes.iter().any(|m| m.name == n.value)
        {
            ctx.err(
                &n.referenced,
                &key.key("name"),
                format!(
                    "sink name `{}` is also a mailbox name; use a different one",
                    n.value
                ),
            );
        }
        if let Some(s) = sink(ctx, &key, entry) {
            if let Some(other) = out.iter().find(|o| o.address == s.address) {
                ctx.err(
                    &entry.referenced,
                    &key.key("address"),
                    format!(
                        "sink `{}` already reads {}; one sink per address",
                        other.name, s.address
                    ),
                );
                continue;
            }
            out.push(Arc::new(s));
        }
    }
    out
}

fn sink(ctx: &mut Ctx<'_>, p: &KeyPath, entry: &Spanned<RawSink>) -> Option<Sink> {
    let errors_before = ctx.diag.errors.len();
    let s = &entry.value;
    let name = name(ctx, p, entry);
    let address = address(ctx, p, entry);
    let protocol = protocol(ctx, p, s);
    let (provider, preset) = provider(ctx, p, s);
    let (host, port, security) = endpoint(ctx, p, entry, preset);
    let auth = credentials(ctx, p, entry, provider, preset, &address);
    let folders = folders(ctx, p, s);
    let poll_interval = duration(ctx, &s.poll_interval, &p.key("poll_interval"), POLL_RANGE)
        .unwrap_or(DEFAULT_POLL);
    let cleanup = cleanup(ctx, p, s);
    let tls = tls(ctx, p, &s.tls);
    let allow_insecure_auth = boolean(ctx, &s.allow_insecure_auth, &p.key("allow_insecure_auth"));
    if security == Security::None && auth != AuthConfig::None && !allow_insecure_auth {
        let loc = s
            .security
            .as_ref()
            .map_or(entry.referenced, |v| v.referenced);
        ctx.err(
            &loc,
            &p.key("security"),
            "security: none would send the sink's credentials in clear text; use tls or starttls, or set allow_insecure_auth: true",
        );
    }
    if ctx.diag.errors.len() > errors_before {
        return None;
    }
    Some(Sink {
        name,
        address,
        protocol,
        provider,
        host,
        port,
        security,
        auth,
        folders,
        poll_interval,
        cleanup,
        tls,
        allow_insecure_auth,
        line: entry.referenced.line(),
    })
}

fn name(ctx: &mut Ctx<'_>, p: &KeyPath, entry: &Spanned<RawSink>) -> String {
    let key = p.key("name");
    match &entry.value.name {
        None => {
            ctx.err(&entry.referenced, &key, "name is required");
            String::new()
        }
        Some(n) if valid_name(&n.value) => n.value.clone(),
        Some(n) => {
            ctx.err(
                &n.referenced,
                &key,
                format!(
                    "`{}` is not a valid sink name: use letters, digits, `_`, `.` and `-` (at most 128)",
                    n.value.escape_debug()
                ),
            );
            String::new()
        }
    }
}

fn address(ctx: &mut Ctx<'_>, p: &KeyPath, entry: &Spanned<RawSink>) -> String {
    let key = p.key("address");
    let Some(v) = &entry.value.address else {
        ctx.err(
            &entry.referenced,
            &key,
            "address is required (canaries sent to it are verified in this sink)",
        );
        return String::new();
    };
    match address_problem(&v.value) {
        None => lowercase_domain(&v.value).to_ascii_lowercase(),
        Some(problem) => {
            ctx.err(&v.referenced, &key, problem);
            String::new()
        }
    }
}

fn protocol(ctx: &mut Ctx<'_>, p: &KeyPath, s: &RawSink) -> SinkProtocol {
    let Some(v) = &s.protocol else {
        return SinkProtocol::Imap;
    };
    match v.value.parse() {
        Ok(SinkProtocol::Imap) => SinkProtocol::Imap,
        Ok(SinkProtocol::Graph) => {
            ctx.err(
                &v.referenced,
                &p.key("protocol"),
                "protocol: graph is not available in this version; use protocol: imap (Microsoft 365 needs oauth2: for IMAP)",
            );
            SinkProtocol::Graph
        }
        Err(_) => {
            ctx.err(
                &v.referenced,
                &p.key("protocol"),
                unknown_choice("protocol", &v.value, &["imap", "graph"]),
            );
            SinkProtocol::Imap
        }
    }
}

fn provider(ctx: &mut Ctx<'_>, p: &KeyPath, s: &RawSink) -> (Provider, &'static SinkPreset) {
    let generic = Provider::Generic
        .sink_preset()
        .expect("the generic sink preset exists");
    let Some(v) = &s.provider else {
        return (Provider::Generic, generic);
    };
    let names: Vec<&str> = crate::config::SINK_PRESETS
        .iter()
        .map(|s| s.provider.as_str())
        .collect();
    match Provider::from_name(&v.value).and_then(|pr| pr.sink_preset().map(|ps| (pr, ps))) {
        Some(found) => found,
        None => {
            ctx.err(
                &v.referenced,
                &p.key("provider"),
                unknown_choice("sink provider", &v.value, &names),
            );
            (Provider::Generic, generic)
        }
    }
}

fn endpoint(
    ctx: &mut Ctx<'_>,
    p: &KeyPath,
    entry: &Spanned<RawSink>,
    preset: &SinkPreset,
) -> (String, u16, Security) {
    let s = &entry.value;
    if preset.in_process {
        for (k, present) in [
            ("host", s.host.as_ref().map(|v| v.referenced)),
            ("port", s.port.as_ref().map(|v| v.referenced)),
        ] {
            if let Some(at) = present {
                ctx.err(
                    &at,
                    &p.key(k),
                    "provider: demo is the in-process demo sink; it takes no host or port",
                );
            }
        }
        return (String::new(), 0, Security::Tls);
    }
    let host = match (&s.host, preset.host) {
        (Some(h), _) => {
            if let Some(problem) = host_problem(&h.value) {
                ctx.err(&h.referenced, &p.key("host"), problem);
            }
            h.value.clone()
        }
        (None, Some(h)) => h.to_string(),
        (None, None) => {
            ctx.err(
                &entry.referenced,
                &p.key("host"),
                "host is required (the IMAP server, e.g. imap.example.com)",
            );
            String::new()
        }
    };
    let security = match &s.security {
        None => None,
        Some(v) => match v.value.parse::<Security>() {
            Ok(sec) => Some(sec),
            Err(_) => {
                ctx.err(
                    &v.referenced,
                    &p.key("security"),
                    unknown_choice("security", &v.value, &["tls", "starttls", "none"]),
                );
                None
            }
        },
    };
    let port = match &s.port {
        Some(v) => match integer(ctx, v, &p.key("port"), "a port number (1 to 65535)") {
            Some(n @ 1..=65535) => n as u16,
            Some(n) => {
                ctx.err(
                    &v.referenced,
                    &p.key("port"),
                    format!("port {n} is out of range (1 to 65535)"),
                );
                0
            }
            None => 0,
        },
        // IMAP without implicit TLS lives on 143.
        None if matches!(security, Some(Security::Starttls | Security::None)) => 143,
        None => preset.port,
    };
    let security = security.unwrap_or(if port == 143 {
        Security::Starttls
    } else {
        preset.security
    });
    (host, port, security)
}

fn credentials(
    ctx: &mut Ctx<'_>,
    p: &KeyPath,
    entry: &Spanned<RawSink>,
    provider: Provider,
    preset: &SinkPreset,
    address: &str,
) -> AuthConfig {
    let s = &entry.value;
    let password = secret(
        ctx,
        p,
        ("password_env", &s.password_env),
        ("password_file", &s.password_file),
    );
    let oauth = s
        .oauth2
        .as_ref()
        .map(|o| oauth2::oauth2(ctx, &p.key("oauth2"), o, provider));
    let has_password = s.password_env.is_some() || s.password_file.is_some();
    if preset.in_process {
        return AuthConfig::None;
    }
    if has_password && let Some(o) = &s.oauth2 {
        ctx.err(
            &o.referenced,
            &p.key("oauth2"),
            "set either a password (password_env / password_file) or oauth2, not both",
        );
        return AuthConfig::None;
    }
    if has_password && preset.oauth_only {
        let at = s
            .password_env
            .as_ref()
            .or(s.password_file.as_ref())
            .map_or(entry.referenced, |v| v.referenced);
        ctx.err(
            &at,
            &p.key("password_env"),
            format!(
                "provider {provider} has no password login for IMAP (Exchange Online turned Basic auth off for IMAP); use oauth2: with the IMAP.AccessAsApp permission"
            ),
        );
        return AuthConfig::None;
    }
    let username = match &s.username {
        Some(u) if u.value.is_empty() || u.value.chars().any(char::is_control) => {
            ctx.err(
                &u.referenced,
                &p.key("username"),
                "username must be non-empty and contain no control characters",
            );
            return AuthConfig::None;
        }
        Some(u) => u.value.clone(),
        None => address.to_string(),
    };
    match (password, oauth) {
        (Some(Some(password)), None) => AuthConfig::Password { username, password },
        (_, Some(Some(oauth))) => AuthConfig::OAuth2 { username, oauth },
        (Some(None), None) => {
            ctx.err(
                &entry.referenced,
                &p.key("password_env"),
                "a sink needs credentials: password_env, password_file or oauth2",
            );
            AuthConfig::None
        }
        _ => AuthConfig::None,
    }
}

fn folders(ctx: &mut Ctx<'_>, p: &KeyPath, s: &RawSink) -> Vec<String> {
    let Some(list) = &s.folders else {
        return Vec::new();
    };
    let key = p.key("folders");
    if list.value.is_empty() {
        ctx.err(
            &list.referenced,
            &key,
            "folders must list at least one folder (leave the key out for INBOX and the junk folder)",
        );
    }
    let mut out = Vec::new();
    for (j, f) in list.value.iter().enumerate() {
        // A folder name goes into IMAP commands as a quoted string: no quotes,
        // backslashes or line breaks.
        if f.value.is_empty()
            || f.value.len() > 256
            || f.value
                .chars()
                .any(|c| c.is_control() || c == '"' || c == '\\')
        {
            ctx.err(
                &f.referenced,
                &key.index(j),
                format!(
                    "`{}` is not a usable folder name (no quotes, backslashes or control characters)",
                    f.value.escape_debug()
                ),
            );
        } else {
            out.push(f.value.clone());
        }
    }
    out
}

fn cleanup(ctx: &mut Ctx<'_>, p: &KeyPath, s: &RawSink) -> Cleanup {
    let Some(v) = &s.cleanup else {
        return Cleanup::Delete;
    };
    v.value.parse().unwrap_or_else(|_| {
        ctx.err(
            &v.referenced,
            &p.key("cleanup"),
            unknown_choice("cleanup", &v.value, &["delete", "keep"]),
        );
        Cleanup::Delete
    })
}
