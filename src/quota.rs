//! Quota and budget: the canary's own sends per mailbox in rolling one-minute and one-day
//! windows, the provider's limits they count against, the canary's daily budget, and the
//! back-off after throttling or quota replies.
//!
//! The numbers here are the canary's own use, never the mailbox's total traffic: the
//! point is that the canary must not be what pushes a mailbox over its limits. The
//! arithmetic that decides a config's budget and shares lives with the config
//! (`config::budget`), which validation needs before anything runs.

use std::collections::VecDeque;
use std::time::Duration;

use serde::{Deserialize, Serialize};

use crate::classify::Class;
use crate::config::Limits;

pub const MINUTE: u64 = 60;
pub const DAY: u64 = 86_400;

/// Longest back-off after repeated throttling, and after a spent quota.
const THROTTLE_BACKOFF_CAP: Duration = Duration::from_secs(3600);
const QUOTA_BACKOFF_CAP: Duration = Duration::from_secs(6 * 3600);

/// Replies that mean "stop for hours", not "slow down": Exchange Online throttles a sender
/// after continuous errors and the block cannot be lifted early. The pause is what
/// Microsoft documents as the usual block (hours); probing sooner only extends it.
static LONG_PAUSES: &[(&str, Duration)] = &[
    ("5.2.251", Duration::from_secs(6 * 3600)),
    ("5.2.252", Duration::from_secs(6 * 3600)),
    ("5.2.253", Duration::from_secs(6 * 3600)),
    ("5.2.254", Duration::from_secs(6 * 3600)),
    ("5.2.255", Duration::from_secs(6 * 3600)),
];

/// One recorded canary send.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct Send {
    /// Unix seconds.
    pub at: u64,
    pub recipients: u32,
}

/// The durable per-mailbox record: sends of the last day and any pause in force.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Ledger {
    pub sends: VecDeque<Send>,
    /// No probe before this Unix second (back-off, long pause, or a corrupt state file
    /// treated as a spent budget).
    #[serde(default)]
    pub paused_until: Option<u64>,
    /// Why `paused_until` is set (`backoff`, or `budget` for a corrupt state file).
    #[serde(default)]
    pub pause_reason: Option<PauseReason>,
    /// Consecutive throttled/quota results (drives the exponential back-off).
    #[serde(default)]
    pub strikes: u32,
    /// Sends already accounted for on disk beyond `sends` (see [`Ledger::record_send`]).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reserved: Option<Reservation>,
}

/// Future sends written to disk ahead of time. Writing every send durably costs an fsync
/// and a new inode per probe, which dominates at 10,000 mailboxes; instead one write
/// covers the next few sends. After a crash they count as sent at `at`: the canary may
/// lose a few probes of that day's budget, but never sends more than it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct Reservation {
    /// At most [`MAX_RESERVATION`], also when read from a file: a larger count is no file
    /// this daemon wrote, and settling it would push that many sends into memory (a
    /// 70-byte state file asked for 64 GiB; found by tests/fuzz.rs).
    #[serde(deserialize_with = "reservation_count")]
    pub count: u32,
    pub at: u64,
    pub recipients: u32,
}

/// The most sends one reservation covers; a state file that claims more is corrupt.
pub const MAX_RESERVATION: u32 = 8;

/// How many sends one durable write covers: 1 (every send written) for small budgets,
/// up to [`MAX_RESERVATION`] for large ones, so a crash costs at most ~3% of a day's
/// budget.
pub fn reservation_chunk(budget: u32) -> u32 {
    (budget / 32).clamp(1, MAX_RESERVATION)
}

fn reservation_count<'de, D: serde::Deserializer<'de>>(d: D) -> Result<u32, D::Error> {
    let n = u32::deserialize(d)?;
    if n > MAX_RESERVATION {
        return Err(serde::de::Error::invalid_value(
            serde::de::Unexpected::Unsigned(n.into()),
            &format!("at most {MAX_RESERVATION} reserved sends").as_str(),
        ));
    }
    Ok(n)
}

/// Why a mailbox is paused. Persisted as `"backoff"` / `"budget"`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum PauseReason {
    /// After throttling or a quota reply.
    Backoff,
    /// Today's budget is treated as spent (a corrupt state file).
    Budget,
}

