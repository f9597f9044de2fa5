//! Every metric smtp-canary exports, defined in one place, on one registry.
//!
//! Names, types and labels are the public contract (`smtp_canary_` prefix). Per-mailbox
//! counters are created at zero when a mailbox is registered, so `rate()` and
//! `increase()` alerts see the first failure. Failure counters are pre-created once per
//! class (with empty `phase` and `code`) for the same reason: `sum by (class)` then starts
//! from zero; the real series carry phase and code.

use std::collections::{HashMap, HashSet};
use std::sync::Mutex;

use prometheus::{
    Encoder, Gauge, GaugeVec, HistogramOpts, HistogramVec, IntCounterVec, IntGauge, IntGaugeVec,
    Opts, Registry, TextEncoder,
};

use crate::classify::Class;
use crate::config::{Mailbox, Mechanism};
use crate::probe::ProbeResult;
use crate::quota::{self, Ledger};
use crate::smtp::Phase;
use crate::util::unix;

const NS: &str = "smtp_canary";

/// Histogram buckets for phase durations: 5 ms to 60 s.
pub const PHASE_BUCKETS: &[f64] = &[
    0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 20.0, 30.0, 60.0,
];

/// Why a due probe did not run (`reason` label); owned by the send gate.
pub use crate::gate::SkipReason;

/// The exporter's metrics.
pub struct Metrics {
    registry: Registry,
    pub probe_success: IntGaugeVec,
    pub probe_duration_seconds: GaugeVec,
    pub probe_phase_duration_seconds: GaugeVec,
    pub probe_timestamp_seconds: GaugeVec,
    pub last_success_timestamp_seconds: GaugeVec,
    pub phase_seconds: HistogramVec,
    pub probes_total: IntCounterVec,
    pub probe_failures_total: IntCounterVec,
    pub probes_skipped_total: IntCounterVec,
    pub tls_cert_not_after_timestamp_seconds: GaugeVec,
    pub tls_version_info: IntGaugeVec,
    pub auth_mechanism_info: IntGaugeVec,
    pub oauth_token_expiry_timestamp_seconds: GaugeVec,
    pub oauth_token_failures_total: IntCounterVec,
    pub quota_limit: IntGaugeVec,
    pub quota_used: IntGaugeVec,
    pub budget_remaining: IntGaugeVec,
    pub audit_success: IntGaugeVec,
    pub audit_finding: IntGaugeVec,
    pub spf_dns_lookups: IntGaugeVec,
    pub dkim_key_bits: IntGaugeVec,
    pub dmarc_policy: IntGaugeVec,
    pub build_info: IntGaugeVec,
    pub config_last_reload_successful: IntGauge,
    pub config_last_reload_success_timestamp_seconds: Gauge,
    /// The exporter's own health: how late probes start against their schedule.
    pub scheduler_lateness_seconds: prometheus::Histogram,
    /// Label values seen per mailbox for the vectors whose labels are open-ended, so a
    /// removed mailbox's series can all be deleted.
    seen: Mutex<HashMap<String, Seen>>,
    before_render: Mutex<Option<Box<dyn Fn() + Send + Sync>>>,
}

#[derive(Default)]
struct Seen {
    failures: HashSet<(String, String, String)>,
    tls_version: Option<String>,
    mechanism: Option<Mechanism>,
    phases: HashSet<Phase>,
    oauth_reasons: HashSet<String>,
}

fn opts(name: &str, help: &str) -> Opts {
    Opts::new(name, help).namespace(NS)
}

macro_rules! vec_metric {
    ($reg:expr, $ty:ty, $name:expr, $help:expr, [$($label:expr),*]) => {{
        let m = <$ty>::new(opts($name, $help), &[$($label),*]).expect("static metric definition");
        $reg.register(Box::new(m.clone())).expect("unique metric name");
        m
    }};
}

macro_rules! scalar_metric {
    ($reg:expr, $ty:ty, $name:expr, $help:expr) => {{
        let m = <$ty>::with_opts(opts($name, $help)).expect("static metric definition");
        $reg.register(Box::new(m.clone()))
            .expect("unique metric name");
        m
    }};
}

