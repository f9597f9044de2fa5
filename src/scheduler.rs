//! The schedule: one task per mailbox, each interval with ±10% jitter, the first probes
//! spread across the first interval. A mailbox never has two probes at once: a probe that
//! falls due while the previous one still runs is skipped and counted, never queued, and
//! one stuck server cannot delay any other mailbox.
//!
//! The scheduler owns the "what happened last" board that the status page reads.

use std::collections::HashMap;
use std::sync::{Arc, RwLock};
use std::time::Duration;

use tokio::sync::watch;
use tokio::task::JoinSet;
use tokio::time::Instant;

use crate::auth::{CredentialSource, Credentials};
use crate::config::Mailbox;
use crate::metrics::{Metrics, SkipReason};
use crate::probe::{ProbeResult, Prober, Template};

/// The last results of one mailbox, for the status page.
#[derive(Debug, Clone)]
pub struct MailboxStatus {
    pub mailbox: Arc<Mailbox>,
    pub last: Option<Arc<ProbeResult>>,
    pub last_failure: Option<Arc<ProbeResult>>,
}

/// What every mailbox did last, shared between the scheduler and the web side.
#[derive(Default)]
pub struct Board {
    inner: RwLock<Vec<MailboxStatus>>,
}

impl Board {
    pub fn new() -> Board {
        Board::default()
    }

    /// Replaces the set of mailboxes, keeping the history of those that stay.
    pub fn set_mailboxes(&self, mailboxes: &[Arc<Mailbox>]) {
        let mut g = self.write();
        let old: HashMap<String, MailboxStatus> =
            g.drain(..).map(|s| (s.mailbox.name.clone(), s)).collect();
        *g = mailboxes
            .iter()
            .map(|mb| {
                let prev = old.get(&mb.name);
                MailboxStatus {
                    mailbox: mb.clone(),
                    last: prev.and_then(|p| p.last.clone()),
                    last_failure: prev.and_then(|p| p.last_failure.clone()),
                }
            })
            .collect();
    }

    pub fn record(&self, r: ProbeResult) {
        let r = Arc::new(r);
        let mut g = self.write();
        if let Some(s) = g.iter_mut().find(|s| s.mailbox.name == r.mailbox) {
            if !r.success() {
                s.last_failure = Some(r.clone());
            }
            s.last = Some(r);
        }
    }

    pub fn snapshot(&self) -> Vec<MailboxStatus> {
        self.inner.read().unwrap_or_else(|e| e.into_inner()).clone()
    }

    fn write(&self) -> std::sync::RwLockWriteGuard<'_, Vec<MailboxStatus>> {
        self.inner.write().unwrap_or_else(|e| e.into_inner())
    }
}

/// Everything a mailbox task needs, shared by all of them.
pub struct Shared {
    pub prober: Arc<Prober>,
    pub metrics: Arc<Metrics>,
    pub board: Arc<Board>,
}

/// How the first probes are placed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Start {
    /// Uniformly across the first interval, so 1,000 mailboxes don't connect at once.
    Spread,
    /// All at once (demos and `--once`-style starts).
    Immediate,
}

/// Runs the mailbox tasks until `shutdown` turns true; then waits for probes in flight
/// (each bounded by its own deadlines) and returns.
pub struct Scheduler {
    shared: Arc<Shared>,
    tasks: JoinSet<()>,
    shutdown: watch::Receiver<bool>,
}

impl Scheduler {
    pub fn new(shared: Arc<Shared>, shutdown: watch::Receiver<bool>) -> Scheduler {
        Scheduler {
            shared,
            tasks: JoinSet::new(),
            shutdown,
        }
    }

    /// Starts one task per mailbox.
    pub fn start(&mut self, mailboxes: &[Arc<Mailbox>], creds: &HashMap<String, CredentialSource>, start: Start) {
        self.shared.board.set_mailboxes(mailboxes);
        for mb in mailboxes {
            self.shared.metrics.register_mailbox(mb);
            let template = match Template::new(&mb.name, &mb.from, &mb.to, self.shared.prober.helo_name()) {
                Ok(t) => t,
                Err(e) => {
                    tracing::error!(mailbox = %mb.name, error = %e, "cannot build the canary message; mailbox not probed");
                    continue;
                }
            };
            let first = match start {
                Start::Spread => mb.interval.mul_f64(rand::random::<f64>()),
                Start::Immediate => Duration::ZERO,
            };
            let c = creds
                .get(&mb.name)
                .cloned()
                .unwrap_or(CredentialSource::Static(Credentials::None));
            let task = MailboxTask {
                shared: self.shared.clone(),
                mailbox: mb.clone(),
                template,
                creds: c,
                shutdown: self.shutdown.clone(),
            };
            self.tasks.spawn(task.run(first));
        }
    }

    /// Waits for every task to end (they end after `shutdown` turns true).
    pub async fn join(mut self) {
        while let Some(r) = self.tasks.join_next().await {
            if let Err(e) = r {
                tracing::error!(error = %e, "a mailbox task ended abnormally");
            }
        }
    }
}

struct MailboxTask {
    shared: Arc<Shared>,
    mailbox: Arc<Mailbox>,
    template: Template,
    creds: CredentialSource,
    shutdown: watch::Receiver<bool>,
}

/// Resolves once `rx` holds `true` (or its sender is gone). The borrow guard is dropped
/// here, so callers stay `Send`.
pub async fn stopped(rx: &mut watch::Receiver<bool>) {
    let _ = rx.wait_for(|stop| *stop).await.map(|_| ());
}

/// The interval with ±10% jitter, so probes of many mailboxes drift apart.
fn jittered(interval: Duration) -> Duration {
    interval.mul_f64(0.9 + 0.2 * rand::random::<f64>())
}

impl MailboxTask {
    async fn run(mut self, first: Duration) {
        let name = self.mailbox.name.clone();
        let mut due = Instant::now() + first;
        loop {
            tokio::select! {
                _ = tokio::time::sleep_until(due) => {}
                _ = stopped(&mut self.shutdown) => break,
            }
            if *self.shutdown.borrow() {
                break;
            }
            // Not raced against shutdown: an in-flight probe finishes within its own
            // deadlines and says QUIT.
            let result = self
                .shared
                .prober
                .probe_with_source(&self.mailbox, &self.template, &self.creds)
                .await;
            log_result(&result);
            self.shared.metrics.record(&result);
            self.shared.board.record(result);

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
