//! The running mail stack of `tests/stack/` (Postfix, Dovecot, OpenDKIM, Knot,
//! Prometheus on loopback), as `$STACK_ROOT/run/stack.env` describes it, and what the
//! stack tests build on it: smtp-canary configs and runs ([`canary`]), the Maildir and
//! the logs ([`mail`]), a test-owned Prometheus ([`prometheus`]), and the token endpoint
//! on the address Dovecot asks for introspection.
//!
//! When the stack is not up, every use panics with instructions: nothing skips.

pub mod canary;
pub mod mail;
pub mod prometheus;
pub mod sink;

use std::collections::HashMap;
use std::net::{SocketAddr, TcpStream};
use std::path::{Path, PathBuf};
use std::sync::OnceLock;
use std::time::Duration;

use super::token_endpoint::TokenEndpoint;

/// The running stack.
#[derive(Debug)]
pub struct Stack {
    vars: HashMap<String, String>,
    env_file: PathBuf,
}

impl Stack {
    /// The stack, or a loud panic that says how to start it.
    pub fn get() -> &'static Stack {
        static STACK: OnceLock<Stack> = OnceLock::new();
        STACK.get_or_init(Stack::load)
    }

    fn load() -> Stack {
        let root =
            std::env::var("STACK_ROOT").unwrap_or_else(|_| "/var/tmp/smtp-canary-stack".to_owned());
        let env_file = Path::new(&root).join("run/stack.env");
        let text = match std::fs::read_to_string(&env_file) {
            Ok(t) => t,
            Err(e) => panic!(
                "\n\n*** THE MAIL STACK IS NOT RUNNING ***\n\
                 cannot read {} ({e}).\n\
                 These tests need the real Postfix/Dovecot/OpenDKIM/Knot/Prometheus stack.\n\
                 Start it as root:   sudo tests/stack/up.sh   (see tests/stack/README.md)\n\
                 or run everything:  sudo scripts/test-all.sh\n\
                 (set STACK_ROOT if the stack lives elsewhere than /var/tmp/smtp-canary-stack)\n",
                env_file.display()
            ),
        };
        let vars: HashMap<String, String> = text
            .lines()
            .filter(|l| !l.trim().is_empty() && !l.starts_with('#'))
            .filter_map(|l| l.split_once('='))
            .map(|(k, v)| (k.trim().to_owned(), v.trim().to_owned()))
            .collect();
        let stack = Stack { vars, env_file };
        // stack.env exists: the stack claims to be up. Check that Postfix really listens.
        let smtp = stack.smtp_addr();
        if let Err(e) = TcpStream::connect_timeout(&smtp, Duration::from_secs(3)) {
            panic!(
                "\n\n*** THE MAIL STACK IS NOT RUNNING ***\n\
                 {} exists but Postfix does not answer on {smtp}: {e}.\n\
                 Restart it as root: sudo tests/stack/up.sh\n",
                stack.env_file.display()
            );
        }
        stack
    }

    /// One variable of stack.env; panics with the file name when it is missing.
    pub fn var(&self, key: &str) -> &str {
        self.vars.get(key).unwrap_or_else(|| {
            panic!(
                "{} has no {key}: is tests/stack/up.sh older than these tests?",
                self.env_file.display()
            )
        })
    }

    pub fn num(&self, key: &str) -> u32 {
        let v = self.var(key);
        v.parse()
            .unwrap_or_else(|_| panic!("{key}={v} in {} is not a number", self.env_file.display()))
    }

    /// Panics unless the stack offers XOAUTH2 (Dovecot's oauth2 passdb).
    pub fn assert_oauth2(&self) {
        assert_eq!(
            self.var("STACK_OAUTH2"),
            "1",
            "the stack runs without XOAUTH2 (STACK_OAUTH2=0); restart it with STACK_OAUTH2=1"
        );
    }

    pub fn host(&self) -> &str {
        self.var("STACK_HOST")
    }

    pub fn smtp_port(&self) -> u16 {
        self.num("STACK_SMTP_PORT") as u16
    }

    pub fn smtp_addr(&self) -> SocketAddr {
        SocketAddr::new(
            self.host().parse().expect("STACK_HOST is an IP"),
            self.smtp_port(),
        )
    }

    pub fn user(&self) -> &str {
        self.var("STACK_USER")
    }

    pub fn password(&self) -> &str {
        self.var("STACK_PASS")
    }

    pub fn ca_file(&self) -> &str {
        self.var("STACK_CA_FILE")
    }

    pub fn tls_name(&self) -> &str {
        self.var("STACK_TLS_NAME")
    }

    /// The stack's Knot (`--dns-server`).
    pub fn dns(&self) -> &str {
        self.var("STACK_DNS")
    }

    pub fn maildir(&self) -> PathBuf {
        PathBuf::from(self.var("STACK_MAILDIR"))
    }

    pub fn postfix_log(&self) -> PathBuf {
        PathBuf::from(self.var("STACK_POSTFIX_LOG"))
    }

    /// The token endpoint on the stack's introspection address (one per process: the
    /// port is fixed, and every test of the binary shares it). Introspection reports the
    /// stack's user for the tokens it issued.
    pub fn token_endpoint(&self) -> &'static TokenEndpoint {
        static EP: OnceLock<TokenEndpoint> = OnceLock::new();
        EP.get_or_init(|| {
            self.assert_oauth2();
            let url = self.var("STACK_OAUTH2_INTROSPECT_URL");
            let addr: SocketAddr = url
                .strip_prefix("http://")
                .and_then(|r| r.split('/').next())
                .and_then(|a| a.parse().ok())
                .unwrap_or_else(|| panic!("unexpected STACK_OAUTH2_INTROSPECT_URL {url}"));
            let ep = TokenEndpoint::start_detached(addr);
            ep.set_username(self.user());
            ep
        })
    }
}

