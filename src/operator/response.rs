//! Reading the operator's answer into a [`Decision`], without floats.

use serde::Deserialize;
use serde_json::value::RawValue;

use super::{Decision, DeclineReason};
use crate::domain::Currency;

#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
struct WalletAnswer {
    status: String,
    #[serde(default)]
    transaction_id: Option<String>,
    #[serde(default)]
    balance: Option<Box<RawValue>>,
    #[serde(default)]
    message: Option<String>,
}

/// What an answer with a readable body means; `None` when the body says nothing we know.
pub fn decision(body: &[u8], currency: Currency) -> Option<Decision> {
    let answer: WalletAnswer = serde_json::from_slice(body).ok()?;
    let message = answer.message.clone().unwrap_or_default();
    let reason = match answer.status.as_str() {
        "SUCCESS" => {
            return Some(Decision::Approved {
                balance_minor: answer
                    .balance
                    .as_deref()
                    .and_then(|raw| exact_balance(raw, currency)),
                reference: answer.transaction_id,
            })
        }
        "INSUFFICIENT_FUNDS" => DeclineReason::InsufficientFunds,
        "PLAYER_NOT_FOUND" => DeclineReason::PlayerNotFound,
        "INVALID_CURRENCY" => DeclineReason::CurrencyMismatch,
        "FAILED" => DeclineReason::OperatorDeclined,
        _ => return None,
    };
    Some(Decision::Declined { reason, message })
}

/// The balance as minor units, read from the JSON number's own text (or a quoted decimal).
fn exact_balance(raw: &RawValue, currency: Currency) -> Option<i64> {
    let text = raw.get().trim();
    let text = text
        .strip_prefix('"')
        .and_then(|t| t.strip_suffix('"'))
        .unwrap_or(text);
    match currency.from_major_text(text) {
        Ok(minor) => Some(minor),
        Err(error) => {
            tracing::warn!(balance = text, %error, "operator balance is not exact in {currency}; recording none");
            None
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn usd() -> Currency {
        Currency::from_iso_code("USD").unwrap()
    }

    #[test]
    fn reads_balances_without_rounding() {
        let body = br#"{"status":"SUCCESS","transactionId":"t1","balance":90.10,"currency":"USD"}"#;
        assert_eq!(
            decision(body, usd()),
            Some(Decision::Approved {
                balance_minor: Some(9010),
                reference: Some("t1".into())
            })
        );
        let quoted = br#"{"status":"SUCCESS","balance":"0.29"}"#;
        assert_eq!(
            decision(quoted, usd()),
            Some(Decision::Approved {
                balance_minor: Some(29),
                reference: None
            })
        );
        let inexact = br#"{"status":"SUCCESS","balance":0.295}"#;
        assert_eq!(
            decision(inexact, usd()),
            Some(Decision::Approved {
                balance_minor: None,
                reference: None
            })
        );
    }

    #[test]
    fn maps_operator_statuses_to_reasons() {
        let cases = [
            ("INSUFFICIENT_FUNDS", DeclineReason::InsufficientFunds),
            ("PLAYER_NOT_FOUND", DeclineReason::PlayerNotFound),
            ("INVALID_CURRENCY", DeclineReason::CurrencyMismatch),
            ("FAILED", DeclineReason::OperatorDeclined),
        ];
        for (status, reason) in cases {
            let body = format!(r#"{{"status":"{status}","message":"m"}}"#);
            assert_eq!(
                decision(body.as_bytes(), usd()),
                Some(Decision::Declined {
                    reason,
                    message: "m".into()
                })
            );
        }
        assert_eq!(decision(br#"{"status":"MAYBE"}"#, usd()), None);
        assert_eq!(decision(b"<html>", usd()), None);
    }
}
