//! The timed SMTP session: one probe of one mailbox, phase by phase, with a deadline on
//! every network wait, and the redacted transcript of the dialogue.
//!
//! [`Prober`] holds what is built once per process (resolver, TLS configs); a
//! [`Template`] holds what is built once per mailbox; [`Prober::probe`] runs one session
//! and returns a [`ProbeResult`], which is the uniform result every caller consumes.

mod message;
mod result;
mod session;
mod transcript;

pub use message::{MessageError, Template, dot_stuff};
pub use result::{Failure, ProbeResult};
pub use session::{Prober, ProberOptions, SendHook, new_probe_id};
pub use transcript::{Direction, Entry, Transcript};

// The vocabulary the prober speaks, re-exported where its users have always found it.
pub use crate::resolve::{ResolveError, Resolver, parse_dns_server};
pub use crate::smtp::{Enhanced, MAX_LINE, MAX_LINES, Phase, ReadError, Reply, read_reply};
pub use crate::tls::{TlsInfo, TlsSetupError, TlsTrust, provider};
pub use crate::util::{rfc3339, secs, unix};
