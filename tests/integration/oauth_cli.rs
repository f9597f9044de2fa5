//! OAuth through the real binary: `check-config` for a minimal Microsoft 365 OAuth
//! mailbox and the Basic-auth finding, `probe` of a Microsoft 365 mailbox whose token URL
//! is overridden to the test's endpoint, and the daemon at debug level in both log
//! formats with a token endpoint, proving that no secret and no token appears in any log
//! line, `/metrics`, `/`, or the probe command's JSON and text.

use std::path::Path;
use std::time::Duration;

use base64::Engine;
use base64::engine::general_purpose::STANDARD as B64;

use crate::support::daemon::{Daemon, Measured, run_within};
use crate::support::files::write;
use crate::support::fixtures::{CLIENT_ID, CLIENT_SECRET, HELO, SCOPE, USER};
use crate::support::pki::TestPki;
use crate::support::token_endpoint::TokenEndpoint;
use crate::support::{serial, wait_until};

const SECRET_ENV: &str = "OAUTH_TEST_CLIENT_SECRET";
const REFRESH_ENV: &str = "OAUTH_TEST_REFRESH_TOKEN";
const PASSWORD_ENV: &str = "OAUTH_TEST_PASSWORD";
const CONFIGURED_RT: &str = "rt-configured-1-abcdefabcdef0123";
const PASSWORD: &str = "Legacy-Basic-Pa55word!";

const ENVS: [(&str, &str); 3] = [
    (SECRET_ENV, CLIENT_SECRET),
    (REFRESH_ENV, CONFIGURED_RT),
    (PASSWORD_ENV, PASSWORD),
];

/// Runs the binary to completion (commands that end by themselves), with a deadline.
fn run(args: &[&str]) -> Measured {
    let m = run_within(args, &ENVS, Duration::from_secs(60));
    assert!(!m.killed, "smtp-canary {args:?} did not finish in time");
    m
}

