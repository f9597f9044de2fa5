//! The canary keeps its promises under hostile input and faults, proven through the real
//! binary: servers that echo credentials or misbehave in 36 ways, files that are not
//! regular or too large, an unwritable or tampered state directory, reload and signal
//! storms, and the per-minute share at run time.
//!
//! The fault tests that need root (a full tmpfs, a read-only mount, a directory owned by
//! another user) are `#[ignore]`d under plain `cargo test` and run by
//! `scripts/test-all.sh` (as root in CI) with `--ignored`; they panic, not skip, without
//! root.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use base64::Engine;
use base64::engine::general_purpose::STANDARD_NO_PAD as B64_NO_PAD;
use smtp_canary::demo::ServerHandle;

use crate::support::daemon::{
    ChildGuard, Daemon, Measured, check_config, command, outcome, run_measured,
};
use crate::support::exposition::metric_value;
use crate::support::files::{mkfifo, sparse, write};
use crate::support::fixtures::{CLIENT_ID, CLIENT_SECRET, USER};
use crate::support::hostile::{HostileServer, Mode};
use crate::support::pki::{TestPki, huge_chain_config, start_on};
use crate::support::token_endpoint::TokenEndpoint;
use crate::support::{http, ports, serial};

/// Long and unlike any other text, so a leak of any piece of it is unmistakable.
const PASSWORD: &str = "Pw-7qX2mZ9vL4kR8tB3nH6jF";
/// Short (under the redactor's fragment length) and with a quote that debug output
/// escapes: the hard case for scrubbing.
const SHORT_PASSWORD: &str = "q\"8-Zx!p";

fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("runtime")
}

/// What must not appear: secrets in every form and piece, and framings (the SASL
/// payloads, which also hold the user name) whole.
struct Secrets {
    secrets: Vec<String>,
    framings: Vec<String>,
}

impl Secrets {
    fn password(user: &str, password: &str) -> Secrets {
        Secrets {
            secrets: vec![password.to_owned()],
            framings: vec![format!("\0{user}\0{password}")],
        }
    }

    /// The first form of a secret found in `text`: whole, escaped, in base64 at any byte
    /// alignment (padded or not), any 16-character piece of those (an echo split over
    /// lines, or quoted in part), or inside any base64 run of the text once decoded (a
    /// token wrapped in a base64 JSON challenge); a framing whole or in base64.
    fn leak(&self, text: &str) -> Option<String> {
        let decoded: Vec<String> = text
            .split(|c: char| !(c.is_ascii_alphanumeric() || matches!(c, '+' | '/' | '=')))
            .filter(|w| w.len() >= 8)
            .filter_map(|w| B64_NO_PAD.decode(w.trim_end_matches('=')).ok())
            .map(|b| String::from_utf8_lossy(&b).into_owned())
            .collect();
        for f in &self.framings {
            for form in [f.clone(), B64_NO_PAD.encode(f)] {
                if text.contains(&form) {
                    return Some(format!("{form:?} (a SASL payload)"));
                }
            }
        }
        for s in &self.secrets {
            if decoded.iter().any(|d| d.contains(s.as_str())) {
                return Some(format!("{s:?} inside base64"));
            }
            let mut forms = vec![
                s.clone(),
                s.escape_debug().to_string(),
                B64_NO_PAD.encode(s),
            ];
            for shift in 1..=2usize {
                let mut bytes = vec![0u8; shift];
                bytes.extend_from_slice(s.as_bytes());
                let enc = B64_NO_PAD.encode(&bytes);
                if enc.len() > shift + 2 {
                    forms.push(enc[shift + 1..enc.len() - 1].to_owned());
                }
            }
            for f in forms {
                if f.len() >= 4 && text.contains(&f) {
                    return Some(f);
                }
                for w in f.as_bytes().windows(16) {
                    let w = String::from_utf8_lossy(w);
                    if text.contains(w.as_ref()) {
                        return Some(w.into_owned());
                    }
                }
            }
        }
        None
    }
}

fn is_root() -> bool {
    // SAFETY: geteuid has no preconditions.
    unsafe { libc::geteuid() == 0 }
}

