//! Delivery verification: each canary read back from the sinks it was sent to, with
//! where it landed, how long it took, what the receiver's authentication checks said,
//! smtp-canary's own DKIM check, and the bounces that came back.
//!
//! The parts, bottom first: `headers` (what a message's header block tells), `authres`
//! (Authentication-Results), `dsn` (bounces), `dkim` (our own check), `tracker` (the
//! canaries in flight, durable in the state directory), `store` (a sink's mail, over
//! IMAP with async-imap or from the in-process demo relay) and `reader` (one task per
//! sink: connect, find new canaries by UID, resolve them, clean up, wait, reconnect with
//! back-off). What happens is reported through [`DeliveryEvents`]; this module never
//! sees the metrics.

pub mod authres;
pub mod dkim;
pub mod dsn;
pub mod headers;
mod imap;
pub mod reader;
mod store;
pub mod tracker;

use serde_json::{Value, json};

use crate::classify::Class;

pub use authres::{AuthResults, Method, Verdict};
pub use dkim::{DkimCheck, DkimVerifier};
pub use reader::{SinkReader, SinkReaderOptions};
pub use store::StoreError;
pub use tracker::Tracker;

/// The `result` label of `deliveries_total`.
#[derive(
    Debug,
    Clone,
    Copy,
    PartialEq,
    Eq,
    Hash,
    strum::IntoStaticStr,
    strum::Display,
    strum::VariantArray,
)]
#[strum(serialize_all = "snake_case")]
pub enum Outcome {
    Delivered,
    Junk,
    Late,
    Lost,
    Bounced,
    Quarantined,
    Failed,
}

impl Outcome {
    pub const ALL: &'static [Outcome] = <Outcome as strum::VariantArray>::VARIANTS;

    pub fn as_str(self) -> &'static str {
        self.into()
    }
}

/// What a sink saw of a canary.
#[derive(Debug, Clone, PartialEq)]
pub struct Found {
    pub folder: String,
    pub junk: bool,
    /// Unix seconds of arrival by the sink's clock (INTERNALDATE, else the topmost
    /// Received date).
    pub arrived_at: Option<i64>,
    pub auth_results: Option<AuthResults>,
    pub dkim: Option<DkimCheck>,
}

/// A DSN about a canary, classified with the probe tables.
#[derive(Debug, Clone, PartialEq)]
pub struct BounceInfo {
    pub recipient: String,
    pub class: Class,
    /// The `code` label: the DSN's status (`5.1.1`).
    pub code: String,
    /// The Diagnostic-Code text (the remote server's reply).
    pub diagnostic: String,
}

/// One canary's fate in one sink.
#[derive(Debug, Clone, PartialEq)]
pub struct Resolution {
    pub mailbox: String,
    pub sink: String,
    pub probe_id: String,
    pub outcome: Outcome,
    /// From the 250 after DATA to arrival (delivered, junk, late).
    pub seconds: Option<f64>,
    pub folder: Option<String>,
    pub auth_results: Option<AuthResults>,
    pub dkim: Option<DkimCheck>,
    pub bounce: Option<BounceInfo>,
}

impl Resolution {
    fn lost(mailbox: &str, sink: &str, probe_id: &str) -> Resolution {
        Resolution {
            mailbox: mailbox.to_owned(),
            sink: sink.to_owned(),
            probe_id: probe_id.to_owned(),
            outcome: Outcome::Lost,
            seconds: None,
            folder: None,
            auth_results: None,
            dkim: None,
            bounce: None,
        }
    }

    /// The contract's `delivery` entry of the probe JSON.
    pub fn to_json(&self) -> Value {
        let auth = self.auth_results.as_ref().map(|a| {
            let mut m = serde_json::Map::new();
            for (method, verdict) in &a.verdicts {
                m.insert(method.as_str().into(), verdict.as_str().into());
            }
            Value::Object(m)
        });
        json!({
            "sink": self.sink,
            "result": self.outcome.as_str(),
            "seconds": self.seconds,
            "folder": self.folder,
            "auth_results": auth,
            "dkim_valid": self.dkim.as_ref().map(|d| d.valid),
            "dkim_reason": self.dkim.as_ref().and_then(|d| d.reason.clone()),
            "bounce": self.bounce.as_ref().map(|b| json!({
                "recipient": b.recipient,
                "class": b.class.as_str(),
                "code": b.code,
                "diagnostic": b.diagnostic,
            })),
        })
    }

    /// One line for `probe --format text` and the status page.
    pub fn to_text(&self) -> String {
        let mut s = format!("{}: {}", self.sink, self.outcome.as_str());
        if let Some(f) = &self.folder {
            s.push_str(&format!(" in {f}"));
        }
        if let Some(secs) = self.seconds {
            s.push_str(&format!(" after {secs:.0}s"));
        }
        if let Some(a) = &self.auth_results {
            let v: Vec<String> = a
                .verdicts
                .iter()
                .map(|(m, r)| format!("{}={}", m.as_str(), r.as_str()))
                .collect();
            if !v.is_empty() {
                s.push_str(&format!("; receiver: {}", v.join(" ")));
            }
        }
        if let Some(d) = &self.dkim {
            match &d.reason {
                None => s.push_str("; own DKIM check: valid"),
                Some(r) => s.push_str(&format!("; own DKIM check: {r}")),
            }
        }
        if let Some(b) = &self.bounce {
            s.push_str(&format!(
                "; bounced ({} {}): {}",
                b.class, b.code, b.diagnostic
            ));
        }
        s
    }
}

/// Where delivery news goes (the daemon's metrics and logs). Implemented above this
/// layer.
pub trait DeliveryEvents: Send + Sync {
    /// A canary resolved in a sink.
    fn resolved(&self, r: &Resolution);
    /// A DSN about one of `mailbox`'s canaries.
    fn bounced(&self, mailbox: &str, b: &BounceInfo);
    /// Canaries of `mailbox` still waiting in `sink`.
    fn pending(&self, mailbox: &str, sink: &str, n: usize);
    /// A read of the sink worked (`None`) or failed with this class.
    fn sink_read(&self, sink: &str, failure: Option<Class>);
}

/// Events nobody listens to (the `probe` command without metrics, tests).
pub struct NoEvents;

impl DeliveryEvents for NoEvents {
    fn resolved(&self, _: &Resolution) {}
    fn bounced(&self, _: &str, _: &BounceInfo) {}
    fn pending(&self, _: &str, _: &str, _: usize) {}
    fn sink_read(&self, _: &str, _: Option<Class>) {}
}
