//! The DNS audit against a real authoritative server: a test-owned `knotd` on a free
//! loopback port serving the zones in `tests/audit_zones/` (one good domain, one broken
//! domain per finding), plus in-test UDP responders for SERVFAIL and a black hole.
//!
//! Each test starts its own knotd from a config in a temporary directory and kills it on
//! drop; the shared stack in `tests/stack/` (and its Knot on port 5353) is never touched.
//! Run with `cargo test --test integration -- --ignored audit_knot::` (knotd is the
//! Debian package `knot`, which `tests/stack/up.sh` installs).

use std::collections::BTreeSet;
use std::net::{SocketAddr, UdpSocket};
use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::sync::Arc;
use std::time::{Duration, Instant};

use serde_json::Value;
use smtp_canary::{
    audit::{
        AuditOptions, Auditor, CHECKS, DomainReport, Severity, Target, add_basic_auth_findings,
    },
    config::{self, Provider},
    metrics::Metrics,
    probe::{Resolver, parse_dns_server},
};

use crate::support::daemon::{ChildGuard, Daemon, run};
use crate::support::dns::{responder, soa_query};
use crate::support::ports::free_udp_and_tcp_port;
use crate::support::{repo, serial, tool};

/// A knotd serving `tests/audit_zones/` on 127.0.0.1, killed on drop.
struct Knot {
    _child: ChildGuard,
    addr: SocketAddr,
    dir: tempfile::TempDir,
}

impl Knot {
    fn start() -> Knot {
        let knotd = tool(
            "knotd",
            "the Debian package `knot`: sudo tests/stack/up.sh installs it",
        );
        let dir = tempfile::tempdir().expect("tempdir");
        let zones = dir.path().join("zones");
        for sub in ["zones", "run", "db"] {
            std::fs::create_dir_all(dir.path().join(sub)).expect("create knot dirs");
        }
        let src = repo().join("tests/audit_zones");
        let mut names = Vec::new();
        for entry in std::fs::read_dir(&src).expect("tests/audit_zones") {
            let path = entry.expect("zone entry").path();
            let file = path
                .file_name()
                .and_then(|f| f.to_str())
                .unwrap_or_default()
                .to_string();
            if let Some(zone) = file.strip_suffix(".zone") {
                std::fs::copy(&path, zones.join(&file)).expect("copy zone");
                names.push(zone.to_string());
            }
        }
        for attempt in 0..5 {
            let port = free_udp_and_tcp_port();
            let conf = dir.path().join("knot.conf");
            let zone_list: String = names.iter().map(|z| format!("  - domain: {z}\n")).collect();
            std::fs::write(
                &conf,
                format!(
                    "server:\n    rundir: \"{run}\"\n    listen: 127.0.0.1@{port}\n    identity: \"\"\n    version: \"\"\n\
                     log:\n  - target: stderr\n    any: info\n\
                     database:\n    storage: \"{db}\"\n\
                     template:\n  - id: default\n    storage: \"{zones}\"\n    file: \"%s.zone\"\n    zonefile-sync: -1\n    zonefile-load: whole\n    journal-content: none\n\
                     zone:\n{zone_list}",
                    run = dir.path().join("run").display(),
                    db = dir.path().join("db").display(),
                    zones = zones.display(),
                ),
            )
            .expect("write knot.conf");
            let log_path = dir.path().join(format!("knot-{attempt}.log"));
            let mut child =
                ChildGuard::spawn("knotd", Command::new(&knotd).arg("-c").arg(&conf), log_path);
            let addr = SocketAddr::from(([127, 0, 0, 1], port));
            if wait_ready(&mut child, addr) {
                return Knot {
                    _child: child,
                    addr,
                    dir,
                };
            }
            // Another process may have taken the port in between: try another one.
            let log = child.log();
            drop(child);
            eprintln!("knotd attempt {attempt} on port {port} did not come up:\n{log}");
        }
        panic!("knotd did not start on a free loopback port after 5 attempts (see the logs above)");
    }

    fn dns(&self) -> String {
        self.addr.to_string()
    }
}