/// The class each hostile mode must end in.
fn expected_class(mode: Mode) -> &'static str {
    use Mode::*;
    match mode {
        // A 500 to AUTH is a syntax complaint, not a rejected password.
        EchoAuthLineIn500 => "protocol",
        EchoPayloadIn535 | EchoDecodedPassword | EchoPayloadSplitOverLines => "auth",
        EchoPasswordInMalformedLine => "protocol",
        EchoLoginLines | EchoLoginDecoded => "auth",
        EchoXoauth2Payload | EchoXoauth2Token => "auth",
        EchoPayloadInMailReply => "sender_rejected",
        EchoPasswordInDataReply => "message_rejected",
        EchoPasswordInRcptReply => "recipient_rejected",
        EndlessMultilineGreeting | EndlessMultilineEhlo | HugeLineAfterAuth => "protocol",
        // More challenges than the mechanism has answers.
        Loop334 => "protocol",
        TrickleGreeting | TrickleEhlo | SilentGreeting | SilentAfterData => "timeout",
        SilentTlsHandshake => "timeout",
        ResetAtGreeting | ResetAtEhlo | ResetAtAuth | ResetAtMail | ResetAtRcpt | ResetInData => {
            "network"
        }
        GarbageGreeting | BinaryEhloReply | WrongCodeForData | ImpossibleCode => "protocol",
        InjectionAfterStarttls => "protocol",
        NoStarttls | StarttlsRefused | GarbageAfterStarttls | HugeCertificateChain => "tls",
    }
}

#[test]
fn every_hostile_server_mode_ends_in_its_class_within_bounds_and_leaks_nothing() {
    let _serial = serial::shared_blocking();
    let rt = runtime();
    let pki = TestPki::new();
    let tls = huge_chain_config(&pki.pki, 300);
    let tokens = rt.block_on(TokenEndpoint::start());
    tokens.set_username(USER);
    let dir = tempfile::tempdir().expect("tempdir");
    let ca = pki.ca_path();
    let pw_file = write(&dir.path().join("pw"), SHORT_PASSWORD);
    let cs_file = write(&dir.path().join("cs"), CLIENT_SECRET);
    let mut yaml = String::from("global: {timeout: 4s}\nmailboxes:\n");
    let mut servers = Vec::new();
    for mode in Mode::ALL {
        let server = HostileServer::start(&rt, mode, tls.clone());
        let auth = if mode.mechanism() == "xoauth2" {
            format!(
                "    oauth2: {{grant: client_credentials, token_url: '{}', scope: s, client_id: {}, client_secret_file: {}}}\n",
                tokens.url(),
                CLIENT_ID,
                cs_file.display()
            )
        } else {
            format!(
                "    password_file: {}\n    auth_mechanism: {}\n",
                pw_file.display(),
                mode.mechanism()
            )
        };
        let security = if mode.starttls() {
            format!(
                "    security: starttls\n    tls: {{ca_file: {}}}\n",
                ca.display()
            )
        } else {
            "    security: none\n    allow_insecure_auth: true\n".to_owned()
        };
        yaml.push_str(&format!(
            "  - name: {}\n    host: 127.0.0.1\n    port: {}\n    username: {USER}\n{auth}{security}    from: {USER}\n    to: [sink@example.com]\n",
            mode.name(),
            server.addr.port()
        ));
        servers.push((mode, server));
    }
    let cfg = write(&dir.path().join("hostile.yaml"), &yaml);

    let results: Vec<(Mode, Measured)> = std::thread::scope(|scope| {
        let chunks: Vec<_> = Mode::ALL.chunks(6).collect();
        let handles: Vec<_> = chunks
            .into_iter()
            .map(|modes| {
                let cfg = &cfg;
                let dir = dir.path();
                scope.spawn(move || {
                    modes
                        .iter()
                        .map(|mode| {
                            let state = dir.join(format!("state-{}", mode.name()));
                            let mut cmd = command(&["probe", &mode.name(), "--format", "json"]);
                            cmd.args(["--log.level", "debug", "--config.file"])
                                .arg(cfg)
                                .arg("--state.dir")
                                .arg(&state)
                                .args(["--dns-server", "127.0.0.1:9"]);
                            (*mode, run_measured(cmd, Duration::from_secs(30)))
                        })
                        .collect::<Vec<_>>()
                })
            })
            .collect();
        handles
            .into_iter()
            .flat_map(|h| h.join().expect("probe thread"))
            .collect()
    });

    let mut secrets = Secrets::password(USER, SHORT_PASSWORD);
    secrets.secrets.push(CLIENT_SECRET.to_owned());
    secrets.secrets.extend(tokens.issued());
    for t in tokens.issued() {
        secrets
            .framings
            .push(format!("user={USER}\x01auth=Bearer {t}\x01\x01"));
    }
    let mut problems = Vec::new();
    for (mode, m) in &results {
        let json: serde_json::Value = serde_json::from_str(&m.stdout).unwrap_or_default();
        let class = json["class"].as_str().unwrap_or("<none>");
        let want = expected_class(*mode);
        if class != want {
            problems.push(format!(
                "{mode:?}: class {class}, want {want}; error {}; stderr tail: {}",
                json["error"],
                m.stderr
                    .lines()
                    .rev()
                    .take(3)
                    .collect::<Vec<_>>()
                    .join(" | ")
            ));
        }
        if m.code() != Some(1) {
            problems.push(format!("{mode:?}: exit {:?}, want 1", m.code()));
        }
        // The probe timeout is 4 s; a parting QUIT adds at most 2 s.
        if m.elapsed > Duration::from_secs(12) {
            problems.push(format!("{mode:?}: took {:?}", m.elapsed));
        }
        if m.max_rss_kib > 96 * 1024 {
            problems.push(format!("{mode:?}: peak RSS {} KiB", m.max_rss_kib));
        }
        for (what, text) in [("stdout", &m.stdout), ("stderr", &m.stderr)] {
            if let Some(f) = secrets.leak(text) {
                problems.push(format!("{mode:?}: secret piece {f:?} in {what}"));
            }
        }
        // The echo really happened, and was scrubbed (not merely absent).
        if mode.echoes() && !m.stdout.contains("<redacted>") {
            problems.push(format!("{mode:?}: no <redacted> in the JSON: {}", m.stdout));
        }
    }
    // The text format of every echo mode, too.
    for mode in Mode::ALL.into_iter().filter(|m| m.echoes()) {
        let out = command(&["probe", &mode.name(), "--format", "text", "--config.file"])
            .arg(&cfg)
            .arg("--state.dir")
            .arg(dir.path().join(format!("state-text-{}", mode.name())))
            .args(["--dns-server", "127.0.0.1:9"])
            .output()
            .expect("probe --format text");
        let text = String::from_utf8_lossy(&out.stdout).into_owned()
            + &String::from_utf8_lossy(&out.stderr);
        if let Some(f) = secrets.leak(&text) {
            problems.push(format!("{mode:?}: secret piece {f:?} in the text output"));
        }
    }
    // The echo modes really did see (and quote) the secrets: the test is meaningful.
    assert!(tokens.issued().len() >= 2, "XOAUTH2 modes got no token");
    assert!(problems.is_empty(), "{}", problems.join("\n"));
    drop(servers);
}

