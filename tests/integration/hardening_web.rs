//! Issue 10, the HTTP side, through the real binary: slow readers cannot pin memory,
//! cross-site POSTs are refused, absurd bcrypt costs and empty web configs are refused,
//! a wrong-password flood cannot starve a legitimate user, and the web config's files
//! cannot hang the daemon.

use std::io::Write;
use std::net::TcpStream;
use std::os::fd::{AsRawFd, FromRawFd};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use base64::Engine;
use base64::engine::general_purpose::STANDARD as B64;

use crate::support::daemon::{Daemon, Measured, run_within};
use crate::support::exposition::metric_value;
use crate::support::files::{mkfifo, sparse, write};
use crate::support::{http, ports, serial};

/// The daemon's write-stall timeout (src/web/conn.rs).
const WRITE_STALL: Duration = Duration::from_secs(10);
/// The daemon's connection cap (src/web/conn.rs).
const MAX_CONNECTIONS: usize = 256;

/// A config of `n` mailboxes that (almost) never probe: a day's interval, spread start.
/// Each still exports its zeroed counters and quota series, about 2 KiB of /metrics.
fn quiet_config(dir: &Path, n: usize) -> PathBuf {
    let mut y = String::from("global:\n  interval: 24h\n  timeout: 5s\nmailboxes:\n");
    for i in 0..n {
        y.push_str(&format!(
            "  - name: mb-{i:05}\n    host: 127.0.0.1\n    port: 9\n    security: none\n    from: canary{i}@example.com\n    to: [sink@example.com]\n    limits: {{messages_per_minute: 30, recipients_per_day: 10000, concurrent_connections: 3}}\n"
        ));
    }
    write(&dir.join("config.yaml"), &y)
}

fn web_config(dir: &Path, text: &str) -> PathBuf {
    write(&dir.join("web.yml"), text)
}

fn basic(user: &str, password: &str) -> String {
    format!("Basic {}", B64.encode(format!("{user}:{password}")))
}

/// A TCP client with a tiny receive buffer (set before connect, so the window stays
/// small): the server's writes stall after a few KiB once it stops reading.
fn stalled_client(addr: &str) -> TcpStream {
    let addr: std::net::SocketAddrV4 = addr.parse().unwrap();
    unsafe {
        let fd = libc::socket(libc::AF_INET, libc::SOCK_STREAM | libc::SOCK_CLOEXEC, 0);
        assert!(fd >= 0, "socket");
        let size: libc::c_int = 4096;
        libc::setsockopt(
            fd,
            libc::SOL_SOCKET,
            libc::SO_RCVBUF,
            (&size as *const libc::c_int).cast(),
            std::mem::size_of::<libc::c_int>() as libc::socklen_t,
        );
        let sa = libc::sockaddr_in {
            sin_family: libc::AF_INET as libc::sa_family_t,
            sin_port: addr.port().to_be(),
            sin_addr: libc::in_addr {
                s_addr: u32::from(*addr.ip()).to_be(),
            },
            sin_zero: [0; 8],
        };
        let r = libc::connect(
            fd,
            (&sa as *const libc::sockaddr_in).cast(),
            std::mem::size_of::<libc::sockaddr_in>() as libc::socklen_t,
        );
        assert_eq!(r, 0, "connect: {}", std::io::Error::last_os_error());
        TcpStream::from_raw_fd(fd)
    }
}

/// Whether the peer has closed or reset the connection, without reading from it (a read
/// would let a stalled write make progress): the kernel's TCP state is no longer
/// ESTABLISHED.
fn closed_by_peer(s: &TcpStream) -> bool {
    const TCP_ESTABLISHED: u8 = 1;
    let mut info = [0u8; 256];
    let mut len = info.len() as libc::socklen_t;
    let r = unsafe {
        libc::getsockopt(
            s.as_raw_fd(),
            libc::IPPROTO_TCP,
            libc::TCP_INFO,
            info.as_mut_ptr().cast(),
            &mut len,
        )
    };
    assert_eq!(r, 0, "TCP_INFO: {}", std::io::Error::last_os_error());
    // `tcpi_state` is the first byte of struct tcp_info.
    info[0] != TCP_ESTABLISHED
}

