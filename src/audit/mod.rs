//! The DNS audit: SPF, DKIM, DMARC and MX of every sender domain, so that a domain
//! whose mail will be junked or refused downstream is found before recipients notice.
//!
//! Records are parsed by mail-auth (never by hand); every lookup goes through our own
//! hickory resolver (`--dns-server` or the system's), via one [`dns::Run`] per audit run:
//! no name is asked twice, independent queries run concurrently, and each domain has a
//! query budget and a deadline. NXDOMAIN is an answer; SERVFAIL and timeouts make the
//! audit incomplete (`audit_success 0`, the last good findings kept).
//!
//! Files: `findings.rs` the check table; `dns.rs` the run (cache, limits, answers);
//! `spf.rs`, `dkim.rs`, `dmarc.rs` one check each; `report.rs` JSON and text;
//! `command.rs` the `audit` command and the daemon's task. This file owns the per-domain
//! orchestration, MX and the audit targets.

mod command;
mod dkim;
mod dmarc;
mod dns;
mod findings;
mod readiness;
mod report;
mod spf;

pub use command::{AuditArgs, AuditSink, AuditTask, parse_selector, run_command};
pub use dkim::{DkimReport, MIN_RSA_BITS, ONE_ACTIVE_SELECTOR, WEAK_RSA_BITS};
pub use dmarc::{DmarcReport, organizational_domain, policy_value};
pub use dns::{Answer, AuditOptions, DnsFailure, FailureKind, RType, Zone};
pub use findings::{CHECKS, Check, CheckInfo, Finding, Outcome, Severity};
pub use readiness::{BASIC_AUTH, BasicAuthFinding, basic_auth_findings};
pub use report::{DomainReport, stdout_colour};
pub use spf::{LOOKUP_LIMIT, SpfReport, VOID_LIMIT};

use std::future::Future;
use std::time::{Duration, Instant};

use futures_util::future::join_all;
use hickory_resolver::TokioResolver;

use crate::config::{AuditDomain, Config, Provider};
use dns::{Budget, Run};

/// Why part of an audit has no answer.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum AuditError {
    #[error(transparent)]
    Dns(#[from] DnsFailure),
    #[error("{section}: no answer within the audit's deadline of {limit:?}")]
    Deadline {
        section: &'static str,
        limit: Duration,
    },
}

/// A domain name given on the command line that is not one.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("invalid domain {0:?}: expected a DNS name such as contoso.com")]
pub struct InvalidDomain(pub String);

/// Parses a domain argument: lower case, no trailing dot, LDH labels (and `_`).
pub fn parse_domain(s: &str) -> Result<String, InvalidDomain> {
    let d = dns::normalize(s);
    let ok = d.contains('.')
        && d.len() <= 253
        && d.parse::<std::net::IpAddr>().is_err()
        && d.split('.').all(|l| {
            !l.is_empty()
                && l.len() <= 63
                && !l.starts_with('-')
                && !l.ends_with('-')
                && l.bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
        });
    if ok {
        Ok(d)
    } else {
        Err(InvalidDomain(s.to_string()))
    }
}

/// One domain to audit.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Target {
    pub domain: String,
    /// Which SPF include and DKIM selectors to expect (`generic`: none).
    pub provider: Provider,
    /// Selectors to check besides the provider's.
    pub dkim_selectors: Vec<String>,
}

impl Target {
    /// The provider's selectors, then the configured ones, each once.
    pub fn selectors(&self) -> Vec<String> {
        let mut out: Vec<String> = Vec::new();
        let preset = self
            .provider
            .preset()
            .dkim_selectors
            .iter()
            .map(|s| s.to_string());
        for s in preset.chain(self.dkim_selectors.iter().map(|s| s.to_ascii_lowercase())) {
            if !out.contains(&s) {
                out.push(s);
            }
        }
        out
    }
}

impl From<&AuditDomain> for Target {
    fn from(d: &AuditDomain) -> Target {
        Target {
            domain: d.domain.clone(),
            provider: d.provider,
            dkim_selectors: d.dkim_selectors.clone(),
        }
    }
}

