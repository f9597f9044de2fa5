//! Property tests and corpus replay for every parser of untrusted input (issue 10): the
//! SMTP reply reader, the config loader, the web config, the SPF/DKIM/DMARC audit and the
//! state file (the ledger). Stable toolchain, proptest; one binary on purpose, because
//! every test binary links the whole dependency tree.
//!
//! Each target has one harness (`*_harness`) that runs one input and asserts what must
//! hold for *any* input: no panic, bounded time and output, errors that do not quote
//! secrets or carry control characters. The corpus replay and the byte-level properties
//! feed the harnesses raw bytes; the structured properties build near-valid input from the
//! target's own vocabulary and add round-trip and oracle checks on top.
//!
//! Case counts are small so CI stays quick; `PROPTEST_CASES` overrides all of them for a
//! long campaign. docs/fuzzing.md says how to run one and how to add corpus files. No test
//! here uses the network or the system resolver: the audit runs on canned answers.

use std::collections::VecDeque;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD as B64;
use proptest::prelude::*;
use proptest::test_runner::FileFailurePersistence;
use smtp_canary::audit::{
    self, Answer, AuditOptions, DomainReport, FailureKind, LOOKUP_LIMIT, MIN_RSA_BITS, RType,
    Target, WEAK_RSA_BITS, Zone,
};
use smtp_canary::config::Provider;
use smtp_canary::probe::{MAX_LINE, MAX_LINES, ReadError, Reply, read_reply};
use smtp_canary::quota::{
    Ledger, MAX_RESERVATION, PauseReason, Reservation, Send, Unit, WINDOWS, Window,
};
use smtp_canary::state::parse_ledger;

// ---------------------------------------------------------------------------------------
// Shared

/// The most CPU time one input may take. Generous (a debug build): what it catches is a
/// blow-up, such as an alias bomb or a loop over a count read from the input, not a slow
/// path. CPU time of the thread, not wall time, because the machines are shared and a
/// loaded one stretches wall time several times over.
const SLOW: Duration = Duration::from_secs(10);

/// The most wall time one input may take: the harnesses never wait on anything, so this
/// only catches a blocking read (a FIFO, a device) that costs no CPU.
const SLOW_WALL: Duration = Duration::from_secs(120);

/// Where proptest writes the seeds of failing cases (replayed first on every run).
const REGRESSIONS: &str = "proptest-regressions/fuzz.txt";

/// Paths that name the files in messages; nothing exists under them, so relative
/// `*_file` values never reach a real file.
const CONFIG_PATH: &str = "/nonexistent/smtp-canary-fuzz/config.yaml";
const WEB_PATH: &str = "/nonexistent/smtp-canary-fuzz/web.yml";

/// `cases` cases per property unless `PROPTEST_CASES` is set. proptest reads the variable
/// only when a test leaves `cases` at its default, and each test here sets its own.
fn cases(cases: u32) -> ProptestConfig {
    let mut c = ProptestConfig::default();
    if std::env::var_os("PROPTEST_CASES").is_none() {
        c.cases = cases;
    }
    c.failure_persistence = Some(Box::new(FileFailurePersistence::Direct(REGRESSIONS)));
    c
}

/// For the bound properties, whose cases cost up to seconds each: in a long campaign
/// `PROPTEST_CASES / 1000` of them, never fewer than `cases`.
fn bound_cases(cases: u32) -> ProptestConfig {
    let mut c = self::cases(cases);
    if let Some(n) = std::env::var("PROPTEST_CASES")
        .ok()
        .and_then(|v| v.parse::<u32>().ok())
    {
        c.cases = (n / 1000).max(cases);
    }
    c
}

/// CPU time the calling thread has used.
fn thread_cpu() -> Duration {
    let mut ts = libc::timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    // SAFETY: `ts` is a valid timespec for the call to write; the clock always exists
    // on Linux.
    let rc = unsafe { libc::clock_gettime(libc::CLOCK_THREAD_CPUTIME_ID, &mut ts) };
    assert_eq!(rc, 0, "clock_gettime(CLOCK_THREAD_CPUTIME_ID)");
    Duration::new(ts.tv_sec as u64, ts.tv_nsec as u32)
}

/// Runs `f` on this thread, failing when it takes more than [`SLOW`] of CPU time (or
/// [`SLOW_WALL`] of wall time).
fn timed<T>(what: &str, input: &[u8], f: impl FnOnce() -> T) -> T {
    let (cpu, wall) = (thread_cpu(), Instant::now());
    let out = f();
    let (cpu, wall) = (thread_cpu() - cpu, wall.elapsed());
    assert!(
        cpu < SLOW && wall < SLOW_WALL,
        "{what} took {cpu:?} of CPU ({wall:?} in all) on {} bytes starting {:?}",
        input.len(),
        String::from_utf8_lossy(&input[..input.len().min(200)])
    );
    out
}

fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_current_thread()
        .enable_time()
        .build()
        .expect("a current-thread runtime")
}

/// Control characters other than line ends: what must not reach a terminal or a log line
/// from a file or a server (escape sequences, a fake log line after a bare CR).
fn control_chars(s: &str) -> Vec<char> {
    s.chars().filter(|c| c.is_control() && *c != '\n').collect()
}

/// Every `n`-character window of `secret` that occurs in `text`: a secret quoted in part
/// (truncated, or cut by an error at a later character) is still a leak.
fn leaked_windows(secret: &str, text: &str, n: usize) -> Vec<String> {
    let chars: Vec<char> = secret.chars().collect();
    if chars.len() < n {
        return text
            .contains(secret)
            .then(|| secret.to_string())
            .into_iter()
            .collect();
    }
    chars
        .windows(n)
        .map(|w| w.iter().collect::<String>())
        .filter(|w| text.contains(w.as_str()))
        .collect()
}

/// A distinctive secret: no generated key or value contains eight characters of it by
/// chance. Some look like numbers to YAML (a PIN, a float that overflows), which take
/// other paths through the parser than text does.
fn secret() -> impl Strategy<Value = String> {
    prop_oneof![
        4 => "[A-Za-z0-9]{14,24}".prop_map(|s| format!("Zq{s}")),
        1 => "[1-9][0-9]{15,24}",
        1 => "-?[1-9]\\.?[0-9]{0,3}[eE][4-9][0-9]{2,4}",
        1 => "0x[0-9a-f]{16,24}",
        1 => "[1-9][0-9_]{16,24}",
    ]
}

// ---------------------------------------------------------------------------------------
// The reply reader

/// The most bytes one reply may take off the wire: `MAX_LINES` lines of `MAX_LINE` bytes
/// plus CRLF (reply.rs documents both bounds).
const REPLY_WIRE_MAX: usize = MAX_LINES * (MAX_LINE + 2);

/// What reading replies off one input gave: the replies, then the error that ended it.
#[derive(Debug)]
struct ReplyRun {
    replies: Vec<Reply>,
    end: ReadError,
    /// Bytes taken off the input for the reply that failed.
    failed_after: usize,
}

/// Reads replies off `bytes` until the first error, through a reader that hands out at
/// most `capacity` bytes at a time (small capacities split lines across reads). Asserts
/// the reader's bounds for every reply: a code in 200..=599, at most `MAX_LINES` lines of
/// at most `MAX_LINE` characters, and at most `REPLY_WIRE_MAX` bytes consumed.
fn reply_harness(bytes: &[u8], capacity: usize) -> ReplyRun {
    timed("read_reply", bytes, || {
        let rt = runtime();
        let mut r = tokio::io::BufReader::with_capacity(capacity.max(1), bytes);
        let left = |r: &tokio::io::BufReader<&[u8]>| r.get_ref().len() + r.buffer().len();
        let mut replies = Vec::new();
        loop {
            let before = left(&r);
            let got = rt.block_on(read_reply(&mut r));
            let taken = before - left(&r);
            assert!(
                taken <= REPLY_WIRE_MAX,
                "one reply took {taken} bytes off the wire"
            );
            match got {
                Ok(reply) => {
                    // "250\n" is the shortest reply: the loop ends.
                    assert!(taken >= 4, "a reply from {taken} bytes: {reply:?}");
                    assert!((200..600).contains(&reply.code), "{reply:?}");
                    assert!(!reply.lines.is_empty() && reply.lines.len() <= MAX_LINES);
                    for line in &reply.lines {
                        assert!(line.chars().count() <= MAX_LINE, "{} chars", line.len());
                        assert!(!line.contains('\n'), "{line:?}");
                    }
                    // Reply's own accessors must hold on whatever the server sent.
                    let _ = (reply.code_label(), reply.text(), reply.is_positive());
                    let _ = reply.capability("AUTH");
                    // What the transcript shows must read back as the same reply.
                    let again = reparse(&rt, &reply.raw());
                    assert_eq!(again.as_ref().ok(), Some(&reply), "{again:?}");
                    replies.push(reply);
                }
                Err(end) => {
                    if let ReadError::Malformed(m) = &end {
                        // The quote is cut at 80 characters (plus "...").
                        assert!(m.chars().count() <= 83, "{m:?}");
                    }
                    return ReplyRun {
                        replies,
                        end,
                        failed_after: taken,
                    };
                }
            }
        }
    })
}

/// Parses one reply from text (each line ending in LF, as `Reply::raw` joins them).
fn reparse(rt: &tokio::runtime::Runtime, text: &str) -> Result<Reply, ReadError> {
    let wire = format!("{text}\n");
    let mut r = tokio::io::BufReader::new(wire.as_bytes());
    rt.block_on(read_reply(&mut r))
}

/// One line on the wire, for the structured reply generator.
#[derive(Debug, Clone)]
struct WireLine {
    code: String,
    sep: &'static str,
    text: String,
    end: &'static str,
}

