//! End-to-end tests of [`parse`]: text in, resolved config or located errors out.
//!
//! Secrets come from a fake environment and from files in a temporary directory, so the
//! tests neither touch the process environment (racy across parallel tests) nor depend
//! on the machine.

use std::env::VarError;
use std::path::PathBuf;
use std::time::Duration;

use super::*;

const SECRET_VALUE: &str = "TOPSECRET-do-not-print";

fn fake_env(name: &str) -> Result<String, VarError> {
    match name {
        "INVOICES_SMTP_PASSWORD" => Ok("pw-from-env".to_string()),
        "INVOICES_CLIENT_SECRET" => Ok("cs-from-env".to_string()),
        "SECRET_ENV" => Ok(SECRET_VALUE.to_string()),
        "EMPTY_VAR" => Ok(String::new()),
        _ => Err(VarError::NotPresent),
    }
}

const TEST_CA: &str = "-----BEGIN CERTIFICATE-----\nMIIB\n-----END CERTIFICATE-----\n";

/// A temporary directory holding the config file's neighbours: `pw.txt`, `ca.pem`,
/// `rt.txt` (a refresh token).
struct Fixture {
    dir: tempfile::TempDir,
}

impl Fixture {
    fn new() -> Fixture {
        let dir = tempfile::tempdir().expect("tempdir");
        std::fs::write(dir.path().join("pw.txt"), "pw-from-file\n").expect("write");
        std::fs::write(dir.path().join("ca.pem"), TEST_CA).expect("write");
        std::fs::write(dir.path().join("rt.txt"), "rt-from-file\n").expect("write");
        std::fs::write(dir.path().join("secret.txt"), format!("{SECRET_VALUE}\n")).expect("write");
        Fixture { dir }
    }

    fn path(&self) -> PathBuf {
        self.dir.path().join("config.yaml")
    }

    fn parse(&self, text: &str) -> Result<Config, Vec<ConfigError>> {
        parse_with(text, &self.path(), &fake_env, &|| "probe.test".to_string())
    }

    fn ok(&self, text: &str) -> Config {
        match self.parse(text) {
            Ok(c) => c,
            Err(e) => panic!("unexpected errors:\n{}", lines(&e)),
        }
    }

    fn errs(&self, text: &str) -> Vec<ConfigError> {
        match self.parse(text) {
            Ok(c) => panic!("expected errors, got {c:?}"),
            Err(e) => {
                // Whatever the test, no message may carry a secret.
                for err in &e {
                    assert!(
                        !err.to_string().contains(SECRET_VALUE),
                        "secret leaked: {err}"
                    );
                    assert!(!err.to_string().contains("pw-from"), "secret leaked: {err}");
                }
                e
            }
        }
    }

    /// The one error of `text`.
    fn err(&self, text: &str) -> ConfigError {
        let e = self.errs(text);
        assert_eq!(e.len(), 1, "expected one error, got:\n{}", lines(&e));
        e.into_iter().next().expect("one error")
    }
}

fn lines(e: &[ConfigError]) -> String {
    e.iter().map(|e| format!("  {e}\n")).collect()
}

/// Asserts position and key of `e`, and that its message contains `text`.
#[track_caller]
fn assert_err(e: &ConfigError, line: u64, column: u64, key: &str, text: &str) {
    assert_eq!(
        (e.line, e.column, e.key.as_str()),
        (line, column, key),
        "{e}"
    );
    assert!(e.message.contains(text), "message of `{e}` lacks `{text}`");
}

/// A valid mailbox to append keys to; `from` at line 3 when it starts the document
/// after `mailboxes:`.
const MB: &str = "mailboxes:\n  - name: a\n    host: smtp.example.com\n    from: a@example.com\n    to: [b@example.com]\n";

fn mailbox(c: &Config) -> &Mailbox {
    &c.mailboxes[0]
}

