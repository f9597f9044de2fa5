//! The SPF check: exactly one `v=spf1` record, its include/redirect tree expanded, the
//! DNS-querying terms counted as RFC 7208 §4.6.4 counts them, void lookups, loops, the
//! final `all`, and whether the provider's sending include is anywhere in the tree.
//!
//! Records are parsed by mail-auth; this file only walks what the parser produced. The
//! tree is walked level by level so that the queries of one level run concurrently, and
//! the walk stops once the count is far past the limit: beyond that the exact number no
//! longer matters and a hostile policy could otherwise make us send hundreds of queries.

use std::collections::{BTreeSet, HashMap};

use futures_util::future::join_all;
use mail_auth::common::parse::TxtRecordParser;
use mail_auth::spf::{Macro, Mechanism, Qualifier, Spf};

use super::dns::{Budget, DnsFailure, RType, Run, normalize};
use super::findings::{Check, Finding, Outcome, Severity};
use crate::config::Provider;

/// RFC 7208 §4.6.4: at most 10 DNS-querying terms...
pub const LOOKUP_LIMIT: u32 = 10;
/// ...and at most 2 of them void (NXDOMAIN or no records).
pub const VOID_LIMIT: u32 = 2;
/// Stop expanding past this many counted lookups: the policy already fails.
const LOOKUP_CAP: u32 = 3 * LOOKUP_LIMIT;
/// A tree deeper than the lookup limit cannot be within it either.
const MAX_DEPTH: usize = LOOKUP_LIMIT as usize + 1;

/// Includes that authorize a provider besides its preset's `spf_include`
/// (notes/providers.md: GCC High tenants use `spf.protection.office365.us`).
const ALSO_AUTHORIZES: &[(Provider, &str)] =
    &[(Provider::Microsoft365, "spf.protection.office365.us")];

/// What the audit reports about the SPF policy (`spf` in the JSON).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SpfReport {
    /// The domain's `v=spf1` record (the first one when there are several).
    pub record: String,
    /// DNS-querying terms in the whole tree.
    pub lookups: u32,
    pub void_lookups: u32,
    /// The `all` that ends evaluation (following `redirect=`), e.g. `-all`.
    pub all: Option<String>,
    /// Every include and redirect target in the tree.
    pub includes: BTreeSet<String>,
    /// True when the walk stopped early: `lookups` is then a lower bound.
    pub truncated: bool,
}

/// The SPF section of one domain's audit.
#[derive(Debug, Default)]
pub struct SpfResult {
    pub report: Option<SpfReport>,
    pub outcomes: Vec<Outcome>,
}

/// How a term names its target domain.
#[derive(Debug, PartialEq, Eq)]
enum Spec {
    /// No domain-spec: the domain whose record holds the term.
    Current,
    Literal(String),
    /// Needs macro expansion (`%{i}` ...), which needs a real sender; not followed.
    Macro,
}

fn spec(m: &Macro) -> Spec {
    match m {
        Macro::None => Spec::Current,
        Macro::Literal(bytes) => Spec::Literal(normalize(&String::from_utf8_lossy(bytes))),
        Macro::Variable { .. } | Macro::List(_) => Spec::Macro,
    }
}

fn qualifier(q: &Qualifier) -> &'static str {
    match q {
        Qualifier::Pass => "+",
        Qualifier::Fail => "-",
        Qualifier::SoftFail => "~",
        Qualifier::Neutral => "?",
    }
}

/// A TXT record sorted by what mail-auth makes of it.
enum Parsed {
    Spf(Box<Spf>),
    Broken(String),
}

/// The `v=spf1` records among a name's TXT records. mail-auth tells them apart: it
/// answers `InvalidRecordType` for anything that does not start with `v=spf1`.
fn spf_records(txt: &[Vec<u8>]) -> Vec<(String, Parsed)> {
    txt.iter()
        .filter_map(|raw| {
            let text = String::from_utf8_lossy(raw).into_owned();
            match Spf::parse(raw) {
                Ok(spf) => Some((text, Parsed::Spf(Box::new(spf)))),
                Err(mail_auth::Error::Dns(mail_auth::DnsError::InvalidRecordType)) => None,
                Err(e) => Some((text, Parsed::Broken(e.to_string()))),
            }
        })
        .collect()
}

