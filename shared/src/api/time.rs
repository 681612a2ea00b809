//! The `since` and `until` query parameters: a duration ago (`15m`, `2h`, `7d`) or an
//! RFC 3339 time, always within what the stores can represent. Any other input, of any
//! size, is a 400, never an overflow.

use chrono::{DateTime, TimeDelta, Utc};

use super::ApiError;

/// How far back a duration may reach (about 55 years: no store holds anything older
/// than 1970).
pub const MAX_LOOKBACK_DAYS: i64 = 20_000;

/// Parses `15m`, `2h`, `1d` (ago) or an RFC 3339 time between 1970 and 2262 (the
/// nanosecond timestamps the stores keep).
pub fn parse_since(s: &str, now: DateTime<Utc>) -> Result<DateTime<Utc>, ApiError> {
    let s = s.trim();
    if let Ok(t) = DateTime::parse_from_rfc3339(s) {
        let t = t.with_timezone(&Utc);
        return representable(t).ok_or_else(|| {
            ApiError::bad_request(format!("time {s:?} must be between 1970 and 2262"))
        });
    }
    let split = s.find(|c: char| !c.is_ascii_digit()).unwrap_or(s.len());
    let (n, unit) = s.split_at(split);
    let shape = || {
        ApiError::bad_request(format!(
            "since {s:?} must be like 15m, 2h, 7d or an RFC 3339 time"
        ))
    };
    if n.is_empty() {
        return Err(shape());
    }
    let too_far = || {
        ApiError::bad_request(format!(
            "since {s:?} reaches back more than {MAX_LOOKBACK_DAYS} days"
        ))
    };
    let n: i64 = n.parse().map_err(|_| too_far())?;
    let per_unit: i64 = match unit {
        "s" => 1,
        "m" | "" => 60,
        "h" => 3_600,
        "d" => 86_400,
        _ => {
            return Err(ApiError::bad_request(format!(
                "since {s:?}: unit must be s, m, h or d"
            )))
        }
    };
    let secs = n
        .checked_mul(per_unit)
        .filter(|secs| *secs <= MAX_LOOKBACK_DAYS * 86_400)
        .ok_or_else(too_far)?;
    TimeDelta::try_seconds(secs)
        .and_then(|d| now.checked_sub_signed(d))
        .and_then(representable)
        .ok_or_else(too_far)
}

fn representable(t: DateTime<Utc>) -> Option<DateTime<Utc>> {
    (t.timestamp() >= 0 && t.timestamp_nanos_opt().is_some()).then_some(t)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn now() -> DateTime<Utc> {
        DateTime::parse_from_rfc3339("2026-12-01T12:00:00Z")
            .expect("time")
            .with_timezone(&Utc)
    }

    #[test]
    fn since_accepts_durations_and_times() {
        let now = now();
        assert_eq!(parse_since("15m", now), Ok(now - TimeDelta::minutes(15)));
        assert_eq!(parse_since("2h", now), Ok(now - TimeDelta::hours(2)));
        assert_eq!(parse_since(" 7d ", now), Ok(now - TimeDelta::days(7)));
        assert_eq!(
            parse_since("2024-01-01T00:00:00Z", now).map(|t| t.to_rfc3339()),
            Ok("2024-01-01T00:00:00+00:00".to_string())
        );
        let e = parse_since("soon", now).expect_err("no number");
        assert_eq!(
            e.message,
            "since \"soon\" must be like 15m, 2h, 7d or an RFC 3339 time"
        );
        let e = parse_since("3w", now).expect_err("weeks");
        assert_eq!(e.message, "since \"3w\": unit must be s, m, h or d");
    }

    #[test]
    fn a_since_of_any_size_answers_400_and_never_overflows() {
        let now = now();
        for big in [
            "20001d",
            "9223372036854775807d",
            "9223372036854775807s",
            "99999999999999999999999999h",
            "106751991167301d",
        ] {
            let e = parse_since(big, now).expect_err(big);
            assert_eq!(e.status, 400, "{big}");
            assert!(e.message.contains("reaches back more than"), "{big}: {e}");
        }
        for far in ["1900-01-01T00:00:00Z", "9999-12-31T23:59:59Z"] {
            let e = parse_since(far, now).expect_err(far);
            assert_eq!(
                e.message,
                format!("time {far:?} must be between 1970 and 2262")
            );
        }
        assert_eq!(
            parse_since("20000d", now),
            Ok(now - TimeDelta::days(20_000))
        );
    }
}
