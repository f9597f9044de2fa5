//! smtp-canary: probes SMTP submission mailboxes with real canary messages, times every
//! phase of the session, classifies failures and exports it all as Prometheus metrics.
//!
//! The crate is laid out by responsibility:
//! - [`config`]: the YAML schema, validation, provider presets and secrets;
//! - [`probe`]: the timed SMTP session, its TLS, DNS and transcript;
//! - [`classify`]: maps server replies to the fixed failure classes and hints;
//! - [`auth`]: SASL mechanisms, credentials, OAuth 2.0 token sources and their cache;
//! - [`quota`]: the canary's own sends in rolling windows, its budget and back-off;
//! - [`state`]: durable per-mailbox state in `--state.dir`, written atomically;
//! - [`metrics`]: every metric this exporter defines;
//! - [`scheduler`]: one task per mailbox, jittered, never overlapping; reload;
//! - [`web`]: the HTTP side (`/metrics`, health, reload, status page, web config);
//! - [`demo`]: the in-process loopback relay behind `provider: demo`;
//! - [`audit`]: the DNS audit of sender domains (SPF, DKIM, DMARC, MX);
//! - [`daemon`] and [`logging`]: the command-line edge: wiring, signals, exit codes, logs.

pub mod audit;
pub mod auth;
pub mod classify;
pub mod config;
pub mod daemon;
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
pub mod smtp;
pub mod state;
pub mod tls;
pub mod util;
pub mod web;
