//! The schedule: one task per mailbox, each interval with ±10% jitter, the first probes
//! spread across the first interval. A mailbox never has two probes at once: a probe that
//! falls due while the previous one still runs is skipped and counted, never queued, and
//! one stuck server cannot delay any other mailbox.
//!
//! Before each probe the task asks the [`SendGate`]: a back-off, a spent budget, the
//! provider's per-minute share or a state directory that cannot record the send skips
//! the probe (counted by reason). A reload ([`Scheduler::apply`]) keeps the tasks of
//! unchanged mailboxes, so their schedules and ledgers carry on.
//!
//! Each probe's result goes to the metrics and to the [`Board`] the status page reads.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::sync::watch;
use tokio::task::JoinHandle;
use tokio::time::Instant;

use crate::auth::{CredentialSource, Credentials};
pub use crate::board::{Board, MailboxStatus};
use crate::config::Mailbox;
use crate::delivery::Tracker;
use crate::gate::{Permit, SendGate, SkipReason};
use crate::metrics::{Metrics, QuotaSource};
use crate::probe::{Phase, ProbeResult, Prober, SendHook, Template};
use crate::quota::Ledger;
use crate::state::StateStore;
use crate::util::{lock, stopped};

/// Everything a mailbox task needs, shared by all of them.
pub struct Shared {
    pub prober: Arc<Prober>,
    pub metrics: Arc<Metrics>,
    pub board: Arc<Board>,
    /// Every mailbox's ledger and the budget, rate and state checks before a probe.
    pub gate: SendGate,
    /// The canaries in flight, for the mailboxes that have sinks.
    pub tracker: Option<Arc<Tracker>>,
    /// The mailboxes of the config in force: a removed mailbox's clean-up skips a name
    /// that a later reload brought back.
    active: Mutex<HashMap<String, Arc<Mailbox>>>,
}

impl Shared {
    /// `store` is where ledgers persist; `None` keeps them in memory only (tests).
    pub fn new(
        prober: Arc<Prober>,
        metrics: Arc<Metrics>,
        board: Arc<Board>,
        store: Option<StateStore>,
    ) -> Shared {
        Shared {
            prober,
            metrics,
            board,
            gate: SendGate::new(store),
            tracker: None,
            active: Mutex::new(HashMap::new()),
        }
    }
}

/// The quota series are read from here at each scrape: the rolling windows move between
/// sends, so a scrape must see them as of now, not as of the last send.
impl QuotaSource for Shared {
    fn for_each_ledger(&self, f: &mut dyn FnMut(&Mailbox, &Ledger)) {
        let active: Vec<Arc<Mailbox>> = lock(&self.active).values().cloned().collect();
        for mb in active {
            self.gate.with_ledger(&mb.name, |l| f(&mb, l));
        }
    }
}

/// How the first probes are placed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Start {
    /// Uniformly across the first interval, so 1,000 mailboxes don't connect at once.
    Spread,
    /// All at once (demos and `--once`-style starts).
    Immediate,
}

struct Running {
    mailbox: Arc<Mailbox>,
    stop: watch::Sender<bool>,
    handle: JoinHandle<()>,
}

/// The mailbox tasks. [`Scheduler::apply`] starts, keeps, restarts or stops them to
/// match a config; [`Scheduler::shutdown`] stops them all and waits for probes in
/// flight (each bounded by its own deadlines).
pub struct Scheduler {
    shared: Arc<Shared>,
    running: HashMap<String, Running>,
    /// Removed mailboxes whose last probe may still run, with their clean-up task.
    draining: HashMap<String, JoinHandle<()>>,
    start: Start,
}

impl Scheduler {
    pub fn new(shared: Arc<Shared>, start: Start) -> Scheduler {
        Scheduler {
            shared,
            running: HashMap::new(),
            draining: HashMap::new(),
            start,
        }
    }

    pub fn shared(&self) -> &Arc<Shared> {
        &self.shared
    }

