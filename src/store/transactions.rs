//! Queries on `transactions`: one row per wallet call, `PENDING` until the operator decides.

use chrono::NaiveDateTime;
use diesel::prelude::*;

use super::schema::transactions;
use super::{with_conn, DbConnection, StoreError};

pub const PENDING: &str = "PENDING";
pub const COMPLETED: &str = "COMPLETED";
pub const REJECTED: &str = "REJECTED";
/// A debit cancelled by a rollback: refunded if it was charged, never applied if not.
pub const ROLLED_BACK: &str = "ROLLED_BACK";
/// The reason of a debit rolled back before its own outcome was known.
pub const CANCELLED: &str = "CANCELLED";

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
    /// When the completer may next act on it; `None` once settled, or while a rollback
    /// decides it.
    pub next_recovery_at: Option<NaiveDateTime>,
    /// When it was flagged for a person to look at, if it was.
    pub review_since: Option<NaiveDateTime>,
    pub round_id: Option<String>,
    pub round_closed: bool,
    /// A rollback's: the refId it cancels (always set on a rollback, never on others).
    pub original_ref_id: Option<String>,
    /// A rollback's: the debit it cancels; `None` for a tombstone (a refId never seen).
    pub original_transaction_id: Option<String>,
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

/// The transaction whose refId is `ref_id`, of any kind.
pub fn find_by_ref(conn: &mut DbConnection, ref_id: &str) -> QueryResult<Option<TransactionRow>> {
    with_conn!(conn, |c| transactions::table
        .filter(transactions::ref_id.eq(ref_id))
        .select(TransactionRow::as_select())
        .first(c)
        .optional())
}

/// The rollback (or tombstone) that names `original_ref_id`, if one was recorded.
pub fn rollback_of(
    conn: &mut DbConnection,
    original_ref_id: &str,
) -> QueryResult<Option<TransactionRow>> {
    with_conn!(conn, |c| transactions::table
        .filter(transactions::original_ref_id.eq(original_ref_id))
        .select(TransactionRow::as_select())
        .first(c)
        .optional())
}

/// Takes a `PENDING` transaction out of the completer's queue: something else (its
/// rollback) now decides it.
pub fn leave_recovery_queue(conn: &mut DbConnection, id: &str) -> QueryResult<()> {
    let pending = transactions::table
        .filter(transactions::id.eq(id))
        .filter(transactions::status.eq(PENDING));
    with_conn!(conn, |c| diesel::update(pending)
        .set(transactions::next_recovery_at.eq(None::<NaiveDateTime>))
        .execute(c))
    .map(|_| ())
}

/// Marks a debit `ROLLED_BACK` once its rollback is settled. One that was still `PENDING`
/// gets reason `CANCELLED` (its key's answer was 409, not a receipt); a `REJECTED` one
/// stays as it is, since nothing had moved.
pub fn mark_rolled_back(conn: &mut DbConnection, id: &str, now: NaiveDateTime) -> QueryResult<()> {
    use transactions::dsl as t;
    let pending = t::transactions
        .filter(t::id.eq(id))
        .filter(t::status.eq(PENDING));
    let cancelled = (
        t::status.eq(ROLLED_BACK),
        t::reason.eq(Some(CANCELLED)),
        t::next_recovery_at.eq(None::<NaiveDateTime>),
        t::updated_at.eq(now),
    );
    with_conn!(conn, |c| diesel::update(pending).set(cancelled).execute(c))?;
    let completed = t::transactions
        .filter(t::id.eq(id))
        .filter(t::status.eq(COMPLETED));
    let refunded = (t::status.eq(ROLLED_BACK), t::updated_at.eq(now));
    with_conn!(conn, |c| diesel::update(completed).set(refunded).execute(c)).map(|_| ())
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
