//! One domain's audit result and its two renderings: the contract's JSON object and the
//! text report (one line per check, pass / info / warn / fail, coloured on a terminal).

use std::borrow::Cow;
use std::fmt::Write;
use std::time::Duration;

use serde_json::{Value, json};

use super::AuditError;
use super::dkim::DkimReport;
use super::dmarc::DmarcReport;
use super::findings::{Check, Finding, Outcome, Severity};
use super::spf::SpfReport;

/// Everything one audit of one domain found.
#[derive(Debug, Clone)]
pub struct DomainReport {
    pub domain: String,
    /// `None`: no `v=spf1` record (or the SPF lookups failed, see `errors`).
    pub spf: Option<SpfReport>,
    pub dkim: Vec<DkimReport>,
    pub dmarc: Option<DmarcReport>,
    /// `None`: no MX record (or the lookup failed).
    pub mx: Option<Vec<String>>,
    /// Every check's outcome, in the order the checks ran.
    pub outcomes: Vec<Outcome>,
    /// Why parts of the audit have no answer (SERVFAIL, timeout...). Empty when every
    /// query was answered.
    pub errors: Vec<AuditError>,
    pub elapsed: Duration,
}

impl DomainReport {
    /// Every query got an answer (NXDOMAIN counts as one).
    pub fn complete(&self) -> bool {
        self.errors.is_empty()
    }

    pub fn findings(&self) -> impl Iterator<Item = &Finding> {
        self.outcomes.iter().filter_map(Outcome::finding)
    }

    /// At least one error-severity finding (the CLI's exit 1).
    pub fn has_errors(&self) -> bool {
        self.findings().any(|f| f.severity == Severity::Error)
    }

    /// The contract's JSON object. Additions to the contract's shape: `dkim[].cname`,
    /// `dmarc.p/sp/adkim/aspf/rua`, and `error` (null when every query was answered).
    pub fn to_json(&self) -> Value {
        let spf = self.spf.as_ref().map(|s| {
            json!({"record": s.record, "lookups": s.lookups, "void_lookups": s.void_lookups, "all": s.all})
        });
        let dkim: Vec<Value> = self
            .dkim
            .iter()
            .map(|k| {
                json!({"selector": k.selector, "present": k.present, "key_type": k.key_type,
                       "bits": k.bits, "revoked": k.revoked, "cname": k.cname})
            })
            .collect();
        let dmarc = self.dmarc.as_ref().map(|d| {
            json!({"record": d.record, "policy": d.policy, "source": d.source, "p": d.p, "sp": d.sp,
                   "adkim": d.adkim, "aspf": d.aspf, "rua": d.rua})
        });
        let findings: Vec<Value> = self
            .findings()
            .map(|f| json!({"check": f.check.id(), "severity": f.severity.as_str(), "message": f.message}))
            .collect();
        let error = (!self.errors.is_empty()).then(|| {
            self.errors
                .iter()
                .map(ToString::to_string)
                .collect::<Vec<_>>()
                .join("; ")
        });
        json!({"domain": self.domain, "spf": spf, "dkim": dkim, "dmarc": dmarc, "mx": self.mx,
               "findings": findings, "error": error})
    }

    /// The text report: a heading, then one line per check.
    pub fn render_text(&self, colour: bool) -> String {
        let mut s = String::new();
        let count = |sev| self.findings().filter(|f| f.severity == sev).count();
        let (e, w, i) = (
            count(Severity::Error),
            count(Severity::Warning),
            count(Severity::Info),
        );
        let verdict = if !self.complete() {
            paint(colour, RED, "incomplete")
        } else if e > 0 {
            paint(colour, RED, "fail")
        } else if w > 0 {
            paint(colour, YELLOW, "warn")
        } else {
            paint(colour, GREEN, "pass")
        };
        let _ = writeln!(
            s,
            "{}: {verdict} ({e} error(s), {w} warning(s), {i} info) in {:.2}s",
            bold(colour, &self.domain),
            self.elapsed.as_secs_f64()
        );
        for err in &self.errors {
            let err = err.to_string();
            let _ = writeln!(
                s,
                "  {}  {:<28} {}",
                paint(colour, RED, "fail"),
                "dns",
                printable(&err)
            );
        }
        for check in Check::all() {
            let found: Vec<&Finding> = self.findings().filter(|f| f.check == check).collect();
            if found.is_empty() {
                // A check that passed several times (one per selector) shows each.
                for o in &self.outcomes {
                    if let Outcome::Pass { check: c, detail } = o
                        && *c == check
                    {
                        let _ = writeln!(
                            s,
                            "  {}  {:<28} {}",
                            paint(colour, GREEN, "pass"),
                            check.id(),
                            printable(detail)
                        );
                    }
                }
            }
            for f in found {
                let mark = match f.severity {
                    Severity::Error => paint(colour, RED, "fail"),
                    Severity::Warning => paint(colour, YELLOW, "warn"),
                    Severity::Info => paint(colour, CYAN, "info"),
                };
                let _ = writeln!(s, "  {mark}  {:<28} {}", check.id(), printable(&f.message));
            }
        }
        s
    }
}

/// `text` with its control characters escaped (`\u{1b}`, `\r`, `\t`...). Details and
/// messages quote DNS records, which are whoever owns the zone's bytes, and this report
/// goes to a terminal: an escape sequence or a bare CR in a TXT record must not be able to
/// recolour, hide or overwrite a line (found by tests/fuzz.rs).
fn printable(text: &str) -> Cow<'_, str> {
    if !text.chars().any(char::is_control) {
        return Cow::Borrowed(text);
    }
    let mut out = String::with_capacity(text.len() + 8);
    for c in text.chars() {
        if c.is_control() {
            out.extend(c.escape_default());
        } else {
            out.push(c);
        }
    }
    Cow::Owned(out)
}

const RED: &str = "31";
const GREEN: &str = "32";
const YELLOW: &str = "33";
const CYAN: &str = "36";

fn paint(colour: bool, code: &str, text: &str) -> String {
    if colour {
        format!("\x1b[{code}m{text}\x1b[0m")
    } else {
        text.to_string()
    }
}

fn bold(colour: bool, text: &str) -> String {
    paint(colour, "1", text)
}

/// Whether to colour output written to stdout: a terminal, and no `NO_COLOR`.
pub fn stdout_colour() -> bool {
    use std::io::IsTerminal;
    std::io::stdout().is_terminal() && std::env::var_os("NO_COLOR").is_none_or(|v| v.is_empty())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn record_text_cannot_steer_the_terminal() {
        let r = DomainReport {
            domain: "d.test".into(),
            spf: None,
            dkim: vec![],
            dmarc: None,
            mx: None,
            outcomes: vec![
                Outcome::pass(Check::SpfMissing, "v=spf1 \x1b[2J\r  pass  spf.syntax -all"),
                Outcome::found(Check::DmarcSyntax, "p=\x07none\tx\ny"),
            ],
            errors: vec![],
            elapsed: Duration::ZERO,
        };
        let text = r.render_text(false);
        assert!(
            text.contains(r"v=spf1 \u{1b}[2J\r  pass  spf.syntax -all"),
            "{text}"
        );
        assert!(text.contains(r"p=\u{7}none\tx\ny"), "{text}");
        assert_eq!(text.lines().count(), 3, "{text}");
        // The JSON keeps the record as published: serde_json escapes it.
        assert_eq!(r.to_json()["findings"][0]["message"], "p=\x07none\tx\ny");
    }
}
