//! The running sink readers: one task per configured sink (however many mailboxes send
//! to it), restarted when a reload changes what it reads, plus the ticker that declares
//! overdue canaries lost. Delivery news fans out to the metrics and the status board.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use tokio::sync::watch;
use tokio::task::JoinHandle;

use crate::auth::{CredentialSource, Credentials};
use crate::board::Board;
use crate::classify::Class;
use crate::config::{Config, Provider, Sink};
use crate::delivery::{BounceInfo, DeliveryEvents, Resolution, SinkReader, SinkReaderOptions};
use crate::metrics::Metrics;
use crate::util::{stopped, unix_now};

/// How often overdue canaries are looked for.
const EXPIRY_TICK: Duration = Duration::from_secs(5);

/// Sends delivery news to the metrics and the board.
pub struct Fanout {
    pub metrics: Arc<Metrics>,
    pub board: Arc<Board>,
}

impl DeliveryEvents for Fanout {
    fn resolved(&self, r: &Resolution) {
        self.metrics.resolved(r);
        self.board.resolved(r);
    }
    fn bounced(&self, mailbox: &str, b: &BounceInfo) {
        self.metrics.bounced(mailbox, b);
    }
    fn pending(&self, mailbox: &str, sink: &str, n: usize) {
        self.metrics.pending(mailbox, sink, n);
    }
    fn sink_read(&self, sink: &str, failure: Option<Class>) {
        self.metrics.sink_read(sink, failure);
    }
}

/// What a reader was started with: a reload that changes any of it (the sink, a
/// password included, or which mailboxes it serves) restarts the reader.
#[derive(PartialEq)]
struct Started {
    sink: Sink,
    from_domains: Vec<(String, String)>,
    bounce_for: Vec<String>,
}

struct Running {
    started: Started,
    stop: watch::Sender<bool>,
    handle: JoinHandle<()>,
}

pub struct SinkPool {
    opts: SinkReaderOptions,
    metrics: Option<Arc<Metrics>>,
    running: HashMap<String, Running>,
    expiry: (watch::Sender<bool>, JoinHandle<()>),
}

impl SinkPool {
    pub fn new(opts: SinkReaderOptions, metrics: Option<Arc<Metrics>>) -> SinkPool {
        let (tx, mut rx) = watch::channel(false);
        let tracker = opts.tracker.clone();
        let handle = tokio::spawn(async move {
            loop {
                tokio::select! {
                    _ = tokio::time::sleep(EXPIRY_TICK) => tracker.expire(unix_now() as f64).await,
                    _ = stopped(&mut rx) => return,
                }
            }
        });
        SinkPool {
            opts,
            metrics,
            running: HashMap::new(),
            expiry: (tx, handle),
        }
    }

    pub fn opts(&self) -> &SinkReaderOptions {
        &self.opts
    }

    /// Makes the readers match `cfg`. Every mailbox's canaries in flight are loaded
    /// first, so a reader never skips a canary the tracker has not read from disk yet.
    pub async fn apply(&mut self, cfg: &Config, creds: &HashMap<String, CredentialSource>) {
        let tracker = &self.opts.tracker;
        let routes: HashMap<String, Vec<String>> = cfg
            .mailboxes
            .iter()
            .map(|m| {
                (
                    m.name.clone(),
                    cfg.sinks_of(m).iter().map(|s| s.name.clone()).collect(),
                )
            })
            .collect();
        let addresses = cfg
            .sinks
            .iter()
            .map(|s| (s.name.clone(), s.address.clone()))
            .collect();
        let watched: std::collections::HashSet<String> = cfg
            .mailboxes
            .iter()
            .filter(|m| !cfg.bounce_sinks_of(m).is_empty())
            .map(|m| m.name.clone())
            .collect();
        let with_sinks: Vec<String> = routes
            .iter()
            .filter(|(m, s)| !s.is_empty() || watched.contains(*m))
            .map(|(m, _)| m.clone())
            .collect();
        tracker.configure(cfg.delivery.timeout, addresses, routes, watched);
        for m in &with_sinks {
            tracker.load(m).await;
        }
        let wanted: HashMap<&str, &Arc<Sink>> =
            cfg.sinks.iter().map(|s| (s.name.as_str(), s)).collect();
        let removed: Vec<String> = self
            .running
            .keys()
            .filter(|n| !wanted.contains_key(n.as_str()))
            .cloned()
            .collect();
        for name in removed {
            if let Some(r) = self.running.remove(&name) {
                let _ = r.stop.send(true);
                if let Some(m) = &self.metrics {
                    m.remove_sink(&name);
                }
            }
        }
        for sink in &cfg.sinks {
            let mut from_domains = HashMap::new();
            for m in cfg
                .mailboxes
                .iter()
                .filter(|m| cfg.sinks_of(m).iter().any(|s| s.name == sink.name))
            {
                from_domains.insert(m.name.clone(), m.from_domain().to_string());
            }
            let bounce_for: HashMap<String, Provider> = cfg
                .mailboxes
                .iter()
                .filter(|m| m.from.eq_ignore_ascii_case(&sink.address))
                .map(|m| (m.name.clone(), m.provider))
                .collect();
            let mut domains: Vec<(String, String)> = from_domains.clone().into_iter().collect();
            domains.sort();
            let mut bounces: Vec<String> = bounce_for.keys().cloned().collect();
            bounces.sort();
            let started = Started {
                sink: (**sink).clone(),
                from_domains: domains,
                bounce_for: bounces,
            };
            if self
                .running
                .get(&sink.name)
                .is_some_and(|r| r.started == started && !r.handle.is_finished())
            {
                continue;
            }
            if let Some(old) = self.running.remove(&sink.name) {
                let _ = old.stop.send(true);
            }
            if let Some(m) = &self.metrics {
                m.register_sink(&sink.name);
            }
            let reader = SinkReader {
                sink: sink.clone(),
                creds: creds
                    .get(&sink.name)
                    .cloned()
                    .unwrap_or(CredentialSource::Static(Credentials::None)),
                from_domains,
                bounce_for,
                opts: self.opts.clone(),
            };
            let (stop, rx) = watch::channel(false);
            let handle = tokio::spawn(reader.run(rx));
            self.running.insert(
                sink.name.clone(),
                Running {
                    started,
                    stop,
                    handle,
                },
            );
        }
    }

    /// Stops every reader (a read in progress is abandoned: the read position on disk
    /// is from before it, so the next start reads it again) and the expiry ticker.
    pub async fn shutdown(self) {
        for r in self.running.values() {
            let _ = r.stop.send(true);
        }
        for (_, r) in self.running {
            let _ = r.handle.await;
        }
        let _ = self.expiry.0.send(true);
        let _ = self.expiry.1.await;
    }
}
