//! The monitoring and deployment files as data: the dashboard and its queries with
//! Grafana's variables filled in, the alert rules, metric names in text, the metric names
//! src/metrics/ defines and the contract documents, YAML as untyped data, and the
//! shipped Prometheus config made runnable for a test.

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};

use serde_json::Value;

use super::repo;

pub fn read(rel: &str) -> String {
    let p = repo().join(rel);
    std::fs::read_to_string(&p).unwrap_or_else(|e| panic!("cannot read {}: {e}", p.display()))
}

/// Every YAML document of `text` as untyped data (`---` separates documents).
pub fn yaml_docs(text: &str, what: &str) -> Vec<Value> {
    serde_saphyr::from_multiple::<Value>(text)
        .unwrap_or_else(|e| panic!("{what} is not valid YAML: {e}"))
        .into_iter()
        // An empty document (a trailing `---`, a file of comments) is no resource.
        .filter(|v| !v.is_null())
        .collect()
}

/// The single YAML document of a repository file.
pub fn yaml_file(rel: &str) -> Value {
    let mut docs = yaml_docs(&read(rel), rel);
    assert_eq!(docs.len(), 1, "{rel} should hold exactly one YAML document");
    docs.remove(0)
}

pub fn dashboard() -> Value {
    serde_json::from_str(&read("dashboards/smtp-canary.json"))
        .unwrap_or_else(|e| panic!("dashboards/smtp-canary.json is not JSON: {e}"))
}

/// Every panel of the dashboard, rows' nested panels included, rows excluded.
pub fn panels(d: &Value) -> Vec<&Value> {
    let mut out = Vec::new();
    for p in d["panels"].as_array().expect("panels") {
        if p["type"] == "row" {
            out.extend(p["panels"].as_array().into_iter().flatten());
        } else {
            out.push(p);
        }
    }
    out
}

/// One query of a panel.
#[derive(Debug, Clone)]
pub struct PanelQuery {
    pub panel: String,
    pub ref_id: String,
    pub expr: String,
}

pub fn panel_queries(d: &Value) -> Vec<PanelQuery> {
    let mut out = Vec::new();
    for p in panels(d) {
        let title = p["title"].as_str().unwrap_or("?").to_owned();
        for t in p["targets"].as_array().into_iter().flatten() {
            out.push(PanelQuery {
                panel: title.clone(),
                ref_id: t["refId"].as_str().unwrap_or("?").to_owned(),
                expr: t["expr"].as_str().unwrap_or_default().to_owned(),
            });
        }
    }
    out
}

/// The dashboard's template variables: (name, type, query string).
pub fn variables(d: &Value) -> Vec<(String, String, String)> {
    d["templating"]["list"]
        .as_array()
        .expect("templating.list")
        .iter()
        .map(|v| {
            let q = match &v["query"] {
                Value::String(s) => s.clone(),
                o => o["query"].as_str().unwrap_or_default().to_owned(),
            };
            (
                v["name"].as_str().unwrap_or_default().to_owned(),
                v["type"].as_str().unwrap_or_default().to_owned(),
                q,
            )
        })
        .collect()
}

/// A dashboard query as Grafana would send it with "All" selected: the variables
/// become `.*` (the variables' allValue), Grafana's interval variables durations.
/// Panics if a `$` is left over, i.e. a variable this function does not know.
pub fn substitute(expr: &str) -> String {
    let mut s = expr.to_owned();
    for (var, value) in [
        ("$__rate_interval", "1m"),
        ("${__rate_interval}", "1m"),
        ("$__interval", "15s"),
        ("${__interval}", "15s"),
        ("$__range", "5m"),
        ("${__range}", "5m"),
        ("${job}", ".*"),
        ("$job", ".*"),
        ("${instance}", ".*"),
        ("$instance", ".*"),
        ("${mailbox}", ".*"),
        ("$mailbox", ".*"),
        ("${domain}", ".*"),
        ("$domain", ".*"),
    ] {
        s = s.replace(var, value);
    }
    assert!(
        !s.contains('$'),
        "unknown template variable left in a dashboard query: {s}"
    );
    s
}