/// 30 clients that request /metrics and never read: the daemon renders once for all of
/// them, its memory stays bounded, it resets each of them once its write has stalled for
/// the write timeout, and a normal scrape is served meanwhile.
#[test]
fn slow_metrics_readers_share_one_render_and_are_cut_off() {
    let serial = serial::shared_blocking();
    let dir = tempfile::tempdir().unwrap();
    let config = quiet_config(dir.path(), 2000);
    let d = Daemon::start(&config, &dir.path().join("state"), &[], &[]);
    d.wait_ready(Duration::from_secs(30));
    let (code, body) = d.get("/metrics").expect("metrics");
    assert_eq!(code, 200);
    let size = body.len() as u64;
    assert!(size > 2 << 20, "/metrics is only {size} bytes");
    drop(body);
    // After one render, so the allocator's high-water mark of a render is in the base.
    let base = d.rss_kib().expect("rss");

    let clients: Vec<TcpStream> = (0..30)
        .map(|_| {
            let mut c = stalled_client(&d.addr);
            write!(c, "GET /metrics HTTP/1.1\r\nHost: {}\r\n\r\n", d.addr).unwrap();
            c
        })
        .collect();
    let stalled_at = Instant::now();

    let mut peak = base;
    let sample = |peak: &mut u64| {
        if let Some(r) = d.rss_kib() {
            *peak = (*peak).max(r);
        }
    };
    std::thread::sleep(Duration::from_secs(1));
    sample(&mut peak);
    let t = Instant::now();
    let (code, body) = d.get("/metrics").expect("a normal scrape during the stall");
    let normal = t.elapsed();
    assert_eq!(code, 200);
    assert!(body.contains("smtp_canary_build_info"));
    assert!(
        normal < Duration::from_secs(5),
        "normal scrape took {normal:?}"
    );
    drop(body);
    // From here on the test only waits for the daemon's write timeout: it loads the
    // machine no more, and no neighbour can slow what it still measures, so a test that
    // needs the machine to itself may run meanwhile.
    drop(serial);

    let deadline = WRITE_STALL + Duration::from_secs(15);
    let closed_in = loop {
        sample(&mut peak);
        if clients.iter().all(closed_by_peer) {
            break stalled_at.elapsed();
        }
        let open = clients.iter().filter(|c| !closed_by_peer(c)).count();
        assert!(
            stalled_at.elapsed() < deadline,
            "{open} of 30 stalled connections still open after {deadline:?}"
        );
        std::thread::sleep(Duration::from_millis(100));
    };
    let grew_mib = peak.saturating_sub(base) / 1024;
    let size_mib = size as f64 / f64::from(1 << 20);
    eprintln!(
        "/metrics {size_mib:.1} MiB; RSS base {} MiB, peak +{grew_mib} MiB; normal scrape {normal:?}; all 30 reset after {closed_in:?}",
        base / 1024
    );
    // One or two shared bodies plus a render's working set; 30 private renders (the bug)
    // hold 30 bodies, and their working sets on top.
    let bound_mib = 30 * size / (1 << 20);
    assert!(
        grew_mib < bound_mib,
        "RSS grew by {grew_mib} MiB (bound {bound_mib} MiB) for 30 stalled readers of a {size_mib:.1} MiB body"
    );
    assert!(
        closed_in >= WRITE_STALL - Duration::from_secs(1),
        "closed before the write timeout: {closed_in:?}"
    );
    assert_eq!(d.get("/-/healthy").map(|r| r.0), Some(200));
}

