//! smtp-canary against the stack: a config of stack mailboxes in a tempdir (secrets
//! only named, never written), `probe --format json` runs, and the daemon.

use std::net::Ipv4Addr;
use std::path::PathBuf;
use std::time::Duration;

use serde_json::Value;

use super::Stack;
use crate::support::daemon::{self, Daemon, Measured, run_measured};

/// The environment variable that carries the password to the child (`password_env`).
pub const PASSWORD_ENV: &str = "SMTP_CANARY_TEST_PASSWORD";

/// The probe timeout of every test mailbox: well above Dovecot's failed-login delay
/// (~1.6-2 s), well below the prober's 20 s auth-phase cap.
pub const PROBE_TIMEOUT: &str = "15s";

/// The longest a `smtp-canary probe` child may run before the test kills it.
const CHILD_DEADLINE: Duration = Duration::from_secs(60);

impl Stack {
    /// A mailbox on the stack's submission port: STARTTLS, the stack CA, host 127.0.0.1
    /// verified as `mail.example.test`, the stack's user, from and to itself.
    pub fn mailbox(&self, name: &str) -> MailboxCfg {
        MailboxCfg {
            name: name.to_owned(),
            host: self.host().to_owned(),
            port: self.smtp_port(),
            security: "starttls".to_owned(),
            username: Some(self.user().to_owned()),
            from: self.user().to_owned(),
            to: self.user().to_owned(),
            ca_file: Some(self.ca_file().to_owned()),
            server_name: Some(self.tls_name().to_owned()),
            source_address: None,
            auth_mechanism: None,
            allow_insecure_auth: None,
            interval: None,
            more_to: Vec::new(),
        }
    }
}

/// One mailbox of a test config. Strings are written as JSON-quoted YAML scalars.
#[derive(Debug, Clone)]
pub struct MailboxCfg {
    pub name: String,
    pub host: String,
    pub port: u16,
    pub security: String,
    pub username: Option<String>,
    pub from: String,
    pub to: String,
    pub ca_file: Option<String>,
    pub server_name: Option<String>,
    pub source_address: Option<Ipv4Addr>,
    pub auth_mechanism: Option<String>,
    pub allow_insecure_auth: Option<bool>,
    pub interval: Option<String>,
    /// More recipients after `to`.
    pub more_to: Vec<String>,
}

pub(super) fn q(s: &str) -> String {
    serde_json::to_string(s).expect("a string encodes")
}

impl MailboxCfg {
    pub fn source(mut self, ip: Ipv4Addr) -> Self {
        self.source_address = Some(ip);
        self
    }

    pub fn mechanism(mut self, m: &str) -> Self {
        self.auth_mechanism = Some(m.to_owned());
        self
    }

    fn yaml(&self) -> String {
        let mut y = format!("  - name: {}\n", q(&self.name));
        y += &format!(
            "    host: {}\n    port: {}\n    security: {}\n",
            q(&self.host),
            self.port,
            q(&self.security)
        );
        if let Some(u) = &self.username {
            // The secret itself never goes into the file: only the variable's name.
            y += &format!(
                "    username: {}\n    password_env: {}\n",
                q(u),
                q(PASSWORD_ENV)
            );
        }
        if let Some(m) = &self.auth_mechanism {
            y += &format!("    auth_mechanism: {}\n", q(m));
        }
        let to: Vec<String> = std::iter::once(&self.to)
            .chain(&self.more_to)
            .map(|t| q(t))
            .collect();
        y += &format!("    from: {}\n    to: [{}]\n", q(&self.from), to.join(", "));
        y += &format!("    timeout: {PROBE_TIMEOUT}\n");
        if let Some(i) = &self.interval {
            y += &format!("    interval: {i}\n");
        }
        if self.ca_file.is_some() || self.server_name.is_some() {
            y += "    tls:\n";
            if let Some(c) = &self.ca_file {
                y += &format!("      ca_file: {}\n", q(c));
            }
            if let Some(n) = &self.server_name {
                y += &format!("      server_name: {}\n", q(n));
            }
        }
        if let Some(a) = self.allow_insecure_auth {
            y += &format!("    allow_insecure_auth: {a}\n");
        }
        if let Some(s) = self.source_address {
            y += &format!("    source_address: {}\n", q(&s.to_string()));
        }
        y
    }
}

/// A config file (and state dir) in a tempdir, plus the password the child gets.
pub struct Canary {
    pub dir: tempfile::TempDir,
    pub config: PathBuf,
    pub password: String,
    pub extra_args: Vec<String>,
    /// More environment for the child (the sinks' secrets).
    pub extra_env: Vec<(String, String)>,
}

/// What `smtp-canary probe NAME --format json` printed.
#[derive(Debug)]
pub struct ProbeRun {
    /// The exit code.
    pub code: Option<i32>,
    pub json: Value,
    pub stdout: String,
    pub stderr: String,
    pub elapsed: Duration,
}

impl ProbeRun {
    pub fn str(&self, key: &str) -> Option<&str> {
        self.json.get(key).and_then(Value::as_str)
    }

    pub fn success(&self) -> bool {
        self.json["success"]
            .as_bool()
            .unwrap_or_else(|| panic!("no boolean success in {}", self.stdout))
    }

    pub fn probe_id(&self) -> &str {
        self.str("probe_id")
            .unwrap_or_else(|| panic!("no probe_id in {}", self.stdout))
    }

    pub fn phase_secs(&self, phase: &str) -> Option<f64> {
        self.json["phases"].get(phase).and_then(Value::as_f64)
    }

    pub fn phase_names(&self) -> Vec<String> {
        self.json["phases"]
            .as_object()
            .map(|m| m.keys().cloned().collect())
            .unwrap_or_default()
    }