/// The receiving side (`sink.test`): the MX smtpd, its DKIM verifier, the sink mailbox,
/// and the addresses and command that make a canary bounce, fail DKIM or arrive late.
/// One accessor per stack.env key (`STACK_SINK_USER` -> `sink_user`).
#[allow(dead_code)] // for the delivery-verification tests; not every binary uses all
impl Stack {
    /// `STACK_SINK_DOMAIN` (`sink.test`).
    pub fn sink_domain(&self) -> &str {
        self.var("STACK_SINK_DOMAIN")
    }

    /// `STACK_SINK_USER`: the IMAP login (password or XOAUTH2) that reads the sink.
    pub fn sink_user(&self) -> &str {
        self.var("STACK_SINK_USER")
    }

    pub fn sink_pass(&self) -> &str {
        self.var("STACK_SINK_PASS")
    }

    /// `STACK_SINK_MAILDIR`: the sink user's Maildir (Junk is its `.Junk/`).
    pub fn sink_maildir(&self) -> PathBuf {
        PathBuf::from(self.var("STACK_SINK_MAILDIR"))
    }

    /// `STACK_MX_PORT`: the sink.test MX smtpd (no AUTH; submission relays to it).
    pub fn mx_port(&self) -> u16 {
        self.num("STACK_MX_PORT") as u16
    }

    /// `STACK_DKIM_VERIFY_PORT`: the MX's verify-only OpenDKIM milter.
    pub fn dkim_verify_port(&self) -> u16 {
        self.num("STACK_DKIM_VERIFY_PORT") as u16
    }

    /// `STACK_AUTHSERV_ID`: the authserv-id of the MX's Authentication-Results.
    pub fn authserv_id(&self) -> &str {
        self.var("STACK_AUTHSERV_ID")
    }

    /// `STACK_BOUNCE_RCPT`: accepted by submission, refused 550 5.1.1 by the MX: a DSN
    /// reaches the envelope sender's INBOX.
    pub fn bounce_rcpt(&self) -> &str {
        self.var("STACK_BOUNCE_RCPT")
    }

    /// `STACK_DKIM_FAIL_FROM`: From address whose signature fails at the MX (dkim=fail).
    pub fn dkim_fail_from(&self) -> &str {
        self.var("STACK_DKIM_FAIL_FROM")
    }

    /// `STACK_DKIM_FAIL_SELECTOR`: the selector of that failing signature.
    pub fn dkim_fail_selector(&self) -> &str {
        self.var("STACK_DKIM_FAIL_SELECTOR")
    }

    /// `STACK_RELEASE_HELD`: executable (root) that releases held (`late`) messages and
    /// delivers them now; no arguments: all of them, else the given queue IDs.
    pub fn release_held(&self) -> PathBuf {
        PathBuf::from(self.var("STACK_RELEASE_HELD"))
    }
}

/// An executable from the stack's packages, or a panic that says how to get it.
pub fn tool(name: &str) -> PathBuf {
    super::tool(name, "tests/stack/up.sh (as root) installs it")
}
