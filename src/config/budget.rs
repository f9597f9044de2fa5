//! The budget arithmetic a config is judged by: the daily budget a mailbox gets, and the
//! share of a provider's limits the canary may use (the 10% rule), checked at load and
//! applied at run time by the send gate.

use std::time::Duration;

use super::{Mailbox, Provider};

/// Seconds in a day.
const DAY: u64 = 86_400;

/// The most a canary may use of a provider's daily limit.
pub const MAX_DAILY_SHARE: f64 = 0.10;
/// The most a canary may use of a provider's per-minute limit.
pub const MAX_MINUTE_SHARE: f64 = 0.10;

/// The daily budget: `budget.messages_per_day`, else what the interval implies (with
/// room for the ±10% jitter, so a normal day never runs into it).
pub fn daily_budget(mb: &Mailbox) -> u32 {
    mb.budget
        .messages_per_day
        .unwrap_or_else(|| implied_per_day(mb.interval))
}

/// Probes a day at this interval, allowing for intervals up to 10% short.
pub fn implied_per_day(interval: Duration) -> u32 {
    let secs = interval.as_secs_f64().max(1.0);
    (DAY as f64 / (secs * 0.9)).ceil() as u32
}

/// Why a config would burn too much of a provider's quota.
pub(crate) fn check_share(mb: &Mailbox) -> Result<(), String> {
    // The demo relay has no real quota to protect.
    if mb.provider == Provider::Demo {
        return Ok(());
    }
    let per_day = daily_budget(mb);
    let rcpts = mb.to.len() as u64;
    let day_msgs = u64::from(per_day);
    let day_rcpts = day_msgs * rcpts;
    let checks = [
        (mb.limits.messages_per_day, day_msgs, "messages/day"),
        (mb.limits.recipients_per_day, day_rcpts, "recipients/day"),
    ];
    for (limit, used, what) in checks {
        let Some(limit) = limit else { continue };
        let allowed = (f64::from(limit) * MAX_DAILY_SHARE).floor() as u64;
        if used > allowed {
            let source = if mb.budget.messages_per_day.is_some() {
                format!("budget.messages_per_day {per_day}")
            } else {
                format!(
                    "interval {:?} allows up to {per_day} probes a day (86400 s / (interval x 0.9))",
                    mb.interval
                )
            };
            return Err(format!(
                "{source} x {rcpts} recipient(s) = {used} {what}, which is {:.1}% of the {} limit of {limit}; \
                 the canary may use at most {:.0}% ({allowed}). Use a longer interval or set budget.messages_per_day <= {}",
                used as f64 * 100.0 / f64::from(limit),
                mb.provider,
                MAX_DAILY_SHARE * 100.0,
                allowed / rcpts.max(1),
            ));
        }
    }
    if let Some(per_min) = mb.limits.messages_per_minute {
        let canary_per_min = 60.0 / (mb.interval.as_secs_f64() * 0.9);
        let allowed = f64::from(per_min) * MAX_MINUTE_SHARE;
        if canary_per_min > allowed {
            return Err(format!(
                "interval {:?} sends up to {canary_per_min:.1} messages/minute, over {:.0}% of the {} limit of {per_min}/minute ({allowed:.1}); use an interval of at least {}s",
                mb.interval,
                MAX_MINUTE_SHARE * 100.0,
                mb.provider,
                (60.0 / (allowed * 0.9)).ceil()
            ));
        }
    }
    Ok(())
}

/// The sends of this mailbox allowed in one rolling minute at run time, if limited: the
/// provider's per-minute share, at least one. The demo relay has no quota to protect.
pub fn minute_allowance(mb: &Mailbox) -> Option<u64> {
    if mb.provider == Provider::Demo {
        return None;
    }
    mb.limits
        .messages_per_minute
        .map(|l| ((f64::from(l) * MAX_MINUTE_SHARE).floor() as u64).max(1))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn implied_budget() {
        assert_eq!(implied_per_day(Duration::from_secs(300)), 320);
        assert_eq!(implied_per_day(Duration::from_secs(86_400)), 2);
    }
}
