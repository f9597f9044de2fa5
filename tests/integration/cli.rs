//! The real binary, end to end and hermetic: the shipped demo config, `check-config`
//! errors and exit codes, `probe` JSON, the daemon's HTTP endpoints, SIGTERM, and that no
//! secret appears in any output.

use std::time::{Duration, Instant};

use base64::Engine;
use base64::engine::general_purpose::STANDARD as B64;
use rustls::pki_types::{PrivateKeyDer, ServerName};
use smtp_canary::demo::{Action, Rule, Script, SmtpServer, Stage};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

use crate::support::daemon::{Daemon, check_config, run};
use crate::support::exposition::metric_value;
use crate::support::pki::{TestPki, pem, start_on};
use crate::support::{repo, serial};

#[test]
fn shipped_config_is_valid() {
    let _serial = serial::shared_blocking();
    let out = run(&["check-config"], &[]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(stdout.contains("demo-healthy"), "{stdout}");
}

#[test]
fn bad_config_names_file_line_column_key_and_exits_2() {
    let _serial = serial::shared_blocking();
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("bad.yaml");
    std::fs::write(
        &path,
        "mailboxes:\n  - name: a\n    host: smtp.example.com\n    password: hunter2-inline\n    from: a@example.com\n    to: [b@example.com]\n    intervall: 5m\n",
    )
    .unwrap();
    let (code, err) = check_config(&path);
    assert_eq!(code, Some(2));
    let file = path.display().to_string();
    assert!(err.contains(&format!("{file}:4:")), "{err}");
    assert!(err.contains("mailboxes[0].password"), "{err}");
    assert!(
        err.contains("password_env") && err.contains("password_file"),
        "{err}"
    );
    assert!(
        err.contains(&format!("{file}:7:5: mailboxes[0].intervall")),
        "{err}"
    );
    assert!(err.contains("did you mean `interval`"), "{err}");
    assert!(!err.contains("hunter2-inline"), "secret echoed: {err}");
}

#[test]
fn missing_secret_env_is_named() {
    let _serial = serial::shared_blocking();
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("c.yaml");
    std::fs::write(
        &path,
        "mailboxes:\n  - name: a\n    host: 127.0.0.1\n    username: u@example.com\n    password_env: SMTP_CANARY_TEST_UNSET_VAR\n    from: a@example.com\n    to: [b@example.com]\n",
    )
    .unwrap();
    let (code, err) = check_config(&path);
    assert_eq!(code, Some(2));
    assert!(err.contains("SMTP_CANARY_TEST_UNSET_VAR"), "{err}");
}

#[test]
fn wrong_flag_and_unknown_mailbox_exit_2() {
    let _serial = serial::shared_blocking();
    let out = run(&["--no-such-flag"], &[]);
    assert_eq!(out.status.code(), Some(2));
    let out = run(&["probe", "no-such-mailbox"], &[]);
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("demo-healthy"));
    let out = run(&["--shard", "3/3", "check-config"], &[]);
    assert_eq!(out.status.code(), Some(2));
}

#[test]
fn probe_json_of_the_demo_mailboxes() {
    let _serial = serial::shared_blocking();
    let state = tempfile::tempdir().unwrap();
    let st = state.path().to_str().unwrap();
    let out = run(
        &[
            "probe",
            "demo-healthy",
            "--format",
            "json",
            "--state.dir",
            st,
        ],
        &[],
    );
    assert_eq!(
        out.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).expect("JSON");
    assert_eq!(v["mailbox"], "demo-healthy");
    assert_eq!(v["success"], true);
    for k in ["class", "phase", "code", "reply", "hint"] {
        assert!(v[k].is_null(), "{k} must be null on success: {v}");
    }
    assert!(v["message_id"].as_str().is_some_and(|m| m.starts_with('<')));
    assert_eq!(v["tls"]["version"], "TLSv1.3");
    assert!(
        v["tls"]["cert_not_after"]
            .as_str()
            .is_some_and(|s| s.ends_with('Z'))
    );
    for p in [
        "connect", "greeting", "ehlo", "starttls", "auth", "mail", "rcpt", "data",
    ] {
        assert!(v["phases"][p].is_f64(), "phase {p} missing: {v}");
    }
    assert!(v["total_seconds"].is_f64());

    let out = run(
        &[
            "probe",
            "demo-smtp-auth-disabled",
            "--format",
            "json",
            "--state.dir",
            st,
        ],
        &[],
    );
    assert_eq!(out.status.code(), Some(1));
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).expect("JSON");
    assert_eq!(v["success"], false);
    assert_eq!(v["class"], "auth_policy");
    assert_eq!(v["phase"], "auth");
    assert_eq!(v["code"], "5.7.139");
    assert!(v["reply"].as_str().unwrap().starts_with("535 5.7.139"));
    assert!(v["hint"].as_str().unwrap().contains("Set-CASMailbox"));
    assert!(v["message_id"].is_null());

    let out = run(
        &["probe", "demo-smtp-auth-disabled", "--state.dir", st],
        &[],
    );
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        text.contains("auth_policy") && text.contains("transcript:") && text.contains("<redacted>"),
        "{text}"
    );
}