/// Runs audits with one resolver.
#[derive(Clone)]
pub struct Auditor {
    resolver: TokioResolver,
    opts: AuditOptions,
}

impl Auditor {
    pub fn new(resolver: TokioResolver, opts: AuditOptions) -> Auditor {
        Auditor { resolver, opts }
    }

    /// Audits every target concurrently, in one run (shared includes are asked once).
    pub async fn audit_all(&self, targets: &[Target]) -> Vec<DomainReport> {
        let run = Run::new(self.resolver.clone(), self.opts);
        let reports = join_all(targets.iter().map(|t| audit_one(&run, t))).await;
        tracing::debug!(
            domains = targets.len(),
            queries = run.queries_sent(),
            "DNS audit run done"
        );
        reports
    }
}

/// Audits `targets` against canned answers instead of DNS, in one run: every record is
/// parsed and judged exactly as [`Auditor::audit_all`] does, but nothing is sent. For
/// tests and the fuzz harness, which must not depend on a resolver.
pub async fn audit_canned(zone: Zone, targets: &[Target], opts: AuditOptions) -> Vec<DomainReport> {
    let run = Run::canned(zone, opts);
    join_all(targets.iter().map(|t| audit_one(&run, t))).await
}

/// Runs `fut` until the domain's deadline.
async fn within<T>(
    deadline: tokio::time::Instant,
    limit: Duration,
    section: &'static str,
    fut: impl Future<Output = Result<T, DnsFailure>>,
) -> Result<T, AuditError> {
    match tokio::time::timeout_at(deadline, fut).await {
        Ok(r) => r.map_err(AuditError::from),
        Err(_) => Err(AuditError::Deadline { section, limit }),
    }
}

/// Audits one domain: the four sections at once, each under the same deadline, so a
/// section that answered keeps its result when another one times out.
async fn audit_one(run: &Run, t: &Target) -> DomainReport {
    let started = Instant::now();
    let limit = run.options().deadline;
    let deadline = tokio::time::Instant::now() + limit;
    let budget = Budget::new(run.options().max_queries);
    let selectors = t.selectors();
    let d = t.domain.as_str();
    let (spf, dkim, dmarc, mx) = tokio::join!(
        within(
            deadline,
            limit,
            "spf",
            spf::check(run, &budget, d, t.provider)
        ),
        within(
            deadline,
            limit,
            "dkim",
            dkim::check(run, &budget, d, t.provider, &selectors)
        ),
        within(deadline, limit, "dmarc", dmarc::check(run, &budget, d)),
        within(deadline, limit, "mx", mx(run, &budget, d)),
    );
    let mut r = DomainReport {
        domain: t.domain.clone(),
        spf: None,
        dkim: Vec::new(),
        dmarc: None,
        mx: None,
        outcomes: Vec::new(),
        errors: Vec::new(),
        elapsed: Duration::ZERO,
    };
    match spf {
        Ok(s) => {
            r.spf = s.report;
            r.outcomes.extend(s.outcomes);
        }
        Err(e) => r.errors.push(e),
    }
    match dkim {
        Ok(k) => {
            r.dkim = k.reports;
            r.outcomes.extend(k.outcomes);
        }
        Err(e) => r.errors.push(e),
    }
    match dmarc {
        Ok(m) => {
            r.dmarc = m.report;
            r.outcomes.extend(m.outcomes);
        }
        Err(e) => r.errors.push(e),
    }
    match mx {
        Ok((list, outcome)) => {
            r.mx = list;
            r.outcomes.push(outcome);
        }
        Err(e) => r.errors.push(e),
    }
    r.elapsed = started.elapsed();
    r
}

