//! Queries on `transactions`: one row per wallet call, `PENDING` until the operator decides.

use chrono::NaiveDateTime;
use diesel::prelude::*;

use super::schema::transactions;
use super::{with_conn, DbConnection, StoreError};

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
    /// Rounds of the completer on this transaction while it was `PENDING`.
    pub recovery_attempts: i32,
    /// When the completer may next act on it; `None` once settled or parked for review.
    pub next_recovery_at: Option<NaiveDateTime>,
    /// When it was flagged for a person to look at, if it was.
    pub review_since: Option<NaiveDateTime>,
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
    /// Always `None`: a settled transaction leaves the completer's queue.
    pub next_recovery_at: Option<NaiveDateTime>,
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
            next_recovery_at: self.next_recovery_at,
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

/// What the completer does with a due transaction it takes off its queue.
#[derive(Debug, Clone, Copy)]
pub struct Reschedule {
    /// When it is due again if this round does not settle it.
    pub next_recovery_at: Option<NaiveDateTime>,
    /// Flag it for review now (kept if it already was).
    pub flag_for_review: bool,
}

/// Takes up to `limit` due `PENDING` transactions off the completer's queue, fewest rounds
/// first, and moves each one on as `plan` says (one more round, its next due time, the
/// review flag) before anyone calls the operator: a round that crashes or fails leaves it
/// rescheduled, never stuck at the head of the queue. Returns them as they now read.
pub fn take_due(
    conn: &mut DbConnection,
    now: NaiveDateTime,
    limit: i64,
    plan: impl Fn(&TransactionRow) -> Reschedule,
) -> Result<Vec<TransactionRow>, StoreError> {
    use transactions::dsl as t;
    conn.write_transaction(|conn| {
        // A row queued by a replica older than the recovery policy has no schedule: adopt it.
        let unscheduled = t::transactions
            .filter(t::status.eq(PENDING))
            .filter(t::next_recovery_at.is_null())
            .filter(t::review_since.is_null());
        with_conn!(conn, |c| diesel::update(unscheduled)
            .set(t::next_recovery_at.eq(t::created_at.nullable()))
            .execute(c))?;
        // Expanded per backend: `as_select` is typed by the backend it loads from.
        macro_rules! due {
            () => {
                t::transactions
                    .filter(t::status.eq(PENDING))
                    .filter(t::next_recovery_at.le(now))
                    .order((t::recovery_attempts.asc(), t::next_recovery_at.asc()))
                    .limit(limit)
                    .select(TransactionRow::as_select())
            };
        }
        // Replicas' completers skip each other's rows (SQLite has one writer at a time).
        let rows: Vec<TransactionRow> = match conn {
            DbConnection::Postgres(c) => due!().for_update().skip_locked().load(c)?,
            DbConnection::Sqlite(c) => due!().load(c)?,
        };
        let mut taken = Vec::with_capacity(rows.len());
        for row in rows {
            let reschedule = plan(&row);
            let moved = TransactionRow {
                recovery_attempts: row.recovery_attempts.saturating_add(1),
                next_recovery_at: reschedule.next_recovery_at,
                review_since: row
                    .review_since
                    .or(reschedule.flag_for_review.then_some(now)),
                ..row
            };
            let change = (
                t::recovery_attempts.eq(moved.recovery_attempts),
                t::next_recovery_at.eq(moved.next_recovery_at),
                t::review_since.eq(moved.review_since),
            );
            let target = t::transactions.filter(t::id.eq(&moved.id));
            with_conn!(conn, |c| diesel::update(target).set(change).execute(c))?;
            taken.push(moved);
        }
        Ok(taken)
    })
}

/// `PENDING` transactions flagged for review, longest-waiting first.
pub fn under_review(conn: &mut DbConnection, limit: i64) -> QueryResult<Vec<TransactionRow>> {
    with_conn!(conn, |c| transactions::table
        .filter(transactions::status.eq(PENDING))
        .filter(transactions::review_since.is_not_null())
        .order(transactions::review_since.asc())
        .limit(limit)
        .select(TransactionRow::as_select())
        .load(c))
}

/// How many `PENDING` transactions are flagged for review.
pub fn count_under_review(conn: &mut DbConnection) -> QueryResult<i64> {
    with_conn!(conn, |c| transactions::table
        .filter(transactions::status.eq(PENDING))
        .filter(transactions::review_since.is_not_null())
        .count()
        .get_result(c))
}