#[test]
fn full_config_like_the_contract() {
    let f = Fixture::new();
    let text = r#"
global:
  interval: 5m
  timeout: 30s
  helo_name: probe.example.com
mailboxes:
  - name: invoices-m365
    provider: microsoft365
    host: smtp.office365.com
    port: 587
    security: starttls
    username: invoices@contoso.com
    password_env: INVOICES_SMTP_PASSWORD
    from: invoices@Contoso.com
    to: [canary-sink@contoso.com]
    interval: 5m
    timeout: 30s
    tls:
      ca_file: ca.pem
      server_name: smtp.office365.com
    allow_insecure_auth: false
    source_address: 192.0.2.10
    limits: {messages_per_minute: 30, recipients_per_day: 10000, concurrent_connections: 3}
    budget: {messages_per_day: 288}
  - name: invoices-oauth
    provider: microsoft365
    username: invoices@contoso.com
    oauth2:
      grant: client_credentials
      tenant: contoso.onmicrosoft.com
      client_id: 00000000-0000-0000-0000-000000000000
      client_secret_env: INVOICES_CLIENT_SECRET
    auth_mechanism: xoauth2
    from: invoices@contoso.com
    to: [canary-sink@contoso.com, second@contoso.com]
    interval: 10m
dns_audit:
  interval: 1h
  domains:
    - domain: contoso.com
      provider: microsoft365
      dkim_selectors: [selector1, selector2]
"#;
    let c = f.ok(text);
    assert_eq!(c.path, f.path());
    assert_eq!(
        c.global,
        Global {
            interval: Duration::from_secs(300),
            timeout: Duration::from_secs(30),
            helo_name: "probe.example.com".into()
        }
    );
    assert_eq!(c.mailboxes.len(), 2);
    let m = &c.mailboxes[0];
    assert_eq!(m.name, "invoices-m365");
    assert_eq!(m.line, 7);
    assert_eq!(m.provider, Provider::Microsoft365);
    assert_eq!(
        (m.host.as_str(), m.port, m.security),
        ("smtp.office365.com", 587, Security::Starttls)
    );
    assert_eq!(
        m.auth,
        AuthConfig::Password {
            username: "invoices@contoso.com".into(),
            password: Secret::new("pw-from-env")
        }
    );
    assert_eq!(m.from, "invoices@contoso.com", "domain lower-cased");
    assert_eq!(m.from_domain(), "contoso.com");
    assert_eq!(m.to, ["canary-sink@contoso.com"]);
    assert_eq!(m.tls.ca_file, Some(f.dir.path().join("ca.pem")));
    assert_eq!(m.tls.server_name.as_deref(), Some("smtp.office365.com"));
    assert!(!m.allow_insecure_auth);
    assert_eq!(m.source_address, Some("192.0.2.10".parse().unwrap()));
    assert_eq!(
        m.limits,
        Limits {
            messages_per_minute: Some(30),
            messages_per_day: None,
            recipients_per_day: Some(10_000),
            concurrent_connections: Some(3)
        }
    );
    assert_eq!(m.budget.messages_per_day, Some(288));
    assert_eq!(m.auth_mechanism, None);

    let o = &c.mailboxes[1];
    assert_eq!(o.line, 25);
    assert_eq!(o.interval, Duration::from_secs(600));
    assert_eq!(o.timeout, Duration::from_secs(30), "inherited from global");
    assert_eq!(o.auth_mechanism, Some(Mechanism::Xoauth2));
    let AuthConfig::OAuth2 { username, oauth } = &o.auth else {
        panic!("expected oauth2, got {:?}", o.auth)
    };
    assert_eq!(username, "invoices@contoso.com");
    assert_eq!(
        *oauth,
        OAuth2 {
            grant: Grant::ClientCredentials,
            token_url:
                "https://login.microsoftonline.com/contoso.onmicrosoft.com/oauth2/v2.0/token".into(),
            scope: Some("https://outlook.office365.com/.default".into()),
            client_id: "00000000-0000-0000-0000-000000000000".into(),
            client_secret: Secret::new("cs-from-env"),
            refresh_token: None,
        }
    );

    assert_eq!(c.dns_audit.interval, Duration::from_secs(3600));
    assert_eq!(
        c.dns_audit.domains,
        [AuditDomain {
            domain: "contoso.com".into(),
            provider: Provider::Microsoft365,
            dkim_selectors: vec!["selector1".into(), "selector2".into()]
        }]
    );
    assert_eq!(c.mailbox("invoices-oauth").map(|m| m.line), Some(25));
}

#[test]
fn defaults_for_a_minimal_mailbox() {
    let f = Fixture::new();
    let c = f.ok(MB);
    assert_eq!(c.global.interval, Duration::from_secs(300));
    assert_eq!(c.global.timeout, Duration::from_secs(30));
    assert_eq!(c.global.helo_name, "probe.test");
    assert_eq!(c.dns_audit.interval, Duration::from_secs(3600));
    assert!(c.dns_audit.domains.is_empty());
    let m = mailbox(&c);
    assert_eq!(m.provider, Provider::Generic);
    assert_eq!((m.port, m.security), (587, Security::Starttls));
    assert_eq!(m.auth, AuthConfig::None);
    assert_eq!(m.limits, Limits::default());
    assert_eq!(m.budget, Budget::default());
    assert_eq!(m.line, 2);
    assert_eq!(
        c.audit_domains(),
        [AuditDomain {
            domain: "example.com".into(),
            provider: Provider::Generic,
            dkim_selectors: vec![]
        }]
    );
}

#[test]
fn default_helo_name_is_a_host_name() {
    let h = default_helo_name();
    assert!(validate::host_problem(&h).is_none(), "{h}");
}

