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

/// One transaction as the operator records it; the amount stays exact decimal text.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OperatorTransaction {
    pub transaction_id: String,
    pub player_id: String,
    /// `WITHDRAW` or `DEPOSIT`.
    pub kind: String,
    pub amount: String,
    pub currency: String,
    pub status: String,
    pub created_at: DateTime<Utc>,
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
            amount: t.amount.get().trim_matches('"').to_owned(),
            currency: t.currency,
            status: t.status,
            created_at: t.created_at,
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
    }
}
