//! What the stack did with a canary: the Maildir, the message's headers and DKIM
//! signature, and the Postfix log.

use std::collections::HashMap;
use std::net::Ipv4Addr;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, SystemTime};

use super::Stack;
use crate::support::wait_until;

impl Stack {
    /// Waits until the canary with `probe_id` lands in the Maildir (new/ or cur/) and
    /// returns its path and raw bytes.
    pub fn wait_for_canary(
        &self,
        mailbox: &str,
        probe_id: &str,
        within: Duration,
    ) -> (PathBuf, String) {
        let needle = format!("X-Smtp-Canary: {mailbox} {probe_id}");
        self.wait_for_message(
            within,
            &format!("canary {probe_id} of {mailbox} (the header {needle:?})"),
            |text| unfold_headers(text).iter().any(|h| h == &needle),
        )
    }

    /// Waits until the message with `message_id` lands in the Maildir.
    pub fn wait_for_message_id(&self, message_id: &str, within: Duration) -> (PathBuf, String) {
        let id = message_id.trim_matches(|c| c == '<' || c == '>');
        self.wait_for_message(within, &format!("message {message_id}"), |text| {
            text.contains(id)
        })
    }

    /// The first message of the last two minutes in new/ or cur/ that `matches`.
    fn wait_for_message(
        &self,
        within: Duration,
        what: &str,
        matches: impl Fn(&str) -> bool,
    ) -> (PathBuf, String) {
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
                    if matches(&text) {
                        return Some((e.path(), text));
                    }
                }
            }
            None
        });
        found.unwrap_or_else(|| {
            panic!(
                "{what} did not arrive in {} within {within:?} (is the Maildir readable by this \
                 user? the stack's Postfix log: {})",
                maildir.display(),
                self.postfix_log().display()
            )
        })
    }
}

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

/// Base64 (standard alphabet, padded), for looking for encoded credentials on the wire.
pub fn base64(data: &[u8]) -> String {
    use base64::Engine;
    base64::engine::general_purpose::STANDARD.encode(data)
}
