//! Queries on `webhook_outbox` and `webhook_attempts`: one row per event the RGS must hear
//! about, claimed by one drainer at a time under a lease, with every attempt kept.

use std::collections::HashSet;

use chrono::NaiveDateTime;
use diesel::prelude::*;
use diesel::sql_types::{BigInt, Integer, Nullable, Text, Timestamp};

use super::group_commit::GroupWrite;
use super::schema::{webhook_attempts, webhook_outbox};
use super::values::{Placeholders, ReturnedId};
use super::{with_conn, DbConnection, StoreError};

pub const PENDING: &str = "PENDING";
pub const DELIVERED: &str = "DELIVERED";
pub const DEAD_LETTER: &str = "DEAD_LETTER";

/// The Postgres channel that wakes every replica's drainer when an event is queued.
pub const CHANNEL: &str = "hub_outbox";

// `None` binds NULL rather than DEFAULT (the same for these columns, which have no default),
// so that SQLite inserts many rows in one statement instead of one statement per row.
#[derive(Debug, Clone, Insertable)]
#[diesel(table_name = webhook_outbox, treat_none_as_default_value = false)]
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

#[derive(Debug, Clone, PartialEq, Eq, Queryable, QueryableByName, Selectable)]
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

// `None` binds NULL rather than DEFAULT, as for `NewOutboxRow`: one INSERT per group on SQLite.
#[derive(Debug, Clone, PartialEq, Eq, Queryable, Selectable, Insertable)]
#[diesel(table_name = webhook_attempts, treat_none_as_default_value = false)]
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
    insert_many(conn, std::slice::from_ref(row))
}

/// Queues events in one statement (one per [`ROWS_PER_STATEMENT`] rows) and, on Postgres,
/// sends one NOTIFY for all of them: however many rows a settlement batch queues, each
/// listening drainer is woken once. Atomic only inside the caller's transaction when the
/// rows span several statements.
pub fn insert_many(conn: &mut DbConnection, rows: &[NewOutboxRow]) -> QueryResult<()> {
    if rows.is_empty() {
        return Ok(());
    }
    for chunk in rows.chunks(ROWS_PER_STATEMENT) {
        with_conn!(conn, |c| diesel::insert_into(webhook_outbox::table)
            .values(chunk)
            .execute(c))?;
    }
    notify(conn)
}

fn notify(conn: &mut DbConnection) -> QueryResult<()> {
    if let DbConnection::Postgres(c) = conn {
        diesel::sql_query(format!("NOTIFY {CHANNEL}")).execute(c)?;
    }
    Ok(())
}

/// Rows per multi-row statement: at most 10 bound values a row (an outbox row; an attempt or
/// a move has 7) plus one, which keeps every statement under SQLite's 32,766 bound values
/// (Postgres allows 65,535). Larger groups are split into several statements.
const ROWS_PER_STATEMENT: usize = 3_000;

/// Every column of [`OutboxRow`], for the claim's RETURNING.
const OUTBOX_COLUMNS: &str = "id, transaction_id, event_type, payload, status, attempts, \
     next_attempt_at, locked_until, locked_by, last_error, correlation_id, created_at, \
     updated_at, delivered_at";

