//! The outbox's write path against a real database of each backend: the one-statement
//! claim, the multi-row recording of attempts and the batched insert with its one NOTIFY.

use std::time::{Duration, Instant};

use chrono::{NaiveDateTime, SubsecRound, Utc};
use diesel::connection::SimpleConnection;
use diesel::prelude::*;
use hub::store::outbox::{
    self, AfterAttempt, AttemptRow, NewOutboxRow, OutboxRow, Outcome, DEAD_LETTER, DELIVERED,
    PENDING,
};
use hub::store::schema::webhook_outbox;
use hub::store::{DbConnection, StoreError};

use crate::helpers::{self, on_both_backends, postgres_url, Backend, Db};

/// Microseconds: what both backends keep of a timestamp.
fn now() -> NaiveDateTime {
    Utc::now().naive_utc().trunc_subsecs(6)
}

fn seconds(n: i64) -> chrono::TimeDelta {
    chrono::TimeDelta::seconds(n)
}

/// The transaction every event of these tests is about.
const TRANSACTION: &str = "tx-1";

/// A migrated database of `backend` holding [`TRANSACTION`].
fn database(backend: Backend) -> Db {
    let mut db = helpers::database(backend);
    let insert = format!(
        "INSERT INTO transactions (id, idempotency_key, ref_id, player_id, kind, amount_cents, \
         currency, status, created_at, updated_at) VALUES ('{TRANSACTION}', 'key-1', 'ref-1', \
         'player-1', 'CREDIT', 100, 'EUR', 'COMPLETED', '2026-01-01 00:00:00', \
         '2026-01-01 00:00:00')"
    );
    let inserted = match &mut db.conn {
        DbConnection::Postgres(c) => c.batch_execute(&insert),
        DbConnection::Sqlite(c) => c.batch_execute(&insert),
    };
    inserted.expect("insert the transaction");
    db
}

fn event(id: &str, status: &'static str, next_attempt_at: NaiveDateTime) -> NewOutboxRow {
    let created_at = next_attempt_at - seconds(1);
    NewOutboxRow {
        id: id.to_owned(),
        transaction_id: TRANSACTION.to_owned(),
        event_type: "transaction.completed".into(),
        payload: format!("{{\"id\":\"{id}\"}}"),
        status,
        attempts: 0,
        next_attempt_at,
        correlation_id: None,
        created_at,
        updated_at: created_at,
    }
}

/// Gives `id` a lease held by `holder` until `until`, as a claim of another drainer would.
fn lease(conn: &mut DbConnection, id: &str, holder: &str, until: NaiveDateTime) {
    use webhook_outbox::dsl as o;
    let leased = (o::locked_by.eq(holder), o::locked_until.eq(until));
    let target = o::webhook_outbox.find(id);
    let changed = match conn {
        DbConnection::Postgres(c) => diesel::update(target).set(leased).execute(c),
        DbConnection::Sqlite(c) => diesel::update(target).set(leased).execute(c),
    };
    assert_eq!(changed.unwrap(), 1);
}

fn find(conn: &mut DbConnection, id: &str) -> OutboxRow {
    outbox::find(conn, id).unwrap().expect("the event exists")
}

fn ids(rows: &[OutboxRow]) -> Vec<&str> {
    rows.iter().map(|row| row.id.as_str()).collect()
}

on_both_backends!(
    a_claim_leases_only_due_unheld_events_and_returns_them_whole_oldest_first,
    attempts_move_only_the_events_their_claim_still_holds_and_are_all_kept,
    groups_larger_than_one_statement_are_inserted_claimed_and_recorded_whole,
);

