//! Exact conversion between minor units and the operator's major-unit JSON numbers.
//!
//! The operator speaks `10.00`; the mock keeps cents. Both directions work on the
//! decimal text itself so that no amount ever passes through a float.

use serde_json::value::RawValue;

/// A JSON number holding `minor` in the currency's major units, from its exact decimal text.
pub fn major_json(minor: i64, currency: &str) -> Box<RawValue> {
    let exponent = exponent(currency).unwrap_or(2);
    RawValue::from_string(to_major(minor, exponent)).expect("a decimal is valid JSON")
}

/// ISO 4217 exponent of the currencies the mock's players can hold.
pub fn exponent(currency: &str) -> Option<u32> {
    match currency {
        "USD" | "EUR" | "GBP" | "CAD" | "AUD" => Some(2),
        "JPY" | "KRW" => Some(0),
        "KWD" | "BHD" => Some(3),
        _ => None,
    }
}

/// `1000` cents with exponent 2 → `"10.00"`.
pub fn to_major(minor: i64, exponent: u32) -> String {
    let sign = if minor < 0 { "-" } else { "" };
    let digits = minor.unsigned_abs().to_string();
    if exponent == 0 {
        return format!("{sign}{digits}");
    }
    let width = exponent as usize + 1;
    let padded = format!("{digits:0>width$}");
    let (whole, fraction) = padded.split_at(padded.len() - exponent as usize);
    format!("{sign}{whole}.{fraction}")
}

/// `"10.5"` with exponent 2 → `1050`. Rejects exponents, signs, extra precision and overflow.
pub fn from_major(text: &str, exponent: u32) -> Option<i64> {
    let (whole, fraction) = text.split_once('.').unwrap_or((text, ""));
    let all_digits = |s: &str| s.bytes().all(|b| b.is_ascii_digit());
    if whole.is_empty() || !all_digits(whole) || !all_digits(fraction) {
        return None;
    }
    let significant = fraction.trim_end_matches('0');
    if significant.len() > exponent as usize {
        return None;
    }
    let scale = 10i64.checked_pow(exponent)?;
    let whole_minor = whole.parse::<i64>().ok()?.checked_mul(scale)?;
    let fraction_minor = if significant.is_empty() {
        0
    } else {
        let padded = format!("{significant:0<width$}", width = exponent as usize);
        padded.parse::<i64>().ok()?
    };
    whole_minor.checked_add(fraction_minor)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn renders_minor_units_as_major_text() {
        assert_eq!(to_major(1000, 2), "10.00");
        assert_eq!(to_major(5, 2), "0.05");
        assert_eq!(to_major(-5, 2), "-0.05");
        assert_eq!(to_major(1234, 0), "1234");
        assert_eq!(to_major(1, 3), "0.001");
    }

    #[test]
    fn parses_major_text_exactly() {
        assert_eq!(from_major("10.00", 2), Some(1000));
        assert_eq!(from_major("10.5", 2), Some(1050));
        assert_eq!(from_major("10", 2), Some(1000));
        assert_eq!(from_major("0.010", 2), Some(1));
        assert_eq!(from_major("0.001", 2), None);
        assert_eq!(from_major("1e3", 2), None);
        assert_eq!(from_major("-1", 2), None);
        assert_eq!(from_major("99999999999999999999", 2), None);
    }
}
