//! Running the real binary in tests: a daemon child that dies with the test, a tiny HTTP
//! client, free ports and metric lookups. Shared by the binary-level test files.

#![allow(dead_code)]

use std::io::{Read, Write};
use std::net::TcpStream;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

pub const BIN: &str = env!("CARGO_BIN_EXE_smtp-canary");

pub fn repo() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

pub fn run(args: &[&str], envs: &[(&str, &str)]) -> Output {
    let mut c = Command::new(BIN);
    c.args(args).current_dir(repo());
    for (k, v) in envs {
        c.env(k, v);
    }
    c.output().expect("run smtp-canary")
}

pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("free port")
}

/// Like [`run`], but the child is killed after `within` (a command that should fail at
/// once must not hang the test): the output and how long it ran.
pub fn run_within(args: &[&str], within: Duration) -> (Output, Duration) {
    let t = Instant::now();
    let mut child = Command::new(BIN)
        .args(args)
        .current_dir(repo())
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn smtp-canary");
    while child.try_wait().expect("wait").is_none() && t.elapsed() < within {
        std::thread::sleep(Duration::from_millis(20));
    }
    let _ = child.kill();
    let out = child.wait_with_output().expect("output");
    (out, t.elapsed())
}

/// A minimal HTTP/1.0 client: (status, body).
pub fn http(method: &str, addr: &str, path: &str) -> Option<(u16, String)> {
    http_with(method, addr, path, &[]).map(|r| (r.status, r.body))
}

/// A response of [`http_with`].
#[derive(Debug)]
pub struct Reply {
    pub status: u16,
    /// The head's lines after the status line, as sent.
    pub head: String,
    pub body: String,
}

impl Reply {
    /// A header's value (name case-insensitive).
    pub fn header(&self, name: &str) -> Option<&str> {
        self.head.lines().find_map(|l| {
            let (k, v) = l.split_once(':')?;
            k.trim().eq_ignore_ascii_case(name).then(|| v.trim())
        })
    }
}

/// [`http`] with extra request headers, and the response's headers.
pub fn http_with(method: &str, addr: &str, path: &str, headers: &[(&str, &str)]) -> Option<Reply> {
    let mut s = TcpStream::connect(addr).ok()?;
    s.set_read_timeout(Some(Duration::from_secs(5))).ok()?;
    let extra: String = headers
        .iter()
        .map(|(k, v)| format!("{k}: {v}\r\n"))
        .collect();
    write!(
        s,
        "{method} {path} HTTP/1.0\r\nHost: {addr}\r\nContent-Length: 0\r\n{extra}\r\n"
    )
    .ok()?;
    let mut buf = String::new();
    s.read_to_string(&mut buf).ok()?;
    let (head, body) = buf.split_once("\r\n\r\n")?;
    let (status_line, head) = head.split_once("\r\n").unwrap_or((head, ""));
    let status = status_line.split_whitespace().nth(1)?.parse().ok()?;
    Some(Reply {
        status,
        head: head.to_owned(),
        body: body.to_owned(),
    })
}

/// A daemon child that is killed if the test panics.
pub struct Daemon {
    child: Option<Child>,
    pub addr: String,
    stderr_path: PathBuf,
}

impl Daemon {
    pub fn start(config: &Path, state: &Path, extra: &[&str], envs: &[(&str, &str)]) -> Daemon {
        std::fs::create_dir_all(state).expect("state dir");
        Daemon::start_with_log(config, state, &state.join("daemon.log"), extra, envs)
    }