/// MX presence (info only: it matters for bounces and replies, not for sending).
async fn mx(
    run: &Run,
    budget: &Budget,
    domain: &str,
) -> Result<(Option<Vec<String>>, Outcome), DnsFailure> {
    let answer = run.query(budget, domain, RType::Mx).await?;
    let mut mx = answer.mx.clone();
    mx.sort();
    if mx.is_empty() {
        return Ok((
            None,
            Outcome::found(
                Check::MxMissing,
                format!(
                    "no MX record at {domain}: bounces and replies to its addresses cannot be delivered"
                ),
            ),
        ));
    }
    let list: Vec<String> = mx.iter().map(|(p, host)| format!("{p} {host}")).collect();
    // RFC 7505 null MX: the domain says it accepts no mail at all.
    if mx.len() == 1 && mx[0].1 == "." {
        return Ok((
            Some(list),
            Outcome::found(
                Check::MxMissing,
                format!(
                    "{domain} publishes a null MX (RFC 7505): bounces and replies to its addresses are refused"
                ),
            ),
        ));
    }
    let detail = list.join(", ");
    Ok((Some(list), Outcome::pass(Check::MxMissing, detail)))
}

/// Adds the `auth.basic_auth_retiring` findings of `cfg`'s mailboxes for the report's
/// domain ([`basic_auth_findings`]).
pub fn add_basic_auth_findings(report: &mut DomainReport, cfg: &Config) {
    let found: Vec<_> = basic_auth_findings(cfg)
        .into_iter()
        .filter(|f| f.domain == report.domain)
        .collect();
    if found.is_empty() {
        report.outcomes.push(Outcome::pass(
            Check::AuthBasicAuthRetiring,
            "no microsoft365 mailbox of this domain logs in with a password",
        ));
    }
    for f in found {
        report
            .outcomes
            .push(Outcome::found(Check::AuthBasicAuthRetiring, f.message()));
    }
}

fn log_report(r: &DomainReport) {
    let ids: Vec<String> = r
        .findings()
        .map(|f| format!("{}:{}", f.check.id(), f.severity.as_str()))
        .collect();
    if r.complete() {
        tracing::info!(domain = %r.domain, findings = %ids.join(","), seconds = r.elapsed.as_secs_f64(), "DNS audit done");
    } else {
        let errors: Vec<String> = r.errors.iter().map(ToString::to_string).collect();
        tracing::warn!(domain = %r.domain, error = %errors.join("; "), "DNS audit incomplete; keeping the last complete audit's findings");
    }
}

#[cfg(test)]
mod tests {
    use std::collections::HashMap;

    use super::dns::Answer;
    use super::*;

    #[test]
    fn domain_arguments() {
        assert_eq!(parse_domain("Contoso.COM.").as_deref(), Ok("contoso.com"));
        assert!(parse_domain("contoso").is_err());
        assert!(parse_domain("127.0.0.1").is_err());
        assert!(parse_domain("a..b").is_err());
        assert!(parse_domain("-a.b").is_err());
        assert!(parse_domain("a b.c").is_err());
    }

    #[test]
    fn selectors_are_preset_then_configured_once() {
        let t = Target {
            domain: "d.test".into(),
            provider: Provider::Microsoft365,
            dkim_selectors: vec!["selector2".into(), "Extra".into()],
        };
        assert_eq!(t.selectors(), ["selector1", "selector2", "extra"]);
    }

    fn txt(s: &str) -> Result<Answer, FailureKind> {
        Ok(Answer {
            txt: vec![s.as_bytes().to_vec()],
            ..Answer::default()
        })
    }

    #[tokio::test]
    async fn a_failed_section_keeps_the_others() {
        let mut z = HashMap::new();
        z.insert(("d.test".to_string(), RType::Txt), txt("v=spf1 -all"));
        z.insert(
            ("_dmarc.d.test".to_string(), RType::Txt),
            Err(FailureKind::ServFail),
        );
        z.insert(
            ("d.test".to_string(), RType::Mx),
            Ok(Answer {
                mx: vec![(10, "mx.d.test.".into())],
                ..Answer::default()
            }),
        );
        let run = Run::canned(z, AuditOptions::default());
        let t = Target {
            domain: "d.test".into(),
            provider: Provider::Generic,
            dkim_selectors: vec![],
        };
        let r = audit_one(&run, &t).await;
        assert!(!r.complete());
        assert_eq!(r.findings().count(), 0, "{:?}", r.outcomes);
        assert!(r.spf.is_some() && r.dmarc.is_none());
        let j = r.to_json();
        assert_eq!(j["error"], "_dmarc.d.test TXT: SERVFAIL");
        assert_eq!(j["mx"][0], "10 mx.d.test.");
        assert_eq!(j["spf"]["all"], "-all");
    }

