//! Per-probe series: the last probe's outcome, phases, TLS and mechanism per mailbox,
//! the fleet histogram of phases, and the probe, failure and skip counters; plus the
//! scheduler's own lateness.
//!
//! Counters are created at zero when a mailbox is registered, so `rate()` and
//! `increase()` alerts see the first failure. Failure counters are pre-created once per
//! class (with empty `phase` and `code`) for the same reason: `sum by (class)` then
//! starts from zero; the real series carry phase and code.

use std::collections::{HashMap, HashSet};
use std::sync::Mutex;

use prometheus::{
    GaugeVec, Histogram, HistogramOpts, HistogramVec, IntCounterVec, IntGaugeVec, Registry,
};

use super::{NS, register};
use crate::classify::Class;
use crate::config::{Mailbox, Mechanism};
use crate::gate::SkipReason;
use crate::probe::ProbeResult;
use crate::smtp::Phase;
use crate::util::{lock, unix};

/// Histogram buckets for phase durations: 5 ms to 60 s.
pub const PHASE_BUCKETS: &[f64] = &[
    0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 20.0, 30.0, 60.0,
];

pub(super) struct ProbeMetrics {
    probe_success: IntGaugeVec,
    probe_duration_seconds: GaugeVec,
    probe_phase_duration_seconds: GaugeVec,
    probe_timestamp_seconds: GaugeVec,
    last_success_timestamp_seconds: GaugeVec,
    phase_seconds: HistogramVec,
    probes_total: IntCounterVec,
    probe_failures_total: IntCounterVec,
    probes_skipped_total: IntCounterVec,
    tls_cert_not_after_timestamp_seconds: GaugeVec,
    tls_version_info: IntGaugeVec,
    auth_mechanism_info: IntGaugeVec,
    /// The exporter's own health: how late probes start against their schedule.
    scheduler_lateness_seconds: Histogram,
    /// Label values seen per mailbox for the vectors whose labels are open-ended, so a
    /// removed mailbox's series can all be deleted.
    seen: Mutex<HashMap<String, Seen>>,
}

#[derive(Default)]
struct Seen {
    failures: HashSet<(String, String, String)>,
    tls_version: Option<String>,
    mechanism: Option<Mechanism>,
    phases: HashSet<Phase>,
}

impl ProbeMetrics {
    pub(super) fn new(r: &Registry) -> ProbeMetrics {
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
        let scheduler_lateness_seconds = Histogram::with_opts(
            HistogramOpts::new(
                "scheduler_lateness_seconds",
                "How late probes start against their schedule (exporter health, not a contract metric).",
            )
            .namespace(NS)
            .buckets(vec![0.001, 0.005, 0.01, 0.05, 0.1, 0.5, 1.0, 5.0, 30.0]),
        )
        .expect("static metric definition");
        r.register(Box::new(scheduler_lateness_seconds.clone()))
            .expect("unique metric name");
        ProbeMetrics {
            probe_success: register(
                r,
                "probe_success",
                "1 if the last probe's canary was accepted after DATA.",
                &["mailbox"],
            ),
            probe_duration_seconds: register(
                r,
                "probe_duration_seconds",
                "Total duration of the last probe.",
                &["mailbox"],
            ),
            probe_phase_duration_seconds: register(
                r,
                "probe_phase_duration_seconds",
                "Duration of each phase of the last probe.",
                &["mailbox", "phase"],
            ),
            probe_timestamp_seconds: register(
                r,
                "probe_timestamp_seconds",
                "When the last probe ended (Unix seconds).",
                &["mailbox"],
            ),
            last_success_timestamp_seconds: register(
                r,
                "last_success_timestamp_seconds",
                "When a probe last succeeded (Unix seconds).",
                &["mailbox"],
            ),
            phase_seconds,
            probes_total: register(r, "probes_total", "Probes run.", &["mailbox"]),
            probe_failures_total: register(
                r,
                "probe_failures_total",
                "Failed probes by phase, class and reply code.",
                &["mailbox", "phase", "class", "code"],
            ),
            probes_skipped_total: register(
                r,
                "probes_skipped_total",
                "Probes not run, by reason.",
                &["mailbox", "reason"],
            ),
            tls_cert_not_after_timestamp_seconds: register(
                r,
                "tls_cert_not_after_timestamp_seconds",
                "Earliest notAfter in the server's certificate chain (Unix seconds).",
                &["mailbox"],
            ),
            tls_version_info: register(
                r,
                "tls_version_info",
                "1 for the TLS version of the last probe.",
                &["mailbox", "version"],
            ),
            auth_mechanism_info: register(
                r,
                "auth_mechanism_info",
                "1 for the SASL mechanism the last probe used.",
                &["mailbox", "mechanism"],
            ),
            scheduler_lateness_seconds,
            seen: Mutex::new(HashMap::new()),
        }
    }

    /// Creates a mailbox's counters at zero.
    pub(super) fn register_mailbox(&self, mb: &Mailbox) {
        let name = mb.name.as_str();
        self.probes_total.with_label_values(&[name]);
        for r in SkipReason::ALL.iter().copied() {
            self.probes_skipped_total
                .with_label_values(&[name, r.as_str()]);
        }
        for c in Class::ALL.iter().copied() {
            self.probe_failures_total
                .with_label_values(&[name, "", c.as_str(), ""]);
        }
        lock(&self.seen).entry(name.to_owned()).or_default();
    }

    pub(super) fn remove_mailbox(&self, name: &str) {
        let seen = lock(&self.seen).remove(name).unwrap_or_default();
        for g in [
            &self.probe_duration_seconds,
            &self.probe_timestamp_seconds,
            &self.last_success_timestamp_seconds,
            &self.tls_cert_not_after_timestamp_seconds,
        ] {
            let _ = g.remove_label_values(&[name]);
        }
        let _ = self.probe_success.remove_label_values(&[name]);
        let _ = self.probes_total.remove_label_values(&[name]);
        for p in Phase::ALL.iter().copied() {
            let _ = self
                .probe_phase_duration_seconds
                .remove_label_values(&[name, p.as_str()]);
            let _ = self.phase_seconds.remove_label_values(&[name, p.as_str()]);
        }
        for r in SkipReason::ALL.iter().copied() {
            let _ = self
                .probes_skipped_total
                .remove_label_values(&[name, r.as_str()]);
        }
        for c in Class::ALL.iter().copied() {
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
    }

    /// Records the outcome of one probe.
    pub(super) fn record(&self, r: &ProbeResult) {
        let name = r.mailbox.as_str();
        let mut seen_all = lock(&self.seen);
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

    pub(super) fn observe_lateness(&self, late: std::time::Duration) {
        self.scheduler_lateness_seconds.observe(late.as_secs_f64());
    }

    pub(super) fn skipped(&self, mailbox: &str, reason: SkipReason) {
        self.probes_skipped_total
            .with_label_values(&[mailbox, reason.as_str()])
            .inc();
    }
}
