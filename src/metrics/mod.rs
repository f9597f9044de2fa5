//! Every metric smtp-canary exports, on one registry, in small groups: each group keeps
//! its definitions, its recording and its removal together in one file, so adding a
//! per-mailbox series touches one file:
//! - [`probe`]: the last probe per mailbox, the phase histogram, probe/failure/skip
//!   counters;
//! - [`quota`]: quota use, limits and budget, read from the ledgers at scrape time;
//! - [`oauth`]: token expiry and failures (the token caches' events);
//! - [`audit`]: the DNS audit and Basic-auth readiness findings;
//! - [`delivery`]: canaries read back from sinks (the tracker's and readers' events);
//! - [`process`]: build info and config reloads.
//!
//! Names, types and labels are the public contract (`smtp_canary_` prefix). Lower layers
//! never call in here by name: they return plain results, or report through the traits
//! these groups implement ([`crate::auth::TokenEvents`], [`crate::audit::AuditSink`]).

mod audit;
mod delivery;
mod oauth;
mod probe;
mod process;
mod quota;

use std::sync::{Arc, Weak};

use prometheus::core::Collector;
use prometheus::{Encoder, Opts, Registry, TextEncoder};

pub use probe::PHASE_BUCKETS;
pub use quota::QuotaSource;

use crate::config::Mailbox;
use crate::probe::ProbeResult;

const NS: &str = "smtp_canary";

/// Why a due probe did not run (`reason` label); owned by the send gate.
pub use crate::gate::SkipReason;

/// A labelled metric the groups define: built from options and label names.
trait VecMetric: Collector + Clone + 'static {
    fn build(opts: Opts, labels: &[&str]) -> prometheus::Result<Self>;
}

/// An unlabelled metric the groups define.
trait ScalarMetric: Collector + Clone + 'static {
    fn build(opts: Opts) -> prometheus::Result<Self>;
}

macro_rules! vec_metric {
    ($($t:ty),*) => {$(
        impl VecMetric for $t {
            fn build(opts: Opts, labels: &[&str]) -> prometheus::Result<Self> {
                <$t>::new(opts, labels)
            }
        }
    )*};
}
vec_metric!(
    prometheus::IntGaugeVec,
    prometheus::GaugeVec,
    prometheus::IntCounterVec
);

macro_rules! scalar_metric {
    ($($t:ty),*) => {$(
        impl ScalarMetric for $t {
            fn build(opts: Opts) -> prometheus::Result<Self> {
                <$t>::with_opts(opts)
            }
        }
    )*};
}
scalar_metric!(prometheus::IntGauge, prometheus::Gauge);

/// Defines and registers a labelled metric. Panics only on a programming error in a
/// static definition (caught by any test).
fn register<M: VecMetric>(r: &Registry, name: &str, help: &str, labels: &[&str]) -> M {
    let m =
        M::build(Opts::new(name, help).namespace(NS), labels).expect("static metric definition");
    r.register(Box::new(m.clone())).expect("unique metric name");
    m
}

/// Defines and registers an unlabelled metric.
fn scalar<M: ScalarMetric>(r: &Registry, name: &str, help: &str) -> M {
    let m = M::build(Opts::new(name, help).namespace(NS)).expect("static metric definition");
    r.register(Box::new(m.clone())).expect("unique metric name");
    m
}

/// The exporter's metrics: the groups on one registry.
pub struct Metrics {
    registry: Registry,
    probe: probe::ProbeMetrics,
    quota: Arc<quota::QuotaCollector>,
    oauth: oauth::OAuthMetrics,
    audit: audit::AuditMetrics,
    delivery: delivery::DeliveryMetrics,
    process: process::ProcessMetrics,
}

/// Registers the quota collector, which the registry owns; the metrics keep a handle.
struct SharedCollector(Arc<quota::QuotaCollector>);

impl Collector for SharedCollector {
    fn desc(&self) -> Vec<&prometheus::core::Desc> {
        self.0.desc()
    }

    fn collect(&self) -> Vec<prometheus::proto::MetricFamily> {
        self.0.collect()
    }
}

