//! smtp-canary: probes SMTP submission mailboxes with real canary messages, times every
//! phase of the session, classifies failures and exports it all as Prometheus metrics.
//!
//! The crate is laid out by responsibility:
//! - [`config`]: the YAML schema, validation, provider presets and secrets;
//! - [`probe`]: the timed SMTP session, its TLS, DNS and transcript;
//! - [`classify`]: maps server replies to the fixed failure classes and hints;
//! - [`auth`]: SASL mechanisms and the credentials they carry;
//! - [`metrics`]: every metric this exporter defines;
//! - [`scheduler`]: one task per mailbox, jittered, never overlapping;
//! - [`web`]: the HTTP side (`/metrics`, health, status page);
//! - [`demo`]: the in-process loopback relay behind `provider: demo`;
//! - [`audit`]: the DNS audit of sender domains (SPF, DKIM, DMARC, MX).

pub mod audit;
pub mod auth;
pub mod classify;
pub mod config;
pub mod daemon;
pub mod demo;
pub mod logging;
pub mod metrics;
pub mod probe;
pub mod quota;
pub mod scheduler;
pub mod state;
pub mod web;
