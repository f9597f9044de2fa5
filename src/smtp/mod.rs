//! The SMTP vocabulary, apart from any driver (as lettre keeps `transport/smtp`'s
//! response types apart from its client): replies and enhanced status codes, read from
//! the wire with hard bounds, and the phases of a submission session. Classification
//! and the prober both speak it; it depends on nothing else in the crate.

mod phase;
mod reply;

pub use phase::Phase;
pub use reply::{Enhanced, MAX_LINE, MAX_LINES, ReadError, Reply, read_reply};
