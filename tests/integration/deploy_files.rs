//! Checks of the monitoring and deployment files (`dashboards/`, `deploy/`,
//! `docs/runbooks.md`) that need no root, no network and no daemon:
//!
//! - every YAML and JSON file parses (YAML with serde-saphyr, all documents);
//! - every metric the dashboard, the alert rules, their tests and the runbooks name is
//!   defined in src/metrics/ and in the contract;
//! - the dashboard's structure (schemaVersion, `__inputs`, variables, rows, data source);
//! - every alert: summary, description, severity, a runbook section that exists, a
//!   firing and a non-firing unit test; the PrometheusRule equals alerts.yml;
//! - the Dockerfile, the compose file, the kustomize base and the systemd unit say what
//!   they must (non-root, health checks, read-only root, mounts that exist, ...).
//!
//! The `#[ignore]`d tests run the real tools on the files: `promtool check/test rules`,
//! `promtool check config`, `kubectl kustomize`, `systemd-analyze verify` and `security`,
//! and the two generators' `--check`. They FAIL when a tool is missing (no skipping);
//! scripts/test-all.sh installs the tools and runs them with
//! `cargo test --test integration -- --ignored deploy_files::`.

use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;
use std::process::Command;

use crate::support::deploy::*;
use crate::support::{repo, serial, tool};
use serde_json::Value;

// ------------------------------------------------------------------------ parsing

#[test]
fn every_yaml_and_json_file_parses() {
    let _serial = serial::shared_blocking();
    let mut checked = Vec::new();
    for dir in ["deploy", "dashboards"] {
        for path in files_under(&repo().join(dir)) {
            let rel = path.strip_prefix(repo()).unwrap().display().to_string();
            let text = std::fs::read_to_string(&path).unwrap();
            match path.extension().and_then(|e| e.to_str()) {
                Some("json") => {
                    serde_json::from_str::<Value>(&text)
                        .unwrap_or_else(|e| panic!("{rel} is not valid JSON: {e}"));
                }
                Some("yml" | "yaml") => {
                    let docs = yaml_docs(&text, &rel);
                    assert!(!docs.is_empty(), "{rel} holds no YAML document");
                }
                _ => continue,
            }
            checked.push(rel);
        }
    }
    eprintln!("parsed {} files: {checked:?}", checked.len());
    assert!(checked.len() >= 15, "too few files found: {checked:?}");
}

/// The YAML reader used above really reads every document of a multi-document file
/// (kubectl's output is one), and anchors and block scalars come out as data.
#[test]
fn the_yaml_reader_handles_multiple_documents() {
    let _serial = serial::shared_blocking();
    let docs = yaml_docs(
        "# c\na: 1\nb: &x [one, two]\nc: *x\n---\nkind: Service\ntext: |\n  line 1\n  line 2\n---\n",
        "test input",
    );
    assert_eq!(docs.len(), 2, "{docs:?}");
    assert_eq!(docs[0]["a"], 1);
    assert_eq!(docs[0]["c"], serde_json::json!(["one", "two"]));
    assert_eq!(docs[1]["text"], "line 1\nline 2\n");
}

// ------------------------------------------------------------------------ metric names

#[test]
fn every_metric_named_is_exported_and_in_the_contract() {
    let _serial = serial::shared_blocking();
    let (defined, histograms) = defined_metrics();
    let (contract_source, contract) = contract_metrics();
    let mut problems = Vec::new();
    let mut seen = BTreeSet::new();
    for rel in MONITORING_FILES {
        for name in metric_names(&read(rel)) {
            let fam = family(&name, &histograms);
            if !defined.contains(&fam) {
                problems.push(format!("{rel}: {name} is not defined in src/metrics/"));
            }
            if !contract.contains(&fam) {
                problems.push(format!(
                    "{rel}: {name} is not a contract metric ({contract_source})"
                ));
            }
            seen.insert(fam);
        }
    }
    assert!(problems.is_empty(), "{}", problems.join("\n"));
    // The dashboard covers every contract metric but the constant build ones.
    let dash = metric_names(&read("dashboards/smtp-canary.json"))
        .iter()
        .map(|n| family(n, &histograms))
        .collect::<BTreeSet<_>>();
    let unused: Vec<_> = contract
        .iter()
        .filter(|m| !dash.contains(*m))
        .filter(|m| {
            !matches!(
                m.as_str(),
                "smtp_canary_config_last_reload_success_timestamp_seconds"
                    // Only with `message_trace: true` (microsoft365 + OAuth, Graph
                    // message trace): dashboards_live could not fill such a panel.
                    | "smtp_canary_message_trace_status"
            )
        })
        .collect();
    assert!(
        unused.is_empty(),
        "contract metrics no dashboard panel shows: {unused:?}"
    );
    eprintln!(
        "{} metric families referenced, all exported and in the contract",
        seen.len()
    );
}

#[test]
fn the_metric_name_scanner_finds_names() {
    let _serial = serial::shared_blocking();
    let names = metric_names(
        "rate(smtp_canary_phase_seconds_bucket{x=\"y\"}[1m]) / smtp_canary_probes_total \
         my_smtp_canary_not + smtp_canary_",
    );
    assert_eq!(
        names.into_iter().collect::<Vec<_>>(),
        [
            "smtp_canary_phase_seconds_bucket",
            "smtp_canary_probes_total"
        ]
    );
}

