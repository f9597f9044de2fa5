//! The DMARC check: `_dmarc.<domain>`, else the organizational domain's record (RFC 7489
//! §6.6.3, organizational domain from the Public Suffix List via the `psl` crate),
//! exactly one record, parsed by mail-auth; p, sp, adkim, aspf and rua reported.

use mail_auth::common::parse::TxtRecordParser;
use mail_auth::dmarc::{Alignment, Dmarc, Policy};

use super::dns::{Answer, Budget, DnsFailure, RType, Run};
use super::findings::{Check, Outcome};

/// What the audit reports about DMARC (`dmarc` in the JSON).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DmarcReport {
    pub record: String,
    /// What applies to the audited domain: `p`, or `sp` when the record is the
    /// organizational domain's. `None` when the record is unusable.
    pub policy: Option<&'static str>,
    /// Where the record was found, e.g. `_dmarc.contoso.com`.
    pub source: String,
    pub p: Option<&'static str>,
    pub sp: Option<&'static str>,
    pub adkim: Option<&'static str>,
    pub aspf: Option<&'static str>,
    pub rua: Vec<String>,
}

/// The DMARC section of one domain's audit.
#[derive(Debug, Default)]
pub struct DmarcResult {
    pub report: Option<DmarcReport>,
    pub outcomes: Vec<Outcome>,
}

fn policy(p: Policy) -> Option<&'static str> {
    match p {
        Policy::None => Some("none"),
        Policy::Quarantine => Some("quarantine"),
        Policy::Reject => Some("reject"),
        Policy::Unspecified => None,
    }
}

fn alignment(a: Alignment) -> &'static str {
    match a {
        Alignment::Relaxed => "r",
        Alignment::Strict => "s",
    }
}

/// The metric value of a policy (`dmarc_policy`): 0 none, 1 quarantine, 2 reject.
pub fn policy_value(p: &str) -> Option<i64> {
    match p {
        "none" => Some(0),
        "quarantine" => Some(1),
        "reject" => Some(2),
        _ => None,
    }
}

/// The organizational domain of `domain`, when it differs from it.
pub fn organizational_domain(domain: &str) -> Option<String> {
    psl::domain_str(domain)
        .filter(|org| *org != domain)
        .map(str::to_string)
}

/// The DMARC records among a name's TXT records: mail-auth answers `InvalidRecordType`
/// for anything that does not start with `v=DMARC1` (RFC 7489 §6.6.3 discards those).
fn dmarc_records(a: &Answer) -> Vec<(String, mail_auth::Result<Dmarc>)> {
    a.txt
        .iter()
        .filter_map(|raw| match Dmarc::parse(raw) {
            Err(mail_auth::Error::Dns(mail_auth::DnsError::InvalidRecordType)) => None,
            r => Some((String::from_utf8_lossy(raw).into_owned(), r)),
        })
        .collect()
}

