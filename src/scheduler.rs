//! One task per mailbox: jittered schedule, never overlapping, skips counted.