async fn a_claim_leases_only_due_unheld_events_and_returns_them_whole_oldest_first(
    backend: Backend,
) {
    let mut db = database(backend);
    let conn = &mut db.conn;
    let now = now();
    outbox::insert_many(
        conn,
        &[
            // Inserted newest first: the order returned must come from the claim.
            event("due-newest", PENDING, now - seconds(1)),
            event("lapsed", PENDING, now - seconds(2)),
            event("due-oldest", PENDING, now - seconds(4)),
            event("held", PENDING, now - seconds(5)),
            event("not-yet", PENDING, now + seconds(60)),
            event("delivered", DELIVERED, now - seconds(6)),
            event("dead", DEAD_LETTER, now - seconds(6)),
        ],
    )
    .unwrap();
    lease(conn, "held", "other-drainer/1", now + seconds(30));
    lease(conn, "lapsed", "dead-drainer/1", now - seconds(1));
    let lease_until = now + seconds(30);

    let first = outbox::claim_due(conn, "me/1", now, lease_until, 2).unwrap();
    assert_eq!(ids(&first), ["due-oldest", "lapsed"], "the two oldest due");
    let rest = outbox::claim_due(conn, "me/2", now, lease_until, 10).unwrap();
    assert_eq!(
        ids(&rest),
        ["due-newest"],
        "held, future, delivered, dead skipped"
    );
    assert!(outbox::claim_due(conn, "me/3", now, lease_until, 10)
        .unwrap()
        .is_empty());

    for (row, claim) in first
        .iter()
        .map(|r| (r, "me/1"))
        .chain([(&rest[0], "me/2")])
    {
        assert_eq!(row, &find(conn, &row.id), "RETURNING gives the whole row");
        assert_eq!(row.locked_by.as_deref(), Some(claim));
        assert_eq!(row.locked_until, Some(lease_until));
        assert_eq!(row.updated_at, now);
        assert_eq!(row.status, PENDING);
    }
    assert_eq!(
        find(conn, "held").locked_by.as_deref(),
        Some("other-drainer/1")
    );
    assert_eq!(find(conn, "not-yet").locked_by, None);

    let later = lease_until + seconds(1);
    let again = outbox::claim_due(conn, "me/4", later, later + seconds(30), 10).unwrap();
    assert_eq!(
        ids(&again),
        ["held", "due-oldest", "lapsed", "due-newest"],
        "every lease lapsed: all due again"
    );
}

fn outcome(id: &str, claim: &str, after: AfterAttempt, error: Option<&str>) -> Outcome {
    Outcome {
        attempt: AttemptRow {
            id: 0,
            outbox_id: id.to_owned(),
            attempt: 1,
            attempted_at: now(),
            status_code: Some(if error.is_some() { 500 } else { 200 }),
            error: error.map(str::to_owned),
            duration_ms: 12,
            worker: "me".into(),
        },
        after,
        claim: claim.to_owned(),
    }
}

async fn attempts_move_only_the_events_their_claim_still_holds_and_are_all_kept(backend: Backend) {
    let mut db = database(backend);
    let conn = &mut db.conn;
    let now = now();
    let names = [
        "retry",
        "delivered",
        "dead",
        "reclaimed",
        "already-delivered",
    ];
    let rows: Vec<_> = names
        .iter()
        .map(|id| event(id, PENDING, now - seconds(1)))
        .collect();
    outbox::insert_many(conn, &rows).unwrap();
    assert_eq!(
        outbox::claim_due(conn, "mine", now, now + seconds(30), 10)
            .unwrap()
            .len(),
        5
    );
    // Its lease lapsed and another drainer claimed it; a third outcome delivered the other.
    lease(conn, "reclaimed", "theirs", now + seconds(60));
    let delivered_first = outcome("already-delivered", "mine", AfterAttempt::Delivered, None);
    assert_eq!(
        outbox::record_attempts(conn, &[delivered_first], now).unwrap(),
        [true]
    );

    let retry_at = now + seconds(10);
    let later = now + seconds(1);
    // The first row binds NULL to both nullable columns: Postgres must type them anyway.
    let group = [
        outcome("retry", "mine", AfterAttempt::RetryAt(retry_at), None),
        outcome("delivered", "mine", AfterAttempt::Delivered, None),
        outcome("dead", "mine", AfterAttempt::DeadLetter, Some("410 gone")),
        outcome("reclaimed", "mine", AfterAttempt::Delivered, None),
        outcome("already-delivered", "mine", AfterAttempt::Delivered, None),
    ];
    assert_eq!(
        outbox::record_attempts(conn, &group, later).unwrap(),
        [true, true, true, false, false]
    );

    let retry = find(conn, "retry");
    assert_eq!(
        (retry.status.as_str(), retry.next_attempt_at, retry.attempts),
        (PENDING, retry_at, 1)
    );
    assert_eq!(
        (retry.last_error.as_deref(), retry.delivered_at),
        (None, None)
    );
    let delivered = find(conn, "delivered");
    assert_eq!(delivered.status, DELIVERED);
    assert_eq!(delivered.delivered_at, Some(later));
    let dead = find(conn, "dead");
    assert_eq!(dead.status, DEAD_LETTER);
    assert_eq!(dead.last_error.as_deref(), Some("410 gone"));
    assert_eq!(dead.delivered_at, None);
    for moved in [&retry, &delivered, &dead] {
        assert_eq!(
            (moved.locked_by.as_deref(), moved.locked_until),
            (None, None)
        );
        assert_eq!(moved.updated_at, later);
    }
    let reclaimed = find(conn, "reclaimed");
    assert_eq!(reclaimed.status, PENDING, "another claim holds it");
    assert_eq!(reclaimed.locked_by.as_deref(), Some("theirs"));
    assert_eq!(
        find(conn, "already-delivered").delivered_at,
        Some(now),
        "a second outcome changes nothing"
    );
    for (id, attempts) in names.iter().zip([1, 1, 1, 1, 2]) {
        assert_eq!(
            outbox::attempts_of(conn, id).unwrap().len(),
            attempts,
            "every attempt of {id} is kept"
        );
    }
}

