//! Delivery verification against the real stack (`tests/stack/`): canaries go through
//! Postfix submission to the `sink.test` MX (OpenDKIM verifying, Sieve filing into Junk,
//! header rules that discard or hold), land in Dovecot, and smtp-canary reads them back
//! over IMAPS or IMAP+STARTTLS, with a password or XOAUTH2. Bounces are real Postfix
//! DSNs in the sender's own inbox.
//!
//! Every test is `#[ignore]`d; `scripts/test-all.sh` runs them as root with
//! `cargo test --test integration -- --ignored delivery_stack::`. Each mailbox name is
//! unique per run (the sink mailbox is shared, and every test finds only its own
//! canaries by their X-Smtp-Canary header, as a real shared sink would require).

use std::net::TcpListener;
use std::time::Duration;

use serde_json::Value;
use smtp_canary::demo::pki::Ca;

use crate::support::exposition::metric_value;
use crate::support::fixtures::{CLIENT_ID, CLIENT_SECRET, SCOPE};
use crate::support::ports::fresh_source;
use crate::support::stack::Stack;
use crate::support::stack::canary::{Canary, MailboxCfg};
use crate::support::wait_until;

/// Source addresses of these tests: 127.88.y.z (Postfix's anvil counts per client IP).
const SRC: std::ops::Range<u8> = 88..89;

/// A name no earlier run used: the sink mailbox outlives test runs.
fn unique(prefix: &str) -> String {
    let n = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_nanos());
    format!("{prefix}-{:x}", n & 0xff_ffff_ffff)
}

fn sending(name: &str) -> MailboxCfg {
    Stack::get().sending_to_sink(name).source(fresh_source(SRC))
}

/// The `delivery` entries of a `probe --wait-delivery --format json` run.
fn deliveries(json: &Value) -> Vec<Value> {
    json["delivery"].as_array().cloned().unwrap_or_default()
}

/// Files of the sink's Maildir (INBOX and Junk) that mention `needle`.
fn in_sink_maildir(needle: &str) -> usize {
    let root = Stack::get().sink_maildir();
    ["cur", "new", ".Junk/cur", ".Junk/new"]
        .iter()
        .filter_map(|d| std::fs::read_dir(root.join(d)).ok())
        .flatten()
        .flatten()
        .filter(|e| std::fs::read_to_string(e.path()).is_ok_and(|t| t.contains(needle)))
        .count()
}

fn assert_no_secret(texts: &[&str]) {
    let s = Stack::get();
    for t in texts {
        for secret in [s.sink_pass(), s.password(), CLIENT_SECRET] {
            assert!(!t.contains(secret), "a secret appears in the output:\n{t}");
        }
    }
}

#[test]
#[ignore = "needs the mail stack"]
fn delivered_in_inbox_with_latency_and_the_receivers_verdicts_then_deleted() {
    let stack = Stack::get();
    let name = unique("dlv");
    let canary = Canary::with_sinks(&[sending(&name)], &[stack.sink("sink-imaps")], "2m");
    let run = canary.probe_with(&name, &["--wait-delivery"]);
    run.assert_success();
    let d = deliveries(&run.json);
    assert_eq!(d.len(), 1, "{}", run.stdout);
    let d = &d[0];
    assert_eq!(d["sink"], "sink-imaps");
    assert_eq!(d["result"], "delivered", "{d}");
    assert_eq!(d["folder"], "INBOX", "{d}");
    let secs = d["seconds"].as_f64().unwrap_or(-1.0);
    assert!((0.0..60.0).contains(&secs), "latency {secs}: {d}");
    assert_eq!(d["auth_results"]["dkim"], "pass", "the MX's verdict: {d}");
    assert_eq!(d["dkim_valid"], true, "our own DKIM check: {d}");
    assert!(d["bounce"].is_null());
    assert_no_secret(&[&run.stdout, &run.stderr]);
    // cleanup: delete (the default) expunged exactly this canary.
    let probe_id = run.probe_id().to_owned();
    assert!(
        wait_until(Duration::from_secs(5), || (in_sink_maildir(&probe_id) == 0)
            .then_some(()))
        .is_some(),
        "the verified canary is still in the sink"
    );
}

