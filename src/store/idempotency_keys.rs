//! Queries on `idempotency_keys`: who owns a key, under which lease, and the stored answer.

use chrono::NaiveDateTime;
use diesel::dsl::Eq;
use diesel::prelude::*;

use super::schema::idempotency_keys as keys;
use super::{with_conn, DbConnection};

pub const IN_PROGRESS: &str = "IN_PROGRESS";
pub const COMPLETED: &str = "COMPLETED";

#[derive(Debug, Clone, PartialEq, Eq, Queryable, Selectable, Insertable)]
#[diesel(table_name = keys)]
pub struct KeyRow {
    pub idempotency_key: String,
    pub fingerprint: String,
    pub state: String,
    pub transaction_id: String,
    pub lease_token: Option<String>,
    pub locked_until: Option<NaiveDateTime>,
    pub response_status: Option<i32>,
    pub response_body: Option<String>,
    pub created_at: NaiveDateTime,
    pub updated_at: NaiveDateTime,
}

/// Inserts the key unless it exists; true when this call created it.
pub fn insert_if_absent(conn: &mut DbConnection, row: &KeyRow) -> QueryResult<bool> {
    with_conn!(conn, |c| diesel::insert_into(keys::table)
        .values(row)
        .on_conflict_do_nothing()
        .execute(c))
    .map(|n| n == 1)
}

pub fn find(conn: &mut DbConnection, key: &str) -> QueryResult<Option<KeyRow>> {
    with_conn!(conn, |c| keys::table
        .find(key)
        .select(KeyRow::as_select())
        .first(c)
        .optional())
}

/// Takes an in-progress key whose lease has lapsed or was released; true if this call won it.
pub fn take_over(
    conn: &mut DbConnection,
    key: &str,
    lease_token: &str,
    now: NaiveDateTime,
    locked_until: NaiveDateTime,
) -> QueryResult<bool> {
    let lapsed = keys::table
        .filter(keys::idempotency_key.eq(key))
        .filter(keys::state.eq(IN_PROGRESS))
        .filter(keys::locked_until.is_null().or(keys::locked_until.le(now)));
    let claim = (
        keys::lease_token.eq(lease_token),
        keys::locked_until.eq(locked_until),
        keys::updated_at.eq(now),
    );
    with_conn!(conn, |c| diesel::update(lapsed).set(claim).execute(c)).map(|n| n == 1)
}

/// Stores the final answer, if `lease_token` still holds the key; true on success.
pub fn complete(
    conn: &mut DbConnection,
    key: &str,
    lease_token: &str,
    response_status: u16,
    response_body: &str,
    now: NaiveDateTime,
) -> QueryResult<bool> {
    let held = keys::table
        .filter(keys::idempotency_key.eq(key))
        .filter(keys::state.eq(IN_PROGRESS))
        .filter(keys::lease_token.eq(lease_token));
    let done = final_answer(response_status, response_body, now);
    with_conn!(conn, |c| diesel::update(held).set(done).execute(c)).map(|n| n == 1)
}

/// Stores the final answer of a key still in progress, whoever holds its lease: a debit
/// cancelled by a rollback ends here, and the request still calling the operator for it
/// finds its lease gone and answers with this. False if the key already had its answer.
pub fn overrule(
    conn: &mut DbConnection,
    key: &str,
    response_status: u16,
    response_body: &str,
    now: NaiveDateTime,
) -> QueryResult<bool> {
    let in_progress = keys::table
        .filter(keys::idempotency_key.eq(key))
        .filter(keys::state.eq(IN_PROGRESS));
    let done = final_answer(response_status, response_body, now);
    with_conn!(conn, |c| diesel::update(in_progress).set(done).execute(c)).map(|n| n == 1)
}

/// The columns a key's final answer sets.
type FinalAnswer<'a> = (
    Eq<keys::state, &'static str>,
    Eq<keys::response_status, i32>,
    Eq<keys::response_body, &'a str>,
    Eq<keys::lease_token, Option<String>>,
    Eq<keys::locked_until, Option<NaiveDateTime>>,
    Eq<keys::updated_at, NaiveDateTime>,
);

/// The change that gives a key its final answer and frees its lease.
fn final_answer(response_status: u16, response_body: &str, now: NaiveDateTime) -> FinalAnswer<'_> {
    (
        keys::state.eq(COMPLETED),
        keys::response_status.eq(i32::from(response_status)),
        keys::response_body.eq(response_body),
        keys::lease_token.eq(None::<String>),
        keys::locked_until.eq(None::<NaiveDateTime>),
        keys::updated_at.eq(now),
    )
}

/// Gives the lease up early so that the client's retry can resume at once.
pub fn release(
    conn: &mut DbConnection,
    key: &str,
    lease_token: &str,
    now: NaiveDateTime,
) -> QueryResult<bool> {
    let held = keys::table
        .filter(keys::idempotency_key.eq(key))
        .filter(keys::state.eq(IN_PROGRESS))
        .filter(keys::lease_token.eq(lease_token));
    let released = (
        keys::lease_token.eq(None::<String>),
        keys::locked_until.eq(None::<NaiveDateTime>),
        keys::updated_at.eq(now),
    );
    with_conn!(conn, |c| diesel::update(held).set(released).execute(c)).map(|n| n == 1)
}

/// Deletes up to `limit` completed keys last touched before `before`; returns how many.
/// A key in progress is never deleted: its transaction still waits for a decision.
pub fn reap(conn: &mut DbConnection, before: NaiveDateTime, limit: i64) -> QueryResult<usize> {
    let old = keys::table
        .filter(keys::state.eq(COMPLETED))
        .filter(keys::updated_at.lt(before))
        .order(keys::updated_at.asc())
        .limit(limit)
        .select(keys::idempotency_key);
    let doomed: Vec<String> = with_conn!(conn, |c| old.load(c))?;
    if doomed.is_empty() {
        return Ok(0);
    }
    let target = keys::table.filter(keys::idempotency_key.eq_any(&doomed));
    with_conn!(conn, |c| diesel::delete(target).execute(c))
}
