//! Sink readers against a hostile IMAP server (hermetic: `tests/support/imap.rs`): a
//! server that quotes the password back, announces a 1 GB literal, floods an endless
//! line, or greets with garbage. Each read fails with a class and a bounded cost, the
//! secret never shows, and the probes of the mailboxes go on.

use std::time::Duration;

use crate::support::daemon::Daemon;
use crate::support::exposition::metric_value;
use crate::support::imap::{ImapMode, ImapServer};
use crate::support::serial;

const SINK_PASSWORD: &str = "s1nk-Pa55word-hostile-test";

/// The shipped demo mailbox plus one plain-text sink on the hostile server.
fn daemon_against(server: &ImapServer, dir: &std::path::Path) -> Daemon {
    let cfg = dir.join("c.yaml");
    std::fs::write(
        &cfg,
        format!(
            "mailboxes:
  - name: demo-healthy
    provider: demo
    username: canary@demo.example
    from: canary@demo.example
    to: [canary-sink@demo.example]
    interval: 1h
sinks:
  - name: hostile
    address: canary-sink@demo.example
    host: 127.0.0.1
    port: {port}
    security: none
    allow_insecure_auth: true
    username: reader@demo.example
    password_env: HOSTILE_SINK_PASSWORD
    poll_interval: 5s
",
            port = server.addr.port()
        ),
    )
    .expect("config");
    let d = Daemon::start(
        &cfg,
        &dir.join("state"),
        &["--probe.immediate"],
        &[("HOSTILE_SINK_PASSWORD", SINK_PASSWORD)],
    );
    d.wait_ready(Duration::from_secs(15));
    d
}

fn failures(body: &str, class: &str) -> f64 {
    metric_value(
        body,
        &format!("smtp_canary_sink_failures_total{{class=\"{class}\",sink=\"hostile\"}}"),
    )
    .unwrap_or(0.0)
}

fn assert_clean(d: &Daemon, body: &str) {
    // The demo probe runs beside the sink reader; wait for its first result.
    assert!(!body.contains(SINK_PASSWORD));
    let fresh = d.wait_metrics(Duration::from_secs(20), |b| {
        metric_value(b, "smtp_canary_probe_success{mailbox=\"demo-healthy\"}").is_some()
    });
    let body = fresh.as_str();
    assert!(
        !d.log().contains(SINK_PASSWORD),
        "the sink password leaked:\n{}",
        d.log()
    );
    assert!(!body.contains(SINK_PASSWORD));
    let (_, page) = d.get("/").expect("status page");
    assert!(!page.contains(SINK_PASSWORD));
    assert_eq!(
        metric_value(body, "smtp_canary_probe_success{mailbox=\"demo-healthy\"}"),
        Some(1.0),
        "the probes go on"
    );
    assert_eq!(
        metric_value(body, "smtp_canary_sink_up{sink=\"hostile\"}"),
        Some(0.0)
    );
}

#[test]
fn a_server_that_quotes_the_login_back_gets_auth_and_no_secret() {
    let _serial = serial::shared_blocking();
    let server = ImapServer::start(ImapMode::EchoLogin);
    let dir = tempfile::tempdir().unwrap();
    let d = daemon_against(&server, dir.path());
    let body = d.wait_metrics(Duration::from_secs(20), |b| failures(b, "auth") >= 1.0);
    assert_clean(&d, &body);
    assert!(
        d.log().contains("<redacted>"),
        "the echo is shown, redacted:\n{}",
        d.log()
    );
}

#[test]
fn a_gigabyte_literal_is_refused_before_it_is_allocated() {
    let _serial = serial::shared_blocking();
    let server = ImapServer::start(ImapMode::HugeLiteral);
    let dir = tempfile::tempdir().unwrap();
    let d = daemon_against(&server, dir.path());
    let body = d.wait_metrics(Duration::from_secs(20), |b| failures(b, "network") >= 1.0);
    assert_clean(&d, &body);
    assert!(d.log().contains("1000000000-byte literal"), "{}", d.log());
    let rss = d.rss_kib().unwrap_or(u64::MAX);
    assert!(rss < 200 * 1024, "RSS {rss} KiB after the announcement");
}

#[test]
fn an_endless_line_stops_at_the_response_budget() {
    let _serial = serial::shared_blocking();
    let server = ImapServer::start(ImapMode::Flood);
    let dir = tempfile::tempdir().unwrap();
    let d = daemon_against(&server, dir.path());
    let body = d.wait_metrics(Duration::from_secs(30), |b| failures(b, "network") >= 1.0);
    assert_clean(&d, &body);
    assert!(
        d.log().contains("a line longer than 1048576 bytes"),
        "{}",
        d.log()
    );
    let rss = d.rss_kib().unwrap_or(u64::MAX);
    assert!(rss < 200 * 1024, "RSS {rss} KiB after the flood");
}

#[test]
fn a_garbage_greeting_is_a_classified_failure_with_back_off() {
    let _serial = serial::shared_blocking();
    let server = ImapServer::start(ImapMode::GarbageGreeting);
    let dir = tempfile::tempdir().unwrap();
    let d = daemon_against(&server, dir.path());
    let body = d.wait_metrics(Duration::from_secs(20), |b| {
        failures(b, "network") + failures(b, "protocol") >= 1.0
    });
    assert_clean(&d, &body);
    // Back-off: 2 s, 4 s, 8 s ... not a reconnect loop.
    std::thread::sleep(Duration::from_secs(6));
    let n = server.connections.load(std::sync::atomic::Ordering::SeqCst);
    assert!(n <= 4, "{n} connections in about 8 s");
}
