//! Queries on `webhook_outbox` and `webhook_attempts`: one row per event the RGS must hear
//! about, claimed by one drainer at a time under a lease, with every attempt kept.

use chrono::NaiveDateTime;
use diesel::prelude::*;

use super::schema::{webhook_attempts, webhook_outbox};
use super::{with_conn, DbConnection, StoreError};

pub const PENDING: &str = "PENDING";
pub const DELIVERED: &str = "DELIVERED";
pub const DEAD_LETTER: &str = "DEAD_LETTER";

/// The Postgres channel that wakes every replica's drainer when an event is queued.
pub const CHANNEL: &str = "hub_outbox";

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
    pub locked_by: Option<String>,
    pub last_error: Option<String>,
    pub correlation_id: Option<String>,
    pub created_at: NaiveDateTime,
    pub updated_at: NaiveDateTime,
    pub delivered_at: Option<NaiveDateTime>,
}

#[derive(Debug, Clone, PartialEq, Eq, Queryable, Selectable, Insertable)]
#[diesel(table_name = webhook_attempts)]
#[diesel(check_for_backend(diesel::pg::Pg, diesel::sqlite::Sqlite))]
pub struct AttemptRow {
    #[diesel(skip_insertion)]
    pub id: i64,
    pub outbox_id: String,
    pub attempt: i32,
    pub attempted_at: NaiveDateTime,
    pub status_code: Option<i32>,
    pub error: Option<String>,
    pub duration_ms: i64,
    pub worker: String,
}

/// Where an event goes after an attempt.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AfterAttempt {
    Delivered,
    RetryAt(NaiveDateTime),
    DeadLetter,
}

/// One delivery attempt, where its event goes next, and the claim it was made under (the
/// `locked_by` it was claimed with): only that claim may move the event on, so an outcome
/// that arrives after its lease lapsed and the event was claimed again changes nothing.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Outcome {
    pub attempt: AttemptRow,
    pub after: AfterAttempt,
    pub claim: String,
}

/// Queues an event; on Postgres also notifies every listening drainer at commit.
pub fn insert(conn: &mut DbConnection, row: &NewOutboxRow) -> QueryResult<()> {
    insert_many(conn, &[row])
}

/// Queues events in one statement with one `NOTIFY`: Postgres's notify queue takes a
/// global lock at commit, so one per group, not one per event.
pub fn insert_many(conn: &mut DbConnection, rows: &[&NewOutboxRow]) -> QueryResult<()> {
    if rows.is_empty() {
        return Ok(());
    }
    with_conn!(conn, |c| diesel::insert_into(webhook_outbox::table)
        .values(rows.to_vec())
        .execute(c))?;
    notify(conn)
}

fn notify(conn: &mut DbConnection) -> QueryResult<()> {
    if let DbConnection::Postgres(c) = conn {
        diesel::sql_query(format!("NOTIFY {CHANNEL}")).execute(c)?;
    }
    Ok(())
}

/// Claims up to `limit` due events under `claim` (unique to this claim) until `lease_until`. Rows another drainer
/// holds are skipped (`FOR UPDATE SKIP LOCKED` on Postgres; SQLite has one writer at a time),
/// and rows whose lease ran out are due again.
pub fn claim_due(
    conn: &mut DbConnection,
    claim: &str,
    now: NaiveDateTime,
    lease_until: NaiveDateTime,
    limit: i64,
) -> Result<Vec<OutboxRow>, StoreError> {
    use webhook_outbox::dsl as o;
    conn.write_transaction(|conn| {
        let due = o::webhook_outbox
            .filter(o::status.eq(PENDING))
            .filter(o::next_attempt_at.le(now))
            .filter(o::locked_until.is_null().or(o::locked_until.le(now)))
            .order(o::next_attempt_at.asc())
            .limit(limit)
            .select(o::id);
        let ids: Vec<String> = match conn {
            DbConnection::Postgres(c) => due.for_update().skip_locked().load(c)?,
            DbConnection::Sqlite(c) => due.load(c)?,
        };
        if ids.is_empty() {
            return Ok(Vec::new());
        }
        let lease = (
            o::locked_until.eq(lease_until),
            o::locked_by.eq(claim),
            o::updated_at.eq(now),
        );
        with_conn!(conn, |c| diesel::update(
            o::webhook_outbox.filter(o::id.eq_any(&ids))
        )
        .set(lease)
        .execute(c))?;
        let claimed = with_conn!(conn, |c| o::webhook_outbox
            .filter(o::id.eq_any(&ids))
            .order(o::next_attempt_at.asc())
            .select(OutboxRow::as_select())
            .load(c))?;
        Ok(claimed)
    })
}

