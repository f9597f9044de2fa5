//! Transport: plain or TLS streams, and line reading with bounds and deadlines.

use super::*;

pub(super) enum Stream {
    Plain(TcpStream),
    Tls(Box<TlsStream<TcpStream>>),
    /// Only while the TCP stream is being moved into a TLS handshake.
    Gone,
}

impl Stream {
    pub(super) fn tcp(&self) -> Option<&TcpStream> {
        match self {
            Stream::Plain(s) => Some(s),
            Stream::Tls(s) => Some(s.get_ref().0),
            Stream::Gone => None,
        }
    }
}

impl AsyncRead for Stream {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        match self.get_mut() {
            Stream::Plain(s) => Pin::new(s).poll_read(cx, buf),
            Stream::Tls(s) => Pin::new(s.as_mut()).poll_read(cx, buf),
            Stream::Gone => Poll::Ready(Ok(())),
        }
    }
}

impl AsyncWrite for Stream {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        match self.get_mut() {
            Stream::Plain(s) => Pin::new(s).poll_write(cx, buf),
            Stream::Tls(s) => Pin::new(s.as_mut()).poll_write(cx, buf),
            Stream::Gone => Poll::Ready(Err(io::ErrorKind::NotConnected.into())),
        }
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        match self.get_mut() {
            Stream::Plain(s) => Pin::new(s).poll_flush(cx),
            Stream::Tls(s) => Pin::new(s.as_mut()).poll_flush(cx),
            Stream::Gone => Poll::Ready(Ok(())),
        }
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        match self.get_mut() {
            Stream::Plain(s) => Pin::new(s).poll_shutdown(cx),
            Stream::Tls(s) => Pin::new(s.as_mut()).poll_shutdown(cx),
            Stream::Gone => Poll::Ready(Ok(())),
        }
    }
}

pub(super) enum Line {
    Data(Vec<u8>),
    TooLong,
    Eof,
}

/// Why a session ended; only used to choose a debug log line.
#[derive(Debug)]
pub(super) enum End {
    Quit,
    Eof,
    Scripted,
    Tls,
    Io(io::Error),
}

impl From<io::Error> for End {
    fn from(e: io::Error) -> End {
        End::Io(e)
    }
}

pub(super) fn timed_out() -> io::Error {
    io::Error::new(io::ErrorKind::TimedOut, "client idle timeout")
}

/// The socket plus our own read buffer, which is what keeps every read bounded.
pub(super) struct Io {
    pub(super) stream: Stream,
    pub(super) buf: Vec<u8>,
    pub(super) idle: Duration,
}

impl Io {
    pub(super) async fn fill(&mut self, deadline: bool) -> io::Result<usize> {
        let mut chunk = [0u8; 8192];
        let n = if deadline {
            tokio::time::timeout(self.idle, self.stream.read(&mut chunk))
                .await
                .map_err(|_| timed_out())??
        } else {
            self.stream.read(&mut chunk).await?
        };
        self.buf.extend_from_slice(&chunk[..n]);
        Ok(n)
    }

    /// One line including its `\n`. A line longer than `limit` is consumed and discarded
    /// as it streams in, so the buffer never holds much more than `limit` bytes.
    pub(super) async fn read_line(&mut self, limit: usize) -> io::Result<Line> {
        let mut discarding = false;
        loop {
            if let Some(pos) = self.buf.iter().position(|&b| b == b'\n') {
                let line: Vec<u8> = self.buf.drain(..=pos).collect();
                if discarding || line.len() > limit {
                    return Ok(Line::TooLong);
                }
                return Ok(Line::Data(line));
            }
            if self.buf.len() > limit {
                discarding = true;
                self.buf.clear();
            }
            if self.fill(true).await? == 0 {
                return Ok(Line::Eof);
            }
        }
    }

    pub(super) async fn write(&mut self, bytes: &[u8]) -> io::Result<()> {
        tokio::time::timeout(self.idle, async {
            self.stream.write_all(bytes).await?;
            self.stream.flush().await
        })
        .await
        .map_err(|_| timed_out())?
    }
}

pub(super) fn trim_line_end(line: &[u8]) -> &[u8] {
    let line = line.strip_suffix(b"\n").unwrap_or(line);
    line.strip_suffix(b"\r").unwrap_or(line)
}

pub(super) fn is_positive(first: Option<u8>) -> bool {
    matches!(first, Some(b'2' | b'3'))
}

pub(super) fn tls_version_name(v: rustls::ProtocolVersion) -> String {
    match v {
        rustls::ProtocolVersion::TLSv1_2 => "TLSv1.2".into(),
        rustls::ProtocolVersion::TLSv1_3 => "TLSv1.3".into(),
        other => format!("{other:?}"),
    }
}

/// Parses `FROM:<addr> params` / `TO:<addr> params` (keyword matched case-insensitively).
pub(super) fn parse_path<'a>(args: &'a str, keyword: &str) -> Option<(&'a str, &'a str)> {
    let head = args.get(..keyword.len())?;
    if !head.eq_ignore_ascii_case(keyword) {
        return None;
    }
    let rest = args.get(keyword.len()..)?.trim_start();
    let rest = rest.strip_prefix('<')?;
    let end = rest.find('>')?;
    Some((&rest[..end], rest[end + 1..].trim()))
}

pub(super) fn decode_b64(text: &str) -> Option<Vec<u8>> {
    let text = text.trim();
    STANDARD
        .decode(text)
        .or_else(|_| STANDARD_NO_PAD.decode(text))
        .ok()
}

/// The `Message-ID` header's value, looked for only in the header section.
pub(super) fn message_id_header(data: &[u8]) -> Option<String> {
    let head = &data[..data.len().min(64 * 1024)];
    for raw in head.split(|&b| b == b'\n') {
        let line = trim_line_end(raw);
        if line.is_empty() {
            break;
        }
        let text = String::from_utf8_lossy(line);
        if let Some((name, value)) = text.split_once(':')
            && name.trim().eq_ignore_ascii_case("message-id")
        {
            let value = value.trim();
            if !value.is_empty() {
                return Some(value.to_owned());
            }
        }
    }
    None
}
