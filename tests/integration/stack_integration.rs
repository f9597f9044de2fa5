//! Integration tests of the real `smtp-canary` binary against the real loopback mail stack
//! of `tests/stack/` (Postfix submission + Dovecot SASL + OpenDKIM + Knot + Prometheus).
//!
//! Every test is `#[ignore]`d so that a plain `cargo test` runs only the hermetic suite.
//! The full suite (what `scripts/test-all.sh` runs, as root):
//!
//! ```sh
//! sudo tests/stack/up.sh
//! cargo test --test integration -- --ignored stack_integration::
//! ```
//!
//! The tests are independent and may run in parallel: each one binds its own fresh
//! loopback source address (127.x.y.z), so Postfix's per-client anvil budgets (messages
//! and connections per 60 s) never mix, and a second run right after the first is green
//! too. When the stack is not up (no `$STACK_ROOT/run/stack.env`), every test panics with
//! instructions; nothing is skipped silently.

use std::time::{Duration, Instant};

use smtp_canary::demo::pki::Ca;

use crate::support::ports::fresh_source;
use crate::support::relay::{Tee, connect_from, read_smtp_reply, rt};
use crate::support::stack::canary::Canary;
use crate::support::stack::mail::{
    LogCursor, base64, dkim_tags, dkim_verify, header, unfold_headers,
};
use crate::support::stack::prometheus::{TestPrometheus, promtool_check_config};
use crate::support::stack::{Stack, tool};
use crate::support::{repo, serial, wait_until};

/// Source addresses of tests that do not exercise rate limits: 127.20-99.y.z.
const SRC_PLAIN: std::ops::Range<u8> = 20..100;
/// Source addresses of the rate-limit tests: 127.100-199.y.z.
const SRC_RATE: std::ops::Range<u8> = 100..200;

// ------------------------------------------------------------------------------------ 1

/// A canary through Postfix (STARTTLS, AUTH `mechanism`) lands in the Maildir with its
/// X-Smtp-Canary header and a DKIM signature that verifies against the key in Knot; the
/// Postfix log shows the SASL method really used.
fn canary_delivered_with(mechanism: &str) {
    let stack = Stack::get();
    let src = fresh_source(SRC_PLAIN);
    let log = LogCursor::new(stack.postfix_log());
    let name = format!("stack-{}", mechanism.to_lowercase());
    let canary = Canary::new(&[stack
        .mailbox(&name)
        .source(src)
        .mechanism(&mechanism.to_lowercase())]);

    let run = canary.probe(&name);
    run.assert_success();
    assert_eq!(
        run.str("auth_mechanism"),
        Some(mechanism),
        "{}",
        run.summary()
    );
    assert!(
        run.json["tls"]["version"]
            .as_str()
            .is_some_and(|v| v.starts_with("TLSv1.")),
        "TLS info: {}",
        run.json["tls"]
    );
    assert!(
        run.json["tls"]["cert_not_after"].is_string(),
        "cert_not_after: {}",
        run.json["tls"]
    );
    for p in [
        "connect", "greeting", "ehlo", "starttls", "auth", "mail", "rcpt", "data", "quit",
    ] {
        assert!(
            run.phase_secs(p).is_some(),
            "phase {p} missing: {:?}",
            run.phase_names()
        );
    }
    assert!(
        run.phase_secs("dns").is_none(),
        "host is an IP literal: no dns phase"
    );
    for key in ["class", "phase", "code", "reply", "hint"] {
        assert!(
            run.json[key].is_null(),
            "{key} must be null on success: {}",
            run.json[key]
        );
    }
    // Secrets never appear in any output.
    assert!(!run.stdout.contains(stack.password()) && !run.stderr.contains(stack.password()));

    let probe_id = run.probe_id().to_owned();
    let (path, message) = stack.wait_for_canary(&name, &probe_id, Duration::from_secs(20));
    let headers = unfold_headers(&message);
    assert_eq!(
        header(&headers, "X-Smtp-Canary"),
        Some(format!("{name} {probe_id}").as_str())
    );
    assert_eq!(
        header(&headers, "Message-ID"),
        run.str("message_id"),
        "Message-ID as reported in the JSON"
    );
    let sig = header(&headers, "DKIM-Signature").unwrap_or_else(|| {
        panic!(
            "no DKIM-Signature in {}:\n{}",
            path.display(),
            headers.join("\n")
        )
    });
    let tags = dkim_tags(sig);
    assert_eq!(
        tags.get("d").map(String::as_str),
        Some(stack.var("STACK_DOMAIN")),
        "{sig}"
    );
    assert_eq!(
        tags.get("s").map(String::as_str),
        Some(stack.var("STACK_DKIM_SELECTOR")),
        "{sig}"
    );
    dkim_verify(stack, &path)
        .unwrap_or_else(|e| panic!("DKIM signature of {} does not verify: {e}", path.display()));
    let received = header(&headers, "Received").unwrap_or_default();
    assert!(
        received.contains(&format!("[{src}]")),
        "Received from the source address {src}: {received}"
    );

    // Postfix saw this mechanism from this client, authenticated as the stack user.
    let expect = format!(
        "client=unknown[{src}], sasl_method={mechanism}, sasl_username={}",
        stack.user()
    );
    let lines = log.lines_for(src);
    assert!(
        lines.iter().any(|l| l.contains(&expect)),
        "Postfix log has no {expect:?}:\n{}",
        lines.join("\n")
    );
}

