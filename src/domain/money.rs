//! Money is an `i64` count of minor units. The only conversions happen here, on decimal text,
//! at the operator edge: `1050` USD cents ⇄ `10.50`.

use std::fmt;

/// An ISO 4217 currency the hub knows the exponent of.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Currency {
    code: &'static str,
    exponent: u32,
}

/// Codes whose minor unit is not a hundredth. Every other listed code uses two decimals.
const ZERO_DECIMALS: &[&str] = &[
    "BIF", "CLP", "DJF", "GNF", "ISK", "JPY", "KMF", "KRW", "PYG", "RWF", "UGX", "UYI", "VND",
    "VUV", "XAF", "XOF", "XPF",
];
const THREE_DECIMALS: &[&str] = &["BHD", "IQD", "JOD", "KWD", "LYD", "OMR", "TND"];
const TWO_DECIMALS: &[&str] = &[
    "AED", "ARS", "AUD", "BGN", "BRL", "CAD", "CHF", "CNY", "COP", "CZK", "DKK", "EGP", "EUR",
    "GBP", "GEL", "HKD", "HUF", "IDR", "ILS", "INR", "KES", "KZT", "MAD", "MXN", "MYR", "NGN",
    "NOK", "NZD", "PEN", "PHP", "PKR", "PLN", "RON", "RSD", "SAR", "SEK", "SGD", "THB", "TRY",
    "TWD", "UAH", "USD", "ZAR",
];

impl Currency {
    pub fn from_iso_code(code: &str) -> Option<Self> {
        [(ZERO_DECIMALS, 0), (TWO_DECIMALS, 2), (THREE_DECIMALS, 3)]
            .into_iter()
            .find_map(|(codes, exponent)| {
                let code = codes.iter().find(|known| **known == code)?;
                Some(Currency { code, exponent })
            })
    }

    pub fn code(&self) -> &'static str {
        self.code
    }

    pub fn exponent(&self) -> u32 {
        self.exponent
    }

    /// Minor units as the operator's decimal text: `1050` → `"10.50"`, `-5` → `"-0.05"`.
    pub fn to_major_text(&self, minor: i64) -> String {
        if self.exponent == 0 {
            return minor.to_string();
        }
        let scale = 10u64.pow(self.exponent);
        let magnitude = minor.unsigned_abs();
        let sign = if minor < 0 { "-" } else { "" };
        let width = self.exponent as usize;
        format!("{sign}{}.{:0width$}", magnitude / scale, magnitude % scale)
    }

    /// The operator's decimal text as minor units, refusing anything that would round.
    pub fn from_major_text(&self, text: &str) -> Result<i64, AmountError> {
        let (negative, unsigned) = match text.strip_prefix('-') {
            Some(rest) => (true, rest),
            None => (false, text),
        };
        let (whole, fraction) = unsigned.split_once('.').unwrap_or((unsigned, ""));
        if whole.is_empty() {
            return Err(AmountError::NotADecimal);
        }
        let mut minor: i64 = 0;
        let mut push_digit = |byte: u8| -> Result<(), AmountError> {
            if !byte.is_ascii_digit() {
                return Err(AmountError::NotADecimal);
            }
            minor = minor
                .checked_mul(10)
                .and_then(|m| m.checked_add(i64::from(byte - b'0')))
                .ok_or(AmountError::OutOfRange)?;
            Ok(())
        };
        for byte in whole.bytes() {
            push_digit(byte)?;
        }
        let exponent = self.exponent as usize;
        for (position, byte) in fraction.bytes().enumerate() {
            if position < exponent {
                push_digit(byte)?;
            } else if byte != b'0' {
                return Err(if byte.is_ascii_digit() {
                    AmountError::TooPrecise
                } else {
                    AmountError::NotADecimal
                });
            }
        }
        for _ in fraction.len()..exponent {
            push_digit(b'0')?;
        }
        Ok(if negative { -minor } else { minor })
    }
}

impl fmt::Display for Currency {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.code)
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum AmountError {
    #[error("not a plain decimal number")]
    NotADecimal,
    #[error("more decimals than the currency has")]
    TooPrecise,
    #[error("too large for 64-bit minor units")]
    OutOfRange,
}

#[cfg(test)]
mod tests {
    use super::*;

    fn usd() -> Currency {
        Currency::from_iso_code("USD").unwrap()
    }

    #[test]
    fn knows_the_exponents_of_its_currencies() {
        assert_eq!(usd().exponent(), 2);
        assert_eq!(Currency::from_iso_code("JPY").unwrap().exponent(), 0);
        assert_eq!(Currency::from_iso_code("KWD").unwrap().exponent(), 3);
        assert_eq!(Currency::from_iso_code("usd"), None);
        assert_eq!(Currency::from_iso_code("XYZ"), None);
    }

    #[test]
    fn writes_major_units_exactly() {
        assert_eq!(usd().to_major_text(1000), "10.00");
        assert_eq!(usd().to_major_text(1), "0.01");
        assert_eq!(usd().to_major_text(-1050), "-10.50");
        assert_eq!(usd().to_major_text(i64::MAX), "92233720368547758.07");
        assert_eq!(usd().to_major_text(i64::MIN), "-92233720368547758.08");
        assert_eq!(
            Currency::from_iso_code("JPY").unwrap().to_major_text(500),
            "500"
        );
        assert_eq!(
            Currency::from_iso_code("KWD").unwrap().to_major_text(1),
            "0.001"
        );
    }

    #[test]
    fn reads_major_units_exactly() {
        assert_eq!(usd().from_major_text("90.00"), Ok(9000));
        assert_eq!(usd().from_major_text("90"), Ok(9000));
        assert_eq!(usd().from_major_text("90.5"), Ok(9050));
        assert_eq!(usd().from_major_text("0.070"), Ok(7));
        assert_eq!(usd().from_major_text("-3.25"), Ok(-325));
        assert_eq!(usd().from_major_text("0.001"), Err(AmountError::TooPrecise));
        assert_eq!(usd().from_major_text("1e3"), Err(AmountError::NotADecimal));
        assert_eq!(usd().from_major_text(".5"), Err(AmountError::NotADecimal));
        assert_eq!(
            usd().from_major_text("92233720368547758.08"),
            Err(AmountError::OutOfRange)
        );
        assert_eq!(usd().from_major_text("92233720368547758.07"), Ok(i64::MAX));
    }

    #[test]
    fn round_trips_every_magnitude() {
        for currency in ["USD", "JPY", "KWD"].map(|c| Currency::from_iso_code(c).unwrap()) {
            let mut minor = 1i64;
            while minor < i64::MAX / 7 {
                let text = currency.to_major_text(minor);
                assert_eq!(
                    currency.from_major_text(&text),
                    Ok(minor),
                    "{currency} {text}"
                );
                minor = minor * 7 + 3;
            }
        }
    }
}