/// The daemon's status page, metrics and logs (debug, both formats) stay clean while it
/// probes servers that echo every form of the credentials.
#[test]
fn a_daemon_probing_echoing_servers_shows_no_secret_on_the_page_or_in_logs() {
    let _serial = serial::shared_blocking();
    let rt = runtime();
    let pki = TestPki::new();
    let tls = pki.pki.server_config().expect("server config");
    let dir = tempfile::tempdir().expect("tempdir");
    let pw_file = write(&dir.path().join("pw"), PASSWORD);
    let modes = [
        Mode::EchoAuthLineIn500,
        Mode::EchoPayloadIn535,
        Mode::EchoDecodedPassword,
        Mode::EchoPayloadSplitOverLines,
        Mode::EchoLoginLines,
        Mode::EchoPasswordInRcptReply,
    ];
    let mut yaml = String::from("global: {timeout: 4s}\nmailboxes:\n");
    let mut servers = Vec::new();
    for mode in modes {
        let s = HostileServer::start(&rt, mode, tls.clone());
        yaml.push_str(&format!(
            "  - name: {}\n    host: 127.0.0.1\n    port: {}\n    username: {USER}\n    password_file: {}\n    auth_mechanism: {}\n    security: none\n    allow_insecure_auth: true\n    from: {USER}\n    to: [sink@example.com]\n",
            mode.name(),
            s.addr.port(),
            pw_file.display(),
            mode.mechanism()
        ));
        servers.push(s);
    }
    let cfg = write(&dir.path().join("c.yaml"), &yaml);
    let secrets = Secrets::password(USER, PASSWORD);
    for format in ["logfmt", "json"] {
        let state = dir.path().join(format!("state-{format}"));
        let d = Daemon::start(
            &cfg,
            &state,
            &[
                "--probe.immediate",
                "--log.level",
                "debug",
                "--log.format",
                format,
            ],
            &[],
        );
        let metrics = d.wait_metrics(Duration::from_secs(30), |b| {
            modes.iter().all(|m| {
                metric_value(
                    b,
                    &format!("smtp_canary_probe_success{{mailbox=\"{}\"}}", m.name()),
                )
                .is_some()
            })
        });
        let (_, page) = d.get("/").expect("status page");
        assert!(page.contains("&lt;redacted&gt;"), "{page}");
        for (what, text) in [("/metrics", metrics), ("/", page), ("log", d.log())] {
            assert_eq!(secrets.leak(&text), None, "secret in {what} ({format})");
        }
    }
}