#[test]
#[ignore = "needs the mail stack: tests/stack/up.sh (root)"]
fn canary_starttls_auth_plain_lands_with_header_and_dkim() {
    let _serial = serial::shared_blocking();
    canary_delivered_with("PLAIN");
}

#[test]
#[ignore = "needs the mail stack: tests/stack/up.sh (root)"]
fn canary_starttls_auth_login_lands_with_header_and_dkim() {
    let _serial = serial::shared_blocking();
    canary_delivered_with("LOGIN");
}

// ------------------------------------------------------------------------------------ 2

/// A wrong password is `auth`/`5.7.8` in phase `auth`: Dovecot's deliberate delay on
/// failed logins (~2 s) stays inside the auth phase's cap and is not a timeout.
#[test]
#[ignore = "needs the mail stack: tests/stack/up.sh (root)"]
fn wrong_password_is_auth_578_not_timeout() {
    let _serial = serial::shared_blocking();
    let stack = Stack::get();
    let src = fresh_source(SRC_PLAIN);
    let wrong = format!("wrong-{:016x}", rand::random::<u64>());
    let canary = Canary::with_password(&[stack.mailbox("stack-badpw").source(src)], &wrong);

    let run = canary.probe("stack-badpw");
    run.assert_failure("auth", "auth", "5.7.8");
    assert_ne!(run.str("class"), Some("timeout"));
    let reply = run.str("reply").unwrap_or_default();
    assert!(reply.starts_with("535 5.7.8"), "reply: {reply}");
    let auth = run.phase_secs("auth").expect("auth phase timed");
    // The delay is real (Dovecot waits before answering) and it was absorbed.
    assert!(
        auth > 0.5,
        "Dovecot delays failed logins; auth took only {auth}s"
    );
    assert!(auth < 15.0, "auth took {auth}s");
    for p in ["mail", "rcpt", "data"] {
        assert!(run.phase_secs(p).is_none(), "no {p} after a failed AUTH");
    }
    assert!(run.json["message_id"].is_null());
    // The wrong password is a secret too: never printed.
    for (what, text) in [("stdout", &run.stdout), ("stderr", &run.stderr)] {
        assert!(!text.contains(&wrong), "the password appears in {what}");
        assert!(
            !text.contains(&base64(wrong.as_bytes())),
            "the base64 password appears in {what}"
        );
    }
}

// ------------------------------------------------------------------------------------ 3

