//! The send gate: the one owner of every mailbox's [`Ledger`] lifecycle. A caller asks it
//! once before a probe ([`SendGate::admit`]) and tells it once after
//! ([`SendGate::finish`]); the [`Permit`] in between records the send right before the
//! message is written.
//!
//! Every path that can send a canary goes through here: the schedule, the first probes of
//! `--probe.immediate`, the probes a reload starts, and `smtp-canary probe NAME` (which
//! opens the same state directory under the same lock). So the promises hold at run
//! time, not only at load:
//! - no probe after the day's budget is spent, or during a back-off;
//! - no more than the provider's per-minute share ([`config::MAX_MINUTE_SHARE`](crate::config::MAX_MINUTE_SHARE)) in any
//!   rolling minute, however many reloads or restarts happen in it;
//! - no send that is not on disk first: admission writes a reservation covering the send
//!   before the probe connects, and if that write fails (a full, read-only or broken
//!   state directory) the probe is skipped with [`SkipReason::State`] rather than sent
//!   unrecorded. A `kill -9` at any point therefore never adds a send.

use std::collections::HashMap;
use std::future::Future;
use std::pin::Pin;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use crate::classify::Class;
use crate::config::{self, Mailbox};
use crate::probe::SendHook;
use crate::quota::{self, Ledger, PauseReason, Reservation, Unit, Window};
use crate::state::{Loaded, StateStore};
use crate::util::{lock, unix_now};

/// The longest the reservation write before a probe may take.
const STATE_WRITE_DEADLINE: Duration = Duration::from_secs(10);

/// Why a due probe was not run (the `reason` label of `probes_skipped_total`).
#[derive(
    Debug,
    Clone,
    Copy,
    PartialEq,
    Eq,
    Hash,
    strum::IntoStaticStr,
    strum::Display,
    strum::EnumString,
    strum::VariantArray,
)]
#[strum(serialize_all = "snake_case")]
pub enum SkipReason {
    /// The day's budget is spent (or treated as spent after a corrupt state file).
    Budget,
    /// A back-off after throttling or a quota reply.
    Backoff,
    /// The previous probe overran its slot.
    Concurrency,
    /// The slot fell due during shutdown.
    Shutdown,
    /// The send could not be recorded in the state directory first.
    State,
    /// The provider's per-minute share is reached.
    Rate,
}

impl SkipReason {
    /// Every variant, in declaration order.
    pub const ALL: &'static [SkipReason] = <SkipReason as strum::VariantArray>::VARIANTS;

    pub fn as_str(self) -> &'static str {
        self.into()
    }
}

/// A refused admission: the reason, and what to tell the operator.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Refusal {
    pub reason: SkipReason,
    pub detail: String,
}

/// The ledgers of every mailbox, loaded from the state directory on first use and kept
/// across reloads.
pub struct SendGate {
    /// Where ledgers persist; `None` keeps them in memory only (tests).
    store: Option<StateStore>,
    ledgers: Mutex<HashMap<String, Arc<Mutex<Ledger>>>>,
}

/// The right to send one canary, granted by [`SendGate::admit`]. Its reservation is
/// already on disk, so recording the send needs no I/O.
pub struct Permit {
    ledger: Arc<Mutex<Ledger>>,
}

impl SendGate {
    pub fn new(store: Option<StateStore>) -> SendGate {
        SendGate {
            store,
            ledgers: Mutex::new(HashMap::new()),
        }
    }

    /// The mailbox's ledger, loaded from the state directory on first use. A corrupt
    /// file counts as a spent day (sending too much is worse than skipping a day).
    pub async fn ledger(&self, name: &str) -> Arc<Mutex<Ledger>> {
        if let Some(l) = lock(&self.ledgers).get(name) {
            return l.clone();
        }
        let now = unix_now();
        let loaded = match &self.store {
            None => Loaded::Fresh(Ledger::default()),
            Some(store) => {
                let store = store.clone();
                let n = name.to_owned();
                tokio::task::spawn_blocking(move || store.load(&n, now))
                    .await
                    .unwrap_or_else(|e| Loaded::Corrupt {
                        moved_to: None,
                        reason: format!("state task failed: {e}"),
                    })
            }
        };
        let ledger = match loaded {
            Loaded::Fresh(l) | Loaded::Ok(l) => l,
            Loaded::Corrupt { moved_to, reason } => {
                tracing::error!(
                    mailbox = %name,
                    reason = %reason,
                    moved_to = %moved_to.as_ref().map(|p| p.display().to_string()).unwrap_or_default(),
                    "state file is corrupt; treating today's budget as spent (no canary for 24 h) rather than risk sending too much"
                );
                let l = Ledger::spent(now);
                if let Err(e) = self.persist(name, &l).await {
                    tracing::error!(mailbox = %name, error = %e, "cannot persist the send ledger");
                }
                l
            }
        };
        lock(&self.ledgers)
            .entry(name.to_owned())
            .or_insert_with(|| Arc::new(Mutex::new(ledger)))
            .clone()
    }

    /// Calls `f` with the mailbox's ledger, if it was loaded, without copying it.
    pub fn with_ledger<R>(&self, name: &str, f: impl FnOnce(&Ledger) -> R) -> Option<R> {
        let l = lock(&self.ledgers).get(name).cloned()?;
        let mut guard = lock(&l);
        guard.prune(unix_now());
        Some(f(&guard))
    }

