//! The daemon's life: the canary budget across restarts and `kill -9`, a corrupt state
//! file, back-off after throttling, reload (good and bad, by SIGHUP and HTTP), and
//! shards. Sends are counted at the (in-process) server, not taken from our own metrics.

use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use smtp_canary::{
    auth::{CredentialSource, Credentials},
    config::{AuthConfig, Mailbox, Provider, Secret},
    daemon::shard_of,
    demo::{Action, Rule, Script, ServerHandle, Stage},
    metrics::Metrics,
    scheduler::{Board, Scheduler, Shared, Start},
};

use crate::support::daemon::Daemon;
use crate::support::exposition::metric_value;
use crate::support::fixtures::{mailbox, prober};
use crate::support::pki::{TestPki, start_on};
use crate::support::{poll, serial};

const PW: &str = "lifecycle-test-password";

struct Fixture {
    _rt: tokio::runtime::Runtime,
    server: ServerHandle,
    dir: tempfile::TempDir,
    pki: TestPki,
}

fn fixture(script: Script) -> Fixture {
    let rt = tokio::runtime::Runtime::new().unwrap();
    let pki = TestPki::new();
    let server = start_on(
        &rt,
        pki.starttls_server()
            .users([("u@example.com", PW)])
            .script(script),
    );
    Fixture {
        _rt: rt,
        server,
        dir: tempfile::tempdir().unwrap(),
        pki,
    }
}

impl Fixture {
    fn mailbox_yaml(&self, name: &str, extra: &str) -> String {
        format!(
            "  - name: {name}\n    host: 127.0.0.1\n    port: {}\n    username: u@example.com\n    password_env: LIFECYCLE_PW\n    from: u@example.com\n    to: [v@example.com]\n    tls: {{ca_file: {}}}\n    timeout: 8s\n    interval: 10s\n{extra}",
            self.server.local_addr().port(),
            self.pki.ca_path().display()
        )
    }

    fn write_config(&self, mailboxes: &[String]) -> std::path::PathBuf {
        let path = self.dir.path().join("config.yaml");
        std::fs::write(&path, format!("mailboxes:\n{}", mailboxes.concat())).unwrap();
        path
    }

    fn start(&self, config: &Path, state: &Path) -> Daemon {
        Daemon::start(
            config,
            state,
            &["--probe.immediate"],
            &[("LIFECYCLE_PW", PW)],
        )
    }
}

fn wait_until(what: &str, within: Duration, mut f: impl FnMut() -> bool) {
    let met = poll(within, Duration::from_millis(20), || f().then_some(()));
    assert!(met.is_some(), "{what} not within {within:?}");
}

/// `budget.messages_per_day: 1`: one canary, then a restart must not send another, and
/// neither must a restart after `kill -9` in the middle of DATA.
#[test]
fn budget_survives_restart_and_kill_9_mid_probe() {
    let _serial = serial::shared_blocking();
    // Every message's final reply is held back 3 s, so DATA is in flight when we kill.
    let f = fixture(Script::new().on(
        Stage::DataEnd,
        Rule::new(Action::Default).delay(Duration::from_secs(3)),
    ));
    let cfg = f.write_config(&[f.mailbox_yaml("budgeted", "    budget: {messages_per_day: 1}\n")]);
    let state = f.dir.path().join("state");

    // 1. kill -9 while the server is receiving the message.
    let mut d = f.start(&cfg, &state);
    wait_until("DATA sent", Duration::from_secs(10), || {
        f.server.sessions().iter().any(|s| s.sent("DATA"))
    });
    std::thread::sleep(Duration::from_millis(300));
    d.kill9();
    let ledger = std::fs::read_to_string(state.join("mailbox-budgeted.json"))
        .expect("send recorded before DATA");
    assert!(ledger.contains("\"recipients\":1"), "{ledger}");

    // 2. Restart: the budget is spent, the probe is skipped, nothing reaches the server.
    let connections = f.server.connection_count();
    let mut d = f.start(&cfg, &state);
    let body = d.wait_metrics(Duration::from_secs(10), |b| {
        metric_value(
            b,
            "smtp_canary_probes_skipped_total{mailbox=\"budgeted\",reason=\"budget\"}",
        ) == Some(1.0)
    });
    assert_eq!(
        metric_value(&body, "smtp_canary_budget_remaining{mailbox=\"budgeted\"}"),
        Some(0.0)
    );
    assert_eq!(
        metric_value(
            &body,
            "smtp_canary_quota_used{mailbox=\"budgeted\",unit=\"messages\",window=\"day\"}"
        ),
        Some(1.0)
    );
    assert_eq!(
        f.server.connection_count(),
        connections,
        "a probe was sent despite the spent budget"
    );
    assert!(d.terminate().0.success());

    // 3. Once more after a clean stop: still nothing sent.
    let mut d = f.start(&cfg, &state);
    d.wait_metrics(Duration::from_secs(10), |b| {
        metric_value(
            b,
            "smtp_canary_probes_skipped_total{mailbox=\"budgeted\",reason=\"budget\"}",
        ) == Some(1.0)
    });
    assert!(d.terminate().0.success());
    assert_eq!(f.server.connection_count(), connections);
    assert!(
        f.server.message_count() <= 1,
        "counted at the server: {}",
        f.server.message_count()
    );
}

