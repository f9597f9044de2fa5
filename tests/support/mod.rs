//! The support tree of the integration tests: every helper is written once, here, and
//! the test modules in `tests/integration/` only arrange and assert.
//!
//! - [`serial`]: the lock that gives timing-sensitive tests the machine to themselves;
//! - [`ports`]: free loopback ports, fresh source addresses, the dead DNS server;
//! - [`http`]: the one HTTP/1.0 client; [`exposition`]: reading `/metrics` text;
//! - [`daemon`]: running the binary: commands with a deadline, the one child guard and
//!   the daemon built on it;
//! - [`fixtures`]: credentials, the mailbox builder, probing in-process; [`files`]: what
//!   tests write, FIFOs and huge sparse files among it;
//! - [`pki`]: a throwaway CA and the STARTTLS servers that present its leaf;
//! - [`token_endpoint`]: the OAuth 2.0 token (and introspection) endpoint;
//! - [`hostile`]: the SMTP server that misbehaves in 35 ways; [`imap`]: the IMAP server
//!   that misbehaves for sink readers;
//! - [`dns`] and [`relay`]: small DNS responders and TCP relays on loopback;
//! - [`stack`]: the running mail stack of `tests/stack/`; [`deploy`]: the monitoring and
//!   deployment files.
//!
//! Nothing here uses the internet or the system resolver: servers listen on loopback,
//! and every prober and daemon gets a DNS server (a dead one unless a test names one).

pub mod daemon;
pub mod deploy;
pub mod dns;
pub mod exposition;
pub mod files;
pub mod fixtures;
pub mod hostile;
pub mod http;
pub mod imap;
pub mod pki;
pub mod ports;
pub mod relay;
pub mod serial;
pub mod stack;
pub mod token_endpoint;

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

/// The repository root (the binary's working directory, where `config.yaml` is).
pub fn repo() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

/// Calls `f` every `every` until it returns `Some`, or `within` passes.
pub fn poll<T>(within: Duration, every: Duration, mut f: impl FnMut() -> Option<T>) -> Option<T> {
    let deadline = Instant::now() + within;
    loop {
        if let Some(v) = f() {
            return Some(v);
        }
        if Instant::now() >= deadline {
            return None;
        }
        std::thread::sleep(every);
    }
}

/// [`poll`] every 100 ms.
pub fn wait_until<T>(within: Duration, f: impl FnMut() -> Option<T>) -> Option<T> {
    poll(within, Duration::from_millis(100), f)
}

/// An executable from PATH (or the sbin directories, which a non-root PATH may lack), or
/// a panic that says how to install it: a test that needs a tool never skips.
pub fn tool(name: &str, install: &str) -> PathBuf {
    let path = std::env::var_os("PATH").unwrap_or_default();
    std::env::split_paths(&path)
        .chain(["/usr/bin", "/usr/sbin", "/bin", "/usr/local/sbin"].map(PathBuf::from))
        .map(|dir| dir.join(name))
        .find(|p| Path::is_file(p))
        .unwrap_or_else(|| {
            panic!(
                "\n\n*** `{name}` IS NOT INSTALLED ***\nThis test needs it; it does not skip.\n\
                 Install it ({install}); scripts/test-all.sh does that when it runs as root.\n"
            )
        })
}