/// The claim as one statement: lease the due, unheld rows and return them.
///
/// The due rows are chosen in a `MATERIALIZED` CTE, which runs exactly once. Written as a
/// plain `IN (subquery)`, Postgres may run the subquery more than once (as the inner side
/// of a join); a second run skips the rows this statement already updated and takes the
/// next ones under the LIMIT, so a claim of 2 leased 3 rows in the tests.
///
/// The UPDATE does not test `status` again, and need not: on Postgres `FOR UPDATE SKIP
/// LOCKED` skips rows another transaction holds and locks each row the CTE returns, and
/// under READ COMMITTED a row changed since the statement's snapshot is locked at its
/// newest version with the CTE's predicate evaluated again on that version. So every id is
/// PENDING, due and unleased when locked, and nobody can change it before this statement
/// commits; the UPDATE then writes that locked version. SQLite runs the whole statement
/// under its one write lock. Testing `status = 'PENDING'` again let Postgres walk every
/// PENDING row through the partial index and hash-join them with the 100 due ids (9 ms at a
/// backlog of 5,000, growing with it) instead of probing the primary key 100 times.
fn claim_sql(conn: &DbConnection) -> String {
    let mut p = Placeholders::for_connection(conn);
    let (lease_until, claim, now, limit) = (p.next(), p.next(), p.next(), p.next());
    let locking = match conn {
        DbConnection::Postgres(_) => " FOR UPDATE SKIP LOCKED",
        DbConnection::Sqlite(_) => "",
    };
    format!(
        "WITH due (due_id) AS MATERIALIZED (SELECT id FROM webhook_outbox \
         WHERE status = '{PENDING}' \
         AND next_attempt_at <= {now} AND (locked_until IS NULL OR locked_until <= {now}) \
         ORDER BY next_attempt_at LIMIT {limit}{locking}) \
         UPDATE webhook_outbox SET locked_until = {lease_until}, locked_by = {claim}, \
         updated_at = {now} \
         FROM due WHERE id = due_id \
         RETURNING {OUTBOX_COLUMNS}"
    )
}

/// Claims up to `limit` due events under `claim` (unique to this claim) until `lease_until`,
/// in one statement, oldest due first. Rows another drainer holds are skipped (`FOR UPDATE
/// SKIP LOCKED` on Postgres; SQLite has one writer at a time), and rows whose lease ran out
/// are due again. One statement is atomic on its own, and on SQLite a lone write statement
/// takes the write lock before it reads (retrying through `busy_timeout`), so it cannot
/// fail to upgrade from reader to writer as a deferred transaction can: no transaction needed.
pub fn claim_due(
    conn: &mut DbConnection,
    claim: &str,
    now: NaiveDateTime,
    lease_until: NaiveDateTime,
    limit: i64,
) -> Result<Vec<OutboxRow>, StoreError> {
    let sql = claim_sql(conn);
    let mut claimed: Vec<OutboxRow> = with_conn!(conn, |c| diesel::sql_query(sql)
        .bind::<Timestamp, _>(lease_until)
        .bind::<Text, _>(claim)
        .bind::<Timestamp, _>(now)
        .bind::<BigInt, _>(limit)
        .load(c))?;
    // RETURNING yields rows in no promised order.
    claimed.sort_by_key(|row| row.next_attempt_at);
    Ok(claimed)
}

/// Where one outcome moves its event, if its claim still holds it.
struct Move<'a> {
    id: &'a str,
    claim: &'a str,
    status: &'static str,
    attempts: i32,
    next_attempt_at: NaiveDateTime,
    last_error: Option<&'a str>,
    delivered_at: Option<NaiveDateTime>,
}

impl<'a> Move<'a> {
    fn of(outcome: &'a Outcome, now: NaiveDateTime) -> Self {
        let (status, next_attempt_at, delivered_at) = match outcome.after {
            AfterAttempt::Delivered => (DELIVERED, now, Some(now)),
            AfterAttempt::RetryAt(at) => (PENDING, at, None),
            AfterAttempt::DeadLetter => (DEAD_LETTER, now, None),
        };
        let last_error = match outcome.after {
            AfterAttempt::Delivered => None,
            _ => outcome.attempt.error.as_deref(),
        };
        Self {
            id: &outcome.attempt.outbox_id,
            claim: &outcome.claim,
            status,
            attempts: outcome.attempt.attempt,
            next_attempt_at,
            last_error,
            delivered_at,
        }
    }
}