/// A corrupt state file is moved aside, logged, and treated as a spent budget.
#[test]
fn corrupt_state_file_is_moved_aside_and_counts_as_spent() {
    let _serial = serial::shared_blocking();
    let f = fixture(Script::new());
    let cfg = f.write_config(&[f.mailbox_yaml("corrupt", "")]);
    let state = f.dir.path().join("state");
    std::fs::create_dir_all(&state).unwrap();
    std::fs::write(state.join("mailbox-corrupt.json"), b"{\"sends\": [garbage").unwrap();
    let mut d = f.start(&cfg, &state);
    d.wait_metrics(Duration::from_secs(10), |b| {
        metric_value(
            b,
            "smtp_canary_probes_skipped_total{mailbox=\"corrupt\",reason=\"budget\"}",
        ) == Some(1.0)
    });
    assert!(d.terminate().0.success());
    assert_eq!(
        f.server.connection_count(),
        0,
        "sent despite an unreadable ledger"
    );
    let log = d.log();
    assert!(
        log.contains("level=error") && log.contains("state file is corrupt"),
        "{log}"
    );
    let aside: Vec<_> = std::fs::read_dir(&state)
        .unwrap()
        .filter_map(|e| e.ok())
        .filter(|e| e.file_name().to_string_lossy().contains(".corrupt-"))
        .collect();
    assert_eq!(
        aside.len(),
        1,
        "the corrupt file must be kept for inspection"
    );
}

/// A scheduler in this process (no state directory), probing at once.
fn lib_scheduler(metrics: &Arc<Metrics>) -> Scheduler {
    let shared = Arc::new(Shared::new(
        Arc::new(prober()),
        metrics.clone(),
        Arc::new(Board::new()),
        None,
    ));
    Scheduler::new(shared, Start::Immediate)
}

fn lib_mailbox(name: &str, port: u16, ca: &Path, interval: Duration) -> Arc<Mailbox> {
    Arc::new(
        mailbox(name, port)
            .provider(Provider::Microsoft365)
            .password("u@example.com", PW)
            .ca(ca)
            .interval(interval)
            .with(|mb| {
                mb.from = "u@example.com".into();
                mb.to = vec!["v@example.com".into()];
            })
            .build(),
    )
}

/// After `432 4.3.2` the mailbox backs off: the next slots are skipped as `backoff`
/// and the server sees no new connection until the pause ends.
#[test]
fn throttling_backs_off() {
    let _serial = serial::shared_blocking();
    let f = fixture(Script::new().on(
        Stage::DataEnd,
        Action::reply("432 4.3.2 STOREDRV.ClientSubmit; sender thread limit exceeded"),
    ));
    let rt = tokio::runtime::Runtime::new().unwrap();
    let metrics = Arc::new(Metrics::new());
    rt.block_on(async {
        let mut s = lib_scheduler(&metrics);
        let mb = lib_mailbox(
            "throttled",
            f.server.local_addr().port(),
            f.pki.ca_path(),
            Duration::from_secs(1),
        );
        let creds = [(
            mb.name.clone(),
            CredentialSource::Static(Credentials::from_config(&mb.auth)),
        )]
        .into_iter()
        .collect();
        s.apply(&[mb], &creds);
        // First probe at once (throttled), then a 2 s pause: the ~1 s slot is skipped.
        tokio::time::sleep(Duration::from_millis(1900)).await;
        s.shutdown().await;
    });
    assert_eq!(f.server.connection_count(), 1, "probed during the back-off");
    let body = metrics.render();
    assert!(
        body.contains("class=\"throttled\",code=\"4.3.2\",mailbox=\"throttled\",phase=\"data\"} 1"),
        "{body}"
    );
    let skipped = metric_value(
        &body,
        "smtp_canary_probes_skipped_total{mailbox=\"throttled\",reason=\"backoff\"}",
    );
    assert!(skipped.is_some_and(|n| n >= 1.0), "{body}");
}