// ------------------------------------------------------------------------ dashboard

#[test]
fn the_dashboard_is_importable_and_complete() {
    let _serial = serial::shared_blocking();
    let d = dashboard();
    assert!(
        d["schemaVersion"].as_u64().is_some_and(|v| v >= 39),
        "schemaVersion {}",
        d["schemaVersion"]
    );
    let inputs = d["__inputs"].as_array().expect("__inputs");
    assert!(
        inputs
            .iter()
            .any(|i| i["name"] == "DS_PROMETHEUS" && i["pluginId"] == "prometheus"),
        "__inputs has DS_PROMETHEUS: {inputs:?}"
    );
    assert_eq!(d["uid"], "smtp-canary");

    let vars = variables(&d);
    let names: Vec<&str> = vars.iter().map(|(n, _, _)| n.as_str()).collect();
    assert_eq!(
        names,
        ["datasource", "job", "instance", "mailbox", "domain"],
        "template variables"
    );
    assert_eq!(vars[0].1, "datasource");
    assert_eq!(vars[0].2, "prometheus");
    for (name, kind, query) in &vars[1..] {
        assert_eq!(kind, "query", "{name}");
        let (promql, _) = variable_promql(query);
        assert!(promql.contains("smtp_canary_"), "{name}: {query}");
    }

    let rows: Vec<&str> = d["panels"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|p| p["type"] == "row")
        .map(|p| p["title"].as_str().unwrap())
        .collect();
    assert_eq!(
        rows,
        [
            "Overview",
            "Latency",
            "Failures",
            "Authentication",
            "Quota and capacity",
            "TLS",
            "DNS audit",
            "Delivery"
        ]
    );

    let mut ids = BTreeSet::new();
    for p in d["panels"].as_array().unwrap() {
        assert!(
            ids.insert(p["id"].as_u64().expect("panel id")),
            "duplicate id {}",
            p["id"]
        );
        let g = &p["gridPos"];
        let (x, w) = (g["x"].as_u64().unwrap(), g["w"].as_u64().unwrap());
        assert!(x + w <= 24, "{} is wider than the grid", p["title"]);
    }
    for p in panels(&d) {
        let title = p["title"].as_str().unwrap_or("?");
        assert!(
            p["description"].as_str().is_some_and(|s| s.len() > 20),
            "{title}: every panel says what it shows"
        );
        assert_eq!(p["datasource"]["uid"], "${datasource}", "{title}");
        let targets = p["targets"].as_array().expect("targets");
        assert!(!targets.is_empty(), "{title} has no query");
        for t in targets {
            assert_eq!(t["datasource"]["uid"], "${datasource}", "{title}");
            let expr = t["expr"].as_str().unwrap_or_default();
            assert!(
                expr.contains("smtp_canary_") || expr.starts_with("up{"),
                "{title}: {expr}"
            );
            // Every query is narrowed by job and instance (and mailbox or domain where
            // the metric has one); `substitute` fails on unknown variables.
            assert!(
                expr.contains("$job") && expr.contains("$instance"),
                "{title}: {expr}"
            );
            substitute(expr);
        }
    }

    // The panels issue 7 lists, by title.
    let titles: BTreeSet<&str> = panels(&d)
        .iter()
        .map(|p| p["title"].as_str().unwrap())
        .collect();
    for t in [
        "Success ratio",
        "Time since last success",
        "Phases of the last probe: $mailbox",
        "Phase latency p50 / p95 / p99",
        "Total probe time",
        "Failures by class and code",
        "Failing now",
        "auth vs auth_policy vs oauth_token",
        "OAuth token expires in",
        "OAuth token failures by reason",
        "Mechanism in use",
        "Basic-auth retirement readiness",
        "Canary sends vs provider limit",
        "Headroom",
        "Time to exhaustion (linear)",
        "Throttling rate",
        "Days until the certificate expires",
        "TLS version",
        "Findings",
        "SPF DNS lookups (limit 10)",
        "DKIM key bits",
        "DMARC policy",
        // Delivery (wave 2).
        "Delivery success ratio",
        "Last canary delivered",
        "Canaries in flight",
        "Delivery time of the last canary",
        "Delivery latency p50 / p95 / p99",
        "Placement by result",
        "Authentication-Results at the sink",
        "DKIM verified by smtp-canary",
        "Bounces by class and code",
        "Sink up",
        "Sink read failures by class",
    ] {
        assert!(titles.contains(t), "no panel {t:?}");
    }
    let heatmap = panels(&d)
        .into_iter()
        .find(|p| p["type"] == "heatmap")
        .expect("a heatmap panel");
    assert_eq!(heatmap["title"], "Total probe time");
    for (title, histogram) in [
        (
            "Phase latency p50 / p95 / p99",
            "smtp_canary_phase_seconds_bucket",
        ),
        (
            "Delivery latency p50 / p95 / p99",
            "smtp_canary_delivery_seconds_bucket",
        ),
    ] {
        let quantiles = panels(&d)
            .into_iter()
            .find(|p| p["title"] == title)
            .unwrap();
        let exprs: Vec<&str> = quantiles["targets"]
            .as_array()
            .unwrap()
            .iter()
            .map(|t| t["expr"].as_str().unwrap())
            .collect();
        for q in ["0.5", "0.95", "0.99"] {
            assert!(
                exprs
                    .iter()
                    .any(|e| e.starts_with(&format!("histogram_quantile({q},"))
                        && e.contains(histogram)),
                "{title} p{q}: {exprs:?}"
            );
        }
    }
    let exhaustion = panels(&d)
        .into_iter()
        .find(|p| p["title"] == "Time to exhaustion (linear)")
        .unwrap();
    assert!(exhaustion.to_string().contains("predict_linear("));
}

