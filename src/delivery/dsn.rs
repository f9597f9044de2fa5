//! Delivery status notifications (RFC 3464 inside an RFC 6522 multipart/report): which
//! canary a bounce is about, for which recipient, and with what status.
//!
//! Parsing is mail-parser's; this file only reads the `message/delivery-status` fields
//! and the returned original's Message-ID.

use mail_parser::{MessageParser, MimeHeaders, PartType};

/// One failed recipient of a DSN.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Bounce {
    /// The original message's Message-ID, with its angle brackets.
    pub message_id: String,
    /// `Final-Recipient`, lower-cased, without the `rfc822;` type.
    pub recipient: String,
    /// `Status`, e.g. `5.1.1`.
    pub status: String,
    /// `Diagnostic-Code` without its type, e.g. `550 5.1.1 <x>: Recipient address rejected`.
    pub diagnostic: String,
}

/// Whether a header block's Content-Type says this is a DSN (cheap: headers only).
pub fn is_report(content_type: &str) -> bool {
    let ct = content_type.to_ascii_lowercase();
    ct.contains("multipart/report") && ct.contains("delivery-status")
}

/// The failed recipients of the DSN in `raw` (a whole message). Empty when it is not a
/// DSN, reports only delays (`Action: delayed` is a warning, not a bounce), or names no
/// original Message-ID.
pub fn parse(raw: &[u8]) -> Vec<Bounce> {
    let Some(msg) = MessageParser::default().parse(raw) else {
        return Vec::new();
    };
    let mut status_fields: Option<String> = None;
    let mut message_id: Option<String> = None;
    for part in msg.parts.iter() {
        let ct = part
            .content_type()
            .map(|c| {
                format!(
                    "{}/{}",
                    c.ctype().to_ascii_lowercase(),
                    c.subtype().unwrap_or("").to_ascii_lowercase()
                )
            })
            .unwrap_or_default();
        match ct.as_str() {
            "message/delivery-status" => {
                status_fields = Some(String::from_utf8_lossy(part.contents()).into_owned());
            }
            "text/rfc822-headers" => {
                if message_id.is_none()
                    && let Some(h) = MessageParser::default().parse_headers(part.contents())
                {
                    message_id = h.message_id().map(bracketed);
                }
            }
            _ => {
                if let PartType::Message(original) = &part.body {
                    message_id = message_id.or_else(|| original.message_id().map(bracketed));
                }
            }
        }
    }
    let (Some(fields), Some(message_id)) = (status_fields, message_id) else {
        return Vec::new();
    };
    recipients(&fields)
        .into_iter()
        .filter(|r| r.action.eq_ignore_ascii_case("failed"))
        .map(|r| Bounce {
            message_id: message_id.clone(),
            recipient: r.recipient,
            status: r.status,
            diagnostic: r.diagnostic,
        })
        .collect()
}

fn bracketed(id: &str) -> String {
    format!("<{}>", id.trim_matches(|c| c == '<' || c == '>'))
}

struct Recipient {
    recipient: String,
    action: String,
    status: String,
    diagnostic: String,
}

/// The per-recipient blocks of a `message/delivery-status` body (the first block is the
/// per-message one and names no recipient).
fn recipients(body: &str) -> Vec<Recipient> {
    let unified = body.replace("\r\n", "\n");
    let mut out = Vec::new();
    for block in unified.split("\n\n") {
        // Unfold continuation lines.
        let mut fields: Vec<(String, String)> = Vec::new();
        for line in block.lines() {
            if line.starts_with([' ', '\t']) {
                if let Some(last) = fields.last_mut() {
                    last.1.push(' ');
                    last.1.push_str(line.trim());
                }
            } else if let Some((k, v)) = line.split_once(':') {
                fields.push((k.trim().to_ascii_lowercase(), v.trim().to_string()));
            }
        }
        let get = |k: &str| {
            fields
                .iter()
                .find(|(n, _)| n == k)
                .map(|(_, v)| v.clone())
                .unwrap_or_default()
        };
        let untyped = |v: String| match v.split_once(';') {
            Some((_, rest)) => rest.trim().to_string(),
            None => v,
        };
        let recipient = untyped(get("final-recipient")).to_ascii_lowercase();
        if recipient.is_empty() {
            continue;
        }
        out.push(Recipient {
            recipient: recipient.trim_matches(|c| c == '<' || c == '>').to_string(),
            action: get("action"),
            status: get("status")
                .split_whitespace()
                .next()
                .unwrap_or("")
                .to_string(),
            diagnostic: untyped(get("diagnostic-code")),
        });
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    const DSN: &str = "From: MAILER-DAEMON@mail.example.test\r\n\
To: canary@example.test\r\n\
Subject: Undelivered Mail Returned to Sender\r\n\
MIME-Version: 1.0\r\n\
Content-Type: multipart/report; report-type=delivery-status; boundary=\"B1\"\r\n\
\r\n\
--B1\r\n\
Content-Type: text/plain\r\n\
\r\n\
I'm sorry to have to inform you that your message could not be delivered.\r\n\
--B1\r\n\
Content-Type: message/delivery-status\r\n\
\r\n\
Reporting-MTA: dns; mail.example.test\r\n\
Arrival-Date: Fri,  4 Dec 2026 05:00:00 +0000 (UTC)\r\n\
\r\n\
Final-Recipient: rfc822; Bounce-Later@sink.test\r\n\
Original-Recipient: rfc822;bounce-later@sink.test\r\n\
Action: failed\r\n\
Status: 5.1.1\r\n\
Diagnostic-Code: smtp; 550 5.1.1 <bounce-later@sink.test>: Recipient address\r\n\
\trejected: User unknown\r\n\
\r\n\
Final-Recipient: rfc822; slow@sink.test\r\n\
Action: delayed\r\n\
Status: 4.4.1\r\n\
\r\n\
--B1\r\n\
Content-Type: text/rfc822-headers\r\n\
\r\n\
Message-ID: <p-1@probe.example>\r\n\
X-Smtp-Canary: m1 p-1\r\n\
--B1--\r\n";

    #[test]
    fn reads_failed_recipients_only() {
        assert!(is_report(
            "multipart/report; report-type=delivery-status; boundary=x"
        ));
        let b = parse(DSN.as_bytes());
        assert_eq!(b.len(), 1, "{b:?}");
        assert_eq!(b[0].message_id, "<p-1@probe.example>");
        assert_eq!(b[0].recipient, "bounce-later@sink.test");
        assert_eq!(b[0].status, "5.1.1");
        assert!(
            b[0].diagnostic
                .starts_with("550 5.1.1 <bounce-later@sink.test>")
        );
        assert!(
            b[0].diagnostic.ends_with("rejected: User unknown"),
            "{:?}",
            b[0].diagnostic
        );
    }

    #[test]
    fn not_a_dsn() {
        assert!(parse(b"Subject: hi\r\n\r\nbody").is_empty());
        assert!(parse(b"").is_empty());
    }
}
