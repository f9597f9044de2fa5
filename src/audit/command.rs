//! The edges of the audit: the `audit DOMAIN...` command (targets from the flags or the
//! config, output, exit codes) and the daemon's periodic audit task.

use std::collections::HashSet;
use std::net::SocketAddr;
use std::path::Path;
use std::process::ExitCode;
use std::sync::Arc;
use std::time::Duration;

use hickory_resolver::TokioResolver;
use tokio::sync::watch;
use tokio::task::JoinHandle;

use super::{AuditOptions, Auditor, DomainReport, Target, add_basic_auth_findings, stdout_colour};
use crate::config::{self, Config, Provider};
use crate::resolve::Resolver;

/// Exit code for usage and config errors (the contract's 2).
const EXIT_USAGE: u8 = 2;

/// What `audit` was asked.
#[derive(Debug, Clone)]
pub struct AuditArgs {
    pub domains: Vec<String>,
    pub provider: Option<Provider>,
    pub dkim_selectors: Vec<String>,
    pub json: bool,
}

/// Checks a `--dkim-selector` value (the config's rule: dot-separated LDH labels).
pub fn parse_selector(s: &str) -> Result<String, String> {
    let ok = !s.is_empty()
        && s.split('.').all(|l| {
            !l.is_empty()
                && l.bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
        });
    if ok {
        Ok(s.to_ascii_lowercase())
    } else {
        Err(format!("invalid DKIM selector {s:?}"))
    }
}

/// The targets: with `--provider` or `--dkim-selector`, exactly those; otherwise the
/// config's `dns_audit` entry for the domain (or its mailboxes' provider), if any.
pub fn targets(args: &AuditArgs, cfg: Option<&Config>) -> Vec<Target> {
    let from_flags = args.provider.is_some() || !args.dkim_selectors.is_empty();
    let configured = cfg.map(Config::audit_domains).unwrap_or_default();
    args.domains
        .iter()
        .map(|d| match configured.iter().find(|c| &c.domain == d) {
            Some(c) if !from_flags => Target::from(c),
            _ => Target {
                domain: d.clone(),
                provider: args.provider.unwrap_or(Provider::Generic),
                dkim_selectors: args.dkim_selectors.clone(),
            },
        })
        .collect()
}

/// `audit DOMAIN...`: exit 0 when no finding is an error, 1 when one is or when a
/// domain could not be audited completely (SERVFAIL, timeout: nothing proves it
/// healthy), 2 for usage and config errors.
pub async fn run_command(
    config_file: &Path,
    dns_server: Option<SocketAddr>,
    args: AuditArgs,
) -> ExitCode {
    // The config is optional: it adds the Basic-auth findings of its mailboxes and the
    // provider and selectors of its `dns_audit` domains. Its secrets are not read: the
    // audit never authenticates.
    // Reading it (and its secret files) is file I/O: off the async workers.
    let path = config_file.to_path_buf();
    let loaded = tokio::task::spawn_blocking(move || {
        path.exists().then(|| config::load_without_secrets(&path))
    })
    .await;
    let cfg = match loaded {
        Err(e) => {
            eprintln!("smtp-canary: reading the config: {e}");
            return ExitCode::from(EXIT_USAGE);
        }
        Ok(None) => None,
        Ok(Some(loaded)) => match loaded {
            Ok(c) => Some(c),
            Err(errors) => {
                for e in &errors {
                    eprintln!("{e}");
                }
                eprintln!("config invalid: {} error(s)", errors.len());
                return ExitCode::from(EXIT_USAGE);
            }
        },
    };
    let resolver = match Resolver::new(dns_server) {
        Ok(r) => r,
        Err(e) => {
            eprintln!("smtp-canary: {e}");
            return ExitCode::from(EXIT_USAGE);
        }
    };
    let auditor = Auditor::new(resolver.hickory().clone(), AuditOptions::default());
    let mut reports = auditor.audit_all(&targets(&args, cfg.as_ref())).await;
    if let Some(cfg) = &cfg {
        for r in &mut reports {
            add_basic_auth_findings(r, cfg);
        }
    }
    if args.json {
        let value = match reports.as_slice() {
            [one] => one.to_json(),
            many => serde_json::Value::Array(many.iter().map(DomainReport::to_json).collect()),
        };
        match serde_json::to_string_pretty(&value) {
            Ok(s) => println!("{s}"),
            Err(e) => {
                eprintln!("smtp-canary: encoding JSON: {e}");
                return ExitCode::from(1);
            }
        }
    } else {
        let colour = stdout_colour();
        let texts: Vec<String> = reports.iter().map(|r| r.render_text(colour)).collect();
        print!("{}", texts.join("\n"));
    }
    if reports.iter().any(|r| r.has_errors() || !r.complete()) {
        ExitCode::from(1)
    } else {
        ExitCode::SUCCESS
    }
}

