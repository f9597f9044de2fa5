//! The one HTTP client of the tests: HTTP/1.0 over a fresh loopback connection, one
//! request each, the whole response read. Enough for the daemon's endpoints, the test
//! Prometheus and anything else the tests serve, and nothing hides in a library.

use std::fmt::Display;
use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::time::Duration;

/// One response.
#[derive(Debug)]
pub struct Reply {
    pub status: u16,
    /// The head's lines after the status line, as sent.
    pub head: String,
    pub body: String,
    /// The whole response as received (status line, head and body).
    pub raw: String,
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

/// `method path` on `addr` (an IP literal with port: never a name to resolve), with
/// extra request headers.
pub fn request(
    method: &str,
    addr: impl Display,
    path: &str,
    headers: &[(&str, &str)],
) -> std::io::Result<Reply> {
    let target: SocketAddr = addr
        .to_string()
        .parse()
        .map_err(|e| std::io::Error::other(format!("{addr} is not an IP address and port: {e}")))?;
    let mut s = TcpStream::connect_timeout(&target, Duration::from_secs(3))?;
    s.set_read_timeout(Some(Duration::from_secs(10)))?;
    s.set_write_timeout(Some(Duration::from_secs(10)))?;
    let extra: String = headers
        .iter()
        .map(|(k, v)| format!("{k}: {v}\r\n"))
        .collect();
    write!(
        s,
        "{method} {path} HTTP/1.0\r\nHost: {target}\r\nContent-Length: 0\r\n{extra}\r\n"
    )?;
    let mut bytes = Vec::new();
    s.read_to_end(&mut bytes)?;
    let raw = String::from_utf8_lossy(&bytes).into_owned();
    let (head, body) = raw
        .split_once("\r\n\r\n")
        .ok_or_else(|| std::io::Error::other(format!("no end of the HTTP head in {raw:?}")))?;
    let (status_line, head) = head.split_once("\r\n").unwrap_or((head, ""));
    let status = status_line
        .split_whitespace()
        .nth(1)
        .and_then(|c| c.parse().ok())
        .ok_or_else(|| std::io::Error::other(format!("bad status line {status_line:?}")))?;
    Ok(Reply {
        status,
        head: head.to_owned(),
        body: body.to_owned(),
        raw: raw.clone(),
    })
}

/// A GET of `path` on `addr`.
pub fn get(addr: impl Display, path: &str) -> std::io::Result<Reply> {
    request("GET", addr, path, &[])
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
