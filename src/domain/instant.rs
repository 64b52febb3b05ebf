//! Time bounds typed by people: an RFC 3339 instant, or a UTC date meaning the whole day.

use chrono::{DateTime, NaiveDate, NaiveDateTime, TimeDelta};

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
