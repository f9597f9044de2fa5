//! Helpers for `tests/integration/stack_integration.rs`: the running mail stack (`tests/stack/up.sh`),
//! configs in a tempdir, the real `smtp-canary` binary as a child process, a tiny HTTP
//! client, the Maildir and the Postfix log.
//!
//! No new dependencies: std, tokio (for sockets bound to a source address), serde_json,
//! rand and tempfile.

#![allow(dead_code)]

use std::collections::{HashMap, HashSet};
use std::io::{Read, Write};
use std::net::{Ipv4Addr, SocketAddr, TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::{Mutex, OnceLock};
use std::time::{Duration, Instant, SystemTime};

use serde_json::Value;

/// The smtp-canary binary under test.
pub const BIN: &str = env!("CARGO_BIN_EXE_smtp-canary");

/// The environment variable that carries the password to the child (`password_env`).
pub const PASSWORD_ENV: &str = "SMTP_CANARY_TEST_PASSWORD";

/// The probe timeout of every test mailbox: well above Dovecot's failed-login delay
/// (~1.6-2 s), well below the prober's 20 s auth-phase cap.
pub const PROBE_TIMEOUT: &str = "15s";

/// The longest a `smtp-canary probe` child may run before the test kills it.
const CHILD_DEADLINE: Duration = Duration::from_secs(60);

// ------------------------------------------------------------------------------- stack

/// The running stack, as described by `$STACK_ROOT/run/stack.env`.
#[derive(Debug)]
pub struct Stack {
    vars: HashMap<String, String>,
    env_file: PathBuf,
}

impl Stack {
    /// The stack, or a loud panic that says how to start it. Never skips.
    pub fn get() -> &'static Stack {
        static STACK: OnceLock<Stack> = OnceLock::new();
        STACK.get_or_init(Stack::load)
    }

    fn load() -> Stack {
        let root =
            std::env::var("STACK_ROOT").unwrap_or_else(|_| "/var/tmp/smtp-canary-stack".to_owned());
        let env_file = Path::new(&root).join("run/stack.env");
        let text = match std::fs::read_to_string(&env_file) {
            Ok(t) => t,
            Err(e) => panic!(
                "\n\n*** THE MAIL STACK IS NOT RUNNING ***\n\
                 cannot read {} ({e}).\n\
                 These tests need the real Postfix/Dovecot/OpenDKIM/Knot/Prometheus stack.\n\
                 Start it as root:   sudo tests/stack/up.sh   (see tests/stack/README.md)\n\
                 or run everything:  sudo scripts/test-all.sh\n\
                 (set STACK_ROOT if the stack lives elsewhere than /var/tmp/smtp-canary-stack)\n",
                env_file.display()
            ),
        };
        let vars: HashMap<String, String> = text
            .lines()
            .filter(|l| !l.trim().is_empty() && !l.starts_with('#'))
            .filter_map(|l| l.split_once('='))
            .map(|(k, v)| (k.trim().to_owned(), v.trim().to_owned()))
            .collect();
        let stack = Stack { vars, env_file };
        // stack.env exists: the stack claims to be up. Check that Postfix really listens.
        let smtp = stack.smtp_addr();
        if let Err(e) = TcpStream::connect_timeout(&smtp, Duration::from_secs(3)) {
            panic!(
                "\n\n*** THE MAIL STACK IS NOT RUNNING ***\n\
                 {} exists but Postfix does not answer on {smtp}: {e}.\n\
                 Restart it as root: sudo tests/stack/up.sh\n",
                stack.env_file.display()
            );
        }
        stack
    }

    /// One variable of stack.env; panics with the file name when it is missing.
    pub fn var(&self, key: &str) -> &str {
        self.vars.get(key).unwrap_or_else(|| {
            panic!(
                "{} has no {key}: is tests/stack/up.sh older than these tests?",
                self.env_file.display()
            )
        })
    }

    pub fn num(&self, key: &str) -> u32 {
        let v = self.var(key);
        v.parse()
            .unwrap_or_else(|_| panic!("{key}={v} in {} is not a number", self.env_file.display()))
    }

    pub fn host(&self) -> &str {
        self.var("STACK_HOST")
    }

    pub fn smtp_port(&self) -> u16 {
        self.num("STACK_SMTP_PORT") as u16
    }

    pub fn smtp_addr(&self) -> SocketAddr {
        SocketAddr::new(
            self.host().parse().expect("STACK_HOST is an IP"),
            self.smtp_port(),
        )
    }

    pub fn user(&self) -> &str {
        self.var("STACK_USER")
    }

    pub fn password(&self) -> &str {
        self.var("STACK_PASS")
    }

    pub fn ca_file(&self) -> &str {
        self.var("STACK_CA_FILE")
    }

    pub fn tls_name(&self) -> &str {
        self.var("STACK_TLS_NAME")
    }

    pub fn maildir(&self) -> PathBuf {
        PathBuf::from(self.var("STACK_MAILDIR"))
    }

    pub fn postfix_log(&self) -> PathBuf {
        PathBuf::from(self.var("STACK_POSTFIX_LOG"))
    }

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
        }
    }

    /// Waits until the canary with `probe_id` lands in the Maildir (new/ or cur/) and
    /// returns its path and raw bytes.
    pub fn wait_for_canary(
        &self,
        mailbox: &str,
        probe_id: &str,
        within: Duration,
    ) -> (PathBuf, String) {
        let needle = format!("X-Smtp-Canary: {mailbox} {probe_id}");
        let maildir = self.maildir();
        let since = SystemTime::now() - Duration::from_secs(120);
        let found = wait_until(within, || {
            for sub in ["new", "cur"] {
                let Ok(entries) = std::fs::read_dir(maildir.join(sub)) else {
                    continue;
                };
                for e in entries.flatten() {
                    let recent = e
                        .metadata()
                        .and_then(|m| m.modified())
                        .map(|t| t >= since)
                        .unwrap_or(true);
                    if !recent {
                        continue;
                    }
                    let Ok(bytes) = std::fs::read(e.path()) else {
                        continue;
                    };
                    let text = String::from_utf8_lossy(&bytes).into_owned();
                    if unfold_headers(&text).iter().any(|h| h == &needle) {
                        return Some((e.path(), text));
                    }
                }
            }
            None
        });
        found.unwrap_or_else(|| {
            panic!(
                "canary {probe_id} of {mailbox} did not arrive in {} within {within:?} (looked for the header {needle:?}; \
                 is the Maildir readable by this user? the stack's Postfix log: {})",
                maildir.display(),
                self.postfix_log().display()
            )
        })
    }
}