#[test]
fn preset_fills_and_explicit_keys_win() {
    let f = Fixture::new();
    let base = "mailboxes:\n  - name: a\n    provider: microsoft365\n    from: a@contoso.com\n    to: [b@contoso.com]\n";
    let c = f.ok(base);
    let m = mailbox(&c);
    assert_eq!(
        (m.host.as_str(), m.port, m.security),
        ("smtp.office365.com", 587, Security::Starttls)
    );
    assert_eq!(m.limits, Provider::Microsoft365.preset().limits);
    assert_eq!(
        c.audit_domains()[0].dkim_selectors,
        ["selector1".to_string(), "selector2".to_string()]
    );

    let c = f.ok(&format!(
        "{base}    host: smtp-legacy.office365.com\n    port: 25\n    limits: {{messages_per_minute: 10, messages_per_day: 5000}}\n"
    ));
    let m = mailbox(&c);
    assert_eq!((m.host.as_str(), m.port), ("smtp-legacy.office365.com", 25));
    // Per field: the explicit ones replace, the others stay from the preset.
    assert_eq!(
        m.limits,
        Limits {
            messages_per_minute: Some(10),
            messages_per_day: Some(5000),
            recipients_per_day: Some(10_000),
            concurrent_connections: Some(3)
        }
    );
}

#[test]
fn google_and_sendgrid_presets() {
    let f = Fixture::new();
    let c = f.ok("mailboxes:\n  - name: g\n    provider: google\n    interval: 10m\n    from: a@example.com\n    to: [b@example.com]\n");
    let m = mailbox(&c);
    assert_eq!(m.host, "smtp.gmail.com");
    assert_eq!(m.limits.messages_per_day, Some(2_000));
    assert_eq!(m.limits.recipients_per_day, Some(10_000));

    let sg = "mailboxes:\n  - name: s\n    provider: sendgrid\n    password_file: pw.txt\n    from: a@example.com\n    to: [b@example.com]\n";
    let c = f.ok(sg);
    assert_eq!(
        mailbox(&c).auth,
        AuthConfig::Password {
            username: "apikey".into(),
            password: Secret::new("pw-from-file")
        }
    );
    let e = f.err(&format!("{sg}    username: me@example.com\n"));
    assert_err(
        &e,
        7,
        15,
        "mailboxes[0].username",
        "SendGrid expects the username `apikey`",
    );
}

#[test]
fn port_465_implies_tls_and_tls_implies_465() {
    let f = Fixture::new();
    let c = f.ok(&format!("{MB}    port: 465\n"));
    assert_eq!(mailbox(&c).security, Security::Tls);
    let c = f.ok(&format!("{MB}    security: tls\n"));
    assert_eq!(mailbox(&c).port, 465);
}

#[test]
fn microsoft365_refuses_port_465_and_implicit_tls() {
    let f = Fixture::new();
    let base = "mailboxes:\n  - name: a\n    provider: microsoft365\n    from: a@contoso.com\n    to: [b@contoso.com]\n";
    let e = f.err(&format!("{base}    port: 465\n"));
    assert_err(&e, 6, 11, "mailboxes[0].port", validate::M365_NO_465);
    let e = f.err(&format!("{base}    security: tls\n"));
    assert_err(
        &e,
        6,
        15,
        "mailboxes[0].security",
        "port 465 is not supported",
    );
    assert_eq!(
        e.message,
        "Exchange Online accepts client submission only with STARTTLS on 587; port 465 is not supported"
    );
}

#[test]
fn ses_and_generic_need_a_host() {
    let f = Fixture::new();
    let e = f.err("mailboxes:\n  - name: a\n    provider: ses\n    from: a@example.com\n    to: [b@example.com]\n");
    assert_err(
        &e,
        2,
        5,
        "mailboxes[0].host",
        "e.g. email-smtp.eu-west-1.amazonaws.com",
    );
    let e = f.err("mailboxes:\n  - name: a\n    from: a@example.com\n    to: [b@example.com]\n");
    assert_err(
        &e,
        2,
        5,
        "mailboxes[0].host",
        "host is required for provider generic",
    );
    let c = f.ok("mailboxes:\n  - name: a\n    provider: ses\n    host: email-smtp.eu-west-1.amazonaws.com\n    from: a@example.com\n    to: [b@example.com]\n");
    assert_eq!(mailbox(&c).host, "email-smtp.eu-west-1.amazonaws.com");
}

#[test]
fn demo_provider() {
    let f = Fixture::new();
    let base = "mailboxes:\n  - name: d\n    provider: demo\n    from: demo@example.com\n    to: [sink@example.com]\n";
    let c = f.ok(base);
    let m = mailbox(&c);
    assert_eq!(
        (m.host.as_str(), m.port, m.security),
        ("127.0.0.1", 0, Security::Starttls)
    );
    assert_eq!(m.limits, Provider::Microsoft365.preset().limits);
    assert_eq!(
        m.auth,
        AuthConfig::Password {
            username: "demo@example.com".into(),
            password: Secret::new("")
        }
    );
    assert!(
        c.audit_domains().is_empty(),
        "demo mailboxes are not audited"
    );

    let c = f.ok(&format!("{base}    username: alice\n"));
    assert_eq!(
        mailbox(&c).auth,
        AuthConfig::Password {
            username: "alice".into(),
            password: Secret::new("")
        }
    );
    let c = f.ok(&format!(
        "{base}    username: alice\n    password_file: pw.txt\n"
    ));
    assert_eq!(
        mailbox(&c).auth,
        AuthConfig::Password {
            username: "alice".into(),
            password: Secret::new("pw-from-file")
        }
    );
    let e = f.err(&format!("{base}    host: smtp.example.com\n"));
    assert_err(&e, 6, 11, "mailboxes[0].host", "in-process relay");
}