impl Metrics {
    /// Defines and registers every metric. Panics only on a programming error in the
    /// static definitions below (caught by any test).
    pub fn new() -> Metrics {
        let r = Registry::new();
        let phase_seconds = HistogramVec::new(
            HistogramOpts::new(
                "phase_seconds",
                "Duration of each probe phase, every probe.",
            )
            .namespace(NS)
            .buckets(PHASE_BUCKETS.to_vec()),
            &["mailbox", "phase"],
        )
        .expect("static metric definition");
        r.register(Box::new(phase_seconds.clone()))
            .expect("unique metric name");
        let m = Metrics {
            probe_success: vec_metric!(
                r,
                IntGaugeVec,
                "probe_success",
                "1 if the last probe's canary was accepted after DATA.",
                ["mailbox"]
            ),
            probe_duration_seconds: vec_metric!(
                r,
                GaugeVec,
                "probe_duration_seconds",
                "Total duration of the last probe.",
                ["mailbox"]
            ),
            probe_phase_duration_seconds: vec_metric!(
                r,
                GaugeVec,
                "probe_phase_duration_seconds",
                "Duration of each phase of the last probe.",
                ["mailbox", "phase"]
            ),
            probe_timestamp_seconds: vec_metric!(
                r,
                GaugeVec,
                "probe_timestamp_seconds",
                "When the last probe ended (Unix seconds).",
                ["mailbox"]
            ),
            last_success_timestamp_seconds: vec_metric!(
                r,
                GaugeVec,
                "last_success_timestamp_seconds",
                "When a probe last succeeded (Unix seconds).",
                ["mailbox"]
            ),
            phase_seconds,
            probes_total: vec_metric!(r, IntCounterVec, "probes_total", "Probes run.", ["mailbox"]),
            probe_failures_total: vec_metric!(
                r,
                IntCounterVec,
                "probe_failures_total",
                "Failed probes by phase, class and reply code.",
                ["mailbox", "phase", "class", "code"]
            ),
            probes_skipped_total: vec_metric!(
                r,
                IntCounterVec,
                "probes_skipped_total",
                "Probes not run, by reason.",
                ["mailbox", "reason"]
            ),
            tls_cert_not_after_timestamp_seconds: vec_metric!(
                r,
                GaugeVec,
                "tls_cert_not_after_timestamp_seconds",
                "Earliest notAfter in the server's certificate chain (Unix seconds).",
                ["mailbox"]
            ),
            tls_version_info: vec_metric!(
                r,
                IntGaugeVec,
                "tls_version_info",
                "1 for the TLS version of the last probe.",
                ["mailbox", "version"]
            ),
            auth_mechanism_info: vec_metric!(
                r,
                IntGaugeVec,
                "auth_mechanism_info",
                "1 for the SASL mechanism the last probe used.",
                ["mailbox", "mechanism"]
            ),
            oauth_token_expiry_timestamp_seconds: vec_metric!(
                r,
                GaugeVec,
                "oauth_token_expiry_timestamp_seconds",
                "Expiry of the cached OAuth access token (Unix seconds).",
                ["mailbox"]
            ),
            oauth_token_failures_total: vec_metric!(
                r,
                IntCounterVec,
                "oauth_token_failures_total",
                "OAuth token requests that failed, by reason.",
                ["mailbox", "reason"]
            ),
            quota_limit: vec_metric!(
                r,
                IntGaugeVec,
                "quota_limit",
                "The provider's sending limit per window and unit.",
                ["mailbox", "window", "unit"]
            ),
            quota_used: vec_metric!(
                r,
                IntGaugeVec,
                "quota_used",
                "The canary's own sends in the rolling window.",
                ["mailbox", "window", "unit"]
            ),
            budget_remaining: vec_metric!(
                r,
                IntGaugeVec,
                "budget_remaining",
                "Canary sends left in the rolling day under the budget.",
                ["mailbox"]
            ),
            audit_success: vec_metric!(
                r,
                IntGaugeVec,
                "audit_success",
                "1 if the last DNS audit of the domain got answers.",
                ["domain"]
            ),
            audit_finding: vec_metric!(
                r,
                IntGaugeVec,
                "audit_finding",
                "1 for each finding the last DNS audit holds.",
                ["domain", "check", "severity"]
            ),
            spf_dns_lookups: vec_metric!(
                r,
                IntGaugeVec,
                "spf_dns_lookups",
                "DNS-querying terms the SPF policy needs (RFC 7208 limit: 10).",
                ["domain"]
            ),
            dkim_key_bits: vec_metric!(
                r,
                IntGaugeVec,
                "dkim_key_bits",
                "DKIM public key size in bits.",
                ["domain", "selector"]
            ),
            dmarc_policy: vec_metric!(
                r,
                IntGaugeVec,
                "dmarc_policy",
                "DMARC policy: 0 none, 1 quarantine, 2 reject.",
                ["domain"]
            ),
            build_info: vec_metric!(
                r,
                IntGaugeVec,
                "build_info",
                "Build information; always 1.",
                ["version", "revision"]
            ),
            config_last_reload_successful: scalar_metric!(
                r,
                IntGauge,
                "config_last_reload_successful",
                "1 if the last config (re)load succeeded."
            ),
            config_last_reload_success_timestamp_seconds: scalar_metric!(
                r,
                Gauge,
                "config_last_reload_success_timestamp_seconds",
                "When the config was last loaded successfully (Unix seconds)."
            ),
            scheduler_lateness_seconds: {
                let h = prometheus::Histogram::with_opts(
                    HistogramOpts::new(
                        "scheduler_lateness_seconds",
                        "How late probes start against their schedule (exporter health, not a contract metric).",
                    )
                    .namespace(NS)
                    .buckets(vec![0.001, 0.005, 0.01, 0.05, 0.1, 0.5, 1.0, 5.0, 30.0]),
                )
                .expect("static metric definition");
                r.register(Box::new(h.clone())).expect("unique metric name");
                h
            },
            registry: r,
            seen: Mutex::new(HashMap::new()),
            before_render: Mutex::new(None),
        };
        m.build_info
            .with_label_values(&[
                env!("CARGO_PKG_VERSION"),
                option_env!("SMTP_CANARY_REVISION").unwrap_or("unknown"),
            ])
            .set(1);
        m
    }