// ------------------------------------------------------------------------------- addresses

/// A loopback source address nobody else in this process uses: 127.x.y.z with x in
/// `x_range`, so each test has its own Postfix anvil budget, and a second run of the
/// suite (within the 60 s window) starts fresh too.
pub fn fresh_source(x_range: std::ops::Range<u8>) -> Ipv4Addr {
    static USED: OnceLock<Mutex<HashSet<Ipv4Addr>>> = OnceLock::new();
    let used = USED.get_or_init(|| Mutex::new(HashSet::new()));
    loop {
        let ip = Ipv4Addr::new(
            127,
            rand::random_range(x_range.clone()),
            rand::random_range(1..=254u8),
            rand::random_range(2..=254u8),
        );
        if used.lock().unwrap().insert(ip) {
            return ip;
        }
    }
}

/// A port that was free a moment ago on 127.0.0.1.
pub fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("binding 127.0.0.1:0")
}

// ------------------------------------------------------------------------------- configs

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
}

fn q(s: &str) -> String {
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
        y += &format!("    from: {}\n    to: [{}]\n", q(&self.from), q(&self.to));
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
}

/// What `smtp-canary probe NAME --format json` printed.
#[derive(Debug)]
pub struct ProbeRun {
    pub status: ExitStatus,
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
            self.status.code(),
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
            self.success() && self.status.success(),
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
            self.status.code(),
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
            "# written by tests/integration/stack_integration.rs\nglobal:\n  helo_name: canary-test.example.test\n",
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
        }
    }

    pub fn config_text(&self) -> String {
        std::fs::read_to_string(&self.config).unwrap_or_default()
    }

    /// The child command with the common flags and the password in its environment.
    pub fn command(&self) -> Command {
        let mut c = Command::new(BIN);
        c.arg("--config.file")
            .arg(&self.config)
            .arg("--state.dir")
            .arg(self.dir.path().join("state"))
            .args(&self.extra_args)
            .env(PASSWORD_ENV, &self.password)
            .env_remove("RUST_LOG")
            .stdin(Stdio::null());
        c
    }

    /// `smtp-canary probe NAME --format json`, with a hard deadline.
    pub fn probe(&self, name: &str) -> ProbeRun {
        let out = self
            .dir
            .path()
            .join(format!("probe-{}.out", rand::random::<u32>()));
        let err = out.with_extension("err");
        let mut cmd = self.command();
        cmd.args(["probe", name, "--format", "json"])
            .stdout(std::fs::File::create(&out).expect("stdout file"))
            .stderr(std::fs::File::create(&err).expect("stderr file"));
        let started = Instant::now();
        let mut child = cmd
            .spawn()
            .unwrap_or_else(|e| panic!("cannot run {BIN}: {e}"));
        let status = loop {
            if let Some(s) = child.try_wait().expect("waiting for the probe") {
                break s;
            }
            if started.elapsed() > CHILD_DEADLINE {
                let _ = child.kill();
                let _ = child.wait();
                panic!("`smtp-canary probe {name}` ran longer than {CHILD_DEADLINE:?}; killed");
            }
            std::thread::sleep(Duration::from_millis(20));
        };
        let elapsed = started.elapsed();
        let stdout = std::fs::read_to_string(&out).unwrap_or_default();
        let stderr = std::fs::read_to_string(&err).unwrap_or_default();
        let json: Value = serde_json::from_str(&stdout).unwrap_or_else(|e| {
            panic!(
                "`smtp-canary probe {name} --format json` did not print JSON ({e}); exit {status}\nstdout: {stdout}\nstderr: {stderr}\nconfig:\n{}",
                self.config_text()
            )
        });
        let run = ProbeRun {
            status,
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

    /// Starts the daemon on `listen`; it dies with the returned guard.
    pub fn daemon(&self, listen: SocketAddr) -> ChildGuard {
        let log = self.dir.path().join("daemon.log");
        let mut cmd = self.command();
        cmd.arg("--web.listen-address")
            .arg(listen.to_string())
            .arg("--probe.immediate")
            .stdout(std::fs::File::create(&log).expect("daemon log"))
            .stderr(
                std::fs::File::options()
                    .append(true)
                    .open(&log)
                    .expect("daemon log"),
            );
        let child = cmd
            .spawn()
            .unwrap_or_else(|e| panic!("cannot start {BIN}: {e}"));
        let guard = ChildGuard {
            child,
            name: "smtp-canary daemon".into(),
            log,
        };
        let ready = wait_until(Duration::from_secs(15), || {
            guard.assert_running();
            http_get(listen, "/-/ready").ok().filter(|(s, _)| *s == 200)
        });
        if ready.is_none() {
            panic!(
                "smtp-canary daemon never became ready on {listen}\n{}",
                guard.log_tail()
            );
        }
        guard
    }
}

// ------------------------------------------------------------------------------- processes

/// Kills (SIGKILL) and reaps its child when dropped, also when the test panics.
pub struct ChildGuard {
    pub child: Child,
    pub name: String,
    pub log: PathBuf,
}

impl ChildGuard {
    pub fn spawn(name: &str, cmd: &mut Command, log: PathBuf) -> ChildGuard {
        let f = std::fs::File::create(&log).expect("log file");
        let f2 = f.try_clone().expect("log file");
        let child = cmd
            .stdin(Stdio::null())
            .stdout(f)
            .stderr(f2)
            .spawn()
            .unwrap_or_else(|e| panic!("cannot start {name}: {e}"));
        ChildGuard {
            child,
            name: name.to_owned(),
            log,
        }
    }

    pub fn log_tail(&self) -> String {
        let text = std::fs::read_to_string(&self.log).unwrap_or_default();
        let lines: Vec<&str> = text.lines().collect();
        let from = lines.len().saturating_sub(40);
        format!(
            "--- last lines of {} ({}) ---\n{}",
            self.name,
            self.log.display(),
            lines[from..].join("\n")
        )
    }

    /// Panics (with its log) if the child has exited.
    pub fn assert_running(&self) {
        // try_wait needs &mut; read /proc instead so this works through & as well.
        let stat =
            std::fs::read_to_string(format!("/proc/{}/stat", self.child.id())).unwrap_or_default();
        let state = stat
            .rsplit(')')
            .next()
            .and_then(|s| s.split_whitespace().next())
            .unwrap_or("");
        if stat.is_empty() || state == "Z" || state == "X" {
            panic!("{} exited early\n{}", self.name, self.log_tail());
        }
    }
}

impl Drop for ChildGuard {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Path of an executable from the stack's packages, or a clear panic.
pub fn stack_tool(name: &str) -> PathBuf {
    for dir in std::env::var("PATH")
        .unwrap_or_default()
        .split(':')
        .chain(["/usr/bin", "/usr/sbin"])
    {
        let p = Path::new(dir).join(name);
        if p.is_file() {
            return p;
        }
    }
    panic!("`{name}` is not installed; tests/stack/up.sh (as root) installs it")
}

// ------------------------------------------------------------------------------- polling

/// Calls `f` every 100 ms until it returns `Some`, or `within` passes.
pub fn wait_until<T>(within: Duration, mut f: impl FnMut() -> Option<T>) -> Option<T> {
    let deadline = Instant::now() + within;
    loop {
        if let Some(v) = f() {
            return Some(v);
        }
        if Instant::now() >= deadline {
            return None;
        }
        std::thread::sleep(Duration::from_millis(100));
    }
}

// ------------------------------------------------------------------------------- HTTP

/// A minimal HTTP/1.0 GET: (status, body).
pub fn http_get(addr: SocketAddr, path_and_query: &str) -> std::io::Result<(u16, String)> {
    let mut s = TcpStream::connect_timeout(&addr, Duration::from_secs(3))?;
    s.set_read_timeout(Some(Duration::from_secs(10)))?;
    s.set_write_timeout(Some(Duration::from_secs(10)))?;
    write!(
        s,
        "GET {path_and_query} HTTP/1.0\r\nHost: {addr}\r\nConnection: close\r\n\r\n"
    )?;
    let mut raw = Vec::new();
    s.read_to_end(&mut raw)?;
    let text = String::from_utf8_lossy(&raw).into_owned();
    let (head, body) = text
        .split_once("\r\n\r\n")
        .ok_or_else(|| std::io::Error::other(format!("no HTTP header end in {text:?}")))?;
    let status = head
        .split_whitespace()
        .nth(1)
        .and_then(|c| c.parse().ok())
        .ok_or_else(|| std::io::Error::other(format!("bad status line in {head:?}")))?;
    Ok((status, body.to_owned()))
}

/// Percent-encoding for a query-string value.
pub fn urlencode(s: &str) -> String {
    let mut out = String::new();
    for b in s.bytes() {
        if b.is_ascii_alphanumeric() || b"-_.~".contains(&b) {
            out.push(b as char);
        } else {
            out += &format!("%{b:02X}");
        }
    }
    out
}

/// Runs a PromQL instant query; `data.result` of a successful answer.
pub fn prom_query(prom: SocketAddr, promql: &str) -> Option<Vec<Value>> {
    let (status, body) =
        http_get(prom, &format!("/api/v1/query?query={}", urlencode(promql))).ok()?;
    if status != 200 {
        return None;
    }
    let v: Value = serde_json::from_str(&body).ok()?;
    if v["status"] != "success" {
        return None;
    }
    v["data"]["result"].as_array().cloned()
}

// ------------------------------------------------------------------------------- logs and mail

/// Reads what a log file gained after this cursor was made.
pub struct LogCursor {
    path: PathBuf,
    offset: u64,
}

impl LogCursor {
    pub fn new(path: PathBuf) -> LogCursor {
        let offset = std::fs::metadata(&path)
            .map(|m| m.len())
            .unwrap_or_else(|e| panic!("cannot stat {}: {e}", path.display()));
        LogCursor { path, offset }
    }

    pub fn since(&self) -> String {
        let bytes = std::fs::read(&self.path)
            .unwrap_or_else(|e| panic!("cannot read {}: {e}", self.path.display()));
        let from = (self.offset as usize).min(bytes.len());
        String::from_utf8_lossy(&bytes[from..]).into_owned()
    }

    /// The new lines about client `ip` (Postfix writes it as `[ip]`).
    pub fn lines_for(&self, ip: Ipv4Addr) -> Vec<String> {
        let tag = format!("[{ip}]");
        self.since()
            .lines()
            .filter(|l| l.contains(&tag))
            .map(str::to_owned)
            .collect()
    }
}

/// The header section of a message, each header unfolded onto one line (continuation
/// lines joined with one space).
pub fn unfold_headers(message: &str) -> Vec<String> {
    let mut out: Vec<String> = Vec::new();
    for line in message.split('\n') {
        let line = line.trim_end_matches('\r');
        if line.is_empty() {
            break;
        }
        if line.starts_with([' ', '\t']) {
            if let Some(last) = out.last_mut() {
                last.push(' ');
                last.push_str(line.trim());
            }
        } else {
            out.push(line.to_owned());
        }
    }
    out
}

/// The unfolded value of the first header called `name` (case-insensitive).
pub fn header<'a>(headers: &'a [String], name: &str) -> Option<&'a str> {
    headers.iter().find_map(|h| {
        let (n, v) = h.split_once(':')?;
        n.eq_ignore_ascii_case(name).then_some(v.trim())
    })
}