/// `security: none` with `allow_insecure_auth: true` against this Postfix, which offers
/// AUTH only after STARTTLS: the probe fails before any credentials are sent.
///
/// Without TLS, Postfix's EHLO lists no AUTH, so the prober stops in phase `auth` with
/// class `auth_policy` ("server offers no usable AUTH mechanism") and sends QUIT. We show
/// that nothing crossed the wire three ways: the bytes the client sent (through a
/// recording relay), Postfix's log for this client (no SASL line, and its session summary
/// counts only `ehlo=1 quit=1`), and the password appears nowhere in the log.
#[test]
#[ignore = "needs the mail stack: tests/stack/up.sh (root)"]
fn security_none_sends_no_credentials() {
    let _serial = serial::shared_blocking();
    let stack = Stack::get();
    let src = fresh_source(SRC_PLAIN);
    let log = LogCursor::new(stack.postfix_log());
    // A unique password: if it appeared anywhere, it came from this test.
    let password = format!("never-on-the-wire-{:016x}", rand::random::<u64>());
    let tee = Tee::start(stack.smtp_addr(), src);
    let mut mb = stack.mailbox("stack-plaintext").source(src);
    mb.host = tee.addr.ip().to_string();
    mb.port = tee.addr.port();
    mb.security = "none".into();
    mb.allow_insecure_auth = Some(true);
    let canary = Canary::with_password(&[mb], &password);

    let run = canary.probe("stack-plaintext");
    run.assert_failure("auth_policy", "auth", "");
    assert!(
        run.json["reply"].is_null(),
        "no server reply caused this: {}",
        run.summary()
    );
    let error = run.str("error").unwrap_or_default();
    assert!(error.contains("no usable AUTH mechanism"), "error: {error}");
    assert!(run.json["tls"].is_null(), "no TLS was negotiated");
    assert!(
        run.phase_secs("starttls").is_none(),
        "security: none never sends STARTTLS"
    );

    let peer = tee
        .peer
        .recv_timeout(Duration::from_secs(5))
        .expect("the prober connected to the relay");
    assert_eq!(
        peer.ip(),
        std::net::IpAddr::V4(src),
        "the prober connected from source_address"
    );
    let wire = String::from_utf8_lossy(&tee.finish()).into_owned();
    let commands: Vec<&str> = wire.split("\r\n").filter(|l| !l.is_empty()).collect();
    assert_eq!(
        commands,
        ["EHLO canary-test.example.test", "QUIT"],
        "client bytes on the wire: {wire:?}"
    );
    let plain = base64(format!("\0{}\0{password}", stack.user()).as_bytes());
    for secret in [
        password.as_str(),
        &base64(password.as_bytes()),
        &plain,
        &base64(stack.user().as_bytes()),
    ] {
        assert!(
            !wire.contains(secret),
            "a credential crossed the wire: {wire:?}"
        );
    }
    assert!(
        !wire.to_ascii_uppercase().contains("AUTH"),
        "AUTH was sent: {wire:?}"
    );

    // Postfix's side, by this client's address. Wait for the session summary.
    let lines = wait_until(Duration::from_secs(10), || {
        let l = log.lines_for(src);
        l.iter().any(|x| x.contains("disconnect from")).then_some(l)
    })
    .unwrap_or_else(|| panic!("no Postfix disconnect line for [{src}]:\n{}", log.since()));
    eprintln!("Postfix log for [{src}]:\n{}", lines.join("\n"));
    assert!(
        lines.iter().any(|l| l.contains("connect from unknown")),
        "{lines:?}"
    );
    let summary = lines
        .iter()
        .find(|l| l.contains("disconnect from"))
        .unwrap();
    assert!(
        summary.ends_with("ehlo=1 quit=1 commands=2"),
        "session summary: {summary}"
    );
    for l in &lines {
        for bad in [
            "sasl_method",
            "sasl_username",
            "authentication failed",
            "auth=",
            "starttls=",
        ] {
            assert!(!l.contains(bad), "Postfix logged {bad:?} for {src}: {l}");
        }
    }
    let all = log.since();
    assert!(
        !all.contains(&password),
        "the password appears in the Postfix log"
    );
}

// ------------------------------------------------------------------------------------ 4

