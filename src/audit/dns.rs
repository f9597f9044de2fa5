//! DNS for one audit run: every query goes through [`Run::query`], which asks each
//! (name, type) at most once per run, runs at most `concurrency` queries at a time, puts
//! a deadline on each, and charges each domain's [`Budget`].
//!
//! This file owns the mapping from hickory's answers and errors to the audit's terms:
//! NXDOMAIN and "no records" are answers (the record does not exist); SERVFAIL, REFUSED,
//! timeouts and transport errors are failures, which make the audit incomplete.

use std::collections::HashMap;
use std::fmt;
use std::net::IpAddr;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use hickory_resolver::TokioResolver;
use hickory_resolver::net::{DnsError, NetError};
use hickory_resolver::proto::op::ResponseCode;
use hickory_resolver::proto::rr::{RData, RecordType};
use tokio::sync::{OnceCell, Semaphore};

/// The record types the audit asks for.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum RType {
    Txt,
    Mx,
    A,
    Aaaa,
}

impl RType {
    fn hickory(self) -> RecordType {
        match self {
            RType::Txt => RecordType::TXT,
            RType::Mx => RecordType::MX,
            RType::A => RecordType::A,
            RType::Aaaa => RecordType::AAAA,
        }
    }
}

impl fmt::Display for RType {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            RType::Txt => "TXT",
            RType::Mx => "MX",
            RType::A => "A",
            RType::Aaaa => "AAAA",
        })
    }
}

/// Why a query got no usable answer.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum FailureKind {
    #[error("SERVFAIL")]
    ServFail,
    #[error("REFUSED by the server")]
    Refused,
    #[error("no answer within {0:?}")]
    Timeout(Duration),
    #[error("more than {0} DNS queries for one domain; the audit stopped")]
    Budget(usize),
    #[error("{0}")]
    Other(String),
}

/// A query that failed, and so an audit that is incomplete.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{name} {rtype}: {kind}")]
pub struct DnsFailure {
    pub name: String,
    pub rtype: RType,
    pub kind: FailureKind,
}

/// What the server answered. An empty answer (NXDOMAIN or no records of the type) is a
/// "void" answer in RFC 7208's sense.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Answer {
    /// The name does not exist at all.
    pub nxdomain: bool,
    /// TXT records, each one's character-strings joined without separator (RFC 7208
    /// §3.3, RFC 6376 §3.6.2.2).
    pub txt: Vec<Vec<u8>>,
    /// MX records as (preference, exchange with trailing dot).
    pub mx: Vec<(u16, String)>,
    /// A / AAAA addresses.
    pub addrs: Vec<IpAddr>,
    /// Where a CNAME chain ended, when the name was an alias.
    pub cname_target: Option<String>,
}

impl Answer {
    pub fn is_void(&self) -> bool {
        self.txt.is_empty() && self.mx.is_empty() && self.addrs.is_empty()
    }
}

/// Limits of one audit.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct AuditOptions {
    /// The whole audit of one domain.
    pub deadline: Duration,
    /// One query (hickory's own retries run inside it).
    pub query_timeout: Duration,
    /// Queries one domain may cause (cache hits are free).
    pub max_queries: usize,
    /// Queries in flight at once, per run.
    pub concurrency: usize,
}

impl Default for AuditOptions {
    fn default() -> Self {
        AuditOptions {
            deadline: Duration::from_secs(30),
            // hickory tries each server for 3 s, twice: leave room for one retry.
            query_timeout: Duration::from_secs(7),
            // A policy at the 10-lookup limit needs about 25 queries (a:/mx: terms ask
            // A and AAAA); DKIM, DMARC and MX a handful more.
            max_queries: 120,
            concurrency: 16,
        }
    }
}

/// What a domain may still spend.
#[derive(Debug)]
pub struct Budget {
    spent: AtomicUsize,
    max: usize,
}

impl Budget {
    pub fn new(max: usize) -> Budget {
        Budget {
            spent: AtomicUsize::new(0),
            max,
        }
    }

    fn take(&self) -> bool {
        self.spent
            .fetch_update(Ordering::Relaxed, Ordering::Relaxed, |n| {
                (n < self.max).then_some(n + 1)
            })
            .is_ok()
    }