impl WireLine {
    fn body(&self) -> String {
        format!("{}{}{}", self.code, self.sep, self.text)
    }
}

/// What a sequence of lines must read as, from RFC 5321 §4.2 and reply.rs's documented
/// limits, one line at a time (the reader works on a byte stream split arbitrarily).
#[derive(Debug, PartialEq)]
enum Expect {
    TooLong,
    TooMany,
    Malformed,
    Eof,
}

fn expected(lines: &[WireLine]) -> (Vec<(u16, Vec<String>)>, Expect) {
    let mut done = Vec::new();
    let mut code: Option<u16> = None;
    let mut texts = Vec::new();
    for l in lines {
        let body = l.body();
        if body.len() + l.end.len() > MAX_LINE + 2 {
            return (done, Expect::TooLong);
        }
        let b = body.as_bytes();
        let digits = b.len() >= 3 && b[..3].iter().all(u8::is_ascii_digit);
        let sep = b.get(3).copied();
        if !digits || !matches!(sep, None | Some(b' ' | b'-')) {
            return (done, Expect::Malformed);
        }
        let this: u16 = body[..3].parse().unwrap();
        if !(200..600).contains(&this) || code.is_some_and(|c| c != this) {
            return (done, Expect::Malformed);
        }
        code = Some(this);
        texts.push(body.get(4..).unwrap_or("").to_string());
        if sep != Some(b'-') {
            done.push((this, std::mem::take(&mut texts)));
            code = None;
        } else if texts.len() >= MAX_LINES {
            return (done, Expect::TooMany);
        }
    }
    (done, Expect::Eof)
}

fn wire(lines: &[WireLine]) -> Vec<u8> {
    lines
        .iter()
        .flat_map(|l| format!("{}{}", l.body(), l.end).into_bytes())
        .collect()
}

fn reply_code() -> impl Strategy<Value = String> {
    prop_oneof![
        6 => prop::sample::select(vec!["220", "250", "334", "354", "421", "450", "451", "535", "550", "554"])
            .prop_map(str::to_string),
        2 => (0u16..1000).prop_map(|c| format!("{c:03}")),
        1 => "[0-9a-zA-Z -]{0,4}",
    ]
}

fn reply_text() -> impl Strategy<Value = String> {
    prop_oneof![
        6 => "[ -~]{0,60}",
        2 => "[^\r\n]{0,30}",
        // Around the line limit: MAX_LINE counts the code and separator too.
        1 => (MAX_LINE - 8..MAX_LINE + 3).prop_map(|n| "x".repeat(n)),
        // A 334 challenge: base64 of a few bytes.
        1 => prop::collection::vec(any::<u8>(), 0..48).prop_map(|b| B64.encode(b)),
    ]
}

fn wire_line() -> impl Strategy<Value = WireLine> {
    (
        reply_code(),
        prop::sample::select(vec!["-", "-", "-", " ", " ", "", "x", "\t"]),
        reply_text(),
        prop::sample::select(vec!["\r\n", "\r\n", "\n"]),
    )
        .prop_map(|(code, sep, text, end)| WireLine {
            code,
            sep,
            text,
            end,
        })
}

/// Lines mostly of one code, so that multi-line replies and `334` loops come out whole.
fn wire_lines() -> impl Strategy<Value = Vec<WireLine>> {
    (
        reply_code(),
        prop::collection::vec((wire_line(), any::<u8>()), 0..40),
    )
        .prop_map(|(code, lines)| {
            lines
                .into_iter()
                .map(|(mut l, keep)| {
                    if keep < 230 {
                        l.code = code.clone();
                    }
                    l
                })
                .collect()
        })
}

// ---------------------------------------------------------------------------------------
// The config loader

/// Runs the config loader on `text`; returns its messages (none when it accepted it).
/// Asserts: bounded time, at least one message per failure, each located in the file we
/// named, and no control characters in any of them but those about a `*_file` path.
fn config_harness(text: &str) -> Vec<String> {
    timed(
        "config::parse",
        text.as_bytes(),
        || match smtp_canary::config::parse(text, Path::new(CONFIG_PATH)) {
            Ok(cfg) => {
                let _ = cfg.audit_domains();
                Vec::new()
            }
            Err(errors) => {
                assert!(!errors.is_empty(), "a failure without a message");
                errors
                    .iter()
                    .map(|e| {
                        assert_eq!(e.file, CONFIG_PATH);
                        let shown = e.to_string();
                        // A `*_file` path is quoted as written (as the web config's are):
                        // the escaping of paths belongs with the reads in fsutil.rs.
                        assert!(
                            e.key.ends_with("_file") || control_chars(&shown).is_empty(),
                            "control characters in {shown:?}"
                        );
                        shown
                    })
                    .collect()
            }
        },
    )
}

/// A YAML node, rendered by hand so the generator can also produce the broken forms
/// (bad indentation, stray indicators) that a serializer never would.
#[derive(Debug, Clone)]
enum Y {
    /// Already rendered (plain, quoted, tagged, an alias...).
    Scalar(String),
    Seq(Vec<Y>),
    Map(Vec<(String, Y)>),
    /// `&name` before the node.
    Anchored(String, Box<Y>),
    /// Flow style (`[a, b]`, `{k: v}`) for the node.
    Flow(Box<Y>),
}

impl Y {
    fn render(&self, indent: usize, out: &mut String) {
        match self {
            Y::Scalar(s) => {
                out.push(' ');
                out.push_str(s);
                out.push('\n');
            }
            Y::Anchored(name, inner) => {
                out.push_str(&format!(" &{name}"));
                match &**inner {
                    Y::Scalar(_) | Y::Flow(_) => inner.render(indent, out),
                    _ => {
                        out.push('\n');
                        inner.render_block(indent, out);
                    }
                }
            }
            Y::Flow(inner) => {
                out.push(' ');
                inner.render_flow(out);
                out.push('\n');
            }
            Y::Seq(items) if items.is_empty() => out.push_str(" []\n"),
            Y::Map(entries) if entries.is_empty() => out.push_str(" {}\n"),
            _ => {
                out.push('\n');
                self.render_block(indent, out);
            }
        }
    }

    /// The node as the block under a key or list item, at `indent`.
    fn render_block(&self, indent: usize, out: &mut String) {
        let pad = " ".repeat(indent);
        match self {
            Y::Seq(items) => {
                for item in items {
                    out.push_str(&pad);
                    out.push('-');
                    item.render(indent + 2, out);
                }
            }
            Y::Map(entries) => {
                for (k, v) in entries {
                    out.push_str(&pad);
                    out.push_str(k);
                    out.push(':');
                    v.render(indent + 2, out);
                }
            }
            other => {
                out.push_str(&pad);
                other.render(indent, out);
            }
        }
    }

    fn render_flow(&self, out: &mut String) {
        match self {
            Y::Scalar(s) => out.push_str(s),
            Y::Seq(items) => {
                out.push('[');
                for (i, item) in items.iter().enumerate() {
                    if i > 0 {
                        out.push_str(", ");
                    }
                    item.render_flow(out);
                }
                out.push(']');
            }
            Y::Map(entries) => {
                out.push('{');
                for (i, (k, v)) in entries.iter().enumerate() {
                    if i > 0 {
                        out.push_str(", ");
                    }
                    out.push_str(k);
                    out.push_str(": ");
                    v.render_flow(out);
                }
                out.push('}');
            }
            Y::Anchored(name, inner) => {
                out.push_str(&format!("&{name} "));
                inner.render_flow(out);
            }
            Y::Flow(inner) => inner.render_flow(out),
        }
    }
}

fn document(root: &Y) -> String {
    let mut out = String::new();
    root.render_block(0, &mut out);
    out
}

/// Scalars a config value could plausibly hold, and the ones that trip parsers: YAML's
/// implicit types, overflowing numbers, durations with odd units, indicators.
const SCALARS: &[&str] = &[
    "30s",
    "5m",
    "1h",
    "0s",
    "-5s",
    "1.5m",
    "99999999999999999999h",
    "1h30m",
    "PT5M",
    "",
    "~",
    "null",
    "true",
    "false",
    "yes",
    "no",
    "on",
    "0",
    "1",
    "-1",
    "25",
    "465",
    "587",
    "65535",
    "65536",
    "4294967296",
    "18446744073709551616",
    "1e9",
    "0x1F",
    "0o17",
    ".inf",
    ".nan",
    "microsoft365",
    "google",
    "generic",
    "demo",
    "amazon_ses",
    "starttls",
    "tls",
    "none",
    "plain",
    "login",
    "xoauth2",
    "client_credentials",
    "refresh_token",
    "a@d.test",
    "canary@contoso.com",
    "@d.test",
    "a@",
    "smtp.office365.com",
    "localhost",
    "127.0.0.1",
    "::1",
    "256.1.1.1",
    "d.test",
    "-bad-.test",
    "selector1",
    "PATH",
    "NO_SUCH_VAR_FOR_FUZZ",
    "1BAD",
    "/nonexistent/secret",
    "relative/secret",
    "/dev/null",
    "https://login.microsoftonline.com/x/oauth2/v2.0/token",
    "http://insecure.test/t",
    "'quoted'",
    "\"double\"",
    "\"esc\\t\\u00e9\"",
    "\"\\x1b[31m\"",
    "[a, b]",
    "{a: b}",
    "*",
    "&",
    "!",
    "!!int x",
    "!!binary AAAA",
    "!custom v",
    "|",
    ">",
    "- x",
    ": x",
    "#c",
    "%x",
    "@x",
    "`x",
    "x: y",
    "x #c",
    "'unclosed",
    "\"unclosed",
];