/// The message rate limit (STACK_RATE_MSGS per 60 s per client IP): the probes within it
/// deliver, the next one is `throttled`/`4.7.1`. Postfix's anvil check for
/// `smtpd_client_message_rate_limit` runs at MAIL FROM, so the phase is `mail`.
#[test]
#[ignore = "needs the mail stack: tests/stack/up.sh (root)"]
fn message_rate_limit_is_throttled_471_at_mail() {
    let _serial = serial::shared_blocking();
    let stack = Stack::get();
    let limit = stack.num("STACK_RATE_MSGS");
    let src = fresh_source(SRC_RATE);
    let log = LogCursor::new(stack.postfix_log());
    let canary = Canary::new(&[stack.mailbox("stack-msgrate").source(src)]);

    for i in 1..=limit {
        let run = canary.probe("stack-msgrate");
        assert!(
            run.success(),
            "probe {i} of {limit} should be within the rate limit: {}",
            run.summary()
        );
    }
    let run = canary.probe("stack-msgrate");
    run.assert_failure("throttled", "mail", "4.7.1");
    let reply = run.str("reply").unwrap_or_default();
    assert!(
        reply.starts_with("450 4.7.1") && reply.contains("too much mail"),
        "reply: {reply}"
    );
    // AUTH succeeded first: the limit is about volume, not credentials.
    assert!(
        run.phase_secs("auth").is_some() && run.phase_secs("rcpt").is_none(),
        "phases: {:?}",
        run.phase_names()
    );
    assert!(run.json["message_id"].is_null());
    let lines = log.lines_for(src);
    assert!(
        lines.iter().any(|l| l.contains(&format!(
            "Message delivery request rate limit exceeded: {}",
            limit + 1
        ))),
        "Postfix log for [{src}]:\n{}",
        lines.join("\n")
    );
}

/// The connection rate limit (STACK_RATE_CONN per 60 s per client IP): after that many
/// raw connections from one address, the prober's connection gets `421 4.7.0` instead of
/// the greeting: `throttled`/`4.7.0` in phase `greeting`.
#[test]
#[ignore = "needs the mail stack: tests/stack/up.sh (root)"]
fn connection_rate_limit_is_throttled_470_at_greeting() {
    let _serial = serial::shared_blocking();
    let stack = Stack::get();
    let limit = stack.num("STACK_RATE_CONN");
    let src = fresh_source(SRC_RATE);
    let smtp = stack.smtp_addr();

    rt().block_on(async {
        use tokio::io::{AsyncWriteExt, BufReader};
        for i in 1..=limit {
            let stream = connect_from(src, smtp)
                .await
                .unwrap_or_else(|e| panic!("raw connection {i} from {src}: {e}"));
            let mut conn = BufReader::new(stream);
            let greeting = read_smtp_reply(&mut conn).await.expect("greeting");
            assert!(
                greeting.starts_with("220 "),
                "connection {i} of {limit} got {greeting:?}"
            );
            conn.get_mut().write_all(b"QUIT\r\n").await.expect("QUIT");
            let bye = read_smtp_reply(&mut conn).await.expect("QUIT reply");
            assert!(bye.starts_with("221"), "QUIT got {bye:?}");
        }
    });

    let canary = Canary::new(&[stack.mailbox("stack-connrate").source(src)]);
    let run = canary.probe("stack-connrate");
    run.assert_failure("throttled", "greeting", "4.7.0");
    let reply = run.str("reply").unwrap_or_default();
    assert!(
        reply.starts_with("421 4.7.0") && reply.contains("too many connections"),
        "reply: {reply}"
    );
    assert!(
        run.phase_secs("ehlo").is_none(),
        "nothing after the greeting: {:?}",
        run.phase_names()
    );
}

// ------------------------------------------------------------------------------------ 5

/// A CA that did not sign the server's certificate: class `tls` in `starttls`, and no
/// AUTH was attempted. (The stack's own CA passing is covered by the canary tests.)
#[test]
#[ignore = "needs the mail stack: tests/stack/up.sh (root)"]
fn untrusted_ca_is_class_tls() {
    let _serial = serial::shared_blocking();
    let stack = Stack::get();
    let ca = Ca::new("smtp-canary untrusted test CA").expect("generating a CA");
    let ca_dir = tempfile::tempdir().expect("tempdir");
    let ca_file = ca_dir.path().join("untrusted-ca.pem");
    std::fs::write(&ca_file, ca.cert_pem()).expect("writing the CA");
    let mut mb = stack
        .mailbox("stack-untrusted")
        .source(fresh_source(SRC_PLAIN));
    mb.ca_file = Some(ca_file.to_string_lossy().into_owned());
    let canary = Canary::new(&[mb]);

    let run = canary.probe("stack-untrusted");
    run.assert_failure("tls", "starttls", "");
    let error = run.str("error").unwrap_or_default();
    assert!(
        error.contains("UnknownIssuer"),
        "error names the untrusted issuer: {error}"
    );
    assert!(
        run.phase_secs("auth").is_none(),
        "no AUTH over an unverified channel"
    );
    assert!(!run.client_lines().iter().any(|l| l.starts_with("AUTH")));
}