/// What the daemon audits, and how often.
#[derive(Debug, Clone, PartialEq)]
struct Plan {
    targets: Vec<Target>,
    interval: Duration,
}

impl Plan {
    fn of(cfg: &Config) -> Plan {
        Plan {
            targets: cfg.audit_domains().iter().map(Target::from).collect(),
            interval: cfg.dns_audit.interval,
        }
    }
}

/// Where the audit task publishes its reports (the daemon's metrics implement it).
pub trait AuditSink: Send + Sync {
    /// The latest report of a domain.
    fn record_audit(&self, report: &DomainReport);
    /// A domain is no longer audited: its series go.
    fn remove_audit_domain(&self, domain: &str);
}

/// The daemon's audit task: audits the configured domains at start and then every
/// `dns_audit.interval`, publishing each report to an [`AuditSink`].
pub struct AuditTask {
    plan: watch::Sender<Plan>,
    handle: JoinHandle<()>,
}

impl AuditTask {
    pub fn start(
        cfg: &Config,
        resolver: TokioResolver,
        metrics: Arc<dyn AuditSink>,
        stop: watch::Receiver<bool>,
    ) -> AuditTask {
        let (plan, rx) = watch::channel(Plan::of(cfg));
        let auditor = Auditor::new(resolver, AuditOptions::default());
        let handle = tokio::spawn(periodic(auditor, rx, metrics, stop));
        AuditTask { plan, handle }
    }

    /// Takes a reloaded config: a changed set of domains or interval is audited at once;
    /// domains no longer audited lose their series.
    pub fn update(&self, cfg: &Config) {
        self.plan.send_if_modified(|p| {
            let new = Plan::of(cfg);
            let changed = *p != new;
            *p = new;
            changed
        });
    }

    /// Waits for the task to end (after `stop` turned true).
    pub async fn join(self) {
        let _ = self.handle.await;
    }
}

async fn periodic(
    auditor: Auditor,
    mut plan: watch::Receiver<Plan>,
    metrics: Arc<dyn AuditSink>,
    mut stop: watch::Receiver<bool>,
) {
    let mut published: HashSet<String> = HashSet::new();
    loop {
        let Plan { targets, interval } = plan.borrow_and_update().clone();
        let keep: HashSet<String> = targets.iter().map(|t| t.domain.clone()).collect();
        for gone in published.difference(&keep) {
            metrics.remove_audit_domain(gone);
        }
        published.retain(|d| keep.contains(d));
        if !targets.is_empty() {
            tracing::debug!(domains = targets.len(), "DNS audit starting");
            let reports = tokio::select! {
                r = auditor.audit_all(&targets) => r,
                _ = stop.wait_for(|s| *s) => return,
            };
            for r in &reports {
                metrics.record_audit(r);
                super::log_report(r);
                published.insert(r.domain.clone());
            }
        }
        tokio::select! {
            _ = tokio::time::sleep(interval) => {}
            changed = plan.changed() => if changed.is_err() { return },
            _ = stop.wait_for(|s| *s) => return,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn args(provider: Option<Provider>, selectors: &[&str]) -> AuditArgs {
        AuditArgs {
            domains: vec!["d.test".into(), "other.test".into()],
            provider,
            dkim_selectors: selectors.iter().map(|s| s.to_string()).collect(),
            json: false,
        }
    }

    #[test]
    fn targets_from_flags_or_config() {
        let yaml = r#"
mailboxes:
  - name: m
    provider: google
    username: a@d.test
    password_env: PATH
    from: a@d.test
    to: [b@d.test]
    interval: 10m
"#;
        let cfg = crate::config::parse(yaml, Path::new("t.yaml")).unwrap();
        let t = targets(&args(None, &[]), Some(&cfg));
        assert_eq!(
            (t[0].provider, t[0].dkim_selectors.as_slice()),
            (Provider::Google, &["google".to_string()][..])
        );
        assert_eq!(t[1].provider, Provider::Generic);
        let t = targets(&args(None, &["s1"]), Some(&cfg));
        assert_eq!(
            (t[0].provider, t[0].dkim_selectors.as_slice()),
            (Provider::Generic, &["s1".to_string()][..])
        );
        let t = targets(&args(Some(Provider::Microsoft365), &[]), None);
        assert_eq!(t[1].selectors(), ["selector1", "selector2"]);
        assert!(parse_selector("s1.sub-a_b").is_ok());
        assert!(parse_selector("a..b").is_err() && parse_selector("a b").is_err());
    }
}
