//! What the header block of a message in a sink tells: whether it is one of our canaries
//! (the `X-Smtp-Canary` header), its Message-ID, the topmost Authentication-Results, the
//! topmost Received date, and whether it is a DSN. Parsed by mail-parser.

use mail_parser::{MessageParser, MimeHeaders};

use super::authres::{self, AuthResults};

/// The header fields fetched for each new message: enough to recognise canaries and
/// DSNs without downloading bodies.
pub const FETCH_FIELDS: &str =
    "X-Smtp-Canary Message-ID Content-Type Authentication-Results Received";

/// The canary header's name.
pub const CANARY_HEADER: &str = "X-Smtp-Canary";

/// One message's header block, read.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Summary {
    /// `(mailbox, probe_id)` from `X-Smtp-Canary: <mailbox> <probe-id>`.
    pub canary: Option<(String, String)>,
    /// With angle brackets.
    pub message_id: Option<String>,
    /// The topmost instance only (RFC 8601 §5: lower ones may come from anywhere).
    pub auth_results: Option<AuthResults>,
    /// Unix time of the topmost Received header's date (the last hop's clock).
    pub received_at: Option<i64>,
    /// A `multipart/report; report-type=delivery-status`.
    pub is_report: bool,
}

/// Reads a header block (or a whole message: only its headers are looked at).
pub fn summarize(block: &[u8]) -> Summary {
    let Some(msg) = MessageParser::default().parse_headers(block) else {
        return Summary::default();
    };
    // The first instance of each field: the topmost, added last, by the sink's own
    // server (mail-parser's `header_raw` would give the last one).
    let first = |name: &str| {
        msg.headers()
            .iter()
            .find(|h| h.name.as_str().eq_ignore_ascii_case(name))
    };
    let raw = |name: &str| {
        first(name).and_then(|h| {
            block
                .get(h.offset_start as usize..h.offset_end as usize)
                .and_then(|b| std::str::from_utf8(b).ok())
        })
    };
    let canary = raw(CANARY_HEADER).and_then(parse_canary);
    let message_id = msg
        .message_id()
        .map(|id| format!("<{}>", id.trim_matches(|c| c == '<' || c == '>')));
    let auth_results = raw("Authentication-Results").map(authres::parse);
    let received_at = first("Received").and_then(|h| match &h.value {
        mail_parser::HeaderValue::Received(r) => r.date.as_ref().map(|d| d.to_timestamp()),
        _ => None,
    });
    let is_report = msg
        .content_type()
        .map(|c| {
            c.ctype().eq_ignore_ascii_case("multipart")
                && c.subtype()
                    .is_some_and(|s| s.eq_ignore_ascii_case("report"))
                && c.attribute("report-type")
                    .is_some_and(|t| t.eq_ignore_ascii_case("delivery-status"))
        })
        .unwrap_or(false);
    Summary {
        canary,
        message_id,
        auth_results,
        received_at,
        is_report,
    }
}

/// `<mailbox> <probe-id>`; both must look like ours (names and ids are plain tokens).
pub fn parse_canary(value: &str) -> Option<(String, String)> {
    let mut words = value.split_whitespace();
    let (Some(mailbox), Some(probe)) = (words.next(), words.next()) else {
        return None;
    };
    let plain = |s: &str| {
        !s.is_empty()
            && s.len() <= 128
            && s.bytes()
                .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'_' | b'.' | b'-'))
    };
    (plain(mailbox) && plain(probe)).then(|| (mailbox.to_owned(), probe.to_owned()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_a_canary() {
        let block = b"Authentication-Results: mx.sink.test; dkim=pass header.d=example.test\r\n\
Received: from mail.example.test (localhost [127.0.0.1])\r\n\tby mx.sink.test (Postfix) with ESMTPS id 1\r\n\tfor <sink@sink.test>; Fri, 04 Dec 2026 05:00:03 +0000 (UTC)\r\n\
Authentication-Results: forged.example; dkim=fail\r\n\
Message-ID: <p-1@probe.example>\r\n\
X-Smtp-Canary: m1 p-1\r\n\r\n";
        let s = summarize(block);
        assert_eq!(s.canary, Some(("m1".into(), "p-1".into())));
        assert_eq!(s.message_id.as_deref(), Some("<p-1@probe.example>"));
        let ar = s.auth_results.unwrap();
        assert_eq!(ar.authserv_id, "mx.sink.test");
        assert_eq!(ar.get(authres::Method::Dkim), Some(authres::Verdict::Pass));
        assert_eq!(s.received_at, Some(1796360403));
        assert!(!s.is_report);
    }

    #[test]
    fn foreign_and_hostile() {
        assert_eq!(parse_canary("m1"), None);
        assert_eq!(parse_canary("m1 <script>"), None);
        assert_eq!(summarize(b"").canary, None);
        let s = summarize(
            b"Content-Type: multipart/report; report-type=delivery-status; boundary=x\r\n\r\n",
        );
        assert!(s.is_report);
    }
}
