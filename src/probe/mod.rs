//! The timed SMTP session: one probe of one mailbox, phase by phase, with a deadline on
//! every network wait, and the redacted transcript of the dialogue.
//!
//! [`Prober`] holds what is built once per process (resolver, TLS configs); a
//! [`Template`] holds what is built once per mailbox; [`Prober::probe`] runs one session
//! and returns a [`ProbeResult`], which is the uniform result every caller consumes.

mod message;
mod phase;
mod reply;
mod resolve;
mod result;
mod session;
mod tls;
mod transcript;

pub use message::{MessageError, Template, dot_stuff};
pub use phase::Phase;
pub use reply::{Enhanced, MAX_LINE, MAX_LINES, ReadError, Reply, read_reply};
pub use resolve::{ResolveError, Resolver, parse_dns_server};
pub use result::{Failure, ProbeResult, rfc3339, secs, unix};
pub use session::{Prober, ProberOptions, SendHook, new_probe_id};
pub use tls::{TlsInfo, TlsSetupError, TlsTrust, provider};
pub use transcript::{Direction, Entry, Transcript};