    #[tokio::test]
    async fn json_has_the_contract_shape() {
        let mut z = HashMap::new();
        z.insert(
            ("d.test".to_string(), RType::Txt),
            txt("v=spf1 include:spf.protection.outlook.com -all"),
        );
        z.insert(
            ("spf.protection.outlook.com".to_string(), RType::Txt),
            txt("v=spf1 ip4:192.0.2.0/24 -all"),
        );
        z.insert(
            ("_dmarc.d.test".to_string(), RType::Txt),
            txt("v=DMARC1; p=none; rua=mailto:r@d.test"),
        );
        let run = Run::canned(z, AuditOptions::default());
        let t = Target {
            domain: "d.test".into(),
            provider: Provider::Microsoft365,
            dkim_selectors: vec![],
        };
        let r = audit_one(&run, &t).await;
        assert!(r.complete());
        let j = r.to_json();
        let keys: Vec<&str> = j.as_object().unwrap().keys().map(String::as_str).collect();
        assert_eq!(
            keys,
            ["domain", "spf", "dkim", "dmarc", "mx", "findings", "error"]
        );
        assert_eq!(
            j["spf"],
            serde_json::json!({"record": "v=spf1 include:spf.protection.outlook.com -all", "lookups": 1, "void_lookups": 0, "all": "-all"})
        );
        assert_eq!(j["dkim"][0]["selector"], "selector1");
        assert_eq!(j["dkim"][0]["present"], false);
        assert!(j["dkim"][0]["bits"].is_null());
        assert_eq!(j["dmarc"]["policy"], "none");
        assert_eq!(j["dmarc"]["source"], "_dmarc.d.test");
        assert!(j["mx"].is_null());
        assert!(j["error"].is_null());
        let ids: Vec<&str> = j["findings"]
            .as_array()
            .unwrap()
            .iter()
            .map(|f| f["check"].as_str().unwrap())
            .collect();
        assert_eq!(ids, ["dkim.missing", "dmarc.policy_none", "mx.missing"]);
        let text = r.render_text(false);
        assert!(
            text.starts_with("d.test: fail (1 error(s), 1 warning(s), 1 info)"),
            "{text}"
        );
        assert!(
            text.contains("  pass  spf.too_many_lookups         1 of 10 DNS lookups\n"),
            "{text}"
        );
        assert!(text.contains("  warn  dmarc.policy_none"), "{text}");
        assert!(text.contains("  info  mx.missing"), "{text}");
        assert!(!text.contains('\x1b'));
        assert!(r.render_text(true).contains("\x1b[31mfail\x1b[0m"));
    }

    #[test]
    fn basic_auth_findings_come_from_the_config() {
        let yaml = r#"
mailboxes:
  - name: m365-password
    provider: microsoft365
    username: a@d.test
    password_env: PATH
    from: a@d.test
    to: [b@d.test]
"#;
        let cfg = crate::config::parse(yaml, std::path::Path::new("t.yaml")).unwrap();
        let mut r = DomainReport {
            domain: "d.test".into(),
            spf: None,
            dkim: vec![],
            dmarc: None,
            mx: None,
            outcomes: vec![],
            errors: vec![],
            elapsed: Duration::ZERO,
        };
        add_basic_auth_findings(&mut r, &cfg);
        let f: Vec<&Finding> = r.findings().collect();
        assert_eq!(f.len(), 1);
        assert_eq!(
            (f[0].check.id(), f[0].severity),
            ("auth.basic_auth_retiring", Severity::Warning)
        );
        assert!(f[0].message.contains("m365-password"));
    }
}
