//! The demo relay behind `provider: demo`: the scriptable server dressed up as Exchange
//! Online, so the shipped config probes something realistic with no account anywhere.
//!
//! It speaks like smtp.office365.com (greeting, EHLO list, reply texts), trusts no one but
//! its own freshly generated password, and carries demo accounts whose failures are the
//! ones real Microsoft 365 mailboxes produce. The accounts are data ([`DEMO_ACCOUNTS`]),
//! keyed by the local part of the username, so a demo config picks a failure by name.

use std::fmt;
use std::io;
use std::net::SocketAddr;

use rand::Rng as _;
use rand::distr::Alphanumeric;
use rustls_pki_types::CertificateDer;

use super::pki::{Pki, PkiError};
use super::server::{
    Action, AuthVerdict, Credentials, Mechanism, Only, Rule, Script, ServerHandle, SmtpServer,
    Stage, Texts,
};

/// A demo mailbox with a scripted failure, selected by the username's local part.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct DemoAccount {
    /// Matched case-insensitively against the part of the username before `@`.
    pub local_part: &'static str,
    /// What it demonstrates, for documentation and `--help` style listings.
    pub description: &'static str,
    /// If set, AUTH with the right password is refused with this reply.
    pub auth_reply: Option<&'static str>,
    /// Replies this account gets at later stages once authenticated.
    pub after_auth: &'static [(Stage, &'static str)],
}

/// Every username not listed here is a healthy mailbox (apart from the occasional `432`
/// every seventh message). `{host}` becomes the relay's Exchange-style host name.
pub static DEMO_ACCOUNTS: &[DemoAccount] = &[
    DemoAccount {
        local_part: "smtp-auth-disabled",
        description: "SMTP AUTH is disabled for the mailbox (535 5.7.139)",
        auth_reply: Some(
            "535 5.7.139 Authentication unsuccessful, SmtpClientAuthentication is disabled for the Mailbox. Visit https://aka.ms/smtp_auth_disabled for more information. [{host}]",
        ),
        after_auth: &[],
    },
    DemoAccount {
        local_part: "basic-auth-disabled",
        description: "Basic authentication is disabled; OAuth is needed (535 5.7.139)",
        auth_reply: Some(
            "535 5.7.139 Authentication unsuccessful, basic authentication is disabled. [{host}]",
        ),
        after_auth: &[],
    },
    DemoAccount {
        local_part: "security-defaults",
        description: "Locked by the tenant's security defaults policy (535 5.7.139)",
        auth_reply: Some(
            "535 5.7.139 Authentication unsuccessful, user is locked by your organization's security defaults policy. Contact your administrator. [{host}]",
        ),
        after_auth: &[],
    },
    DemoAccount {
        local_part: "quota-exceeded",
        description: "Daily submission quota spent: the message is refused after DATA (554 5.2.0)",
        auth_reply: None,
        after_auth: &[(
            Stage::DataEnd,
            "554 5.2.0 STOREDRV.Submission.Exception:SubmissionQuotaExceededException; Failed to process message due to a permanent exception with message Cannot submit message. [Hostname={host}]",
        )],
    },
    DemoAccount {
        local_part: "send-as-denied",
        description: "Not allowed to send as the MAIL FROM address (550 5.7.60)",
        auth_reply: None,
        after_auth: &[(
            Stage::Mail,
            "550 5.7.60 SMTP; Client does not have permissions to send as this sender [{host}]",
        )],
    },
];

const WRONG_PASSWORD: &str = "535 5.7.3 Authentication unsuccessful [{host}]";
const THREAD_LIMIT: &str =
    "432 4.3.2 STOREDRV.ClientSubmit; sender thread limit exceeded [Hostname={host}]";
/// Every Nth message of the relay's life is throttled, as Exchange does now and then.
const THROTTLE_EVERY: usize = 7;

/// Why the demo relay could not start.
#[derive(Debug, thiserror::Error)]
pub enum DemoError {
    #[error("demo relay certificate: {0}")]
    Pki(#[from] PkiError),
    #[error("demo relay listener: {0}")]
    Io(#[from] io::Error),
}

/// The running demo relay. Dropping it stops it.
pub struct DemoRelay {
    server: ServerHandle,
    pki: Pki,
    password: String,
    hostname: String,
}

impl fmt::Debug for DemoRelay {
    // The password stays out of Debug output, which can end up in logs.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("DemoRelay")
            .field("addr", &self.server.local_addr())
            .field("hostname", &self.hostname)
            .finish_non_exhaustive()
    }
}

fn account(username: &str) -> Option<&'static DemoAccount> {
    let local = username.split('@').next().unwrap_or(username);
    DEMO_ACCOUNTS
        .iter()
        .find(|a| a.local_part.eq_ignore_ascii_case(local))
}