/// A variable query (`label_values(SELECTOR, LABEL)` or `query_result(EXPR)`) as the
/// PromQL to run and the label it reads.
pub fn variable_promql(query: &str) -> (String, Option<String>) {
    let q = query.trim();
    if let Some(inner) = q
        .strip_prefix("label_values(")
        .and_then(|r| r.strip_suffix(')'))
    {
        let (selector, label) = inner
            .rsplit_once(',')
            .unwrap_or_else(|| panic!("label_values without a label: {q}"));
        return (substitute(selector.trim()), Some(label.trim().to_owned()));
    }
    if let Some(inner) = q
        .strip_prefix("query_result(")
        .and_then(|r| r.strip_suffix(')'))
    {
        return (substitute(inner.trim()), None);
    }
    panic!("unsupported variable query: {q}");
}

/// The alert rules of a rule file's groups: (alert name, rule object).
pub fn alert_rules(groups_doc: &Value) -> Vec<(String, Value)> {
    let mut out = Vec::new();
    for g in groups_doc["groups"].as_array().expect("groups") {
        for r in g["rules"].as_array().expect("rules") {
            if let Some(name) = r["alert"].as_str() {
                out.push((name.to_owned(), r.clone()));
            }
        }
    }
    out
}

pub fn alerts() -> Vec<(String, Value)> {
    alert_rules(&yaml_file("deploy/prometheus/alerts.yml"))
}

/// The alerts issue 7 asks for, in its order, then the delivery alerts (the second group
/// of alerts.yml, `smtp-canary-delivery`).
pub const ALERTS: [&str; 17] = [
    "SMTPCanaryProbeFailing",
    "SMTPCanaryAuthFailing",
    "SMTPCanaryAuthPolicyBlocked",
    "SMTPCanaryOAuthTokenFailing",
    "SMTPCanaryThrottled",
    "SMTPCanaryQuotaNearLimit",
    "SMTPCanaryNoRecentSuccess",
    "SMTPCanaryExporterDown",
    "SMTPCanaryCertExpiringSoon",
    "SMTPCanaryDNSAuditError",
    "SMTPCanaryBasicAuthRetiring",
    "SMTPCanaryStateUnwritable",
    "SMTPCanaryDeliveryLost",
    "SMTPCanaryDeliveryJunk",
    "SMTPCanaryDKIMFailingAtReceiver",
    "SMTPCanaryBounces",
    "SMTPCanarySinkDown",
];

/// Every `smtp_canary_[a-z_]+` name in `text`, as written (with `_bucket` etc.).
pub fn metric_names(text: &str) -> BTreeSet<String> {
    const PREFIX: &str = "smtp_canary_";
    let mut out = BTreeSet::new();
    let bytes = text.as_bytes();
    let mut from = 0;
    while let Some(pos) = text[from..].find(PREFIX) {
        let start = from + pos;
        // Not the tail of a longer identifier (e.g. `my_smtp_canary_x`).
        let boundary =
            start == 0 || !(bytes[start - 1].is_ascii_alphanumeric() || bytes[start - 1] == b'_');
        let mut end = start + PREFIX.len();
        while end < bytes.len() && (bytes[end].is_ascii_lowercase() || bytes[end] == b'_') {
            end += 1;
        }
        if boundary && end > start + PREFIX.len() {
            out.insert(text[start..end].trim_end_matches('_').to_owned());
        }
        from = end;
    }
    out
}