/// The `tag=value` pairs of a DKIM-Signature value.
pub fn dkim_tags(value: &str) -> HashMap<String, String> {
    value
        .split(';')
        .filter_map(|t| t.split_once('='))
        .map(|(k, v)| {
            (
                k.trim().to_owned(),
                v.split_whitespace().collect::<String>(),
            )
        })
        .collect()
}

/// Verifies the DKIM signature of the message in `path` with python3-dkim (installed by
/// the stack), fetching the key from the stack's Knot, not from the system resolver.
pub fn dkim_verify(stack: &Stack, path: &Path) -> Result<(), String> {
    const SCRIPT: &str = r#"
import sys, dkim, dns.resolver
r = dns.resolver.Resolver(configure=False); r.nameservers = [sys.argv[2]]; r.port = int(sys.argv[3])
def txt(name, timeout=5):
    name = name.decode() if isinstance(name, bytes) else name
    return b"".join(b"".join(x.strings) for x in r.resolve(name, "TXT", lifetime=timeout))
print("verified" if dkim.verify(open(sys.argv[1], "rb").read(), dnsfunc=txt) else "FAILED")
"#;
    let dns = stack.var("STACK_DNS");
    let (ip, port) = dns.rsplit_once(':').unwrap_or((dns, "53"));
    let out = Command::new("/usr/bin/python3")
        .arg("-c")
        .arg(SCRIPT)
        .arg(path)
        .arg(ip)
        .arg(port)
        .output()
        .map_err(|e| {
            format!("cannot run /usr/bin/python3 (installed by tests/stack/up.sh): {e}")
        })?;
    let stdout = String::from_utf8_lossy(&out.stdout);
    if out.status.success() && stdout.trim() == "verified" {
        Ok(())
    } else {
        Err(format!(
            "dkim.verify: {} {}{}",
            out.status,
            stdout.trim(),
            String::from_utf8_lossy(&out.stderr)
        ))
    }
}