/// The README's run command, with the shipped config: live metrics for a healthy and an
/// auth-disabled demo mailbox, the status page, health, and a clean SIGTERM.
#[test]
fn daemon_with_shipped_config_serves_metrics_and_stops_on_sigterm() {
    let _serial = serial::shared_blocking();
    let state = tempfile::tempdir().unwrap();
    let mut d = Daemon::start(
        &repo().join("config.yaml"),
        state.path(),
        &["--probe.immediate"],
        &[],
    );
    let body = d.wait_metrics(Duration::from_secs(20), |b| {
        metric_value(b, "smtp_canary_probe_success{mailbox=\"demo-healthy\"}") == Some(1.0)
            && b.contains("class=\"auth_policy\",code=\"5.7.139\",mailbox=\"demo-smtp-auth-disabled\",phase=\"auth\"")
    });
    // Counters exist from the start, so rate() works from the first scrape.
    assert!(body.contains(
        "smtp_canary_probes_skipped_total{mailbox=\"demo-healthy\",reason=\"concurrency\"} 0"
    ));
    assert!(body.contains("smtp_canary_build_info{"));
    assert_eq!(
        metric_value(&body, "smtp_canary_config_last_reload_successful"),
        Some(1.0)
    );
    assert!(
        body.contains(
            "smtp_canary_tls_version_info{mailbox=\"demo-healthy\",version=\"TLSv1.3\"} 1"
        )
    );
    assert!(body.contains(
        "smtp_canary_phase_seconds_bucket{mailbox=\"demo-healthy\",phase=\"auth\",le=\"0.005\"}"
    ));

    assert_eq!(d.get("/-/healthy").map(|r| r.0), Some(200));
    assert_eq!(d.get("/-/ready").map(|r| r.0), Some(200));
    let (code, page) = d.get("/").expect("status page");
    assert_eq!(code, 200);
    assert!(
        page.contains("demo-smtp-auth-disabled")
            && page.contains("5.7.139")
            && page.contains("Set-CASMailbox")
    );
    assert_eq!(d.get("/nope").map(|r| r.0), Some(404));

    let (status, took) = d.terminate();
    assert!(status.success(), "exit {status:?}; log:\n{}", d.log());
    assert!(took < Duration::from_secs(5), "shutdown took {took:?}");
    assert!(d.log().contains("shutting down"));
}

/// A newcomer's `cargo run`: the shipped config's demo sinks show delivery results on
/// `/` and `/metrics` with no account: delivered, junk, and a classified bounce.
#[test]
fn shipped_config_shows_delivery_results() {
    let _serial = serial::shared_blocking();
    let state = tempfile::tempdir().unwrap();
    let d = Daemon::start(
        &repo().join("config.yaml"),
        state.path(),
        &["--probe.immediate"],
        &[],
    );
    let body = d.wait_metrics(Duration::from_secs(30), |b| {
        metric_value(
            b,
            "smtp_canary_deliveries_total{mailbox=\"demo-healthy\",result=\"delivered\",sink=\"demo-sink\"}",
        )
        .is_some()
            && metric_value(
                b,
                "smtp_canary_deliveries_total{mailbox=\"demo-junk-placement\",result=\"junk\",sink=\"demo-sink\"}",
            )
            .is_some()
            && metric_value(
                b,
                "smtp_canary_bounces_total{class=\"sender_rejected\",code=\"5.7.708\",mailbox=\"demo-outbound-blocked\"}",
            )
            .is_some()
    });
    assert_eq!(
        metric_value(
            &body,
            "smtp_canary_delivery_success{mailbox=\"demo-healthy\",sink=\"demo-sink\"}"
        ),
        Some(1.0)
    );
    assert_eq!(
        metric_value(&body, "smtp_canary_sink_up{sink=\"demo-sink\"}"),
        Some(1.0)
    );
    assert!(body.contains("smtp_canary_delivery_seconds_bucket{sink=\"demo-sink\",le=\"1\"}"));
    let (_, page) = d.get("/").expect("status page");
    assert!(page.contains("demo-sink: delivered in INBOX"), "{page}");
    assert!(page.contains("demo-sink: junk in Junk"), "{page}");
    assert!(page.contains("5.7.708"), "{page}");
}

