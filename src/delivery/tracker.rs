//! The canaries in flight and their fates: the one owner of "which canary is expected in
//! which sink", written to the state directory before each canary is sent.
//!
//! Every canary resolves at most once per sink. A canary not found by `delivery.timeout`
//! is `lost`; found later, it is also counted `late` (the contract's two outcomes), and
//! its record stays for a day so a late find is recognised. A DSN is counted once per
//! canary and recipient. Each change is written (`delivery-MAILBOX.json`) before it is
//! reported, so a restart or `kill -9` loses no canary and counts none twice.

use std::collections::{HashMap, VecDeque};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use serde::{Deserialize, Serialize};

use super::{BounceInfo, DeliveryEvents, Found, Outcome, Resolution};
use crate::state::StateStore;
use crate::util::lock;

/// How long a canary's record is kept after it was sent (late finds, DSNs).
pub const KEEP_FOR: f64 = 24.0 * 3600.0;
/// Records per mailbox; the oldest go first (a flood of sends cannot grow the file).
const MAX_PER_MAILBOX: usize = 2048;
/// Resolutions kept for `probe --wait-delivery` and the status page.
const RECENT: usize = 512;
/// The longest the write before a send may take.
const WRITE_DEADLINE: Duration = Duration::from_secs(10);

/// One canary sent (or about to be).
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct Canary {
    pub probe_id: String,
    pub message_id: String,
    /// Unix seconds when it was written down (right before DATA).
    pub sent_at: f64,
    /// When the server said 250 after DATA; `None` if it did not (yet).
    pub accepted_at: Option<f64>,
    /// Sinks still waiting for it.
    pub waiting: Vec<String>,
    /// Sinks where it was declared lost.
    #[serde(default)]
    pub lost: Vec<String>,
    /// Recipients a DSN was counted for.
    #[serde(default)]
    pub bounced: Vec<String>,
}

#[derive(Debug, Default, Serialize, Deserialize)]
struct MailboxFile {
    canaries: VecDeque<Canary>,
}

/// Where each sink is, so a DSN's recipient maps to the sink that waits for it.
pub type SinkAddresses = HashMap<String, String>;

pub struct Tracker {
    store: Option<StateStore>,
    events: Arc<dyn DeliveryEvents>,
    inner: Mutex<Inner>,
    changed: tokio::sync::Notify,
}

struct Inner {
    timeout: Duration,
    /// Sink name to address.
    sinks: SinkAddresses,
    /// Mailbox name to the sinks that verify its canaries.
    routes: HashMap<String, Vec<String>>,
    /// Mailboxes whose own inbox is a sink (their DSNs are watched for).
    watched: std::collections::HashSet<String>,
    mailboxes: HashMap<String, MailboxFile>,
    recent: VecDeque<Resolution>,
    last: HashMap<(String, String), Resolution>,
}

impl Tracker {
    pub fn new(store: Option<StateStore>, events: Arc<dyn DeliveryEvents>) -> Tracker {
        Tracker {
            store,
            events,
            inner: Mutex::new(Inner {
                timeout: Duration::from_secs(900),
                sinks: HashMap::new(),
                routes: HashMap::new(),
                watched: Default::default(),
                mailboxes: HashMap::new(),
                recent: VecDeque::new(),
                last: HashMap::new(),
            }),
            changed: tokio::sync::Notify::new(),
        }
    }

    /// Where this tracker reports (the readers report to the same place).
    pub fn events(&self) -> Arc<dyn DeliveryEvents> {
        self.events.clone()
    }

    /// The config in force: the timeout, where each sink is, and which sinks verify
    /// each mailbox's canaries.
    pub fn configure(
        &self,
        timeout: Duration,
        sinks: SinkAddresses,
        routes: HashMap<String, Vec<String>>,
        watched: std::collections::HashSet<String>,
    ) {
        let mut g = lock(&self.inner);
        g.timeout = timeout;
        g.sinks = sinks;
        g.routes = routes;
        g.watched = watched;
    }

    /// Whether `mailbox`'s canaries are written down: some sink verifies them, or its
    /// own inbox is watched for their bounces.
    pub fn tracks(&self, mailbox: &str) -> bool {
        let g = lock(&self.inner);
        g.watched.contains(mailbox) || g.routes.get(mailbox).is_some_and(|r| !r.is_empty())
    }