    fn seen(&self) -> std::sync::MutexGuard<'_, HashMap<String, Seen>> {
        // Poisoning only means a panic elsewhere; the label bookkeeping stays usable.
        self.seen.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Creates a mailbox's counters at zero.
    pub fn register_mailbox(&self, mb: &Mailbox) {
        let name = mb.name.as_str();
        self.probes_total.with_label_values(&[name]);
        for r in SkipReason::ALL {
            self.probes_skipped_total
                .with_label_values(&[name, r.as_str()]);
        }
        for c in Class::ALL {
            self.probe_failures_total
                .with_label_values(&[name, "", c.as_str(), ""]);
        }
        self.seen().entry(name.to_owned()).or_default();
    }

    /// Deletes every series of a mailbox that is no longer configured.
    pub fn remove_mailbox(&self, name: &str) {
        let seen = self.seen().remove(name).unwrap_or_default();
        let _ = self.probe_success.remove_label_values(&[name]);
        let _ = self.probe_duration_seconds.remove_label_values(&[name]);
        let _ = self.probe_timestamp_seconds.remove_label_values(&[name]);
        let _ = self
            .last_success_timestamp_seconds
            .remove_label_values(&[name]);
        let _ = self.probes_total.remove_label_values(&[name]);
        let _ = self
            .tls_cert_not_after_timestamp_seconds
            .remove_label_values(&[name]);
        let _ = self
            .oauth_token_expiry_timestamp_seconds
            .remove_label_values(&[name]);
        let _ = self.budget_remaining.remove_label_values(&[name]);
        for p in Phase::ALL {
            let _ = self
                .probe_phase_duration_seconds
                .remove_label_values(&[name, p.as_str()]);
            let _ = self.phase_seconds.remove_label_values(&[name, p.as_str()]);
        }
        for r in SkipReason::ALL {
            let _ = self
                .probes_skipped_total
                .remove_label_values(&[name, r.as_str()]);
        }
        for c in Class::ALL {
            let _ = self
                .probe_failures_total
                .remove_label_values(&[name, "", c.as_str(), ""]);
        }
        for (p, c, code) in &seen.failures {
            let _ = self
                .probe_failures_total
                .remove_label_values(&[name, p, c, code]);
        }
        if let Some(v) = &seen.tls_version {
            let _ = self.tls_version_info.remove_label_values(&[name, v]);
        }
        if let Some(m) = seen.mechanism {
            let _ = self
                .auth_mechanism_info
                .remove_label_values(&[name, m.as_str()]);
        }
        for reason in &seen.oauth_reasons {
            let _ = self
                .oauth_token_failures_total
                .remove_label_values(&[name, reason]);
        }
        for (w, u) in quota::WINDOWS {
            let labels = [name, w.as_str(), u.as_str()];
            let _ = self.quota_limit.remove_label_values(&labels);
            let _ = self.quota_used.remove_label_values(&labels);
        }
    }

