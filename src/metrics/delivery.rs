//! Delivery series: each canary's fate per mailbox and sink, the fleet latency
//! histogram per sink, the receiver's verdicts, our own DKIM check, bounces and sink
//! health, fed by the tracker and the sink readers through
//! [`crate::delivery::DeliveryEvents`].
//!
//! Cardinality: per mailbox and sink there are the three gauges, the outcome counters
//! that happened (not pre-created), and at most three `delivery_auth_result` series (one
//! verdict per method). The latency histogram is per sink only.

use std::collections::{HashMap, HashSet};
use std::sync::Mutex;

use prometheus::{GaugeVec, HistogramOpts, HistogramVec, IntCounterVec, IntGaugeVec, Registry};

use super::{NS, register};
use crate::classify::Class;
use crate::delivery::{BounceInfo, DeliveryEvents, Method, Outcome, Resolution};
use crate::util::lock;

/// 1 s to 1 h: a healthy path is seconds; a greylisted one, minutes.
pub const DELIVERY_BUCKETS: &[f64] = &[
    1.0, 2.0, 5.0, 10.0, 20.0, 30.0, 60.0, 120.0, 300.0, 600.0, 1200.0, 1800.0, 3600.0,
];

pub(super) struct DeliveryMetrics {
    delivery_success: IntGaugeVec,
    delivery_last_seconds: GaugeVec,
    delivery_seconds: HistogramVec,
    deliveries_total: IntCounterVec,
    delivery_pending: IntGaugeVec,
    delivery_auth_result: IntGaugeVec,
    delivery_dkim_valid: IntGaugeVec,
    bounces_total: IntCounterVec,
    sink_up: IntGaugeVec,
    sink_failures_total: IntCounterVec,
    /// Label sets written per mailbox, so a removed mailbox's series all go.
    written: Mutex<HashMap<String, HashSet<Written>>>,
}

/// One label set of a per-mailbox family.
type Written = (Family, Vec<String>);

/// Which per-mailbox family a remembered label set belongs to.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
enum Family {
    /// The (mailbox, sink) gauges.
    Pair,
    Deliveries,
    AuthResult,
    Bounces,
}

impl DeliveryMetrics {
    pub(super) fn new(r: &Registry) -> DeliveryMetrics {
        let delivery_seconds = HistogramVec::new(
            HistogramOpts::new(
                "delivery_seconds",
                "Latency of every delivered canary, from the 250 after DATA to arrival by the sink's clock.",
            )
            .namespace(NS)
            .buckets(DELIVERY_BUCKETS.to_vec()),
            &["sink"],
        )
        .expect("static metric definition");
        r.register(Box::new(delivery_seconds.clone()))
            .expect("unique metric name");
        DeliveryMetrics {
            delivery_success: register(
                r,
                "delivery_success",
                "1 if the last resolved canary was delivered (in time, outside junk).",
                &["mailbox", "sink"],
            ),
            delivery_last_seconds: register(
                r,
                "delivery_last_seconds",
                "Latency of the last delivered canary (seconds).",
                &["mailbox", "sink"],
            ),
            delivery_seconds,
            deliveries_total: register(
                r,
                "deliveries_total",
                "Resolved canaries by outcome.",
                &["mailbox", "sink", "result"],
            ),
            delivery_pending: register(
                r,
                "delivery_pending",
                "Canaries sent and not yet resolved.",
                &["mailbox", "sink"],
            ),
            delivery_auth_result: register(
                r,
                "delivery_auth_result",
                "1 per verdict in the sink's Authentication-Results for the last canary.",
                &["mailbox", "sink", "method", "result"],
            ),
            delivery_dkim_valid: register(
                r,
                "delivery_dkim_valid",
                "1 if smtp-canary itself verified the received canary's DKIM signature, aligned with from.",
                &["mailbox", "sink"],
            ),
            bounces_total: register(
                r,
                "bounces_total",
                "DSNs about canaries, classified with the probe tables.",
                &["mailbox", "class", "code"],
            ),
            sink_up: register(
                r,
                "sink_up",
                "1 if the last read of the sink worked.",
                &["sink"],
            ),
            sink_failures_total: register(
                r,
                "sink_failures_total",
                "Failed sink reads, by class.",
                &["sink", "class"],
            ),
            written: Mutex::new(HashMap::new()),
        }
    }