fn scalar() -> impl Strategy<Value = String> {
    prop_oneof![
        8 => prop::sample::select(SCALARS).prop_map(str::to_string),
        2 => "[ -~]{0,20}",
        1 => "[^\n]{0,12}",
        1 => any::<i64>().prop_map(|n| n.to_string()),
        1 => "[ -~]{0,20}".prop_map(|s| format!("'{}'", s.replace('\'', "''"))),
        1 => "\\PC{0,20}".prop_map(|s| format!("{s:?}")),
        1 => (0u8..4).prop_map(|i| format!("*a{i}")),
    ]
}

/// Keys of one section of the schema (config/schema.rs), a few misspelt.
const TOP_KEYS: &[&str] = &["global", "mailboxes", "dns_audit", "mailbox", "x"];
const GLOBAL_KEYS: &[&str] = &["interval", "timeout", "helo_name", "intervall"];
const MAILBOX_KEYS: &[&str] = &[
    "name",
    "provider",
    "host",
    "port",
    "security",
    "username",
    "password_env",
    "password_file",
    "auth_mechanism",
    "from",
    "to",
    "interval",
    "timeout",
    "allow_insecure_auth",
    "source_address",
    "prot",
    "client_id",
];
const OAUTH2_KEYS: &[&str] = &[
    "grant",
    "tenant",
    "token_url",
    "scope",
    "client_id",
    "client_secret_env",
    "client_secret_file",
    "refresh_token_env",
    "refresh_token_file",
];
const TLS_KEYS: &[&str] = &["ca_file", "server_name"];
const LIMITS_KEYS: &[&str] = &[
    "messages_per_minute",
    "messages_per_day",
    "recipients_per_day",
    "concurrent_connections",
];
const AUDIT_KEYS: &[&str] = &["domain", "provider", "dkim_selectors"];

/// A value: mostly a scalar, sometimes a list or a mapping where a scalar belongs.
fn value() -> impl Strategy<Value = Y> {
    prop_oneof![
        10 => scalar().prop_map(Y::Scalar),
        1 => prop::collection::vec(scalar().prop_map(Y::Scalar), 0..3).prop_map(Y::Seq),
        1 => prop::collection::vec(scalar().prop_map(Y::Scalar), 0..3)
            .prop_map(|v| Y::Flow(Box::new(Y::Seq(v)))),
        1 => (0u8..4, scalar()).prop_map(|(i, s)| Y::Anchored(format!("a{i}"), Box::new(Y::Scalar(s)))),
    ]
}

fn section(keys: &'static [&'static str], max: usize) -> impl Strategy<Value = Y> {
    prop::collection::vec((prop::sample::select(keys), value()), 0..max)
        .prop_map(|kv| Y::Map(kv.into_iter().map(|(k, v)| (k.to_string(), v)).collect()))
}

fn with_entry(map: Y, key: &str, value: Option<Y>) -> Y {
    match (map, value) {
        (Y::Map(mut entries), Some(v)) => {
            entries.push((key.to_string(), v));
            Y::Map(entries)
        }
        (map, _) => map,
    }
}

fn mailbox() -> impl Strategy<Value = Y> {
    (
        section(MAILBOX_KEYS, 12),
        prop::option::of(section(OAUTH2_KEYS, 5)),
        prop::option::of(section(TLS_KEYS, 3)),
        prop::option::of(section(LIMITS_KEYS, 4)),
        prop::option::of(section(&["messages_per_day"], 2)),
        prop::option::of(
            prop::collection::vec(scalar().prop_map(Y::Scalar), 0..3).prop_map(Y::Seq),
        ),
    )
        .prop_map(|(m, oauth, tls, limits, budget, to)| {
            let m = with_entry(m, "oauth2", oauth);
            let m = with_entry(m, "tls", tls);
            let m = with_entry(m, "limits", limits);
            let m = with_entry(m, "budget", budget);
            with_entry(m, "to", to)
        })
}

/// A whole config assembled from known keys with random values.
fn config_doc() -> impl Strategy<Value = Y> {
    (
        prop::option::of(section(GLOBAL_KEYS, 4)),
        prop::collection::vec(mailbox(), 0..3),
        prop::option::of(prop::collection::vec(section(AUDIT_KEYS, 4), 0..3)),
        prop::option::of(section(&["interval"], 2)),
        prop::option::of(section(TOP_KEYS, 2)),
    )
        .prop_map(|(global, mailboxes, domains, audit, extra)| {
            let mut top = Vec::new();
            if let Some(g) = global {
                top.push(("global".to_string(), g));
            }
            top.push(("mailboxes".to_string(), Y::Seq(mailboxes)));
            if let Some(domains) = domains {
                let audit = with_entry(
                    audit.unwrap_or(Y::Map(Vec::new())),
                    "domains",
                    Some(Y::Seq(domains)),
                );
                top.push(("dns_audit".to_string(), audit));
            }
            if let Some(Y::Map(entries)) = extra {
                top.extend(entries);
            }
            Y::Map(top)
        })
}

/// A valid mailbox in block style, as a base for the secret and bomb properties.
const VALID_MAILBOX: &str = "mailboxes:\n  - name: fuzz\n    provider: generic\n    host: smtp.d.test\n    port: 587\n    username: a@d.test\n    password_env: PATH\n    from: a@d.test\n    to: [b@d.test]\n";

/// How a secret is written after `key:`: YAML forms that are all a mistake but must
/// still not get the value quoted back (an unknown alias or tag, an unclosed quote, an
/// invalid escape, a nested mapping).
fn secret_value(secret: String) -> impl Strategy<Value = String> {
    (
        prop::sample::select(vec![
            "",
            "'",
            "\"",
            "*",
            "&",
            "!",
            "!!",
            "!!int ",
            "!!float ",
            "!!bool ",
            "!!binary ",
            "!!null ",
            "!!timestamp ",
            "!!map ",
            "!!seq ",
            "!<tag:x> ",
            "%",
            "@",
            "`",
            "|\n        ",
            ">\n        ",
            "[",
            "{",
            "- ",
            "? ",
            "&a ",
            "\"\\",
            "\"\\x",
            "\"\\u",
            "'\\",
            "{k: ",
            "[a, ",
            "{",
            "|-\n        ",
        ]),
        prop::sample::select(vec![
            "",
            "'",
            "\"",
            ":",
            ": x",
            " #c",
            "\t",
            "}",
            "]",
            ",",
            "\\q",
            "\"x",
            "\n      x: y",
            "\n   bad indent",
            ": [1",
            "'\"",
        ]),
    )
        .prop_map(move |(pre, post)| format!("{pre}{secret}{post}"))
}

// ---------------------------------------------------------------------------------------
// The web config

/// Runs the web config loader on `text`; returns its message, if it refused the text.
/// Asserts bounded time. (Messages quote the file's paths as written, control characters
/// and all: the file is the operator's, unlike a config key or a DNS record.)
fn web_harness(text: &str) -> Option<String> {
    timed("web::config::parse", text.as_bytes(), || {
        match smtp_canary::web::config::parse(text, Path::new(WEB_PATH)) {
            Ok(cfg) => {
                // With basic auth configured, a header that cannot be a match is refused
                // without bcrypt (the slow check is not fuzzed: it is bcrypt's).
                if let Some(auth) = &cfg.auth {
                    assert!(!auth.check(None));
                    assert!(!auth.check(Some("Basic !!!")));
                }
                None
            }
            Err(e) => Some(e.to_string()),
        }
    })
}

/// A bcrypt hash as htpasswd makes them: `$2y$10$` and 53 characters of bcrypt's base64.
fn bcrypt_hash() -> impl Strategy<Value = String> {
    (
        prop::sample::select(vec!["$2y$", "$2b$", "$2a$", "$2x$", "$1$", "2y$"]),
        prop::sample::select(vec!["10", "04", "31", "99", "x"]),
        "[./A-Za-z0-9]{53}",
    )
        .prop_map(|(v, cost, rest)| format!("{v}{cost}${rest}"))
}

const WEB_TLS_KEYS: &[&str] = &[
    "cert_file",
    "key_file",
    "client_auth_type",
    "client_ca_file",
    "min_version",
    "cipher_suites",
];
const WEB_VALUES: &[&str] = &[
    "tls.crt",
    "tls.key",
    "../x.pem",
    "/nonexistent/x.pem",
    "",
    "~",
    "TLS12",
    "TLS13",
    "TLS11",
    "NoClientCert",
    "RequireAndVerifyClientCert",
    "RequestClientCert",
    "[a]",
    "{a: b}",
    "x: y",
    "'unclosed",
    "*a",
    "!!binary x",
];

// ---------------------------------------------------------------------------------------
// The DNS audit (SPF, DKIM, DMARC)

/// The domain most generated zones are about; `sub.` of it audits the DMARC fallback to
/// the organizational domain.
const DOMAINS: &[&str] = &["d.test", "sub.d.test"];
const SELECTORS: &[&str] = &["sel", "s2"];

