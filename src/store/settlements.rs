//! Settlements, grouped: for many requests at once, the key's stored answer, the
//! transaction's outcome and the webhook's outbox row, in one database transaction with one
//! statement per table and one `NOTIFY`.
//!
//! Each settlement counts only while its request still holds the key's lease: one whose
//! lease was taken over writes nothing and comes back `false`, without touching its
//! neighbours. A transaction that is not `PENDING` although its lease held is an invariant
//! broken: the whole group fails (and [`super::group_commit`] writes its items one by one,
//! so only that one fails).

use std::collections::HashSet;

use diesel::prelude::*;
use diesel::sql_types::{BigInt, Integer, Nullable, Text, Timestamp};

use super::group_commit::GroupWrite;
use super::outbox::{self, NewOutboxRow};
use super::transactions::{self, Settlement};
use super::values::{Placeholders, ReturnedId};
use super::{with_conn, DbConnection, StoreError};

/// What one request writes once the operator has decided.
#[derive(Debug, Clone)]
pub struct SettleRow {
    pub key: String,
    pub lease_token: String,
    pub response_status: u16,
    pub response_body: String,
    pub transaction_id: String,
    pub settlement: Settlement,
    /// A rollback's original debit, marked `ROLLED_BACK` in the same database transaction.
    pub rolls_back: Option<String>,
    pub event: NewOutboxRow,
}

/// Writes every settlement whose lease still holds; `true` for each one written.
pub fn settle_many(conn: &mut DbConnection, rows: &[SettleRow]) -> Result<Vec<bool>, StoreError> {
    refuse_repeats(rows)?;
    conn.write_transaction(|conn| {
        let completed = complete_keys(conn, rows)?;
        let held: Vec<&SettleRow> = rows
            .iter()
            .filter(|row| completed.contains(&row.key))
            .collect();
        let settled = settle_transactions(conn, &held)?;
        if let Some(lost) = held
            .iter()
            .find(|row| !settled.contains(&row.transaction_id))
        {
            return Err(StoreError::Invariant(format!(
                "transaction {} was no longer pending",
                lost.transaction_id
            )));
        }
        for row in &held {
            if let Some(original) = &row.rolls_back {
                transactions::mark_rolled_back(conn, original, row.settlement.updated_at)?;
            }
        }
        let events: Vec<NewOutboxRow> = held.iter().map(|row| row.event.clone()).collect();
        outbox::insert_many(conn, &events)?;
        Ok(rows
            .iter()
            .map(|row| completed.contains(&row.key))
            .collect())
    })
}

/// Two settlements of one key (a request whose lease lapsed and the one that took it over)
/// cannot share a group: the statements tell rows apart by key and transaction id, and an
/// `UPDATE … FROM` joins one target row to whichever of its matches it meets first. The
/// group is refused, so that its items are written one by one and only the lease holder's
/// counts.
fn refuse_repeats(rows: &[SettleRow]) -> Result<(), StoreError> {
    let mut keys = HashSet::new();
    let mut transactions = HashSet::new();
    for row in rows {
        if !keys.insert(row.key.as_str()) || !transactions.insert(row.transaction_id.as_str()) {
            return Err(StoreError::Invariant(format!(
                "transaction {} is settled twice in one group",
                row.transaction_id
            )));
        }
    }
    Ok(())
}

/// Stores each answer on its key if the request's lease still holds it; the keys stored.
fn complete_keys(
    conn: &mut DbConnection,
    rows: &[SettleRow],
) -> Result<HashSet<String>, StoreError> {
    if rows.is_empty() {
        return Ok(HashSet::new());
    }
    let mut marks = Placeholders::for_connection(conn);
    let sql = format!(
        "WITH v (v_key, v_token, v_status, v_body, v_now) AS (VALUES {}) \
         UPDATE idempotency_keys SET state = 'COMPLETED', response_status = v.v_status, \
         response_body = v.v_body, lease_token = NULL, locked_until = NULL, updated_at = v.v_now \
         FROM v WHERE idempotency_keys.idempotency_key = v.v_key \
         AND idempotency_keys.state = 'IN_PROGRESS' AND idempotency_keys.lease_token = v.v_token \
         RETURNING idempotency_key AS id",
        marks.rows(rows.len(), 5)
    );
    let returned: Vec<ReturnedId> = with_conn!(conn, |c| {
        let mut query = diesel::sql_query(sql).into_boxed();
        for row in rows {
            query = query
                .bind::<Text, _>(&row.key)
                .bind::<Text, _>(&row.lease_token)
                .bind::<Integer, _>(i32::from(row.response_status))
                .bind::<Text, _>(&row.response_body)
                .bind::<Timestamp, _>(row.settlement.updated_at);
        }
        query.load(c)
    })?;
    Ok(returned.into_iter().map(|r| r.id).collect())
}

/// Writes each outcome onto its transaction if it is still `PENDING`; the ids written.
fn settle_transactions(
    conn: &mut DbConnection,
    rows: &[&SettleRow],
) -> Result<HashSet<String>, StoreError> {
    if rows.is_empty() {
        return Ok(HashSet::new());
    }
    let mut marks = Placeholders::for_connection(conn);
    let sql = format!(
        "WITH v (v_id, v_status, v_reason, v_balance, v_reference, v_now, v_next) AS (VALUES {}) \
         UPDATE transactions SET status = v.v_status, reason = v.v_reason, \
         balance_cents = v.v_balance, operator_reference = v.v_reference, \
         updated_at = v.v_now, next_recovery_at = v.v_next \
         FROM v WHERE transactions.id = v.v_id AND transactions.status = 'PENDING' \
         RETURNING id",
        marks.rows(rows.len(), 7)
    );
    let returned: Vec<ReturnedId> = with_conn!(conn, |c| {
        let mut query = diesel::sql_query(sql).into_boxed();
        for row in rows {
            let settlement = &row.settlement;
            query = query
                .bind::<Text, _>(&row.transaction_id)
                .bind::<Text, _>(settlement.status)
                .bind::<Nullable<Text>, _>(&settlement.reason)
                .bind::<Nullable<BigInt>, _>(settlement.balance_cents)
                .bind::<Nullable<Text>, _>(&settlement.operator_reference)
                .bind::<Timestamp, _>(settlement.updated_at)
                .bind::<Nullable<Timestamp>, _>(settlement.next_recovery_at);
        }
        query.load(c)
    })?;
    Ok(returned.into_iter().map(|r| r.id).collect())
}

/// [`settle_many`] as a group write.
pub struct SettleWrite;

impl GroupWrite for SettleWrite {
    type Item = SettleRow;
    type Output = bool;

    fn write_group(
        &self,
        conn: &mut DbConnection,
        items: &[SettleRow],
    ) -> Result<Vec<bool>, StoreError> {
        settle_many(conn, items)
    }

    fn name(&self) -> &'static str {
        "settle"
    }
}
