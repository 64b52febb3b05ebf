//! Reading the operator's answer into a [`Decision`], without floats.

use serde::Deserialize;
use serde_json::value::RawValue;

use super::{BalanceAnswer, Decision, DeclineReason};
use crate::domain::{Currency, TransactionKind};

#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
struct BalanceBody {
    #[serde(default)]
    status: Option<String>,
    #[serde(default)]
    balance: Option<Box<RawValue>>,
    #[serde(default)]
    currency: Option<String>,
}

/// The operator's balance answer; `None` when it is not one (the caller retries).
pub fn balance(body: &[u8]) -> Option<BalanceAnswer> {
    let answer: BalanceBody = serde_json::from_slice(body).ok()?;
    if answer.status.as_deref() == Some("PLAYER_NOT_FOUND") {
        return Some(BalanceAnswer::PlayerNotFound);
    }
    let currency = Currency::from_iso_code(answer.currency.as_deref()?)?;
    let minor = exact_minor(answer.balance.as_deref()?, currency).ok()?;
    Some(BalanceAnswer::Balance { minor, currency })
}

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
/// A rollback is decided only by `SUCCESS`: the operator must always be able to cancel a
/// debit (refund it, or record it as never to be applied), so any other answer leaves the
/// rollback unknown, to be asked again.
pub fn decision(body: &[u8], currency: Currency, kind: TransactionKind) -> Option<Decision> {
    let answer: WalletAnswer = serde_json::from_slice(body).ok()?;
    if kind == TransactionKind::Rollback && answer.status != "SUCCESS" {
        return None;
    }
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
        "CANCELLED" => DeclineReason::Cancelled,
        _ => return None,
    };
    Some(Decision::Declined { reason, message })
}

/// The balance as minor units, or `None` (with a warning) when it is not exact.
fn exact_balance(raw: &RawValue, currency: Currency) -> Option<i64> {
    match exact_minor(raw, currency) {
        Ok(minor) => Some(minor),
        Err(text) => {
            tracing::warn!(
                balance = text,
                "operator balance is not exact in {currency}; recording none"
            );
            None
        }
    }
}

/// A JSON number's own text (or a quoted decimal) as minor units, never through a float;
/// the text itself when it is not exact.
fn exact_minor(raw: &RawValue, currency: Currency) -> Result<i64, String> {
    let text = raw.get().trim();
    let text = text
        .strip_prefix('"')
        .and_then(|t| t.strip_suffix('"'))
        .unwrap_or(text);
    currency
        .from_major_text(text)
        .map_err(|_| text.chars().take(64).collect())
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
            decision(body, usd(), TransactionKind::Debit),
            Some(Decision::Approved {
                balance_minor: Some(9010),
                reference: Some("t1".into())
            })
        );
        let quoted = br#"{"status":"SUCCESS","balance":"0.29"}"#;
        assert_eq!(
            decision(quoted, usd(), TransactionKind::Debit),
            Some(Decision::Approved {
                balance_minor: Some(29),
                reference: None
            })
        );
        let inexact = br#"{"status":"SUCCESS","balance":0.295}"#;
        assert_eq!(
            decision(inexact, usd(), TransactionKind::Debit),
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
            ("CANCELLED", DeclineReason::Cancelled),
        ];
        for (status, reason) in cases {
            let body = format!(r#"{{"status":"{status}","message":"m"}}"#);
            assert_eq!(
                decision(body.as_bytes(), usd(), TransactionKind::Debit),
                Some(Decision::Declined {
                    reason,
                    message: "m".into()
                })
            );
        }
        assert_eq!(
            decision(br#"{"status":"MAYBE"}"#, usd(), TransactionKind::Debit),
            None
        );
        assert_eq!(decision(b"<html>", usd(), TransactionKind::Debit), None);
    }

    #[test]
    fn a_rollback_is_decided_only_by_success() {
        let done = br#"{"status":"SUCCESS","refunded":true,"balance":"100.00"}"#;
        assert_eq!(
            decision(done, usd(), TransactionKind::Rollback),
            Some(Decision::Approved {
                balance_minor: Some(10_000),
                reference: None
            })
        );
        for status in [
            "FAILED",
            "INSUFFICIENT_FUNDS",
            "PLAYER_NOT_FOUND",
            "CANCELLED",
        ] {
            let body = format!(r#"{{"status":"{status}"}}"#);
            assert_eq!(
                decision(body.as_bytes(), usd(), TransactionKind::Rollback),
                None,
                "{status}"
            );
        }
    }

    #[test]
    fn reads_a_balance_exactly_or_not_at_all() {
        assert_eq!(
            balance(br#"{"playerId":"p","balance":90.10,"currency":"USD"}"#),
            Some(BalanceAnswer::Balance {
                minor: 9010,
                currency: usd()
            })
        );
        assert_eq!(
            balance(br#"{"status":"PLAYER_NOT_FOUND"}"#),
            Some(BalanceAnswer::PlayerNotFound)
        );
        assert_eq!(balance(br#"{"balance":0.295,"currency":"USD"}"#), None);
        assert_eq!(balance(br#"{"balance":1,"currency":"XXX1"}"#), None);
        assert_eq!(balance(b"<html>"), None);
    }
}