#[test]
fn files_that_are_not_regular_or_too_large_are_refused_at_once_by_name() {
    let _serial = serial::shared_blocking();
    let dir = tempfile::tempdir().expect("tempdir");
    let fifo = dir.path().join("fifo");
    mkfifo(&fifo);
    let big = dir.path().join("big");
    sparse(&big, 4 << 30);
    let ca = write(&dir.path().join("ca.pem"), "-----BEGIN CERTIFICATE-----\n");
    let base = |extra: &str| {
        format!(
            "mailboxes:\n  - name: m\n    host: smtp.example.com\n    username: u@example.com\n    from: u@example.com\n    to: [b@example.com]\n{extra}"
        )
    };
    let oauth = |key: &str, path: &Path| {
        let grant = if key == "client_secret_file" {
            "client_credentials".to_owned()
        } else {
            format!("refresh_token, client_secret_file: {}", ca.display())
        };
        format!(
            "    oauth2: {{token_url: 'https://login.example.com/token', client_id: c, scope: s, grant: {grant}, {key}: {}}}\n",
            path.display()
        )
    };
    for (target, what) in [
        (Path::new("/dev/zero"), "a character device"),
        (fifo.as_path(), "a FIFO"),
        (big.as_path(), "the limit for a"),
        (dir.path(), "a directory"),
    ] {
        let cases = [
            (
                "password_file",
                base(&format!("    password_file: {}\n", target.display())),
            ),
            (
                "client_secret_file",
                base(&oauth("client_secret_file", target)),
            ),
            (
                "refresh_token_file",
                base(&oauth("refresh_token_file", target)),
            ),
            (
                "tls.ca_file",
                base(&format!(
                    "    password_env: HOME\n    tls: {{ca_file: {}}}\n",
                    target.display()
                )),
            ),
        ];
        for (key, yaml) in cases {
            let cfg = write(&dir.path().join("c.yaml"), &yaml);
            let t = Instant::now();
            let (code, err) = check_config(&cfg);
            assert_eq!(code, Some(2), "{key} -> {}: {err}", target.display());
            assert!(err.contains(what), "{key} -> {}: {err}", target.display());
            assert!(
                t.elapsed() < Duration::from_secs(5),
                "{key}: {:?}",
                t.elapsed()
            );
        }
        // The config file itself, and the web config file.
        let t = Instant::now();
        let (code, err) = check_config(target);
        assert_eq!(code, Some(2), "{err}");
        assert!(err.contains(what) && !err.contains(":0:0"), "{err}");
        assert!(t.elapsed() < Duration::from_secs(5));
    }
    let (_, err) = check_config(&big);
    assert!(
        err.contains("larger than 33554432 bytes, the limit for a config file"),
        "{err}"
    );
}

/// The daemon on `cfg` and `state`, expected to refuse to start: exit code and stderr.
fn daemon_refusal(cfg: &Path, state: &Path) -> (Option<i32>, String) {
    outcome(
        command(&["--web.listen-address", "127.0.0.1:0", "--config.file"])
            .arg(cfg)
            .arg("--state.dir")
            .arg(state),
    )
}

/// A demo config, for the daemon tests that only need something to probe.
fn demo_config(dir: &Path, interval: &str) -> PathBuf {
    write(
        &dir.join("demo.yaml"),
        &format!(
            "global: {{interval: {interval}, timeout: 5s}}\nmailboxes:\n  - name: demo-a\n    provider: demo\n    username: canary@demo.example\n    from: canary@demo.example\n    to: [sink@demo.example]\n"
        ),
    )
}

