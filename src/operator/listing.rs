//! The operator's transaction listing (`GET /v2/transactions`), read for reconciliation.

use chrono::{DateTime, Utc};
use serde::Deserialize;
use serde_json::value::RawValue;

#[derive(Debug, Clone)]
pub struct ListQuery {
    pub start: DateTime<Utc>,
    pub end: DateTime<Utc>,
    pub limit: usize,
    pub cursor: Option<String>,
}

/// The operator's transaction types (`type`). Any other type is kept as it is, and
/// reconciliation reports it as a mismatch instead of failing on it.
pub const WITHDRAW: &str = "WITHDRAW";
pub const DEPOSIT: &str = "DEPOSIT";
/// Cancels a withdraw (DESIGN §8); carries `originalTransactionId` and what it refunded.
pub const ROLLBACK: &str = "ROLLBACK";

/// The operator's statuses that reconciliation tells apart; any other status (a refusal
/// such as `INSUFFICIENT_FUNDS`, or one never seen before) means that nothing moved.
pub const SUCCESS: &str = "SUCCESS";
/// A withdraw that arrived after a rollback had cancelled its id: refused, nothing moved.
pub const CANCELLED: &str = "CANCELLED";

/// One transaction as the operator records it; amounts stay exact decimal text.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OperatorTransaction {
    pub transaction_id: String,
    pub player_id: String,
    /// [`WITHDRAW`], [`DEPOSIT`] or [`ROLLBACK`] (or anything else the operator sends).
    pub kind: String,
    /// For a rollback, the amount it was asked to give back.
    pub amount: String,
    pub currency: String,
    pub status: String,
    pub created_at: DateTime<Utc>,
    /// A rollback's: the withdraw it cancels.
    pub original_transaction_id: Option<String>,
    /// A rollback's: whether it gave money back (false when the withdraw was never charged,
    /// or already refunded by another rollback).
    pub refunded: Option<bool>,
    /// A rollback's: what it actually gave back, exact decimal text in `currency`.
    pub refunded_amount: Option<String>,
}

impl OperatorTransaction {
    /// A rollback that gave money back for `original_transaction_id`.
    pub fn refund_of(&self) -> Option<&str> {
        if self.kind == ROLLBACK && self.status == SUCCESS && self.refunded == Some(true) {
            self.original_transaction_id.as_deref()
        } else {
            None
        }
    }
}

#[derive(Debug, Clone)]
pub struct Page {
    pub transactions: Vec<OperatorTransaction>,
    pub next_cursor: Option<String>,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct RawPage {
    data: Vec<RawTransaction>,
    next_cursor: Option<String>,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct RawTransaction {
    transaction_id: String,
    player_id: String,
    #[serde(rename = "type")]
    kind: String,
    amount: Box<RawValue>,
    currency: String,
    status: String,
    created_at: DateTime<Utc>,
    #[serde(default)]
    original_transaction_id: Option<String>,
    #[serde(default)]
    refunded: Option<bool>,
    #[serde(default)]
    refunded_amount: Option<Box<RawValue>>,
}

/// A JSON amount (number or string) as exact decimal text: never through a float.
fn exact_text(raw: &RawValue) -> String {
    raw.get().trim_matches('"').to_owned()
}

pub fn parse_page(body: &[u8]) -> Result<Page, serde_json::Error> {
    let raw: RawPage = serde_json::from_slice(body)?;
    let transactions = raw
        .data
        .into_iter()
        .map(|t| OperatorTransaction {
            transaction_id: t.transaction_id,
            player_id: t.player_id,
            kind: t.kind,
            amount: exact_text(&t.amount),
            currency: t.currency,
            status: t.status,
            created_at: t.created_at,
            original_transaction_id: t.original_transaction_id,
            refunded: t.refunded,
            refunded_amount: t.refunded_amount.as_deref().map(exact_text),
        })
        .collect();
    Ok(Page {
        transactions,
        next_cursor: raw.next_cursor,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keeps_amounts_as_exact_text() {
        let body = br#"{"data":[{"transactionId":"t1","playerId":"p","type":"WITHDRAW","amount":10.10,
            "currency":"USD","status":"SUCCESS","createdAt":"2026-11-24T00:00:00.123Z"}],"nextCursor":"t1"}"#;
        let page = parse_page(body).unwrap();
        assert_eq!(page.transactions[0].amount, "10.10");
        assert_eq!(page.next_cursor.as_deref(), Some("t1"));
        assert_eq!(page.transactions[0].original_transaction_id, None);
        assert_eq!(page.transactions[0].refund_of(), None);
    }

    #[test]
    fn reads_rollbacks_and_cancelled_withdraws() {
        let body = br#"{"data":[
            {"transactionId":"r1","playerId":"p","type":"ROLLBACK","amount":0.30,"currency":"USD",
             "status":"SUCCESS","createdAt":"2026-11-24T00:00:01Z","originalTransactionId":"t1",
             "refunded":true,"refundedAmount":0.30},
            {"transactionId":"r2","playerId":"p","type":"ROLLBACK","amount":"12.345","currency":"KWD",
             "status":"SUCCESS","createdAt":"2026-11-24T00:00:02Z","originalTransactionId":"t2",
             "refunded":false,"refundedAmount":0},
            {"transactionId":"t3","playerId":"p","type":"WITHDRAW","amount":1,"currency":"USD",
             "status":"CANCELLED","createdAt":"2026-11-24T00:00:03Z"}],"nextCursor":null}"#;
        let page = parse_page(body).unwrap();
        let [refund, cancel, withdraw] = &page.transactions[..] else {
            panic!("three transactions");
        };
        assert_eq!(refund.original_transaction_id.as_deref(), Some("t1"));
        assert_eq!(refund.refunded_amount.as_deref(), Some("0.30"));
        assert_eq!(refund.refund_of(), Some("t1"));
        assert_eq!(cancel.amount, "12.345", "exact text, never a float");
        assert_eq!(cancel.refunded, Some(false));
        assert_eq!(cancel.refund_of(), None, "gave nothing back");
        assert_eq!(withdraw.status, CANCELLED);
        assert_eq!(page.next_cursor, None);
    }

    #[test]
    fn unknown_types_and_statuses_are_kept_and_bad_fields_are_an_error() {
        let body = br#"{"data":[{"transactionId":"x","playerId":"p","type":"BONUS","amount":1,
            "currency":"USD","status":"ON_HOLD","createdAt":"2026-11-24T00:00:00Z"}],"nextCursor":null}"#;
        let page = parse_page(body).unwrap();
        assert_eq!(
            (
                page.transactions[0].kind.as_str(),
                page.transactions[0].status.as_str()
            ),
            ("BONUS", "ON_HOLD")
        );
        let bad = br#"{"data":[{"transactionId":"r","playerId":"p","type":"ROLLBACK","amount":1,
            "currency":"USD","status":"SUCCESS","createdAt":"2026-11-24T00:00:00Z",
            "originalTransactionId":"t","refunded":"yes"}],"nextCursor":null}"#;
        assert!(parse_page(bad).is_err(), "refunded must be a boolean");
    }
}