impl Metrics {
    pub fn new() -> Metrics {
        let r = Registry::new();
        let quota = Arc::new(quota::QuotaCollector::new());
        r.register(Box::new(SharedCollector(quota.clone())))
            .expect("unique metric name");
        Metrics {
            probe: probe::ProbeMetrics::new(&r),
            quota,
            oauth: oauth::OAuthMetrics::new(&r),
            audit: audit::AuditMetrics::new(&r),
            delivery: delivery::DeliveryMetrics::new(&r),
            process: process::ProcessMetrics::new(&r),
            registry: r,
        }
    }

    /// Creates a mailbox's counters at zero.
    pub fn register_mailbox(&self, mb: &Mailbox) {
        self.probe.register_mailbox(mb);
    }

    /// Deletes every series of a mailbox that is no longer configured.
    pub fn remove_mailbox(&self, name: &str) {
        self.probe.remove_mailbox(name);
        self.oauth.remove_mailbox(name);
        self.delivery.remove_mailbox(name);
    }

    /// A configured sink's series.
    pub fn register_sink(&self, name: &str) {
        self.delivery.register_sink(name);
    }

    /// Deletes a sink that is no longer configured.
    pub fn remove_sink(&self, name: &str) {
        self.delivery.remove_sink(name);
    }

    /// Records the outcome of one probe.
    pub fn record(&self, r: &ProbeResult) {
        self.probe.record(r);
    }

    pub fn observe_lateness(&self, late: std::time::Duration) {
        self.probe.observe_lateness(late);
    }

    pub fn skipped(&self, mailbox: &str, reason: SkipReason) {
        self.probe.skipped(mailbox, reason);
    }

    /// Where the quota series are read from at each scrape (the scheduler).
    pub fn set_quota_source(&self, source: Weak<dyn QuotaSource>) {
        self.quota.set_source(source);
    }

    /// Sets `audit_finding{domain, check="auth.basic_auth_retiring", severity="warning"}`
    /// to 1 for exactly these domains (see `audit::basic_auth_findings`).
    pub fn set_basic_auth_findings<'a>(&self, domains: impl IntoIterator<Item = &'a str>) {
        self.audit.set_basic_auth_findings(domains);
    }

    /// Publishes one domain's DNS audit (see [`crate::audit::AuditSink`]).
    pub fn record_audit(&self, r: &crate::audit::DomainReport) {
        crate::audit::AuditSink::record_audit(&self.audit, r);
    }

    /// Deletes the DNS audit's series of a domain that is no longer audited.
    pub fn remove_audit_domain(&self, domain: &str) {
        crate::audit::AuditSink::remove_audit_domain(&self.audit, domain);
    }

    /// Marks a config (re)load.
    pub fn config_loaded(&self, ok: bool) {
        self.process.config_loaded(ok);
    }

    /// The Prometheus text exposition of every metric.
    pub fn render(&self) -> String {
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
        crate::audit::AuditSink::record_audit(&self.audit, report);
    }

    fn remove_audit_domain(&self, domain: &str) {
        crate::audit::AuditSink::remove_audit_domain(&self.audit, domain);
    }
}

/// The token caches report here.
impl crate::auth::TokenEvents for Metrics {
    fn token_fetched(&self, mailbox: &str, expires_at: std::time::SystemTime) {
        self.oauth.token_fetched(mailbox, expires_at);
    }

    fn token_dropped(&self, mailbox: &str) {
        self.oauth.token_dropped(mailbox);
    }

    fn token_failed(&self, mailbox: &str, reason: &str) {
        self.oauth.token_failed(mailbox, reason);
    }
}

/// The tracker and the sink readers report here.
impl crate::delivery::DeliveryEvents for Metrics {
    fn resolved(&self, r: &crate::delivery::Resolution) {
        self.delivery.resolved(r);
    }

    fn bounced(&self, mailbox: &str, b: &crate::delivery::BounceInfo) {
        self.delivery.bounced(mailbox, b);
    }

    fn pending(&self, mailbox: &str, sink: &str, n: usize) {
        self.delivery.pending(mailbox, sink, n);
    }

    fn sink_read(&self, sink: &str, failure: Option<crate::classify::Class>) {
        self.delivery.sink_read(sink, failure);
    }
}
