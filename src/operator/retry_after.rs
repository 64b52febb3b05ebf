//! `Retry-After` as delta-seconds or an HTTP-date (RFC 9110 §10.2.3).

use std::time::{Duration, SystemTime};

/// How long the server asked us to wait, measured from `now`; `None` if the value is unusable.
pub fn parse(value: &str, now: SystemTime) -> Option<Duration> {
    let value = value.trim();
    if !value.is_empty() && value.bytes().all(|b| b.is_ascii_digit()) {
        return Some(Duration::from_secs(value.parse().unwrap_or(u64::MAX)));
    }
    let at = httpdate::parse_http_date(value).ok()?;
    Some(at.duration_since(now).unwrap_or(Duration::ZERO))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_delta_seconds() {
        assert_eq!(parse("2", SystemTime::now()), Some(Duration::from_secs(2)));
        assert_eq!(parse(" 0 ", SystemTime::now()), Some(Duration::ZERO));
        assert_eq!(
            parse("99999999999999999999999", SystemTime::now()),
            Some(Duration::from_secs(u64::MAX))
        );
    }

    #[test]
    fn reads_http_dates_relative_to_now() {
        let now = httpdate::parse_http_date("Sun, 06 Nov 1994 08:49:37 GMT").unwrap();
        assert_eq!(
            parse("Sun, 06 Nov 1994 08:49:40 GMT", now),
            Some(Duration::from_secs(3))
        );
        assert_eq!(
            parse("Sun, 06 Nov 1994 08:49:30 GMT", now),
            Some(Duration::ZERO)
        );
    }

    #[test]
    fn ignores_garbage() {
        assert_eq!(parse("soon", SystemTime::now()), None);
        assert_eq!(parse("-1", SystemTime::now()), None);
        assert_eq!(parse("", SystemTime::now()), None);
    }
}