/// One UPDATE moving `rows` events, each only while its own claim holds it: the values of
/// every move in a `VALUES` list joined to the outbox by id. The placeholders are the seven
/// values of each move in order, then `updated_at`.
fn moves_sql(conn: &DbConnection, rows: usize) -> String {
    let mut p = Placeholders::for_connection(conn);
    let values = p.rows(rows, 7);
    format!(
        "WITH v (v_id, v_claim, v_status, v_attempts, v_next, v_error, v_delivered) AS \
         (VALUES {values}) \
         UPDATE webhook_outbox SET status = v.v_status, attempts = v.v_attempts, \
         next_attempt_at = v.v_next, last_error = v.v_error, delivered_at = v.v_delivered, \
         locked_until = NULL, locked_by = NULL, updated_at = {} \
         FROM v WHERE webhook_outbox.id = v.v_id AND webhook_outbox.status = '{PENDING}' \
         AND webhook_outbox.locked_by = v.v_claim \
         RETURNING webhook_outbox.id AS id",
        p.next()
    )
}

/// Moves each event of `moves` on if its claim still holds it; returns the ids moved.
fn apply_moves(
    conn: &mut DbConnection,
    moves: &[Move],
    now: NaiveDateTime,
) -> QueryResult<HashSet<String>> {
    let sql = moves_sql(conn, moves.len());
    // Expanded once per backend: a boxed query is tied to the backend of `c`.
    let moved: Vec<ReturnedId> = with_conn!(conn, |c| {
        let mut query = diesel::sql_query(sql).into_boxed();
        for m in moves {
            query = query
                .bind::<Text, _>(m.id)
                .bind::<Text, _>(m.claim)
                .bind::<Text, _>(m.status)
                .bind::<Integer, _>(m.attempts)
                .bind::<Timestamp, _>(m.next_attempt_at)
                .bind::<Nullable<Text>, _>(m.last_error)
                .bind::<Nullable<Timestamp>, _>(m.delivered_at);
        }
        query.bind::<Timestamp, _>(now).load(c)
    })?;
    Ok(moved.into_iter().map(|row| row.id).collect())
}

/// Records a group of attempts, and moves each event on if its claim still holds it, in one
/// database transaction: one INSERT and one UPDATE per [`ROWS_PER_STATEMENT`] outcomes. The
/// attempts are kept either way: they are what the RGS was told. Returns, for each outcome,
/// whether it moved its event.
pub fn record_attempts(
    conn: &mut DbConnection,
    outcomes: &[Outcome],
    now: NaiveDateTime,
) -> Result<Vec<bool>, StoreError> {
    // Two outcomes of one event (a lapsed claim's and its successor's) cannot share a group:
    // the UPDATE joins the event to whichever of them it meets first.
    let mut events = HashSet::new();
    if let Some(repeated) = outcomes
        .iter()
        .find(|o| !events.insert(o.attempt.outbox_id.as_str()))
    {
        return Err(StoreError::Invariant(format!(
            "event {} has two outcomes in one group",
            repeated.attempt.outbox_id
        )));
    }
    conn.write_transaction(|conn| {
        let mut moved = HashSet::new();
        for group in outcomes.chunks(ROWS_PER_STATEMENT) {
            let attempts: Vec<&AttemptRow> = group.iter().map(|o| &o.attempt).collect();
            with_conn!(conn, |c| diesel::insert_into(webhook_attempts::table)
                .values(attempts)
                .execute(c))?;
            let moves: Vec<Move> = group.iter().map(|o| Move::of(o, now)).collect();
            moved.extend(apply_moves(conn, &moves, now)?);
        }
        Ok(outcomes
            .iter()
            .map(|o| moved.contains(&o.attempt.outbox_id))
            .collect())
    })
}

/// [`record_attempts`] as a group write: the drainer's outcomes share commits as they land.
pub struct OutcomeWrite;

impl GroupWrite for OutcomeWrite {
    type Item = Outcome;
    type Output = bool;

    fn write_group(
        &self,
        conn: &mut DbConnection,
        items: &[Outcome],
    ) -> Result<Vec<bool>, StoreError> {
        record_attempts(conn, items, chrono::Utc::now().naive_utc())
    }

    fn name(&self) -> &'static str {
        "outcome"
    }
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