    fn note(&self, mailbox: &str, family: Family, labels: &[&str]) {
        lock(&self.written)
            .entry(mailbox.to_owned())
            .or_default()
            .insert((family, labels.iter().map(|s| s.to_string()).collect()));
    }

    /// A sink's series before its first read (down until it has worked once).
    pub(super) fn register_sink(&self, sink: &str) {
        self.sink_up.with_label_values(&[sink]);
    }

    pub(super) fn remove_sink(&self, sink: &str) {
        let _ = self.sink_up.remove_label_values(&[sink]);
        let _ = self.delivery_seconds.remove_label_values(&[sink]);
        for class in Class::ALL {
            let _ = self
                .sink_failures_total
                .remove_label_values(&[sink, class.as_str()]);
        }
    }

    pub(super) fn remove_mailbox(&self, mailbox: &str) {
        for (family, labels) in lock(&self.written).remove(mailbox).unwrap_or_default() {
            let labels: Vec<&str> = labels.iter().map(String::as_str).collect();
            match family {
                Family::Pair => {
                    let _ = self.delivery_success.remove_label_values(&labels);
                    let _ = self.delivery_last_seconds.remove_label_values(&labels);
                    let _ = self.delivery_dkim_valid.remove_label_values(&labels);
                    let _ = self.delivery_pending.remove_label_values(&labels);
                }
                Family::Deliveries => {
                    let _ = self.deliveries_total.remove_label_values(&labels);
                }
                Family::AuthResult => {
                    let _ = self.delivery_auth_result.remove_label_values(&labels);
                }
                Family::Bounces => {
                    let _ = self.bounces_total.remove_label_values(&labels);
                }
            }
        }
    }
}

impl DeliveryEvents for DeliveryMetrics {
    fn resolved(&self, r: &Resolution) {
        let (m, s) = (r.mailbox.as_str(), r.sink.as_str());
        self.deliveries_total
            .with_label_values(&[m, s, r.outcome.as_str()])
            .inc();
        self.note(m, Family::Deliveries, &[m, s, r.outcome.as_str()]);
        self.note(m, Family::Pair, &[m, s]);
        self.delivery_success
            .with_label_values(&[m, s])
            .set(i64::from(r.outcome == Outcome::Delivered));
        // The contract's latency is that of delivered canaries; a junked one's arrival
        // time is in its resolution (and the log), not in these series.
        if let (Some(secs), Outcome::Delivered) = (r.seconds, r.outcome) {
            self.delivery_last_seconds
                .with_label_values(&[m, s])
                .set(secs);
            self.delivery_seconds.with_label_values(&[s]).observe(secs);
        }
        if let Some(ar) = &r.auth_results {
            // One verdict per method: the previous canary's go.
            for method in Method::ALL {
                for v in <crate::delivery::Verdict as strum::VariantArray>::VARIANTS {
                    let _ = self.delivery_auth_result.remove_label_values(&[
                        m,
                        s,
                        method.as_str(),
                        v.as_str(),
                    ]);
                }
            }
            for (method, verdict) in &ar.verdicts {
                let labels = [m, s, method.as_str(), verdict.as_str()];
                self.delivery_auth_result.with_label_values(&labels).set(1);
                self.note(m, Family::AuthResult, &labels);
            }
        }
        if let Some(d) = &r.dkim {
            self.delivery_dkim_valid
                .with_label_values(&[m, s])
                .set(i64::from(d.valid));
        }
    }

    fn bounced(&self, mailbox: &str, b: &BounceInfo) {
        let labels = [mailbox, b.class.as_str(), b.code.as_str()];
        self.bounces_total.with_label_values(&labels).inc();
        self.note(mailbox, Family::Bounces, &labels);
    }

    fn pending(&self, mailbox: &str, sink: &str, n: usize) {
        self.delivery_pending
            .with_label_values(&[mailbox, sink])
            .set(i64::try_from(n).unwrap_or(i64::MAX));
        self.note(mailbox, Family::Pair, &[mailbox, sink]);
    }

    fn sink_read(&self, sink: &str, failure: Option<Class>) {
        self.sink_up
            .with_label_values(&[sink])
            .set(i64::from(failure.is_none()));
        if let Some(c) = failure {
            self.sink_failures_total
                .with_label_values(&[sink, c.as_str()])
                .inc();
        }
    }
}
