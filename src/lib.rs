//! smtp-canary: probes SMTP submission mailboxes with real canary messages, times every
//! phase of the session, classifies failures and exports it all as Prometheus metrics.
//!
//! The crate is laid out in layers, bottom first; a module uses only modules below it
//! ([`architecture`] writes the order down and a test keeps it true):
//! 1. utilities: [`util`] (time, locks, shutdown), [`fsutil`] (bounded reads, atomic
//!    writes), [`redact`] (scrubbing secrets out of outside text);
//! 2. vocabulary: [`smtp`] (replies, enhanced codes, phases), [`tls`] (trust),
//!    [`resolve`] (DNS), [`demo`] (the in-process relay and test server, PKI);
//! 3. [`config`]: the YAML schema, validation, provider presets, budget arithmetic and
//!    secrets;
//! 4. the domain: [`classify`] (replies to failure classes and hints), [`quota`]
//!    (rolling windows, back-off), [`state`] (the ledger files, the directory lock),
//!    [`auth`] (SASL, OAuth token sources and cache), [`probe`] (the timed SMTP
//!    session), [`gate`] (budget, rate and "on disk first" before every send),
//!    [`audit`] (SPF, DKIM, DMARC, MX and Basic-auth readiness findings), [`delivery`]
//!    (reading canaries back from sinks: placement, latency, receiver verdicts, bounces);
//! 5. [`metrics`]: every metric, fed plain results and events;
//! 6. runtime and edge: [`board`] (last results), [`scheduler`], [`sinkpool`] (the sink
//!    readers), [`web`], [`logging`]
//!    and [`daemon`] (wiring, signals, exit codes).

pub mod architecture;
pub mod audit;
pub mod auth;
pub mod board;
pub mod classify;
pub mod config;
pub mod daemon;
pub mod delivery;
pub mod demo;
pub mod fsutil;
pub mod gate;
pub mod logging;
pub mod metrics;
pub mod probe;
pub mod quota;
pub mod redact;
pub mod resolve;
pub mod scheduler;
pub mod sinkpool;
pub mod smtp;
pub mod state;
pub mod tls;
pub mod util;
pub mod web;
