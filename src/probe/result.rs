//! The outcome of one probe and its two reports: the contract JSON (`probe --format
//! json`) and the text for people (`probe --format text`).

use std::time::{Duration, SystemTime};

use serde_json::{Map, Value, json};

use super::Transcript;
use crate::classify::Class;
use crate::config::Mechanism;
use crate::smtp::Phase;
use crate::tls::TlsInfo;
use crate::util::{rfc3339, secs, unix};

/// Why a probe failed.
#[derive(Debug, Clone)]
pub struct Failure {
    pub class: Class,
    pub phase: Phase,
    /// The `code` label: enhanced code, else basic code, else empty.
    pub code: String,
    /// The server's reply, verbatim, when the failure was a reply.
    pub reply: Option<String>,
    /// Our own description (timeouts, resets, certificate errors, ...).
    pub error: String,
    /// One-line remediation hint.
    pub hint: String,
}

/// Everything one probe learned.
#[derive(Debug, Clone)]
pub struct ProbeResult {
    pub mailbox: String,
    pub probe_id: String,
    pub failure: Option<Failure>,
    /// Phases that ran, in order, with their durations (a failed phase included).
    pub phases: Vec<(Phase, Duration)>,
    pub total: Duration,
    pub tls: Option<TlsInfo>,
    pub message_id: Option<String>,
    pub mechanism: Option<Mechanism>,
    pub transcript: Transcript,
    pub finished_at: SystemTime,
}

impl ProbeResult {
    pub fn success(&self) -> bool {
        self.failure.is_none()
    }

    pub fn phase(&self, p: Phase) -> Option<Duration> {
        self.phases.iter().find(|(q, _)| *q == p).map(|(_, d)| *d)
    }

    /// `probe --format text`: verdict, phases, failure details and the redacted transcript.
    pub fn to_text(&self) -> String {
        let r = self;
        use std::fmt::Write;
        let mut s = String::new();
        let verdict = if r.success() { "DELIVERED" } else { "FAILED" };
        let _ = writeln!(
            s,
            "mailbox {}: {verdict} in {:.3}s (probe {})",
            r.mailbox,
            r.total.as_secs_f64(),
            r.probe_id
        );
        if let Some(f) = &r.failure {
            let _ = writeln!(s, "  class:  {}", f.class);
            let _ = writeln!(s, "  phase:  {}", f.phase);
            let _ = writeln!(
                s,
                "  code:   {}",
                if f.code.is_empty() { "-" } else { &f.code }
            );
            if let Some(reply) = &f.reply {
                let _ = writeln!(s, "  reply:  {}", reply.replace('\n', "\n          "));
            }
            let _ = writeln!(s, "  error:  {}", f.error);
            let _ = writeln!(s, "  hint:   {}", f.hint);
        }
        if let Some(id) = &r.message_id {
            let _ = writeln!(s, "  message-id: {id}");
        }
        if let Some(t) = &r.tls {
            let exp = t
                .cert_not_after
                .map(crate::util::rfc3339)
                .unwrap_or_else(|| "-".into());
            let _ = writeln!(s, "  tls: {} (certificate valid until {exp})", t.version);
        }
        let _ = writeln!(s, "phases:");
        for (p, d) in &r.phases {
            let _ = writeln!(
                s,
                "  {:<12} {:>9.1} ms",
                p.as_str(),
                d.as_secs_f64() * 1000.0
            );
        }
        let _ = writeln!(s, "transcript:");
        s.push_str(&r.transcript.to_string());
        s
    }

    /// The contract's JSON object.
    pub fn to_json(&self) -> Value {
        let f = self.failure.as_ref();
        let mut phases = Map::new();
        for (p, d) in &self.phases {
            phases.insert(p.as_str().to_owned(), json!(secs(*d)));
        }
        let tls = self.tls.as_ref().map(|t| {
            json!({
                "version": t.version,
                "cert_not_after": t.cert_not_after.map(rfc3339),
            })
        });
        json!({
            "mailbox": self.mailbox,
            "success": self.success(),
            "class": f.map(|f| f.class.as_str()),
            "phase": f.map(|f| f.phase.as_str()),
            "code": f.map(|f| f.code.as_str()),
            "reply": f.and_then(|f| f.reply.as_deref()),
            "hint": f.map(|f| f.hint.as_str()),
            "error": f.map(|f| f.error.as_str()),
            "phases": phases,
            "total_seconds": secs(self.total),
            "tls": tls,
            "auth_mechanism": self.mechanism.map(|m| m.as_str()),
            "message_id": self.message_id,
            "probe_id": self.probe_id,
            "finished_at": rfc3339(unix(self.finished_at)),
            "transcript": self.transcript,
        })
    }
}
