//! The `/` status page: one row per mailbox with its last result and phases, the last
//! fate of its canaries in each sink, and the redacted transcript of each mailbox's last
//! failure. Plain HTML, no scripts.

use std::fmt::Write;

use crate::board::MailboxStatus;
use crate::delivery::{Outcome, Resolution};
use crate::probe::ProbeResult;
use crate::util::{rfc3339, unix};

/// Escapes text for HTML element content and attribute values.
pub fn escape(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for c in s.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&#39;"),
            c => out.push(c),
        }
    }
    out
}

fn phases(r: &ProbeResult) -> String {
    r.phases
        .iter()
        .map(|(p, d)| format!("{p} {:.1}ms", d.as_secs_f64() * 1000.0))
        .collect::<Vec<_>>()
        .join(", ")
}

/// One line per sink: where the last canary landed, colour-coded.
fn delivery(d: &[std::sync::Arc<Resolution>]) -> String {
    d.iter()
        .map(|r| {
            let cls = if r.outcome == Outcome::Delivered {
                "ok"
            } else {
                "fail"
            };
            format!("<span class=\"{cls}\">{}</span>", escape(&r.to_text()))
        })
        .collect::<Vec<_>>()
        .join("<br>")
}

pub fn page(board: &[MailboxStatus]) -> String {
    let mut h = String::with_capacity(4096 + board.len() * 512);
    h.push_str(concat!(
        "<!DOCTYPE html>\n<html><head><meta charset=\"utf-8\"><title>smtp-canary</title>\n",
        "<style>body{font-family:sans-serif;margin:1.5em}table{border-collapse:collapse}",
        "td,th{border:1px solid #ccc;padding:.3em .6em;text-align:left;vertical-align:top}",
        ".ok{color:#070}.fail{color:#b00}pre{background:#f6f6f6;padding:.6em;overflow:auto}</style>\n",
        "</head><body>\n<h1>smtp-canary</h1>\n",
        "<p><a href=\"/metrics\">Metrics</a> · <a href=\"/-/healthy\">Health</a> · <a href=\"/-/ready\">Readiness</a></p>\n",
        "<table>\n<tr><th>Mailbox</th><th>Provider</th><th>Server</th><th>Last result</th>",
        "<th>Class</th><th>Code</th><th>Phases</th><th>Total</th><th>Finished</th><th>Hint</th>",
        "<th>Delivery</th></tr>\n"
    ));
    for s in board {
        let mb = &s.mailbox;
        let server = format!("{}:{} ({})", mb.host, mb.port, mb.security.as_str());
        let _ = write!(
            h,
            "<tr><td>{}</td><td>{}</td><td>{}</td>",
            escape(&mb.name),
            escape(mb.provider.as_str()),
            escape(&server)
        );
        match &s.last {
            None => {
                let _ = writeln!(
                    h,
                    "<td>pending</td><td></td><td></td><td></td><td></td><td></td><td></td><td>{}</td></tr>",
                    delivery(&s.delivery)
                );
            }
            Some(r) => {
                let (cls, result) = if r.success() {
                    ("ok", "success")
                } else {
                    ("fail", "FAILED")
                };
                let f = r.failure.as_ref();
                let _ = write!(
                    h,
                    "<td class=\"{cls}\">{result}</td><td>{}</td><td>{}</td><td>{}</td><td>{:.3}s</td><td>{}</td><td>{}</td><td>{}</td></tr>",
                    escape(f.map(|f| f.class.as_str()).unwrap_or("")),
                    escape(f.map(|f| f.code.as_str()).unwrap_or("")),
                    escape(&phases(r)),
                    r.total.as_secs_f64(),
                    escape(&rfc3339(unix(r.finished_at))),
                    escape(f.map(|f| f.hint.as_str()).unwrap_or("")),
                    delivery(&s.delivery),
                );
                h.push('\n');
            }
        }
    }
    h.push_str("</table>\n");
    for s in board {
        let Some(r) = &s.last_failure else { continue };
        let Some(f) = &r.failure else { continue };
        let _ = write!(
            h,
            "<h2>Last failure of {}</h2>\n<p>{} in {} at {}: {}</p>\n",
            escape(&s.mailbox.name),
            escape(f.class.as_str()),
            escape(f.phase.as_str()),
            escape(&rfc3339(unix(r.finished_at))),
            escape(f.reply.as_deref().unwrap_or(&f.error)),
        );
        let _ = writeln!(h, "<pre>{}</pre>", escape(&r.transcript.to_string()));
    }
    h.push_str("</body></html>\n");
    h
}

#[cfg(test)]
mod tests {
    use super::escape;

    #[test]
    fn escapes_markup() {
        assert_eq!(
            escape("<a href=\"x\">&'"),
            "&lt;a href=&quot;x&quot;&gt;&amp;&#39;"
        );
    }
}
