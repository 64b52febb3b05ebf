//! Time bounds typed by people (an RFC 3339 instant, or a UTC date meaning the whole day),
//! and time arithmetic that saturates instead of panicking.

use std::time::Duration;

use chrono::{DateTime, NaiveDate, NaiveDateTime, TimeDelta};

/// `at + span`, saturating: a span from configuration or from outside must never panic.
pub fn later_by(at: NaiveDateTime, span: Duration) -> NaiveDateTime {
    TimeDelta::from_std(span)
        .ok()
        .and_then(|span| at.checked_add_signed(span))
        .unwrap_or(NaiveDateTime::MAX)
}

/// `at - span`, saturating.
pub fn earlier_by(at: NaiveDateTime, span: Duration) -> NaiveDateTime {
    TimeDelta::from_std(span)
        .ok()
        .and_then(|span| at.checked_sub_signed(span))
        .unwrap_or(NaiveDateTime::MIN)
}

/// The start of a window: the instant itself, or the first moment of the date.
pub fn window_start(text: &str) -> Option<NaiveDateTime> {
    instant(text).or_else(|| date(text)?.and_hms_opt(0, 0, 0))
}

/// The inclusive end of a window: the instant itself, or the last microsecond of the date.
pub fn window_end(text: &str) -> Option<NaiveDateTime> {
    instant(text).or_else(|| {
        Some(date(text)?.succ_opt()?.and_hms_opt(0, 0, 0)? - TimeDelta::microseconds(1))
    })
}

/// A bound that is neither a date nor an RFC 3339 instant; `bound` is `from` or `to`.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{bound} must be a YYYY-MM-DD date or an RFC 3339 instant (UTC), got {given:?}")]
pub struct BoundError {
    pub bound: &'static str,
    pub given: String,
}

/// Optional `from` and `to` texts as a window's inclusive start and end.
pub fn window_bounds(
    from: Option<&str>,
    to: Option<&str>,
) -> Result<(Option<NaiveDateTime>, Option<NaiveDateTime>), BoundError> {
    let parse = |text: Option<&str>, bound, parse: fn(&str) -> Option<NaiveDateTime>| {
        text.map(|given| {
            parse(given).ok_or_else(|| BoundError {
                bound,
                given: given.to_owned(),
            })
        })
        .transpose()
    };
    Ok((
        parse(from, "from", window_start)?,
        parse(to, "to", window_end)?,
    ))
}

fn instant(text: &str) -> Option<NaiveDateTime> {
    DateTime::parse_from_rfc3339(text.trim())
        .ok()
        .map(|t| t.naive_utc())
}

fn date(text: &str) -> Option<NaiveDate> {
    NaiveDate::parse_from_str(text.trim(), "%Y-%m-%d").ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn dates_cover_the_whole_utc_day() {
        assert_eq!(
            window_start("2024-01-31").unwrap().to_string(),
            "2024-01-31 00:00:00"
        );
        assert_eq!(
            window_end("2024-01-31").unwrap().to_string(),
            "2024-01-31 23:59:59.999999"
        );
    }

    #[test]
    fn bounds_are_optional_and_name_the_one_at_fault() {
        assert_eq!(window_bounds(None, None), Ok((None, None)));
        let (from, to) = window_bounds(Some("2024-01-31"), Some("2024-01-31")).unwrap();
        assert!(from < to);
        let error = window_bounds(Some("2024-01-31"), Some("soon")).unwrap_err();
        assert_eq!((error.bound, error.given.as_str()), ("to", "soon"));
    }

    #[test]
    fn instants_are_taken_as_given_in_utc() {
        assert_eq!(
            window_start("2024-01-31T10:00:00+02:00")
                .unwrap()
                .to_string(),
            "2024-01-31 08:00:00"
        );
        assert_eq!(
            window_end("2024-01-31T10:00:00Z").unwrap().to_string(),
            "2024-01-31 10:00:00"
        );
        assert_eq!(window_start("yesterday"), None);
        assert_eq!(window_end("2024-13-01"), None);
    }
}
