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

pub fn insert(conn: &mut DbConnection, row: &NewOutboxRow) -> QueryResult<()> {
    with_conn!(conn, |c| diesel::insert_into(webhook_outbox::table)
        .values(row)
        .execute(c))
    .map(|_| ())
}