    /// The sinks that verify `mailbox`'s canaries under the config in force.
    pub fn route(&self, mailbox: &str) -> Vec<String> {
        lock(&self.inner)
            .routes
            .get(mailbox)
            .cloned()
            .unwrap_or_default()
    }

    /// Loads a mailbox's canaries from the state directory (once; blocking I/O off the
    /// runtime). An unreadable file is moved aside: its canaries cannot be resolved.
    pub async fn load(&self, mailbox: &str) {
        if lock(&self.inner).mailboxes.contains_key(mailbox) {
            return;
        }
        let file = match &self.store {
            None => MailboxFile::default(),
            Some(store) => {
                let store = store.clone();
                let name = mailbox.to_owned();
                let read = tokio::task::spawn_blocking(move || store.load_doc("delivery", &name))
                    .await
                    .unwrap_or_else(|e| Err(e.to_string()));
                match read {
                    Ok(Some(bytes)) => serde_json::from_slice(&bytes).unwrap_or_else(|e| {
                        tracing::error!(mailbox, error = %e, "delivery state is not valid; its canaries are forgotten");
                        MailboxFile::default()
                    }),
                    Ok(None) => MailboxFile::default(),
                    Err(e) => {
                        tracing::error!(mailbox, error = %e, "delivery state unreadable; moved aside");
                        MailboxFile::default()
                    }
                }
            }
        };
        let mut g = lock(&self.inner);
        g.mailboxes.entry(mailbox.to_owned()).or_insert(file);
        let counts = pending_counts(&g, mailbox);
        drop(g);
        for (sink, n) in counts {
            self.events.pending(mailbox, &sink, n);
        }
    }

    /// Writes the canary down before it is sent. Errors are logged: the send itself is
    /// on record in the ledger already, and a canary that is not tracked is only a
    /// missing measurement.
    pub async fn register(
        &self,
        mailbox: &str,
        probe_id: &str,
        message_id: &str,
        sinks: &[String],
        now: f64,
    ) {
        self.load(mailbox).await;
        {
            let mut g = lock(&self.inner);
            let file = g.mailboxes.entry(mailbox.to_owned()).or_default();
            file.canaries.push_back(Canary {
                probe_id: probe_id.to_owned(),
                message_id: message_id.to_owned(),
                sent_at: now,
                accepted_at: None,
                waiting: sinks.to_vec(),
                lost: Vec::new(),
                bounced: Vec::new(),
            });
            while file.canaries.len() > MAX_PER_MAILBOX {
                file.canaries.pop_front();
            }
        }
        match tokio::time::timeout(WRITE_DEADLINE, self.persist(mailbox)).await {
            Ok(Ok(())) => {}
            Ok(Err(e)) => tracing::error!(mailbox, error = %e, "cannot write the canary in flight"),
            Err(_) => tracing::error!(mailbox, "writing the canary in flight timed out"),
        }
    }

    /// The probe ended: `accepted_at` is when the 250 after DATA came, or `None` if the
    /// canary was refused (then nothing is expected anywhere).
    pub async fn sent(&self, mailbox: &str, probe_id: &str, accepted_at: Option<f64>) {
        {
            let mut g = lock(&self.inner);
            let Some(file) = g.mailboxes.get_mut(mailbox) else {
                return;
            };
            match accepted_at {
                Some(at) => {
                    if let Some(c) = file.canaries.iter_mut().find(|c| c.probe_id == probe_id) {
                        c.accepted_at = Some(at);
                    }
                }
                None => file.canaries.retain(|c| c.probe_id != probe_id),
            }
        }
        self.after_change(mailbox).await;
    }

    /// Whether `sink` should look closer at this canary (fetch its body, check DKIM).
    pub fn wants(&self, sink: &str, mailbox: &str, probe_id: &str) -> bool {
        let g = lock(&self.inner);
        g.mailboxes.get(mailbox).is_some_and(|f| {
            f.canaries.iter().any(|c| {
                c.probe_id == probe_id
                    && (c.waiting.iter().any(|s| s == sink) || c.lost.iter().any(|s| s == sink))
            })
        })
    }

