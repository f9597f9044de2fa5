//! Durations as written in the config: `500ms`, `30s`, `5m`, `1h`, and combinations in
//! decreasing unit order such as `1h30m` or `1m30s`.
//!
//! This file owns only the syntax. Which range a given key accepts (an interval of 10s to
//! 24h, a timeout of 1s to 10m) is a rule of that key and lives in `validate.rs`.

use std::time::Duration;

/// Why a duration did not parse. Durations are not secret, so messages quote the input,
/// escaped: a control character from the file must not reach a terminal or a log line
/// (found by tests/fuzz.rs).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum DurationError {
    #[error("empty duration; write e.g. 30s, 5m or 1h")]
    Empty,
    #[error("`{}` has no unit; write e.g. `{}s` (units: ms, s, m, h)", .0.escape_debug(), .0.escape_debug())]
    NoUnit(String),
    #[error("`{}`: unknown unit `{}` (units: ms, s, m, h)", .input.escape_debug(), .unit.escape_debug())]
    UnknownUnit { input: String, unit: String },
    #[error("`{}`: fractions are not supported; combine units instead, e.g. 1m30s", .0.escape_debug())]
    Fraction(String),
    #[error("`{}` is not a duration; write e.g. 30s, 5m, 1h or 1m30s", .0.escape_debug())]
    Syntax(String),
    #[error("`{}`: units must each appear once, largest first (e.g. 1h30m, not 30m1h)", .0.escape_debug())]
    UnitOrder(String),
    #[error("`{}` is too large", .0.escape_debug())]
    Overflow(String),
    #[error("a duration of zero is not allowed")]
    Zero,
}

/// The units, largest first; a combination must use them in this order.
const UNITS: [(&str, u64); 4] = [("h", 3_600_000), ("m", 60_000), ("s", 1_000), ("ms", 1)];

/// Parses a config duration. Zero is refused: every duration in the config is an interval,
/// a deadline or a cadence, and zero means a busy loop or an instant failure.
pub fn parse_duration(input: &str) -> Result<Duration, DurationError> {
    let s = input.trim();
    if s.is_empty() {
        return Err(DurationError::Empty);
    }
    let mut rest = s;
    let mut total_ms: u64 = 0;
    // Index into UNITS of the last unit used; the next one must come strictly after it.
    let mut last_unit: Option<usize> = None;
    while !rest.is_empty() {
        let digits = rest.bytes().take_while(u8::is_ascii_digit).count();
        if digits == 0 {
            return Err(DurationError::Syntax(s.to_string()));
        }
        let (num, after) = rest.split_at(digits);
        if after.starts_with(['.', ',']) {
            return Err(DurationError::Fraction(s.to_string()));
        }
        let unit_len = after.bytes().take_while(u8::is_ascii_alphabetic).count();
        if unit_len == 0 {
            return Err(if after.is_empty() && last_unit.is_none() {
                DurationError::NoUnit(s.to_string())
            } else {
                DurationError::Syntax(s.to_string())
            });
        }
        let (unit, next) = after.split_at(unit_len);
        let Some(idx) = UNITS.iter().position(|(u, _)| *u == unit) else {
            return Err(DurationError::UnknownUnit {
                input: s.to_string(),
                unit: unit.to_string(),
            });
        };
        if last_unit.is_some_and(|l| idx <= l) {
            return Err(DurationError::UnitOrder(s.to_string()));
        }
        last_unit = Some(idx);
        let overflow = || DurationError::Overflow(s.to_string());
        let n: u64 = num.parse().map_err(|_| overflow())?;
        let ms = n.checked_mul(UNITS[idx].1).ok_or_else(overflow)?;
        total_ms = total_ms.checked_add(ms).ok_or_else(overflow)?;
        rest = next;
    }
    if total_ms == 0 {
        return Err(DurationError::Zero);
    }
    Ok(Duration::from_millis(total_ms))
}

/// Formats a duration the way the config writes it (`5m`, `1h30m`, `1500ms` → `1s500ms`),
/// so summaries and messages echo the user's notation. Sub-millisecond parts are dropped.
pub fn format_duration(d: Duration) -> String {
    let mut ms = u64::try_from(d.as_millis()).unwrap_or(u64::MAX);
    if ms == 0 {
        return "0s".to_string();
    }
    let mut out = String::new();
    for (unit, size) in UNITS {
        let n = ms / size;
        if n > 0 {
            out.push_str(&format!("{n}{unit}"));
            ms %= size;
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ok(s: &str) -> u128 {
        parse_duration(s).unwrap().as_millis()
    }

    #[test]
    fn single_units() {
        assert_eq!(ok("500ms"), 500);
        assert_eq!(ok("30s"), 30_000);
        assert_eq!(ok("5m"), 300_000);
        assert_eq!(ok("1h"), 3_600_000);
        assert_eq!(ok(" 2h "), 7_200_000);
    }

    #[test]
    fn combinations() {
        assert_eq!(ok("1m30s"), 90_000);
        assert_eq!(ok("1h30m"), 5_400_000);
        assert_eq!(ok("1h0m5s250ms"), 3_605_250);
    }

    #[test]
    fn refusals() {
        use DurationError::*;
        assert_eq!(parse_duration(""), Err(Empty));
        assert_eq!(parse_duration("30"), Err(NoUnit("30".into())));
        assert!(matches!(parse_duration("1d"), Err(UnknownUnit { unit, .. }) if unit == "d"));
        assert!(matches!(
            parse_duration("5 m"),
            Err(UnknownUnit { .. }) | Err(Syntax(_))
        ));
        assert_eq!(parse_duration("1.5h"), Err(Fraction("1.5h".into())));
        assert_eq!(parse_duration("-5s"), Err(Syntax("-5s".into())));
        assert_eq!(parse_duration("30s1m"), Err(UnitOrder("30s1m".into())));
        assert_eq!(parse_duration("1m1m"), Err(UnitOrder("1m1m".into())));
        assert_eq!(parse_duration("1m30"), Err(Syntax("1m30".into())));
        assert_eq!(parse_duration("0s"), Err(Zero));
        assert_eq!(parse_duration("0h0m"), Err(Zero));
        assert!(matches!(
            parse_duration("99999999999999999999h"),
            Err(Overflow(_))
        ));
        assert!(matches!(
            parse_duration("9999999999999999h"),
            Err(Overflow(_))
        ));
        assert!(parse_duration("ms").is_err());
        assert_eq!(
            parse_duration("5\x1b[2Jm").unwrap_err().to_string(),
            "`5\\u{1b}[2Jm` is not a duration; write e.g. 30s, 5m, 1h or 1m30s"
        );
    }

    #[test]
    fn format_round_trips() {
        for s in ["500ms", "30s", "5m", "1h", "1h30m", "1m30s", "1s500ms"] {
            assert_eq!(format_duration(parse_duration(s).unwrap()), s);
        }
    }
}
