//! The `dns_audit:` section: how often to audit, and the domains to audit with the
//! provider and DKIM selectors of each.
//!
//! A domain without `provider:` takes the provider of the mailboxes that send from it,
//! so the mailboxes are resolved first. Without `domains:` the audit covers every
//! mailbox's `from` domain (see `Config::audit_domains`).

use std::sync::Arc;

use serde_saphyr::Spanned;

use super::values::{duration, host_problem};
use super::{AUDIT_INTERVAL_RANGE, Ctx, DEFAULT_AUDIT_INTERVAL, provider_names};
use crate::config::diag::unknown_choice;
use crate::config::keypath::KeyPath;
use crate::config::schema::{RawAuditDomain, RawDnsAudit};
use crate::config::{AuditDomain, DnsAudit, Mailbox, Provider};

/// The section, or `None` if it has any error (all of them recorded).
pub(super) fn dns_audit(
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
    // (domain, line) of every domain so far, for duplicate detection.
    let mut seen: Vec<(String, u64)> = Vec::new();
    for (i, entry) in a.domains.iter().flat_map(|d| d.value.iter()).enumerate() {
        let p = domains_key.index(i);
        let Some(d) = audit_domain(ctx, &p, entry, mailboxes) else {
            continue;
        };
        if let Some((_, first)) = seen.iter().find(|(name, _)| *name == d.domain) {
            let loc = entry
                .value
                .domain
                .as_ref()
                .map_or(entry.referenced, |v| v.referenced);
            ctx.err(
                &loc,
                &p.key("domain"),
                format!("duplicate domain `{}` (first at line {first})", d.domain),
            );
        } else {
            seen.push((d.domain.clone(), entry.referenced.line()));
            domains.push(d);
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
    let domain = domain(ctx, p, entry);
    let provider = provider(ctx, p, &entry.value, &domain, mailboxes);
    let dkim_selectors = dkim_selectors(ctx, p, &entry.value, provider);
    if ctx.diag.errors.len() > errors_before {
        return None;
    }
    Some(AuditDomain {
        domain,
        provider,
        dkim_selectors,
    })
}

/// The domain, lower-cased and without a trailing dot, as mailboxes' `from` compare.
fn domain(ctx: &mut Ctx<'_>, p: &KeyPath, entry: &Spanned<RawAuditDomain>) -> String {
    let Some(d) = &entry.value.domain else {
        ctx.err(&entry.referenced, &p.key("domain"), "domain is required");
        return String::new();
    };
    if let Some(problem) = host_problem(&d.value) {
        ctx.err(&d.referenced, &p.key("domain"), problem);
    }
    d.value.trim_end_matches('.').to_ascii_lowercase()
}

/// `provider:`, else the provider of the first mailbox sending from the domain, else
/// `generic`.
fn provider(
    ctx: &mut Ctx<'_>,
    p: &KeyPath,
    r: &RawAuditDomain,
    domain: &str,
    mailboxes: &[Arc<Mailbox>],
) -> Provider {
    match &r.provider {
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
    }
}

/// `dkim_selectors:`, else the provider's.
fn dkim_selectors(
    ctx: &mut Ctx<'_>,
    p: &KeyPath,
    r: &RawAuditDomain,
    provider: Provider,
) -> Vec<String> {
    let Some(list) = &r.dkim_selectors else {
        return provider
            .preset()
            .dkim_selectors
            .iter()
            .map(|s| s.to_string())
            .collect();
    };
    let key = p.key("dkim_selectors");
    for (j, s) in list.value.iter().enumerate() {
        if !valid_selector(&s.value) {
            ctx.err(
                &s.referenced,
                &key.index(j),
                format!("`{}` is not a valid DKIM selector", s.value.escape_debug()),
            );
        }
    }
    list.value.iter().map(|s| s.value.clone()).collect()
}

/// Dot-separated labels of letters, digits, `-` and `_`: the selector becomes part of
/// a DNS name (`SELECTOR._domainkey.DOMAIN`).
fn valid_selector(s: &str) -> bool {
    !s.is_empty()
        && s.split('.').all(|l| {
            !l.is_empty()
                && l.chars()
                    .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_')
        })
}
