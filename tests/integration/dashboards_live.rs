//! The dashboard and the alert rules against the real thing: a real smtp-canary daemon
//! probing real mailboxes, scraped by a real Prometheus that loads the shipped
//! `deploy/prometheus/prometheus.yml` job and `alerts.yml`.
//!
//! The daemon's config is chosen so that every dashboard panel has data:
//! - the two demo mailboxes (in-process relay): success, `auth_policy` 5.7.139, quotas
//!   and budget (the demo preset has Microsoft 365's limits), the occasional 432 4.3.2;
//! - a password mailbox on the stack's Postfix (STARTTLS, PLAIN/LOGIN, the stack's CA);
//! - an OAuth mailbox: XOAUTH2 through Postfix + Dovecot, whose introspection endpoint
//!   (127.0.0.1:18080) the test binary serves together with the token endpoint
//!   (`Stack::token_endpoint`): token expiry, mechanism XOAUTH2;
//! - an OAuth mailbox whose token endpoint answers `invalid_client` (AADSTS7000215):
//!   `oauth_token_failures_total{reason="invalid_client"}`, class `oauth_token`;
//! - a `provider: microsoft365` password mailbox pointed at the stack's Postfix (host
//!   127.0.0.1, the stack's port and CA; the preset refuses only port 465 and implicit
//!   TLS): the `auth.basic_auth_retiring` finding;
//! - the demo sinks: canaries delivered, junked (junk-placement) and bounced with 5.7.708
//!   (outbound-spam-blocked, its DSN in its own inbox), and a sink on a closed port;
//! - `dns_audit` of the stack's domain example.test against the stack's Knot
//!   (`--dns-server`): SPF lookups, DKIM bits (selector `canary`), DMARC policy.
//!
//! Then every panel query, with the template variables filled in as Grafana does with
//! "All" selected, must be accepted by `/api/v1/query` and return at least one series;
//! every variable query must find values; every alert expression must be accepted, every
//! rule must evaluate without error, and the alerts this data should fire do.
//!
//! `#[ignore]`d like the other stack tests; `scripts/test-all.sh` runs it with
//! `cargo test --test integration -- --ignored dashboards_live::`. It panics when the
//! stack is not up. The endpoint on the introspection port is one per process, shared
//! with `oauth_stack`.

use std::collections::BTreeSet;
use std::time::{Duration, Instant};

use serde_json::Value;

use crate::support::daemon::Daemon;
use crate::support::deploy;
use crate::support::fixtures::{CLIENT_ID, CLIENT_SECRET, SCOPE};
use crate::support::ports::fresh_source;
use crate::support::stack::Stack;
use crate::support::stack::prometheus::TestPrometheus;
use crate::support::{serial, wait_until};

/// Environment variables the daemon reads its secrets from.
const PASSWORD_ENV: &str = "DASHBOARDS_LIVE_PASSWORD";
const SECRET_ENV: &str = "DASHBOARDS_LIVE_CLIENT_SECRET";

/// How long the probes get to fill every panel.
const DATA_DEADLINE: Duration = Duration::from_secs(150);