    /// Whether a message with this Message-ID is one of ours (for DSNs and clean-up).
    pub fn knows_message(&self, message_id: &str) -> Option<String> {
        let g = lock(&self.inner);
        g.mailboxes
            .iter()
            .find(|(_, f)| f.canaries.iter().any(|c| c.message_id == message_id))
            .map(|(m, _)| m.clone())
    }

    /// `sink` found the canary. Returns the resolution, if this was news.
    pub async fn found(
        &self,
        sink: &str,
        mailbox: &str,
        probe_id: &str,
        f: Found,
    ) -> Option<Resolution> {
        let resolution = {
            let mut g = lock(&self.inner);
            let timeout = g.timeout.as_secs_f64();
            let c = g
                .mailboxes
                .get_mut(mailbox)?
                .canaries
                .iter_mut()
                .find(|c| c.probe_id == probe_id)?;
            let base = c.accepted_at.unwrap_or(c.sent_at);
            // The sink's clock (INTERNALDATE) has one-second resolution and may run
            // behind ours: a negative latency is skew, shown as 0.
            let seconds = f.arrived_at.map(|a| (a as f64 - base).max(0.0));
            let outcome = if let Some(i) = c.waiting.iter().position(|s| s == sink) {
                c.waiting.remove(i);
                let late = seconds.is_some_and(|s| s > timeout);
                match (late, f.junk) {
                    (true, _) => Outcome::Late,
                    (false, true) => Outcome::Junk,
                    (false, false) => Outcome::Delivered,
                }
            } else if let Some(i) = c.lost.iter().position(|s| s == sink) {
                c.lost.remove(i);
                Outcome::Late
            } else {
                return None;
            };
            Resolution {
                mailbox: mailbox.to_owned(),
                sink: sink.to_owned(),
                probe_id: probe_id.to_owned(),
                outcome,
                seconds,
                folder: Some(f.folder),
                auth_results: f.auth_results,
                dkim: f.dkim,
                bounce: None,
            }
        };
        self.resolve(resolution).await
    }

    /// A DSN in one of `mailbox`'s bounce sinks says the canary with `message_id` failed
    /// for `recipient`. Counted once per canary and recipient; the sink waiting at that
    /// address resolves as `bounced`.
    pub async fn bounced(&self, message_id: &str, recipient: &str, bounce: BounceInfo) -> bool {
        let (mailbox, resolution) = {
            let mut g = lock(&self.inner);
            let sink_at: Option<String> = g
                .sinks
                .iter()
                .find(|(_, addr)| addr.eq_ignore_ascii_case(recipient))
                .map(|(n, _)| n.clone());
            let Some((mailbox, c)) = g.mailboxes.iter_mut().find_map(|(m, f)| {
                f.canaries
                    .iter_mut()
                    .find(|c| c.message_id == message_id)
                    .map(|c| (m.clone(), c))
            }) else {
                return false;
            };
            let r = recipient.to_ascii_lowercase();
            if c.bounced.contains(&r) {
                return false;
            }
            c.bounced.push(r);
            let resolution = sink_at.and_then(|sink| {
                let i = c.waiting.iter().position(|s| *s == sink)?;
                c.waiting.remove(i);
                Some(Resolution {
                    mailbox: mailbox.clone(),
                    sink,
                    probe_id: c.probe_id.clone(),
                    outcome: Outcome::Bounced,
                    seconds: None,
                    folder: None,
                    auth_results: None,
                    dkim: None,
                    bounce: Some(bounce.clone()),
                })
            });
            (mailbox, resolution)
        };
        self.after_change(&mailbox).await;
        self.events.bounced(&mailbox, &bounce);
        tracing::warn!(mailbox = %mailbox, recipient, class = %bounce.class, code = %bounce.code, diagnostic = %bounce.diagnostic, "canary bounced");
        if let Some(r) = resolution {
            self.report(r);
        }
        true
    }