/// Whether a name is one we can ask for (mail-auth accepts any bytes as a domain-spec).
fn valid_name(name: &str) -> bool {
    !name.is_empty()
        && name.len() <= 253
        && name.split('.').all(|l| {
            !l.is_empty()
                && l.len() <= 63
                && l.bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
        })
}

/// A record in the tree, waiting to be expanded.
struct Node {
    name: String,
    /// From the top record down to this one, for loop detection and messages.
    chain: Vec<String>,
    spf: Box<Spf>,
}

/// A term whose query may come back void.
#[derive(Clone, Copy)]
enum VoidProbe {
    /// `a`: void when neither A nor AAAA exists.
    Address,
    /// `mx`
    Mx,
    /// `exists`: RFC 7208 §5.7 always asks A.
    Exists,
}

#[derive(Default)]
struct Walk {
    lookups: u32,
    void_lookups: u32,
    void_names: Vec<String>,
    includes: BTreeSet<String>,
    macros: u32,
    loops: Vec<Vec<String>>,
    truncated: bool,
    /// Per record name: its `all` qualifier and its redirect target, to find the
    /// `all` that ends evaluation.
    ends: HashMap<String, (Option<&'static str>, Option<String>)>,
    outcomes: Vec<Outcome>,
}

/// Audits the SPF policy of `domain`.
pub async fn check(
    run: &Run,
    budget: &Budget,
    domain: &str,
    provider: Provider,
) -> Result<SpfResult, DnsFailure> {
    let answer = run.query(budget, domain, RType::Txt).await?;
    let mut records = spf_records(&answer.txt);
    let mut out = SpfResult::default();
    let empty = |record: String| SpfReport {
        record,
        lookups: 0,
        void_lookups: 0,
        all: None,
        includes: BTreeSet::new(),
        truncated: false,
    };
    match records.len() {
        0 => {
            let why = if answer.nxdomain {
                format!("{domain} does not exist (NXDOMAIN)")
            } else {
                format!("no v=spf1 TXT record at {domain}")
            };
            out.outcomes.push(Outcome::found(
                Check::SpfMissing,
                format!("{why}: receivers cannot tell which servers may send for it"),
            ));
            return Ok(out);
        }
        1 => {}
        n => {
            let list: Vec<&str> = records.iter().map(|(t, _)| t.as_str()).collect();
            out.outcomes
                .push(Outcome::pass(Check::SpfMissing, "published"));
            out.outcomes.push(Outcome::found(
                Check::SpfMultiple,
                format!(
                    "{n} v=spf1 records at {domain} ({}); receivers return permerror: merge them into one",
                    list.join(" | ")
                ),
            ));
            out.report = Some(empty(records.swap_remove(0).0));
            return Ok(out);
        }
    }
    let (text, parsed) = records.swap_remove(0);
    out.outcomes
        .push(Outcome::pass(Check::SpfMissing, text.clone()));
    out.outcomes.push(Outcome::pass(
        Check::SpfMultiple,
        "exactly one v=spf1 record",
    ));
    let top = match parsed {
        Parsed::Spf(spf) => spf,
        Parsed::Broken(e) => {
            out.outcomes.push(Outcome::found(
                Check::SpfSyntax,
                format!(
                    "the v=spf1 record of {domain} does not parse ({e}); receivers return permerror"
                ),
            ));
            out.report = Some(empty(text));
            return Ok(out);
        }
    };

    let mut walk = Walk::default();
    walk_tree(run, budget, domain, top, &mut walk).await?;
    let all = effective_all(domain, &walk.ends);
    judge(domain, provider, &walk, all.as_deref(), &mut out.outcomes);
    out.outcomes.append(&mut walk.outcomes);
    out.report = Some(SpfReport {
        record: text,
        lookups: walk.lookups,
        void_lookups: walk.void_lookups,
        all,
        includes: walk.includes,
        truncated: walk.truncated,
    });
    Ok(out)
}

/// Expands the tree level by level, counting as it goes.
async fn walk_tree(
    run: &Run,
    budget: &Budget,
    domain: &str,
    top: Box<Spf>,
    w: &mut Walk,
) -> Result<(), DnsFailure> {
    let mut level = vec![Node {
        name: domain.to_string(),
        chain: vec![domain.to_string()],
        spf: top,
    }];
    let mut depth = 0;
    while !level.is_empty() {
        if depth >= MAX_DEPTH {
            w.truncated = true;
            break;
        }
        depth += 1;
        let mut probes: Vec<(String, VoidProbe)> = Vec::new();
        // (target, chain to it, how it was reached)
        let mut next: Vec<(String, Vec<String>, &'static str)> = Vec::new();
        for node in &level {
            expand(node, w, &mut probes, &mut next);
        }
        if w.lookups > LOOKUP_CAP {
            // Far past the limit already: asking more only costs queries.
            w.truncated = true;
            break;
        }

        let void_checks = join_all(
            probes
                .iter()
                .map(|(name, p)| is_void(run, budget, name, *p)),
        );
        let fetches = join_all(
            next.iter()
                .map(|(t, _, _)| run.query(budget, t, RType::Txt)),
        );
        let (voids, fetched) = tokio::join!(void_checks, fetches);
        for (void, (name, _)) in voids.into_iter().zip(&probes) {
            if void? {
                w.void_lookups += 1;
                w.void_names.push(name.clone());
            }
        }
        let mut following = Vec::new();
        for (answer, (target, chain, how)) in fetched.into_iter().zip(next) {
            let answer = answer?;
            let parent = chain
                .get(chain.len().saturating_sub(2))
                .cloned()
                .unwrap_or_default();
            let mut records = spf_records(&answer.txt);
            if answer.is_void() {
                w.void_lookups += 1;
                w.void_names.push(target.clone());
            }
            match records.len() {
                0 => w.outcomes.push(Outcome::found(
                    Check::SpfSyntax,
                    format!("{how}:{target} (in the policy of {parent}) has no SPF record; receivers return permerror"),
                )),
                1 => match records.swap_remove(0).1 {
                    Parsed::Spf(spf) => following.push(Node {
                        name: target,
                        chain,
                        spf,
                    }),
                    Parsed::Broken(e) => w.outcomes.push(Outcome::found(
                        Check::SpfSyntax,
                        format!("the SPF record of {target} ({how}d by {parent}) does not parse ({e}); receivers return permerror"),
                    )),
                },
                n => w.outcomes.push(Outcome::found(
                    Check::SpfMultiple,
                    format!("{target} ({how}d by {parent}) has {n} v=spf1 records; receivers return permerror"),
                )),
            }
        }
        level = following;
    }
    Ok(())
}

/// Counts one record's terms and lists what to ask next.
fn expand(
    node: &Node,
    w: &mut Walk,
    probes: &mut Vec<(String, VoidProbe)>,
    next: &mut Vec<(String, Vec<String>, &'static str)>,
) {
    let mut all = None;
    let mut follow = |target: String, how: &'static str, w: &mut Walk| {
        if !valid_name(&target) {
            w.outcomes.push(Outcome::found(
                Check::SpfSyntax,
                format!(
                    "{how}:{target} in the policy of {} is not a domain name",
                    node.name
                ),
            ));
            return;
        }
        w.includes.insert(target.clone());
        let mut chain = node.chain.clone();
        chain.push(target.clone());
        if node.chain.contains(&target) {
            w.loops.push(chain);
        } else {
            next.push((target, chain, how));
        }
    };
    for d in node.spf.directives.iter() {
        let (target, probe) = match &d.mechanism {
            Mechanism::All => {
                // Evaluation stops at the first `all`: it always matches.
                all = all.or(Some(qualifier(&d.qualifier)));
                continue;
            }
            Mechanism::Ip4 { .. } | Mechanism::Ip6 { .. } => continue,
            Mechanism::Include { macro_string } => {
                w.lookups += 1;
                match spec(macro_string) {
                    Spec::Literal(t) => follow(t, "include", w),
                    Spec::Current => follow(node.name.clone(), "include", w),
                    Spec::Macro => w.macros += 1,
                }
                continue;
            }
            Mechanism::Ptr { .. } => {
                // Needs the sender's address; counted, never asked.
                w.lookups += 1;
                continue;
            }
            Mechanism::A { macro_string, .. } => (spec(macro_string), VoidProbe::Address),
            Mechanism::Mx { macro_string, .. } => (spec(macro_string), VoidProbe::Mx),
            Mechanism::Exists { macro_string } => (spec(macro_string), VoidProbe::Exists),
        };
        w.lookups += 1;
        match target {
            Spec::Current => probes.push((node.name.clone(), probe)),
            Spec::Literal(t) if valid_name(&t) => probes.push((t, probe)),
            Spec::Literal(t) => w.outcomes.push(Outcome::found(
                Check::SpfSyntax,
                format!("`{t}` in the policy of {} is not a domain name", node.name),
            )),
            Spec::Macro => w.macros += 1,
        }
    }
    // RFC 7208 §6.1: redirect= is ignored when the record has an `all`.
    let mut redirect = None;
    if all.is_none()
        && let Some(m) = &node.spf.redirect
    {
        w.lookups += 1;
        match spec(m) {
            Spec::Literal(t) => {
                redirect = Some(t.clone());
                follow(t, "redirect", w);
            }
            Spec::Current | Spec::Macro => w.macros += 1,
        }
    }
    w.ends.insert(node.name.clone(), (all, redirect));
}

/// Whether the query behind a term comes back empty.
async fn is_void(run: &Run, budget: &Budget, name: &str, p: VoidProbe) -> Result<bool, DnsFailure> {
    Ok(match p {
        VoidProbe::Address => {
            let (a, aaaa) = tokio::join!(
                run.query(budget, name, RType::A),
                run.query(budget, name, RType::Aaaa)
            );
            a?.is_void() && aaaa?.is_void()
        }
        VoidProbe::Mx => run.query(budget, name, RType::Mx).await?.is_void(),
        VoidProbe::Exists => run.query(budget, name, RType::A).await?.is_void(),
    })
}

/// The `all` that ends evaluation of `domain`'s policy: its own, or that of the record
/// its `redirect=` chain ends in.
fn effective_all(
    domain: &str,
    ends: &HashMap<String, (Option<&'static str>, Option<String>)>,
) -> Option<String> {
    let mut name = domain.to_string();
    for _ in 0..=MAX_DEPTH {
        let (all, redirect) = ends.get(&name)?;
        if let Some(q) = all {
            return Some(format!("{q}all"));
        }
        name = redirect.clone()?;
    }
    None
}

/// Turns the walk into findings (or passes).
fn judge(domain: &str, provider: Provider, w: &Walk, all: Option<&str>, out: &mut Vec<Outcome>) {
    let at_least = if w.truncated { "at least " } else { "" };
    if let Some(chain) = w.loops.first() {
        out.push(Outcome::found(
            Check::SpfTooManyLookups,
            format!(
                "include loop {}: receivers follow it until the {LOOKUP_LIMIT}-lookup limit and return permerror",
                chain.join(" -> ")
            ),
        ));
    }
    if w.lookups > LOOKUP_LIMIT {
        out.push(Outcome::found(
            Check::SpfTooManyLookups,
            format!(
                "the policy needs {at_least}{} DNS lookups; RFC 7208 allows {LOOKUP_LIMIT} and receivers return permerror: flatten or drop includes",
                w.lookups
            ),
        ));
    } else {
        out.push(Outcome::pass(
            Check::SpfTooManyLookups,
            format!("{} of {LOOKUP_LIMIT} DNS lookups", w.lookups),
        ));
    }
    if w.void_lookups > VOID_LIMIT {
        out.push(Outcome::found(
            Check::SpfVoidLookups,
            format!(
                "{} void lookups (NXDOMAIN or no records: {}); receivers allow {VOID_LIMIT} and then return permerror",
                w.void_lookups,
                w.void_names.join(", ")
            ),
        ));
    } else {
        out.push(Outcome::pass(
            Check::SpfVoidLookups,
            format!("{} of {VOID_LIMIT} void lookups", w.void_lookups),
        ));
    }
    match all {
        Some("+all") => out.push(Outcome::found(
            Check::SpfPermissiveAll,
            format!("+all lets every server on the internet pass SPF as {domain}; end with -all or ~all"),
        )),
        Some("?all") => out.push(Outcome::Found(
            Finding::new(
                Check::SpfPermissiveAll,
                "?all makes mail from any other server neutral, not a failure; end with -all or ~all",
            )
            .with_severity(Severity::Warning),
        )),
        Some(q) => {
            out.push(Outcome::pass(Check::SpfPermissiveAll, q));
            out.push(Outcome::pass(Check::SpfNoAll, q));
        }
        None => out.push(Outcome::found(
            Check::SpfNoAll,
            "no `all` ends the policy (nor a redirect= to one), so mail from any other server is neutral; end with -all or ~all",
        )),
    }
    let preset = provider.preset();
    if let Some(include) = preset.spf_include {
        let accepted: Vec<&str> = std::iter::once(include)
            .chain(
                ALSO_AUTHORIZES
                    .iter()
                    .filter(|(p, _)| *p == provider)
                    .map(|(_, i)| *i),
            )
            .collect();
        match accepted.iter().find(|i| w.includes.contains(**i)) {
            Some(found) => out.push(Outcome::pass(
                Check::SpfProviderNotAuthorized,
                format!("include:{found} is in the policy"),
            )),
            None => {
                let macros = if w.macros > 0 {
                    format!(" ({} term(s) use macros and were not expanded)", w.macros)
                } else {
                    String::new()
                };
                out.push(Outcome::found(
                    Check::SpfProviderNotAuthorized,
                    format!(
                        "include:{include} is not in the SPF policy of {domain}{macros}: mail sent through {provider} fails SPF; add include:{include}"
                    ),
                ));
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::super::dns::{Answer, AuditOptions, FailureKind};
    use super::*;

    type Zone = HashMap<(String, RType), Result<Answer, FailureKind>>;

    fn zone(entries: &[(&str, &str)]) -> Zone {
        Run::txt_zone(entries)
    }

    fn addr(z: &mut Zone, name: &str) {
        z.insert(
            (name.to_string(), RType::A),
            Ok(Answer {
                addrs: vec!["192.0.2.1".parse().unwrap()],
                ..Answer::default()
            }),
        );
    }

    async fn audit(z: Zone, domain: &str, provider: Provider) -> (SpfResult, usize) {
        let run = Run::canned(z, AuditOptions::default());
        let budget = Budget::new(500);
        let r = check(&run, &budget, domain, provider).await.unwrap();
        (r, run.queries_sent())
    }

    fn found(r: &SpfResult) -> Vec<&'static str> {
        r.outcomes
            .iter()
            .filter_map(|o| o.finding())
            .map(|f| f.check.id())
            .collect()
    }

    #[tokio::test]
    async fn counts_lookups_through_nested_includes_and_redirect() {
        let mut z = zone(&[
            (
                "d.test",
                "v=spf1 include:a.test a mx:m.test ptr exists:e.test redirect=r.test",
            ),
            ("a.test", "v=spf1 include:b.test ip4:192.0.2.0/24 -all"),
            ("b.test", "v=spf1 a:h.test a:h.test -all"),
            ("r.test", "v=spf1 ~all"),
        ]);
        for n in ["d.test", "h.test", "e.test"] {
            addr(&mut z, n);
        }
        z.insert(
            ("m.test".into(), RType::Mx),
            Ok(Answer {
                mx: vec![(10, "mx.m.test.".into())],
                ..Answer::default()
            }),
        );
        let (r, queries) = audit(z, "d.test", Provider::Generic).await;
        let rep = r.report.as_ref().unwrap();
        // include a, a, mx, ptr, exists, redirect (6) + include b (1) + a, a (2).
        assert_eq!(rep.lookups, 9);
        assert_eq!(rep.void_lookups, 0);
        // redirect is followed because d.test has no `all`.
        assert_eq!(rep.all.as_deref(), Some("~all"));
        assert!(found(&r).is_empty(), "{:?}", r.outcomes);
        assert!(rep.includes.contains("b.test") && rep.includes.contains("r.test"));
        // h.test is asked once although two terms name it (A and AAAA each once).
        // TXT d,a,b,r + A/AAAA d,h + MX m + A e = 4 + 4 + 1 + 1.
        assert_eq!(queries, 10);
    }

    #[tokio::test]
    async fn eleven_lookups_is_too_many() {
        let mut entries = vec![(
            "d.test".to_string(),
            "v=spf1 include:i1.test -all".to_string(),
        )];
        for i in 1..=10 {
            let next = if i < 10 {
                format!("include:i{}.test ", i + 1)
            } else {
                String::new()
            };
            entries.push((
                format!("i{i}.test"),
                format!("v=spf1 {next}ip4:192.0.2.{i} -all"),
            ));
        }
        let refs: Vec<(&str, &str)> = entries
            .iter()
            .map(|(a, b)| (a.as_str(), b.as_str()))
            .collect();
        let (r, _) = audit(zone(&refs), "d.test", Provider::Generic).await;
        assert_eq!(r.report.as_ref().unwrap().lookups, 10);
        assert!(found(&r).is_empty());

        entries[10].1 = "v=spf1 a:x.test ip4:192.0.2.10 -all".into();
        let refs: Vec<(&str, &str)> = entries
            .iter()
            .map(|(a, b)| (a.as_str(), b.as_str()))
            .collect();
        let mut z = zone(&refs);
        addr(&mut z, "x.test");
        let (r, _) = audit(z, "d.test", Provider::Generic).await;
        assert_eq!(r.report.as_ref().unwrap().lookups, 11);
        assert_eq!(found(&r), ["spf.too_many_lookups"]);
    }

    #[tokio::test]
    async fn include_loop_is_detected_and_ends() {
        let z = zone(&[
            ("d.test", "v=spf1 include:a.test -all"),
            ("a.test", "v=spf1 include:b.test -all"),
            ("b.test", "v=spf1 include:a.test -all"),
        ]);
        let (r, queries) = audit(z, "d.test", Provider::Generic).await;
        assert_eq!(found(&r), ["spf.too_many_lookups"]);
        let msg = &r.outcomes.iter().find_map(|o| o.finding()).unwrap().message;
        assert!(
            msg.contains("d.test -> a.test -> b.test -> a.test"),
            "{msg}"
        );
        assert_eq!(queries, 3);
        // A self-include is a loop too.
        let z = zone(&[("d.test", "v=spf1 include:d.test -all")]);
        let (r, _) = audit(z, "d.test", Provider::Generic).await;
        assert_eq!(found(&r), ["spf.too_many_lookups"]);
    }

    #[tokio::test]
    async fn void_lookups_over_two() {
        let z = zone(&[(
            "d.test",
            "v=spf1 a:n1.test mx:n2.test exists:n3.test include:n4.test -all",
        )]);
        let (r, _) = audit(z, "d.test", Provider::Generic).await;
        let rep = r.report.as_ref().unwrap();
        assert_eq!(rep.void_lookups, 4);
        // n4.test has no SPF record at all: a permerror of its own.
        assert_eq!(found(&r), ["spf.void_lookups", "spf.syntax"]);
    }

    #[tokio::test]
    async fn missing_multiple_syntax_all_and_provider() {
        let (r, _) = audit(
            zone(&[("d.test", "google-site-verification=x")]),
            "d.test",
            Provider::Generic,
        )
        .await;
        assert_eq!(found(&r), ["spf.missing"]);
        assert!(r.report.is_none());

        let z = zone(&[("d.test", "v=spf1 -all"), ("d.test", "v=spf1 ~all")]);
        let (r, _) = audit(z, "d.test", Provider::Generic).await;
        assert_eq!(found(&r), ["spf.multiple"]);

        let (r, _) = audit(
            zone(&[("d.test", "v=spf1 ip4:192.0.2.1 ~al")]),
            "d.test",
            Provider::Generic,
        )
        .await;
        assert_eq!(found(&r), ["spf.syntax"]);

        let (r, _) = audit(
            zone(&[("d.test", "v=spf1 +all")]),
            "d.test",
            Provider::Generic,
        )
        .await;
        assert_eq!(found(&r), ["spf.permissive_all"]);
        assert_eq!(
            r.outcomes
                .iter()
                .find_map(|o| o.finding())
                .unwrap()
                .severity,
            Severity::Error
        );
        let (r, _) = audit(
            zone(&[("d.test", "v=spf1 ?all")]),
            "d.test",
            Provider::Generic,
        )
        .await;
        assert_eq!(
            r.outcomes
                .iter()
                .find_map(|o| o.finding())
                .unwrap()
                .severity,
            Severity::Warning
        );
        let (r, _) = audit(
            zone(&[("d.test", "v=spf1 ip4:192.0.2.1")]),
            "d.test",
            Provider::Generic,
        )
        .await;
        assert_eq!(found(&r), ["spf.no_all"]);
        // redirect= is ignored when there is an `all`.
        let (r, _) = audit(
            zone(&[("d.test", "v=spf1 -all redirect=x.test")]),
            "d.test",
            Provider::Generic,
        )
        .await;
        assert_eq!(r.report.unwrap().lookups, 0);

        let z = zone(&[
            ("d.test", "v=spf1 include:_spf.d.test -all"),
            (
                "_spf.d.test",
                "v=spf1 include:spf.protection.outlook.com -all",
            ),
            ("spf.protection.outlook.com", "v=spf1 ip4:40.92.0.0/15 -all"),
        ]);
        let (r, _) = audit(z, "d.test", Provider::Microsoft365).await;
        assert!(found(&r).is_empty(), "nested provider include counts");
        let (r, _) = audit(
            zone(&[("d.test", "v=spf1 -all")]),
            "d.test",
            Provider::Google,
        )
        .await;
        assert_eq!(found(&r), ["spf.provider_not_authorized"]);
    }

    #[tokio::test]
    async fn a_hostile_tree_is_cut_off() {
        // Every record includes ten fresh names: 10^depth without the cap.
        let mut z = Zone::new();
        let mut frontier = vec!["d.test".to_string()];
        for _ in 0..3 {
            let mut next = Vec::new();
            for name in &frontier {
                let kids: Vec<String> = (0..10).map(|i| format!("x{i}.{name}")).collect();
                let rec = format!(
                    "v=spf1 {} -all",
                    kids.iter()
                        .map(|k| format!("include:{k}"))
                        .collect::<Vec<_>>()
                        .join(" ")
                );
                z.insert(
                    (name.clone(), RType::Txt),
                    Ok(Answer {
                        txt: vec![rec.into_bytes()],
                        ..Answer::default()
                    }),
                );
                next.extend(kids);
            }
            frontier = next;
        }
        let (r, queries) = audit(z, "d.test", Provider::Generic).await;
        let rep = r.report.as_ref().unwrap();
        assert!(rep.truncated && rep.lookups > LOOKUP_CAP);
        assert!(queries <= 1 + 10, "{queries}");
        assert!(found(&r).contains(&"spf.too_many_lookups"));
    }

    #[tokio::test]
    async fn servfail_inside_the_tree_fails_the_check() {
        let mut z = zone(&[("d.test", "v=spf1 include:a.test -all")]);
        z.insert(("a.test".into(), RType::Txt), Err(FailureKind::ServFail));
        let run = Run::canned(z, AuditOptions::default());
        let e = check(&run, &Budget::new(10), "d.test", Provider::Generic)
            .await
            .unwrap_err();
        assert_eq!((e.name.as_str(), e.kind), ("a.test", FailureKind::ServFail));
    }
}