#[test]
fn unknown_key_suggests_the_nearest() {
    let f = Fixture::new();
    let e = f.err(&format!("{MB}    intervall: 5m\n"));
    assert_err(&e, 6, 5, "mailboxes[0].intervall", "");
    assert_eq!(
        e.message,
        "unknown key `intervall`; did you mean `interval`?"
    );
    assert_eq!(
        e.to_string(),
        format!(
            "{}:6:5: mailboxes[0].intervall: unknown key `intervall`; did you mean `interval`?",
            f.path().display()
        )
    );
    let e = f.err(&format!("globl:\n  interval: 5m\n{MB}"));
    assert_err(&e, 1, 1, "globl", "did you mean `global`?");
}

#[test]
fn all_unknown_keys_are_reported_at_once() {
    let f = Fixture::new();
    let e = f.errs(&format!(
        "global:\n  timout: 5s\n{MB}    prot: 25\n    tls: {{ca: x}}\n"
    ));
    let keys: Vec<&str> = e.iter().map(|e| e.key.as_str()).collect();
    assert_eq!(
        keys,
        ["global.timout", "mailboxes[0].prot", "mailboxes[0].tls.ca"]
    );
}

#[test]
fn inline_secrets_are_refused_without_echo() {
    let f = Fixture::new();
    let e = f.err(&format!(
        "{MB}    username: u\n    password: {SECRET_VALUE}\n"
    ));
    assert_err(&e, 7, 5, "mailboxes[0].password", "password_env");
    assert!(e.message.contains("password_file"));
    assert!(!e.to_string().contains(SECRET_VALUE));

    let e = f.err(&format!(
        "{MB}    username: u\n    oauth2:\n      client_id: x\n      client_secret: \"{SECRET_VALUE}\"\n"
    ));
    assert_err(
        &e,
        9,
        7,
        "mailboxes[0].oauth2.client_secret",
        "client_secret_env",
    );
    assert!(e.message.contains("client_secret_file"));

    let e = f.errs(&format!(
        "{MB}    token: {SECRET_VALUE}\n    refresh_token: {SECRET_VALUE}\n"
    ));
    assert_eq!(e.len(), 2);
    assert_err(&e[0], 6, 5, "mailboxes[0].token", "never configured");
    assert_err(
        &e[1],
        7,
        5,
        "mailboxes[0].refresh_token",
        "refresh_token_env",
    );
}

#[test]
fn secrets_from_env_and_file() {
    let f = Fixture::new();
    let c = f.ok(&format!("{MB}    username: u\n    password_file: pw.txt\n"));
    assert_eq!(
        mailbox(&c).auth,
        AuthConfig::Password {
            username: "u".into(),
            password: Secret::new("pw-from-file")
        }
    );

    let e = f.err(&format!(
        "{MB}    username: u\n    password_env: INVOICES_SMTP_PASSWORD_TYPO\n"
    ));
    assert_err(
        &e,
        7,
        19,
        "mailboxes[0].password_env",
        "environment variable INVOICES_SMTP_PASSWORD_TYPO is not set",
    );
    let e = f.err(&format!(
        "{MB}    username: u\n    password_env: EMPTY_VAR\n"
    ));
    assert_err(&e, 7, 19, "mailboxes[0].password_env", "EMPTY_VAR is empty");
    // Someone pasted the secret itself into `_env`: not echoed.
    let e = f.err(&format!(
        "{MB}    username: u\n    password_env: \"{SECRET_VALUE} x\"\n"
    ));
    assert_err(
        &e,
        7,
        19,
        "mailboxes[0].password_env",
        "must name an environment variable",
    );

    let e = f.err(&format!(
        "{MB}    username: u\n    password_file: missing.txt\n"
    ));
    assert_err(
        &e,
        7,
        20,
        "mailboxes[0].password_file",
        "missing.txt: no such file",
    );

    let e = f.err(&format!(
        "{MB}    username: u\n    password_env: SECRET_ENV\n    password_file: pw.txt\n"
    ));
    assert_err(
        &e,
        8,
        20,
        "mailboxes[0].password_file",
        "set only one of password_env and password_file",
    );
}