    /// Declares overdue canaries lost and forgets records older than a day.
    pub async fn expire(&self, now: f64) {
        let mut lost: Vec<Resolution> = Vec::new();
        let mut touched: Vec<String> = Vec::new();
        {
            let mut g = lock(&self.inner);
            let timeout = g.timeout.as_secs_f64();
            for (mailbox, file) in g.mailboxes.iter_mut() {
                let before = file.canaries.len();
                let mut changed = false;
                for c in file.canaries.iter_mut() {
                    let Some(at) = c.accepted_at else {
                        continue;
                    };
                    if c.waiting.is_empty() || now < at + timeout {
                        continue;
                    }
                    for sink in std::mem::take(&mut c.waiting) {
                        lost.push(Resolution::lost(mailbox, &sink, &c.probe_id));
                        c.lost.push(sink);
                    }
                    changed = true;
                }
                // A canary the server never confirmed (the process died mid-DATA) is
                // not expected anywhere once its time is up.
                file.canaries.retain(|c| {
                    let unconfirmed = c.accepted_at.is_none() && now >= c.sent_at + timeout;
                    !unconfirmed && now < c.sent_at + KEEP_FOR
                });
                if changed || file.canaries.len() != before {
                    touched.push(mailbox.clone());
                }
            }
        }
        for m in &touched {
            self.after_change(m).await;
        }
        for r in lost {
            tracing::warn!(mailbox = %r.mailbox, sink = %r.sink, probe_id = %r.probe_id, "canary lost: not found in the sink within the delivery timeout");
            self.report(r);
        }
    }

    /// The resolutions of `probe_id` so far.
    pub fn resolutions_of(&self, probe_id: &str) -> Vec<Resolution> {
        lock(&self.inner)
            .recent
            .iter()
            .filter(|r| r.probe_id == probe_id)
            .cloned()
            .collect()
    }

    /// Waits until something resolves (or `limit` passes).
    pub async fn changed(&self, limit: Duration) {
        let _ = tokio::time::timeout(limit, self.changed.notified()).await;
    }

    /// The last resolution per mailbox and sink, for the status page.
    pub fn last(&self, mailbox: &str) -> Vec<Resolution> {
        let g = lock(&self.inner);
        let mut v: Vec<Resolution> = g
            .last
            .iter()
            .filter(|((m, _), _)| m == mailbox)
            .map(|(_, r)| r.clone())
            .collect();
        v.sort_by(|a, b| a.sink.cmp(&b.sink));
        v
    }

    /// Drops a removed mailbox from memory (its file stays for a restart).
    pub fn forget(&self, mailbox: &str) {
        let mut g = lock(&self.inner);
        g.mailboxes.remove(mailbox);
        g.last.retain(|(m, _), _| m != mailbox);
    }

    async fn resolve(&self, r: Resolution) -> Option<Resolution> {
        self.after_change(&r.mailbox).await;
        self.report(r.clone());
        Some(r)
    }

    fn report(&self, r: Resolution) {
        self.events.resolved(&r);
        let mut g = lock(&self.inner);
        g.last
            .insert((r.mailbox.clone(), r.sink.clone()), r.clone());
        g.recent.push_back(r);
        while g.recent.len() > RECENT {
            g.recent.pop_front();
        }
        drop(g);
        self.changed.notify_waiters();
    }

    async fn after_change(&self, mailbox: &str) {
        if let Err(e) = self.persist(mailbox).await {
            tracing::error!(mailbox, error = %e, "cannot write the delivery state");
        }
        let counts = pending_counts(&lock(&self.inner), mailbox);
        for (sink, n) in counts {
            self.events.pending(mailbox, &sink, n);
        }
    }

    async fn persist(&self, mailbox: &str) -> Result<(), crate::state::StateError> {
        let Some(store) = &self.store else {
            return Ok(());
        };
        let data = {
            let g = lock(&self.inner);
            match g.mailboxes.get(mailbox) {
                Some(f) => serde_json::to_vec(f)?,
                None => return Ok(()),
            }
        };
        store.save_doc("delivery", mailbox, data).await
    }
}

/// Canaries still waiting, per sink that verifies this mailbox's canaries (zeros
/// included, so the gauge goes back to 0).
fn pending_counts(g: &Inner, mailbox: &str) -> Vec<(String, usize)> {
    let mut counts: Vec<(String, usize)> = g
        .routes
        .get(mailbox)
        .map(|sinks| sinks.iter().map(|s| (s.clone(), 0)).collect())
        .unwrap_or_default();
    if let Some(f) = g.mailboxes.get(mailbox) {
        for s in f.canaries.iter().flat_map(|c| &c.waiting) {
            if let Some(entry) = counts.iter_mut().find(|(n, _)| n == s) {
                entry.1 += 1;
            }
        }
    }
    counts
}
