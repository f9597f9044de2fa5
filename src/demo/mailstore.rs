//! The demo sink's mail: what the demo relay "delivered", so `provider: demo` sinks show
//! delivery results with no account. Placement is data ([`DEMO_PLACEMENT`]), keyed like
//! the relay's accounts by the sender's local part: most canaries land in INBOX, one
//! account's land in Junk, and one account's bounce with Exchange Online's outbound
//! spam block (a real DSN, in the sender's own inbox).

use std::time::SystemTime;

use super::relay::DemoRelay;

/// Where a demo account's canaries end up.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Placement {
    Inbox,
    Junk,
    /// Refused by the next hop: a DSN with this status and reply goes back to the sender.
    Bounce {
        status: &'static str,
        reply: &'static str,
    },
}

/// By the local part of the sending username; anything else is `Inbox`.
pub static DEMO_PLACEMENT: &[(&str, Placement)] = &[
    ("junk-placement", Placement::Junk),
    (
        "outbound-spam-blocked",
        Placement::Bounce {
            status: "5.7.708",
            reply: "550 5.7.708 Service unavailable. Access denied, traffic not accepted from this IP. For more information please go to http://go.microsoft.com/fwlink/?LinkId=526653",
        },
    ),
];

/// The demo receiver's name in Authentication-Results.
pub const DEMO_AUTHSERV_ID: &str = "demo-sink.protection.outlook.com";

/// One message in a demo mailbox.
#[derive(Debug, Clone)]
pub struct StoredMessage {
    /// Stable and increasing: the relay's message number.
    pub uid: u32,
    pub junk: bool,
    pub internal_date: i64,
    pub data: Vec<u8>,
}

fn placement(user: &str) -> Placement {
    let local = user.split('@').next().unwrap_or(user);
    DEMO_PLACEMENT
        .iter()
        .find(|(l, _)| l.eq_ignore_ascii_case(local))
        .map(|(_, p)| *p)
        .unwrap_or(Placement::Inbox)
}

impl DemoRelay {
    /// The messages `address` has received, as a receiving server would have filed them.
    pub fn mailbox(&self, address: &str) -> Vec<StoredMessage> {
        let now = SystemTime::now()
            .duration_since(SystemTime::UNIX_EPOCH)
            .map_or(0, |d| d.as_secs() as i64);
        let mut out = Vec::new();
        for m in self.server().messages() {
            let user = m.user.clone().unwrap_or_default();
            let to_here = m.rcpt_to.iter().any(|r| r.eq_ignore_ascii_case(address));
            let from_here = m.mail_from.eq_ignore_ascii_case(address);
            let uid = u32::try_from(m.number).unwrap_or(u32::MAX);
            let text = String::from_utf8_lossy(&m.data).into_owned();
            match placement(&user) {
                Placement::Bounce { status, reply } if from_here => {
                    let rcpt = m.rcpt_to.first().cloned().unwrap_or_default();
                    out.push(StoredMessage {
                        uid,
                        junk: false,
                        internal_date: now,
                        data: dsn(&m.mail_from, &rcpt, status, reply, &text).into_bytes(),
                    });
                }
                Placement::Bounce { .. } => {}
                p if to_here => {
                    let header = format!(
                        "Authentication-Results: {DEMO_AUTHSERV_ID}; spf=pass smtp.mailfrom={}; dkim=pass header.d={d}; dmarc=pass header.from={d}\r\n",
                        m.mail_from,
                        d = m.mail_from.rsplit('@').next().unwrap_or("")
                    );
                    out.push(StoredMessage {
                        uid,
                        junk: p == Placement::Junk,
                        internal_date: now,
                        data: [header.as_bytes(), &m.data].concat(),
                    });
                }
                _ => {}
            }
        }
        out
    }
}

/// A DSN as Exchange Online's would look, about `original`.
fn dsn(to: &str, rcpt: &str, status: &str, reply: &str, original: &str) -> String {
    let headers: String = original.split("\r\n\r\n").next().unwrap_or("").to_string();
    format!(
        "From: Microsoft Outlook <MicrosoftExchange329e71ec88ae4615bbc36ab6ce41109e@demo.example>\r\n\
To: {to}\r\n\
Subject: Undeliverable: smtp-canary probe\r\n\
MIME-Version: 1.0\r\n\
Content-Type: multipart/report; report-type=delivery-status; boundary=\"demo-dsn\"\r\n\
\r\n\
--demo-dsn\r\n\
Content-Type: text/plain\r\n\
\r\n\
Delivery has failed to these recipients or groups: {rcpt}\r\n\
--demo-dsn\r\n\
Content-Type: message/delivery-status\r\n\
\r\n\
Reporting-MTA: dns;DM6PR04MB6153.namprd04.prod.outlook.com\r\n\
\r\n\
Final-Recipient: rfc822;{rcpt}\r\n\
Action: failed\r\n\
Status: {status}\r\n\
Diagnostic-Code: smtp;{reply}\r\n\
\r\n\
--demo-dsn\r\n\
Content-Type: text/rfc822-headers\r\n\
\r\n\
{headers}\r\n\
--demo-dsn--\r\n"
    )
}