/// The metric families src/metrics/ defines (full names), and which are histograms.
pub fn defined_metrics() -> (BTreeSet<String>, BTreeSet<String>) {
    let dir = repo().join("src/metrics");
    let mut files: Vec<_> = std::fs::read_dir(&dir)
        .unwrap_or_else(|e| panic!("cannot list {}: {e}", dir.display()))
        .flatten()
        .map(|e| e.path())
        .filter(|p| p.extension().is_some_and(|x| x == "rs"))
        .collect();
    files.sort();
    let src: String = files
        .iter()
        .map(|p| std::fs::read_to_string(p).unwrap_or_default())
        .collect();
    assert!(
        src.contains(r#"const NS: &str = "smtp_canary";"#),
        "src/metrics/ no longer uses the smtp_canary namespace"
    );
    let mut all = BTreeSet::new();
    let mut histograms = BTreeSet::new();
    // The groups define metrics with register(..) and scalar(..), histograms with
    // HistogramOpts, and the scrape-time quota series as (name, help) constants.
    for (marker, histogram) in [
        ("register(", false),
        ("scalar(", false),
        (": (&str, &str) = (", false),
        ("HistogramOpts::new(", true),
    ] {
        let mut rest = src.as_str();
        while let Some(i) = rest.find(marker) {
            rest = &rest[i + marker.len()..];
            // The first string literal after the marker is the name.
            let Some(q) = rest.find('"') else { break };
            let after = &rest[q + 1..];
            let name = &after[..after.find('"').expect("closing quote")];
            if name.chars().all(|c| c.is_ascii_lowercase() || c == '_') && !name.is_empty() {
                all.insert(format!("smtp_canary_{name}"));
                if histogram {
                    histograms.insert(format!("smtp_canary_{name}"));
                }
            }
        }
    }
    assert!(
        all.len() >= 25,
        "found only {} metrics in src/metrics/: {all:?}",
        all.len()
    );
    (all, histograms)
}

/// The contract's metric names, from the "Metrics" table and the metrics table of the
/// "Delivery" section of `../shared/CONTRACT.md` (the contract of record) when it is
/// there, else of the README (which repeats them).
pub fn contract_metrics() -> (String, BTreeSet<String>) {
    let shared = repo().join("../shared/CONTRACT.md");
    let (source, text) = match std::fs::read_to_string(&shared) {
        Ok(t) => (shared.display().to_string(), t),
        Err(_) => ("README.md".to_owned(), read("README.md")),
    };
    let mut names = BTreeSet::new();
    let mut in_metrics = false;
    for line in text.lines() {
        if line.starts_with("## ") {
            let h = line.trim();
            // "## Delivery (wave 2)": its only table is the delivery metrics.
            in_metrics = h == "## Metrics"
                || h.starts_with("## Metrics ")
                || h == "## Delivery"
                || h.starts_with("## Delivery ");
            continue;
        }
        if !in_metrics || !line.starts_with('|') {
            continue;
        }
        let cell = line
            .split('|')
            .nth(1)
            .unwrap_or("")
            .trim()
            .trim_matches('`');
        // The header row's first cell is `name`.
        if cell != "name"
            && !cell.is_empty()
            && cell.chars().all(|c| c.is_ascii_lowercase() || c == '_')
        {
            names.insert(format!("smtp_canary_{cell}"));
        }
    }
    assert!(
        names.len() >= 25,
        "found only {} metrics in the contract table of {source}",
        names.len()
    );
    (source, names)
}

/// The metric family a name as written in a query belongs to (`_bucket`, `_sum` and
/// `_count` of a histogram belong to the histogram).
pub fn family(name: &str, histograms: &BTreeSet<String>) -> String {
    for suffix in ["_bucket", "_sum", "_count"] {
        if let Some(base) = name.strip_suffix(suffix)
            && histograms.contains(base)
        {
            return base.to_owned();
        }
    }
    name.to_owned()
}

/// The files whose metric names must all be exported and in the contract.
pub const MONITORING_FILES: [&str; 5] = [
    "dashboards/smtp-canary.json",
    "deploy/prometheus/alerts.yml",
    "deploy/prometheus/alerts_test.yml",
    "deploy/kubernetes/prometheusrule.yaml",
    "docs/runbooks.md",
];

/// Every file under `dir` (recursively), sorted.
pub fn files_under(dir: &Path) -> Vec<PathBuf> {
    let mut out = Vec::new();
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        for e in std::fs::read_dir(&d).unwrap_or_else(|e| panic!("{}: {e}", d.display())) {
            let p = e.expect("dir entry").path();
            if p.is_dir() {
                stack.push(p);
            } else {
                out.push(p);
            }
        }
    }
    out.sort();
    out
}

/// Prometheus's config for a test: `rel` (a shipped prometheus.yml) with its one static
/// target replaced by `target` and every interval set to 1 s; nothing else changes.
pub fn render_prometheus_config(rel: &str, old_target: &str, target: &str) -> String {
    let shipped = read(rel);
    assert_eq!(
        shipped.matches(old_target).count(),
        1,
        "{rel} has exactly one target {old_target}"
    );
    let mut out = String::new();
    for line in shipped.replace(old_target, target).lines() {
        let key = line.trim_start();
        let indent = &line[..line.len() - key.len()];
        match [
            "scrape_interval:",
            "scrape_timeout:",
            "evaluation_interval:",
        ]
        .iter()
        .find(|k| key.starts_with(*k))
        {
            Some(k) => out += &format!("{indent}{k} 1s\n"),
            None => {
                out += line;
                out.push('\n');
            }
        }
    }
    out
}