/// Reload keeps unchanged mailboxes' schedules, starts new ones, deletes removed ones'
/// series; a bad config keeps the old one and sets the reload gauge to 0.
#[test]
fn reload_good_and_bad() {
    let _serial = serial::shared_blocking();
    let f = fixture(Script::new());
    let a = f.mailbox_yaml("keep", "");
    let b = f.mailbox_yaml("remove-me", "");
    let c = f.mailbox_yaml("added", "");
    let cfg = f.write_config(&[a.clone(), b]);
    let state = f.dir.path().join("state");
    let mut d = f.start(&cfg, &state);
    d.wait_metrics(Duration::from_secs(10), |m| {
        metric_value(m, "smtp_canary_probes_total{mailbox=\"keep\"}") == Some(1.0)
            && metric_value(m, "smtp_canary_probes_total{mailbox=\"remove-me\"}") == Some(1.0)
    });

    // Good reload over HTTP.
    f.write_config(&[a.clone(), c]);
    let (code, body) = d.post("/-/reload").expect("reload");
    assert_eq!(code, 200, "{body}");
    let m = d.wait_metrics(Duration::from_secs(10), |m| {
        metric_value(m, "smtp_canary_probes_total{mailbox=\"added\"}") == Some(1.0)
            && !m.contains("mailbox=\"remove-me\"")
    });
    // The unchanged mailbox kept its schedule: no second immediate probe.
    assert_eq!(
        metric_value(&m, "smtp_canary_probes_total{mailbox=\"keep\"}"),
        Some(1.0)
    );
    assert_eq!(
        metric_value(&m, "smtp_canary_config_last_reload_successful"),
        Some(1.0)
    );

    // Bad reload by SIGHUP: the old config stays.
    std::fs::write(&cfg, "mailboxes:\n  - name: x\n    intervall: 5m\n").unwrap();
    d.signal("HUP");
    let m = d.wait_metrics(Duration::from_secs(10), |m| {
        metric_value(m, "smtp_canary_config_last_reload_successful") == Some(0.0)
    });
    assert!(m.contains("smtp_canary_probes_total{mailbox=\"added\"}"));
    assert!(m.contains("smtp_canary_probes_total{mailbox=\"keep\"}"));
    assert!(
        d.log()
            .contains("reload failed; the previous config stays active")
    );

    // Bad reload over HTTP says why.
    let (code, body) = d.post("/-/reload").expect("reload");
    assert_eq!(code, 500);
    assert!(body.contains("intervall"), "{body}");
    assert_eq!(d.get("/-/ready").map(|r| r.0), Some(200));
    assert!(d.terminate().0.success());
}

/// N shards cover every mailbox exactly once, for every N up to 8.
#[test]
fn shards_partition_ten_thousand_names_exactly() {
    let _serial = serial::shared_blocking();
    let names: Vec<String> = (0..10_000).map(|i| format!("mailbox-{i:05}")).collect();
    for n in 1..=8u32 {
        let mut seen = vec![0u8; names.len()];
        let mut sizes = vec![0usize; n as usize];
        for shard in 0..n {
            for (i, name) in names.iter().enumerate() {
                if shard_of(name, n) == shard {
                    seen[i] += 1;
                    sizes[shard as usize] += 1;
                }
            }
        }
        assert!(
            seen.iter().all(|&c| c == 1),
            "N={n}: a name is in zero or several shards"
        );
        let fair = names.len() / n as usize;
        assert!(
            sizes.iter().all(|&s| s > fair * 8 / 10),
            "N={n}: unbalanced {sizes:?}"
        );
    }
    // Stable across releases: a fixed name always lands in the same shard.
    assert_eq!(shard_of("invoices-m365", 4), shard_of("invoices-m365", 4));
}