    /// Lines the client sent, from the JSON transcript (AUTH payloads are redacted there).
    pub fn client_lines(&self) -> Vec<String> {
        self.json["transcript"]
            .as_array()
            .map(|a| {
                a.iter()
                    .filter(|e| e["dir"] == "C")
                    .filter_map(|e| e["text"].as_str().map(str::to_owned))
                    .collect()
            })
            .unwrap_or_default()
    }

    /// A one-line summary for assertion messages.
    pub fn summary(&self) -> String {
        format!(
            "exit {:?}, success={}, class={}, phase={}, code={}, reply={}, error={}, phases={}, total={}s",
            self.code,
            self.json["success"],
            self.json["class"],
            self.json["phase"],
            self.json["code"],
            self.json["reply"],
            self.json["error"],
            self.json["phases"],
            self.json["total_seconds"],
        )
    }

    pub fn assert_success(&self) {
        assert!(
            self.success() && self.code == Some(0),
            "probe should have delivered: {}\nstderr: {}",
            self.summary(),
            self.stderr
        );
    }

    /// Asserts a failed probe with this class, phase and code (exit 1).
    pub fn assert_failure(&self, class: &str, phase: &str, code: &str) {
        assert!(
            !self.success(),
            "probe should have failed: {}",
            self.summary()
        );
        assert_eq!(
            self.code,
            Some(1),
            "exit code of a failed probe: {}",
            self.summary()
        );
        assert_eq!(self.str("class"), Some(class), "class: {}", self.summary());
        assert_eq!(self.str("phase"), Some(phase), "phase: {}", self.summary());
        assert_eq!(self.str("code"), Some(code), "code: {}", self.summary());
        assert!(
            self.json["hint"].as_str().is_some_and(|h| !h.is_empty()),
            "a failure carries a hint: {}",
            self.summary()
        );
    }
}

impl Canary {
    /// A config with these mailboxes; the child gets the stack's password.
    pub fn new(mailboxes: &[MailboxCfg]) -> Canary {
        Canary::with_password(mailboxes, Stack::get().password())
    }

    pub fn with_password(mailboxes: &[MailboxCfg], password: &str) -> Canary {
        let dir = tempfile::Builder::new()
            .prefix("smtp-canary-stack-test")
            .tempdir()
            .expect("tempdir");
        let mut y = String::from(
            "# written by the stack tests (tests/support/stack/canary.rs)\nglobal:\n  helo_name: canary-test.example.test\n",
        );
        y += &format!("  timeout: {PROBE_TIMEOUT}\nmailboxes:\n");
        for mb in mailboxes {
            y += &mb.yaml();
        }
        let config = dir.path().join("config.yaml");
        std::fs::write(&config, &y).expect("writing config.yaml");
        assert!(
            !y.contains(password),
            "the password must never be written into the config"
        );
        Canary {
            dir,
            config,
            password: password.to_owned(),
            extra_args: Vec::new(),
            extra_env: Vec::new(),
        }
    }

    pub fn config_text(&self) -> String {
        std::fs::read_to_string(&self.config).unwrap_or_default()
    }

    pub fn state_dir(&self) -> PathBuf {
        self.dir.path().join("state")
    }

    /// `smtp-canary probe NAME --format json`, with a hard deadline.
    pub fn probe(&self, name: &str) -> ProbeRun {
        self.probe_with(name, &[])
    }

    /// `smtp-canary probe NAME --format json ARGS...` (e.g. `--wait-delivery`).
    pub fn probe_with(&self, name: &str, args: &[&str]) -> ProbeRun {
        let mut cmd = daemon::command(&[]);
        cmd.arg("--config.file")
            .arg(&self.config)
            .arg("--state.dir")
            .arg(self.state_dir())
            .args(&self.extra_args)
            .env(PASSWORD_ENV, &self.password)
            .envs(self.extra_env.iter().map(|(k, v)| (k, v)))
            .args(["probe", name, "--format", "json"])
            .args(args);
        let Measured {
            status,
            killed,
            stdout,
            stderr,
            elapsed,
            ..
        } = run_measured(cmd, CHILD_DEADLINE);
        assert!(
            !killed,
            "`smtp-canary probe {name}` ran longer than {CHILD_DEADLINE:?}; killed"
        );
        let json: Value = serde_json::from_str(&stdout).unwrap_or_else(|e| {
            panic!(
                "`smtp-canary probe {name} --format json` did not print JSON ({e}); exit {status}\nstdout: {stdout}\nstderr: {stderr}\nconfig:\n{}",
                self.config_text()
            )
        });
        let run = ProbeRun {
            code: status.code(),
            json,
            stdout,
            stderr,
            elapsed,
        };
        eprintln!(
            "probe {name}: {} (wall {:.3}s)",
            run.summary(),
            elapsed.as_secs_f64()
        );
        run
    }

    /// The daemon, probing at once, its DNS server the stack's Knot unless the extra
    /// arguments name another; ready when this returns.
    pub fn daemon(&self) -> Daemon {
        let mut extra = vec!["--probe.immediate"];
        extra.extend(self.extra_args.iter().map(String::as_str));
        if !extra.contains(&"--dns-server") {
            extra.extend(["--dns-server", Stack::get().dns()]);
        }
        let mut env: Vec<(&str, &str)> = vec![(PASSWORD_ENV, &self.password)];
        env.extend(self.extra_env.iter().map(|(k, v)| (k.as_str(), v.as_str())));
        let d = Daemon::start(&self.config, &self.state_dir(), &extra, &env);
        d.wait_ready(Duration::from_secs(15));
        d
    }
}
