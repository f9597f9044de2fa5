//! Delivery-verification configs on the stack: sinks that read the `sink.test` mailbox
//! (or the canary user's own inbox, for bounces) over IMAP, and a `delivery:` timeout.

use super::Stack;
use super::canary::{Canary, MailboxCfg, q};

/// The variable that carries a sink's password to the child (never the file).
pub const SINK_PASSWORD_ENV: &str = "SMTP_CANARY_TEST_SINK_PASSWORD";
/// The canary user's password, for a sink on its own inbox (bounces).
pub const OWN_INBOX_PASSWORD_ENV: &str = "SMTP_CANARY_TEST_OWN_PASSWORD";

/// One sink of a test config.
#[derive(Debug, Clone)]
pub struct SinkCfg {
    pub name: String,
    pub address: String,
    pub username: String,
    pub password_env: String,
    pub port: u16,
    pub security: String,
    pub ca_file: String,
    pub cleanup: Option<String>,
    pub poll_interval: String,
}

impl Stack {
    /// The sink.test mailbox over IMAPS with its password.
    pub fn sink(&self, name: &str) -> SinkCfg {
        SinkCfg {
            name: name.to_owned(),
            address: self.sink_user().to_owned(),
            username: self.sink_user().to_owned(),
            password_env: SINK_PASSWORD_ENV.to_owned(),
            port: self.num("STACK_IMAPS_PORT") as u16,
            security: "tls".to_owned(),
            ca_file: self.ca_file().to_owned(),
            cleanup: None,
            poll_interval: "5s".to_owned(),
        }
    }

    /// The canary user's own inbox (where its DSNs arrive), over IMAPS.
    pub fn own_inbox(&self, name: &str) -> SinkCfg {
        SinkCfg {
            address: self.user().to_owned(),
            username: self.user().to_owned(),
            password_env: OWN_INBOX_PASSWORD_ENV.to_owned(),
            ..self.sink(name)
        }
    }

    /// A mailbox that sends to the sink (from the canary user).
    pub fn sending_to_sink(&self, name: &str) -> MailboxCfg {
        let mut m = self.mailbox(name);
        m.to = self.sink_user().to_owned();
        m
    }
}

impl SinkCfg {
    pub fn starttls(mut self) -> Self {
        self.port = Stack::get().num("STACK_IMAP_PORT") as u16;
        self.security = "starttls".to_owned();
        self
    }

    fn yaml(&self) -> String {
        let mut y = format!("  - name: {}\n", q(&self.name));
        y += &format!(
            "    address: {}\n    host: \"127.0.0.1\"\n    port: {}\n    security: {}\n",
            q(&self.address),
            self.port,
            q(&self.security)
        );
        y += &format!(
            "    username: {}\n    password_env: {}\n",
            q(&self.username),
            q(&self.password_env)
        );
        y += &format!(
            "    poll_interval: {}\n    tls:\n      ca_file: {}\n      server_name: {}\n",
            self.poll_interval,
            q(&self.ca_file),
            q(Stack::get().tls_name())
        );
        if let Some(c) = &self.cleanup {
            y += &format!("    cleanup: {c}\n");
        }
        y
    }
}

impl Canary {
    /// A config with these mailboxes and sinks, `delivery.timeout` as given; the child
    /// gets the stack's, the sink's and the own inbox's passwords.
    pub fn with_sinks(mailboxes: &[MailboxCfg], sinks: &[SinkCfg], timeout: &str) -> Canary {
        let stack = Stack::get();
        let mut c = Canary::new(mailboxes);
        let mut y = c.config_text();
        y += "sinks:\n";
        for s in sinks {
            y += &s.yaml();
        }
        y += &format!("delivery:\n  timeout: {timeout}\n");
        std::fs::write(&c.config, &y).expect("writing config.yaml");
        assert!(!y.contains(stack.sink_pass()), "no secret in the config");
        // Our own DKIM check looks keys up in the stack's DNS, as the MX does.
        c.extra_args = vec!["--dns-server".to_owned(), stack.dns().to_owned()];
        c.extra_env = vec![
            (SINK_PASSWORD_ENV.to_owned(), stack.sink_pass().to_owned()),
            (
                OWN_INBOX_PASSWORD_ENV.to_owned(),
                stack.password().to_owned(),
            ),
        ];
        c
    }
}