    /// Like [`Daemon::start`], with the log at `log` (for a state directory that is full
    /// or read-only).
    pub fn start_with_log(
        config: &Path,
        state: &Path,
        log: &Path,
        extra: &[&str],
        envs: &[(&str, &str)],
    ) -> Daemon {
        let addr = format!("127.0.0.1:{}", free_port());
        if let Some(parent) = log.parent() {
            std::fs::create_dir_all(parent).expect("log dir");
        }
        let stderr_path = log.to_path_buf();
        let log = std::fs::File::create(&stderr_path).expect("log file");
        let mut c = Command::new(BIN);
        c.arg("--config.file")
            .arg(config)
            .arg("--web.listen-address")
            .arg(&addr)
            .arg("--state.dir")
            .arg(state)
            .args(extra)
            .current_dir(repo())
            .stdout(Stdio::null())
            .stderr(log);
        for (k, v) in envs {
            c.env(k, v);
        }
        // Tests never use the system resolver: the daemon's DNS audit of the test
        // domains goes to a dead loopback port unless a test names a server.
        if !extra.contains(&"--dns-server") {
            c.arg("--dns-server").arg("127.0.0.1:9");
        }
        let child = c.spawn().expect("spawn daemon");
        Daemon {
            child: Some(child),
            addr,
            stderr_path,
        }
    }

    /// The child's process id (for /proc).
    pub fn pid(&self) -> u32 {
        self.child.as_ref().expect("running").id()
    }

    /// The child's resident set size in KiB (`VmRSS`), if it still runs.
    pub fn rss_kib(&self) -> Option<u64> {
        let status = std::fs::read_to_string(format!("/proc/{}/status", self.pid())).ok()?;
        status
            .lines()
            .find_map(|l| l.strip_prefix("VmRSS:"))
            .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
    }

    /// Waits until `/-/ready` answers 200 (or panics after `within`).
    pub fn wait_ready(&self, within: Duration) {
        let start = Instant::now();
        while self.get("/-/ready").is_none_or(|(code, _)| code != 200) {
            assert!(
                start.elapsed() < within,
                "not ready within {within:?}; log:\n{}",
                self.log()
            );
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    pub fn get(&self, path: &str) -> Option<(u16, String)> {
        http("GET", &self.addr, path)
    }

    /// Polls /metrics until `pred` holds (or panics after `within`).
    pub fn wait_metrics(&self, within: Duration, pred: impl Fn(&str) -> bool) -> String {
        let start = Instant::now();
        loop {
            if let Some((200, body)) = self.get("/metrics")
                && pred(&body)
            {
                return body;
            }
            assert!(
                start.elapsed() < within,
                "metrics condition not met within {within:?}; log:\n{}",
                self.log()
            );
            std::thread::sleep(Duration::from_millis(100));
        }
    }

    pub fn post(&self, path: &str) -> Option<(u16, String)> {
        http("POST", &self.addr, path)
    }

    /// Sends a signal by name (`HUP`, `KILL`, ...).
    pub fn signal(&self, sig: &str) {
        if let Some(c) = &self.child {
            let _ = Command::new("kill")
                .arg(format!("-{sig}"))
                .arg(c.id().to_string())
                .status();
        }
    }

    /// `kill -9` and reap: a crash, as far as the state on disk is concerned.
    pub fn kill9(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }

    pub fn log(&self) -> String {
        std::fs::read_to_string(&self.stderr_path).unwrap_or_default()
    }

    /// SIGTERM, then the exit status and how long it took.
    pub fn terminate(&mut self) -> (std::process::ExitStatus, Duration) {
        let mut child = self.child.take().expect("running");
        let t = Instant::now();
        let _ = Command::new("kill")
            .arg("-TERM")
            .arg(child.id().to_string())
            .status();
        loop {
            if let Some(st) = child.try_wait().expect("wait") {
                return (st, t.elapsed());
            }
            if t.elapsed() > Duration::from_secs(30) {
                let _ = child.kill();
                panic!("daemon did not exit within 30 s of SIGTERM");
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }
}

impl Drop for Daemon {
    fn drop(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }
}

pub fn metric_value(body: &str, series: &str) -> Option<f64> {
    body.lines()
        .find(|l| l.starts_with(series) && l[series.len()..].starts_with(' '))
        .and_then(|l| l.rsplit(' ').next())
        .and_then(|v| v.parse().ok())
}