/// Which rolling window.
#[derive(
    Debug,
    Clone,
    Copy,
    PartialEq,
    Eq,
    strum::IntoStaticStr,
    strum::Display,
    strum::EnumString,
    strum::VariantArray,
)]
#[strum(serialize_all = "snake_case")]
pub enum Window {
    Minute,
    Day,
}

impl Window {
    pub fn as_str(self) -> &'static str {
        self.into()
    }

    fn secs(self) -> u64 {
        match self {
            Window::Minute => MINUTE,
            Window::Day => DAY,
        }
    }
}

/// What is counted.
#[derive(
    Debug,
    Clone,
    Copy,
    PartialEq,
    Eq,
    strum::IntoStaticStr,
    strum::Display,
    strum::EnumString,
    strum::VariantArray,
)]
#[strum(serialize_all = "snake_case")]
pub enum Unit {
    Messages,
    Recipients,
}

impl Unit {
    pub fn as_str(self) -> &'static str {
        self.into()
    }
}

pub const WINDOWS: [(Window, Unit); 4] = [
    (Window::Minute, Unit::Messages),
    (Window::Minute, Unit::Recipients),
    (Window::Day, Unit::Messages),
    (Window::Day, Unit::Recipients),
];

/// The provider limit for a window and unit, if the preset or `limits:` has one.
pub fn limit(limits: &Limits, window: Window, unit: Unit) -> Option<u32> {
    match (window, unit) {
        (Window::Minute, Unit::Messages) => limits.messages_per_minute,
        (Window::Day, Unit::Messages) => limits.messages_per_day,
        (Window::Day, Unit::Recipients) => limits.recipients_per_day,
        (Window::Minute, Unit::Recipients) => None,
    }
}

impl Ledger {
    /// Drops sends older than a day.
    pub fn prune(&mut self, now: u64) {
        while self
            .sends
            .front()
            .is_some_and(|s| s.at.saturating_add(DAY) <= now)
        {
            self.sends.pop_front();
        }
        if self.paused_until.is_some_and(|t| t <= now) {
            self.paused_until = None;
            self.pause_reason = None;
        }
    }

    pub fn used(&self, window: Window, unit: Unit, now: u64) -> u64 {
        let from = now.saturating_sub(window.secs());
        self.sends
            .iter()
            .rev()
            .take_while(|s| s.at > from)
            .map(|s| match unit {
                Unit::Messages => 1,
                Unit::Recipients => u64::from(s.recipients),
            })
            .sum()
    }

    pub fn record(&mut self, now: u64, recipients: u32) {
        self.prune(now);
        self.sends.push_back(Send {
            at: now,
            recipients,
        });
    }

    /// After loading from disk: sends reserved by the last process count as made (it may
    /// have died before using them), and this process starts without a reservation.
    /// They count as made `now`, not when they were reserved: the last process may have
    /// sent them just before it died, so both rolling windows must see them for their
    /// full length.
    pub fn settle_reservation(&mut self, now: u64) {
        if let Some(r) = self.reserved.take() {
            for _ in 0..r.count.min(MAX_RESERVATION) {
                self.sends.push_back(Send {
                    at: now.max(r.at),
                    recipients: r.recipients,
                });
            }
            self.sends.make_contiguous().sort_by_key(|s| s.at);
        }
    }

    /// The exact ledger, for a clean shutdown: no reservation left outstanding.
    pub fn without_reservation(&self) -> Ledger {
        Ledger {
            reserved: None,
            ..self.clone()
        }
    }

    /// Sends left today under `budget`; a corrupt-state pause counts as none left.
    pub fn budget_remaining(&self, budget: u32, now: u64) -> i64 {
        if self.pause_reason == Some(PauseReason::Budget)
            && self.paused_until.is_some_and(|t| t > now)
        {
            return 0;
        }
        i64::from(budget) - self.used(Window::Day, Unit::Messages, now) as i64
    }

    /// Whether a pause is in force now, and which skip reason it counts as.
    pub fn paused(&self, now: u64) -> Option<PauseReason> {
        match self.paused_until {
            Some(t) if t > now => Some(self.pause_reason.unwrap_or(PauseReason::Backoff)),
            _ => None,
        }
    }