    /// Queries charged so far.
    #[cfg(test)]
    pub fn spent(&self) -> usize {
        self.spent.load(Ordering::Relaxed)
    }
}

type Slot = Arc<OnceCell<Result<Arc<Answer>, FailureKind>>>;

/// Canned answers by (name, record type), for audits without a resolver (tests and the
/// fuzz harness). A name that is not in it is NXDOMAIN.
pub type Zone = HashMap<(String, RType), Result<Answer, FailureKind>>;

/// Where answers come from. (One run has one source, so the size difference between
/// the variants costs nothing.)
#[allow(clippy::large_enum_variant)]
enum Source {
    Hickory(TokioResolver),
    Static(Zone),
}

/// One audit run: its cache, its concurrency limit and its options.
pub struct Run {
    source: Source,
    opts: AuditOptions,
    cache: Mutex<HashMap<(String, RType), Slot>>,
    permits: Semaphore,
    queries: AtomicUsize,
}

impl Run {
    pub fn new(resolver: TokioResolver, opts: AuditOptions) -> Run {
        Run::with_source(Source::Hickory(resolver), opts)
    }

    /// Canned TXT records (several per name allowed), for unit tests.
    #[cfg(test)]
    pub(crate) fn txt_zone(entries: &[(&str, &str)]) -> Zone {
        let mut z = HashMap::new();
        for (name, txt) in entries {
            let e = z
                .entry((name.to_string(), RType::Txt))
                .or_insert_with(|| Ok(Answer::default()));
            if let Ok(a) = e {
                a.txt.push(txt.as_bytes().to_vec());
            }
        }
        z
    }

    /// A run that answers from `answers` and never sends a query.
    pub(crate) fn canned(answers: Zone, opts: AuditOptions) -> Run {
        Run::with_source(Source::Static(answers), opts)
    }

    fn with_source(source: Source, opts: AuditOptions) -> Run {
        Run {
            source,
            opts,
            cache: Mutex::new(HashMap::new()),
            permits: Semaphore::new(opts.concurrency.max(1)),
            queries: AtomicUsize::new(0),
        }
    }

    pub fn options(&self) -> &AuditOptions {
        &self.opts
    }

    /// Queries sent to the server in this run (not counting cache hits).
    pub fn queries_sent(&self) -> usize {
        self.queries.load(Ordering::Relaxed)
    }

    /// The answer for `name`/`rtype`, asked at most once per run.
    pub async fn query(
        &self,
        budget: &Budget,
        name: &str,
        rtype: RType,
    ) -> Result<Arc<Answer>, DnsFailure> {
        let name = normalize(name);
        let slot: Slot = {
            // Poisoning only means a panic elsewhere; the map itself stays consistent.
            let mut cache = self.cache.lock().unwrap_or_else(|e| e.into_inner());
            cache.entry((name.clone(), rtype)).or_default().clone()
        };
        let fail = |kind| DnsFailure {
            name: name.clone(),
            rtype,
            kind,
        };
        if let Some(done) = slot.get() {
            return done.clone().map_err(fail);
        }
        if !budget.take() {
            return Err(fail(FailureKind::Budget(budget.max)));
        }
        slot.get_or_init(|| self.ask(&name, rtype))
            .await
            .clone()
            .map_err(fail)
    }

    async fn ask(&self, name: &str, rtype: RType) -> Result<Arc<Answer>, FailureKind> {
        // The semaphore is never closed, so acquiring only waits.
        let _permit = self.permits.acquire().await.ok();
        self.queries.fetch_add(1, Ordering::Relaxed);
        tracing::debug!(name, %rtype, "audit query");
        match &self.source {
            Source::Hickory(resolver) => {
                // Fully qualified: the system resolver's search list must not apply.
                let fqdn = format!("{name}.");
                let limit = self.opts.query_timeout;
                match tokio::time::timeout(limit, resolver.lookup(fqdn.as_str(), rtype.hickory()))
                    .await
                {
                    Err(_) => Err(FailureKind::Timeout(limit)),
                    Ok(Ok(lookup)) => Ok(Arc::new(answer_from(name, lookup.answers()))),
                    Ok(Err(e)) => classify(e, limit).map(Arc::new),
                }
            }
            Source::Static(map) => match map.get(&(name.to_string(), rtype)) {
                Some(r) => r.clone().map(Arc::new),
                None => Ok(Arc::new(Answer {
                    nxdomain: true,
                    ..Answer::default()
                })),
            },
        }
    }
}