/// `probe NAME --wait-delivery` with the demo: the delivery part of the JSON, exit 0;
/// a junked canary exits 1.
#[test]
fn probe_wait_delivery_prints_where_the_canary_landed() {
    let _serial = serial::shared_blocking();
    let state = tempfile::tempdir().unwrap();
    let state_dir = state.path().display().to_string();
    let out = run(
        &[
            "--state.dir",
            &state_dir,
            "probe",
            "demo-healthy",
            "--wait-delivery",
            "--format",
            "json",
        ],
        &[],
    );
    let stdout = String::from_utf8_lossy(&out.stdout);
    let json: serde_json::Value = serde_json::from_str(&stdout).expect("JSON");
    // Each `probe` starts its own demo relay, whose first message is never throttled.
    assert_eq!(out.status.code(), Some(0), "{stdout}");
    let d = &json["delivery"][0];
    assert_eq!(d["sink"], "demo-sink", "{stdout}");
    assert_eq!(d["result"], "delivered", "{stdout}");
    assert_eq!(d["folder"], "INBOX", "{stdout}");
    assert_eq!(d["auth_results"]["dkim"], "pass", "{stdout}");
    let out = run(
        &[
            "--state.dir",
            &state_dir,
            "probe",
            "demo-junk-placement",
            "--wait-delivery",
        ],
        &[],
    );
    let text = String::from_utf8_lossy(&out.stdout);
    assert_eq!(out.status.code(), Some(1), "{text}");
    assert!(text.contains("delivery demo-sink: junk in Junk"), "{text}");
}

/// SIGTERM while a probe waits on a slow server: the probe finishes within its
/// deadlines (here: the server answers DATA after 1.5 s), then the daemon exits 0.
#[test]
fn sigterm_lets_in_flight_probe_finish() {
    let _serial = serial::shared_blocking();
    let rt = tokio::runtime::Runtime::new().unwrap();
    let pki = TestPki::new();
    let server = start_on(
        &rt,
        pki.starttls_server()
            .users([("u@example.com", "pw-for-sigterm-test")])
            .script(Script::new().on(
                Stage::DataEnd,
                Rule::new(Action::Default).delay(Duration::from_millis(1500)),
            )),
    );
    let dir = tempfile::tempdir().unwrap();
    let ca = pki.ca_path();
    let cfg = dir.path().join("c.yaml");
    std::fs::write(
        &cfg,
        format!(
            "mailboxes:\n  - name: slow\n    host: 127.0.0.1\n    port: {}\n    username: u@example.com\n    password_env: SIGTERM_TEST_PW\n    from: u@example.com\n    to: [v@example.com]\n    tls: {{ca_file: {}}}\n    timeout: 10s\n",
            server.local_addr().port(),
            ca.display()
        ),
    )
    .unwrap();
    let mut d = Daemon::start(
        &cfg,
        dir.path(),
        &["--probe.immediate"],
        &[("SIGTERM_TEST_PW", "pw-for-sigterm-test")],
    );
    // Wait until the message is being sent, then stop.
    let start = Instant::now();
    while !server.sessions().iter().any(|s| s.sent("DATA")) {
        assert!(
            start.elapsed() < Duration::from_secs(10),
            "probe never reached DATA: {}",
            d.log()
        );
        std::thread::sleep(Duration::from_millis(20));
    }
    let (status, took) = d.terminate();
    assert!(status.success());
    assert!(
        took >= Duration::from_millis(1000),
        "exited before the probe finished: {took:?}"
    );
    assert_eq!(server.message_count(), 1, "the in-flight canary was lost");
    let log = d.log();
    assert!(log.contains("probe succeeded"), "{log}");
    let sessions = server.sessions();
    assert!(sessions[0].sent("QUIT"), "no QUIT sent");
}