    /// Updates the back-off after a probe: throttled and quota results back off
    /// exponentially (capped); anything else clears it. Returns the pause, if any.
    pub fn after_probe(
        &mut self,
        now: u64,
        interval: Duration,
        class: Option<Class>,
        code: &str,
    ) -> Option<Duration> {
        let cap = match class {
            Some(Class::Throttled) => THROTTLE_BACKOFF_CAP,
            Some(Class::Quota) => QUOTA_BACKOFF_CAP,
            _ => {
                self.strikes = 0;
                return None;
            }
        };
        self.strikes = self.strikes.saturating_add(1);
        let pause = match LONG_PAUSES.iter().find(|(c, _)| *c == code) {
            Some((_, long)) => *long,
            // One interval is already the normal gap: the first strike waits 2 intervals
            // more, then 4, 8, ... up to the cap.
            None => interval
                .saturating_mul(1u32 << self.strikes.min(16))
                .min(cap),
        };
        // `now` is whole seconds, rounded down: round the end up so the pause is never
        // shorter than promised.
        self.paused_until = Some(now + pause.as_secs() + 1);
        self.pause_reason = Some(PauseReason::Backoff);
        Some(pause)
    }

    /// The worst case for a state file we could not read: today's budget is spent.
    pub fn spent(now: u64) -> Ledger {
        Ledger {
            sends: VecDeque::new(),
            paused_until: Some(now + DAY),
            pause_reason: Some(PauseReason::Budget),
            strikes: 0,
            reserved: None,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rolling_windows() {
        let mut l = Ledger::default();
        l.record(1000, 1);
        l.record(1030, 2);
        l.record(1100, 1);
        assert_eq!(l.used(Window::Minute, Unit::Messages, 1100), 1);
        assert_eq!(l.used(Window::Minute, Unit::Messages, 1089), 2);
        assert_eq!(l.used(Window::Day, Unit::Recipients, 1100), 4);
        assert_eq!(l.used(Window::Day, Unit::Messages, 1000 + DAY + 1), 2);
        l.prune(1000 + DAY);
        assert_eq!(l.sends.len(), 2);
    }

    #[test]
    fn budget_and_spent() {
        let mut l = Ledger::default();
        for i in 0..3 {
            l.record(100 + i, 1);
        }
        assert_eq!(l.budget_remaining(5, 200), 2);
        let s = Ledger::spent(200);
        assert_eq!(s.budget_remaining(5, 300), 0);
        assert_eq!(s.paused(300), Some(PauseReason::Budget));
        assert_eq!(s.paused(200 + DAY), None);
    }

    #[test]
    fn exponential_backoff_is_capped_and_reset() {
        let mut l = Ledger::default();
        let i = Duration::from_secs(300);
        assert_eq!(
            l.after_probe(0, i, Some(Class::Throttled), "4.3.2"),
            Some(Duration::from_secs(600))
        );
        assert_eq!(
            l.after_probe(0, i, Some(Class::Throttled), "4.3.2"),
            Some(Duration::from_secs(1200))
        );
        assert_eq!(
            l.after_probe(0, i, Some(Class::Throttled), "4.3.2"),
            Some(Duration::from_secs(2400))
        );
        assert_eq!(
            l.after_probe(0, i, Some(Class::Throttled), "4.3.2"),
            Some(THROTTLE_BACKOFF_CAP)
        );
        assert_eq!(l.paused(10), Some(PauseReason::Backoff));
        assert_eq!(l.after_probe(0, i, None, ""), None);
        assert_eq!(l.strikes, 0);
        assert_eq!(
            l.after_probe(0, i, Some(Class::Throttled), "5.2.253"),
            Some(Duration::from_secs(6 * 3600))
        );
    }

    #[test]
    fn reserved_sends_count_as_made_at_load_after_a_crash() {
        // On disk: one send at 10, and a reservation of 3 taken at 10 for the next ones.
        let mut crashed = Ledger::default();
        crashed.record(10, 1);
        crashed.reserved = Some(Reservation {
            count: 3,
            at: 10,
            recipients: 1,
        });
        crashed.settle_reservation(500);
        assert_eq!(crashed.used(Window::Day, Unit::Messages, 500), 4);
        // The reserved ones may have gone out just before the crash: the minute window
        // at load sees them.
        assert_eq!(crashed.used(Window::Minute, Unit::Messages, 500), 3);
        assert_eq!(crashed.reserved, None);
        assert_eq!(reservation_chunk(1), 1);
        assert_eq!(reservation_chunk(320), 8);
    }
}