#[test]
#[ignore = "needs the mail stack"]
fn starttls_sink_with_cleanup_keep_leaves_the_canary_and_everything_else() {
    let stack = Stack::get();
    let name = unique("keep");
    // A message that is not ours, in the same mailbox: cleanup must never touch it.
    let foreign = unique("foreign");
    let status = std::process::Command::new(crate::support::stack::tool("sendmail"))
        .args(["-C", &format!("{}/etc/postfix", stack.var("STACK_ROOT"))])
        .arg(stack.sink_user())
        .stdin(std::process::Stdio::piped())
        .spawn()
        .and_then(|mut c| {
            use std::io::Write;
            if let Some(mut i) = c.stdin.take() {
                let _ = i.write_all(
                    format!("Subject: {foreign}\n\nnot a canary {foreign}\n").as_bytes(),
                );
            }
            c.wait()
        });
    assert!(
        status.is_ok_and(|s| s.success()),
        "sendmail of a foreign message"
    );
    let mut sink = stack.sink("sink-starttls").starttls();
    sink.cleanup = Some("keep".into());
    let canary = Canary::with_sinks(&[sending(&name)], &[sink], "2m");
    let run = canary.probe_with(&name, &["--wait-delivery"]);
    run.assert_success();
    let d = deliveries(&run.json);
    assert_eq!(d[0]["result"], "delivered", "{}", run.stdout);
    let probe_id = run.probe_id().to_owned();
    assert_eq!(in_sink_maildir(&probe_id), 1, "keep leaves the canary");
    assert!(
        wait_until(Duration::from_secs(10), || (in_sink_maildir(&foreign) == 1)
            .then_some(()))
        .is_some(),
        "the foreign message arrived and stays"
    );
    // A daemon with cleanup: delete now reads the same mailbox: it removes nothing it
    // did not send (the kept canary is not in its state; the foreign one is not ours).
    let name2 = unique("dlt");
    let canary2 = Canary::with_sinks(&[sending(&name2)], &[stack.sink("sink-delete")], "2m");
    let run2 = canary2.probe_with(&name2, &["--wait-delivery"]);
    run2.assert_success();
    assert_eq!(
        in_sink_maildir(&foreign),
        1,
        "a message without our header was touched"
    );
    assert_eq!(
        in_sink_maildir(&probe_id),
        1,
        "another instance's canary was touched"
    );
}

#[test]
#[ignore = "needs the mail stack"]
fn junk_placement_is_reported_from_the_special_use_folder() {
    let stack = Stack::get();
    let name = unique("junk");
    let canary = Canary::with_sinks(&[sending(&name)], &[stack.sink("sink-junk")], "2m");
    let run = canary.probe_with(&name, &["--wait-delivery"]);
    assert_eq!(run.code, Some(1), "junk is not delivered: {}", run.stdout);
    let d = deliveries(&run.json);
    assert_eq!(d[0]["result"], "junk", "{}", run.stdout);
    assert_eq!(d[0]["folder"], "Junk", "{}", run.stdout);
}

#[test]
#[ignore = "needs the mail stack"]
fn a_signature_the_receiver_fails_is_reported_by_both_checks() {
    let stack = Stack::get();
    let name = unique("dkimfail");
    let mut mb = sending(&name);
    mb.from = stack.dkim_fail_from().to_owned();
    let canary = Canary::with_sinks(&[mb], &[stack.sink("sink-dkim")], "2m");
    let run = canary.probe_with(&name, &["--wait-delivery"]);
    let d = deliveries(&run.json);
    assert_eq!(d.len(), 1, "{}", run.stdout);
    assert_eq!(
        d[0]["result"], "delivered",
        "placement is still INBOX: {}",
        run.stdout
    );
    assert_eq!(d[0]["auth_results"]["dkim"], "fail", "{}", run.stdout);
    assert_eq!(d[0]["dkim_valid"], false, "{}", run.stdout);
    let reason = d[0]["dkim_reason"].as_str().unwrap_or("");
    assert!(reason.contains("does not verify"), "why: {reason}");
}