// ------------------------------------------------------------------------ alerts

#[test]
fn every_alert_has_annotations_severity_and_a_runbook_section() {
    let _serial = serial::shared_blocking();
    let rules = alerts();
    let names: Vec<&str> = rules.iter().map(|(n, _)| n.as_str()).collect();
    assert_eq!(
        names, ALERTS,
        "the alerts of issues 7 and 10, then the delivery alerts, in order"
    );
    let runbooks = read("docs/runbooks.md");
    let anchors: BTreeSet<String> = runbooks
        .lines()
        .filter_map(|l| l.strip_prefix("## "))
        .map(|h| h.trim().to_lowercase())
        .collect();
    for (name, r) in &rules {
        let a = &r["annotations"];
        for key in ["summary", "description", "runbook_url"] {
            assert!(
                a[key].as_str().is_some_and(|s| !s.trim().is_empty()),
                "{name} has no {key}"
            );
        }
        let url = a["runbook_url"].as_str().unwrap();
        let anchor = url
            .strip_prefix("docs/runbooks.md#")
            .unwrap_or_else(|| panic!("{name}: runbook_url {url} is not docs/runbooks.md#..."));
        assert_eq!(anchor, name.to_lowercase(), "{name}: anchor");
        assert!(
            anchors.contains(anchor),
            "{name}: docs/runbooks.md has no section `## {name}`"
        );
        let section = runbooks
            .split("\n## ")
            .find(|s| s.starts_with(name.as_str()))
            .unwrap();
        for part in ["**What it means.**", "**Confirm.**", "**Fix"] {
            assert!(section.contains(part), "runbook of {name} lacks {part}");
        }
        assert!(
            section.contains("smtp-canary "),
            "runbook of {name} says which smtp-canary command confirms it"
        );
        let severity = r["labels"]["severity"].as_str().unwrap_or_default();
        assert!(
            ["critical", "warning"].contains(&severity),
            "{name}: severity {severity:?}"
        );
        assert!(r["expr"].as_str().is_some_and(|e| !e.is_empty()));
    }

    let (_, blocked) = rules
        .iter()
        .find(|(n, _)| n == "SMTPCanaryAuthPolicyBlocked")
        .unwrap();
    assert_eq!(blocked["labels"]["severity"], "critical");
    let summary = blocked["annotations"]["summary"].as_str().unwrap();
    assert!(
        summary.contains("{{ $labels.code }}"),
        "code in the summary: {summary}"
    );
    let desc = blocked["annotations"]["description"].as_str().unwrap();
    for fix in [
        "5.7.139",
        "Set-CASMailbox -Identity <user> -SmtpClientAuthenticationDisabled $false",
        "basic authentication is disabled",
        "OAuth",
    ] {
        assert!(
            desc.contains(fix),
            "AuthPolicyBlocked's description lacks {fix:?}: {desc}"
        );
    }
    let runbook = runbooks
        .split("\n## ")
        .find(|s| s.starts_with("SMTPCanaryAuthPolicyBlocked"))
        .unwrap();
    assert!(runbook.contains(
        "Set-CASMailbox -Identity invoices@contoso.com -SmtpClientAuthenticationDisabled $false"
    ));
    assert!(runbook.contains("basic authentication is disabled"));
}

/// alerts_test.yml has, for every alert, an evaluation where it fires and one where it
/// does not (promtool itself runs them in `promtool_tests_pass`).
#[test]
fn every_alert_has_a_firing_and_a_silent_unit_test() {
    let _serial = serial::shared_blocking();
    let tests = yaml_file("deploy/prometheus/alerts_test.yml");
    assert_eq!(tests["rule_files"], serde_json::json!(["alerts.yml"]));
    let mut fires: BTreeMap<String, usize> = BTreeMap::new();
    let mut silent: BTreeMap<String, usize> = BTreeMap::new();
    for t in tests["tests"].as_array().expect("tests") {
        for a in t["alert_rule_test"].as_array().into_iter().flatten() {
            let name = a["alertname"].as_str().unwrap().to_owned();
            let exp = a["exp_alerts"].as_array().map(Vec::len).unwrap_or(0);
            *if exp > 0 { &mut fires } else { &mut silent }
                .entry(name)
                .or_default() += 1;
        }
    }
    for name in ALERTS {
        assert!(fires.contains_key(name), "no test where {name} fires");
        assert!(
            silent.contains_key(name),
            "no test where {name} stays silent"
        );
    }
}

