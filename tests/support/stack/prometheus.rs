//! A test-owned Prometheus (the stack's `prometheus` binary) that scrapes one target with
//! the shipped job and rule file, and its HTTP API.

use std::net::SocketAddr;
use std::path::Path;
use std::process::Command;
use std::time::Duration;

use serde_json::Value;

use super::tool;
use crate::support::daemon::ChildGuard;
use crate::support::deploy::{read, render_prometheus_config};
use crate::support::http::{self, urlencode};
use crate::support::ports::{free_port, loopback};
use crate::support::{repo, wait_until};

/// A Prometheus on a free loopback port, killed with the guard.
pub struct TestPrometheus {
    pub addr: SocketAddr,
    pub child: ChildGuard,
}

impl TestPrometheus {
    /// Under `dir/prometheus`: the shipped `deploy/prometheus/prometheus.yml` with its
    /// target replaced by `target` and every interval 1 s, `alerts.yml` next to it as it
    /// is shipped; `promtool check config` passes; ready when this returns.
    pub fn start(dir: &Path, target: &str) -> TestPrometheus {
        let shipped = "deploy/prometheus/prometheus.yml";
        assert!(
            read(shipped).contains("job_name: smtp-canary"),
            "the shipped config has job smtp-canary"
        );
        let prom_dir = dir.join("prometheus");
        std::fs::create_dir_all(prom_dir.join("data")).unwrap();
        let cfg = prom_dir.join("prometheus.yml");
        std::fs::write(
            &cfg,
            render_prometheus_config(shipped, "localhost:9587", target),
        )
        .unwrap();
        // The shipped config loads `rule_files: [alerts.yml]` relative to itself.
        std::fs::copy(
            repo().join("deploy/prometheus/alerts.yml"),
            prom_dir.join("alerts.yml"),
        )
        .expect("copying deploy/prometheus/alerts.yml next to the rendered config");
        promtool_check_config(&cfg);
        let addr = loopback(free_port());
        let child = ChildGuard::spawn(
            "prometheus",
            Command::new(tool("prometheus"))
                .arg(format!("--config.file={}", cfg.display()))
                .arg(format!(
                    "--storage.tsdb.path={}",
                    prom_dir.join("data").display()
                ))
                .arg(format!("--web.listen-address={addr}"))
                .arg("--log.level=warn"),
            prom_dir.join("prometheus.log"),
        );
        wait_until(Duration::from_secs(30), || {
            child.assert_running();
            http::get(addr, "/-/ready").ok().filter(|r| r.status == 200)
        })
        .unwrap_or_else(|| {
            panic!(
                "the test Prometheus never became ready on {addr}\n{}",
                child.log_tail()
            )
        });
        TestPrometheus { addr, child }
    }

    /// An instant query: the result vector, or Prometheus's error.
    pub fn query(&self, promql: &str) -> Result<Vec<Value>, String> {
        let r = http::get(
            self.addr,
            &format!("/api/v1/query?query={}", urlencode(promql)),
        )
        .map_err(|e| format!("GET /api/v1/query: {e}"))?;
        let v: Value = serde_json::from_str(&r.body)
            .map_err(|e| format!("HTTP {}, not JSON ({e}): {}", r.status, r.body))?;
        if v["status"] != "success" {
            return Err(format!(
                "HTTP {}: {}: {}",
                r.status,
                v["errorType"].as_str().unwrap_or("?"),
                v["error"].as_str().unwrap_or("?")
            ));
        }
        if v["data"]["resultType"] != "vector" {
            return Err(format!(
                "result type {} (want vector)",
                v["data"]["resultType"]
            ));
        }
        Ok(v["data"]["result"].as_array().cloned().unwrap_or_default())
    }

    /// GET `path` of the API, which must answer 200 with JSON.
    pub fn api(&self, path: &str) -> Value {
        let r = http::get(self.addr, path).unwrap_or_else(|e| panic!("GET {path}: {e}"));
        assert_eq!(r.status, 200, "GET {path}: {}", r.body);
        serde_json::from_str(&r.body).unwrap_or_else(|e| panic!("GET {path}: {e}: {}", r.body))
    }

    /// The scrape targets, for a panic message.
    pub fn targets(&self) -> String {
        http::get(self.addr, "/api/v1/targets")
            .map(|r| r.body)
            .unwrap_or_else(|e| e.to_string())
    }
}

/// `promtool check config` passes on `path`.
pub fn promtool_check_config(path: &Path) {
    let out = Command::new(tool("promtool"))
        .args(["check", "config"])
        .arg(path)
        .output()
        .expect("running promtool");
    assert!(
        out.status.success(),
        "promtool check config {}: {}\n{}{}",
        path.display(),
        out.status,
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
}