#[test]
#[ignore = "needs the mail stack"]
fn a_discarded_canary_is_lost_at_the_timeout() {
    let stack = Stack::get();
    let name = unique("lost");
    let canary = Canary::with_sinks(&[sending(&name)], &[stack.sink("sink-lost")], "10s");
    let run = canary.probe_with(&name, &["--wait-delivery"]);
    assert!(
        run.success(),
        "the submission itself worked: {}",
        run.summary()
    );
    assert_eq!(run.code, Some(1), "{}", run.stdout);
    let d = deliveries(&run.json);
    assert_eq!(d[0]["result"], "lost", "{}", run.stdout);
    assert!(
        run.elapsed >= Duration::from_secs(10),
        "not before the timeout"
    );
}

#[test]
#[ignore = "needs the mail stack"]
fn a_bounce_is_classified_and_counted_once() {
    let stack = Stack::get();
    let name = unique("bounce");
    let mut mb = stack.mailbox(&name).source(fresh_source(SRC));
    mb.to = stack.bounce_rcpt().to_owned();
    let canary = Canary::with_sinks(&[mb], &[stack.own_inbox("own-inbox")], "2m");
    let d = canary.daemon();
    let series = format!(
        "smtp_canary_bounces_total{{class=\"recipient_rejected\",code=\"5.1.1\",mailbox=\"{name}\"}}"
    );
    d.wait_metrics(Duration::from_secs(60), |m| {
        metric_value(m, &series) == Some(1.0)
    });
    // Read again (the poll interval is 5 s): still exactly one.
    std::thread::sleep(Duration::from_secs(12));
    let body = d.get("/metrics").map(|(_, b)| b).unwrap_or_default();
    assert_eq!(metric_value(&body, &series), Some(1.0), "counted twice?");
    assert_eq!(
        metric_value(&body, "smtp_canary_sink_up{sink=\"own-inbox\"}"),
        Some(1.0)
    );
    let log = d.log();
    assert!(log.contains("canary bounced"), "{log}");
    assert_no_secret(&[&body, &log]);
}

#[test]
#[ignore = "needs the mail stack"]
fn canaries_in_flight_survive_kill_9_and_count_once_lost_and_once_late() {
    let stack = Stack::get();
    let name = unique("late");
    let mut mb = sending(&name);
    mb.interval = Some("1h".into());
    let canary = Canary::with_sinks(&[mb], &[stack.sink("sink-late")], "10s");
    let pending = format!("smtp_canary_delivery_pending{{mailbox=\"{name}\",sink=\"sink-late\"}}");
    let mut first = canary.daemon();
    first.wait_metrics(Duration::from_secs(30), |m| {
        metric_value(m, &pending) == Some(1.0)
    });
    first.kill9();
    // The second process sends its own canary at once; both are held by the MX.
    let second = canary.daemon();
    let lost = format!(
        "smtp_canary_deliveries_total{{mailbox=\"{name}\",result=\"lost\",sink=\"sink-late\"}}"
    );
    let late = format!(
        "smtp_canary_deliveries_total{{mailbox=\"{name}\",result=\"late\",sink=\"sink-late\"}}"
    );
    second.wait_metrics(Duration::from_secs(40), |m| {
        metric_value(m, &lost) == Some(2.0)
    });
    let release = std::process::Command::new(stack.release_held())
        .status()
        .expect("release-held");
    assert!(release.success());
    second.wait_metrics(Duration::from_secs(40), |m| {
        metric_value(m, &late) == Some(2.0)
    });
    std::thread::sleep(Duration::from_secs(8));
    let body = second.get("/metrics").map(|(_, b)| b).unwrap_or_default();
    assert_eq!(
        metric_value(&body, &late),
        Some(2.0),
        "a canary counted twice"
    );
    assert_eq!(metric_value(&body, &lost), Some(2.0));
    assert_eq!(metric_value(&body, &pending), Some(0.0));
}