    /// Makes the running tasks match `mailboxes`: unchanged mailboxes keep their task
    /// and schedule; changed ones restart (after their probe in flight, never
    /// overlapping it); removed ones stop and their series are deleted.
    pub fn apply(&mut self, mailboxes: &[Arc<Mailbox>], creds: &HashMap<String, CredentialSource>) {
        self.shared.board.set_mailboxes(mailboxes);
        let wanted: HashMap<&str, &Arc<Mailbox>> =
            mailboxes.iter().map(|m| (m.name.as_str(), m)).collect();

        let removed: Vec<String> = self
            .running
            .keys()
            .filter(|n| !wanted.contains_key(n.as_str()))
            .cloned()
            .collect();
        *lock(&self.shared.active) = wanted
            .iter()
            .map(|(n, m)| ((*n).to_owned(), Arc::clone(m)))
            .collect();
        self.draining.retain(|_, h| !h.is_finished());
        for name in removed {
            if let Some(r) = self.running.remove(&name) {
                let _ = r.stop.send(true);
                let shared = self.shared.clone();
                let n = name.clone();
                // Delete the series only after the last probe recorded its result, and
                // not at all if a later reload brought the mailbox back meanwhile.
                let cleanup = tokio::spawn(async move {
                    let _ = r.handle.await;
                    if !lock(&shared.active).contains_key(&n) {
                        shared.metrics.remove_mailbox(&n);
                        shared.gate.forget(&n);
                        tracing::info!(mailbox = %n, "mailbox removed");
                    }
                });
                self.draining.insert(name, cleanup);
            }
        }

        for mb in mailboxes {
            let previous = match self.running.remove(&mb.name) {
                Some(r) if r.mailbox == *mb => {
                    self.running.insert(mb.name.clone(), r);
                    continue;
                }
                Some(r) => {
                    let _ = r.stop.send(true);
                    tracing::info!(mailbox = %mb.name, "mailbox changed; restarting its schedule");
                    Some(r.handle)
                }
                // Back after a removal: wait for the old task's last probe too.
                None => self.draining.remove(&mb.name),
            };
            let template = match Template::new(
                &mb.name,
                &mb.from,
                &mb.to,
                self.shared.prober.helo_name(),
            ) {
                Ok(t) => t,
                Err(e) => {
                    tracing::error!(mailbox = %mb.name, error = %e, "cannot build the canary message; mailbox not probed");
                    continue;
                }
            };
            self.shared.metrics.register_mailbox(mb);
            let first = match self.start {
                Start::Spread => mb.interval.mul_f64(rand::random::<f64>()),
                Start::Immediate => Duration::ZERO,
            };
            let (stop, stop_rx) = watch::channel(false);
            let task = MailboxTask {
                shared: self.shared.clone(),
                mailbox: mb.clone(),
                template,
                creds: creds
                    .get(&mb.name)
                    .cloned()
                    .unwrap_or(CredentialSource::Static(Credentials::None)),
                stop: stop_rx,
            };
            let handle = tokio::spawn(task.run(first, previous));
            self.running.insert(
                mb.name.clone(),
                Running {
                    mailbox: mb.clone(),
                    stop,
                    handle,
                },
            );
        }
    }

    /// Stops every task and waits for probes in flight to finish.
    pub async fn shutdown(self) {
        for r in self.running.values() {
            let _ = r.stop.send(true);
        }
        for (name, handle) in self
            .running
            .into_iter()
            .map(|(n, r)| (n, r.handle))
            .chain(self.draining)
        {
            if let Err(e) = handle.await {
                tracing::error!(mailbox = %name, error = %e, "a mailbox task ended abnormally");
            }
        }
        // A clean stop leaves the exact ledgers, without reservations.
        self.shared.gate.flush().await;
    }

    pub fn len(&self) -> usize {
        self.running.len()
    }

    pub fn is_empty(&self) -> bool {
        self.running.is_empty()
    }
}

struct MailboxTask {
    shared: Arc<Shared>,
    mailbox: Arc<Mailbox>,
    template: Template,
    creds: CredentialSource,
    stop: watch::Receiver<bool>,
}

/// The interval with ±10% jitter, so probes of many mailboxes drift apart.
fn jittered(interval: Duration) -> Duration {
    interval.mul_f64(0.9 + 0.2 * rand::random::<f64>())
}

impl MailboxTask {
    async fn run(mut self, first: Duration, previous: Option<JoinHandle<()>>) {
        // A restarted mailbox waits for its old task's probe in flight: never two at once.
        if let Some(p) = previous {
            let _ = p.await;
        }
        let name = self.mailbox.name.clone();
        // Loaded now, so the mailbox's quota series exist from its start.
        self.shared.gate.ledger(&name).await;
        let mut due = Instant::now() + first;
        loop {
            let stop = tokio::select! {
                _ = tokio::time::sleep_until(due) => false,
                _ = stopped(&mut self.stop) => true,
            };
            if stop || *self.stop.borrow() {
                // A slot that fell due as we stopped is a probe not run.
                if Instant::now() >= due {
                    self.shared.metrics.skipped(&name, SkipReason::Shutdown);
                }
                break;
            }
            self.shared.metrics.observe_lateness(due.elapsed());
            self.tick().await;

            due += jittered(self.mailbox.interval);
            let now = Instant::now();
            while due <= now {
                // The probe overran its slot: that slot is skipped, not queued.
                self.shared.metrics.skipped(&name, SkipReason::Concurrency);
                tracing::warn!(mailbox = %name, "probe overran its interval; next slot skipped");
                due += jittered(self.mailbox.interval);
            }
        }
        tracing::debug!(mailbox = %name, "mailbox task stopped");
    }