#[test]
fn a_reload_that_meets_a_fifo_fails_fast_and_the_daemon_stays_responsive() {
    let _serial = serial::shared_blocking();
    let dir = tempfile::tempdir().expect("tempdir");
    let cfg = demo_config(dir.path(), "1h");
    let mut d = Daemon::start(&cfg, &dir.path().join("state"), &[], &[]);
    d.wait_metrics(Duration::from_secs(20), |b| {
        b.contains("smtp_canary_config_last_reload_successful 1")
    });
    std::fs::remove_file(&cfg).expect("rm");
    mkfifo(&cfg);
    d.signal("HUP");
    let t = Instant::now();
    let (code, body) = d.post("/-/reload").expect("reload answers");
    assert!(t.elapsed() < Duration::from_secs(5), "{:?}", t.elapsed());
    assert!(code == 500 || code == 409, "{code} {body}");
    if code == 500 {
        assert!(body.contains("FIFO"), "{body}");
    }
    // Many at once: each is answered at once (done, failed, or "in progress").
    let answers: Vec<u16> = std::thread::scope(|s| {
        let hs: Vec<_> = (0..12)
            .map(|_| s.spawn(|| d.post("/-/reload").map(|(c, _)| c).unwrap_or(0)))
            .collect();
        hs.into_iter().map(|h| h.join().unwrap_or(0)).collect()
    });
    assert!(
        answers.iter().all(|c| *c == 500 || *c == 409),
        "{answers:?}"
    );
    d.wait_metrics(Duration::from_secs(5), |b| {
        b.contains("smtp_canary_config_last_reload_successful 0")
    });
    let (st, took) = d.terminate();
    assert!(st.success(), "{st:?}");
    assert!(took < Duration::from_secs(5), "{took:?}");
}

#[test]
fn a_state_file_that_is_a_fifo_or_huge_does_not_hang_the_daemon() {
    let _serial = serial::shared_blocking();
    let dir = tempfile::tempdir().expect("tempdir");
    let cfg = demo_config(dir.path(), "10s");
    let state = dir.path().join("state");
    std::fs::create_dir_all(&state).expect("state");
    mkfifo(&state.join("mailbox-demo-a.json"));
    let d = Daemon::start(&cfg, &state, &["--probe.immediate"], &[]);
    // The FIFO is moved aside as a corrupt state file: today's budget counts as spent.
    let body = d.wait_metrics(Duration::from_secs(20), |b| {
        metric_value(
            b,
            "smtp_canary_probes_skipped_total{mailbox=\"demo-a\",reason=\"budget\"}",
        )
        .is_some_and(|v| v >= 1.0)
    });
    assert_eq!(
        metric_value(&body, "smtp_canary_probes_total{mailbox=\"demo-a\"}"),
        Some(0.0)
    );
    assert!(d.log().contains("FIFO"), "{}", d.log());
}

#[test]
fn the_state_directory_is_checked_locked_and_never_written_through_a_link() {
    let _serial = serial::shared_blocking();
    use std::os::unix::fs::PermissionsExt;
    let dir = tempfile::tempdir().expect("tempdir");
    let cfg = demo_config(dir.path(), "1h");
    let state = dir.path().join("state");
    std::fs::create_dir_all(&state).expect("state");
    std::fs::set_permissions(&state, std::fs::Permissions::from_mode(0o777)).expect("chmod");
    // A planted link where the demo CA file goes: the daemon must not write through it.
    let victim = write(&dir.path().join("victim"), "precious");
    std::os::unix::fs::symlink(&victim, state.join("demo-ca.pem")).expect("symlink");
    let d = Daemon::start(&cfg, &state, &["--probe.immediate"], &[]);
    d.wait_metrics(Duration::from_secs(20), |b| {
        metric_value(b, "smtp_canary_probes_total{mailbox=\"demo-a\"}").is_some_and(|v| v >= 1.0)
    });
    assert_eq!(
        std::fs::read_to_string(&victim).expect("victim"),
        "precious"
    );
    assert!(
        !std::fs::symlink_metadata(state.join("demo-ca.pem"))
            .expect("ca")
            .file_type()
            .is_symlink()
    );
    let mode = std::fs::metadata(&state)
        .expect("meta")
        .permissions()
        .mode()
        & 0o777;
    assert_eq!(mode, 0o700, "an open state dir of ours is fixed");

    // A second daemon on the same directory refuses to start.
    let (code, err) = daemon_refusal(&cfg, &state);
    assert_eq!(code, Some(1), "{err}");
    assert!(
        err.contains("in use by another smtp-canary (daemon pid"),
        "{err}"
    );

    // And `probe` refuses while the daemon holds the ledger.
    let (code, err) = outcome(
        command(&["probe", "demo-a", "--config.file"])
            .arg(&cfg)
            .arg("--state.dir")
            .arg(&state),
    );
    assert_eq!(code, Some(2), "{err}");
    assert!(
        err.contains("in use by another smtp-canary (daemon pid"),
        "{err}"
    );
    drop(d);
}

/// A STARTTLS relay that accepts everything from [`USER`] / [`PASSWORD`], counting
/// messages (the demo server, on a runtime of its own), and a directory for the config
/// and the state of the mailbox that uses it.
struct Relay {
    _rt: tokio::runtime::Runtime,
    pki: TestPki,
    server: ServerHandle,
    dir: tempfile::TempDir,
}