#[tokio::test]
async fn check_config_microsoft365_oauth_needs_only_the_documented_keys() {
    let _serial = serial::shared().await;
    let dir = tempfile::tempdir().unwrap();
    // Exactly: provider, username, from, to, oauth2.tenant, client_id, client_secret_env.
    let minimal = write(
        &dir.path().join("m365.yaml"),
        &format!(
            "mailboxes:
  - name: invoices-m365
    provider: microsoft365
    username: invoices@contoso.com
    from: invoices@contoso.com
    to: [canary-sink@contoso.com]
    oauth2:
      tenant: contoso.onmicrosoft.com
      client_id: {CLIENT_ID}
      client_secret_env: {SECRET_ENV}
"
        ),
    );
    let o = run(&["check-config", "--config.file", minimal.to_str().unwrap()]);
    let out = o.text();
    assert_eq!(o.code(), Some(0), "{out}");
    assert!(out.contains("smtp.office365.com:587 starttls"), "{out}");
    assert!(
        out.contains("XOAUTH2 as invoices@contoso.com (client_credentials, token endpoint https://login.microsoftonline.com/contoso.onmicrosoft.com/oauth2/v2.0/token)"),
        "{out}"
    );
    assert!(!out.contains("finding"), "{out}");
    assert!(!out.contains(CLIENT_SECRET));

    // Without the secret it is invalid, and the error names the keys to use.
    let no_secret = write(
        &dir.path().join("nosecret.yaml"),
        &std::fs::read_to_string(&minimal)
            .unwrap()
            .replace(&format!("      client_secret_env: {SECRET_ENV}\n"), ""),
    );
    let o = run(&["check-config", "--config.file", no_secret.to_str().unwrap()]);
    assert_eq!(o.code(), Some(2), "{}", o.text());
    assert!(o.text().contains("client_secret_env"), "{}", o.text());

    // A Microsoft 365 mailbox on a password is a Basic-auth retirement finding.
    let password = write(
        &dir.path().join("password.yaml"),
        &format!(
            "mailboxes:
  - name: legacy-m365
    provider: microsoft365
    username: legacy@Contoso.com
    password_env: {PASSWORD_ENV}
    from: legacy@Contoso.com
    to: [canary-sink@contoso.com]
"
        ),
    );
    let o = run(&["check-config", "--config.file", password.to_str().unwrap()]);
    let out = o.text();
    assert_eq!(
        o.code(),
        Some(0),
        "a finding is a warning, the config is valid: {out}"
    );
    assert!(
        out.contains("finding auth.basic_auth_retiring (warning) domain contoso.com: mailbox legacy-m365 authenticates to Microsoft 365 with a password"),
        "{out}"
    );
    assert!(!out.contains(PASSWORD));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn probe_microsoft365_oauth_mailbox_with_the_token_url_overridden() {
    let _serial = serial::shared().await;
    let ep = TokenEndpoint::start().await;
    let pki = TestPki::new();
    let smtp = ep.start_smtp(&pki, true).await;
    let dir = tempfile::tempdir().unwrap();
    let cfg = write(
        &dir.path().join("c.yaml"),
        &format!(
            "mailboxes:
  - name: invoices-m365
    provider: microsoft365
    host: 127.0.0.1
    port: {port}
    tls: {{ca_file: {ca}}}
    username: {USER}
    from: {USER}
    to: [sink@example.com]
    oauth2:
      tenant: contoso.onmicrosoft.com
      client_id: {CLIENT_ID}
      client_secret_env: {SECRET_ENV}
      token_url: {url}
",
            port = smtp.local_addr().port(),
            ca = pki.ca_path().display(),
            url = ep.url(),
        ),
    );
    let state = dir.path().join("state");
    let o = run(&[
        "probe",
        "invoices-m365",
        "--format",
        "json",
        "--config.file",
        cfg.to_str().unwrap(),
        "--state.dir",
        state.to_str().unwrap(),
        "--log.level",
        "debug",
    ]);
    let out = o.text();
    assert_eq!(o.code(), Some(0), "{out}");
    let json: serde_json::Value = serde_json::from_str(&o.stdout).expect("JSON");
    assert_eq!(json["success"], true, "{out}");
    assert_eq!(json["auth_mechanism"], "XOAUTH2");
    assert!(json["phases"]["oauth_token"].is_number(), "{out}");
    assert_eq!(ep.requests(), 1);
    let rec = &ep.recorded()[0];
    assert_eq!(rec.path, "/contoso.onmicrosoft.com/oauth2/v2.0/token");
    assert_eq!(
        rec.form.get("scope").map(String::as_str),
        Some(SCOPE),
        "the preset's app-only scope"
    );
    assert_eq!(
        rec.form.get("grant_type").map(String::as_str),
        Some("client_credentials")
    );
    assert_eq!(smtp.message_count(), 1);
    assert_no_secrets(&ep, &[("probe json", out)]);
}

/// Every secret and token the test knows of, and the encodings they could leak in.
fn forbidden(ep: &TokenEndpoint) -> Vec<String> {
    let mut f = vec![
        CLIENT_SECRET.to_owned(),
        B64.encode(CLIENT_SECRET),
        CLIENT_SECRET.replace('~', "%7E"),
        CONFIGURED_RT.to_owned(),
        PASSWORD.to_owned(),
        B64.encode(PASSWORD),
    ];
    for t in ep.issued() {
        f.push(B64.encode(format!("user={USER}\x01auth=Bearer {t}\x01\x01")));
        f.push(t);
    }
    f.extend(ep.refresh_issued());
    f
}

fn assert_no_secrets(ep: &TokenEndpoint, outputs: &[(&str, String)]) {
    assert!(
        !ep.issued().is_empty(),
        "the test issued no token; it proves nothing"
    );
    for (what, out) in outputs {
        for s in forbidden(ep) {
            assert!(
                !out.contains(&s),
                "{what} contains a secret or token ({}…):\n{out}",
                &s[..6.min(s.len())]
            );
        }
    }
}

fn daemon_config(ep: &TokenEndpoint, pki: &TestPki, smtp_port: u16) -> String {
    let mailbox = |name: &str, oauth: &str| {
        format!(
            "  - name: {name}
    host: 127.0.0.1
    port: {smtp_port}
    tls: {{ca_file: {ca}}}
    username: {USER}
    from: {USER}
    to: [sink@example.com]
    oauth2:
{oauth}",
            ca = pki.ca_path().display()
        )
    };
    let cc = |url: &str| {
        format!(
            "      grant: client_credentials
      token_url: {url}
      scope: {SCOPE}
      client_id: {CLIENT_ID}
      client_secret_env: {SECRET_ENV}
"
        )
    };
    let rt = format!(
        "      grant: refresh_token
      token_url: {url}
      client_id: {CLIENT_ID}
      client_secret_env: {SECRET_ENV}
      refresh_token_env: {REFRESH_ENV}
",
        url = ep.url()
    );
    format!(
        "global:
  interval: 10s
  timeout: 10s
  helo_name: {HELO}
mailboxes:
{ok}{bad}{rt}  - name: legacy-m365
    provider: microsoft365
    host: 127.0.0.1
    port: {smtp_port}
    tls: {{ca_file: {ca}}}
    username: legacy@contoso.test
    password_env: {PASSWORD_ENV}
    from: legacy@contoso.test
    to: [sink@contoso.test]
    interval: 5m
",
        ok = mailbox("oauth-ok", &cc(&ep.url())),
        bad = mailbox("oauth-invalid-client", &cc(&ep.invalid_client_url())),
        rt = mailbox("oauth-refresh", &rt),
        ca = pki.ca_path().display(),
    )
}

/// Runs the daemon until every mailbox was probed once (or 30 s passed); returns
/// (logs, /metrics, /), each the whole HTTP response.
fn daemon_run(cfg: &Path, state: &Path, format: &str) -> (String, String, String) {
    let mut d = Daemon::start_with_log(
        cfg,
        state,
        &state.join(format!("daemon-{format}.log")),
        &[
            "--log.level",
            "debug",
            "--log.format",
            format,
            "--probe.immediate",
        ],
        &ENVS,
    );
    let mut metrics = String::new();
    wait_until(Duration::from_secs(30), || {
        let m = d.request("GET", "/metrics", &[])?.raw;
        let done = [
            "oauth-ok",
            "oauth-invalid-client",
            "oauth-refresh",
            "legacy-m365",
        ]
        .iter()
        .all(|mb| m.contains(&format!("smtp_canary_probes_total{{mailbox=\"{mb}\"}} 1")));
        metrics = m;
        done.then_some(())
    });
    let status = d
        .request("GET", "/", &[])
        .map(|r| r.raw)
        .unwrap_or_default();
    let (exit, _) = d.terminate();
    let logs = d.log();
    assert!(exit.success(), "the daemon exits 0 on SIGTERM:\n{logs}");
    (logs, metrics, status)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn daemon_and_probe_at_debug_level_leak_no_secret_or_token() {
    let _serial = serial::shared().await;
    let ep = TokenEndpoint::start().await;
    ep.set_rotate(true);
    let pki = TestPki::new();
    let smtp = ep.start_smtp(&pki, true).await;
    let dir = tempfile::tempdir().unwrap();
    let cfg = write(
        &dir.path().join("c.yaml"),
        &daemon_config(&ep, &pki, smtp.local_addr().port()),
    );
    let state = dir.path().join("state");
    let c = cfg.to_str().unwrap();
    let s = state.to_str().unwrap();
    let mut outputs = Vec::new();

    for format in ["logfmt", "json"] {
        let (logs, metrics, status) = daemon_run(&cfg, &state, format);
        for (mb, series) in [
            (
                "oauth-ok",
                "smtp_canary_auth_mechanism_info{mailbox=\"oauth-ok\",mechanism=\"XOAUTH2\"} 1",
            ),
            (
                "oauth-ok",
                "smtp_canary_probe_success{mailbox=\"oauth-ok\"} 1",
            ),
            (
                "oauth-refresh",
                "smtp_canary_probe_success{mailbox=\"oauth-refresh\"} 1",
            ),
            (
                "bad",
                "smtp_canary_oauth_token_failures_total{mailbox=\"oauth-invalid-client\",reason=\"invalid_client\"} 1",
            ),
            (
                "bad",
                "smtp_canary_probe_failures_total{class=\"oauth_token\",code=\"\",mailbox=\"oauth-invalid-client\",phase=\"oauth_token\"} 1",
            ),
            (
                "finding",
                "smtp_canary_audit_finding{check=\"auth.basic_auth_retiring\",domain=\"contoso.test\",severity=\"warning\"} 1",
            ),
        ] {
            assert!(
                metrics.contains(series),
                "{format} {mb}: missing {series}\n{metrics}\n{logs}"
            );
        }
        assert!(
            metrics.contains(
                "smtp_canary_oauth_token_expiry_timestamp_seconds{mailbox=\"oauth-ok\"} 1"
            ),
            "{metrics}"
        );
        assert!(
            !metrics
                .contains("oauth_token_expiry_timestamp_seconds{mailbox=\"oauth-invalid-client\"}")
        );
        // The description reaches the log and the status page, with the echoed secret cut out.
        assert!(logs.contains("AADSTS7000215"), "{logs}");
        assert!(logs.contains("<redacted>"), "{logs}");
        assert!(status.contains("AADSTS7000215"), "{status}");
        assert_eq!(
            logs.matches("auth.basic_auth_retiring").count(),
            1,
            "logged once at start:\n{logs}"
        );
        assert!(
            logs.contains("access token fetched"),
            "debug level is on: {logs}"
        );
        outputs.push((format!("{format} logs"), logs));
        outputs.push((format!("{format} /metrics"), metrics));
        outputs.push((format!("{format} /"), status));
    }

    // The rotated refresh token is in the state dir (0600), and the probe command (a
    // restart) presents it.
    let stored = state.join("oauth/oauth-refresh.refresh-token.json");
    let mode =
        std::os::unix::fs::PermissionsExt::mode(&std::fs::metadata(&stored).unwrap().permissions());
    assert_eq!(mode & 0o777, 0o600);
    let last_rotated = ep.refresh_issued().last().cloned().unwrap();
    let before = ep.requests();
    let o = run(&[
        "probe",
        "oauth-refresh",
        "--format",
        "text",
        "--config.file",
        c,
        "--state.dir",
        s,
        "--log.level",
        "debug",
    ]);
    assert_eq!(o.code(), Some(0), "{}", o.text());
    let req = ep.recorded()[before].clone();
    assert_eq!(
        req.form.get("refresh_token"),
        Some(&last_rotated),
        "the stored rotated token was used"
    );
    outputs.push(("probe oauth-refresh text".into(), o.text()));

    for (name, format) in [
        ("oauth-ok", "json"),
        ("oauth-ok", "text"),
        ("oauth-invalid-client", "json"),
        ("oauth-invalid-client", "text"),
    ] {
        let o = run(&[
            "probe",
            name,
            "--format",
            format,
            "--config.file",
            c,
            "--state.dir",
            s,
            "--log.level",
            "debug",
            "--log.format",
            "json",
        ]);
        let out = o.text();
        if name == "oauth-invalid-client" {
            assert_eq!(o.code(), Some(1), "{out}");
            assert!(out.contains("oauth_token"), "{out}");
            assert!(
                out.contains(
                    "invalid_client: AADSTS7000215: Invalid client secret provided (<redacted>)"
                ),
                "{out}"
            );
        } else {
            assert_eq!(o.code(), Some(0), "{out}");
        }
        outputs.push((format!("probe {name} {format}"), out));
    }
    let check = run(&["check-config", "--config.file", c]);
    outputs.push(("check-config".into(), check.text()));

    let refs: Vec<(&str, String)> = outputs
        .iter()
        .map(|(w, o)| (w.as_str(), o.clone()))
        .collect();
    assert_no_secrets(&ep, &refs);
    assert!(
        ep.issued().len() >= 4 && ep.refresh_issued().len() >= 2,
        "{:?}",
        ep.requests()
    );
}