/// Runs the whole audit of `domain` on canned answers. Asserts bounded time and what must
/// hold of any report: lookups and void lookups consistent, one DKIM report per selector,
/// well-formed JSON, and a text report free of control characters (the records are the
/// zone owner's text, printed on the auditor's terminal).
fn audit_harness(zone: Zone, domain: &str, provider: Provider) -> DomainReport {
    let target = Target {
        domain: domain.to_string(),
        provider,
        dkim_selectors: SELECTORS.iter().map(|s| s.to_string()).collect(),
    };
    let size: usize = zone
        .values()
        .filter_map(|a| a.as_ref().ok())
        .map(|a| a.txt.iter().map(Vec::len).sum::<usize>())
        .sum();
    let what = format!("audit of {domain} ({size} bytes of TXT)");
    let report = timed(&what, b"", || {
        let reports = runtime().block_on(audit::audit_canned(
            zone,
            std::slice::from_ref(&target),
            AuditOptions::default(),
        ));
        assert_eq!(reports.len(), 1);
        reports.into_iter().next().unwrap()
    });
    assert_eq!(report.domain, domain);
    if let Some(spf) = &report.spf {
        assert!(spf.void_lookups <= spf.lookups, "{spf:?}");
        // spf.rs stops expanding once the count is three times the limit.
        if !spf.truncated {
            assert!(spf.lookups <= 3 * LOOKUP_LIMIT, "{spf:?}");
        }
    }
    if report.errors.is_empty() {
        assert_eq!(report.dkim.len(), target.selectors().len());
    }
    for k in &report.dkim {
        assert_eq!(k.key_type.is_some(), k.bits.is_some(), "{k:?}");
        assert!(!(k.revoked || k.key_type.is_some()) || k.present, "{k:?}");
    }
    if let Some(d) = &report.dmarc {
        assert!(
            d.policy.is_none() || d.policy == d.p || d.policy == d.sp,
            "{d:?}"
        );
    }
    let json = report.to_json();
    assert_eq!(json["domain"], domain);
    serde_json::to_string(&json).expect("the JSON report serializes");
    let text = report.render_text(false);
    assert!(
        control_chars(&text).is_empty(),
        "control characters in the text report: {text:?}"
    );
    report
}

fn txt(zone: &mut Zone, name: &str, record: Vec<u8>) {
    let e = zone
        .entry((name.to_string(), RType::Txt))
        .or_insert_with(|| Ok(Answer::default()));
    if let Ok(a) = e {
        a.txt.push(record);
    }
}

/// The zone format of the `spf` corpus (and any audit corpus file that starts with
/// `zone`): one record a line, `<name> <TXT|MX|A|AAAA|SERVFAIL|TIMEOUT> [data]`, `#`
/// starts a comment line. TXT data is the rest of the line, bytes as they are.
fn parse_zone(bytes: &[u8]) -> Zone {
    let mut zone = Zone::new();
    for line in bytes.split(|&b| b == b'\n') {
        let line = line.strip_suffix(b"\r").unwrap_or(line);
        if line.is_empty() || line.starts_with(b"#") {
            continue;
        }
        let mut parts = line.splitn(3, |&b| b == b' ');
        let name = String::from_utf8_lossy(parts.next().unwrap_or_default()).into_owned();
        let kind = parts.next().unwrap_or_default();
        let data = parts.next().unwrap_or_default().to_vec();
        let answer = |zone: &mut Zone, rtype| -> Option<Answer> {
            match zone
                .entry((name.clone(), rtype))
                .or_insert_with(|| Ok(Answer::default()))
            {
                Ok(a) => Some(std::mem::take(a)),
                Err(_) => None,
            }
        };
        match kind {
            b"TXT" => txt(&mut zone, &name, data),
            b"MX" => {
                let text = String::from_utf8_lossy(&data).into_owned();
                let (pref, host) = text.split_once(' ').unwrap_or(("10", text.as_str()));
                if let Some(mut a) = answer(&mut zone, RType::Mx) {
                    a.mx.push((pref.parse().unwrap_or(10), host.to_string()));
                    zone.insert((name.clone(), RType::Mx), Ok(a));
                }
            }
            b"A" | b"AAAA" => {
                let rtype = if kind == b"A" { RType::A } else { RType::Aaaa };
                let ip = String::from_utf8_lossy(&data).trim().parse();
                if let (Some(mut a), Ok(ip)) = (answer(&mut zone, rtype), ip) {
                    a.addrs.push(ip);
                    zone.insert((name.clone(), rtype), Ok(a));
                }
            }
            b"SERVFAIL" | b"TIMEOUT" => {
                let kind = if kind == b"SERVFAIL" {
                    FailureKind::ServFail
                } else {
                    FailureKind::Timeout(Duration::from_secs(7))
                };
                for rtype in [RType::Txt, RType::Mx, RType::A, RType::Aaaa] {
                    zone.insert((name.clone(), rtype), Err(kind.clone()));
                }
            }
            _ => {}
        }
    }
    zone
}

/// Names an SPF tree may include: the domain, a few of its own, and providers' includes.
const SPF_NAMES: &[&str] = &[
    "d.test",
    "i0.d.test",
    "i1.d.test",
    "i2.d.test",
    "i3.d.test",
    "_spf.d.test",
    "spf.protection.outlook.com",
    "_spf.google.com",
    "amazonses.com",
    "nx.test",
    "bad..name",
    "x_y.test",
    "-.test",
];

fn spf_target() -> impl Strategy<Value = String> {
    prop_oneof![
        6 => prop::sample::select(SPF_NAMES).prop_map(str::to_string),
        1 => prop::sample::select(vec![
            "%{i}.d.test", "%{ir}.%{v}._spf.%{d2}", "%{l}.d.test", "%{d1r}", "%%.d.test",
            "%{z}.d.test", "%{", "%_%-", "%{o}", "%{h}.%{d}",
        ]).prop_map(str::to_string),
        1 => "[a-z0-9.%{}_-]{0,20}",
    ]
}

fn spf_term() -> impl Strategy<Value = String> {
    let mechanism = prop_oneof![
        2 => Just("all".to_string()),
        4 => spf_target().prop_map(|t| format!("include:{t}")),
        1 => Just("a".to_string()),
        1 => (spf_target(), 0u8..40).prop_map(|(t, c)| format!("a:{t}/{c}")),
        1 => Just("mx".to_string()),
        1 => spf_target().prop_map(|t| format!("mx:{t}")),
        1 => (0u8..40, 0u8..200).prop_map(|(c4, c6)| format!("mx/{c4}//{c6}")),
        1 => Just("ptr".to_string()),
        3 => (any::<[u8; 4]>(), prop::option::of(0u8..40))
            .prop_map(|(ip, c)| format!("ip4:{}.{}.{}.{}{}", ip[0], ip[1], ip[2], ip[3], c.map(|c| format!("/{c}")).unwrap_or_default())),
        1 => (any::<u16>(), 0u8..200).prop_map(|(x, c)| format!("ip6:2001:db8::{x:x}/{c}")),
        1 => spf_target().prop_map(|t| format!("exists:{t}")),
        2 => spf_target().prop_map(|t| format!("redirect={t}")),
        1 => spf_target().prop_map(|t| format!("exp={t}")),
        1 => "[a-z]{1,8}=[ -~]{0,10}",
        1 => "[ -~]{0,12}",
    ];
    (
        prop::sample::select(vec!["", "", "", "+", "-", "~", "?"]),
        mechanism,
    )
        .prop_map(|(q, m)| format!("{q}{m}"))
}

fn spf_record() -> impl Strategy<Value = Vec<u8>> {
    (
        prop::sample::select(vec![
            "v=spf1",
            "v=spf1",
            "v=spf1",
            "V=SPF1",
            "v=spf1x",
            "v=spf2.0/pra",
            " v=spf1",
            "v=spf1\t",
        ]),
        prop::collection::vec(spf_term(), 0..14),
        prop::sample::select(vec![" ", " ", "  ", "\t"]),
    )
        .prop_map(|(v, terms, sep)| {
            let mut s = v.to_string();
            for t in terms {
                s.push_str(sep);
                s.push_str(&t);
            }
            s.into_bytes()
        })
}

// Public halves of throwaway keys (the same as src/audit/dkim.rs's unit tests use).
const RSA_1024: &str = "MIGfMA0GCSqGSIb3DQEBAQUAA4GNADCBiQKBgQDkz3yvoH8K9fhLfrSTgKy8yzuwHS6VQH1m14vot++Bfhz1gr04UGEzzzZRZcLwbkU1J1lz2VqhjWTnShbAOtr4wzNZVLToC4Rg/2JCQxDyUV9qy4YFaaGQ//CiXjYkFB+nGmXiUUT7OnUJBvjvnfW77WyxuHSisF9VpdAmJzoLzQIDAQAB";
const ED25519: &str = "11qYAYKxCrfVS/7TyWQHOg7hcvPapiMlrwIaaPcHURo=";

fn der(tag: u8, body: &[u8]) -> Vec<u8> {
    let mut out = vec![tag];
    if body.len() < 128 {
        out.push(body.len() as u8);
    } else {
        let len = body.len().to_be_bytes();
        let len: Vec<u8> = len.iter().copied().skip_while(|&b| b == 0).collect();
        out.push(0x80 | len.len() as u8);
        out.extend(len);
    }
    out.extend_from_slice(body);
    out
}

fn der_uint(bytes: &[u8]) -> Vec<u8> {
    let mut b = bytes.to_vec();
    if b.first().is_some_and(|&x| x & 0x80 != 0) {
        b.insert(0, 0);
    }
    der(0x02, &b)
}

/// An RSA SubjectPublicKeyInfo (what DKIM's `p=` holds) with `modulus` and e = 65537.
fn rsa_spki(modulus: &[u8]) -> Vec<u8> {
    const RSA_ENCRYPTION: &[u8] = &[0x2a, 0x86, 0x48, 0x86, 0xf7, 0x0d, 0x01, 0x01, 0x01];
    let key = der(0x30, &[der_uint(modulus), der_uint(&[1, 0, 1])].concat());
    let alg = der(
        0x30,
        &[der(0x06, RSA_ENCRYPTION), vec![0x05, 0x00]].concat(),
    );
    let bits = der(0x03, &[vec![0], key].concat());
    der(0x30, &[alg, bits].concat())
}

/// An odd modulus of exactly `bits` bits.
fn modulus(bits: usize, noise: &[u8]) -> Vec<u8> {
    let len = bits.div_ceil(8);
    let mut m: Vec<u8> = (0..len).map(|i| noise[i % noise.len()]).collect();
    let top = (bits - 1) % 8;
    m[0] = (m[0] & ((1u8 << top) - 1)) | (1 << top);
    m[len - 1] |= 1;
    m
}

