//! Maps what went wrong in a probe to one of the contract's fixed failure classes, the
//! `code` label and a one-line remediation hint.
//!
//! Provider knowledge lives in tables, read in this order: the enhanced status code, then
//! known provider texts, then the basic code and the phase.

use std::fmt;

use crate::config::Provider;
use crate::probe::{Phase, Reply};

/// The contract's failure classes (`class` label). The string forms are public.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Class {
    Dns,
    Connect,
    Timeout,
    Tls,
    Network,
    Protocol,
    Auth,
    AuthPolicy,
    OauthToken,
    Throttled,
    Quota,
    SenderRejected,
    RecipientRejected,
    MessageRejected,
}

impl Class {
    pub const ALL: [Class; 14] = [
        Class::Dns,
        Class::Connect,
        Class::Timeout,
        Class::Tls,
        Class::Network,
        Class::Protocol,
        Class::Auth,
        Class::AuthPolicy,
        Class::OauthToken,
        Class::Throttled,
        Class::Quota,
        Class::SenderRejected,
        Class::RecipientRejected,
        Class::MessageRejected,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            Class::Dns => "dns",
            Class::Connect => "connect",
            Class::Timeout => "timeout",
            Class::Tls => "tls",
            Class::Network => "network",
            Class::Protocol => "protocol",
            Class::Auth => "auth",
            Class::AuthPolicy => "auth_policy",
            Class::OauthToken => "oauth_token",
            Class::Throttled => "throttled",
            Class::Quota => "quota",
            Class::SenderRejected => "sender_rejected",
            Class::RecipientRejected => "recipient_rejected",
            Class::MessageRejected => "message_rejected",
        }
    }
}

impl fmt::Display for Class {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Classifies a negative (4xx/5xx) reply received in `phase`.
pub fn classify_reply(provider: Provider, phase: Phase, reply: &Reply) -> Class {
    let _ = (provider, reply);
    match phase {
        Phase::Auth => Class::Auth,
        Phase::Rcpt => Class::RecipientRejected,
        Phase::Mail => Class::SenderRejected,
        Phase::Starttls => Class::Tls,
        Phase::Data => Class::MessageRejected,
        _ => Class::Protocol,
    }
}

/// What the hint for a failure is chosen from.
#[derive(Debug, Clone, Copy)]
pub struct HintInput<'a> {
    pub provider: Provider,
    pub class: Class,
    /// The `code` label ("5.7.139", "454" or "").
    pub code: &'a str,
    /// The full reply text, when the failure was a reply.
    pub reply: Option<&'a str>,
    /// True when the mailbox authenticates with a password (not OAuth).
    pub uses_password: bool,
}

/// A one-line remediation hint. Never contains secrets: it is built only from tables.
pub fn hint(input: HintInput<'_>) -> String {
    let _ = input;
    String::new()
}
