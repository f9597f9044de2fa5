//! The canary message: a real RFC 5322 message built with lettre, with a unique
//! Message-ID, a Date, an `X-Smtp-Canary: <mailbox> <probe-id>` header and an honest
//! subject. Addresses are parsed once per mailbox ([`Template`]), not per probe.

use lettre::message::header::{Header, HeaderName, HeaderValue};
use lettre::message::{Mailbox as Address, Mailboxes};

/// The `X-Smtp-Canary` header: which mailbox sent it and which probe.
#[derive(Debug, Clone)]
struct XSmtpCanary(String);

impl Header for XSmtpCanary {
    fn name() -> HeaderName {
        HeaderName::new_from_ascii_str("X-Smtp-Canary")
    }

    fn parse(s: &str) -> Result<Self, Box<dyn std::error::Error + Send + Sync>> {
        Ok(XSmtpCanary(s.to_owned()))
    }

    fn display(&self) -> HeaderValue {
        HeaderValue::new(Self::name(), self.0.clone())
    }
}

#[derive(Debug, thiserror::Error)]
pub enum MessageError {
    #[error("invalid address {0:?}: {1}")]
    Address(String, String),
    #[error("cannot build message: {0}")]
    Build(String),
}

/// Per-mailbox parts of the canary, prepared once.
#[derive(Debug, Clone)]
pub struct Template {
    mailbox: String,
    from: Address,
    to: Mailboxes,
    subject: String,
    domain: String,
}

impl Template {
    pub fn new(
        mailbox: &str,
        from: &str,
        to: &[String],
        helo_name: &str,
    ) -> Result<Template, MessageError> {
        let parse = |a: &str| {
            a.parse::<Address>()
                .map_err(|e| MessageError::Address(a.to_owned(), e.to_string()))
        };
        let mut tos = Mailboxes::new();
        for t in to {
            tos.push(parse(t)?);
        }
        Ok(Template {
            mailbox: mailbox.to_owned(),
            from: parse(from)?,
            to: tos,
            subject: format!(
                "smtp-canary probe of {mailbox} (automated test message, safe to delete)"
            ),
            domain: helo_name.to_owned(),
        })
    }

    /// The message for one probe, with its Message-ID, formatted and dot-stuffed for DATA
    /// (ending with the terminating `.` line).
    pub fn render(&self, probe_id: &str) -> Result<(String, Vec<u8>), MessageError> {
        let message_id = format!("<{probe_id}@{}>", self.domain);
        let msg = lettre::Message::builder()
            .from(self.from.clone())
            .mailbox(lettre::message::header::To::from(self.to.clone()))
            .subject(self.subject.clone())
            .date_now()
            .message_id(Some(message_id.clone()))
            .header(XSmtpCanary(format!("{} {probe_id}", self.mailbox)))
            .body(format!(
                "This is an automated canary message from smtp-canary.\r\n\
                 It checks that mailbox {} can submit mail. Probe {probe_id}.\r\n\
                 It is safe to delete; a mail rule can file it by the X-Smtp-Canary header.\r\n",
                self.mailbox
            ))
            .map_err(|e| MessageError::Build(e.to_string()))?;
        Ok((message_id, dot_stuff(&msg.formatted())))
    }
}

/// RFC 5321 §4.5.2 transparency: a line starting with `.` gets another `.`; then the
/// terminating `CRLF.CRLF`.
pub fn dot_stuff(raw: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(raw.len() + 8);
    let mut at_line_start = true;
    for &b in raw {
        if at_line_start && b == b'.' {
            out.push(b'.');
        }
        out.push(b);
        at_line_start = b == b'\n';
    }
    if !out.ends_with(b"\r\n") {
        out.extend_from_slice(b"\r\n");
    }
    out.extend_from_slice(b".\r\n");
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn renders_headers() {
        let t = Template::new(
            "m1",
            "a@example.com",
            &["b@example.com".into()],
            "probe.example",
        )
        .unwrap();
        let (id, data) = t.render("p-123").unwrap();
        let s = String::from_utf8(data).unwrap();
        assert_eq!(id, "<p-123@probe.example>");
        assert!(s.contains("X-Smtp-Canary: m1 p-123\r\n"), "{s}");
        assert!(s.contains("Message-ID: <p-123@probe.example>\r\n"), "{s}");
        assert!(s.contains("Date: "));
        assert!(s.ends_with("\r\n.\r\n"));
    }

    #[test]
    fn dot_stuffing() {
        assert_eq!(dot_stuff(b"a\r\n.b\r\n"), b"a\r\n..b\r\n.\r\n");
        assert_eq!(dot_stuff(b".x"), b"..x\r\n.\r\n");
    }
}