/// Records a group of attempts, and moves each event on if its claim still holds it, in one
/// database transaction. The attempts are kept either way: they are what the RGS was told.
/// Returns how many events moved.
pub fn record_attempts(
    conn: &mut DbConnection,
    outcomes: &[Outcome],
    now: NaiveDateTime,
) -> Result<usize, StoreError> {
    use webhook_outbox::dsl as o;
    let rows: Vec<&AttemptRow> = outcomes.iter().map(|outcome| &outcome.attempt).collect();
    conn.write_transaction(|conn| {
        with_conn!(conn, |c| diesel::insert_into(webhook_attempts::table)
            .values(rows.clone())
            .execute(c))?;
        let mut moved = 0;
        for Outcome {
            attempt,
            after,
            claim,
        } in outcomes
        {
            let (status, next_attempt_at, delivered_at) = match after {
                AfterAttempt::Delivered => (DELIVERED, now, Some(now)),
                AfterAttempt::RetryAt(at) => (PENDING, *at, None),
                AfterAttempt::DeadLetter => (DEAD_LETTER, now, None),
            };
            let last_error = match after {
                AfterAttempt::Delivered => None,
                _ => attempt.error.clone(),
            };
            let held = o::webhook_outbox
                .filter(o::id.eq(&attempt.outbox_id))
                .filter(o::status.eq(PENDING))
                .filter(o::locked_by.eq(claim));
            let change = (
                o::status.eq(status),
                o::attempts.eq(attempt.attempt),
                o::next_attempt_at.eq(next_attempt_at),
                o::last_error.eq(last_error),
                o::delivered_at.eq(delivered_at),
                o::locked_until.eq(None::<NaiveDateTime>),
                o::locked_by.eq(None::<String>),
                o::updated_at.eq(now),
            );
            moved += with_conn!(conn, |c| diesel::update(held).set(change).execute(c))?;
        }
        Ok(moved)
    })
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

pub fn find(conn: &mut DbConnection, id: &str) -> QueryResult<Option<OutboxRow>> {
    with_conn!(conn, |c| webhook_outbox::table
        .find(id)
        .select(OutboxRow::as_select())
        .first(c)
        .optional())
}

pub fn attempts_of(conn: &mut DbConnection, outbox_id: &str) -> QueryResult<Vec<AttemptRow>> {
    with_conn!(conn, |c| webhook_attempts::table
        .filter(webhook_attempts::outbox_id.eq(outbox_id))
        .order((
            webhook_attempts::attempted_at.asc(),
            webhook_attempts::id.asc()
        ))
        .select(AttemptRow::as_select())
        .load(c))
}

/// Which events to list; every part optional. Times bound `created_at`, both inclusive.
#[derive(Debug, Clone, Default)]
pub struct Window {
    pub status: Option<String>,
    pub from: Option<NaiveDateTime>,
    pub to: Option<NaiveDateTime>,
}

pub fn list(conn: &mut DbConnection, window: &Window, limit: i64) -> QueryResult<Vec<OutboxRow>> {
    use webhook_outbox::dsl as o;
    // Expanded once per backend: a boxed query is tied to the backend of `c`.
    with_conn!(conn, |c| {
        let mut query = o::webhook_outbox
            .select(OutboxRow::as_select())
            .into_boxed();
        if let Some(status) = &window.status {
            query = query.filter(o::status.eq(status.clone()));
        }
        if let Some(from) = window.from {
            query = query.filter(o::created_at.ge(from));
        }
        if let Some(to) = window.to {
            query = query.filter(o::created_at.le(to));
        }
        query
            .order((o::created_at.desc(), o::id.desc()))
            .limit(limit)
            .load(c)
    })
}

/// Queues events again from the first step of the schedule, keeping their event ids.
/// `only_status` limits the replay to events in that state (e.g. dead letters).
pub fn requeue(
    conn: &mut DbConnection,
    ids: &[String],
    only_status: &[&str],
    now: NaiveDateTime,
) -> QueryResult<usize> {
    use webhook_outbox::dsl as o;
    let target = o::webhook_outbox
        .filter(o::id.eq_any(ids))
        .filter(o::status.eq_any(only_status));
    let queued = (
        o::status.eq(PENDING),
        o::attempts.eq(0),
        o::next_attempt_at.eq(now),
        o::locked_until.eq(None::<NaiveDateTime>),
        o::locked_by.eq(None::<String>),
        o::delivered_at.eq(None::<NaiveDateTime>),
        o::updated_at.eq(now),
    );
    let requeued = with_conn!(conn, |c| diesel::update(target).set(queued).execute(c))?;
    notify(conn)?;
    Ok(requeued)
}

/// Deletes up to `limit` events delivered before `before`, with their attempts.
pub fn prune_delivered(
    conn: &mut DbConnection,
    before: NaiveDateTime,
    limit: i64,
) -> Result<usize, StoreError> {
    use webhook_outbox::dsl as o;
    conn.write_transaction(|conn| {
        let old = o::webhook_outbox
            .filter(o::status.eq(DELIVERED))
            .filter(o::delivered_at.lt(before))
            .order(o::delivered_at.asc())
            .limit(limit)
            .select(o::id);
        let ids: Vec<String> = with_conn!(conn, |c| old.load(c))?;
        if ids.is_empty() {
            return Ok(0);
        }
        let attempts = webhook_attempts::table.filter(webhook_attempts::outbox_id.eq_any(&ids));
        with_conn!(conn, |c| diesel::delete(attempts).execute(c))?;
        let events = o::webhook_outbox.filter(o::id.eq_any(&ids));
        Ok(with_conn!(conn, |c| diesel::delete(events).execute(c))?)
    })
}

/// What `/metrics` shows of the outbox: the rows still to deliver, the dead letters and the
/// oldest due time. Each is read from an index over its own status only, never from the
/// (retention-long) history of delivered rows.
pub struct OutboxStats {
    pub pending: i64,
    pub dead_letters: i64,
    pub oldest_due: Option<NaiveDateTime>,
}

pub fn stats(conn: &mut DbConnection, now: NaiveDateTime) -> QueryResult<OutboxStats> {
    use diesel::dsl::min;
    use webhook_outbox::dsl as o;
    let count = |conn: &mut DbConnection, status: &str| {
        with_conn!(conn, |c| o::webhook_outbox
            .filter(o::status.eq(status))
            .count()
            .get_result::<i64>(c))
    };
    let pending = count(conn, PENDING)?;
    let dead_letters = count(conn, DEAD_LETTER)?;
    let oldest_due = with_conn!(conn, |c| o::webhook_outbox
        .filter(o::status.eq(PENDING))
        .filter(o::next_attempt_at.le(now))
        .select(min(o::next_attempt_at))
        .first::<Option<NaiveDateTime>>(c))?;
    Ok(OutboxStats {
        pending,
        dead_letters,
        oldest_due,
    })
}