impl Relay {
    fn start() -> Relay {
        let rt = runtime();
        let pki = TestPki::new();
        let server = start_on(&rt, pki.starttls_server().users([(USER, PASSWORD)]));
        Relay {
            _rt: rt,
            pki,
            server,
            dir: tempfile::tempdir().expect("tempdir"),
        }
    }

    /// (Re)writes the config: `head`, then mailbox `name` of `provider` on the relay with
    /// the `extra` keys; the password comes from `HARDENING_PW`.
    fn config(&self, head: &str, name: &str, provider: &str, extra: &str) -> PathBuf {
        write(
            &self.dir.path().join("c.yaml"),
            &format!(
                "{head}mailboxes:\n  - name: {name}\n    provider: {provider}\n    host: 127.0.0.1\n    port: {}\n    username: {USER}\n    password_env: HARDENING_PW\n    from: {USER}\n    to: [sink@example.com]\n    tls: {{ca_file: {}, server_name: localhost}}\n{extra}",
                self.server.local_addr().port(),
                self.pki.ca_path().display()
            ),
        )
    }

    fn state(&self) -> PathBuf {
        self.dir.path().join("state")
    }

    /// `smtp-canary probe NAME` of the config, to its end: exit code and stderr.
    fn probe(&self, name: &str) -> (Option<i32>, String) {
        outcome(
            command(&["probe", name, "--config.file"])
                .arg(self.dir.path().join("c.yaml"))
                .arg("--state.dir")
                .arg(self.state())
                .env("HARDENING_PW", PASSWORD),
        )
    }

    fn sent(&self) -> usize {
        self.server.message_count()
    }
}

#[test]
fn the_probe_command_records_its_send_and_respects_the_budget() {
    let _serial = serial::shared_blocking();
    let relay = Relay::start();
    relay.config("", "b2", "generic", "    budget: {messages_per_day: 2}\n");
    let codes: Vec<Option<i32>> = (0..4).map(|_| relay.probe("b2").0).collect();
    assert_eq!(codes, [Some(0), Some(0), Some(1), Some(1)]);
    let (_, err) = relay.probe("b2");
    assert!(err.contains("not probed (budget)"), "{err}");
    assert_eq!(relay.sent(), 2);
}

#[test]
fn the_per_minute_share_holds_through_sighup_storms_and_the_probe_command() {
    let _serial = serial::shared_blocking();
    let relay = Relay::start();
    // microsoft365: 30 messages a minute, of which the canary may use 10% (3).
    let config = |interval: u32| {
        relay.config(
            "",
            "m365",
            "microsoft365",
            &format!("    interval: {interval}s\n    budget: {{messages_per_day: 500}}\n"),
        )
    };
    let cfg = config(60);
    let envs = [("HARDENING_PW", PASSWORD)];
    let d = Daemon::start(&cfg, &relay.state(), &["--probe.immediate"], &envs);
    d.wait_metrics(Duration::from_secs(20), |b| {
        metric_value(b, "smtp_canary_probes_total{mailbox=\"m365\"}").is_some_and(|v| v >= 1.0)
    });
    // 60 reloads in a few seconds, each changing the mailbox so that its schedule
    // restarts with an immediate probe.
    for i in 0..60 {
        config(60 + i % 7);
        d.signal("HUP");
        std::thread::sleep(Duration::from_millis(50));
    }
    let body = d.wait_metrics(Duration::from_secs(20), |b| {
        metric_value(
            b,
            "smtp_canary_probes_skipped_total{mailbox=\"m365\",reason=\"rate\"}",
        )
        .is_some_and(|v| v >= 1.0)
    });
    std::thread::sleep(Duration::from_secs(2));
    assert!(relay.sent() <= 3, "sent {}", relay.sent());
    assert!(
        metric_value(&body, "smtp_canary_probes_total{mailbox=\"m365\"}").unwrap_or(0.0) <= 3.0
    );
    // A clean stop writes the exact ledger (no reservation left to count as sent), so
    // what the probe command meets next is the real sends of the last minute.
    let mut d = d;
    let (st, _) = d.terminate();
    assert!(st.success());
    // The probe command meets the same gate, in the same ledger.
    let (code, err) = relay.probe("m365");
    assert_eq!(code, Some(1), "{err}");
    assert!(err.contains("not probed (rate)"), "{err}");
    assert!(relay.sent() <= 3, "sent {}", relay.sent());
}