fn dkim_p() -> impl Strategy<Value = String> {
    prop_oneof![
        2 => Just(RSA_1024.to_string()),
        2 => Just(ED25519.to_string()),
        1 => Just(String::new()),
        2 => prop::collection::vec(any::<u8>(), 0..300).prop_map(|b| B64.encode(b)),
        2 => (64usize..4200, prop::collection::vec(any::<u8>(), 1..64))
            .prop_map(|(bits, noise)| B64.encode(rsa_spki(&modulus(bits, &noise)))),
        1 => "[A-Za-z0-9+/=!@# -]{0,80}",
        1 => Just(format!("{} {}", &RSA_1024[..40], &RSA_1024[40..])),
        1 => Just(RSA_1024[..RSA_1024.len() - 3].to_string()),
    ]
}

fn tags(pairs: Vec<(String, String)>, sep: &str, trailing: bool) -> Vec<u8> {
    let mut s = pairs
        .into_iter()
        .map(|(k, v)| if k.is_empty() { v } else { format!("{k}={v}") })
        .collect::<Vec<_>>()
        .join(sep);
    if trailing {
        s.push_str(sep.trim_end());
    }
    s.into_bytes()
}

fn tag_sep() -> impl Strategy<Value = &'static str> {
    prop::sample::select(vec!["; ", "; ", ";", " ; ", ";;", ";\t"])
}

/// Separators RFC 7489 and RFC 6376 allow (`*WSP ";" *WSP`), for the oracles.
fn clean_sep() -> impl Strategy<Value = &'static str> {
    prop::sample::select(vec!["; ", ";", " ; ", ";\t"])
}

fn dkim_record() -> impl Strategy<Value = Vec<u8>> {
    let tag = prop_oneof![
        (
            "k",
            prop::sample::select(vec!["rsa", "ed25519", "dsa", "", "RSA"])
        )
            .prop_map(|(k, v)| (k.to_string(), v.to_string())),
        dkim_p().prop_map(|p| ("p".to_string(), p)),
        (
            "h",
            prop::sample::select(vec!["sha256", "sha1", "sha1:sha256", "md5", ""])
        )
            .prop_map(|(k, v)| (k.to_string(), v.to_string())),
        ("s", prop::sample::select(vec!["email", "*", "x"]))
            .prop_map(|(k, v)| (k.to_string(), v.to_string())),
        ("t", prop::sample::select(vec!["y", "s", "y:s", "zzz"]))
            .prop_map(|(k, v)| (k.to_string(), v.to_string())),
        ("n", "[ -:<-~]{0,20}").prop_map(|(k, v)| (k.to_string(), v)),
        ("[a-z]{1,3}", "[ -:<-~]{0,10}"),
        ("", "[ -~]{0,10}"),
    ];
    (
        prop::sample::select(vec![
            "v=DKIM1", "v=DKIM1", "v=DKIM1", "", "v=DKIM2", "v=dkim1",
        ]),
        prop::collection::vec(tag, 0..6),
        tag_sep(),
        any::<bool>(),
    )
        .prop_map(|(v, mut pairs, sep, trailing)| {
            if !v.is_empty() {
                pairs.insert(0, (String::new(), v.to_string()));
            }
            tags(pairs, sep, trailing)
        })
}

fn dmarc_record() -> impl Strategy<Value = Vec<u8>> {
    let policy =
        || prop::sample::select(vec!["none", "quarantine", "reject", "bogus", "", "REJECT"]);
    let uri = prop_oneof![
        "mailto:[a-z]{1,6}@[a-z]{1,6}\\.test",
        "mailto:[a-z]{1,6}@[a-z]{1,6}\\.test![0-9]{1,3}[kmg]?",
        Just("http://d.test/r".to_string()),
        Just("mailto:".to_string()),
        "[ -:<-~]{0,12}",
    ];
    let tag = prop_oneof![
        policy().prop_map(|v| ("p".to_string(), v.to_string())),
        policy().prop_map(|v| ("sp".to_string(), v.to_string())),
        policy().prop_map(|v| ("np".to_string(), v.to_string())),
        prop::sample::select(vec!["r", "s", "x", ""])
            .prop_map(|v| ("adkim".to_string(), v.to_string())),
        prop::sample::select(vec!["r", "s", "x", ""])
            .prop_map(|v| ("aspf".to_string(), v.to_string())),
        prop_oneof![
            (0i64..=100).prop_map(|n| n.to_string()),
            any::<i64>().prop_map(|n| n.to_string()),
            "[a-z]{0,3}"
        ]
        .prop_map(|v| ("pct".to_string(), v)),
        prop::collection::vec(uri.clone(), 0..4).prop_map(|u| ("rua".to_string(), u.join(","))),
        prop::collection::vec(uri, 0..3).prop_map(|u| ("ruf".to_string(), u.join(","))),
        prop::sample::select(vec!["0", "1", "d", "s", "0:1:d:s", "x"])
            .prop_map(|v| ("fo".to_string(), v.to_string())),
        prop::sample::select(vec!["afrf", "iodef", "x"])
            .prop_map(|v| ("rf".to_string(), v.to_string())),
        prop_oneof!["[0-9]{1,25}", Just("-1".to_string())].prop_map(|v| ("ri".to_string(), v)),
        ("[a-z]{1,4}", "[ -:<-~]{0,10}"),
    ];
    (
        prop::sample::select(vec![
            "v=DMARC1",
            "v=DMARC1",
            "v=DMARC1",
            "v=DMARC2",
            "v=dmarc1",
            "",
            "v = DMARC1",
        ]),
        prop::collection::vec(tag, 0..7),
        tag_sep(),
        any::<bool>(),
    )
        .prop_map(|(v, mut pairs, sep, trailing)| {
            if !v.is_empty() {
                pairs.insert(0, (String::new(), v.to_string()));
            }
            tags(pairs, sep, trailing)
        })
}

fn provider() -> impl Strategy<Value = Provider> {
    prop::sample::select(vec![
        Provider::Generic,
        Provider::Google,
        Provider::Microsoft365,
    ])
}

/// A zone for `d.test`: SPF records at the domain and the names it may include, DKIM keys
/// at the selectors, DMARC at `_dmarc`, and now and then an MX, an address, a SERVFAIL.
fn audit_zone() -> impl Strategy<Value = Zone> {
    (
        prop::collection::vec(spf_record(), 0..3),
        prop::collection::vec((prop::sample::select(SPF_NAMES), spf_record()), 0..6),
        prop::collection::vec((prop::sample::select(SELECTORS), dkim_record()), 0..3),
        prop::collection::vec(dmarc_record(), 0..3),
        prop::collection::vec((prop::sample::select(SPF_NAMES), 0u8..5), 0..4),
    )
        .prop_map(|(top, more, keys, dmarc, other)| {
            let mut zone = Zone::new();
            for r in top {
                txt(&mut zone, "d.test", r);
            }
            for (name, r) in more {
                txt(&mut zone, name, r);
            }
            for (sel, r) in keys {
                txt(&mut zone, &format!("{sel}._domainkey.d.test"), r);
            }
            for r in dmarc {
                txt(&mut zone, "_dmarc.d.test", r);
            }
            for (name, what) in other {
                let (rtype, answer) = match what {
                    0 => (
                        RType::Mx,
                        Ok(Answer {
                            mx: vec![(10, "mx.d.test.".into())],
                            ..Answer::default()
                        }),
                    ),
                    1 => (
                        RType::Mx,
                        Ok(Answer {
                            mx: vec![(0, ".".into())],
                            ..Answer::default()
                        }),
                    ),
                    2 => (
                        RType::A,
                        Ok(Answer {
                            addrs: vec!["192.0.2.1".parse().unwrap()],
                            ..Answer::default()
                        }),
                    ),
                    3 => (RType::Txt, Err(FailureKind::ServFail)),
                    _ => (RType::Aaaa, Err(FailureKind::Refused)),
                };
                zone.insert((name.to_string(), rtype), answer);
            }
            zone
        })
}

// ---------------------------------------------------------------------------------------
// The state file (the ledger)

/// Moments the daemon could load a ledger at: the clock is ours, the file's numbers not.
const NOWS: &[u64] = &[0, 1, 86_400, 1_700_000_000, 2_000_000_000, 4_000_000_000];

/// Parses `bytes` as a state file and, when that succeeds, does to the ledger what the
/// daemon does after loading it. Asserts bounded time, serialize→parse identity, and
/// that every accessor holds on whatever numbers the file had.
fn ledger_harness(bytes: &[u8]) -> Option<Ledger> {
    timed("parse_ledger", bytes, || {
        let ledger: Ledger = serde_json::from_slice(bytes).ok()?;
        let again = serde_json::to_vec(&ledger).expect("a ledger serializes");
        assert_eq!(
            serde_json::from_slice::<Ledger>(&again).expect("what we wrote parses"),
            ledger
        );
        for &now in NOWS {
            // What the daemon loads: reservations settled at `now`, old sends pruned.
            let mut l = parse_ledger(bytes, now).expect("a decodable ledger loads");
            for (window, unit) in WINDOWS {
                let used = l.used(window, unit, now);
                if unit == Unit::Messages {
                    assert!(used <= l.sends.len() as u64);
                }
            }
            let _ = (l.budget_remaining(u32::MAX, now), l.paused(now));
            let _ = l.used(Window::Day, Unit::Recipients, now);
            l.record(now, 1);
            let _ = l.without_reservation();
        }
        Some(ledger)
    })
}

