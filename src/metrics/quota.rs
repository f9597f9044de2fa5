//! Quota series (`quota_used`, `quota_limit`, `budget_remaining`), read at scrape time.
//!
//! The rolling windows move between sends, so these values are computed when Prometheus
//! asks, from the ledgers as they are then: a custom collector over a [`QuotaSource`]
//! (the scheduler), not gauges kept up to date. Nothing per mailbox is stored here, and a
//! removed mailbox's series vanish with it.

use std::sync::{Mutex, Weak};

use prometheus::core::{Collector, Desc};
use prometheus::proto::{Gauge, LabelPair, Metric, MetricFamily, MetricType};

use super::NS;
use crate::config::{Mailbox, daily_budget};
use crate::quota::{Ledger, WINDOWS, limit};
use crate::util::{lock, unix_now};

/// What the quota series are read from: every active mailbox with its ledger.
pub trait QuotaSource: Send + Sync {
    /// Calls `f` once per active mailbox, with its ledger as of now.
    fn for_each_ledger(&self, f: &mut dyn FnMut(&Mailbox, &Ledger));
}

pub(super) struct QuotaCollector {
    descs: Vec<Desc>,
    source: Mutex<Option<Weak<dyn QuotaSource>>>,
}

const USED: (&str, &str) = (
    "quota_used",
    "The canary's own sends in the rolling window.",
);
const LIMIT: (&str, &str) = (
    "quota_limit",
    "The provider's sending limit per window and unit.",
);
const BUDGET: (&str, &str) = (
    "budget_remaining",
    "Canary sends left in the rolling day under the budget.",
);

fn name(n: &str) -> String {
    format!("{NS}_{n}")
}

impl QuotaCollector {
    pub(super) fn new() -> QuotaCollector {
        let desc = |(n, help): (&str, &str), labels: &[&str]| {
            Desc::new(
                name(n),
                help.to_owned(),
                labels.iter().map(|l| (*l).to_owned()).collect(),
                Default::default(),
            )
            .expect("static metric definition")
        };
        QuotaCollector {
            descs: vec![
                desc(USED, &["mailbox", "window", "unit"]),
                desc(LIMIT, &["mailbox", "window", "unit"]),
                desc(BUDGET, &["mailbox"]),
            ],
            source: Mutex::new(None),
        }
    }

    pub(super) fn set_source(&self, source: Weak<dyn QuotaSource>) {
        *lock(&self.source) = Some(source);
    }
}

fn family((n, help): (&str, &str)) -> MetricFamily {
    let mut f = MetricFamily::default();
    f.set_name(name(n));
    f.set_help(help.to_owned());
    f.set_field_type(MetricType::GAUGE);
    f
}

/// A gauge sample; `labels` in name order, as the exposition sorts them.
fn sample(labels: &[(&str, &str)], value: f64) -> Metric {
    let mut m = Metric::default();
    m.set_label(
        labels
            .iter()
            .map(|(k, v)| {
                let mut l = LabelPair::default();
                l.set_name((*k).to_owned());
                l.set_value((*v).to_owned());
                l
            })
            .collect(),
    );
    let mut g = Gauge::default();
    g.set_value(value);
    m.set_gauge(g);
    m
}

impl Collector for QuotaCollector {
    fn desc(&self) -> Vec<&Desc> {
        self.descs.iter().collect()
    }

    fn collect(&self) -> Vec<MetricFamily> {
        let Some(source) = lock(&self.source).as_ref().and_then(Weak::upgrade) else {
            return Vec::new();
        };
        let now = unix_now();
        let (mut used, mut limits, mut budget) = (family(USED), family(LIMIT), family(BUDGET));
        source.for_each_ledger(&mut |mb, ledger| {
            let m = mb.name.as_str();
            for (w, u) in WINDOWS {
                let labels = [("mailbox", m), ("unit", u.as_str()), ("window", w.as_str())];
                used.mut_metric()
                    .push(sample(&labels, ledger.used(w, u, now) as f64));
                if let Some(l) = limit(&mb.limits, w, u) {
                    limits.mut_metric().push(sample(&labels, f64::from(l)));
                }
            }
            let left = ledger.budget_remaining(daily_budget(mb), now).max(0);
            budget
                .mut_metric()
                .push(sample(&[("mailbox", m)], left as f64));
        });
        [used, limits, budget]
            .into_iter()
            .filter(|f| !f.get_metric().is_empty())
            .collect()
    }
}