#[test]
fn oauth2_rules() {
    let f = Fixture::new();
    let m365 = "mailboxes:\n  - name: a\n    provider: microsoft365\n    from: a@contoso.com\n    to: [b@contoso.com]\n    username: a@contoso.com\n    oauth2:\n";

    // Explicit token_url and scope win over the preset.
    let c = f.ok(&format!(
        "{m365}      tenant: contoso.onmicrosoft.com\n      token_url: https://login.example/token\n      scope: custom\n      client_id: id\n      client_secret_file: secret.txt\n"
    ));
    let AuthConfig::OAuth2 { oauth, .. } = &mailbox(&c).auth else {
        panic!()
    };
    assert_eq!(
        (oauth.token_url.as_str(), oauth.scope.as_deref()),
        ("https://login.example/token", Some("custom"))
    );
    assert_eq!(oauth.client_secret.expose(), SECRET_VALUE);

    // Neither tenant nor token_url.
    let e = f.err(&format!(
        "{m365}      client_id: id\n      client_secret_env: INVOICES_CLIENT_SECRET\n"
    ));
    assert_err(&e, 8, 7, "mailboxes[0].oauth2.tenant", "needs tenant:");

    // client_credentials without a secret.
    let e = f.err(&format!(
        "{m365}      tenant: t.onmicrosoft.com\n      client_id: id\n"
    ));
    assert_err(
        &e,
        8,
        7,
        "mailboxes[0].oauth2.client_secret_env",
        "client_credentials needs client_secret_env",
    );

    // refresh_token grant without a refresh token; missing client_id too: both reported.
    let e = f.errs(&format!(
        "{m365}      grant: refresh_token\n      tenant: t.onmicrosoft.com\n"
    ));
    assert_eq!(e.len(), 2, "{}", lines(&e));
    assert_err(
        &e[0],
        8,
        7,
        "mailboxes[0].oauth2.client_id",
        "client_id is required",
    );
    assert_err(
        &e[1],
        8,
        7,
        "mailboxes[0].oauth2.refresh_token_env",
        "needs refresh_token_env or refresh_token_file",
    );

    // Delegated m365 flow: the delegated scope, a public client.
    let c = f.ok(&format!(
        "{m365}      grant: refresh_token\n      tenant: t.onmicrosoft.com\n      client_id: id\n      refresh_token_file: rt.txt\n"
    ));
    let AuthConfig::OAuth2 { oauth, .. } = &mailbox(&c).auth else {
        panic!()
    };
    assert_eq!(oauth.grant, Grant::RefreshToken);
    assert_eq!(
        oauth.scope.as_deref(),
        Some("https://outlook.office.com/SMTP.Send offline_access")
    );
    assert_eq!(
        oauth.refresh_token.as_ref().map(Secret::expose),
        Some("rt-from-file")
    );
    assert_eq!(oauth.client_secret.expose(), "");

    // Google: default endpoint and scope; grant inferred from the refresh token.
    let google = "mailboxes:\n  - name: g\n    provider: google\n    interval: 10m\n    from: a@example.com\n    to: [b@example.com]\n    username: a@example.com\n    oauth2:\n";
    let c = f.ok(&format!(
        "{google}      client_id: id\n      client_secret_env: INVOICES_CLIENT_SECRET\n      refresh_token_file: rt.txt\n"
    ));
    let AuthConfig::OAuth2 { oauth, .. } = &mailbox(&c).auth else {
        panic!()
    };
    assert_eq!(oauth.grant, Grant::RefreshToken);
    assert_eq!(oauth.token_url, "https://oauth2.googleapis.com/token");
    assert_eq!(oauth.scope.as_deref(), Some("https://mail.google.com/"));
    let e = f.errs(&format!("{google}      tenant: x\n      client_id: id\n      client_secret_env: INVOICES_CLIENT_SECRET\n"));
    assert_err(
        &e[0],
        9,
        7,
        "mailboxes[0].oauth2.grant",
        "no client_credentials grant",
    );
    assert_err(
        &e[1],
        9,
        15,
        "mailboxes[0].oauth2.tenant",
        "only to provider microsoft365",
    );

    // Unknown grant, with a suggestion.
    let e = f.err(&format!(
        "{m365}      grant: client_credential\n      tenant: t\n      client_id: id\n      client_secret_env: INVOICES_CLIENT_SECRET\n"
    ));
    assert_err(
        &e,
        8,
        14,
        "mailboxes[0].oauth2.grant",
        "did you mean `client_credentials`?",
    );

    // Plain http only on loopback.
    let e = f.err(&format!(
        "{m365}      token_url: http://login.example/token\n      client_id: id\n      client_secret_env: INVOICES_CLIENT_SECRET\n"
    ));
    assert_err(&e, 8, 18, "mailboxes[0].oauth2.token_url", "https://");
}

#[test]
fn password_and_oauth2_together_and_usernames() {
    let f = Fixture::new();
    let e = f.err(&format!(
        "{MB}    username: u\n    password_file: pw.txt\n    oauth2:\n      token_url: https://t.example/token\n      client_id: id\n      client_secret_env: INVOICES_CLIENT_SECRET\n"
    ));
    assert_err(&e, 9, 7, "mailboxes[0].oauth2", "not both");

    let e = f.err(&format!("{MB}    password_file: pw.txt\n"));
    assert_err(
        &e,
        2,
        5,
        "mailboxes[0].username",
        "username is required with a password",
    );
    let e = f.err(&format!("{MB}    username: u\n"));
    assert_err(&e, 6, 15, "mailboxes[0].username", "no password_env");
}

