//! Readiness for the retirement of Basic auth in Exchange Online: which configured
//! mailboxes still log in to Microsoft 365 with a password.
//!
//! From the end of December 2026 Exchange Online disables Basic auth for SMTP AUTH by
//! default (app passwords take the same path), so every such mailbox is a finding
//! `auth.basic_auth_retiring` (severity warning) for the domain of its `from`: an audit
//! finding like the DNS ones, found from the config instead of DNS. The logic lives only
//! here: `check-config`, the daemon's start-up log and metric, and the DNS audit's
//! output all call [`basic_auth_findings`].

use super::findings::Check;
use crate::config::{AuthConfig, Config, Provider};

/// The finding's check; its id and severity are spelled once, in the findings table.
pub const BASIC_AUTH: Check = Check::AuthBasicAuthRetiring;

/// One Microsoft 365 mailbox that authenticates with a password.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BasicAuthFinding {
    /// The domain of the mailbox's `from` (the `domain` label).
    pub domain: String,
    pub mailbox: String,
}

impl BasicAuthFinding {
    pub fn check(&self) -> &'static str {
        BASIC_AUTH.id()
    }

    pub fn severity(&self) -> &'static str {
        BASIC_AUTH.severity().as_str()
    }

    /// One line for people: what, when, and what to do.
    pub fn message(&self) -> String {
        format!(
            "mailbox {} authenticates to Microsoft 365 with a password: Exchange Online disables \
             Basic auth for SMTP AUTH by default from the end of December 2026; move it to OAuth \
             (oauth2: with client_credentials, see \"Moving a Microsoft 365 mailbox to OAuth\" in the README)",
            self.mailbox
        )
    }
}

/// Every `microsoft365` mailbox that authenticates with a password, in config order.
pub fn basic_auth_findings(cfg: &Config) -> Vec<BasicAuthFinding> {
    cfg.mailboxes
        .iter()
        .filter(|m| {
            m.provider == Provider::Microsoft365 && matches!(m.auth, AuthConfig::Password { .. })
        })
        .map(|m| BasicAuthFinding {
            domain: m.from_domain().to_owned(),
            mailbox: m.name.clone(),
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::path::Path;

    #[test]
    fn only_microsoft365_password_mailboxes() {
        let yaml = r#"
mailboxes:
  - name: m365-password
    provider: microsoft365
    username: a@Contoso.com
    password_env: PATH
    from: a@Contoso.COM
    to: [b@contoso.com]
  - name: m365-oauth
    provider: microsoft365
    username: c@contoso.com
    oauth2: {tenant: contoso.onmicrosoft.com, client_id: x, client_secret_env: PATH}
    from: c@contoso.com
    to: [b@contoso.com]
  - name: google-password
    provider: google
    interval: 10m
    username: d@example.org
    password_env: PATH
    from: d@example.org
    to: [b@example.org]
"#;
        let cfg = crate::config::parse(yaml, Path::new("t.yaml")).unwrap();
        let f = basic_auth_findings(&cfg);
        assert_eq!(
            f,
            vec![BasicAuthFinding {
                domain: "contoso.com".into(),
                mailbox: "m365-password".into()
            }]
        );
        assert_eq!(f[0].check(), "auth.basic_auth_retiring");
        assert!(f[0].message().contains("end of December 2026"));
    }
}