fn ledger() -> impl Strategy<Value = Ledger> {
    let at = prop_oneof![
        any::<u64>(),
        1_700_000_000u64..1_700_200_000,
        Just(u64::MAX),
        Just(0)
    ];
    (
        prop::collection::vec((at, any::<u32>()), 0..64),
        prop::option::of(any::<u64>()),
        prop::option::of(prop::sample::select(vec![
            PauseReason::Backoff,
            PauseReason::Budget,
        ])),
        any::<u32>(),
        prop::option::of((0u32..=MAX_RESERVATION, any::<u64>(), any::<u32>())),
    )
        .prop_map(
            |(sends, paused_until, pause_reason, strikes, reserved)| Ledger {
                sends: sends
                    .into_iter()
                    .map(|(at, recipients)| Send { at, recipients })
                    .collect::<VecDeque<_>>(),
                paused_until,
                pause_reason,
                strikes,
                reserved: reserved.map(|(count, at, recipients)| Reservation {
                    count,
                    at,
                    recipients,
                }),
            },
        )
}

/// JSON numbers and other values that a hand-edited or damaged state file may hold where
/// a number belongs.
fn json_number() -> impl Strategy<Value = String> {
    // Mostly valid, so that whole files parse often enough to reach the ledger's methods.
    prop_oneof![
        8 => any::<u32>().prop_map(|n| n.to_string()),
        2 => (0u32..16).prop_map(|n| n.to_string()),
        1 => any::<u64>().prop_map(|n| n.to_string()),
        1 => any::<i64>().prop_map(|n| n.to_string()),
        1 => prop::sample::select(vec![
            "0", "-0", "-1", "4294967295", "4294967296", "18446744073709551615",
            "18446744073709551616", "1e3", "1.5", "1e400", "-1e400", "null", "\"5\"", "true",
            "[]", "{}", "0x10", "01",
        ]).prop_map(str::to_string),
    ]
}

fn ledger_json() -> impl Strategy<Value = String> {
    let send =
        (json_number(), json_number(), any::<u8>()).prop_map(|(at, r, shape)| match shape % 16 {
            0 => format!("{{\"at\":{at}}}"),
            1 => format!("{{\"at\":{at},\"recipients\":{r},\"extra\":1}}"),
            2 => format!("{{\"recipients\":{r},\"at\":{at},\"at\":{at}}}"),
            3 => format!("[{at},{r}]"),
            _ => format!("{{\"at\":{at},\"recipients\":{r}}}"),
        });
    (
        prop::collection::vec(send, 0..12),
        prop::option::of(json_number()),
        prop::option::of(prop::sample::select(vec![
            "\"backoff\"",
            "\"budget\"",
            "\"Backoff\"",
            "null",
            "1",
        ])),
        prop::option::of(json_number()),
        prop::option::of((json_number(), json_number(), json_number())),
        any::<bool>(),
    )
        .prop_map(|(sends, paused, reason, strikes, reserved, sends_first)| {
            let mut fields = Vec::new();
            let sends = format!("\"sends\":[{}]", sends.join(","));
            if sends_first {
                fields.push(sends.clone());
            }
            if let Some(p) = paused {
                fields.push(format!("\"paused_until\":{p}"));
            }
            if let Some(r) = reason {
                fields.push(format!("\"pause_reason\":{r}"));
            }
            if let Some(s) = strikes {
                fields.push(format!("\"strikes\":{s}"));
            }
            if let Some((c, at, r)) = reserved {
                fields.push(format!(
                    "\"reserved\":{{\"count\":{c},\"at\":{at},\"recipients\":{r}}}"
                ));
            }
            if !sends_first {
                fields.push(sends);
            }
            format!("{{{}}}", fields.join(","))
        })
}

// ---------------------------------------------------------------------------------------
// Properties: the reply reader

proptest! {
    #![proptest_config(cases(256))]

    #[test]
    fn reply_reader_takes_any_bytes(
        bytes in prop::collection::vec(any::<u8>(), 0..2048),
        capacity in prop_oneof![1usize..16, Just(8192)],
    ) {
        reply_harness(&bytes, capacity);
    }

    #[test]
    fn reply_reader_takes_smtp_like_bytes(
        bytes in prop::collection::vec(
            prop_oneof![
                prop::sample::select(b"0123456789 -\r\n".to_vec()),
                any::<u8>(),
            ],
            0..2048,
        ),
        capacity in 1usize..64,
    ) {
        reply_harness(&bytes, capacity);
    }

    #[test]
    fn reply_lines_read_as_the_rfc_says(lines in wire_lines(), capacity in prop_oneof![1usize..8, Just(8192)]) {
        let run = reply_harness(&wire(&lines), capacity);
        let (replies, end) = expected(&lines);
        let got: Vec<(u16, Vec<String>)> = run.replies.iter().map(|r| (r.code, r.lines.clone())).collect();
        prop_assert_eq!(got, replies);
        let end_kind = match run.end {
            ReadError::LineTooLong => Expect::TooLong,
            ReadError::TooManyLines => Expect::TooMany,
            ReadError::Malformed(_) => Expect::Malformed,
            ReadError::Eof => Expect::Eof,
            ReadError::Io(e) => panic!("i/o error from a slice: {e}"),
        };
        prop_assert_eq!(end_kind, end);
    }

    #[test]
    fn a_well_formed_reply_round_trips(
        code in 200u16..600,
        texts in prop::collection::vec("[^\r\n]{0,40}", 1..=MAX_LINES + 2),
        capacity in prop_oneof![1usize..8, Just(8192)],
    ) {
        let n = texts.len();
        let mut bytes = Vec::new();
        for (i, t) in texts.iter().enumerate() {
            let sep = if i + 1 == n { ' ' } else { '-' };
            bytes.extend(format!("{code}{sep}{t}\r\n").into_bytes());
        }
        let run = reply_harness(&bytes, capacity);
        if n > MAX_LINES {
            prop_assert!(matches!(run.end, ReadError::TooManyLines), "{:?}", run.end);
            prop_assert!(run.replies.is_empty());
        } else {
            prop_assert_eq!(run.replies.len(), 1);
            let reply = &run.replies[0];
            prop_assert_eq!(reply.code, code);
            prop_assert_eq!(&reply.lines, &texts);
            prop_assert!(matches!(run.end, ReadError::Eof));
            let again = reparse(&runtime(), &reply.raw()).expect("raw() parses");
            prop_assert_eq!(&again, reply);
        }
    }

    #[test]
    fn an_overlong_line_is_refused_without_reading_on(
        code in reply_code(),
        extra in 1usize..(3 * MAX_LINE),
        end in prop::sample::select(vec!["", "\r\n", "\n"]),
        capacity in prop_oneof![1usize..64, Just(8192)],
    ) {
        // `code` + a space + the text is one byte too many at `extra` = 1, CRLF excluded.
        let text = "y".repeat(MAX_LINE - code.len() - 1 + extra + 2);
        let bytes = format!("{code} {text}{end}");
        let run = reply_harness(bytes.as_bytes(), capacity);
        prop_assert!(run.replies.is_empty());
        // A short garbage code is refused as soon as the line is whole; a long line never is.
        prop_assert!(matches!(run.end, ReadError::LineTooLong), "{:?}", run.end);
        prop_assert!(run.failed_after <= MAX_LINE + 2, "{}", run.failed_after);
    }
}

// ---------------------------------------------------------------------------------------
// Properties: the config loader

proptest! {
    #![proptest_config(cases(256))]

    #[test]
    fn config_takes_any_text(bytes in prop::collection::vec(any::<u8>(), 0..1024)) {
        config_harness(&String::from_utf8_lossy(&bytes));
    }

    #[test]
    fn config_takes_yaml_like_text(text in "[a-z_:\\-\\[\\]{}&*!|>'\" \n#,.0-9]{0,600}") {
        config_harness(&text);
    }

    #[test]
    fn config_takes_known_keys_with_random_values(doc in config_doc()) {
        config_harness(&document(&doc));
    }

    #[test]
    fn an_inline_secret_is_never_quoted(
        (secret, value) in secret().prop_flat_map(|s| (Just(s.clone()), secret_value(s))),
        key in prop::sample::select(vec!["password", "client_secret", "refresh_token", "token", "access_token"]),
        in_oauth in any::<bool>(),
        style in any::<u8>(),
        tail in prop::sample::select(vec!["", "    port: x\n", "    bogus: 1\n", "  - name: [\n", "\tx\n"]),
    ) {
        let render = |value: String| -> String {
            let mut text = VALID_MAILBOX.to_string();
            if in_oauth {
                text.push_str("    oauth2:\n      grant: client_credentials\n");
                text.push_str(&format!("      {key}: {value}\n"));
            } else {
                text.push_str(&format!("    {key}: {value}\n"));
            }
            text.push_str(tail);
            text
        };
        // Every 16th case: the secret at the end of the file with no newline, and one
        // where an alias elsewhere points at it.
        let text = match style % 16 {
            0 => render(value).trim_end().to_string(),
            1 => format!("{}    name: *s\n", render(format!("&s {value}"))),
            _ => render(value),
        };
        let errors = config_harness(&text);
        prop_assert!(!errors.is_empty(), "an inline {} was accepted:\n{}", key, text);
        let all = errors.join("\n");
        let leaked = leaked_windows(&secret, &all, 8);
        prop_assert!(leaked.is_empty(), "the secret is quoted ({:?}) in:\n{}\nfor:\n{}", leaked, all, text);
    }

}