/// The stack's CA, but a name the certificate does not cover: class `tls`.
#[test]
#[ignore = "needs the mail stack: tests/stack/up.sh (root)"]
fn wrong_server_name_is_class_tls() {
    let _serial = serial::shared_blocking();
    let stack = Stack::get();
    let mut mb = stack
        .mailbox("stack-wrongname")
        .source(fresh_source(SRC_PLAIN));
    mb.server_name = Some("wrong.example.test".into());
    let canary = Canary::new(&[mb]);

    let run = canary.probe("stack-wrongname");
    run.assert_failure("tls", "starttls", "");
    let error = run.str("error").unwrap_or_default();
    assert!(
        error.contains("not valid for name"),
        "error names the name mismatch: {error}"
    );
    assert!(
        run.phase_secs("auth").is_none(),
        "no AUTH over an unverified channel"
    );
}

// ------------------------------------------------------------------------------------ 6

/// A host given by name (`mail.example.test`) resolves through Knot with `--dns-server`;
/// the certificate is verified against that name (no `tls.server_name`).
#[test]
#[ignore = "needs the mail stack: tests/stack/up.sh (root)"]
fn host_name_resolves_through_knot() {
    let _serial = serial::shared_blocking();
    let stack = Stack::get();
    let mut mb = stack
        .mailbox("stack-byname")
        .source(fresh_source(SRC_PLAIN));
    mb.host = stack.tls_name().to_owned();
    mb.server_name = None;
    let mut canary = Canary::new(&[mb]);
    canary.extra_args = vec!["--dns-server".into(), stack.dns().to_owned()];

    let run = canary.probe("stack-byname");
    run.assert_success();
    let dns = run.phase_secs("dns").expect("a dns phase for a host name");
    assert!(dns < 5.0, "dns took {dns}s");
    assert_eq!(
        run.phase_names().first().map(String::as_str),
        Some("dns"),
        "dns comes first"
    );
    let resolved = run.json["transcript"]
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(|e| e["text"].as_str())
        .any(|t| t.contains("resolved to") && t.contains("127.0.0.1"));
    assert!(
        resolved,
        "transcript notes the address from Knot: {}",
        run.json["transcript"]
    );
}

/// A name Knot does not know is class `dns` in phase `dns` (NXDOMAIN from the
/// authoritative server, not a timeout).
#[test]
#[ignore = "needs the mail stack: tests/stack/up.sh (root)"]
fn unknown_host_name_is_class_dns() {
    let _serial = serial::shared_blocking();
    let stack = Stack::get();
    let mut mb = stack.mailbox("stack-nxdomain");
    mb.host = format!(
        "nx-{:08x}.{}",
        rand::random::<u32>(),
        stack.var("STACK_DOMAIN")
    );
    let mut canary = Canary::new(&[mb]);
    canary.extra_args = vec!["--dns-server".into(), stack.dns().to_owned()];

    let run = canary.probe("stack-nxdomain");
    run.assert_failure("dns", "dns", "");
    assert!(run.phase_secs("connect").is_none());
    assert!(
        run.elapsed < Duration::from_secs(10),
        "an NXDOMAIN answer is quick: {:?}",
        run.elapsed
    );
}

// ------------------------------------------------------------------------------------ 7

