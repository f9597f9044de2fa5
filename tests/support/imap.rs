//! A hostile IMAP server on loopback (plain text, for `security: none` sinks): it
//! speaks just enough IMAP for a sink reader to log in, list, select and fetch, and then
//! misbehaves in one [`ImapMode`]. What a real server cannot be made to do lives here.

use std::io::{BufRead, BufReader, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};

/// How the server misbehaves.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ImapMode {
    /// Refuses LOGIN, quoting the whole command line back (password included).
    EchoLogin,
    /// Answers the header fetch with a 1 GB literal announcement.
    HugeLiteral,
    /// Answers the header fetch with an endless untagged line (no literal).
    Flood,
    /// Sends garbage instead of a greeting.
    GarbageGreeting,
}

pub struct ImapServer {
    pub addr: SocketAddr,
    pub connections: Arc<AtomicUsize>,
}

impl ImapServer {
    pub fn start(mode: ImapMode) -> ImapServer {
        let listener = TcpListener::bind("127.0.0.1:0").expect("bind");
        let addr = listener.local_addr().expect("addr");
        let connections = Arc::new(AtomicUsize::new(0));
        let count = connections.clone();
        std::thread::spawn(move || {
            for stream in listener.incoming().flatten() {
                count.fetch_add(1, Ordering::SeqCst);
                std::thread::spawn(move || {
                    let _ = serve(stream, mode);
                });
            }
        });
        ImapServer { addr, connections }
    }
}

fn serve(stream: TcpStream, mode: ImapMode) -> std::io::Result<()> {
    let mut out = stream.try_clone()?;
    if mode == ImapMode::GarbageGreeting {
        out.write_all(b"\x00\x01garbage that is not IMAP \xff\xfe\r\n")?;
        return Ok(());
    }
    out.write_all(b"* OK [CAPABILITY IMAP4rev1] hostile test server ready\r\n")?;
    let mut lines = BufReader::new(stream);
    let mut line = String::new();
    loop {
        line.clear();
        if lines.read_line(&mut line)? == 0 {
            return Ok(());
        }
        let mut words = line.split_whitespace();
        let tag = words.next().unwrap_or("*").to_owned();
        let verb = words.next().unwrap_or("").to_ascii_uppercase();
        let reply: Vec<u8> = match (verb.as_str(), mode) {
            ("LOGIN", ImapMode::EchoLogin) => format!(
                "{tag} NO [AUTHENTICATIONFAILED] rejected: {}\r\n",
                line.trim_end()
            )
            .into_bytes(),
            ("LOGIN", _) => format!("{tag} OK logged in\r\n").into_bytes(),
            ("CAPABILITY", _) => {
                format!("* CAPABILITY IMAP4rev1 UIDPLUS\r\n{tag} OK done\r\n").into_bytes()
            }
            ("LIST", _) => format!(
                "* LIST () \"/\" INBOX\r\n* LIST (\\Junk) \"/\" Junk\r\n{tag} OK done\r\n"
            )
            .into_bytes(),
            ("SELECT", _) => format!(
                "* 1 EXISTS\r\n* OK [UIDVALIDITY 7] ok\r\n* OK [UIDNEXT 2] ok\r\n{tag} OK [READ-WRITE] selected\r\n"
            )
            .into_bytes(),
            ("UID", _) if line.to_ascii_uppercase().contains("SEARCH") => {
                format!("* SEARCH 1\r\n{tag} OK done\r\n").into_bytes()
            }
            ("UID", ImapMode::HugeLiteral) => {
                b"* 1 FETCH (UID 1 BODY[HEADER] {1000000000}\r\n".to_vec()
            }
            ("UID", ImapMode::Flood) => {
                out.write_all(b"* OK ")?;
                let chunk = vec![b'a'; 64 * 1024];
                // 64 MiB without a line end, or until the client hangs up.
                for _ in 0..1024 {
                    out.write_all(&chunk)?;
                }
                return Ok(());
            }
            ("LOGOUT", _) => format!("* BYE\r\n{tag} OK bye\r\n").into_bytes(),
            _ => format!("{tag} OK done\r\n").into_bytes(),
        };
        out.write_all(&reply)?;
    }
}