proptest! {
    // Bounds, not searches, so few cases.
    #![proptest_config(bound_cases(6))]

    #[test]
    fn a_long_key_or_value_is_bounded(n in 1_000usize..1_000_000, at in 0u8..4) {
        // Explicit keys (`? key`) have no 1024-character limit; the values are the ones
        // matched against a list of choices for a "did you mean" suggestion.
        let long = "k".repeat(n);
        let text = match at {
            0 => format!("{VALID_MAILBOX}    ? \"{long}\"\n    : 1\n"),
            1 => VALID_MAILBOX.replace("provider: generic", &format!("provider: {long}")),
            2 => format!("{VALID_MAILBOX}    security: {long}\n    auth_mechanism: {long}\n"),
            _ => format!("? {long}\n: 1\n{VALID_MAILBOX}"),
        };
        prop_assert!(!config_harness(&text).is_empty());
    }

    #[test]
    fn an_alias_bomb_is_bounded(
        width in 2usize..12,
        depth in 2usize..12,
        at in prop::sample::select(vec!["top", "to", "selectors", "name"]),
    ) {
        // Billion laughs: each level lists the one below `width` times. Kept below
        // 50,000 expansions, a fraction of a second each: the corpus replays the two
        // bombs that run into serde-saphyr's limits, which cost seconds in a debug build.
        let mut depth = depth;
        while depth > 2 && width.pow(depth as u32) > 50_000 {
            depth -= 1;
        }
        let mut text = String::from("x-bomb:\n  l0: &l0 [lol]\n");
        for i in 1..depth {
            let refs = vec![format!("*l{}", i - 1); width].join(", ");
            text.push_str(&format!("  l{i}: &l{i} [{refs}]\n"));
        }
        let last = format!("*l{}", depth - 1);
        let text = match at {
            "top" => text,
            "to" => format!("{text}{}", VALID_MAILBOX.replace("[b@d.test]", &last)),
            "selectors" => format!("{text}dns_audit:\n  domains:\n    - domain: d.test\n      dkim_selectors: {last}\n"),
            _ => format!("{text}{}", VALID_MAILBOX.replace("name: fuzz", &format!("name: {last}"))),
        };
        let errors = config_harness(&text);
        prop_assert!(!errors.is_empty());
    }
}

// ---------------------------------------------------------------------------------------
// Properties: the web config

proptest! {
    #![proptest_config(cases(256))]

    #[test]
    fn web_config_takes_any_text(bytes in prop::collection::vec(any::<u8>(), 0..1024)) {
        web_harness(&String::from_utf8_lossy(&bytes));
    }

    #[test]
    fn web_config_takes_known_keys_with_random_values(
        tls in prop::option::of(prop::collection::vec(
            (prop::sample::select(WEB_TLS_KEYS), prop_oneof![prop::sample::select(WEB_VALUES).prop_map(str::to_string), scalar()]),
            0..6,
        )),
        users in prop::option::of(prop::collection::vec(("[a-z:]{0,6}", prop_oneof![bcrypt_hash(), scalar()]), 0..4)),
        extra in prop::option::of(prop::sample::select(vec!["http_server_config:\n  http2: true\n", "basic_auth_users: x\n", "tls_server_config: []\n", "- x\n"])),
    ) {
        let mut text = String::new();
        if let Some(tls) = tls {
            text.push_str("tls_server_config:\n");
            for (k, v) in tls {
                // Paths stay relative to a directory that does not exist.
                let v = if k.ends_with("_file") && v.starts_with('/') && !v.starts_with("/nonexistent/") {
                    v.trim_start_matches('/').to_string()
                } else {
                    v
                };
                text.push_str(&format!("  {k}: {v}\n"));
            }
        }
        if let Some(users) = users {
            text.push_str("basic_auth_users:\n");
            for (u, h) in users {
                text.push_str(&format!("  {u}: {h}\n"));
            }
        }
        if let Some(extra) = extra {
            text.push_str(extra);
        }
        web_harness(&text);
    }

    #[test]
    fn a_hash_or_password_is_never_quoted(
        hash in bcrypt_hash(),
        password in secret(),
        cleartext in any::<bool>(),
        form in 0u8..12,
        pre in prop::sample::select(vec!["", "", "'", "\"", "*", "!", "!!int ", "[", "{k: ", "\"\\", "`"]),
        post in prop::sample::select(vec!["", "", "'", "\"", ": x", "]", "}", "\\q", "\n bad"]),
        more in prop::sample::select(vec!["", "tls_server_config:\n  cert_file: a.crt\n", "unknown: 1\n"]),
    ) {
        let value = if cleartext { password.clone() } else { hash.clone() };
        let v = format!("{pre}{value}{post}");
        let text = match form {
            0 => format!("basic_auth_users:\n  prom: {v}\n"),
            1 => format!("basic_auth_users:\n  prom:{v}\n"),
            2 => format!("basic_auth_users: prom:{v}\n"),
            3 => format!("basic_auth_users: [prom, {v}]\n"),
            4 => format!("basic_auth_users:\n  prom: [{v}]\n"),
            5 => format!("basic_auth_users:\n  prom:\n    hash: {v}\n"),
            6 => format!("basic_auth_users:\n  - prom: {v}\n"),
            7 => format!("basic_auth_users:\n  prom: !!binary {v}\n"),
            8 => format!("basic_auth_users:\n  \"prom\": {v}\n  \"prom\": {v}\n"),
            9 => format!("basic_auth_users:\n  prom: &h {v}\n  other: *h\ntls_server_config: *h\n"),
            10 => format!("basic_auth_users:\n  prom: {v}\ntls_server_config:\n  cert_file: {v}\n"),
            _ => format!("basic_auth_user:\n  prom: {v}\n"),
        };
        // Form 10 names the value as a file path too, and a path is quoted by design.
        if form == 10 {
            web_harness(&format!("{more}{text}"));
            return Ok(());
        }
        let Some(message) = web_harness(&format!("{more}{text}")) else {
            // Only a real hash under a user is accepted.
            prop_assert!(!cleartext, "a clear-text password was accepted:\n{}", text);
            return Ok(());
        };
        // The user-visible part of a hash is everything after `$2y$10$`; its first 22
        // characters are the salt.
        let body = if cleartext { password.clone() } else { hash.rsplit('$').next().unwrap_or("").to_string() };
        let leaked = leaked_windows(&body, &message, 10);
        prop_assert!(leaked.is_empty(), "quoted ({:?}) in {}\nfor:\n{}", leaked, message, text);
    }
}

// ---------------------------------------------------------------------------------------
// Properties: the DNS audit

proptest! {
    #![proptest_config(cases(256))]

    #[test]
    fn audit_takes_any_record_bytes(
        spf in prop::collection::vec(any::<u8>(), 0..512),
        dkim in prop::collection::vec(any::<u8>(), 0..512),
        dmarc in prop::collection::vec(any::<u8>(), 0..512),
        prefixed in any::<bool>(),
    ) {
        let mut zone = Zone::new();
        let with = |p: &[u8], b: Vec<u8>| if prefixed { [p, &b].concat() } else { b };
        txt(&mut zone, "d.test", with(b"v=spf1 ", spf));
        txt(&mut zone, "sel._domainkey.d.test", with(b"v=DKIM1; p=", dkim));
        txt(&mut zone, "_dmarc.d.test", with(b"v=DMARC1; p=", dmarc));
        audit_harness(zone, "d.test", Provider::Generic);
    }

    #[test]
    fn audit_takes_records_from_known_tags(
        zone in audit_zone(),
        domain in prop::sample::select(DOMAINS),
        provider in provider(),
    ) {
        audit_harness(zone, domain, provider);
    }

    #[test]
    fn spf_lookups_are_counted_as_rfc_7208_counts_them(
        edges in prop::collection::vec(prop::collection::vec(0usize..8, 0..4), 8),
        top in prop::collection::vec(0usize..8, 0..4),
        // Each at most once: a second exp= (or redirect=) makes the record invalid.
        extra in prop::sample::subsequence(vec!["ip4:192.0.2.1", "ip6:2001:db8::/32", "-all", "~all", "exp=x.d.test"], 0..=3),
    ) {
        // A loop-free include tree: i<k> includes only i<j> with j > k. Every include is
        // one lookup, and an include reached twice is evaluated (and counted) twice.
        let name = |i: usize| format!("i{i}.d.test");
        let kids = |k: usize| -> Vec<usize> { edges[k].iter().copied().filter(|&j| j > k).collect() };
        let record = |targets: &[usize]| -> Vec<u8> {
            let mut s = String::from("v=spf1");
            for &t in targets {
                s.push_str(&format!(" include:{}", name(t)));
            }
            for e in &extra {
                s.push(' ');
                s.push_str(e);
            }
            s.into_bytes()
        };
        fn count(k: usize, kids: &dyn Fn(usize) -> Vec<usize>) -> u64 {
            kids(k).iter().map(|&j| 1 + count(j, kids)).sum()
        }
        let mut zone = Zone::new();
        txt(&mut zone, "d.test", record(&top));
        for k in 0..8 {
            txt(&mut zone, &name(k), record(&kids(k)));
        }
        let want: u64 = top.iter().map(|&j| 1 + count(j, &kids)).sum();
        let r = audit_harness(zone, "d.test", Provider::Generic);
        let spf = r.spf.as_ref().expect("an SPF report");
        let too_many = r.findings().any(|f| f.check.id() == "spf.too_many_lookups");
        if want <= u64::from(LOOKUP_LIMIT) {
            prop_assert_eq!(u64::from(spf.lookups), want);
            prop_assert!(!too_many && !spf.truncated);
        } else {
            prop_assert!(too_many, "{} lookups and no finding: {:?}", want, spf);
            prop_assert!(spf.truncated || u64::from(spf.lookups) == want);
        }
    }

    #[test]
    fn dkim_rsa_bits_are_the_modulus_bits(
        bits in 64usize..=4096,
        noise in prop::collection::vec(any::<u8>(), 1..64),
        extra in prop::collection::vec(prop::sample::select(vec!["h=sha256", "s=email", "t=s", "n=a note"]), 0..3),
    ) {
        let p = B64.encode(rsa_spki(&modulus(bits, &noise)));
        let mut record = format!("v=DKIM1; k=rsa; p={p}");
        for e in &extra {
            record.push_str("; ");
            record.push_str(e);
        }
        let mut zone = Zone::new();
        txt(&mut zone, "sel._domainkey.d.test", record.into_bytes());
        let r = audit_harness(zone, "d.test", Provider::Generic);
        let key = r.dkim.iter().find(|k| k.selector == "sel").expect("a report for sel");
        prop_assert_eq!(key.key_type, Some("rsa"));
        prop_assert_eq!(key.bits, Some(bits as u32));
        let weak: Vec<_> = r.findings().filter(|f| f.check.id() == "dkim.weak_key").collect();
        prop_assert_eq!(weak.len(), usize::from((bits as u32) < WEAK_RSA_BITS));
        if let Some(f) = weak.first() {
            let error = (bits as u32) < MIN_RSA_BITS;
            prop_assert_eq!(f.severity == audit::Severity::Error, error);
        }
    }

    #[test]
    fn a_well_formed_dmarc_record_reads_back(
        p in prop::sample::select(vec!["none", "quarantine", "reject"]),
        sp in prop::option::of(prop::sample::select(vec!["none", "quarantine", "reject"])),
        adkim in prop::option::of(prop::sample::select(vec!["r", "s"])),
        aspf in prop::option::of(prop::sample::select(vec!["r", "s"])),
        rua in prop::collection::vec("[a-z]{1,8}@[a-z]{1,8}\\.test", 0..3),
        sep in clean_sep(),
        inherited in any::<bool>(),
    ) {
        let mut pairs = vec![(String::new(), "v=DMARC1".to_string()), ("p".into(), p.to_string())];
        let mut optional = Vec::new();
        if let Some(sp) = sp { optional.push(("sp".to_string(), sp.to_string())); }
        if let Some(a) = adkim { optional.push(("adkim".to_string(), a.to_string())); }
        if let Some(a) = aspf { optional.push(("aspf".to_string(), a.to_string())); }
        if !rua.is_empty() {
            optional.push(("rua".to_string(), rua.iter().map(|a| format!("mailto:{a}")).collect::<Vec<_>>().join(",")));
        }
        pairs.extend(optional);
        let mut zone = Zone::new();
        txt(&mut zone, "_dmarc.d.test", tags(pairs, sep, false));
        let domain = if inherited { "sub.d.test" } else { "d.test" };
        let r = audit_harness(zone, domain, Provider::Generic);
        let d = r.dmarc.as_ref().expect("a DMARC report");
        prop_assert_eq!(d.p, Some(p));
        prop_assert_eq!(d.adkim, Some(adkim.unwrap_or("r")));
        prop_assert_eq!(d.aspf, Some(aspf.unwrap_or("r")));
        prop_assert_eq!(d.rua.len(), rua.len());
        if !inherited {
            prop_assert_eq!(d.policy, Some(p));
        } else if let Some(sp) = sp {
            prop_assert_eq!(d.policy, Some(sp));
        }
        prop_assert!(!r.findings().any(|f| f.check.id() == "dmarc.syntax"));
    }
}