// ------------------------------------------------------------------------------- raw sockets

/// A current-thread tokio runtime for the few raw-socket helpers (tokio's `TcpSocket`
/// binds a source address before connecting, which std cannot do).
pub fn rt() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("tokio runtime")
}

/// Connects to `to` from `from` (port chosen by the kernel).
pub async fn connect_from(
    from: Ipv4Addr,
    to: SocketAddr,
) -> std::io::Result<tokio::net::TcpStream> {
    let socket = tokio::net::TcpSocket::new_v4()?;
    socket.bind(SocketAddr::new(from.into(), 0))?;
    socket.connect(to).await
}

/// Reads one SMTP reply (all its lines) from a raw stream.
pub async fn read_smtp_reply<R: tokio::io::AsyncBufRead + Unpin>(
    r: &mut R,
) -> std::io::Result<String> {
    use tokio::io::AsyncBufReadExt;
    let mut all = String::new();
    loop {
        let mut line = String::new();
        if r.read_line(&mut line).await? == 0 {
            return Err(std::io::Error::new(
                std::io::ErrorKind::UnexpectedEof,
                format!("EOF after {all:?}"),
            ));
        }
        all.push_str(&line);
        if line.len() < 4 || line.as_bytes()[3] != b'-' {
            return Ok(all);
        }
    }
}