/// Past the connection cap, a new client waits until a connection ends instead of
/// costing the daemon another connection's buffers.
#[test]
fn connections_beyond_the_cap_wait_for_a_free_slot() {
    let _serial = serial::shared_blocking();
    let dir = tempfile::tempdir().unwrap();
    let config = quiet_config(dir.path(), 1);
    let d = Daemon::start(&config, &dir.path().join("state"), &[], &[]);
    d.wait_ready(Duration::from_secs(30));
    let mut idle: Vec<TcpStream> = (0..MAX_CONNECTIONS)
        .map(|_| TcpStream::connect(&d.addr).unwrap())
        .collect();
    // The idle ones are accepted; the next one is not served while they hold every slot.
    std::thread::sleep(Duration::from_millis(500));
    let mut extra = TcpStream::connect(&d.addr).unwrap();
    write!(extra, "GET /-/healthy HTTP/1.0\r\nHost: x\r\n\r\n").unwrap();
    extra
        .set_read_timeout(Some(Duration::from_millis(1500)))
        .unwrap();
    let mut buf = [0u8; 64];
    let early = std::io::Read::read(&mut extra, &mut buf);
    assert!(
        early.as_ref().is_err_and(|e| matches!(
            e.kind(),
            std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut
        )),
        "served past the cap of {MAX_CONNECTIONS}: {early:?}"
    );
    // One connection ends: the waiting client gets its slot.
    idle.truncate(MAX_CONNECTIONS - 1);
    let t = Instant::now();
    extra
        .set_read_timeout(Some(Duration::from_secs(5)))
        .unwrap();
    let mut reply = String::new();
    std::io::Read::read_to_string(&mut extra, &mut reply).unwrap();
    assert!(reply.starts_with("HTTP/1.0 200"), "{reply}");
    eprintln!("served {:?} after a slot came free", t.elapsed());
}