#[test]
#[ignore = "needs the mail stack"]
fn broken_sinks_are_classified_and_never_block_the_probes() {
    let stack = Stack::get();
    let name = unique("okprobe");
    let mut bad_pass = stack.sink("bad-pass");
    bad_pass.address = format!("bad-pass@{}", stack.sink_domain());
    bad_pass.password_env = "SMTP_CANARY_TEST_WRONG".into();
    let wrong_ca = tempfile::NamedTempFile::new().expect("temp");
    std::fs::write(
        wrong_ca.path(),
        Ca::new("smtp-canary wrong sink CA").expect("CA").cert_pem(),
    )
    .expect("CA file");
    let mut bad_ca = stack.sink("bad-ca");
    bad_ca.address = format!("bad-ca@{}", stack.sink_domain());
    bad_ca.ca_file = wrong_ca.path().display().to_string();
    let silent_listener = TcpListener::bind("127.0.0.1:0").expect("listener");
    let mut silent = stack.sink("silent");
    silent.address = format!("silent@{}", stack.sink_domain());
    silent.port = silent_listener.local_addr().expect("addr").port();
    let mut canary = Canary::with_sinks(
        &[sending(&name)],
        &[stack.sink("good"), bad_pass, bad_ca, silent],
        "2m",
    );
    canary.extra_env.push((
        "SMTP_CANARY_TEST_WRONG".into(),
        "wrong-password-for-sink".into(),
    ));
    let d = canary.daemon();
    let body = d.wait_metrics(Duration::from_secs(75), |m| {
        metric_value(m, "smtp_canary_sink_failures_total{class=\"auth\",sink=\"bad-pass\"}")
            .is_some_and(|v| v >= 1.0)
            && metric_value(m, "smtp_canary_sink_failures_total{class=\"tls\",sink=\"bad-ca\"}")
                .is_some_and(|v| v >= 1.0)
            && metric_value(m, "smtp_canary_sink_failures_total{class=\"timeout\",sink=\"silent\"}")
                .is_some_and(|v| v >= 1.0)
            && metric_value(
                m,
                &format!("smtp_canary_deliveries_total{{mailbox=\"{name}\",result=\"delivered\",sink=\"good\"}}"),
            ) == Some(1.0)
    });
    assert_eq!(
        metric_value(
            &body,
            &format!("smtp_canary_probe_success{{mailbox=\"{name}\"}}")
        ),
        Some(1.0)
    );
    for s in ["bad-pass", "bad-ca", "silent"] {
        assert_eq!(
            metric_value(&body, &format!("smtp_canary_sink_up{{sink=\"{s}\"}}")),
            Some(0.0),
            "{s}"
        );
    }
    assert_eq!(
        metric_value(&body, "smtp_canary_sink_up{sink=\"good\"}"),
        Some(1.0)
    );
    let log = d.log();
    assert!(
        !log.contains("wrong-password-for-sink"),
        "the sink password leaked:\n{log}"
    );
    assert_no_secret(&[&body, &log]);
    drop(silent_listener);
}

#[test]
#[ignore = "needs the mail stack"]
fn xoauth2_sink_reads_with_a_token_from_the_cache() {
    let stack = Stack::get();
    let ep = stack.token_endpoint();
    // Dovecot's introspection must name the sink user for the tokens of this test.
    ep.set_username(stack.sink_user());
    let name = unique("xoauth");
    let sink_yaml = format!(
        "  - name: sink-oauth\n    address: {user}\n    host: \"127.0.0.1\"\n    port: {port}\n    security: tls\n    username: {user}\n    oauth2:\n      grant: client_credentials\n      token_url: {url}\n      client_id: {CLIENT_ID}\n      scope: {SCOPE}\n      client_secret_env: SMTP_CANARY_TEST_CLIENT_SECRET\n    poll_interval: 5s\n    tls:\n      ca_file: {ca}\n      server_name: {tls}\n",
        user = stack.sink_user(),
        port = stack.num("STACK_IMAPS_PORT"),
        url = ep.url(),
        ca = stack.ca_file(),
        tls = stack.tls_name(),
    );
    let mut canary = Canary::with_sinks(&[sending(&name)], &[], "2m");
    let text = canary
        .config_text()
        .replace("sinks:\n", &format!("sinks:\n{sink_yaml}"));
    std::fs::write(&canary.config, text).expect("config");
    canary.extra_env.push((
        "SMTP_CANARY_TEST_CLIENT_SECRET".into(),
        CLIENT_SECRET.into(),
    ));
    let before = ep.requests();
    let run = canary.probe_with(&name, &["--wait-delivery"]);
    run.assert_success();
    assert_eq!(
        deliveries(&run.json)[0]["result"],
        "delivered",
        "{}",
        run.stdout
    );
    assert!(ep.requests() > before, "the token came from the endpoint");
    for t in ep.issued() {
        assert!(
            !run.stdout.contains(&t) && !run.stderr.contains(&t),
            "a token leaked"
        );
    }
    assert_no_secret(&[&run.stdout, &run.stderr]);
}