    /// Records the outcome of one probe.
    pub fn record(&self, r: &ProbeResult) {
        let name = r.mailbox.as_str();
        let mut seen_all = self.seen();
        let seen = seen_all.entry(name.to_owned()).or_default();

        self.probes_total.with_label_values(&[name]).inc();
        self.probe_success
            .with_label_values(&[name])
            .set(i64::from(r.success()));
        self.probe_duration_seconds
            .with_label_values(&[name])
            .set(r.total.as_secs_f64());
        let now = unix(r.finished_at) as f64;
        self.probe_timestamp_seconds
            .with_label_values(&[name])
            .set(now);
        if r.success() {
            self.last_success_timestamp_seconds
                .with_label_values(&[name])
                .set(now);
        }

        // The phase gauges describe the last probe only: drop phases it did not run.
        let ran: HashSet<Phase> = r.phases.iter().map(|(p, _)| *p).collect();
        for p in seen.phases.difference(&ran) {
            let _ = self
                .probe_phase_duration_seconds
                .remove_label_values(&[name, p.as_str()]);
        }
        for (p, d) in &r.phases {
            let secs = d.as_secs_f64();
            self.probe_phase_duration_seconds
                .with_label_values(&[name, p.as_str()])
                .set(secs);
            self.phase_seconds
                .with_label_values(&[name, p.as_str()])
                .observe(secs);
        }
        seen.phases = ran;

        if let Some(f) = &r.failure {
            let key = (
                f.phase.as_str().to_owned(),
                f.class.as_str().to_owned(),
                f.code.clone(),
            );
            self.probe_failures_total
                .with_label_values(&[name, &key.0, &key.1, &key.2])
                .inc();
            seen.failures.insert(key);
        }

        if let Some(tls) = &r.tls {
            if let Some(t) = tls.cert_not_after {
                self.tls_cert_not_after_timestamp_seconds
                    .with_label_values(&[name])
                    .set(t as f64);
            }
            if seen.tls_version.as_deref() != Some(tls.version.as_str()) {
                if let Some(old) = seen.tls_version.take() {
                    let _ = self.tls_version_info.remove_label_values(&[name, &old]);
                }
                self.tls_version_info
                    .with_label_values(&[name, &tls.version])
                    .set(1);
                seen.tls_version = Some(tls.version.clone());
            }
        }
        if let Some(m) = r.mechanism
            && seen.mechanism != Some(m)
        {
            if let Some(old) = seen.mechanism.take() {
                let _ = self
                    .auth_mechanism_info
                    .remove_label_values(&[name, old.as_str()]);
            }
            self.auth_mechanism_info
                .with_label_values(&[name, m.as_str()])
                .set(1);
            seen.mechanism = Some(m);
        }
    }

    /// Publishes a mailbox's quota use, limits and remaining budget.
    pub fn record_quota(&self, mb: &Mailbox, ledger: &Ledger, budget: u32, now: u64) {
        let name = mb.name.as_str();
        for (w, u) in quota::WINDOWS {
            let labels = [name, w.as_str(), u.as_str()];
            self.quota_used
                .with_label_values(&labels)
                .set(ledger.used(w, u, now) as i64);
            match quota::limit(&mb.limits, w, u) {
                Some(limit) => self
                    .quota_limit
                    .with_label_values(&labels)
                    .set(i64::from(limit)),
                // A limit removed by a reload must not linger as a series.
                None => {
                    let _ = self.quota_limit.remove_label_values(&labels);
                }
            }
        }
        self.budget_remaining
            .with_label_values(&[name])
            .set(ledger.budget_remaining(budget, now).max(0));
    }

    pub fn observe_lateness(&self, late: std::time::Duration) {
        self.scheduler_lateness_seconds.observe(late.as_secs_f64());
    }

    pub fn skipped(&self, mailbox: &str, reason: SkipReason) {
        self.probes_skipped_total
            .with_label_values(&[mailbox, reason.as_str()])
            .inc();
    }

