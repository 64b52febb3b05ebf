//! Queries on `webhook_outbox`: one row per event the RGS must hear about.

use chrono::NaiveDateTime;
use diesel::prelude::*;

use super::schema::webhook_outbox;
use super::{with_conn, DbConnection};

pub const PENDING: &str = "PENDING";

#[derive(Debug, Clone, Insertable)]
#[diesel(table_name = webhook_outbox)]
pub struct NewOutboxRow {
    /// The event id the RGS deduplicates on; stable across retries and replays.
    pub id: String,
    pub transaction_id: String,
    pub event_type: String,
    pub payload: String,
    pub status: &'static str,
    pub attempts: i32,
    pub next_attempt_at: NaiveDateTime,
    pub correlation_id: Option<String>,
    pub created_at: NaiveDateTime,
    pub updated_at: NaiveDateTime,
}

#[derive(Debug, Clone, PartialEq, Eq, Queryable, Selectable)]
#[diesel(table_name = webhook_outbox)]
pub struct OutboxRow {
    pub id: String,
    pub transaction_id: String,
    pub event_type: String,
    pub payload: String,
    pub status: String,
    pub attempts: i32,
    pub next_attempt_at: NaiveDateTime,
    pub locked_until: Option<NaiveDateTime>,
    pub last_error: Option<String>,
    pub correlation_id: Option<String>,
    pub created_at: NaiveDateTime,
    pub updated_at: NaiveDateTime,
    pub delivered_at: Option<NaiveDateTime>,
}

/// Every event recorded for one transaction, oldest first.
pub fn for_transaction(
    conn: &mut DbConnection,
    transaction_id: &str,
) -> QueryResult<Vec<OutboxRow>> {
    with_conn!(conn, |c| webhook_outbox::table
        .filter(webhook_outbox::transaction_id.eq(transaction_id))
        .order(webhook_outbox::created_at.asc())
        .select(OutboxRow::as_select())
        .load(c))
}

pub fn insert(conn: &mut DbConnection, row: &NewOutboxRow) -> QueryResult<()> {
    with_conn!(conn, |c| diesel::insert_into(webhook_outbox::table)
        .values(row)
        .execute(c))
    .map(|_| ())
}