/// A stuck server (silent greeting, long timeout) never delays another mailbox: the
/// healthy one keeps probing on its own schedule meanwhile.
#[test]
fn a_stuck_server_never_delays_another_mailbox() {
    let _serial = serial::shared_blocking();
    let stuck = fixture(Script::new().on(Stage::Greeting, Action::Silent));
    let healthy = fixture(Script::new());
    let rt = tokio::runtime::Runtime::new().unwrap();
    let metrics = Arc::new(Metrics::new());
    rt.block_on(async {
        let mut s = lib_scheduler(&metrics);
        let mut slow = (*lib_mailbox(
            "stuck",
            stuck.server.local_addr().port(),
            stuck.pki.ca_path(),
            Duration::from_secs(60),
        ))
        .clone();
        slow.timeout = Duration::from_secs(30);
        let fast = lib_mailbox(
            "healthy",
            healthy.server.local_addr().port(),
            healthy.pki.ca_path(),
            Duration::from_secs(1),
        );
        let creds = [&slow.name, &fast.name]
            .iter()
            .map(|n| {
                let auth = AuthConfig::Password {
                    username: "u@example.com".into(),
                    password: Secret::new(PW),
                };
                (
                    (*n).clone(),
                    CredentialSource::Static(Credentials::from_config(&auth)),
                )
            })
            .collect();
        s.apply(&[Arc::new(slow), fast], &creds);
        tokio::time::sleep(Duration::from_millis(2600)).await;
        // Don't wait 30 s for the stuck probe: the runtime drops it with the test.
    });
    assert!(
        healthy.server.message_count() >= 3,
        "healthy mailbox delayed: {}",
        healthy.server.message_count()
    );
    assert_eq!(stuck.server.message_count(), 0);
    let body = metrics.render();
    assert_eq!(
        metric_value(
            &body,
            "smtp_canary_probes_skipped_total{mailbox=\"healthy\",reason=\"concurrency\"}"
        ),
        Some(0.0)
    );
}

/// A reload that adds a sink starts its reader and verifies from then on; one that
/// removes it stops the reader and deletes its series (the mailboxes carry on).
#[test]
fn reload_adds_and_removes_a_sink() {
    let _serial = serial::shared_blocking();
    let dir = tempfile::tempdir().unwrap();
    let cfg = dir.path().join("c.yaml");
    let mailbox = "mailboxes:
  - name: demo-healthy
    provider: demo
    username: canary@demo.example
    from: canary@demo.example
    to: [canary-sink@demo.example]
    interval: 10s
    timeout: 5s
";
    std::fs::write(&cfg, mailbox).unwrap();
    let d = Daemon::start(&cfg, &dir.path().join("state"), &["--probe.immediate"], &[]);
    d.wait_ready(Duration::from_secs(15));
    d.wait_metrics(Duration::from_secs(15), |b| {
        metric_value(b, "smtp_canary_probe_success{mailbox=\"demo-healthy\"}").is_some()
    });
    let body = d.get("/metrics").map(|r| r.1).unwrap_or_default();
    assert!(!body.contains("smtp_canary_sink_up{"), "no sink yet");

    std::fs::write(
        &cfg,
        format!("{mailbox}sinks:\n  - name: demo-sink\n    provider: demo\n    address: canary-sink@demo.example\n"),
    )
    .unwrap();
    assert_eq!(d.post("/-/reload").map(|r| r.0), Some(200));
    let delivered = "smtp_canary_deliveries_total{mailbox=\"demo-healthy\",result=\"delivered\",sink=\"demo-sink\"}";
    d.wait_metrics(Duration::from_secs(40), |b| {
        metric_value(b, "smtp_canary_sink_up{sink=\"demo-sink\"}") == Some(1.0)
            && metric_value(b, delivered).is_some()
    });

    std::fs::write(&cfg, mailbox).unwrap();
    assert_eq!(d.post("/-/reload").map(|r| r.0), Some(200));
    let body = d.wait_metrics(Duration::from_secs(10), |b| {
        !b.contains("smtp_canary_sink_up{")
    });
    assert_eq!(
        metric_value(&body, "smtp_canary_config_last_reload_successful"),
        Some(1.0)
    );
}