    /// Sets `audit_finding{domain, check="auth.basic_auth_retiring", severity="warning"}`
    /// to 1 for exactly these domains (see `audit::basic_auth_findings`). Only series with
    /// this check are ever set or removed here, so the DNS audit's own per-domain
    /// updates and this never delete each other's findings.
    pub fn set_basic_auth_findings<'a>(&self, domains: impl IntoIterator<Item = &'a str>) {
        use crate::audit::BASIC_AUTH;
        let (check, severity) = (BASIC_AUTH.id(), BASIC_AUTH.severity().as_str());
        let want: HashSet<&str> = domains.into_iter().collect();
        // Every basic-auth series whose domain no longer has the finding.
        for labels in label_sets(&self.audit_finding, &["domain", "check", "severity"]) {
            if labels[1] == check && !want.contains(labels[0].as_str()) {
                let _ = self
                    .audit_finding
                    .remove_label_values(&[&labels[0], check, &labels[2]]);
            }
        }
        for domain in want {
            self.audit_finding
                .with_label_values(&[domain, check, severity])
                .set(1);
        }
    }

    /// Publishes one domain's DNS audit. An incomplete audit (SERVFAIL, timeout) only
    /// sets `audit_success` to 0: it says nothing about the records, so the last
    /// complete audit's series stay. A complete one replaces the domain's DNS series,
    /// removing findings and selectors that are gone; `auth.basic_auth_retiring` series
    /// are the OAuth work's ([`Metrics::set_basic_auth_findings`]) and never touched.
    pub fn record_audit(&self, r: &crate::audit::DomainReport) {
        use crate::audit::Check;
        let d = r.domain.as_str();
        self.audit_success
            .with_label_values(&[d])
            .set(i64::from(r.complete()));
        if !r.complete() {
            return;
        }
        let owned_elsewhere = Check::AuthBasicAuthRetiring.id();
        let want: HashSet<(&str, &str)> = r
            .findings()
            .filter(|f| f.check != Check::AuthBasicAuthRetiring)
            .map(|f| (f.check.id(), f.severity.as_str()))
            .collect();
        for labels in series_of(&self.audit_finding, d, &["domain", "check", "severity"]) {
            let (check, severity) = (labels[1].as_str(), labels[2].as_str());
            if check != owned_elsewhere && !want.contains(&(check, severity)) {
                let _ = self
                    .audit_finding
                    .remove_label_values(&[d, check, severity]);
            }
        }
        for (check, severity) in &want {
            self.audit_finding
                .with_label_values(&[d, check, severity])
                .set(1);
        }
        match &r.spf {
            Some(spf) => self
                .spf_dns_lookups
                .with_label_values(&[d])
                .set(i64::from(spf.lookups)),
            None => {
                let _ = self.spf_dns_lookups.remove_label_values(&[d]);
            }
        }
        let keys: HashMap<&str, u32> = r
            .dkim
            .iter()
            .filter_map(|k| Some((k.selector.as_str(), k.bits?)))
            .collect();
        for labels in series_of(&self.dkim_key_bits, d, &["domain", "selector"]) {
            if !keys.contains_key(labels[1].as_str()) {
                let _ = self.dkim_key_bits.remove_label_values(&[d, &labels[1]]);
            }
        }
        for (selector, bits) in keys {
            self.dkim_key_bits
                .with_label_values(&[d, selector])
                .set(i64::from(bits));
        }
        match r
            .dmarc
            .as_ref()
            .and_then(|m| m.policy)
            .and_then(crate::audit::policy_value)
        {
            Some(v) => self.dmarc_policy.with_label_values(&[d]).set(v),
            None => {
                let _ = self.dmarc_policy.remove_label_values(&[d]);
            }
        }
    }

    /// Deletes the DNS audit's series of a domain that is no longer audited (not the
    /// `auth.basic_auth_retiring` ones, see [`Metrics::record_audit`]).
    pub fn remove_audit_domain(&self, domain: &str) {
        let _ = self.audit_success.remove_label_values(&[domain]);
        let _ = self.spf_dns_lookups.remove_label_values(&[domain]);
        let _ = self.dmarc_policy.remove_label_values(&[domain]);
        for labels in series_of(
            &self.audit_finding,
            domain,
            &["domain", "check", "severity"],
        ) {
            if labels[1] != crate::audit::Check::AuthBasicAuthRetiring.id() {
                let _ = self
                    .audit_finding
                    .remove_label_values(&[domain, &labels[1], &labels[2]]);
            }
        }
        for labels in series_of(&self.dkim_key_bits, domain, &["domain", "selector"]) {
            let _ = self
                .dkim_key_bits
                .remove_label_values(&[domain, &labels[1]]);
        }
    }

    /// Marks a config (re)load.
    pub fn config_loaded(&self, ok: bool) {
        self.config_last_reload_successful.set(i64::from(ok));
        if ok {
            let now = unix(std::time::SystemTime::now()) as f64;
            self.config_last_reload_success_timestamp_seconds.set(now);
        }
    }

    /// The Prometheus text exposition of every metric.
    /// Sets what runs before each render (the scheduler publishes the rolling quota
    /// windows as of the scrape).
    pub fn set_before_render(&self, f: Box<dyn Fn() + Send + Sync>) {
        *self.before_render.lock().unwrap_or_else(|e| e.into_inner()) = Some(f);
    }

    pub fn render(&self) -> String {
        if let Some(f) = self
            .before_render
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .as_ref()
        {
            f();
        }
        let mut buf = Vec::with_capacity(16 * 1024);
        let families = self.registry.gather();
        // Encoding into a Vec cannot fail for well-formed families.
        if let Err(e) = TextEncoder::new().encode(&families, &mut buf) {
            tracing::error!(error = %e, "encoding metrics failed");
        }
        let out = String::from_utf8(buf).unwrap_or_default();
        drop(families);
        // Trimming walks every malloc arena: worth it only after a big render.
        if out.len() > 8 << 20 {
            release_free_memory();
        }
        out
    }

    pub fn registry(&self) -> &Registry {
        &self.registry
    }
}