#[test]
fn auth_mechanism() {
    let f = Fixture::new();
    let c = f.ok(&format!(
        "{MB}    username: u\n    password_file: pw.txt\n    auth_mechanism: login\n"
    ));
    assert_eq!(mailbox(&c).auth_mechanism, Some(Mechanism::Login));
    let e = f.err(&format!(
        "{MB}    username: u\n    password_file: pw.txt\n    auth_mechanism: xoauth2\n"
    ));
    assert_err(
        &e,
        8,
        21,
        "mailboxes[0].auth_mechanism",
        "xoauth2 needs oauth2",
    );
    let e = f.err(&format!("{MB}    auth_mechanism: cram-md5\n"));
    assert_err(
        &e,
        6,
        21,
        "mailboxes[0].auth_mechanism",
        "expected one of plain, login, xoauth2",
    );
}

#[test]
fn mailbox_names() {
    let f = Fixture::new();
    let two = "mailboxes:\n  - name: a\n    host: h.example\n    from: a@example.com\n    to: [b@example.com]\n  - name: a\n    host: h.example\n    from: a@example.com\n    to: [b@example.com]\n";
    let e = f.err(two);
    assert_err(
        &e,
        6,
        11,
        "mailboxes[1].name",
        "duplicate mailbox name `a` (first used at line 2)",
    );

    let e = f.err(&MB.replace("name: a", "name: bad name!"));
    assert_err(&e, 2, 11, "mailboxes[0].name", "not a valid mailbox name");
    let e = f.err(&MB.replace("  - name: a\n    host", "  - host"));
    assert_err(&e, 2, 5, "mailboxes[0].name", "name is required");
}

#[test]
fn insecure_auth() {
    let f = Fixture::new();
    let auth = format!("{MB}    username: u\n    password_file: pw.txt\n    security: none\n");
    let e = f.err(&auth);
    assert_err(
        &e,
        8,
        15,
        "mailboxes[0].security",
        "allow_insecure_auth: true",
    );
    let c = f.ok(&format!("{auth}    allow_insecure_auth: true\n"));
    assert!(mailbox(&c).allow_insecure_auth);
    // No AUTH, nothing to protect.
    let c = f.ok(&format!("{MB}    security: none\n"));
    assert_eq!(mailbox(&c).security, Security::None);
    let e = f.err(&format!("{MB}    security: ssl\n"));
    assert_err(&e, 6, 15, "mailboxes[0].security", "did you mean `tls`");
}

#[test]
fn addresses_and_source_address() {
    let f = Fixture::new();
    let e = f.err(&MB.replace("to: [b@example.com]", "to: []"));
    assert_err(&e, 5, 9, "mailboxes[0].to", "at least one recipient");
    let e = f.errs("mailboxes:\n  - name: a\n    host: h.example\n");
    assert_eq!(e.len(), 2);
    assert_err(&e[0], 2, 5, "mailboxes[0].from", "from is required");
    assert_err(&e[1], 2, 5, "mailboxes[0].to", "to is required");
    let e = f.errs(
        &MB.replace("a@example.com", "a.example.com")
            .replace("[b@example.com]", "[ok@x.example, \"x@@y\", \"Bob <b@x>\"]"),
    );
    assert_eq!(e.len(), 3, "{}", lines(&e));
    assert_err(&e[0], 4, 11, "mailboxes[0].from", "exactly one @");
    assert_err(&e[1], 5, 24, "mailboxes[0].to[1]", "exactly one @");
    assert_err(
        &e[2],
        5,
        32,
        "mailboxes[0].to[2]",
        "not a plain email address",
    );
    let e = f.err(&format!("{MB}    source_address: 192.0.2.300\n"));
    assert_err(
        &e,
        6,
        21,
        "mailboxes[0].source_address",
        "`192.0.2.300` is not an IP address",
    );
    let c = f.ok(&format!("{MB}    source_address: \"2001:db8::1\"\n"));
    assert_eq!(
        mailbox(&c).source_address,
        Some("2001:db8::1".parse().unwrap())
    );
}

#[test]
fn ports() {
    let f = Fixture::new();
    let e = f.err(&format!("{MB}    port: 0\n"));
    assert_err(&e, 6, 11, "mailboxes[0].port", "port 0 is not valid");
    let e = f.err(&format!("{MB}    port: 70000\n"));
    assert_err(&e, 6, 11, "mailboxes[0].port", "out of range");
    // A type error is one more error among the others, at its key.
    let e = f.err(&format!("{MB}    port: submission\n"));
    assert_err(
        &e,
        6,
        11,
        "mailboxes[0].port",
        "expected a port number (1 to 65535), found a string",
    );
}

#[test]
fn a_value_of_the_wrong_type_hides_no_other_error() {
    let f = Fixture::new();
    let e = f.errs(&format!(
        "{MB}    port: abc\n    security: bogus\n    allow_insecure_auth: 'yes'\n    limits: {{messages_per_minute: many}}\n"
    ));
    let keys: Vec<&str> = e.iter().map(|e| e.key.as_str()).collect();
    for k in [
        "mailboxes[0].port",
        "mailboxes[0].security",
        "mailboxes[0].allow_insecure_auth",
        "mailboxes[0].limits.messages_per_minute",
    ] {
        assert!(keys.contains(&k), "{k} missing from {e:?}");
    }
    assert!(
        e.iter()
            .any(|e| e.message == "expected true or false (unquoted), found a string"),
        "{e:?}"
    );
}

