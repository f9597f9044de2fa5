//! The status board: what every mailbox did last (its last result, its last failure and
//! the last fate of its canaries in each sink), shared between the scheduler and the
//! sink readers, which record, and the web side, which reads.

use std::collections::HashMap;
use std::sync::{Arc, RwLock};

use crate::config::Mailbox;
use crate::delivery::{BounceInfo, DeliveryEvents, Resolution};
use crate::probe::ProbeResult;

/// The last results of one mailbox, for the status page.
#[derive(Debug, Clone)]
pub struct MailboxStatus {
    pub mailbox: Arc<Mailbox>,
    pub last: Option<Arc<ProbeResult>>,
    pub last_failure: Option<Arc<ProbeResult>>,
    /// The last resolution of its canaries per sink, by sink name.
    pub delivery: Vec<Arc<Resolution>>,
}

/// What every mailbox did last, shared between the scheduler and the web side.
#[derive(Default)]
pub struct Board {
    inner: RwLock<BoardInner>,
}

/// Mailboxes in config order, with an index so recording a result is O(1) even with
/// 10,000 mailboxes.
#[derive(Default)]
struct BoardInner {
    entries: Vec<MailboxStatus>,
    index: HashMap<String, usize>,
}

impl Board {
    pub fn new() -> Board {
        Board::default()
    }

    /// Replaces the set of mailboxes, keeping the history of those that stay.
    pub fn set_mailboxes(&self, mailboxes: &[Arc<Mailbox>]) {
        let mut g = self.write();
        let mut old: HashMap<String, MailboxStatus> = g
            .entries
            .drain(..)
            .map(|s| (s.mailbox.name.clone(), s))
            .collect();
        g.entries = mailboxes
            .iter()
            .map(|mb| {
                let prev = old.remove(&mb.name);
                MailboxStatus {
                    mailbox: mb.clone(),
                    last: prev.as_ref().and_then(|p| p.last.clone()),
                    delivery: prev
                        .as_ref()
                        .map(|p| p.delivery.clone())
                        .unwrap_or_default(),
                    last_failure: prev.and_then(|p| p.last_failure),
                }
            })
            .collect();
        g.index = g
            .entries
            .iter()
            .enumerate()
            .map(|(i, s)| (s.mailbox.name.clone(), i))
            .collect();
    }

    pub fn record(&self, mut r: ProbeResult) {
        // The page shows the transcript of the last failure only; a success's transcript
        // would cost ~4 KiB per mailbox (40 MiB at 10,000 mailboxes) for nothing.
        if r.success() {
            r.transcript = Default::default();
        }
        let r = Arc::new(r);
        let mut g = self.write();
        let Some(&i) = g.index.get(&r.mailbox) else {
            return;
        };
        let s = &mut g.entries[i];
        if !r.success() {
            s.last_failure = Some(r.clone());
        }
        s.last = Some(r);
    }

    pub fn snapshot(&self) -> Vec<MailboxStatus> {
        self.inner
            .read()
            .unwrap_or_else(|e| e.into_inner())
            .entries
            .clone()
    }

    fn write(&self) -> std::sync::RwLockWriteGuard<'_, BoardInner> {
        self.inner.write().unwrap_or_else(|e| e.into_inner())
    }
}

/// Delivery outcomes are shown on the status page, and each one is logged once here.
impl DeliveryEvents for Board {
    fn resolved(&self, r: &Resolution) {
        tracing::info!(mailbox = %r.mailbox, sink = %r.sink, probe_id = %r.probe_id, result = r.outcome.as_str(), seconds = r.seconds, detail = %r.to_text(), "canary resolved");
        let r = Arc::new(r.clone());
        let mut g = self.write();
        let Some(&i) = g.index.get(&r.mailbox) else {
            return;
        };
        let d = &mut g.entries[i].delivery;
        d.retain(|x| x.sink != r.sink);
        d.push(r);
        d.sort_by(|a, b| a.sink.cmp(&b.sink));
    }

    fn bounced(&self, _: &str, _: &BounceInfo) {}
    fn pending(&self, _: &str, _: &str, _: usize) {}
    fn sink_read(&self, _: &str, _: Option<crate::classify::Class>) {}
}