async fn groups_larger_than_one_statement_are_inserted_claimed_and_recorded_whole(
    backend: Backend,
) {
    // More rows than one statement takes (3,000), so each write is split.
    const EVENTS: usize = 3_500;
    let mut db = database(backend);
    let conn = &mut db.conn;
    let now = now();
    let rows: Vec<_> = (0..EVENTS)
        .map(|i| event(&format!("bulk-{i:05}"), PENDING, now - seconds(1)))
        .collect();
    outbox::insert_many(conn, &rows).unwrap();
    let claimed = outbox::claim_due(conn, "bulk", now, now + seconds(30), 10_000).unwrap();
    assert_eq!(claimed.len(), EVENTS);
    let group: Vec<_> = claimed
        .iter()
        .map(|row| outcome(&row.id, "bulk", AfterAttempt::Delivered, None))
        .collect();
    let moved = outbox::record_attempts(conn, &group, now).unwrap();
    assert_eq!((moved.len(), moved.iter().all(|m| *m)), (EVENTS, true));
    let stats = outbox::stats(conn, now).unwrap();
    assert_eq!(stats.pending, 0);
}

#[test]
#[cfg_attr(
    not(postgres_tests),
    ignore = "set TEST_DATABASE_URL to run the Postgres half"
)]
fn a_claim_skips_events_whose_rows_another_transaction_has_locked() {
    let mut db = database(Backend::Postgres);
    let now = now();
    let rows = [
        event("locked", PENDING, now - seconds(2)),
        event("free", PENDING, now - seconds(1)),
    ];
    outbox::insert_many(&mut db.conn, &rows).unwrap();
    let mut other = PgConnection::establish(postgres_url(&db.url)).unwrap();
    other
        .batch_execute("BEGIN; SELECT id FROM webhook_outbox WHERE id = 'locked' FOR UPDATE")
        .unwrap();

    let claimed = outbox::claim_due(&mut db.conn, "me", now, now + seconds(30), 10).unwrap();
    assert_eq!(
        ids(&claimed),
        ["free"],
        "the locked row is skipped, not waited for"
    );
    other.batch_execute("ROLLBACK").unwrap();
    let claimed = outbox::claim_due(&mut db.conn, "me", now, now + seconds(30), 10).unwrap();
    assert_eq!(ids(&claimed), ["locked"], "claimable once released");
}

/// Waits for notifications on `listener` until none came for a while; returns how many.
fn notifications(listener: &mut PgConnection) -> usize {
    let mut received = 0;
    let mut quiet_since = Instant::now();
    while quiet_since.elapsed() < Duration::from_millis(500) {
        match listener.notifications_iter().next() {
            Some(notification) => {
                assert_eq!(notification.unwrap().channel, outbox::CHANNEL);
                received += 1;
                quiet_since = Instant::now();
            }
            None => std::thread::sleep(Duration::from_millis(20)),
        }
    }
    received
}

#[test]
#[cfg_attr(
    not(postgres_tests),
    ignore = "set TEST_DATABASE_URL to run the Postgres half"
)]
fn a_batch_of_events_wakes_each_listener_once() {
    let mut db = database(Backend::Postgres);
    let mut listener = PgConnection::establish(postgres_url(&db.url)).unwrap();
    listener
        .batch_execute(&format!("LISTEN {}", outbox::CHANNEL))
        .unwrap();
    let now = now();

    // Outside any transaction, so nothing folds notifications together but insert_many.
    let rows: Vec<_> = (0..5)
        .map(|i| event(&format!("batch-{i}"), PENDING, now))
        .collect();
    outbox::insert_many(&mut db.conn, &rows).unwrap();
    assert_eq!(notifications(&mut listener), 1, "one NOTIFY for five rows");
    assert_eq!(outbox::stats(&mut db.conn, now).unwrap().pending, 5);

    outbox::insert_many(&mut db.conn, &[]).unwrap();
    assert_eq!(
        notifications(&mut listener),
        0,
        "nothing queued, nobody woken"
    );

    // Postgres folds identical notifications (same channel and payload) sent in one
    // transaction into one, so separate inserts committed together also wake once.
    db.conn
        .write_transaction(|conn| {
            outbox::insert(conn, &event("one", PENDING, now))?;
            outbox::insert(conn, &event("two", PENDING, now))?;
            Ok::<_, StoreError>(())
        })
        .unwrap();
    assert_eq!(notifications(&mut listener), 1);
}