#[test]
fn names_longer_than_the_file_system_allows_are_refused_at_load() {
    let f = Fixture::new();
    let long = "n".repeat(super::validate::MAX_NAME_LEN + 1);
    let e = f.errs(&MB.replace("name: a", &format!("name: {long}")));
    assert!(
        e.iter()
            .any(|e| e.key == "mailboxes[0].name" && e.message.contains("the limit is 128")),
        "{e:?}"
    );
}

#[test]
fn intervals_and_timeouts() {
    let f = Fixture::new();
    let e = f.err(&format!("global:\n  interval: 0s\n{MB}"));
    assert_err(&e, 2, 13, "global.interval", "zero is not allowed");
    let e = f.err(&format!("global:\n  interval: 5s\n{MB}"));
    assert_err(&e, 2, 13, "global.interval", "must be between 10s and 24h");
    let e = f.err(&format!("global:\n  interval: 48h\n{MB}"));
    assert_err(&e, 2, 13, "global.interval", "must be between 10s and 24h");
    let e = f.err(&format!("global:\n  timeout: 500ms\n{MB}"));
    assert_err(&e, 2, 12, "global.timeout", "must be between 1s and 10m");
    let e = f.err(&format!("global:\n  timeout: 2\n{MB}"));
    assert_err(&e, 2, 12, "global.timeout", "has no unit");
    let e = f.err(&format!("global:\n  interval: 20s\n  timeout: 30s\n{MB}"));
    assert_err(
        &e,
        3,
        12,
        "global.timeout",
        "timeout 30s must not exceed the interval 20s",
    );
    let e = f.err(&format!("{MB}    interval: 15s\n"));
    assert_err(
        &e,
        6,
        15,
        "mailboxes[0].interval",
        "timeout 30s must not exceed the interval 15s",
    );
    let e = f.err(&format!("{MB}    timeout: 11m\n"));
    assert_err(&e, 6, 14, "mailboxes[0].timeout", "between 1s and 10m");
    let c = f.ok(&format!(
        "global:\n  interval: 1m30s\n{MB}    timeout: 1500ms\n"
    ));
    assert_eq!(mailbox(&c).interval, Duration::from_secs(90));
    assert_eq!(mailbox(&c).timeout, Duration::from_millis(1500));
    let e = f.err(&format!("{MB}dns_audit:\n  interval: 10s\n"));
    assert_err(&e, 7, 13, "dns_audit.interval", "between 1m and 168h");
}

#[test]
fn limits_and_budget() {
    let f = Fixture::new();
    let e = f.errs(&format!(
        "{MB}    limits: {{messages_per_minute: 0}}\n    budget: {{messages_per_day: -1}}\n"
    ));
    assert_eq!(e.len(), 2);
    assert_err(
        &e[0],
        6,
        35,
        "mailboxes[0].limits.messages_per_minute",
        "at least 1",
    );
    assert_err(
        &e[1],
        7,
        32,
        "mailboxes[0].budget.messages_per_day",
        "out of range",
    );
}

#[test]
fn tls_ca_file() {
    let f = Fixture::new();
    let e = f.err(&format!("{MB}    tls:\n      ca_file: nope.pem\n"));
    assert_err(&e, 7, 16, "mailboxes[0].tls.ca_file", "cannot read ca_file");
    assert!(e.message.contains("nope.pem"));
    let e = f.err(&format!("{MB}    tls:\n      ca_file: pw.txt\n"));
    assert_err(&e, 7, 16, "mailboxes[0].tls.ca_file", "no PEM certificate");
    let abs = f.dir.path().join("ca.pem");
    let c = f.ok(&format!(
        "{MB}    tls: {{ca_file: \"{}\"}}\n",
        abs.display()
    ));
    assert_eq!(mailbox(&c).tls.ca_file, Some(abs));
}

#[test]
fn dns_audit_domains() {
    let f = Fixture::new();
    let e = f.err(&format!(
        "{MB}dns_audit:\n  domains:\n    - domain: example.com\n      provider: gogle\n"
    ));
    assert_err(
        &e,
        9,
        17,
        "dns_audit.domains[0].provider",
        "unknown provider `gogle`; did you mean `google`?",
    );
    // Provider taken from the domain's mailboxes, selectors from that provider's preset.
    let c = f.ok("mailboxes:\n  - name: a\n    provider: google\n    interval: 10m\n    from: a@example.com\n    to: [b@example.com]\ndns_audit:\n  domains:\n    - domain: Example.com\n    - domain: other.example\n");
    assert_eq!(c.dns_audit.domains[0].domain, "example.com");
    assert_eq!(c.dns_audit.domains[0].provider, Provider::Google);
    assert_eq!(
        c.dns_audit.domains[0].dkim_selectors,
        ["google".to_string()]
    );
    assert_eq!(c.dns_audit.domains[1].provider, Provider::Generic);
    let e = f.err(&format!(
        "{MB}dns_audit:\n  domains:\n    - domain: a.example\n    - domain: a.example\n"
    ));
    assert_err(&e, 9, 15, "dns_audit.domains[1].domain", "duplicate domain");
}