/// Wrong password first, then the account's policy: a demo user with a typo sees 5.7.3
/// whatever the account, which keeps the two failure kinds apart.
fn verdict(password: &str, credentials: &Credentials) -> AuthVerdict {
    if credentials.secret != password {
        return AuthVerdict::RejectWith(WRONG_PASSWORD.into());
    }
    match account(&credentials.username) {
        Some(DemoAccount {
            auth_reply: Some(reply),
            ..
        }) => AuthVerdict::RejectWith((*reply).into()),
        Some(a) if !a.after_auth.is_empty() => AuthVerdict::AcceptWith(
            a.after_auth
                .iter()
                .fold(Script::new(), |s, (stage, reply)| {
                    s.on(*stage, Action::reply(*reply))
                }),
        ),
        _ => AuthVerdict::Accept,
    }
}

/// A host name shaped like an Exchange Online front end's, e.g.
/// `DM6PR04MB6153.namprd04.prod.outlook.com`.
fn exchange_hostname() -> String {
    let mut rng = rand::rng();
    let region: u8 = rng.random_range(1..=20);
    let machine: u16 = rng.random_range(1000..=9999);
    format!("DM6PR{region:02}MB{machine}.namprd{region:02}.prod.outlook.com")
}

impl DemoRelay {
    /// Starts the relay on 127.0.0.1 with an ephemeral port.
    pub async fn start() -> Result<DemoRelay, DemoError> {
        DemoRelay::start_on(SocketAddr::from(([127, 0, 0, 1], 0))).await
    }

    /// Starts the relay on `addr`.
    pub async fn start_on(addr: SocketAddr) -> Result<DemoRelay, DemoError> {
        let pki = Pki::generate(&["127.0.0.1", "localhost"])?;
        let password: String = rand::rng()
            .sample_iter(Alphanumeric)
            .take(24)
            .map(char::from)
            .collect();
        let hostname = exchange_hostname();
        let texts = Texts {
            greeting: "220 {host} Microsoft ESMTP MAIL Service ready at {date}".into(),
            ehlo_hello: "{host} Hello [{peer_ip}]".into(),
            starttls: "220 2.0.0 SMTP server ready".into(),
            auth_ok: "235 2.7.0 Authentication successful".into(),
            auth_failed: WRONG_PASSWORD.into(),
            auth_required: "530 5.7.57 Client not authenticated to send mail. [{host}]".into(),
            auth_needs_tls: "504 5.7.4 Unrecognized authentication type [{host}]".into(),
            mail_ok: "250 2.1.0 Sender OK".into(),
            rcpt_ok: "250 2.1.5 Recipient OK".into(),
            data_start: "354 Start mail input; end with <CRLF>.<CRLF>".into(),
            queued: "250 2.0.0 OK {message_id} [Hostname={host}]".into(),
            quit: "221 2.0.0 Service closing transmission channel".into(),
        };
        let script = Script::new().on(
            Stage::DataEnd,
            Rule::new(Action::reply(THREAD_LIMIT)).only(Only::EveryNthMessage(THROTTLE_EVERY)),
        );
        let check_password = password.clone();
        let server = SmtpServer::new()
            .hostname(hostname.clone())
            .starttls(pki.server_config()?)
            .texts(texts)
            .script(script)
            // Exchange Online offers exactly these two, and only after STARTTLS.
            .mechanisms([Mechanism::Login, Mechanism::XOAuth2])
            .xoauth2_challenge(false)
            .extra_capabilities(["DSN", "SMTPUTF8"])
            // The daemon runs this for its whole life; keep only recent history.
            .keep_records(64, 16)
            .auth_check(move |c| verdict(&check_password, c))
            .start_on(addr)
            .await?;
        tracing::debug!(addr = %server.local_addr(), "demo relay listening");
        Ok(DemoRelay {
            server,
            pki,
            password,
            hostname,
        })
    }

    pub fn addr(&self) -> SocketAddr {
        self.server.local_addr()
    }

    /// The one password (or XOAUTH2 token) every demo account accepts.
    pub fn password(&self) -> String {
        self.password.clone()
    }

    /// The relay's CA certificate: the only trust anchor a demo mailbox needs.
    pub fn ca_der(&self) -> CertificateDer<'static> {
        self.pki.ca_der()
    }

    pub fn ca_pem(&self) -> String {
        self.pki.ca_pem()
    }

    /// The Exchange-style host name in the relay's replies.
    pub fn hostname(&self) -> &str {
        &self.hostname
    }

    /// The underlying server, for its recordings.
    pub fn server(&self) -> &ServerHandle {
        &self.server
    }

    /// Stops the relay and waits until its port is closed.
    pub async fn shutdown(self) {
        self.server.shutdown().await;
    }
}