#[test]
fn sigterm_always_stops_a_second_one_at_once_and_ready_says_503_meanwhile() {
    let _serial = serial::shared_blocking();
    let rt = runtime();
    let pki = TestPki::new();
    let tls = pki.pki.server_config().expect("server config");
    let silent = HostileServer::start(&rt, Mode::SilentGreeting, tls);
    let dir = tempfile::tempdir().expect("tempdir");
    let cfg = write(
        &dir.path().join("c.yaml"),
        &format!(
            "global: {{timeout: 25s}}\nmailboxes:\n  - name: stuck\n    host: 127.0.0.1\n    port: {}\n    security: none\n    from: {USER}\n    to: [sink@example.com]\n",
            silent.addr.port()
        ),
    );
    let mut d = Daemon::start(&cfg, &dir.path().join("state"), &["--probe.immediate"], &[]);
    d.wait_metrics(Duration::from_secs(10), |b| {
        b.contains("smtp_canary_build_info")
    });
    std::thread::sleep(Duration::from_millis(500));
    d.signal("TERM");
    std::thread::sleep(Duration::from_millis(300));
    // Shutting down, waiting for the stuck probe: still answering, and not ready.
    let (code, _) = d.get("/-/ready").expect("ready answers during shutdown");
    assert_eq!(code, 503);
    let (st, took) = {
        d.signal("TERM");
        d.terminate()
    };
    assert_eq!(st.code(), Some(1), "{st:?}");
    assert!(took < Duration::from_secs(3), "{took:?}");
}

#[test]
fn usage_and_config_mistakes_are_reported_well() {
    let _serial = serial::shared_blocking();
    // A malformed listen address is a usage error.
    let dir = tempfile::tempdir().expect("tempdir");
    let cfg = demo_config(dir.path(), "1h");
    let (code, err) = outcome(
        command(&[
            "--web.listen-address",
            "127.0.0.1:notaport",
            "--config.file",
        ])
        .arg(&cfg)
        .arg("--state.dir")
        .arg(dir.path().join("s1")),
    );
    assert_eq!(code, Some(2));
    assert!(err.contains("--web.listen-address"));

    // `:0` logs the port it really got.
    let child = ChildGuard::spawn(
        "smtp-canary daemon",
        command(&["--web.listen-address", "127.0.0.1:0"])
            .args(["--dns-server", ports::DEAD_DNS])
            .arg("--config.file")
            .arg(&cfg)
            .arg("--state.dir")
            .arg(dir.path().join("s2")),
        dir.path().join("s2.log"),
    );
    let t = Instant::now();
    let port = loop {
        let log = child.log();
        if let Some(p) = log
            .split("address=")
            .nth(1)
            .and_then(|r| r.split_whitespace().next())
            .and_then(|a| a.rsplit(':').next())
            .and_then(|p| p.parse::<u16>().ok())
        {
            break p;
        }
        assert!(t.elapsed() < Duration::from_secs(10), "{log}");
        std::thread::sleep(Duration::from_millis(50));
    };
    assert_ne!(port, 0);
    assert!(http::get(ports::loopback(port), "/-/healthy").is_ok());
    drop(child);

    // A quoted 'yes' is not a boolean, and one bad value hides none of the others.
    let bad = write(
        &dir.path().join("bad.yaml"),
        "mailboxes:\n  - name: m\n    host: smtp.example.com\n    port: abc\n    security: bogus\n    allow_insecure_auth: 'yes'\n    from: nobody\n    to: [b@example.com]\n",
    );
    let (code, err) = check_config(&bad);
    assert_eq!(code, Some(2));
    for key in ["].port", "].security", "].allow_insecure_auth", "].from"] {
        assert!(err.contains(key), "{key} missing: {err}");
    }
    assert!(err.contains("4 error(s)"), "{err}");

    // A name too long for the state file is refused at load.
    let long = write(
        &dir.path().join("long.yaml"),
        &format!(
            "mailboxes:\n  - name: {}\n    host: smtp.example.com\n    from: a@example.com\n    to: [b@example.com]\n",
            "n".repeat(300)
        ),
    );
    let (code, err) = check_config(&long);
    assert_eq!(code, Some(2), "{err}");
    assert!(err.contains("the limit is 128"), "{err}");
}