#[test]
fn unknown_provider() {
    let f = Fixture::new();
    let e = f.err(&format!("{MB}    provider: microsoft-365\n"));
    assert_err(
        &e,
        6,
        15,
        "mailboxes[0].provider",
        "did you mean `microsoft365`?",
    );
}

#[test]
fn no_mailboxes() {
    let f = Fixture::new();
    let e = f.err("");
    assert_err(&e, 1, 1, "mailboxes", "no mailboxes configured");
    let e = f.err("# just a comment\nglobal:\n  interval: 5m\n");
    assert_err(&e, 2, 1, "mailboxes", "no mailboxes configured");
    let e = f.err("global: {}\nmailboxes: []\n");
    assert_err(&e, 2, 12, "mailboxes", "no mailboxes configured");
}

#[test]
fn yaml_syntax_error_is_located() {
    let f = Fixture::new();
    let e = f.err("mailboxes: [\n");
    assert_eq!((e.line, e.key.as_str()), (1, "yaml"));
    let e = f.err("- a\n- b\n");
    assert_err(&e, 1, 1, "yaml", "must be a mapping");
}

#[test]
fn many_errors_are_collected_in_file_order() {
    let f = Fixture::new();
    let text = "global:\n  interval: 1s\nmailboxes:\n  - name: a\n    port: 0\n    from: nope\n    to: [b@example.com]\n  - name: a\n    provider: ses\n    from: a@example.com\n    to: [b@example.com]\n";
    let e = f.errs(text);
    let got: Vec<(u64, &str)> = e.iter().map(|e| (e.line, e.key.as_str())).collect();
    assert_eq!(
        got,
        [
            (2, "global.interval"),
            (4, "mailboxes[0].host"),
            (5, "mailboxes[0].port"),
            (6, "mailboxes[0].from"),
            (8, "mailboxes[1].host"),
            (8, "mailboxes[1].name"),
        ],
        "{}",
        lines(&e)
    );
}

#[test]
fn load_names_an_unreadable_file() {
    let f = Fixture::new();
    let e = load(&f.dir.path().join("absent.yaml")).unwrap_err();
    assert_eq!(e.len(), 1);
    assert!(e[0].message.contains("cannot read config file"), "{}", e[0]);
    let path = f.path();
    std::fs::write(&path, MB).unwrap();
    assert_eq!(load(&path).map(|c| c.mailboxes.len()), Ok(1));
}

/// Every key of the schema tables is accepted by the raw structs (and the full config
/// test above uses every struct field), so the tables and the structs cannot drift.
#[test]
fn schema_tables_match_raw_structs() {
    fn doc(section: &schema::Section, indent: usize, out: &mut String) {
        let pad = " ".repeat(indent);
        for field in section.fields {
            match field.shape {
                schema::Shape::Scalar => {
                    let value = match field.what {
                        w if w == "a whole number" || w.starts_with("a port number") => "1",
                        "true or false" => "true",
                        _ => "x",
                    };
                    out.push_str(&format!("{pad}{}: {value}\n", field.name));
                }
                schema::Shape::List => out.push_str(&format!("{pad}{}: [x]\n", field.name)),
                schema::Shape::Map(s) => {
                    out.push_str(&format!("{pad}{}:\n", field.name));
                    doc(s, indent + 2, out);
                }
                schema::Shape::MapList(s) => {
                    out.push_str(&format!("{pad}{}:\n{pad}  -\n", field.name));
                    doc(s, indent + 4, out);
                }
            }
        }
    }
    let mut text = String::new();
    doc(&schema::TOP, 0, &mut text);
    let raw: Result<schema::RawConfig, _> = serde_saphyr::from_str(&text);
    assert!(
        raw.is_ok(),
        "{text}\n{:?}",
        raw.err().map(|e| error_text(&e))
    );
    let tree = tree::parse(&text).unwrap();
    let mut d = diag::Diag::new("t".into());
    tree::check(&tree, &mut d);
    assert!(d.is_empty(), "{}", lines(&d.into_sorted()));
}

#[test]
fn load_without_secrets_checks_everything_but_reads_no_secret() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("c.yaml");
    std::fs::write(
        &path,
        "mailboxes:\n  - name: a\n    host: smtp.example.com\n    username: u@example.com\n    password_env: SMTP_CANARY_SURELY_UNSET_VAR\n    from: a@example.com\n    to: [b@example.com]\n",
    )
    .unwrap();
    let e = super::load(&path).unwrap_err();
    assert!(e[0].message.contains("SMTP_CANARY_SURELY_UNSET_VAR"));
    let c = super::load_without_secrets(&path).unwrap();
    let AuthConfig::Password { password, .. } = &c.mailboxes[0].auth else {
        panic!()
    };
    assert_eq!(password.expose(), "");
    // Other rules still hold.
    std::fs::write(&path, "mailboxes:\n  - name: a\n    intervall: 5m\n").unwrap();
    assert!(super::load_without_secrets(&path).is_err());
}