/// The daemon's config (see the module docs). Secrets are only named, never written.
fn config(stack: &Stack, token_base: &str) -> String {
    let (host, port, ca, name, user) = (
        stack.host(),
        stack.smtp_port(),
        stack.ca_file(),
        stack.tls_name(),
        stack.user(),
    );
    // A fresh loopback source address per stack mailbox: Postfix's per-client message
    // limit (5 a minute) then never throttles these probes. 127.200-254.x.y is used by
    // no other test file.
    let src = || fresh_source(200..255);
    let stack_mailbox = |mb: &str, interval: &str, src: std::net::Ipv4Addr| {
        format!(
            "  - name: {mb}
    host: {host}
    port: {port}
    username: {user}
    from: {user}
    to: [{user}]
    interval: {interval}
    timeout: 15s
    source_address: {src}
    tls: {{ca_file: {ca}, server_name: {name}}}
"
        )
    };
    let oauth = |token_path: &str| {
        format!(
            "    oauth2:
      grant: client_credentials
      token_url: {token_base}{token_path}
      scope: {scope}
      client_id: {client_id}
      client_secret_env: {SECRET_ENV}
",
            scope = SCOPE,
            client_id = CLIENT_ID,
        )
    };
    let mut y = String::from(
        "# written by tests/integration/dashboards_live.rs
global:
  helo_name: canary-test.example.test
mailboxes:
  - name: demo-healthy
    provider: demo
    username: canary@demo.example
    from: canary@demo.example
    to: [canary-sink@demo.example]
    interval: 10s
    timeout: 5s
  - name: demo-smtp-auth-disabled
    provider: demo
    username: smtp-auth-disabled@demo.example
    from: smtp-auth-disabled@demo.example
    to: [canary-sink@demo.example]
    interval: 10s
    timeout: 5s
  - name: demo-junk-placement
    provider: demo
    username: junk-placement@demo.example
    from: junk-placement@demo.example
    to: [canary-sink@demo.example]
    interval: 10s
    timeout: 5s
  - name: demo-outbound-blocked
    provider: demo
    username: outbound-spam-blocked@demo.example
    from: outbound-spam-blocked@demo.example
    to: [canary-sink@demo.example]
    interval: 10s
    timeout: 5s
",
    );
    y += &stack_mailbox("stack-password", "20s", src());
    y += &format!("    password_env: {PASSWORD_ENV}\n");
    y += &stack_mailbox("stack-oauth", "20s", src());
    y += &oauth("/dashboards-live/oauth2/v2.0/token");
    // The endpoint answers every path with `invalid-client` in it with AADSTS7000215.
    y += &stack_mailbox("stack-oauth-bad-secret", "20s", src());
    y += &oauth("/invalid-client/oauth2/v2.0/token");
    // microsoft365 with a password: the Basic-auth retirement finding. Its preset has
    // Exchange Online's limits (30 a minute, 10,000 recipients a day), so the canary may
    // send at most every 23 s and 1,000 a day.
    y += &stack_mailbox("m365-password", "30s", src()).replace(
        "  - name: m365-password\n",
        "  - name: m365-password\n    provider: microsoft365\n    budget: {messages_per_day: 1000}\n",
    );
    y += &format!("    password_env: {PASSWORD_ENV}\n");
    // Delivery: the demo sinks (delivered, junk, bounced) and a sink nothing answers
    // for (sink_up 0, sink_failures_total{class=\"connect\"}).
    y += &format!(
        "sinks:
  - name: demo-sink
    provider: demo
    address: canary-sink@demo.example
  - name: demo-bounces
    provider: demo
    address: outbound-spam-blocked@demo.example
  - name: unreachable-sink
    address: nobody@sink.test
    host: 127.0.0.1
    port: {closed}
    username: nobody@sink.test
    password_env: {PASSWORD_ENV}
    poll_interval: 5s
delivery:
  timeout: 1m
",
        closed = crate::support::ports::free_port(),
    );
    y += &format!(
        "dns_audit:
  interval: 1h
  domains:
    - domain: {domain}
      dkim_selectors: [{selector}]
",
        domain = stack.var("STACK_DOMAIN"),
        selector = stack.var("STACK_DKIM_SELECTOR"),
    );
    y
}

/// What one dashboard query returned at the last attempt.
enum Outcome {
    Series(usize),
    Empty,
    Error(String),
}

fn run_panel_queries(prom: &TestPrometheus, queries: &[(String, String)]) -> Vec<Outcome> {
    queries
        .iter()
        .map(|(_, q)| match prom.query(q) {
            Ok(r) if r.is_empty() => Outcome::Empty,
            Ok(r) => Outcome::Series(r.len()),
            Err(e) => Outcome::Error(e),
        })
        .collect()
}