/// A browser on another site must not be able to make the daemon reload; curl can.
#[test]
fn cross_site_reload_is_refused_and_curl_still_works() {
    let _serial = serial::shared_blocking();
    let dir = tempfile::tempdir().unwrap();
    let config = quiet_config(dir.path(), 1);
    let d = Daemon::start(&config, &dir.path().join("state"), &[], &[]);
    d.wait_ready(Duration::from_secs(30));
    let reloads = || d.log().matches("reload requested over HTTP").count();
    let form = ("Content-Type", "application/x-www-form-urlencoded");
    let own = format!("http://{}", d.addr);
    for headers in [
        vec![form, ("Origin", "http://evil.example")],
        vec![form, ("Origin", "null")],
        vec![form, ("Origin", "http://127.0.0.1:1")],
        vec![form, ("Sec-Fetch-Site", "cross-site")],
        vec![
            form,
            ("Sec-Fetch-Site", "same-site"),
            ("Origin", own.as_str()),
        ],
    ] {
        let r = d.request("POST", "/-/reload", &headers).expect("reply");
        assert_eq!(r.status, 403, "{headers:?}: {r:?}");
    }
    assert_eq!(reloads(), 0, "a refused request reloaded");
    // curl -X POST: no Origin.
    let r = d.request("POST", "/-/reload", &[]).expect("reply");
    assert_eq!(r.status, 200, "{r:?}");
    // A same-origin form post from the daemon's own page.
    let r = d
        .request(
            "POST",
            "/-/reload",
            &[
                form,
                ("Origin", own.as_str()),
                ("Sec-Fetch-Site", "same-origin"),
            ],
        )
        .expect("reply");
    assert_eq!(r.status, 200, "{r:?}");
    let start = Instant::now();
    while reloads() < 2 {
        assert!(start.elapsed() < Duration::from_secs(5), "{}", d.log());
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// A cost of 31 would pin a core per request; 3 is below bcrypt's minimum.
#[test]
fn bcrypt_costs_outside_the_allowed_range_are_refused_at_start() {
    let _serial = serial::shared_blocking();
    let dir = tempfile::tempdir().unwrap();
    let hash = bcrypt::hash("pw", 4).unwrap();
    for cost in [31u32, 15, 3] {
        let bad = format!("{}{cost:02}{}", &hash[..4], &hash[6..]);
        let web = web_config(dir.path(), &format!("basic_auth_users:\n  prom: '{bad}'\n"));
        let out = start_with_web_config(dir.path(), &web);
        let (err, took) = (&out.stderr, out.elapsed);
        assert_eq!(out.code(), Some(2), "cost {cost} after {took:?}: {err}");
        assert!(
            err.contains(&format!(
                "bcrypt cost {cost} is outside the allowed range 4 to 14"
            )),
            "{err}"
        );
        assert!(!err.contains(&bad[7..]), "the hash is quoted: {err}");
    }
}

/// Starts the daemon with `web` as `--web.config.file`, expecting it to refuse at once
/// (killed after 20 s if it does not).
fn start_with_web_config(dir: &Path, web: &Path) -> Measured {
    let listen = format!("127.0.0.1:{}", ports::free_port());
    let state = dir.join("state");
    let args = [
        "--web.config.file",
        web.to_str().unwrap(),
        "--web.listen-address",
        &listen,
        "--state.dir",
        state.to_str().unwrap(),
        "--dns-server",
        ports::DEAD_DNS,
    ];
    run_within(&args, &[], Duration::from_secs(20))
}

/// A web config truncated to nothing must not turn basic auth off on reload; at start it
/// is refused.
#[test]
fn an_empty_web_config_is_an_error_at_start_and_on_reload() {
    let _serial = serial::shared_blocking();
    let dir = tempfile::tempdir().unwrap();
    for text in ["", "# nothing but a comment\n", "{}\n", "null\n"] {
        let web = web_config(dir.path(), text);
        let out = start_with_web_config(dir.path(), &web);
        let (err, took) = (&out.stderr, out.elapsed);
        assert_eq!(out.code(), Some(2), "{text:?} after {took:?}: {err}");
        assert!(
            err.contains("is empty") && err.contains("start without --web.config.file"),
            "{err}"
        );
    }

    let hash = bcrypt::hash("scrape-pw", 4).unwrap();
    let web = web_config(
        dir.path(),
        &format!("basic_auth_users:\n  prom: '{hash}'\n"),
    );
    let config = quiet_config(dir.path(), 1);
    let mut d = Daemon::start(
        &config,
        &dir.path().join("state"),
        &["--web.config.file", web.to_str().unwrap()],
        &[],
    );
    let auth = basic("prom", "scrape-pw");
    let metrics = |auth: Option<&str>| {
        let headers: Vec<(&str, &str)> = auth.map(|a| ("Authorization", a)).into_iter().collect();
        d.request("GET", "/metrics", &headers)
    };
    let start = Instant::now();
    while metrics(Some(&auth)).is_none_or(|r| r.status != 200) {
        assert!(start.elapsed() < Duration::from_secs(30), "{}", d.log());
        std::thread::sleep(Duration::from_millis(50));
    }
    assert_eq!(metrics(None).map(|r| r.status), Some(401));

    std::fs::write(&web, "").unwrap();
    d.signal("HUP");
    let start = Instant::now();
    loop {
        let body = metrics(Some(&auth)).expect("reply").body;
        if metric_value(&body, "smtp_canary_config_last_reload_successful") == Some(0.0) {
            break;
        }
        assert!(
            start.elapsed() < Duration::from_secs(10),
            "reload not failed: {}",
            d.log()
        );
        std::thread::sleep(Duration::from_millis(100));
    }
    assert_eq!(
        metrics(None).map(|r| r.status),
        Some(401),
        "basic auth is off after an empty reload"
    );
    assert!(d.log().contains("is empty"), "{}", d.log());
    assert!(d.terminate().0.success());
}

/// 20 threads hammer wrong passwords for one user; another user's right (not yet
/// cached) password still gets in at once, and the flood gets 429 with Retry-After.
#[test]
fn a_wrong_password_flood_does_not_starve_a_legitimate_user() {
    let _serial = serial::exclusive_blocking();
    let dir = tempfile::tempdir().unwrap();
    // The flooded user's hash is expensive, as real ones are; the legitimate user's is
    // cheap so that only waiting, not its own check, can make it slow.
    let victim = bcrypt::hash("unguessable", 10).unwrap();
    let legit = bcrypt::hash("right-pw", 4).unwrap();
    let web = web_config(
        dir.path(),
        &format!("basic_auth_users:\n  alice: '{victim}'\n  bob: '{legit}'\n"),
    );
    let config = quiet_config(dir.path(), 1);
    let d = Daemon::start(
        &config,
        &dir.path().join("state"),
        &["--web.config.file", web.to_str().unwrap()],
        &[],
    );
    let start = Instant::now();
    while d.get("/-/healthy").is_none_or(|r| r.0 != 401) {
        assert!(start.elapsed() < Duration::from_secs(30), "{}", d.log());
        std::thread::sleep(Duration::from_millis(50));
    }

    let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let flood: Vec<_> = (0..20)
        .map(|_| {
            let (addr, stop) = (d.addr.clone(), stop.clone());
            std::thread::spawn(move || {
                let wrong = basic("alice", "guess");
                let (mut limited, mut retry_after) = (0u32, None);
                while !stop.load(std::sync::atomic::Ordering::Relaxed) {
                    let r =
                        http::request("GET", &addr, "/metrics", &[("Authorization", &wrong)]).ok();
                    if let Some(r) = r
                        && r.status == 429
                    {
                        limited += 1;
                        retry_after = r.header("Retry-After").map(str::to_owned);
                        // Still hundreds of requests a second in all, without taking the
                        // shared test machine's CPU from the daemon.
                        std::thread::sleep(Duration::from_millis(10));
                    }
                }
                (limited, retry_after)
            })
        })
        .collect();
    // Past the limiter's burst: the flood now runs in its steady state.
    std::thread::sleep(Duration::from_secs(2));
    let t = Instant::now();
    let r = d.request(
        "GET",
        "/metrics",
        &[("Authorization", &basic("bob", "right-pw"))],
    );
    let waited = t.elapsed();
    std::thread::sleep(Duration::from_secs(1));
    stop.store(true, std::sync::atomic::Ordering::Relaxed);
    let results: Vec<_> = flood.into_iter().map(|h| h.join().unwrap()).collect();
    let limited: u32 = results.iter().map(|r| r.0).sum();
    eprintln!("legitimate user served in {waited:?}; {limited} flood requests got 429");
    let r = r.expect("legitimate user got no reply");
    assert_eq!(r.status, 200, "{r:?}");
    assert!(
        waited < Duration::from_millis(1500),
        "legitimate user waited {waited:?}"
    );
    assert!(limited > 0, "the flood was never limited");
    let retry: u64 = results
        .iter()
        .find_map(|r| r.1.as_deref())
        .expect("Retry-After on 429")
        .parse()
        .expect("Retry-After seconds");
    assert!((1..=5).contains(&retry), "Retry-After {retry}");
}

/// The web config and its PEM files are read as untrusted input: a FIFO, /dev/zero or
/// a 4 GiB file is an error at once.
#[test]
fn web_config_files_that_are_not_regular_or_too_large_fail_at_once() {
    let _serial = serial::shared_blocking();
    let dir = tempfile::tempdir().unwrap();
    let fifo = dir.path().join("web.fifo");
    mkfifo(&fifo);
    let huge = dir.path().join("huge.yml");
    sparse(&huge, 4 << 30);
    let pem_fifo = web_config(
        dir.path(),
        "tls_server_config:\n  cert_file: web.fifo\n  key_file: web.fifo\n",
    );
    let cases: [(&Path, &str); 4] = [
        (&fifo, "is a FIFO, not a regular file"),
        (
            Path::new("/dev/zero"),
            "is a character device, not a regular file",
        ),
        (&huge, "is larger than"),
        (&pem_fifo, "tls_server_config.cert_file"),
    ];
    for (path, want) in cases {
        let out = start_with_web_config(dir.path(), path);
        let (err, took) = (&out.stderr, out.elapsed);
        assert_eq!(out.code(), Some(2), "{path:?} after {took:?}: {err}");
        assert!(err.contains(want), "{path:?}: {err}");
        assert!(err.contains(&path.display().to_string()), "{err}");
        assert!(took < Duration::from_secs(10), "{path:?} took {took:?}");
    }
}