    /// Drops a removed mailbox's ledger from memory (its file stays).
    pub fn forget(&self, name: &str) {
        lock(&self.ledgers).remove(name);
    }

    /// Decides whether `mb` may probe now and, if so, makes sure its send is on disk
    /// before anything is sent.
    pub async fn admit(&self, mb: &Mailbox) -> Result<Permit, Refusal> {
        let ledger = self.ledger(&mb.name).await;
        let now = unix_now();
        let budget = config::daily_budget(mb);
        let recipients = u32::try_from(mb.to.len()).unwrap_or(u32::MAX);
        let reserve = {
            let mut l = lock(&ledger);
            l.prune(now);
            let refused = |reason, detail: String| Err(Refusal { reason, detail });
            match l.paused(now) {
                Some(PauseReason::Budget) => {
                    return refused(
                        SkipReason::Budget,
                        "today's budget is treated as spent (the state file was corrupt)".into(),
                    );
                }
                Some(PauseReason::Backoff) => {
                    return refused(
                        SkipReason::Backoff,
                        format!(
                            "backing off after throttling until unix time {}",
                            l.paused_until.unwrap_or(now)
                        ),
                    );
                }
                None => {}
            }
            if l.budget_remaining(budget, now) <= 0 {
                return refused(
                    SkipReason::Budget,
                    format!("the daily budget of {budget} canaries is spent"),
                );
            }
            if let Some(allowed) = config::minute_allowance(mb) {
                let used = l.used(Window::Minute, Unit::Messages, now);
                if used >= allowed {
                    return refused(
                        SkipReason::Rate,
                        format!(
                            "{used} canaries in the last minute; the canary may use {allowed} of the {} limit of {}/minute",
                            mb.provider,
                            mb.limits.messages_per_minute.unwrap_or(0)
                        ),
                    );
                }
            }
            if l.reserved.is_some_and(|r| r.count > 0) {
                None
            } else {
                let previous = l.reserved;
                l.reserved = Some(Reservation {
                    count: quota::reservation_chunk(budget),
                    at: now,
                    recipients,
                });
                Some((previous, l.clone()))
            }
        };
        if let Some((previous, snapshot)) = reserve {
            // A stalled disk (a hung network mount, a frozen file system) must not hold
            // the mailbox silently: past the deadline it is a `state` skip like any
            // other failed write.
            let written =
                tokio::time::timeout(STATE_WRITE_DEADLINE, self.persist(&mb.name, &snapshot))
                    .await
                    .unwrap_or(Err(crate::state::StateError::Timeout(STATE_WRITE_DEADLINE)));
            if let Err(e) = written {
                // Not on disk: the send must not happen.
                lock(&ledger).reserved = previous;
                return Err(Refusal {
                    reason: SkipReason::State,
                    detail: format!("cannot persist the send ledger: {e}"),
                });
            }
        }
        Ok(Permit { ledger })
    }

    /// After the probe: back off after throttling or a quota reply, or clear the
    /// back-off. Returns the pause, if one started.
    pub async fn finish(
        &self,
        mb: &Mailbox,
        permit: Permit,
        class: Option<Class>,
        code: &str,
    ) -> Option<Duration> {
        let now = unix_now();
        let (pause, snapshot) = {
            let mut l = lock(&permit.ledger);
            let before = (l.paused_until, l.strikes);
            let pause = l.after_probe(now, mb.interval, class, code);
            let changed = before != (l.paused_until, l.strikes);
            (pause, changed.then(|| l.clone()))
        };
        if let Some(l) = snapshot
            && let Err(e) = self.persist(&mb.name, &l).await
        {
            // Only the back-off is lost: the send itself was on disk before it happened.
            tracing::error!(mailbox = %mb.name, error = %e, "cannot persist the send ledger");
        }
        pause
    }

    /// At a clean stop: every ledger exactly as it is, without reservations.
    pub async fn flush(&self) {
        let reserved: Vec<(String, Ledger)> = lock(&self.ledgers)
            .iter()
            .filter_map(|(name, l)| {
                let l = lock(l);
                l.reserved
                    .is_some()
                    .then(|| (name.clone(), l.without_reservation()))
            })
            .collect();
        for (name, l) in reserved {
            if let Err(e) = self.persist(&name, &l).await {
                tracing::error!(mailbox = %name, error = %e, "cannot persist the send ledger");
            }
        }
    }

    async fn persist(&self, name: &str, ledger: &Ledger) -> Result<(), crate::state::StateError> {
        match &self.store {
            Some(store) => store.save(name, ledger.clone()).await,
            None => Ok(()),
        }
    }
}

impl Permit {
    /// Records the send; called right before the message is written. The reservation
    /// taken at admission covers it, so this never waits for the disk.
    pub fn record_send(&self, recipients: u32) {
        let mut l = lock(&self.ledger);
        l.record(unix_now(), recipients);
        if let Some(r) = &mut l.reserved {
            r.count = r.count.saturating_sub(1);
        }
    }
}

/// The probe calls this right before the message is written.
impl SendHook for Permit {
    fn before_send<'a>(
        &'a self,
        recipients: u32,
        _message_id: &'a str,
        _probe_id: &'a str,
    ) -> Pin<Box<dyn Future<Output = ()> + Send + 'a>> {
        self.record_send(recipients);
        Box::pin(std::future::ready(()))
    }
}
