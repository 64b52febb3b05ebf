//! `Retry-After` as delta-seconds or an HTTP-date (RFC 9110 §10.2.3), from an untrusted
//! peer: whatever it says, the wait is at most [`MAX`].

use std::time::{Duration, SystemTime};

/// The longest wait any outside party can impose on one call or event.
pub const MAX: Duration = Duration::from_secs(300);

/// How long the server asked us to wait, measured from `now` and clamped to [`MAX`];
/// `None` if the value is unusable.
pub fn parse(value: &str, now: SystemTime) -> Option<Duration> {
    let value = value.trim();
    let asked = if !value.is_empty() && value.bytes().all(|b| b.is_ascii_digit()) {
        // Too many digits for a u64 is still "a very long time", not garbage.
        Duration::from_secs(value.parse().unwrap_or(u64::MAX))
    } else {
        let at = httpdate::parse_http_date(value).ok()?;
        at.duration_since(now).unwrap_or(Duration::ZERO)
    };
    Some(asked.min(MAX))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_delta_seconds_clamped_to_the_maximum() {
        assert_eq!(parse("2", SystemTime::now()), Some(Duration::from_secs(2)));
        assert_eq!(parse(" 0 ", SystemTime::now()), Some(Duration::ZERO));
        assert_eq!(parse("300", SystemTime::now()), Some(MAX));
        assert_eq!(parse("301", SystemTime::now()), Some(MAX));
        assert_eq!(
            parse("99999999999999999999999", SystemTime::now()),
            Some(MAX)
        );
    }

    #[test]
    fn reads_http_dates_relative_to_now_clamped_to_the_maximum() {
        let now = httpdate::parse_http_date("Sun, 06 Nov 1994 08:49:37 GMT").unwrap();
        assert_eq!(
            parse("Sun, 06 Nov 1994 08:49:40 GMT", now),
            Some(Duration::from_secs(3))
        );
        assert_eq!(
            parse("Sun, 06 Nov 1994 08:49:30 GMT", now),
            Some(Duration::ZERO)
        );
        assert_eq!(parse("Fri, 31 Dec 9999 23:59:59 GMT", now), Some(MAX));
    }

    #[test]
    fn ignores_garbage() {
        for garbage in ["soon", "-1", "", "1.5", "+3", "0x10", "\u{0}"] {
            assert_eq!(parse(garbage, SystemTime::now()), None, "{garbage:?}");
        }
    }
}