/// A one-shot TCP tee: accepts one client on 127.0.0.1, connects to `upstream` from
/// `upstream_source`, relays both ways and records every byte the client sent.
pub struct Tee {
    pub addr: SocketAddr,
    pub peer: std::sync::mpsc::Receiver<SocketAddr>,
    pub client_bytes: std::sync::Arc<Mutex<Vec<u8>>>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl Tee {
    pub fn start(upstream: SocketAddr, upstream_source: Ipv4Addr) -> Tee {
        let listener = TcpListener::bind("127.0.0.1:0").expect("tee listener");
        listener
            .set_nonblocking(true)
            .expect("nonblocking listener");
        let addr = listener.local_addr().expect("tee address");
        let client_bytes = std::sync::Arc::new(Mutex::new(Vec::new()));
        let recorded = client_bytes.clone();
        let (peer_tx, peer) = std::sync::mpsc::channel();
        let thread = std::thread::spawn(move || {
            rt().block_on(async move {
                use tokio::io::{AsyncReadExt, AsyncWriteExt};
                let listener = tokio::net::TcpListener::from_std(listener).expect("tokio listener");
                let Ok(Ok((client, peer_addr))) =
                    tokio::time::timeout(Duration::from_secs(30), listener.accept()).await
                else {
                    return;
                };
                let _ = peer_tx.send(peer_addr);
                let Ok(server) = connect_from(upstream_source, upstream).await else {
                    return;
                };
                let (mut cr, mut cw) = client.into_split();
                let (mut sr, mut sw) = server.into_split();
                let up = async {
                    let mut buf = [0u8; 4096];
                    loop {
                        let n = match cr.read(&mut buf).await {
                            Ok(0) | Err(_) => break,
                            Ok(n) => n,
                        };
                        recorded.lock().unwrap().extend_from_slice(&buf[..n]);
                        if sw.write_all(&buf[..n]).await.is_err() {
                            break;
                        }
                    }
                    let _ = sw.shutdown().await;
                };
                let down = async {
                    let _ = tokio::io::copy(&mut sr, &mut cw).await;
                    let _ = cw.shutdown().await;
                };
                let _ =
                    tokio::time::timeout(Duration::from_secs(30), async { tokio::join!(up, down) })
                        .await;
            });
        });
        Tee {
            addr,
            peer,
            client_bytes,
            thread: Some(thread),
        }
    }

    /// Everything the client sent, after the relay finished.
    pub fn finish(mut self) -> Vec<u8> {
        if let Some(t) = self.thread.take() {
            t.join().expect("tee thread");
        }
        self.client_bytes.lock().unwrap().clone()
    }
}

/// Base64 (standard alphabet, padded), for looking for encoded credentials on the wire.
pub fn base64(data: &[u8]) -> String {
    use base64::Engine;
    base64::engine::general_purpose::STANDARD.encode(data)
}