/// A test-owned Prometheus, using the shipped job definition, scrapes a running
/// smtp-canary daemon: `up{job="smtp-canary"} == 1` and `smtp_canary_probe_success` is
/// queryable through the HTTP API.
#[test]
#[ignore = "needs the mail stack: tests/stack/up.sh (root)"]
fn prometheus_scrapes_the_daemon_with_the_shipped_config() {
    let _serial = serial::shared_blocking();
    let stack = Stack::get();
    promtool_check_config(&repo().join("deploy/prometheus/prometheus.yml"));

    let name = "stack-scraped";
    let canary = Canary::new(&[stack.mailbox(name).source(fresh_source(SRC_PLAIN))]);
    let daemon = canary.daemon();
    let prometheus = TestPrometheus::start(canary.dir.path(), &daemon.addr);

    let t = Instant::now();
    let up = wait_until(Duration::from_secs(30), || {
        let r = prometheus.query(r#"up{job="smtp-canary"}"#).ok()?;
        r.iter().find(|s| s["value"][1] == "1").cloned()
    });
    let up = up.unwrap_or_else(|| {
        panic!(
            "up{{job=\"smtp-canary\"}} never became 1 (targets: {})\n{}\n{}",
            prometheus.targets(),
            prometheus.child.log_tail(),
            daemon.log_tail()
        )
    });
    assert_eq!(up["metric"]["instance"], daemon.addr, "{up}");
    eprintln!("up == 1 after {:.1}s: {up}", t.elapsed().as_secs_f64());

    let query = format!(r#"smtp_canary_probe_success{{job="smtp-canary",mailbox="{name}"}}"#);
    let success = wait_until(Duration::from_secs(30), || {
        prometheus
            .query(&query)
            .ok()?
            .into_iter()
            .find(|s| s["value"][1] == "1")
    })
    .unwrap_or_else(|| {
        panic!(
            "{query} never returned 1 (last answer: {:?})\n{}",
            prometheus.query(&query),
            daemon.log_tail()
        )
    });
    eprintln!("{query} = {success}");
    daemon.assert_running();
}

// ------------------------------------------------------------------------------------ 8

/// `promtool check metrics` has no complaint about our /metrics, with a delivered and a
/// failed probe (so the failure counters, histograms and info gauges are all populated).
#[test]
#[ignore = "needs the mail stack: tests/stack/up.sh (root)"]
fn promtool_check_metrics_is_clean() {
    let _serial = serial::shared_blocking();
    let stack = Stack::get();
    let good = stack
        .mailbox("stack-metrics-ok")
        .source(fresh_source(SRC_PLAIN));
    let mut bad = stack
        .mailbox("stack-metrics-tls")
        .source(fresh_source(SRC_PLAIN));
    bad.server_name = Some("wrong.example.test".into());
    let canary = Canary::new(&[good, bad]);
    let daemon = canary.daemon();

    // Both first probes finished: each mailbox has its timestamp.
    let body = wait_until(Duration::from_secs(30), || {
        let (status, body) = daemon.get("/metrics")?;
        let done = |mb: &str| {
            body.contains(&format!(
                "smtp_canary_probe_timestamp_seconds{{mailbox=\"{mb}\"}}"
            ))
        };
        (status == 200 && done("stack-metrics-ok") && done("stack-metrics-tls")).then_some(body)
    })
    .unwrap_or_else(|| panic!("the first probes never finished\n{}", daemon.log_tail()));
    assert!(
        body.contains(r#"smtp_canary_probe_success{mailbox="stack-metrics-ok"} 1"#),
        "{body}"
    );
    assert!(
        body.contains(r#"smtp_canary_probe_success{mailbox="stack-metrics-tls"} 0"#),
        "{body}"
    );
    assert!(
        body.contains(r#"smtp_canary_probe_failures_total{class="tls",code="",mailbox="stack-metrics-tls",phase="starttls"} 1"#),
        "{body}"
    );

    let mut child = std::process::Command::new(tool("promtool"))
        .args(["check", "metrics"])
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .expect("running promtool");
    {
        use std::io::Write;
        let mut stdin = child.stdin.take().unwrap();
        stdin.write_all(body.as_bytes()).expect("feeding promtool");
    }
    let out = child.wait_with_output().expect("promtool");
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        out.status.success() && stdout.trim().is_empty() && stderr.trim().is_empty(),
        "promtool check metrics complained ({}):\n{stdout}{stderr}",
        out.status
    );
    daemon.assert_running();
}