/// No output of any kind carries the password or an AUTH payload: debug logs in both
/// formats, /metrics, the status page, probe JSON and text. Both a successful and a
/// failing AUTH, with PLAIN and LOGIN.
#[test]
fn secrets_never_appear_in_any_output() {
    let _serial = serial::shared_blocking();
    const PW: &str = "Zq9-very-secret-Pa55word";
    let user = "secret-test@example.com";
    let rt = tokio::runtime::Runtime::new().unwrap();
    let pki = TestPki::new();
    let good = start_on(&rt, pki.starttls_server().users([(user, PW)]));
    let bad = start_on(
        &rt,
        SmtpServer::new()
            .starttls(pki.pki.server_config().unwrap())
            .script(Script::new().on(
                Stage::Auth,
                Action::reply("535 5.7.3 Authentication unsuccessful"),
            )),
    );
    let dir = tempfile::tempdir().unwrap();
    let ca = pki.ca_path();
    let cfg = dir.path().join("c.yaml");
    let mut yaml = String::from("mailboxes:\n");
    for (name, port, mech) in [
        ("good-plain", good.local_addr().port(), "plain"),
        ("good-login", good.local_addr().port(), "login"),
        ("bad-plain", bad.local_addr().port(), "plain"),
        ("bad-login", bad.local_addr().port(), "login"),
    ] {
        yaml.push_str(&format!(
            "  - name: {name}\n    host: 127.0.0.1\n    port: {port}\n    username: {user}\n    password_env: SECRET_TEST_PW\n    auth_mechanism: {mech}\n    from: {user}\n    to: [sink@example.com]\n    tls: {{ca_file: {}}}\n",
            ca.display()
        ));
    }
    std::fs::write(&cfg, yaml).unwrap();
    let envs = [("SECRET_TEST_PW", PW)];
    let forbidden = [
        PW.to_owned(),
        B64.encode(PW),
        B64.encode(format!("\0{user}\0{PW}")),
        B64.encode(format!("{user}\0{PW}")),
    ];
    let check = |what: &str, text: &str| {
        for f in &forbidden {
            assert!(!text.contains(f.as_str()), "secret {f:?} leaked in {what}");
        }
    };

    let mut outputs = Vec::new();
    for format in ["logfmt", "json"] {
        let mut d = Daemon::start(
            &cfg,
            dir.path(),
            &[
                "--probe.immediate",
                "--log.level",
                "debug",
                "--log.format",
                format,
            ],
            &envs,
        );
        let body = d.wait_metrics(Duration::from_secs(20), |b| {
            ["good-plain", "good-login", "bad-plain", "bad-login"]
                .iter()
                .all(|m| b.contains(&format!("smtp_canary_probe_success{{mailbox=\"{m}\"}}")))
        });
        assert!(
            body.contains("smtp_canary_probe_success{mailbox=\"good-plain\"} 1"),
            "{body}"
        );
        assert!(
            body.contains("smtp_canary_probe_success{mailbox=\"good-login\"} 1"),
            "{body}"
        );
        assert!(
            body.contains("class=\"auth\",code=\"5.7.3\",mailbox=\"bad-login\""),
            "{body}"
        );
        outputs.push((format!("/metrics ({format})"), body));
        outputs.push((format!("/ ({format})"), d.get("/").expect("status page").1));
        let (st, _) = d.terminate();
        assert!(st.success());
        outputs.push((format!("debug log ({format})"), d.log()));
    }
    for name in ["good-plain", "good-login", "bad-plain", "bad-login"] {
        for format in ["json", "text"] {
            let out = run(
                &[
                    "probe",
                    name,
                    "--format",
                    format,
                    "--log.level",
                    "debug",
                    "--config.file",
                    cfg.to_str().unwrap(),
                ],
                &envs,
            );
            outputs.push((
                format!("probe {name} {format} stdout"),
                String::from_utf8_lossy(&out.stdout).into_owned(),
            ));
            outputs.push((
                format!("probe {name} {format} stderr"),
                String::from_utf8_lossy(&out.stderr).into_owned(),
            ));
        }
    }
    // The page really shows the transcript of the failure, with the payload redacted.
    let page = &outputs
        .iter()
        .find(|(w, _)| w.starts_with("/ "))
        .expect("page")
        .1;
    assert!(page.contains("&lt;redacted&gt;"), "{page}");
    for (what, text) in &outputs {
        check(what, text);
    }
    // And the server did receive the real credentials (so the test is meaningful).
    assert!(
        good.sessions()
            .iter()
            .any(|s| s.user.as_deref() == Some(user))
    );
}