#[test]
#[ignore = "needs the mail stack"]
fn one_imap_session_per_sink_for_many_senders() {
    let stack = Stack::get();
    let names: Vec<String> = (0..5).map(|i| unique(&format!("fan{i}"))).collect();
    let mailboxes: Vec<MailboxCfg> = names.iter().map(|n| sending(n)).collect();
    let canary = Canary::with_sinks(&mailboxes, &[stack.sink("sink-fan")], "2m");
    let d = canary.daemon();
    d.wait_metrics(Duration::from_secs(60), |m| {
        names.iter().all(|n| {
            metric_value(
                m,
                &format!("smtp_canary_deliveries_total{{mailbox=\"{n}\",result=\"delivered\",sink=\"sink-fan\"}}"),
            ) == Some(1.0)
        })
    });
    // Other tests log in as the same user in parallel, so the sessions are counted on
    // our side: one connect, and no failed read that would have meant a reconnect.
    let log = d.log();
    let logins = log
        .lines()
        .filter(|l| l.contains("msg=\"sink connected\"") && l.contains("sink=sink-fan"))
        .count();
    let body = d.get("/metrics").map(|(_, b)| b).unwrap_or_default();
    assert!(
        !body.contains("smtp_canary_sink_failures_total{class="),
        "a reconnect happened"
    );
    assert_eq!(logins, 1, "one session for five senders:\n{log}");
}

/// Puts a message into the sink's INBOX with an old INTERNALDATE (IMAP APPEND, by
/// Python's imaplib: Dovecot's own tools would date it now).
fn append_old(stack: &Stack, message: &str, days_ago: u32) {
    let script = r#"
import imaplib, os, ssl, sys, time
ctx = ssl.create_default_context(cafile=os.environ["CA"])
ctx.check_hostname = False
m = imaplib.IMAP4_SSL("127.0.0.1", int(os.environ["PORT"]), ssl_context=ctx)
m.login(os.environ["USER"], os.environ["PASS"])
when = time.time() - int(os.environ["DAYS"]) * 86400
typ, _ = m.append("INBOX", None, imaplib.Time2Internaldate(when), sys.stdin.buffer.read())
assert typ == "OK", typ
m.logout()
"#;
    let mut child = std::process::Command::new("python3")
        .args(["-c", script])
        .env("CA", stack.ca_file())
        .env("PORT", stack.var("STACK_IMAPS_PORT"))
        .env("USER", stack.sink_user())
        .env("PASS", stack.sink_pass())
        .env("DAYS", days_ago.to_string())
        .stdin(std::process::Stdio::piped())
        .spawn()
        .expect("python3");
    {
        use std::io::Write;
        let mut stdin = child.stdin.take().expect("stdin");
        stdin
            .write_all(message.replace('\n', "\r\n").as_bytes())
            .expect("message");
    }
    assert!(
        child.wait().expect("python3").success(),
        "IMAP APPEND failed"
    );
}

#[test]
#[ignore = "needs the mail stack"]
fn the_daily_sweep_removes_only_old_canaries() {
    let stack = Stack::get();
    let old_canary = unique("oldcanary");
    let old_foreign = unique("oldforeign");
    append_old(
        stack,
        &format!(
            "Subject: old canary\nMessage-ID: <{old_canary}@x>\nX-Smtp-Canary: gone-mailbox {old_canary}\n\nold canary {old_canary}\n"
        ),
        3,
    );
    append_old(
        stack,
        &format!(
            "Subject: old mail\nMessage-ID: <{old_foreign}@x>\n\nsomeone's old mail {old_foreign}\n"
        ),
        3,
    );
    assert_eq!(in_sink_maildir(&old_canary), 1);
    let name = unique("sweep");
    let canary = Canary::with_sinks(&[sending(&name)], &[stack.sink("sink-sweep")], "2m");
    let run = canary.probe_with(&name, &["--wait-delivery"]);
    run.assert_success();
    assert_eq!(in_sink_maildir(&old_canary), 0, "the old canary is swept");
    assert_eq!(
        in_sink_maildir(&old_foreign),
        1,
        "a message without our header stays"
    );
}
