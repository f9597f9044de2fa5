//! Running the real binary: commands with a deadline and their peak memory, the one
//! guard for every child process the tests start (the daemon, Prometheus, knotd), and
//! the daemon built on that guard.

use std::io::{Read, Seek};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Output, Stdio};
use std::time::{Duration, Instant};

use super::http::{self, Reply};
use super::ports::{DEAD_DNS, free_port};
use super::{poll, repo};

/// The smtp-canary binary under test.
pub const BIN: &str = env!("CARGO_BIN_EXE_smtp-canary");

/// `smtp-canary ARGS` in the repository (where the shipped `config.yaml` is), with no
/// input, and without the developer's `RUST_LOG` (it would change what the child logs).
pub fn command(args: &[&str]) -> Command {
    let mut c = Command::new(BIN);
    c.args(args)
        .current_dir(repo())
        .env_remove("RUST_LOG")
        .stdin(Stdio::null());
    c
}

/// Runs the binary to its end.
pub fn run(args: &[&str], envs: &[(&str, &str)]) -> Output {
    command(args)
        .envs(envs.iter().copied())
        .output()
        .expect("run smtp-canary")
}

/// Runs `cmd` to its end: its exit code and stderr (where the binary says why it
/// refused).
pub fn outcome(cmd: &mut Command) -> (Option<i32>, String) {
    let out = cmd
        .output()
        .unwrap_or_else(|e| panic!("cannot run {cmd:?}: {e}"));
    (
        out.status.code(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

/// `smtp-canary check-config --config.file CONFIG`: its exit code and stderr.
pub fn check_config(config: &Path) -> (Option<i32>, String) {
    outcome(command(&["check-config", "--config.file"]).arg(config))
}

/// What [`run_measured`] saw of a child.
#[derive(Debug)]
pub struct Measured {
    pub status: ExitStatus,
    /// Whether it was killed at the deadline.
    pub killed: bool,
    pub stdout: String,
    pub stderr: String,
    pub elapsed: Duration,
    /// Peak resident set size, KiB: the child's `VmHWM`, last read just before it
    /// exited (`ru_maxrss` of the children would count the test process it was forked
    /// from).
    pub max_rss_kib: i64,
}

impl Measured {
    /// The exit code; `None` when killed at the deadline or by a signal.
    pub fn code(&self) -> Option<i32> {
        if self.killed {
            None
        } else {
            self.status.code()
        }
    }

    /// stdout, then stderr.
    pub fn text(&self) -> String {
        format!("{}{}", self.stdout, self.stderr)
    }
}

/// Runs `cmd` and kills it once `deadline` has passed. Output goes to files, not pipes,
/// so a chatty child never blocks on a full pipe; the peak memory is the high-water mark
/// the kernel keeps, polled every few milliseconds while the child runs.
pub fn run_measured(mut cmd: Command, deadline: Duration) -> Measured {
    let mut out = tempfile::tempfile().expect("stdout file");
    let mut err = tempfile::tempfile().expect("stderr file");
    cmd.stdout(out.try_clone().expect("stdout file"))
        .stderr(err.try_clone().expect("stderr file"));
    let started = Instant::now();
    let mut child = cmd
        .spawn()
        .unwrap_or_else(|e| panic!("cannot start {cmd:?}: {e}"));
    let status_file = format!("/proc/{}/status", child.id());
    let mut killed = false;
    let mut hwm = 0i64;
    let status = loop {
        if let Some(kib) = std::fs::read_to_string(&status_file).ok().and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("VmHWM:"))
                .and_then(|l| l.split_whitespace().nth(1).and_then(|v| v.parse().ok()))
        }) {
            hwm = kib;
        }
        if let Some(status) = child.try_wait().expect("wait for the child") {
            break status;
        }
        if started.elapsed() > deadline && !killed {
            let _ = child.kill();
            killed = true;
        }
        std::thread::sleep(Duration::from_millis(10));
    };
    let elapsed = started.elapsed();
    let read = |f: &mut std::fs::File| {
        let mut s = Vec::new();
        f.rewind()
            .and_then(|_| f.read_to_end(&mut s))
            .expect("read output");
        String::from_utf8_lossy(&s).into_owned()
    };
    Measured {
        status,
        killed,
        stdout: read(&mut out),
        stderr: read(&mut err),
        elapsed,
        max_rss_kib: hwm,
    }
}

/// `smtp-canary ARGS`, killed after `within` (a command that should end at once must not
/// hang the test).
pub fn run_within(args: &[&str], envs: &[(&str, &str)], within: Duration) -> Measured {
    let mut c = command(args);
    c.envs(envs.iter().copied());
    run_measured(c, within)
}

/// A child process that is killed (SIGKILL) and reaped when the guard is dropped, also
/// when the test panics. Its stdout and stderr go to one log file.
pub struct ChildGuard {
    child: Option<Child>,
    name: String,
    log: PathBuf,
}