// ---------------------------------------------------------------------------------------
// Properties: the state file

proptest! {
    #![proptest_config(cases(512))]

    #[test]
    fn ledger_takes_any_bytes(bytes in prop::collection::vec(any::<u8>(), 0..512)) {
        ledger_harness(&bytes);
    }

    #[test]
    fn ledger_takes_json_with_random_numbers(json in ledger_json()) {
        ledger_harness(json.as_bytes());
    }

    #[test]
    fn a_ledger_round_trips(l in ledger()) {
        let bytes = serde_json::to_vec(&l).unwrap();
        prop_assert_eq!(ledger_harness(&bytes), Some(l));
    }

    #[test]
    fn a_reservation_read_from_a_file_is_bounded(count in any::<u32>(), at in any::<u64>()) {
        let json = format!("{{\"sends\":[],\"reserved\":{{\"count\":{count},\"at\":{at},\"recipients\":1}}}}");
        let parsed = ledger_harness(json.as_bytes());
        prop_assert_eq!(parsed.is_some(), count <= MAX_RESERVATION);
    }

}

proptest! {
    // Each case is up to 20,000 sends: a bound, not a search, so few cases.
    #![proptest_config(bound_cases(8))]

    #[test]
    fn a_long_ledger_is_bounded(n in 0usize..20_000, at in any::<u64>()) {
        let sends = vec![format!("{{\"at\":{at},\"recipients\":1}}"); n].join(",");
        let json = format!("{{\"sends\":[{sends}],\"strikes\":0}}");
        prop_assert_eq!(ledger_harness(json.as_bytes()).map(|l| l.sends.len()), Some(n));
    }
}

// ---------------------------------------------------------------------------------------
// The corpus

fn corpus_dir(target: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/fuzz_corpus")
        .join(target)
}

/// Every file of one target's corpus, sorted, with its bytes; only those whose name
/// contains `FUZZ_CORPUS_ONLY` when that is set (to replay one file while debugging it).
fn corpus(target: &str) -> Vec<(String, Vec<u8>)> {
    let only = std::env::var("FUZZ_CORPUS_ONLY").unwrap_or_default();
    let dir = corpus_dir(target);
    let mut files: Vec<(String, Vec<u8>)> = std::fs::read_dir(&dir)
        .unwrap_or_else(|e| panic!("{}: {e}", dir.display()))
        .map(|e| e.unwrap().path())
        .filter(|p| p.is_file())
        .map(|p| {
            let name = p.file_name().unwrap().to_string_lossy().into_owned();
            (name, std::fs::read(&p).unwrap())
        })
        .filter(|(name, _)| name.contains(&only))
        .collect();
    files.sort();
    files
}

/// Replays one target's corpus through `run`, reporting every file that fails (not only
/// the first) by name. With `FUZZ_SHOW` set, prints what each file gave (run with
/// `--nocapture`): how to see what a new corpus file exercises.
fn replay(target: &str, min_files: usize, run: impl Fn(&[u8]) -> String) {
    let files = corpus(target);
    let show = std::env::var_os("FUZZ_SHOW").is_some();
    let failed: Vec<String> = files
        .iter()
        .filter_map(|(name, bytes)| {
            match std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| run(bytes))) {
                Ok(shown) => {
                    if show {
                        println!("=== {target}/{name}\n{shown}");
                    }
                    None
                }
                Err(e) => {
                    let why = e
                        .downcast_ref::<String>()
                        .cloned()
                        .or_else(|| e.downcast_ref::<&str>().map(|s| s.to_string()))
                        .unwrap_or_default();
                    Some(format!("{target}/{name}: {why}"))
                }
            }
        })
        .collect();
    assert!(
        failed.is_empty(),
        "corpus files failed:\n{}",
        failed.join("\n")
    );
    assert!(
        files.len() >= min_files || std::env::var_os("FUZZ_CORPUS_ONLY").is_some(),
        "{target}: {} corpus files, expected at least {min_files}",
        files.len()
    );
}

/// Files per target the corpus must keep (a few dozen each).
const MIN_CORPUS: usize = 24;

#[test]
fn corpus_reply() {
    replay("reply", MIN_CORPUS, |bytes| {
        let runs: Vec<ReplyRun> = [1, 7, 8192]
            .into_iter()
            .map(|capacity| reply_harness(bytes, capacity))
            .collect();
        // How the input is split across reads must not change what it reads as.
        assert!(runs.windows(2).all(|w| w[0].replies == w[1].replies));
        format!("{:?}", runs[2])
    });
}

#[test]
fn corpus_config() {
    replay("config", MIN_CORPUS, |bytes| {
        let errors = config_harness(&String::from_utf8_lossy(bytes));
        if errors.is_empty() {
            "accepted".to_string()
        } else {
            errors.join("\n")
        }
    });
}

#[test]
fn corpus_web_config() {
    replay("web_config", MIN_CORPUS, |bytes| {
        web_harness(&String::from_utf8_lossy(bytes)).unwrap_or_else(|| "accepted".to_string())
    });
}

/// A whole zone (spf corpus), or one record at `name` (dkim and dmarc corpora).
fn audit_file(bytes: &[u8], name: &str) -> Zone {
    if bytes.starts_with(b"zone\n") {
        return parse_zone(bytes);
    }
    let mut zone = Zone::new();
    let record = bytes.strip_suffix(b"\n").unwrap_or(bytes);
    txt(&mut zone, name, record.to_vec());
    zone
}

#[test]
fn corpus_spf() {
    replay("spf", MIN_CORPUS, |bytes| {
        [Provider::Generic, Provider::Microsoft365]
            .into_iter()
            .map(|p| audit_harness(audit_file(bytes, "d.test"), "d.test", p).render_text(false))
            .collect()
    });
}

#[test]
fn corpus_dkim() {
    replay("dkim", MIN_CORPUS, |bytes| {
        // Microsoft 365 adds its selector pair (selector1, selector2) to `sel` and `s2`.
        [Provider::Generic, Provider::Microsoft365]
            .into_iter()
            .map(|p| {
                audit_harness(audit_file(bytes, "sel._domainkey.d.test"), "d.test", p)
                    .render_text(false)
            })
            .collect()
    });
}

#[test]
fn corpus_dmarc() {
    replay("dmarc", MIN_CORPUS, |bytes| {
        DOMAINS
            .iter()
            .map(|d| {
                audit_harness(audit_file(bytes, "_dmarc.d.test"), d, Provider::Generic)
                    .render_text(false)
            })
            .collect()
    });
}

#[test]
fn corpus_ledger() {
    replay("ledger", MIN_CORPUS, |bytes| {
        format!("{:?}", ledger_harness(bytes))
    });
}
