//! Checks of one value each: durations, counts, switches, secrets, names, host names,
//! addresses, token URLs and CA files.
//!
//! The sections (`global`, `mailbox.rs`, `oauth2.rs`, `dns_audit.rs`) share these, so
//! the same kind of value gets the same message wherever it appears. The `*_problem`
//! functions only judge; the others also record the error at the value's key.

use std::net::IpAddr;
use std::path::Path;
use std::time::Duration;

use serde_saphyr::Spanned;

use super::Ctx;
use crate::config::Secret;
use crate::config::duration::{format_duration, parse_duration};
use crate::config::keypath::KeyPath;
use crate::config::schema::{S, Scalar};
use crate::config::secrets;

/// Parses an optional duration and checks its range. `None`: absent or invalid.
pub(super) fn duration(
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

/// The integer of a [`Scalar`] key, or an error that names the type the file had.
pub(super) fn integer(
    ctx: &mut Ctx<'_>,
    v: &Spanned<Scalar>,
    key: &KeyPath,
    expected: &str,
) -> Option<i64> {
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
pub(super) fn boolean(ctx: &mut Ctx<'_>, v: &S<Scalar>, key: &KeyPath) -> bool {
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

/// A count such as a limit: at least 1. Zero is refused rather than read as "no limit",
/// which is what leaving the key out means.
pub(super) fn count(ctx: &mut Ctx<'_>, v: &S<Scalar>, key: &KeyPath) -> Option<u32> {
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

/// Loads a secret given as `*_env` or `*_file`. `None`: an error was recorded;
/// `Some(None)`: neither key is set.
pub(super) fn secret(
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

/// The longest mailbox (or sink) name. Names become file names in `--state.dir`
/// (`mailbox-NAME.json`, its temporary `.mailbox-NAME.json.PID.RANDOM.tmp` and
/// `mailbox-NAME.json.corrupt-UNIXTIME`, `oauth/NAME.refresh-token.json`): the longest
/// adds about 40 bytes, and file systems allow 255. 128 leaves room, and is plenty for
/// a label value.
pub(in crate::config) const MAX_NAME_LEN: usize = 128;

/// `[A-Za-z0-9_.-]{1,MAX_NAME_LEN}`: the name becomes a label value, a CLI argument and
/// part of file names.
pub(super) fn valid_name(s: &str) -> bool {
    !s.is_empty() && s.len() <= MAX_NAME_LEN && valid_chars(s)
}

pub(super) fn valid_chars(s: &str) -> bool {
    s.chars()
        .all(|c| c.is_ascii_alphanumeric() || matches!(c, '_' | '.' | '-'))
}

/// Why `s` is not a host name or IP address, if it is not.
pub(in crate::config) fn host_problem(s: &str) -> Option<String> {
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
pub(super) fn helo_problem(s: &str) -> Option<String> {
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
pub(super) fn lowercase_domain(s: &str) -> String {
    match s.split_once('@') {
        Some((local, domain)) => format!("{local}@{}", domain.to_ascii_lowercase()),
        None => s.to_string(),
    }
}

/// Why `s` is not an acceptable token endpoint: HTTPS, or plain HTTP on loopback only
/// (a test server), since the request carries the client secret.
pub(super) fn url_problem(s: &str) -> Option<String> {
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
pub(super) fn ca_file_problem(path: &Path) -> Option<String> {
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
