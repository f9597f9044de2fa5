//! Reply texts and authentication: what the server says at each step, and how it
//! checks credentials.

use super::*;

/// The server's default reply texts, each a complete reply with its code.
///
/// Placeholders expanded in these and in scripted replies: `{host}` (the server's
/// hostname), `{peer_ip}`, `{date}` (RFC 2822, now), `{queue_id}` (random, per message)
/// and `{message_id}` (the message's `Message-ID` header, or one made from the queue id).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Texts {
    pub greeting: String,
    /// The first EHLO line, without its `250-`.
    pub ehlo_hello: String,
    pub starttls: String,
    pub auth_ok: String,
    /// Wrong credentials (used by [`AuthVerdict::Reject`]).
    pub auth_failed: String,
    /// MAIL before a required AUTH.
    pub auth_required: String,
    /// AUTH over plaintext when that is not allowed.
    pub auth_needs_tls: String,
    pub mail_ok: String,
    pub rcpt_ok: String,
    pub data_start: String,
    pub queued: String,
    pub quit: String,
}

impl Default for Texts {
    fn default() -> Texts {
        Texts {
            greeting: "220 {host} ESMTP smtp-canary test server".into(),
            ehlo_hello: "{host} Hello [{peer_ip}]".into(),
            starttls: "220 2.0.0 Ready to start TLS".into(),
            auth_ok: "235 2.7.0 Authentication successful".into(),
            auth_failed: "535 5.7.8 Authentication credentials invalid".into(),
            auth_required: "530 5.7.0 Authentication required".into(),
            auth_needs_tls: "538 5.7.11 Encryption required for requested authentication mechanism"
                .into(),
            mail_ok: "250 2.1.0 Ok".into(),
            rcpt_ok: "250 2.1.5 Ok".into(),
            data_start: "354 End data with <CR><LF>.<CR><LF>".into(),
            queued: "250 2.0.0 Ok: queued as {queue_id}".into(),
            quit: "221 2.0.0 Bye".into(),
        }
    }
}

/// A SASL mechanism the server implements.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Mechanism {
    Plain,
    Login,
    XOAuth2,
}

impl Mechanism {
    pub fn name(self) -> &'static str {
        match self {
            Mechanism::Plain => "PLAIN",
            Mechanism::Login => "LOGIN",
            Mechanism::XOAuth2 => "XOAUTH2",
        }
    }

    pub(super) fn parse(name: &str) -> Option<Mechanism> {
        [Mechanism::Plain, Mechanism::Login, Mechanism::XOAuth2]
            .into_iter()
            .find(|m| m.name().eq_ignore_ascii_case(name))
    }
}

/// What a client presented in AUTH. `secret` is the password, or the bearer token for
/// XOAUTH2; `Debug` never prints it.
#[derive(Clone, PartialEq, Eq)]
pub struct Credentials {
    pub mechanism: Mechanism,
    /// The PLAIN authorization identity (usually empty).
    pub authzid: String,
    pub username: String,
    pub secret: String,
}

impl fmt::Debug for Credentials {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Credentials")
            .field("mechanism", &self.mechanism)
            .field("authzid", &self.authzid)
            .field("username", &self.username)
            .field("secret", &"<redacted>")
            .finish()
    }
}

/// The credential check's answer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum AuthVerdict {
    /// `Texts::auth_ok`.
    Accept,
    /// Accept, and from now on this connection also follows `Script`'s rules (consulted
    /// before the server's own script; its delays and hide flags are ignored). Lets an
    /// account carry its own failures, like the demo's quota-exceeded mailbox.
    AcceptWith(Script),
    /// `Texts::auth_failed`.
    Reject,
    /// Reject with this reply.
    RejectWith(String),
}

pub(super) type AuthCheck = Arc<dyn Fn(&Credentials) -> AuthVerdict + Send + Sync>;
