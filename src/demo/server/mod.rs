//! A scriptable, recording ESMTP submission server that runs inside the process.
//!
//! It owns the wire side of both users of this module: the demo relay (which only changes
//! reply texts, the credential check and a few scripted stages) and the integration tests,
//! which need replies and misbehaviour no real server can be made to produce on demand.
//!
//! Left alone, [`SmtpServer`] is a well-behaved submission server: greeting, EHLO with
//! the usual extensions, STARTTLS or implicit TLS, AUTH PLAIN / LOGIN / XOAUTH2, MAIL,
//! RCPT, DATA with dot-unstuffing and a size bound, RSET, NOOP and QUIT.
//!
//! A [`Script`] overrides what happens at a [`Stage`]: reply with other text, wait first,
//! close, reset, go silent, send raw bytes or trickle the reply. Whether the session then
//! moves on is decided by the reply actually sent: a reply starting with `2` or `3`
//! counts as success (a scripted `250` to MAIL opens the transaction, a scripted `535` to
//! AUTH leaves the client unauthenticated), so scripts never need to know the state
//! machine.
//!
//! Everything the client sent is recorded per connection ([`ServerHandle::sessions`]),
//! including raw SASL payload lines, so tests can assert what crossed the wire. Those
//! records are for tests only: nothing here passes a command line or a payload to
//! `tracing`, because they may hold passwords and tokens.

use std::collections::{HashMap, VecDeque};
use std::fmt;
use std::io;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::task::{Context, Poll};
use std::time::Duration;

use base64::Engine as _;
use base64::engine::general_purpose::{STANDARD, STANDARD_NO_PAD};
use rand::Rng as _;
use rustls::ServerConfig;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt, ReadBuf};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::oneshot;
use tokio::task::{JoinHandle, JoinSet};
use tokio_rustls::TlsAcceptor;
use tokio_rustls::server::TlsStream;

/// Longest command line accepted. RFC 5321 says 512 octets, but an XOAUTH2 initial
/// response carries a JWT that is routinely 2-4 KiB once base64 encoded.
pub const MAX_COMMAND_LINE: usize = 16 * 1024;
/// Default bound on one message's DATA, also advertised as `SIZE`.
pub const DEFAULT_MAX_MESSAGE_SIZE: usize = 10 * 1024 * 1024;
/// Base64 of Google's JSON error for a rejected XOAUTH2 token.
const XOAUTH2_CHALLENGE: &str = "eyJzdGF0dXMiOiI0MDAiLCJzY2hlbWVzIjoiQmVhcmVyIiwic2NvcGUiOiJodHRwczovL21haWwuZ29vZ2xlLmNvbS8ifQ==";

mod builder;
mod record;
mod script;
mod session;
mod texts;
mod transport;

pub use builder::*;
pub use record::*;
pub use script::*;
use session::*;
pub use texts::*;
use transport::*;