/// `--web.config.file` in the exporter-toolkit format: HTTPS with the configured
/// certificate, and basic auth on every endpoint (bcrypt hashes); a bad file exits 2.
#[test]
fn web_config_file_serves_https_with_basic_auth() {
    let _serial = serial::shared_blocking();
    let dir = tempfile::tempdir().unwrap();
    let pki = TestPki::new().pki;
    std::fs::write(
        dir.path().join("tls.crt"),
        pem("CERTIFICATE", pki.chain()[0].as_ref()),
    )
    .unwrap();
    let PrivateKeyDer::Pkcs8(key) = pki.key() else {
        panic!("PKCS#8")
    };
    std::fs::write(
        dir.path().join("tls.key"),
        pem("PRIVATE KEY", key.secret_pkcs8_der()),
    )
    .unwrap();
    let hash = bcrypt::hash("scrape-pw", 4).unwrap();
    let web = dir.path().join("web.yml");
    std::fs::write(
        &web,
        format!("tls_server_config:\n  cert_file: tls.crt\n  key_file: tls.key\nbasic_auth_users:\n  prometheus: '{hash}'\n"),
    )
    .unwrap();

    let mut d = Daemon::start(
        &repo().join("config.yaml"),
        dir.path(),
        &["--web.config.file", web.to_str().unwrap()],
        &[],
    );
    let rt = tokio::runtime::Runtime::new().unwrap();
    let get = |auth: Option<&str>| -> Option<String> {
        rt.block_on(async {
            let connector = tokio_rustls::TlsConnector::from(pki.client_config().ok()?);
            let tcp = tokio::net::TcpStream::connect(&d.addr).await.ok()?;
            let mut tls = connector
                .connect(ServerName::try_from("127.0.0.1").ok()?, tcp)
                .await
                .ok()?;
            let auth = auth
                .map(|a| format!("Authorization: Basic {}\r\n", B64.encode(a)))
                .unwrap_or_default();
            tls.write_all(format!("GET /metrics HTTP/1.0\r\nHost: x\r\n{auth}\r\n").as_bytes())
                .await
                .ok()?;
            let mut buf = Vec::new();
            let _ = tls.read_to_end(&mut buf).await;
            Some(String::from_utf8_lossy(&buf).into_owned())
        })
    };
    let start = Instant::now();
    let ok = loop {
        if let Some(r) = get(Some("prometheus:scrape-pw")) {
            break r;
        }
        assert!(
            start.elapsed() < Duration::from_secs(10),
            "no HTTPS: {}",
            d.log()
        );
        std::thread::sleep(Duration::from_millis(100));
    };
    assert!(
        ok.starts_with("HTTP/1.0 200") || ok.starts_with("HTTP/1.1 200"),
        "{ok}"
    );
    assert!(ok.contains("smtp_canary_build_info"));
    let denied = get(None).expect("response");
    assert!(
        denied.contains(" 401 ")
            && denied
                .to_ascii_lowercase()
                .contains("www-authenticate: basic"),
        "{denied}"
    );
    let wrong = get(Some("prometheus:nope")).expect("response");
    assert!(wrong.contains(" 401 "), "{wrong}");
    // A reload (SIGHUP) re-reads the web config: a user added to it gets in.
    let hash2 = bcrypt::hash("second-pw", 4).unwrap();
    std::fs::write(
        &web,
        format!(
            "tls_server_config:\n  cert_file: tls.crt\n  key_file: tls.key\nbasic_auth_users:\n  prometheus: '{hash}'\n  grafana: '{hash2}'\n"
        ),
    )
    .unwrap();
    assert!(
        get(Some("grafana:second-pw"))
            .expect("response")
            .contains(" 401 ")
    );
    d.signal("HUP");
    let start = Instant::now();
    while !get(Some("grafana:second-pw")).is_some_and(|r| r.contains(" 200 ")) {
        assert!(
            start.elapsed() < Duration::from_secs(10),
            "web config not reloaded: {}",
            d.log()
        );
        std::thread::sleep(Duration::from_millis(100));
    }
    // Plain HTTP on the TLS port gets nothing useful.
    assert!(d.get("/metrics").is_none_or(|(code, _)| code != 200));
    assert!(d.terminate().0.success());

    let bad = dir.path().join("bad.yml");
    std::fs::write(&bad, "basic_auth_users:\n  prometheus: plaintext-pw\n").unwrap();
    let out = run(&["--web.config.file", bad.to_str().unwrap()], &[]);
    assert_eq!(out.status.code(), Some(2));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("not a bcrypt hash") && !err.contains("plaintext-pw"),
        "{err}"
    );
}