/// The label values, in `names` order, of every series of `vec` for `domain` (the
/// exposition sorts labels by name, so they are looked up by name).
fn series_of(vec: &IntGaugeVec, domain: &str, names: &[&str]) -> Vec<Vec<String>> {
    let mut with_domain = vec!["domain"];
    with_domain.extend_from_slice(names);
    label_sets(vec, &with_domain)
        .into_iter()
        .filter(|l| l[0] == domain)
        .map(|mut l| l.split_off(1))
        .collect()
}

/// The values of `names` for every series of `vec` (a missing label reads as empty).
fn label_sets(vec: &IntGaugeVec, names: &[&str]) -> Vec<Vec<String>> {
    use prometheus::core::Collector;
    let mut out = Vec::new();
    for family in vec.collect() {
        for m in family.get_metric() {
            let value = |n: &str| {
                m.get_label()
                    .iter()
                    .find(|l| l.name() == n)
                    .map(|l| l.value().to_owned())
                    .unwrap_or_default()
            };
            out.push(names.iter().map(|n| value(n)).collect());
        }
    }
    out
}

/// A scrape of 10,000 mailboxes builds ~50 MiB of transient structures; glibc keeps
/// freed memory mapped, so without this the process would stay at its scrape peak.
#[cfg(all(target_os = "linux", target_env = "gnu"))]
fn release_free_memory() {
    // SAFETY: malloc_trim only returns free heap pages to the kernel; it has no
    // preconditions and touches no memory we hold.
    unsafe {
        libc::malloc_trim(0);
    }
}

#[cfg(not(all(target_os = "linux", target_env = "gnu")))]
fn release_free_memory() {}

impl Default for Metrics {
    fn default() -> Self {
        Metrics::new()
    }
}

/// The DNS audit task reports here.
impl crate::audit::AuditSink for Metrics {
    fn record_audit(&self, report: &crate::audit::DomainReport) {
        Metrics::record_audit(self, report);
    }

    fn remove_audit_domain(&self, domain: &str) {
        Metrics::remove_audit_domain(self, domain);
    }
}

/// The token caches report here.
impl crate::auth::TokenEvents for Metrics {
    /// A token request succeeded: the cached token expires at `expires_at`.
    fn token_fetched(&self, mailbox: &str, expires_at: std::time::SystemTime) {
        self.oauth_token_expiry_timestamp_seconds
            .with_label_values(&[mailbox])
            .set(unix(expires_at) as f64);
    }

    /// The cached token is gone (rejected by the server, or expired after failed
    /// refreshes): its expiry no longer describes anything.
    fn token_dropped(&self, mailbox: &str) {
        let _ = self
            .oauth_token_expiry_timestamp_seconds
            .remove_label_values(&[mailbox]);
    }

    /// A token request failed for `reason` (bounded by the token client: an OAuth error
    /// code, `http_<status>`, `network`, `timeout` or `malformed`).
    fn token_failed(&self, mailbox: &str, reason: &str) {
        self.oauth_token_failures_total
            .with_label_values(&[mailbox, reason])
            .inc();
        self.seen()
            .entry(mailbox.to_owned())
            .or_default()
            .oauth_reasons
            .insert(reason.to_owned());
    }
}