#[test]
#[ignore = "needs the mail stack: tests/stack/up.sh (root)"]
fn every_dashboard_query_and_alert_rule_works_on_real_data() {
    let _serial = serial::shared_blocking();
    let stack = Stack::get();
    stack.assert_oauth2();

    // The token endpoint, on the introspection address Dovecot asks.
    let ep = stack.token_endpoint();

    let dir = tempfile::Builder::new()
        .prefix("smtp-canary-dashboards-live")
        .tempdir()
        .expect("tempdir");
    let cfg_path = dir.path().join("config.yaml");
    let cfg = config(stack, &format!("http://{}", ep.addr()));
    std::fs::write(&cfg_path, &cfg).unwrap();

    // ------------------------------------------------------------------ the daemon
    let daemon = Daemon::start(
        &cfg_path,
        &dir.path().join("state"),
        &["--dns-server", stack.dns(), "--probe.immediate"],
        &[
            (PASSWORD_ENV, stack.password()),
            (SECRET_ENV, CLIENT_SECRET),
        ],
    );
    daemon.wait_ready(Duration::from_secs(20));

    // ------------------------------------------------------------------ Prometheus
    // The shipped job and rule file, unchanged but for the target and 1 s intervals.
    let prom = TestPrometheus::start(dir.path(), &daemon.addr);
    wait_until(Duration::from_secs(30), || {
        prom.query(r#"up{job="smtp-canary"} == 1"#)
            .ok()
            .filter(|r| !r.is_empty())
    })
    .unwrap_or_else(|| {
        panic!(
            "Prometheus never scraped the daemon (targets: {})\n{}",
            prom.targets(),
            prom.child.log_tail()
        )
    });

    // ------------------------------------------------------------------ every panel
    let dashboard = deploy::dashboard();
    let panel_queries: Vec<(String, String)> = deploy::panel_queries(&dashboard)
        .into_iter()
        .map(|q| {
            (
                format!("{} [{}]", q.panel, q.ref_id),
                deploy::substitute(&q.expr),
            )
        })
        .collect();
    assert!(panel_queries.len() >= 30, "{} queries", panel_queries.len());
    let started = Instant::now();
    let outcomes = loop {
        let outcomes = run_panel_queries(&prom, &panel_queries);
        // A query Prometheus refuses will not get better by waiting.
        let errors: Vec<String> = panel_queries
            .iter()
            .zip(&outcomes)
            .filter_map(|((name, q), o)| match o {
                Outcome::Error(e) => Some(format!("{name}: {e}\n    {q}")),
                _ => None,
            })
            .collect();
        assert!(
            errors.is_empty(),
            "Prometheus refused dashboard queries:\n{}",
            errors.join("\n")
        );
        if outcomes.iter().all(|o| matches!(o, Outcome::Series(_)))
            || started.elapsed() > DATA_DEADLINE
        {
            break outcomes;
        }
        daemon.assert_running();
        std::thread::sleep(Duration::from_secs(2));
    };
    let empty: Vec<String> = panel_queries
        .iter()
        .zip(&outcomes)
        .filter(|(_, o)| matches!(o, Outcome::Empty))
        .map(|((name, q), _)| format!("{name}\n    {q}"))
        .collect();
    if !empty.is_empty() {
        let names = prom
            .query(r#"count by (__name__) ({__name__=~"smtp_canary_.*"})"#)
            .map(|r| {
                r.iter()
                    .map(|s| s["metric"]["__name__"].as_str().unwrap_or("").to_owned())
                    .collect::<Vec<_>>()
            })
            .unwrap_or_default();
        panic!(
            "{} dashboard queries returned no series after {:?}:\n{}\n\nseries in Prometheus: {names:?}\n{}",
            empty.len(),
            started.elapsed(),
            empty.join("\n"),
            daemon.log_tail()
        );
    }
    for ((name, _), o) in panel_queries.iter().zip(&outcomes) {
        if let Outcome::Series(n) = o {
            eprintln!("  {n:3} series  {name}");
        }
    }
    eprintln!(
        "every dashboard query returned data after {:.1}s",
        started.elapsed().as_secs_f64()
    );

    // ------------------------------------------------------------------ variables
    for (name, kind, q) in deploy::variables(&dashboard) {
        if kind != "query" {
            continue;
        }
        let (promql, label) = deploy::variable_promql(&q);
        let result = prom
            .query(&promql)
            .unwrap_or_else(|e| panic!("variable {name}: {e}\n    {promql}"));
        let values: BTreeSet<String> = result
            .iter()
            .filter_map(|s| {
                s["metric"][label.as_deref().unwrap_or("domain")]
                    .as_str()
                    .map(str::to_owned)
            })
            .collect();
        assert!(
            !values.is_empty(),
            "variable {name} finds no values: {promql}"
        );
        eprintln!("  variable {name}: {values:?}");
        if name == "mailbox" {
            for mb in ["demo-healthy", "stack-oauth", "m365-password"] {
                assert!(
                    values.contains(mb),
                    "mailbox variable lacks {mb}: {values:?}"
                );
            }
        }
        if name == "domain" {
            assert!(values.contains(stack.var("STACK_DOMAIN")), "{values:?}");
        }
    }

    // ------------------------------------------------------------------ the metrics
    // Every metric family the dashboard names is in the daemon's own exposition.
    let (_, histograms) = deploy::defined_metrics();
    let (_, exposition) = daemon.get("/metrics").expect("GET /metrics");
    let exported: BTreeSet<String> = exposition
        .lines()
        .filter_map(|l| l.strip_prefix("# TYPE "))
        .filter_map(|l| l.split_whitespace().next())
        .map(str::to_owned)
        .collect();
    for name in deploy::metric_names(&deploy::read("dashboards/smtp-canary.json")) {
        let fam = deploy::family(&name, &histograms);
        assert!(
            exported.contains(&fam),
            "the dashboard names {name}, which the daemon does not export"
        );
    }

    // ------------------------------------------------------------------ alert rules
    let alerts = deploy::alerts();
    for (name, rule) in &alerts {
        let expr = rule["expr"].as_str().unwrap();
        prom.query(expr)
            .unwrap_or_else(|e| panic!("alert {name}: {e}\n    {expr}"));
    }
    // Prometheus loaded all of them from the shipped file and evaluates them cleanly
    // (health "ok" needs one evaluation; they run every second here).
    let rules = wait_until(Duration::from_secs(20), || {
        let v = prom.api("/api/v1/rules?type=alert");
        let rules: Vec<Value> = v["data"]["groups"]
            .as_array()?
            .iter()
            .flat_map(|g| g["rules"].as_array().cloned().unwrap_or_default())
            .collect();
        (rules.len() == alerts.len() && rules.iter().all(|r| r["health"] == "ok")).then_some(rules)
    })
    .unwrap_or_else(|| {
        panic!(
            "the rules never all evaluated healthy: {}",
            prom.api("/api/v1/rules?type=alert")
        )
    });
    let loaded: Vec<&str> = rules.iter().map(|r| r["name"].as_str().unwrap()).collect();
    assert_eq!(loaded, deploy::ALERTS, "rules Prometheus loaded");

    // The alerts this data must fire: the demo's 5.7.139 at once, with its code; the bad
    // client secret at its first failure; the Microsoft 365 password mailbox pending
    // (for: 15m). The exporter is up, so ExporterDown stays silent.
    let alert_list =
        |v: &Value| -> Vec<Value> { v["data"]["alerts"].as_array().cloned().unwrap_or_default() };
    let has = |list: &[Value], alert: &str, state: &str, label: &str, value: &str| {
        list.iter().any(|a| {
            a["labels"]["alertname"] == alert && a["state"] == state && a["labels"][label] == value
        })
    };
    let list = wait_until(Duration::from_secs(30), || {
        let list = alert_list(&prom.api("/api/v1/alerts"));
        (has(
            &list,
            "SMTPCanaryAuthPolicyBlocked",
            "firing",
            "code",
            "5.7.139",
        ) && has(
            &list,
            "SMTPCanaryOAuthTokenFailing",
            "firing",
            "reason",
            "invalid_client",
        ) && has(
            &list,
            "SMTPCanaryBasicAuthRetiring",
            "pending",
            "domain",
            stack.var("STACK_DOMAIN"),
        ))
        .then_some(list)
    })
    .unwrap_or_else(|| {
        panic!(
            "the expected alerts are not active: {:#}",
            prom.api("/api/v1/alerts")
        )
    });
    let blocked = list
        .iter()
        .find(|a| a["labels"]["alertname"] == "SMTPCanaryAuthPolicyBlocked")
        .unwrap();
    assert_eq!(
        blocked["labels"]["mailbox"], "demo-smtp-auth-disabled",
        "{blocked}"
    );
    assert_eq!(blocked["labels"]["severity"], "critical");
    assert_eq!(
        blocked["annotations"]["summary"],
        "SMTP AUTH of demo-smtp-auth-disabled blocked by provider policy (5.7.139)"
    );
    for a in &list {
        let name = a["labels"]["alertname"].as_str().unwrap_or("");
        assert_ne!(name, "SMTPCanaryExporterDown", "{a}");
        // No auth or policy alert for the mailboxes that deliver.
        if name.starts_with("SMTPCanaryAuth") {
            assert_eq!(a["labels"]["mailbox"], "demo-smtp-auth-disabled", "{a}");
        }
    }
    eprintln!(
        "active alerts: {:?}",
        list.iter()
            .map(|a| format!(
                "{} {} {}",
                a["labels"]["alertname"].as_str().unwrap_or(""),
                a["state"].as_str().unwrap_or(""),
                a["labels"]["mailbox"]
                    .as_str()
                    .or(a["labels"]["domain"].as_str())
                    .unwrap_or("")
            ))
            .collect::<Vec<_>>()
    );
    daemon.assert_running();
    prom.child.assert_running();
}