/// Audits the DMARC policy that applies to `domain`.
pub async fn check(run: &Run, budget: &Budget, domain: &str) -> Result<DmarcResult, DnsFailure> {
    let mut source = format!("_dmarc.{domain}");
    let mut records = dmarc_records(&*run.query(budget, &source, RType::Txt).await?);
    let mut inherited = false;
    let org = organizational_domain(domain);
    if records.is_empty()
        && let Some(org) = &org
    {
        let at_org = format!("_dmarc.{org}");
        records = dmarc_records(&*run.query(budget, &at_org, RType::Txt).await?);
        if !records.is_empty() {
            source = at_org;
            inherited = true;
        }
    }
    let mut out = DmarcResult::default();
    if records.is_empty() {
        let also = org
            .map(|o| format!(" nor at _dmarc.{o}"))
            .unwrap_or_default();
        out.outcomes.push(Outcome::found(
            Check::DmarcMissing,
            format!("no DMARC record at _dmarc.{domain}{also}: large mailbox providers junk or refuse unauthenticated bulk mail without one; publish at least v=DMARC1; p=none; rua=mailto:..."),
        ));
        return Ok(out);
    }
    let from = if inherited {
        format!("{source} (organizational domain)")
    } else {
        source.clone()
    };
    out.outcomes
        .push(Outcome::pass(Check::DmarcMissing, from.clone()));
    let mut report = DmarcReport {
        record: records[0].0.clone(),
        policy: None,
        source: source.clone(),
        p: None,
        sp: None,
        adkim: None,
        aspf: None,
        rua: Vec::new(),
    };
    if records.len() > 1 {
        out.outcomes.push(Outcome::found(
            Check::DmarcMultiple,
            format!(
                "{} DMARC records at {source}: receivers then apply none (RFC 7489 §6.6.3); keep exactly one",
                records.len()
            ),
        ));
        out.report = Some(report);
        return Ok(out);
    }
    out.outcomes
        .push(Outcome::pass(Check::DmarcMultiple, "exactly one record"));
    let dmarc = match records.swap_remove(0).1 {
        Ok(d) => d,
        Err(e) => {
            out.outcomes.push(Outcome::found(
                Check::DmarcSyntax,
                format!("the DMARC record at {source} does not parse ({e}): receivers ignore it"),
            ));
            out.report = Some(report);
            return Ok(out);
        }
    };
    report.p = policy(dmarc.p);
    report.sp = policy(dmarc.sp);
    report.adkim = Some(alignment(dmarc.adkim));
    report.aspf = Some(alignment(dmarc.aspf));
    report.rua = dmarc
        .rua
        .iter()
        .map(|u| format!("mailto:{}", u.uri()))
        .collect();
    report.policy = if inherited { report.sp } else { report.p };
    if report.p.is_none() {
        out.outcomes.push(Outcome::found(
            Check::DmarcSyntax,
            format!("the DMARC record at {source} has no valid p= tag: receivers ignore it (or treat it as p=none)"),
        ));
    } else {
        out.outcomes
            .push(Outcome::pass(Check::DmarcSyntax, report.record.clone()));
    }
    match report.policy {
        Some("none") => {
            let tag = if inherited { "sp" } else { "p" };
            out.outcomes.push(Outcome::found(
                Check::DmarcPolicyNone,
                format!("{tag}=none at {source}: receivers take no action on mail that fails DMARC; move to quarantine, then reject"),
            ));
        }
        Some(p) => out.outcomes.push(Outcome::pass(
            Check::DmarcPolicyNone,
            format!("policy {p} (from {from})"),
        )),
        None => {}
    }
    out.report = Some(report);
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::super::dns::AuditOptions;
    use super::*;

    fn run(entries: &[(&str, &str)]) -> Run {
        Run::canned(Run::txt_zone(entries), AuditOptions::default())
    }

    async fn audit(r: &Run, domain: &str) -> DmarcResult {
        check(r, &Budget::new(10), domain).await.unwrap()
    }

    fn found(r: &DmarcResult) -> Vec<&'static str> {
        r.outcomes
            .iter()
            .filter_map(|o| o.finding())
            .map(|f| f.check.id())
            .collect()
    }

    #[test]
    fn organizational_domains() {
        assert_eq!(
            organizational_domain("a.b.example.co.uk").as_deref(),
            Some("example.co.uk")
        );
        assert_eq!(
            organizational_domain("sub.fallback.test").as_deref(),
            Some("fallback.test")
        );
        assert_eq!(organizational_domain("example.com"), None);
        assert_eq!(organizational_domain("co.uk"), None);
    }

    #[tokio::test]
    async fn subdomain_falls_back_to_the_organizational_domain() {
        let r = run(&[(
            "_dmarc.fallback.test",
            "v=DMARC1; p=reject; sp=quarantine; adkim=s; rua=mailto:d@fallback.test",
        )]);
        let d = audit(&r, "sub.fallback.test").await;
        assert!(found(&d).is_empty(), "{:?}", d.outcomes);
        let rep = d.report.unwrap();
        assert_eq!(rep.source, "_dmarc.fallback.test");
        assert_eq!(
            (rep.policy, rep.p, rep.sp),
            (Some("quarantine"), Some("reject"), Some("quarantine"))
        );
        assert_eq!((rep.adkim, rep.aspf), (Some("s"), Some("r")));
        assert_eq!(rep.rua, ["mailto:d@fallback.test"]);
        // The organizational domain itself uses p.
        let d = audit(&r, "fallback.test").await;
        assert_eq!(d.report.unwrap().policy, Some("reject"));
    }

    #[tokio::test]
    async fn findings() {
        let r = run(&[
            ("_dmarc.none.test", "v=DMARC1; p=none"),
            ("_dmarc.two.test", "v=DMARC1; p=reject"),
            ("_dmarc.two.test", "v=DMARC1; p=none"),
            ("_dmarc.bad.test", "v=DMARC1; p=bogus"),
            ("_dmarc.nop.test", "v=DMARC1; rua=mailto:a@nop.test"),
            ("_dmarc.other.test", "some-verification=1"),
        ]);
        assert_eq!(found(&audit(&r, "none.test").await), ["dmarc.policy_none"]);
        assert_eq!(found(&audit(&r, "two.test").await), ["dmarc.multiple"]);
        assert_eq!(found(&audit(&r, "bad.test").await), ["dmarc.syntax"]);
        assert_eq!(found(&audit(&r, "nop.test").await), ["dmarc.syntax"]);
        let missing = audit(&r, "other.test").await;
        assert_eq!(found(&missing), ["dmarc.missing"]);
        assert!(missing.report.is_none());
    }
}