/// Polls with an SOA query for `test.` until knotd answers it (up to 10 s).
fn wait_ready(child: &mut ChildGuard, addr: SocketAddr) -> bool {
    let sock = UdpSocket::bind("127.0.0.1:0").expect("bind");
    sock.set_read_timeout(Some(Duration::from_millis(200)))
        .expect("timeout");
    let deadline = Instant::now() + Duration::from_secs(10);
    let mut id = 1u16;
    while Instant::now() < deadline {
        if child.exited() {
            return false;
        }
        id = id.wrapping_add(1);
        let _ = sock.send_to(&soa_query(id, "test."), addr);
        let mut buf = [0u8; 512];
        if let Ok((n, _)) = sock.recv_from(&mut buf) {
            // NOERROR with an answer: the zone is loaded.
            if n > 12 && buf[..2] == id.to_be_bytes() && buf[3] & 0x0f == 0 && buf[7] > 0 {
                return true;
            }
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    false
}

/// `targets` audited with the default options through the DNS server at `dns`.
async fn audit(dns: &str, targets: &[Target]) -> Vec<DomainReport> {
    auditor(dns, AuditOptions::default())
        .audit_all(targets)
        .await
}

impl Knot {
    /// `targets` audited with the default options against this server.
    async fn audit(&self, targets: &[Target]) -> Vec<DomainReport> {
        audit(&self.dns(), targets).await
    }
}

fn auditor(dns: &str, opts: AuditOptions) -> Auditor {
    let addr = parse_dns_server(dns).expect("dns server");
    let resolver = Resolver::new(Some(addr)).expect("resolver");
    Auditor::new(resolver.hickory().clone(), opts)
}

fn target(domain: &str, provider: Provider, selectors: &[&str]) -> Target {
    Target {
        domain: domain.into(),
        provider,
        dkim_selectors: selectors.iter().map(|s| s.to_string()).collect(),
    }
}

fn findings(r: &DomainReport) -> Vec<(&'static str, Severity)> {
    r.findings().map(|f| (f.check.id(), f.severity)).collect()
}

fn describe(r: &DomainReport) -> String {
    serde_json::to_string_pretty(&r.to_json()).unwrap_or_default()
}

use Provider::{Generic, Microsoft365};
use Severity::{Error, Info, Warning};

/// Every broken domain of the zone, how it is audited (provider, DKIM selectors), and
/// the one finding it must show, if any.
/// A domain, its provider and DKIM selectors, and the one finding it must show.
type Row = (
    &'static str,
    Provider,
    &'static [&'static str],
    Option<(&'static str, Severity)>,
);

fn cases() -> Vec<(Target, Vec<(&'static str, Severity)>)> {
    const S1: &[&str] = &["s1"];
    const NONE: &[&str] = &[];
    #[rustfmt::skip]
    let rows: [Row; 22] = [
        ("lookups.test",      Generic,      S1,   Some(("spf.too_many_lookups", Error))),
        ("loop.test",         Generic,      S1,   Some(("spf.too_many_lookups", Error))),
        ("twospf.test",       Generic,      S1,   Some(("spf.multiple", Error))),
        ("spfsyntax.test",    Generic,      S1,   Some(("spf.syntax", Error))),
        ("void.test",         Generic,      S1,   Some(("spf.void_lookups", Error))),
        ("plusall.test",      Generic,      S1,   Some(("spf.permissive_all", Error))),
        ("noall.test",        Generic,      S1,   Some(("spf.no_all", Warning))),
        ("nospf.test",        Generic,      S1,   Some(("spf.missing", Error))),
        ("noprovider.test",   Microsoft365, NONE, Some(("spf.provider_not_authorized", Error))),
        ("revoked.test",      Generic,      S1,   Some(("dkim.revoked", Error))),
        ("weak.test",         Generic,      S1,   Some(("dkim.weak_key", Warning))),
        ("tiny.test",         Generic,      S1,   Some(("dkim.weak_key", Error))),
        ("nodkim.test",       Generic,      S1,   Some(("dkim.missing", Error))),
        ("m365nokeys.test",   Microsoft365, NONE, Some(("dkim.missing", Error))),
        ("dkimsyntax.test",   Generic,      S1,   Some(("dkim.syntax", Error))),
        ("nodmarc.test",      Generic,      S1,   Some(("dmarc.missing", Error))),
        ("twodmarc.test",     Generic,      S1,   Some(("dmarc.multiple", Error))),
        ("dmarcsyntax.test",  Generic,      S1,   Some(("dmarc.syntax", Error))),
        ("pnone.test",        Generic,      S1,   Some(("dmarc.policy_none", Warning))),
        ("nomx.test",         Generic,      S1,   Some(("mx.missing", Info))),
        ("sub.fallback.test", Generic,      S1,   None),
        ("legacy.test",       Microsoft365, NONE, None),
    ];
    rows.into_iter()
        .map(|(domain, provider, selectors, finding)| {
            (
                target(domain, provider, selectors),
                finding.into_iter().collect(),
            )
        })
        .collect()
}

fn good() -> Target {
    target("example.test", Microsoft365, &["ed"])
}

/// A config whose one Microsoft 365 mailbox (of legacy.test) logs in with a password.
fn legacy_config(dir: &Path) -> PathBuf {
    let secret = dir.join("password");
    std::fs::write(&secret, "not-a-real-password\n").expect("write password file");
    let path = dir.join("config.yaml");
    std::fs::write(
        &path,
        format!(
            "mailboxes:\n  - name: legacy-m365\n    provider: microsoft365\n    username: a@legacy.test\n    \
             password_file: {}\n    from: a@legacy.test\n    to: [b@legacy.test]\n",
            secret.display()
        ),
    )
    .expect("write config");
    path
}

#[tokio::test]
#[ignore = "needs knotd (tests/stack/up.sh installs it)"]
async fn every_finding_appears_and_none_for_the_good_domain() {
    let _serial = serial::shared().await;
    let knot = Knot::start();
    let cases = cases();
    let mut targets: Vec<Target> = cases.iter().map(|(t, _)| t.clone()).collect();
    targets.push(good());
    let reports = audit(&knot.dns(), &targets).await;
    let cfg = config::load(&legacy_config(knot.dir.path())).expect("config");

    let mut seen: BTreeSet<&'static str> = BTreeSet::new();
    for ((t, want), r) in cases.iter().zip(&reports) {
        let mut r = r.clone();
        add_basic_auth_findings(&mut r, &cfg);
        assert!(r.complete(), "{}: {:?}", t.domain, r.errors);
        let mut want = want.clone();
        if t.domain == "legacy.test" {
            want.push(("auth.basic_auth_retiring", Warning));
        }
        assert_eq!(findings(&r), want, "{}:\n{}", t.domain, describe(&r));
        seen.extend(findings(&r).iter().map(|(c, _)| *c));
    }
    let all: BTreeSet<&str> = CHECKS.iter().map(|c| c.id).collect();
    assert_eq!(
        seen, all,
        "every finding id of the contract appears for some domain"
    );

    let good = reports.last().expect("good report");
    assert!(good.complete(), "{:?}", good.errors);
    assert_eq!(findings(good), [], "{}", describe(good));
}

#[tokio::test]
#[ignore = "needs knotd (tests/stack/up.sh installs it)"]
async fn good_domain_details_and_fallback() {
    let _serial = serial::shared().await;
    let targets = [
        good(),
        target("sub.fallback.test", Generic, &[]),
        target("lookups.test", Generic, &[]),
    ];
    let reports = Knot::start().audit(&targets).await;
    let j = reports[0].to_json();
    assert_eq!(j["spf"]["record"], "v=spf1 include:_spf.example.test -all");
    // include:_spf.example.test, then include:spf.protection.outlook.com inside it.
    assert_eq!(j["spf"]["lookups"], 2);
    assert_eq!(j["spf"]["void_lookups"], 0);
    assert_eq!(j["spf"]["all"], "-all");
    let sel1 = &j["dkim"][0];
    assert_eq!(
        (sel1["selector"].as_str(), sel1["present"].as_bool()),
        (Some("selector1"), Some(true))
    );
    assert_eq!(
        (sel1["key_type"].as_str(), sel1["bits"].as_u64()),
        (Some("rsa"), Some(2048))
    );
    assert_eq!(
        sel1["cname"],
        "selector1-example-test._domainkey.example.onmicrosoft.com"
    );
    assert_eq!(
        j["dkim"][1]["present"], false,
        "selector2's CNAME target does not exist"
    );
    assert_eq!(
        (
            j["dkim"][2]["key_type"].as_str(),
            j["dkim"][2]["bits"].as_u64()
        ),
        (Some("ed25519"), Some(256))
    );
    assert_eq!(j["dmarc"]["policy"], "reject");
    assert_eq!(j["dmarc"]["source"], "_dmarc.example.test");
    assert_eq!(j["dmarc"]["adkim"], "s");
    assert_eq!(j["mx"][0], "10 example-test.mail.protection.outlook.com.");
    assert!(j["error"].is_null());

    let sub = reports[1].to_json();
    assert_eq!(sub["dmarc"]["source"], "_dmarc.fallback.test");
    assert_eq!(sub["dmarc"]["policy"], "reject");
    assert_eq!(reports[2].spf.as_ref().map(|s| s.lookups), Some(11));
}

#[tokio::test]
#[ignore = "needs knotd (tests/stack/up.sh installs it)"]
async fn nxdomain_is_an_answer_and_servfail_is_not() {
    let _serial = serial::shared().await;
    let targets = [
        target("gone.test", Generic, &[]),
        target("servfail.test", Generic, &[]),
    ];
    let reports = Knot::start().audit(&targets).await;
    let gone = &reports[0];
    assert!(gone.complete(), "NXDOMAIN is an answer: {:?}", gone.errors);
    assert_eq!(
        findings(gone),
        [
            ("spf.missing", Error),
            ("dmarc.missing", Error),
            ("mx.missing", Info)
        ],
        "{}",
        describe(gone)
    );
    let sf = &reports[1];
    assert!(!sf.complete());
    assert_eq!(findings(sf), []);
    let j = sf.to_json();
    assert!(
        j["error"]
            .as_str()
            .unwrap_or_default()
            .contains("servfail.test TXT: SERVFAIL"),
        "{j}"
    );
    assert!(j["spf"].is_null() && j["dmarc"].is_null());
}

fn metrics_text(m: &Metrics) -> String {
    m.render()
}

#[tokio::test]
#[ignore = "needs knotd (tests/stack/up.sh installs it)"]
async fn servfail_and_timeout_keep_the_last_good_findings() {
    let _serial = serial::shared().await;
    let knot = Knot::start();
    let metrics = Metrics::new();
    let t = target("pnone.test", Generic, &["s1"]);
    let good = audit(&knot.dns(), std::slice::from_ref(&t)).await;
    metrics.record_audit(&good[0]);
    let finding = r#"smtp_canary_audit_finding{check="dmarc.policy_none",domain="pnone.test",severity="warning"} 1"#;
    let text = metrics_text(&metrics);
    assert!(
        text.contains(r#"smtp_canary_audit_success{domain="pnone.test"} 1"#),
        "{text}"
    );
    assert!(text.contains(finding), "{text}");
    assert!(
        text.contains(r#"smtp_canary_dmarc_policy{domain="pnone.test"} 0"#),
        "{text}"
    );
    assert!(
        text.contains(r#"smtp_canary_dkim_key_bits{domain="pnone.test",selector="s1"} 2048"#),
        "{text}"
    );
    assert!(
        text.contains(r#"smtp_canary_spf_dns_lookups{domain="pnone.test"} 0"#),
        "{text}"
    );

    // A failed audit is recorded as one, and the last good findings stay.
    let keeps_the_last_findings = |r: &DomainReport| {
        metrics.record_audit(r);
        let text = metrics_text(&metrics);
        assert!(
            text.contains(r#"smtp_canary_audit_success{domain="pnone.test"} 0"#),
            "{text}"
        );
        assert!(
            text.contains(finding),
            "the last good findings stay: {text}"
        );
    };

    // SERVFAIL for everything.
    let servfail = responder(true).await;
    let r = audit(&servfail.addr.to_string(), std::slice::from_ref(&t)).await;
    assert!(!r[0].complete());
    assert!(
        r[0].errors
            .iter()
            .any(|e| e.to_string().contains("SERVFAIL")),
        "{:?}",
        r[0].errors
    );
    keeps_the_last_findings(&r[0]);

    // A server that never answers: every query hits its deadline, the audit its own.
    let hole = responder(false).await;
    let opts = AuditOptions {
        deadline: Duration::from_secs(3),
        query_timeout: Duration::from_secs(1),
        ..AuditOptions::default()
    };
    let started = Instant::now();
    let r = auditor(&hole.addr.to_string(), opts)
        .audit_all(std::slice::from_ref(&t))
        .await;
    assert!(
        started.elapsed() < Duration::from_secs(5),
        "{:?}",
        started.elapsed()
    );
    assert!(!r[0].complete());
    assert!(
        r[0].errors.iter().all(|e| {
            let s = e.to_string();
            s.contains("no answer within") || s.contains("deadline")
        }),
        "{:?}",
        r[0].errors
    );
    keeps_the_last_findings(&r[0]);
    assert!(
        text.contains(r#"smtp_canary_dkim_key_bits{domain="pnone.test",selector="s1"} 2048"#),
        "{text}"
    );
}

#[tokio::test]
#[ignore = "needs knotd (tests/stack/up.sh installs it)"]
async fn changed_findings_replace_stale_series_but_not_basic_auth() {
    let _serial = serial::shared().await;
    let knot = Knot::start();
    let metrics = Arc::new(Metrics::new());
    // The OAuth work owns this series; the audit must leave it alone.
    metrics.set_basic_auth_findings(["weak.test"]);
    let a = auditor(&knot.dns(), AuditOptions::default());
    let with_key = a.audit_all(&[target("weak.test", Generic, &["s1"])]).await;
    metrics.record_audit(&with_key[0]);
    let text = metrics.render();
    let weak = r#"smtp_canary_audit_finding{check="dkim.weak_key",domain="weak.test",severity="warning"} 1"#;
    let bits = r#"smtp_canary_dkim_key_bits{domain="weak.test",selector="s1"} 1024"#;
    assert!(text.contains(weak) && text.contains(bits), "{text}");
    // Audited without the selector: the weak-key finding and the key size are gone.
    let without = a.audit_all(&[target("weak.test", Generic, &[])]).await;
    assert_eq!(findings(&without[0]), []);
    metrics.record_audit(&without[0]);
    let text = metrics.render();
    assert!(!text.contains(weak) && !text.contains(bits), "{text}");
    assert!(
        text.contains(r#"smtp_canary_audit_finding{check="auth.basic_auth_retiring",domain="weak.test",severity="warning"} 1"#),
        "{text}"
    );
    assert!(
        text.contains(r#"smtp_canary_audit_success{domain="weak.test"} 1"#),
        "{text}"
    );
}

fn binary(args: &[&str]) -> Output {
    run(args, &[("NO_COLOR", "")])
}

#[test]
#[ignore = "needs knotd (tests/stack/up.sh installs it)"]
fn the_binary_prints_the_contract_json() {
    let _serial = serial::shared_blocking();
    let knot = Knot::start();
    let dns = knot.dns();
    let no_config = knot.dir.path().join("absent.yaml");
    let no_config = no_config.to_str().expect("utf-8 path");
    // `audit ARGS` against the test's knotd, with `config`.
    let audit = |args: &[&str], config: &str| {
        binary(
            &[
                &["audit"],
                args,
                &["--dns-server", &dns, "--config.file", config],
            ]
            .concat(),
        )
    };
    // The Done-when: `audit example.test --dns-server 127.0.0.1:PORT --format json`.
    let out = audit(
        &[
            "example.test",
            "--provider",
            "microsoft365",
            "--dkim-selector",
            "ed",
            "--format",
            "json",
        ],
        no_config,
    );
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert_eq!(
        out.status.code(),
        Some(0),
        "{stdout}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let j: Value = serde_json::from_str(&stdout).expect("one JSON object");
    let keys: Vec<&str> = j
        .as_object()
        .expect("object")
        .keys()
        .map(String::as_str)
        .collect();
    assert_eq!(
        keys,
        ["domain", "spf", "dkim", "dmarc", "mx", "findings", "error"]
    );
    assert_eq!(j["domain"], "example.test");
    assert_eq!(j["findings"], serde_json::json!([]));
    for k in ["record", "lookups", "void_lookups", "all"] {
        assert!(j["spf"].get(k).is_some(), "spf.{k}");
    }
    for k in ["selector", "present", "key_type", "bits", "revoked"] {
        assert!(j["dkim"][0].get(k).is_some(), "dkim[].{k}");
    }
    for k in ["record", "policy", "source"] {
        assert!(j["dmarc"].get(k).is_some(), "dmarc.{k}");
    }

    // Several domains: an array, exit 1 (errors), a config adds the Basic-auth finding.
    let config = legacy_config(knot.dir.path());
    let out = audit(
        &[
            "nodmarc.test",
            "weak.test",
            "legacy.test",
            "--format",
            "json",
        ],
        config.to_str().expect("utf-8 path"),
    );
    assert_eq!(
        out.status.code(),
        Some(1),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let j: Value = serde_json::from_slice(&out.stdout).expect("JSON array");
    let checks = |i: usize| -> Vec<String> {
        j[i]["findings"]
            .as_array()
            .expect("findings")
            .iter()
            .map(|f| f["check"].as_str().unwrap_or("").to_string())
            .collect()
    };
    assert_eq!(j.as_array().map(Vec::len), Some(3));
    assert_eq!(checks(0), ["dmarc.missing"]);
    assert!(j[0]["dmarc"].is_null());
    // No --provider and no selectors: weak.test is audited without DKIM.
    assert_eq!(checks(1), Vec::<String>::new());
    // legacy.test takes microsoft365 (and its selectors) from its mailbox in the config.
    assert_eq!(checks(2), ["auth.basic_auth_retiring"]);
    assert_eq!(j[2]["dkim"][0]["bits"], 2048);

    // Warnings only: exit 0. Text: one line per check, no colour when not a terminal.
    let out = audit(&["pnone.test", "--dkim-selector", "s1"], no_config);
    let text = String::from_utf8_lossy(&out.stdout);
    assert_eq!(out.status.code(), Some(0), "{text}");
    assert!(
        text.starts_with("pnone.test: warn (0 error(s), 1 warning(s), 0 info)"),
        "{text}"
    );
    assert!(text.contains("\n  warn  dmarc.policy_none "), "{text}");
    assert!(
        text.contains("\n  pass  dkim.weak_key                s1: rsa 2048 bits\n"),
        "{text}"
    );
    assert!(!text.contains('\x1b'), "{text}");

    // SERVFAIL: exit 1 with the error in the JSON.
    let out = audit(&["servfail.test", "--format", "json"], no_config);
    assert_eq!(out.status.code(), Some(1));
    let j: Value = serde_json::from_slice(&out.stdout).expect("JSON");
    assert!(
        j["error"].as_str().unwrap_or_default().contains("SERVFAIL"),
        "{j}"
    );

    // Usage errors: exit 2.
    for bad in [
        &["audit"][..],
        &["audit", "not a domain"],
        &["audit", "x.test", "--provider", "aol"],
    ] {
        assert_eq!(binary(bad).status.code(), Some(2), "{bad:?}");
    }
}

#[test]
#[ignore = "needs knotd (tests/stack/up.sh installs it)"]
fn the_daemon_exports_the_audit_metrics() {
    let _serial = serial::shared_blocking();
    let knot = Knot::start();
    let dir = knot.dir.path();
    let config = dir.join("daemon.yaml");
    std::fs::write(
        &config,
        "mailboxes:\n  - name: demo-healthy\n    provider: demo\n    username: healthy@example.test\n    \
         from: healthy@example.test\n    to: [sink@example.test]\n\
         dns_audit:\n  interval: 1h\n  domains:\n    - domain: example.test\n      provider: microsoft365\n      \
         dkim_selectors: [ed]\n    - domain: pnone.test\n      dkim_selectors: [s1]\n",
    )
    .expect("write config");
    let daemon = Daemon::start(
        &config,
        &dir.join("state"),
        &["--dns-server", &knot.dns()],
        &[],
    );
    let want = [
        r#"smtp_canary_audit_success{domain="example.test"} 1"#,
        r#"smtp_canary_audit_success{domain="pnone.test"} 1"#,
        r#"smtp_canary_spf_dns_lookups{domain="example.test"} 2"#,
        r#"smtp_canary_dkim_key_bits{domain="example.test",selector="selector1"} 2048"#,
        r#"smtp_canary_dkim_key_bits{domain="example.test",selector="ed"} 256"#,
        r#"smtp_canary_dmarc_policy{domain="example.test"} 2"#,
        r#"smtp_canary_dmarc_policy{domain="pnone.test"} 0"#,
        r#"smtp_canary_audit_finding{check="dmarc.policy_none",domain="pnone.test",severity="warning"} 1"#,
    ];
    let deadline = Instant::now() + Duration::from_secs(20);
    let mut last = String::new();
    while Instant::now() < deadline {
        if let Some((_, body)) = daemon.get("/metrics") {
            if want.iter().all(|w| body.contains(w)) {
                let good_findings: Vec<&str> = body
                    .lines()
                    .filter(|l| {
                        l.starts_with("smtp_canary_audit_finding{")
                            && l.contains(r#"domain="example.test""#)
                    })
                    .collect();
                assert!(
                    good_findings.is_empty(),
                    "the good domain has no finding: {good_findings:?}"
                );
                return;
            }
            last = body;
        }
        std::thread::sleep(Duration::from_millis(200));
    }
    let audit: Vec<&str> = last
        .lines()
        .filter(|l| {
            l.contains("audit") || l.contains("dkim") || l.contains("dmarc") || l.contains("spf")
        })
        .collect();
    panic!(
        "the daemon did not export the audit metrics within 20 s:\n{}",
        audit.join("\n")
    );
}
