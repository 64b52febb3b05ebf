//! Transactions a person must look at (flagged by the recovery policy), shared by the admin
//! API and `hub transactions review`.

use chrono::{DateTime, Utc};
use serde::Serialize;

use crate::store::transactions::{self, TransactionRow};
use crate::store::{Store, StoreError};

#[derive(Debug, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct UnderReview {
    pub transaction_id: String,
    pub ref_id: String,
    pub player_id: String,
    /// `CREDIT` or `ROLLBACK` (still retried), or `DEBIT` (never charged late: the hub
    /// cancels it with a rollback).
    pub kind: String,
    pub amount_cents: i64,
    pub currency: String,
    pub created_at: DateTime<Utc>,
    pub review_since: Option<DateTime<Utc>>,
    pub recovery_attempts: i32,
    /// When the completer tries again; absent for a debit whose rollback decides it now.
    pub next_recovery_at: Option<DateTime<Utc>>,
    pub correlation_id: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub round_id: Option<String>,
    /// A rollback's: the debit it cancels.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub original_ref_id: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub original_transaction_id: Option<String>,
}

impl From<TransactionRow> for UnderReview {
    fn from(row: TransactionRow) -> Self {
        Self {
            transaction_id: row.id,
            ref_id: row.ref_id,
            player_id: row.player_id,
            kind: row.kind,
            amount_cents: row.amount_cents,
            currency: row.currency,
            created_at: row.created_at.and_utc(),
            review_since: row.review_since.map(|t| t.and_utc()),
            recovery_attempts: row.recovery_attempts,
            next_recovery_at: row.next_recovery_at.map(|t| t.and_utc()),
            correlation_id: row.correlation_id,
            round_id: row.round_id,
            original_ref_id: row.original_ref_id,
            original_transaction_id: row.original_transaction_id,
        }
    }
}

/// Up to `limit` `PENDING` transactions flagged for review, longest-waiting first.
pub async fn under_review(store: &Store, limit: i64) -> Result<Vec<UnderReview>, StoreError> {
    let limit = limit.clamp(1, 1000);
    let rows = store
        .run(move |conn| transactions::under_review(conn, limit).map_err(StoreError::from))
        .await?;
    Ok(rows.into_iter().map(UnderReview::from).collect())
}
