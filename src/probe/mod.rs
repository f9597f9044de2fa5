//! The timed SMTP session: one probe of one mailbox, phase by phase, with a deadline on
//! every network wait, and the redacted transcript of the dialogue.

mod phase;
mod reply;

pub use phase::Phase;
pub use reply::{Enhanced, MAX_LINE, MAX_LINES, ReadError, Reply, read_reply};