/// Lower case, no trailing dot: the cache key and how names are shown.
pub fn normalize(name: &str) -> String {
    name.trim().trim_end_matches('.').to_ascii_lowercase()
}

/// The records of the asked type out of the answer section (which also holds the
/// CNAME chain hickory followed).
fn answer_from(name: &str, records: &[hickory_resolver::proto::rr::Record]) -> Answer {
    let mut a = Answer::default();
    for r in records {
        match &r.data {
            RData::TXT(txt) => a.txt.push(
                txt.txt_data
                    .iter()
                    .flat_map(|s| s.iter().copied())
                    .collect(),
            ),
            RData::MX(mx) => a.mx.push((mx.preference, mx.exchange.to_ascii())),
            RData::A(ip) => a.addrs.push(IpAddr::V4(ip.0)),
            RData::AAAA(ip) => a.addrs.push(IpAddr::V6(ip.0)),
            RData::CNAME(target) => a.cname_target = Some(normalize(&target.0.to_ascii())),
            _ => {}
        }
    }
    if a.cname_target.as_deref() == Some(name) {
        a.cname_target = None;
    }
    a
}

/// NXDOMAIN and "no records" are answers; everything else is a failure.
fn classify(e: NetError, limit: Duration) -> Result<Answer, FailureKind> {
    match e {
        NetError::Dns(DnsError::NoRecordsFound(nr)) => Ok(Answer {
            nxdomain: nr.response_code == ResponseCode::NXDomain,
            ..Answer::default()
        }),
        NetError::Dns(DnsError::ResponseCode(ResponseCode::ServFail)) => Err(FailureKind::ServFail),
        NetError::Dns(DnsError::ResponseCode(ResponseCode::Refused)) => Err(FailureKind::Refused),
        NetError::Timeout => Err(FailureKind::Timeout(limit)),
        other => Err(FailureKind::Other(other.to_string())),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn txt(s: &str) -> Result<Answer, FailureKind> {
        Ok(Answer {
            txt: vec![s.as_bytes().to_vec()],
            ..Answer::default()
        })
    }

    #[tokio::test]
    async fn asks_each_name_once_and_charges_the_budget() {
        let mut m = HashMap::new();
        m.insert(("a.test".to_string(), RType::Txt), txt("x"));
        let run = Run::canned(m, AuditOptions::default());
        let budget = Budget::new(2);
        for name in ["a.test", "A.TEST.", "a.test"] {
            let a = run.query(&budget, name, RType::Txt).await.unwrap();
            assert_eq!(a.txt, vec![b"x".to_vec()]);
        }
        assert_eq!(run.queries_sent(), 1);
        assert_eq!(budget.spent(), 1);
        // NXDOMAIN is an answer, not a failure.
        let nx = run.query(&budget, "b.test", RType::Txt).await.unwrap();
        assert!(nx.nxdomain && nx.is_void());
        let over = run.query(&budget, "c.test", RType::Txt).await.unwrap_err();
        assert_eq!(over.kind, FailureKind::Budget(2));
        assert_eq!(run.queries_sent(), 2);
    }

    #[tokio::test]
    async fn concurrent_askers_share_one_query() {
        let mut m = HashMap::new();
        m.insert(
            ("a.test".to_string(), RType::Mx),
            Err(FailureKind::ServFail),
        );
        let run = Run::canned(m, AuditOptions::default());
        let budget = Budget::new(10);
        let (x, y) = tokio::join!(
            run.query(&budget, "a.test", RType::Mx),
            run.query(&budget, "a.test", RType::Mx)
        );
        assert_eq!(x.unwrap_err().kind, FailureKind::ServFail);
        assert_eq!(y.unwrap_err().kind, FailureKind::ServFail);
        assert_eq!(run.queries_sent(), 1);
    }
}