impl ChildGuard {
    pub fn spawn(name: &str, cmd: &mut Command, log: PathBuf) -> ChildGuard {
        if let Some(parent) = log.parent() {
            std::fs::create_dir_all(parent).expect("log dir");
        }
        let f = std::fs::File::create(&log).expect("log file");
        let f2 = f.try_clone().expect("log file");
        let child = cmd
            .stdin(Stdio::null())
            .stdout(f)
            .stderr(f2)
            .spawn()
            .unwrap_or_else(|e| panic!("cannot start {name}: {e}"));
        ChildGuard {
            child: Some(child),
            name: name.to_owned(),
            log,
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

    /// Whether the child has exited (and is reaped).
    pub fn exited(&mut self) -> bool {
        self.child
            .as_mut()
            .is_none_or(|c| c.try_wait().ok().flatten().is_some())
    }

    /// Panics (with its log) if the child has exited.
    pub fn assert_running(&self) {
        // try_wait needs &mut; read /proc instead so this works through & as well.
        let stat =
            std::fs::read_to_string(format!("/proc/{}/stat", self.pid())).unwrap_or_default();
        let state = stat
            .rsplit(')')
            .next()
            .and_then(|s| s.split_whitespace().next())
            .unwrap_or("");
        if stat.is_empty() || state == "Z" || state == "X" {
            panic!("{} exited early\n{}", self.name, self.log_tail());
        }
    }

    pub fn log(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    /// The last 40 lines of the log, for a panic message.
    pub fn log_tail(&self) -> String {
        let text = self.log();
        let lines: Vec<&str> = text.lines().collect();
        let from = lines.len().saturating_sub(40);
        format!(
            "--- last lines of {} ({}) ---\n{}",
            self.name,
            self.log.display(),
            lines[from..].join("\n")
        )
    }

    /// Sends a signal by name (`HUP`, `TERM`, ...).
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

    /// SIGTERM, then the exit status and how long it took.
    pub fn terminate(&mut self) -> (ExitStatus, Duration) {
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
                panic!("{} did not exit within 30 s of SIGTERM", self.name);
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }
}

impl Drop for ChildGuard {
    fn drop(&mut self) {
        self.kill9();
    }
}

/// The smtp-canary daemon on a free loopback port, in a [`ChildGuard`].
pub struct Daemon {
    child: ChildGuard,
    /// `127.0.0.1:PORT` of its web server.
    pub addr: String,
}

impl std::ops::Deref for Daemon {
    type Target = ChildGuard;
    fn deref(&self) -> &ChildGuard {
        &self.child
    }
}

impl std::ops::DerefMut for Daemon {
    fn deref_mut(&mut self) -> &mut ChildGuard {
        &mut self.child
    }
}

impl Daemon {
    /// The daemon with `config` and `state` (created), logging to `state/daemon.log`.
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
        let mut c = command(&[]);
        c.arg("--config.file")
            .arg(config)
            .arg("--web.listen-address")
            .arg(&addr)
            .arg("--state.dir")
            .arg(state)
            .args(extra)
            .envs(envs.iter().copied());
        // The daemon audits its mailboxes' domains: that goes to a dead loopback port
        // unless the test names a server.
        if !extra.contains(&"--dns-server") {
            c.args(["--dns-server", DEAD_DNS]);
        }
        Daemon {
            child: ChildGuard::spawn("smtp-canary daemon", &mut c, log.to_path_buf()),
            addr,
        }
    }

    /// Waits until `/-/ready` answers 200 (or panics after `within`, or when the daemon
    /// has exited).
    pub fn wait_ready(&self, within: Duration) {
        let ready = poll(within, Duration::from_millis(50), || {
            self.assert_running();
            self.get("/-/ready").filter(|(code, _)| *code == 200)
        });
        assert!(
            ready.is_some(),
            "not ready within {within:?}\n{}",
            self.log_tail()
        );
    }

    /// A request to the daemon's web server.
    pub fn request(&self, method: &str, path: &str, headers: &[(&str, &str)]) -> Option<Reply> {
        http::request(method, &self.addr, path, headers).ok()
    }

    /// GET `path`: (status, body).
    pub fn get(&self, path: &str) -> Option<(u16, String)> {
        self.request("GET", path, &[]).map(|r| (r.status, r.body))
    }

    /// POST `path`: (status, body).
    pub fn post(&self, path: &str) -> Option<(u16, String)> {
        self.request("POST", path, &[]).map(|r| (r.status, r.body))
    }

    /// Polls /metrics until `pred` holds (or panics after `within`).
    pub fn wait_metrics(&self, within: Duration, pred: impl Fn(&str) -> bool) -> String {
        poll(within, Duration::from_millis(100), || {
            self.get("/metrics")
                .filter(|(code, body)| *code == 200 && pred(body))
                .map(|(_, body)| body)
        })
        .unwrap_or_else(|| {
            panic!(
                "metrics condition not met within {within:?}\n{}",
                self.log_tail()
            )
        })
    }
}
