//! The phases of one probe, in the order a session runs them (the `phase` label).

use std::fmt;

/// One timed step of a probe. The string forms are part of the public contract.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Phase {
    Dns,
    Connect,
    Tls,
    Greeting,
    Ehlo,
    Starttls,
    OauthToken,
    Auth,
    Mail,
    Rcpt,
    Data,
    Quit,
}

impl Phase {
    /// Every phase, in session order.
    pub const ALL: [Phase; 12] = [
        Phase::Dns,
        Phase::Connect,
        Phase::Tls,
        Phase::Greeting,
        Phase::Ehlo,
        Phase::Starttls,
        Phase::OauthToken,
        Phase::Auth,
        Phase::Mail,
        Phase::Rcpt,
        Phase::Data,
        Phase::Quit,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            Phase::Dns => "dns",
            Phase::Connect => "connect",
            Phase::Tls => "tls",
            Phase::Greeting => "greeting",
            Phase::Ehlo => "ehlo",
            Phase::Starttls => "starttls",
            Phase::OauthToken => "oauth_token",
            Phase::Auth => "auth",
            Phase::Mail => "mail",
            Phase::Rcpt => "rcpt",
            Phase::Data => "data",
            Phase::Quit => "quit",
        }
    }
}

impl fmt::Display for Phase {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}