#[test]
fn the_prometheusrule_is_alerts_yml() {
    let _serial = serial::shared_blocking();
    let rule = yaml_file("deploy/kubernetes/prometheusrule.yaml");
    assert_eq!(rule["apiVersion"], "monitoring.coreos.com/v1");
    assert_eq!(rule["kind"], "PrometheusRule");
    assert_eq!(rule["metadata"]["name"], "smtp-canary");
    let alerts = yaml_file("deploy/prometheus/alerts.yml");
    assert_eq!(
        rule["spec"], alerts,
        "deploy/kubernetes/prometheusrule.yaml differs from deploy/prometheus/alerts.yml: \
         run deploy/kubernetes/gen-prometheusrule.sh"
    );
}

#[test]
fn the_prometheus_configs_load_the_rules_and_scrape_the_same_job() {
    let _serial = serial::shared_blocking();
    let shipped = yaml_file("deploy/prometheus/prometheus.yml");
    assert_eq!(shipped["rule_files"], serde_json::json!(["alerts.yml"]));
    let compose = yaml_file("deploy/docker/prometheus.yml");
    assert_eq!(compose["rule_files"], serde_json::json!(["alerts.yml"]));
    let job = |cfg: &Value| -> Value {
        let mut j = cfg["scrape_configs"]
            .as_array()
            .unwrap()
            .iter()
            .find(|j| j["job_name"] == "smtp-canary")
            .cloned()
            .expect("job smtp-canary");
        // What may differ: where the target is, and how often it is scraped.
        let o = j.as_object_mut().unwrap();
        o.remove("static_configs");
        o.remove("scrape_interval");
        j
    };
    assert_eq!(job(&shipped), job(&compose));
    // SMTPCanaryExporterDown selects this job name.
    let down = alerts()
        .into_iter()
        .find(|(n, _)| n == "SMTPCanaryExporterDown")
        .unwrap()
        .1;
    assert!(
        down["expr"]
            .as_str()
            .unwrap()
            .contains(r#"job="smtp-canary""#)
    );
}

// ------------------------------------------------------------------------ Docker

fn dockerfile() -> String {
    read("deploy/docker/Dockerfile")
}

/// The Dockerfile's instructions, continuation lines joined, comments dropped.
fn instructions(text: &str) -> Vec<(String, String)> {
    let mut out = Vec::new();
    let mut cur = String::new();
    for line in text.lines() {
        let t = line.trim();
        if cur.is_empty() && (t.is_empty() || t.starts_with('#')) {
            continue;
        }
        if let Some(body) = t.strip_suffix('\\') {
            cur += body;
            cur.push(' ');
            continue;
        }
        cur += t;
        let (kw, rest) = cur.split_once(' ').unwrap_or((cur.as_str(), ""));
        out.push((kw.to_uppercase(), rest.trim().to_owned()));
        cur.clear();
    }
    out
}

#[test]
fn the_dockerfile_is_multi_stage_non_root_with_a_healthcheck() {
    let _serial = serial::shared_blocking();
    let ins = instructions(&dockerfile());
    let froms: Vec<&String> = ins
        .iter()
        .filter(|(k, _)| k == "FROM")
        .map(|(_, v)| v)
        .collect();
    assert!(froms.len() >= 2, "multi-stage: {froms:?}");
    assert!(froms[0].contains(" AS build"), "{}", froms[0]);
    let runtime = froms.last().unwrap();
    assert!(
        runtime.starts_with("debian:bookworm-slim"),
        "minimal runtime image: {runtime}"
    );
    // Instructions of the final stage.
    let last_from = ins.iter().rposition(|(k, _)| k == "FROM").unwrap();
    let fin = &ins[last_from..];
    let user = fin
        .iter()
        .rev()
        .find(|(k, _)| k == "USER")
        .map(|(_, v)| v.as_str())
        .expect("the final stage sets USER");
    let uid = user.split(':').next().unwrap();
    assert!(
        uid != "0" && uid != "root" && !uid.is_empty(),
        "runs as non-root: USER {user}"
    );
    let health = fin
        .iter()
        .find(|(k, _)| k == "HEALTHCHECK")
        .map(|(_, v)| v.as_str())
        .expect("HEALTHCHECK");
    assert!(health.contains("/-/healthy"), "{health}");
    assert!(health.contains("\"curl\""), "{health}");
    // The health check's client is installed in the runtime image.
    assert!(
        fin.iter()
            .any(|(k, v)| k == "RUN" && v.contains("apt-get install") && v.contains(" curl")),
        "curl is installed for the HEALTHCHECK"
    );
    // The binary is the one `cargo build --release` makes.
    assert!(
        ins.iter().any(|(k, v)| k == "RUN"
            && v.contains("cargo build --release --locked")
            && v.contains("target/release/smtp-canary")),
        "the build stage builds the release binary"
    );
    assert!(
        fin.iter()
            .any(|(k, v)| k == "COPY" && v.starts_with("--from=build ")),
        "the runtime stage copies from the build stage"
    );
    let cmd = fin
        .iter()
        .find(|(k, _)| k == "CMD")
        .map(|(_, v)| v.as_str())
        .unwrap();
    assert!(
        cmd.contains("--web.listen-address=0.0.0.0:9587"),
        "the container listens beyond loopback: {cmd}"
    );
    assert!(health.contains("127.0.0.1:9587"), "{health}");
    // Every file the Dockerfile copies from the context exists.
    for (k, v) in &ins {
        if k == "COPY" && !v.starts_with("--from") {
            let src = v.split_whitespace().next().unwrap();
            if src != "." {
                assert!(repo().join(src).exists(), "COPY {src}: no such file");
            }
        }
    }
    // The build stage's Rust is at least the crate's rust-version.
    let arg = ins
        .iter()
        .find(|(k, v)| k == "ARG" && v.starts_with("RUST_VERSION="))
        .map(|(_, v)| v["RUST_VERSION=".len()..].to_owned())
        .expect("ARG RUST_VERSION");
    let cargo = read("Cargo.toml");
    let want = cargo
        .lines()
        .find_map(|l| l.strip_prefix("rust-version = "))
        .map(|v| v.trim_matches('"').to_owned())
        .expect("rust-version in Cargo.toml");
    let parse = |v: &str| -> Vec<u32> { v.split('.').map(|p| p.parse().unwrap()).collect() };
    assert!(
        parse(&arg) >= parse(&want),
        "RUST_VERSION {arg} < rust-version {want}"
    );
    assert!(
        repo()
            .join("deploy/docker/Dockerfile.dockerignore")
            .exists()
    );
}

#[test]
fn the_compose_file_mounts_what_exists() {
    let _serial = serial::shared_blocking();
    let compose_dir = repo().join("deploy/docker");
    let c = yaml_file("deploy/docker/compose.yaml");
    let services = c["services"].as_object().expect("services");
    for s in ["smtp-canary", "prometheus", "grafana"] {
        assert!(services.contains_key(s), "service {s}");
    }
    let named: BTreeSet<&str> = c["volumes"]
        .as_object()
        .map(|m| m.keys().map(String::as_str).collect())
        .unwrap_or_default();
    let mut mounts = BTreeMap::new();
    for (name, s) in services {
        for v in s["volumes"].as_array().into_iter().flatten() {
            let v = v.as_str().expect("short volume syntax");
            let mut parts = v.split(':');
            let (src, dst) = (parts.next().unwrap(), parts.next().unwrap());
            if src.starts_with('.') || src.starts_with('/') {
                let p = compose_dir.join(src);
                assert!(p.exists(), "{name}: mount source {src} does not exist");
                mounts.insert(dst.to_owned(), p.canonicalize().unwrap());
            } else {
                assert!(named.contains(src), "{name}: volume {src} is not declared");
            }
        }
    }
    let b = &c["services"]["smtp-canary"]["build"];
    let ctx = compose_dir.join(b["context"].as_str().unwrap());
    assert!(ctx.join(b["dockerfile"].as_str().unwrap()).is_file());
    assert_eq!(ctx.canonicalize().unwrap(), repo().canonicalize().unwrap());

    // smtp-canary on the demo config, reachable by Prometheus.
    let cfg = &mounts["/etc/smtp-canary/config.yaml"];
    let cfg_text = std::fs::read_to_string(cfg).unwrap();
    assert!(cfg_text.contains("provider: demo"), "{}", cfg.display());
    let cmd = c["services"]["smtp-canary"]["command"].to_string();
    assert!(cmd.contains("--web.listen-address=0.0.0.0:9587"), "{cmd}");
    assert!(cmd.contains("/etc/smtp-canary/config.yaml"), "{cmd}");
    // Prometheus with the shipped rules and a config that loads them.
    assert_eq!(
        mounts["/etc/prometheus/alerts.yml"],
        repo()
            .join("deploy/prometheus/alerts.yml")
            .canonicalize()
            .unwrap()
    );
    let prom = yaml_file("deploy/docker/prometheus.yml");
    assert_eq!(
        prom["scrape_configs"][0]["static_configs"][0]["targets"][0],
        "smtp-canary:9587"
    );
    // Grafana with the data source and the dashboard provisioned.
    assert_eq!(
        mounts["/etc/grafana/dashboards/smtp-canary.json"],
        repo()
            .join("dashboards/smtp-canary.json")
            .canonicalize()
            .unwrap()
    );
    let ds = yaml_file("deploy/docker/grafana/provisioning/datasources/prometheus.yaml");
    assert_eq!(ds["datasources"][0]["type"], "prometheus");
    assert_eq!(ds["datasources"][0]["url"], "http://prometheus:9090");
    assert_eq!(ds["datasources"][0]["isDefault"], true);
    let dash = yaml_file("deploy/docker/grafana/provisioning/dashboards/smtp-canary.yaml");
    assert_eq!(
        dash["providers"][0]["options"]["path"], "/etc/grafana/dashboards",
        "the provider reads where compose mounts the dashboard"
    );
    for d in [
        "/etc/grafana/provisioning/datasources",
        "/etc/grafana/provisioning/dashboards",
    ] {
        assert!(mounts.contains_key(d), "grafana mounts {d}");
    }
}

// ------------------------------------------------------------------------ Kubernetes

fn k8s(rel: &str) -> Value {
    yaml_file(&format!("deploy/kubernetes/{rel}"))
}

/// Checks of the StatefulSet that hold both for the file and for kustomize's output.
fn check_statefulset(sts: &Value) {
    let spec = &sts["spec"];
    let pod = &spec["template"]["spec"];
    let psc = &pod["securityContext"];
    assert_eq!(psc["runAsNonRoot"], true);
    assert!(psc["runAsUser"].as_u64().is_some_and(|u| u > 0));
    assert_eq!(psc["seccompProfile"]["type"], "RuntimeDefault");
    let c = &pod["containers"][0];
    let sc = &c["securityContext"];
    assert_eq!(sc["readOnlyRootFilesystem"], true);
    assert_eq!(sc["allowPrivilegeEscalation"], false);
    assert_eq!(sc["capabilities"]["drop"], serde_json::json!(["ALL"]));
    assert_eq!(c["livenessProbe"]["httpGet"]["path"], "/-/healthy");
    assert_eq!(c["readinessProbe"]["httpGet"]["path"], "/-/ready");
    assert_eq!(c["livenessProbe"]["httpGet"]["port"], c["ports"][0]["name"]);
    // The state dir is on the per-pod volume, the config on the ConfigMap.
    let mounts = c["volumeMounts"].as_array().unwrap();
    let mount = |n: &str| {
        mounts
            .iter()
            .find(|m| m["name"] == n)
            .unwrap_or_else(|| panic!("no mount {n}"))["mountPath"]
            .as_str()
            .unwrap()
            .to_owned()
    };
    assert_eq!(mount("state"), "/var/lib/smtp-canary");
    assert_eq!(mount("config"), "/etc/smtp-canary");
    assert_eq!(spec["volumeClaimTemplates"][0]["metadata"]["name"], "state");
    let script = c["args"][0].as_str().unwrap();
    assert!(script.contains("--state.dir=/var/lib/smtp-canary"));
    assert!(script.contains("--web.listen-address=0.0.0.0:9587"));
    // SMTP_CANARY_SHARDS is the replica count.
    let shards = c["env"]
        .as_array()
        .unwrap()
        .iter()
        .find(|e| e["name"] == "SMTP_CANARY_SHARDS")
        .expect("SMTP_CANARY_SHARDS")["value"]
        .as_str()
        .unwrap()
        .to_owned();
    assert_eq!(
        shards,
        spec["replicas"].to_string(),
        "SMTP_CANARY_SHARDS must equal replicas"
    );
    assert_eq!(
        c["envFrom"][0]["secretRef"]["name"],
        k8s("secret.example.yaml")["metadata"]["name"],
        "the StatefulSet reads the example Secret's name"
    );
}

#[test]
fn the_kustomize_base_is_consistent() {
    let _serial = serial::shared_blocking();
    let kz = k8s("kustomization.yaml");
    for r in kz["resources"].as_array().unwrap() {
        let r = r.as_str().unwrap();
        assert!(
            repo().join("deploy/kubernetes").join(r).is_file(),
            "resource {r}"
        );
    }
    for g in kz["configMapGenerator"].as_array().unwrap() {
        for f in g["files"].as_array().unwrap() {
            assert!(
                repo()
                    .join("deploy/kubernetes")
                    .join(f.as_str().unwrap())
                    .is_file()
            );
        }
    }
    let kinds: BTreeSet<String> = kz["resources"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| {
            k8s(r.as_str().unwrap())["kind"]
                .as_str()
                .unwrap()
                .to_owned()
        })
        .collect();
    for k in ["StatefulSet", "Service", "ServiceMonitor", "PrometheusRule"] {
        assert!(kinds.contains(k), "no {k} in the base: {kinds:?}");
    }
    let sts = k8s("statefulset.yaml");
    check_statefulset(&sts);
    let svc = k8s("service.yaml");
    let sm = k8s("servicemonitor.yaml");
    // The Service's name is the job name the alerts select.
    assert_eq!(svc["metadata"]["name"], "smtp-canary");
    assert_eq!(sts["spec"]["serviceName"], svc["metadata"]["name"]);
    assert_eq!(
        sm["spec"]["endpoints"][0]["port"],
        svc["spec"]["ports"][0]["name"]
    );
    assert_eq!(
        sm["spec"]["selector"]["matchLabels"], svc["metadata"]["labels"],
        "the ServiceMonitor selects the Service"
    );
    assert_eq!(
        svc["spec"]["selector"],
        sts["spec"]["template"]["metadata"]["labels"]
    );
    let secret = k8s("secret.example.yaml");
    assert_eq!(secret["kind"], "Secret");
}

/// The StatefulSet's entrypoint snippet, run by /bin/sh with the binary replaced by
/// `echo`: the pod ordinal becomes `--shard I/N`, and a pod name without an ordinal is
/// refused.
#[test]
fn the_statefulset_derives_the_shard_from_the_pod_name() {
    let _serial = serial::shared_blocking();
    let sts = k8s("statefulset.yaml");
    let c = &sts["spec"]["template"]["spec"]["containers"][0];
    assert_eq!(c["command"], serde_json::json!(["/bin/sh", "-c"]));
    let script = c["args"][0].as_str().unwrap();
    assert!(script.contains("exec /usr/local/bin/smtp-canary"));
    let script = script.replace("exec /usr/local/bin/smtp-canary", "exec echo");
    for (pod, want) in [
        ("smtp-canary-0", Some("0/2")),
        ("smtp-canary-1", Some("1/2")),
        ("smtp-canary", None),
    ] {
        let out = Command::new("/bin/sh")
            .arg("-c")
            .arg(&script)
            .env_clear()
            .env("POD_NAME", pod)
            .env("SMTP_CANARY_SHARDS", "2")
            .output()
            .expect("/bin/sh");
        let stdout = String::from_utf8_lossy(&out.stdout);
        match want {
            Some(shard) => {
                assert!(out.status.success(), "{pod}: {out:?}");
                assert!(
                    stdout.contains(&format!("--shard={shard}")),
                    "{pod}: {stdout}"
                );
                assert!(stdout.contains("--config.file=/etc/smtp-canary/config.yaml"));
            }
            None => assert_eq!(out.status.code(), Some(2), "{pod}: {out:?}"),
        }
    }
}

#[test]
fn the_shipped_configs_are_valid() {
    let _serial = serial::shared_blocking();
    for cfg in ["config.yaml", "deploy/kubernetes/config.yaml"] {
        let out = Command::new(env!("CARGO_BIN_EXE_smtp-canary"))
            .arg("check-config")
            .arg("--config.file")
            .arg(repo().join(cfg))
            .output()
            .expect("smtp-canary check-config");
        assert!(
            out.status.success(),
            "check-config {cfg}: {}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
    }
}

// ------------------------------------------------------------------------ systemd

#[test]
fn the_systemd_unit_is_hardened() {
    let _serial = serial::shared_blocking();
    let unit = read("deploy/systemd/smtp-canary.service");
    let keys: BTreeMap<String, Vec<String>> = unit
        .lines()
        .filter(|l| !l.starts_with('#') && l.contains('='))
        .filter_map(|l| l.split_once('='))
        .fold(BTreeMap::new(), |mut m, (k, v)| {
            m.entry(k.trim().to_owned())
                .or_default()
                .push(v.trim().to_owned());
            m
        });
    let one = |k: &str| -> &str {
        keys.get(k)
            .and_then(|v| v.last())
            .map(String::as_str)
            .unwrap_or_else(|| panic!("the unit has no {k}="))
    };
    assert_eq!(one("DynamicUser"), "yes");
    assert_eq!(one("StateDirectory"), "smtp-canary");
    assert_eq!(one("ProtectSystem"), "strict");
    assert_eq!(one("NoNewPrivileges"), "yes");
    assert_eq!(one("CapabilityBoundingSet"), "", "an empty bounding set");
    for k in [
        "ProtectHome",
        "PrivateTmp",
        "PrivateDevices",
        "ProtectKernelTunables",
        "ProtectKernelModules",
        "ProtectControlGroups",
        "RestrictSUIDSGID",
        "LockPersonality",
        "MemoryDenyWriteExecute",
    ] {
        assert_eq!(one(k), "yes", "{k}");
    }
    let exec = one("ExecStart");
    assert!(unit.contains("--state.dir=${STATE_DIRECTORY}"), "{exec}");
    assert!(unit.contains("--config.file=/etc/smtp-canary/config.yaml"));
}

// ------------------------------------------------------------------------ the real tools

fn run(cmd: &mut Command) -> (bool, String) {
    let out = cmd
        .output()
        .unwrap_or_else(|e| panic!("cannot run {cmd:?}: {e}"));
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    (out.status.success(), text)
}

#[test]
#[ignore = "needs promtool (Debian prometheus; scripts/test-all.sh installs it)"]
fn promtool_checks_the_rules_and_runs_their_unit_tests() {
    let _serial = serial::shared_blocking();
    let promtool = tool("promtool", "apt-get install prometheus");
    let dir = repo().join("deploy/prometheus");
    let (ok, text) = run(Command::new(&promtool)
        .args(["check", "rules", "alerts.yml"])
        .current_dir(&dir));
    assert!(ok, "promtool check rules:\n{text}");
    assert!(text.contains("SUCCESS: 17 rules found"), "{text}");
    assert!(!text.to_lowercase().contains("warning"), "{text}");
    let (ok, text) = run(Command::new(&promtool)
        .args(["test", "rules", "alerts_test.yml"])
        .current_dir(&dir));
    assert!(ok, "promtool test rules:\n{text}");
    eprintln!("{text}");
    // The Prometheus configs, each with alerts.yml next to it as it is shipped.
    for cfg in [
        "deploy/prometheus/prometheus.yml",
        "deploy/docker/prometheus.yml",
    ] {
        let tmp = tempfile::tempdir().unwrap();
        std::fs::copy(repo().join(cfg), tmp.path().join("prometheus.yml")).unwrap();
        std::fs::copy(dir.join("alerts.yml"), tmp.path().join("alerts.yml")).unwrap();
        let (ok, text) = run(Command::new(&promtool)
            .args(["check", "config", "prometheus.yml"])
            .current_dir(tmp.path()));
        assert!(ok, "promtool check config {cfg}:\n{text}");
    }
    // The PrometheusRule's groups pass the same checks (written out as a rule file).
    let rule = yaml_file("deploy/kubernetes/prometheusrule.yaml");
    let tmp = tempfile::tempdir().unwrap();
    let rules = tmp.path().join("from-prometheusrule.yml");
    std::fs::write(&rules, serde_json::to_string(&rule["spec"]).unwrap()).unwrap();
    let (ok, text) = run(Command::new(&promtool).args(["check", "rules"]).arg(&rules));
    assert!(
        ok,
        "promtool check rules on the PrometheusRule's spec:\n{text}"
    );
}

#[test]
#[ignore = "needs kubectl (Debian kubernetes-client; scripts/test-all.sh installs it)"]
fn kubectl_kustomize_renders_the_base() {
    let _serial = serial::shared_blocking();
    let kubectl = tool("kubectl", "apt-get install kubernetes-client");
    let (ok, text) = run(Command::new(&kubectl)
        .arg("kustomize")
        .arg(repo().join("deploy/kubernetes")));
    assert!(ok, "kubectl kustomize deploy/kubernetes:\n{text}");
    let docs = yaml_docs(&text, "kubectl kustomize output");
    let by_kind = |k: &str| -> &Value {
        docs.iter()
            .find(|d| d["kind"] == k)
            .unwrap_or_else(|| panic!("no {k} in the rendered base:\n{text}"))
    };
    let cm = by_kind("ConfigMap");
    let cm_name = cm["metadata"]["name"].as_str().unwrap();
    assert!(
        cm_name.starts_with("smtp-canary-config-"),
        "hashed name: {cm_name}"
    );
    assert_eq!(
        cm["data"]["config.yaml"].as_str().unwrap(),
        read("deploy/kubernetes/config.yaml")
    );
    let sts = by_kind("StatefulSet");
    check_statefulset(sts);
    let volumes = sts["spec"]["template"]["spec"]["volumes"]
        .as_array()
        .unwrap();
    assert!(
        volumes.iter().any(|v| v["configMap"]["name"] == cm_name),
        "the StatefulSet mounts the generated ConfigMap {cm_name}"
    );
    assert_eq!(
        sts["spec"]["template"]["spec"]["containers"][0]["image"],
        "smtp-canary:0.1.0"
    );
    by_kind("Service");
    by_kind("ServiceMonitor");
    assert_eq!(
        by_kind("PrometheusRule")["spec"],
        yaml_file("deploy/prometheus/alerts.yml"),
        "the rendered PrometheusRule carries alerts.yml"
    );
    assert!(
        !docs.iter().any(|d| d["kind"] == "Secret"),
        "the example Secret is not applied by the base"
    );
}

#[test]
#[ignore = "needs systemd-analyze (Debian systemd; scripts/test-all.sh installs it)"]
fn systemd_analyze_verifies_the_unit() {
    let _serial = serial::shared_blocking();
    let analyze = tool("systemd-analyze", "apt-get install systemd");
    // The unit as shipped, except that ExecStart names the binary under test:
    // `verify` checks that the executable exists.
    let tmp = tempfile::tempdir().unwrap();
    let unit = read("deploy/systemd/smtp-canary.service");
    assert!(unit.contains("ExecStart=/usr/local/bin/smtp-canary "));
    let unit = unit.replace(
        "ExecStart=/usr/local/bin/smtp-canary ",
        &format!("ExecStart={} ", env!("CARGO_BIN_EXE_smtp-canary")),
    );
    let path = tmp.path().join("smtp-canary.service");
    std::fs::write(&path, unit).unwrap();
    let (ok, text) = run(Command::new(&analyze).arg("verify").arg(&path));
    // verify only warns about unknown or misspelled keys: any output is a finding.
    assert!(
        ok && text.trim().is_empty(),
        "systemd-analyze verify:\n{text}"
    );
    let (ok, text) = run(Command::new(&analyze)
        .args(["security", "--offline=yes", "--no-pager"])
        .arg(&path));
    assert!(ok, "systemd-analyze security:\n{text}");
    let level: f64 = text
        .lines()
        .find_map(|l| {
            l.split("Overall exposure level for smtp-canary.service: ")
                .nth(1)
        })
        .and_then(|r| r.split_whitespace().next())
        .and_then(|v| v.parse().ok())
        .unwrap_or_else(|| panic!("no exposure level in:\n{text}"));
    eprintln!("systemd-analyze security: exposure {level}");
    assert!(
        level <= 2.0,
        "exposure level {level} (want <= 2.0, OK):\n{text}"
    );
}

#[test]
#[ignore = "needs python3 and /bin/sh (scripts/test-all.sh runs it)"]
fn the_generated_files_are_up_to_date() {
    let _serial = serial::shared_blocking();
    let python = tool("python3", "apt-get install python3");
    let (ok, text) = run(Command::new(&python)
        .arg(repo().join("dashboards/generate.py"))
        .arg("--check"));
    assert!(
        ok,
        "dashboards/smtp-canary.json is not what generate.py writes:\n{text}"
    );
    let (ok, text) = run(Command::new("/bin/sh")
        .arg(repo().join("deploy/kubernetes/gen-prometheusrule.sh"))
        .arg("--check"));
    assert!(
        ok,
        "deploy/kubernetes/prometheusrule.yaml is stale:\n{text}"
    );
    assert!(Path::new(&repo().join("deploy/kubernetes/gen-prometheusrule.sh")).is_file());
}