/// As root: a state directory on a tiny tmpfs that fills up, then goes read-only. Five
/// `kill -9` cycles in each case, with `budget: 2`: the relay never receives more than
/// the budget, and the skips are counted as `state`.
#[test]
#[ignore = "needs root (mounts a tmpfs); run by scripts/test-all.sh"]
fn kill9_cycles_on_a_full_then_read_only_state_dir_never_over_send() {
    let _serial = serial::shared_blocking();
    assert!(is_root(), "this fault test mounts a tmpfs: run it as root");
    let relay = Relay::start();
    let cfg = relay.config(
        "global: {interval: 10s, timeout: 5s}\n",
        "b2",
        "generic",
        "    budget: {messages_per_day: 2}\n",
    );
    let dir = &relay.dir;
    let mnt = dir.path().join("mnt");
    std::fs::create_dir_all(&mnt).expect("mnt");
    let sh = |cmd: &str| {
        let st = Command::new("sh").arg("-c").arg(cmd).status().expect("sh");
        assert!(st.success(), "{cmd}");
    };
    sh(&format!(
        "mount -t tmpfs -o size=64k,mode=0700 tmpfs {}",
        mnt.display()
    ));
    struct Unmount(PathBuf);
    impl Drop for Unmount {
        fn drop(&mut self) {
            let _ = Command::new("umount").arg("-l").arg(&self.0).status();
        }
    }
    let _unmount = Unmount(mnt.clone());
    let state = mnt.join("state");
    let logs = dir.path().join("logs");
    let envs = [("HARDENING_PW", PASSWORD)];
    let cycle = |label: &str| {
        for i in 0..5 {
            // The daemon log lives outside the state dir (it is full or read-only).
            let mut d = Daemon::start_with_log(
                &cfg,
                &state,
                &logs.join(format!("{label}-{i}.log")),
                &["--probe.immediate"],
                &envs,
            );
            let body = d.wait_metrics(Duration::from_secs(20), |b| {
                metric_value(
                    b,
                    "smtp_canary_probes_skipped_total{mailbox=\"b2\",reason=\"state\"}",
                )
                .is_some_and(|v| v >= 1.0)
            });
            assert_eq!(
                metric_value(&body, "smtp_canary_probes_total{mailbox=\"b2\"}"),
                Some(0.0),
                "{label} cycle {i}"
            );
            d.kill9();
        }
    };
    // Full: fill the tmpfs after the directory and its lock exist.
    std::fs::create_dir_all(&state).expect("state");
    {
        let d = Daemon::start_with_log(&cfg, &state, &logs.join("first.log"), &[], &envs);
        d.wait_metrics(Duration::from_secs(10), |b| {
            b.contains("smtp_canary_build_info")
        });
    }
    let _ = std::fs::remove_file(state.join("mailbox-b2.json"));
    let _ = Command::new("dd")
        .args(["if=/dev/zero", "bs=4k", "count=64"])
        .arg(format!("of={}", mnt.join("filler").display()))
        .status();
    cycle("full");
    assert_eq!(relay.sent(), 0, "sent with a full state dir");
    // Read-only, with a ledger that allows sends: still nothing without a record.
    let _ = std::fs::remove_file(mnt.join("filler"));
    sh(&format!("mount -o remount,ro {}", mnt.display()));
    cycle("ro");
    assert_eq!(relay.sent(), 0, "sent with a read-only state dir");
    // Writable again: the budget of 2 holds across kill -9 cycles too.
    sh(&format!("mount -o remount,rw {}", mnt.display()));
    for i in 0..5 {
        let mut d = Daemon::start_with_log(
            &cfg,
            &state,
            &logs.join(format!("rw-{i}.log")),
            &["--probe.immediate"],
            &envs,
        );
        std::thread::sleep(Duration::from_millis(1500));
        d.kill9();
    }
    assert!(relay.sent() <= 2, "sent {}", relay.sent());
    assert!(relay.sent() >= 1, "nothing sent once writable");
}

/// As root: a state directory owned by another user is refused.
#[test]
#[ignore = "needs root (chown); run by scripts/test-all.sh"]
fn a_state_dir_owned_by_another_user_is_refused() {
    let _serial = serial::shared_blocking();
    assert!(is_root(), "this test chowns a directory: run it as root");
    let dir = tempfile::tempdir().expect("tempdir");
    let cfg = demo_config(dir.path(), "1h");
    let state = dir.path().join("state");
    std::fs::create_dir_all(&state).expect("state");
    let st = Command::new("chown")
        .arg("65534:65534")
        .arg(&state)
        .status()
        .expect("chown");
    assert!(st.success());
    let (code, err) = daemon_refusal(&cfg, &state);
    assert_eq!(code, Some(1), "{err}");
    assert!(err.contains("is owned by uid 65534"), "{err}");
}
