//! Queries on `transactions`: one row per wallet call, `PENDING` until the operator decides.

use chrono::NaiveDateTime;
use diesel::prelude::*;

use super::schema::transactions;
use super::{with_conn, DbConnection};

pub const PENDING: &str = "PENDING";
pub const COMPLETED: &str = "COMPLETED";
pub const REJECTED: &str = "REJECTED";

#[derive(Debug, Clone, PartialEq, Eq, Queryable, Selectable, Insertable)]
#[diesel(table_name = transactions)]
pub struct TransactionRow {
    pub id: String,
    pub idempotency_key: String,
    pub ref_id: String,
    pub player_id: String,
    pub kind: String,
    pub amount_cents: i64,
    pub currency: String,
    pub status: String,
    pub reason: Option<String>,
    pub balance_cents: Option<i64>,
    pub operator_reference: Option<String>,
    pub meta: Option<String>,
    pub correlation_id: Option<String>,
    pub created_at: NaiveDateTime,
    pub updated_at: NaiveDateTime,
}

/// The operator's decision, written once onto a `PENDING` row.
#[derive(Debug, Clone, AsChangeset)]
#[diesel(table_name = transactions, treat_none_as_null = true)]
pub struct Settlement {
    pub status: &'static str,
    pub reason: Option<String>,
    pub balance_cents: Option<i64>,
    pub operator_reference: Option<String>,
    pub updated_at: NaiveDateTime,
}

impl Settlement {
    /// `pending` as it reads once this settlement is written.
    pub fn applied_to(&self, pending: &TransactionRow) -> TransactionRow {
        TransactionRow {
            status: self.status.to_owned(),
            reason: self.reason.clone(),
            balance_cents: self.balance_cents,
            operator_reference: self.operator_reference.clone(),
            updated_at: self.updated_at,
            ..pending.clone()
        }
    }
}

pub fn insert(conn: &mut DbConnection, row: &TransactionRow) -> QueryResult<()> {
    with_conn!(conn, |c| diesel::insert_into(transactions::table)
        .values(row)
        .execute(c))
    .map(|_| ())
}

/// Inserts many rows in one statement (imports, benchmarks); all or none.
pub fn insert_many(conn: &mut DbConnection, rows: &[TransactionRow]) -> QueryResult<usize> {
    with_conn!(conn, |c| diesel::insert_into(transactions::table)
        .values(rows)
        .execute(c))
}

pub fn find(conn: &mut DbConnection, id: &str) -> QueryResult<Option<TransactionRow>> {
    with_conn!(conn, |c| transactions::table
        .find(id)
        .select(TransactionRow::as_select())
        .first(c)
        .optional())
}

/// The transaction an Idempotency-Key created, if any.
pub fn find_by_idempotency_key(
    conn: &mut DbConnection,
    key: &str,
) -> QueryResult<Option<TransactionRow>> {
    with_conn!(conn, |c| transactions::table
        .filter(transactions::idempotency_key.eq(key))
        .select(TransactionRow::as_select())
        .first(c)
        .optional())
}

/// Settles a `PENDING` transaction; false if it was not pending any more.
pub fn settle(conn: &mut DbConnection, id: &str, settlement: &Settlement) -> QueryResult<bool> {
    let pending = transactions::table
        .filter(transactions::id.eq(id))
        .filter(transactions::status.eq(PENDING));
    with_conn!(conn, |c| diesel::update(pending).set(settlement).execute(c)).map(|n| n == 1)
}

/// Up to `limit` transactions created in `[from, to]` with ids after `after`, in byte order
/// of id: one page of the hub's side of a reconciliation.
pub fn page_by_id(
    conn: &mut DbConnection,
    from: NaiveDateTime,
    to: NaiveDateTime,
    after: &str,
    limit: i64,
) -> QueryResult<Vec<TransactionRow>> {
    with_conn!(conn, |c| transactions::table
        .filter(transactions::id.gt(after))
        .filter(transactions::created_at.between(from, to))
        .order(transactions::id.asc())
        .limit(limit)
        .select(TransactionRow::as_select())
        .load(c))
}

/// Transactions still `PENDING` since before `older_than` whose Idempotency-Key nobody holds:
/// their client gave up or their replica died. With the key each belongs to.
pub fn abandoned(
    conn: &mut DbConnection,
    older_than: NaiveDateTime,
    now: NaiveDateTime,
    limit: i64,
) -> QueryResult<Vec<(TransactionRow, String)>> {
    use super::schema::idempotency_keys as keys;
    with_conn!(conn, |c| transactions::table
        .inner_join(keys::table.on(keys::transaction_id.eq(transactions::id)))
        .filter(transactions::status.eq(PENDING))
        .filter(transactions::created_at.lt(older_than))
        .filter(keys::state.eq(super::idempotency_keys::IN_PROGRESS))
        .filter(keys::locked_until.is_null().or(keys::locked_until.le(now)))
        .order(transactions::created_at.asc())
        .limit(limit)
        .select((TransactionRow::as_select(), keys::idempotency_key))
        .load(c))
}