    /// One due slot: skip (back-off, budget, rate, state) or probe.
    async fn tick(&self) {
        let mb = &*self.mailbox;
        let permit = match self.shared.gate.admit(mb).await {
            Ok(p) => p,
            Err(refusal) => {
                self.shared.metrics.skipped(&mb.name, refusal.reason);
                if refusal.reason == SkipReason::State {
                    tracing::error!(mailbox = %mb.name, reason = refusal.reason.as_str(), detail = %refusal.detail, "probe skipped: a send that cannot be recorded is not made");
                } else {
                    tracing::info!(mailbox = %mb.name, reason = refusal.reason.as_str(), detail = %refusal.detail, "probe skipped");
                }
                return;
            }
        };
        // The permit records the send right before the message is written; its
        // reservation is on disk already, so a crash mid-DATA still counts.
        let hooks = SendHooks::new(&permit, self.shared.tracker.as_deref(), &mb.name);
        let result = self
            .shared
            .prober
            .probe(mb, &self.template, &self.creds, Some(&hooks))
            .await;
        log_result(&result);
        hooks.after(&result).await;

        let (class, code) = match &result.failure {
            Some(f) => (Some(f.class), f.code.as_str()),
            None => (None, ""),
        };
        let pause = self.shared.gate.finish(mb, permit, class, code).await;
        if let Some(p) = pause {
            tracing::warn!(mailbox = %mb.name, pause_seconds = p.as_secs(), code = %code, "backing off after a throttling or quota reply");
        }
        self.shared.metrics.record(&result);
        self.shared.board.record(result);
    }
}

/// What happens right before a canary is written: the send goes on the ledger (no
/// I/O: its reservation is on disk already), and, for a mailbox with sinks, the canary
/// is written down as in flight.
pub struct SendHooks<'a> {
    permit: &'a Permit,
    tracking: Option<(&'a Tracker, &'a str, Vec<String>)>,
}

impl<'a> SendHooks<'a> {
    pub fn new(
        permit: &'a Permit,
        tracker: Option<&'a Tracker>,
        mailbox: &'a str,
    ) -> SendHooks<'a> {
        let tracking = tracker
            .filter(|t| t.tracks(mailbox))
            .map(|t| (t, mailbox, t.route(mailbox)));
        SendHooks { permit, tracking }
    }

    /// After the probe: the canary was accepted (when the 250 after DATA came) or not
    /// (then no sink waits for it).
    pub async fn after(&self, r: &ProbeResult) {
        let Some((tracker, mailbox, _)) = &self.tracking else {
            return;
        };
        if r.message_id.is_none() {
            return;
        }
        let accepted = r.failure.as_ref().is_none_or(|f| f.phase == Phase::Quit);
        let at = accepted.then(|| {
            let end = r
                .finished_at
                .duration_since(std::time::UNIX_EPOCH)
                .map_or(0.0, |d| d.as_secs_f64());
            end - r.phase(Phase::Quit).map_or(0.0, |d| d.as_secs_f64())
        });
        tracker.sent(mailbox, &r.probe_id, at).await;
    }
}

impl SendHook for SendHooks<'_> {
    fn before_send<'b>(
        &'b self,
        recipients: u32,
        message_id: &'b str,
        probe_id: &'b str,
    ) -> std::pin::Pin<Box<dyn std::future::Future<Output = ()> + Send + 'b>> {
        self.permit.record_send(recipients);
        Box::pin(async move {
            if let Some((tracker, mailbox, sinks)) = &self.tracking {
                let now = std::time::SystemTime::now()
                    .duration_since(std::time::UNIX_EPOCH)
                    .map_or(0.0, |d| d.as_secs_f64());
                tracker
                    .register(mailbox, probe_id, message_id, sinks, now)
                    .await;
            }
        })
    }
}

/// One log line per probe: info on success, warn with class, code and hint on failure.
pub fn log_result(r: &ProbeResult) {
    match &r.failure {
        None => tracing::info!(
            mailbox = %r.mailbox,
            probe_id = %r.probe_id,
            total_seconds = r.total.as_secs_f64(),
            message_id = r.message_id.as_deref().unwrap_or(""),
            "probe succeeded"
        ),
        Some(f) => tracing::warn!(
            mailbox = %r.mailbox,
            probe_id = %r.probe_id,
            class = %f.class,
            phase = %f.phase,
            code = %f.code,
            reply = f.reply.as_deref().unwrap_or(""),
            error = %f.error,
            hint = %f.hint,
            total_seconds = r.total.as_secs_f64(),
            "probe failed"
        ),
    }
}
