//! Group commit (src/store/group_commit.rs, claims.rs, settlements.rs) against a real
//! database: one bad row never fails its neighbours, a failed group loses nothing and
//! writes nothing half, and concurrent callers really share a commit.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use chrono::{NaiveDateTime, Utc};
use diesel::connection::SimpleConnection;
use hub::store::claims::{self, ClaimInsert, ClaimWrite, NewClaim};
use hub::store::group_commit::{GroupCommit, GroupLimits, GroupObserver, GroupWrite};
use hub::store::idempotency_keys::{self, KeyRow};
use hub::store::outbox::{self, NewOutboxRow};
use hub::store::settlements::{self, SettleRow, SettleWrite};
use hub::store::transactions::{self, Settlement, TransactionRow};
use hub::store::{establish, DbConnection, Store, StoreError};
use uuid::Uuid;

use crate::helpers::{eventually, on_both_backends, Backend, Options, TestApp};
use crate::private_postgres::PrivatePostgres;

on_both_backends!(
    a_duplicate_ref_id_in_a_group_fails_only_that_claim,
    a_key_twice_in_one_group_is_claimed_once,
    a_claim_colliding_with_a_tombstone_writes_nothing,
    a_lost_lease_in_a_settlement_group_writes_only_that_one_nothing,
    a_group_with_a_broken_item_is_written_item_by_item,
    concurrent_callers_share_one_commit,
    two_settlements_of_one_key_in_a_group_count_only_the_lease_holders,
);

fn now() -> NaiveDateTime {
    Utc::now().naive_utc()
}

/// A fresh debit claim under `key` for `ref_id`, leased by `token`.
fn debit_claim(key: &str, ref_id: &str, token: &str) -> NewClaim {
    let now = now();
    let id = Uuid::now_v7().to_string();
    NewClaim {
        key: KeyRow {
            idempotency_key: key.to_owned(),
            fingerprint: format!("fingerprint-{ref_id}"),
            state: idempotency_keys::IN_PROGRESS.to_owned(),
            transaction_id: id.clone(),
            lease_token: Some(token.to_owned()),
            locked_until: Some(now + chrono::Duration::seconds(60)),
            response_status: None,
            response_body: None,
            created_at: now,
            updated_at: now,
        },
        transaction: TransactionRow {
            id,
            idempotency_key: key.to_owned(),
            ref_id: ref_id.to_owned(),
            player_id: "player-001".to_owned(),
            kind: "DEBIT".to_owned(),
            amount_cents: 100,
            currency: "USD".to_owned(),
            status: transactions::PENDING.to_owned(),
            reason: None,
            balance_cents: None,
            operator_reference: None,
            meta: None,
            correlation_id: None,
            created_at: now,
            updated_at: now,
            recovery_attempts: 0,
            next_recovery_at: Some(now + chrono::Duration::seconds(60)),
            review_since: None,
            round_id: None,
            round_closed: false,
            original_ref_id: None,
            original_transaction_id: None,
        },
    }
}

/// The settlement of `claim` as approved, under `token`.
fn approval(claim: &NewClaim, token: &str) -> SettleRow {
    let now = now();
    let event_id = Uuid::now_v7().to_string();
    SettleRow {
        key: claim.key.idempotency_key.clone(),
        lease_token: token.to_owned(),
        response_status: 201,
        response_body: format!("{{\"transactionId\":\"{}\"}}", claim.transaction.id),
        transaction_id: claim.transaction.id.clone(),
        settlement: Settlement {
            status: transactions::COMPLETED,
            reason: None,
            balance_cents: Some(900),
            operator_reference: Some(format!("op-{event_id}")),
            updated_at: now,
            next_recovery_at: None,
        },
        rolls_back: None,
        event: NewOutboxRow {
            id: event_id,
            transaction_id: claim.transaction.id.clone(),
            event_type: "transaction.completed".to_owned(),
            payload: "{}".to_owned(),
            status: outbox::PENDING,
            attempts: 0,
            next_attempt_at: now,
            correlation_id: None,
            created_at: now,
            updated_at: now,
        },
    }
}

fn new_key() -> String {
    format!("group-{}", Uuid::new_v4())
}

fn new_ref() -> String {
    format!("ref-{}", Uuid::new_v4())
}

/// Debit claims of fresh keys and refIds, the one numbered `n` leased by token `t{n}`.
fn fresh_claims(numbers: impl Iterator<Item = usize>) -> Vec<NewClaim> {
    numbers
        .map(|n| debit_claim(&new_key(), &new_ref(), &format!("t{n}")))
        .collect()
}

async fn insert_claims(store: &Store, group: Vec<NewClaim>) -> Vec<ClaimInsert> {
    store
        .run(move |conn| claims::insert_new(conn, &group))
        .await
        .expect("the group is written")
}

async fn key_row(store: &Store, key: &str) -> Option<KeyRow> {
    let key = key.to_owned();
    store
        .run(move |conn| idempotency_keys::find(conn, &key).map_err(StoreError::from))
        .await
        .unwrap()
}

async fn transaction_by_key(store: &Store, key: &str) -> Option<TransactionRow> {
    let key = key.to_owned();
    store
        .run(move |conn| {
            transactions::find_by_idempotency_key(conn, &key).map_err(StoreError::from)
        })
        .await
        .unwrap()
}

async fn events_of(store: &Store, transaction_id: &str) -> usize {
    let id = transaction_id.to_owned();
    store
        .run(move |conn| outbox::for_transaction(conn, &id).map_err(StoreError::from))
        .await
        .unwrap()
        .len()
}

async fn a_duplicate_ref_id_in_a_group_fails_only_that_claim(backend: Backend) {
    let app = TestApp::spawn(backend).await;
    let (first, second, third) = (new_key(), new_key(), new_key());
    let ref_id = new_ref();
    let group = vec![
        debit_claim(&first, &ref_id, "t1"),
        debit_claim(&second, &ref_id, "t2"),
        debit_claim(&third, &new_ref(), "t3"),
    ];
    let outcomes = insert_claims(&app.store, group).await;
    assert_eq!(
        outcomes,
        [
            ClaimInsert::Inserted,
            ClaimInsert::Taken,
            ClaimInsert::Inserted
        ]
    );
    for key in [&first, &third] {
        assert!(key_row(&app.store, key).await.is_some(), "{key} is claimed");
        assert!(transaction_by_key(&app.store, key).await.is_some());
    }
    assert_eq!(
        key_row(&app.store, &second).await,
        None,
        "nothing half-written"
    );
    assert_eq!(transaction_by_key(&app.store, &second).await, None);
}

async fn a_key_twice_in_one_group_is_claimed_once(backend: Backend) {
    let app = TestApp::spawn(backend).await;
    let key = new_key();
    let first = debit_claim(&key, &new_ref(), "t1");
    let replay = debit_claim(&key, &new_ref(), "t2");
    let first_id = first.transaction.id.clone();
    let outcomes = insert_claims(&app.store, vec![first, replay]).await;
    assert_eq!(outcomes, [ClaimInsert::Inserted, ClaimInsert::Taken]);
    let stored = key_row(&app.store, &key).await.expect("the key is claimed");
    assert_eq!(stored.transaction_id, first_id);
    assert_eq!(
        stored.lease_token.as_deref(),
        Some("t1"),
        "the first one's lease"
    );
    assert_eq!(
        transaction_by_key(&app.store, &key).await.unwrap().id,
        first_id
    );
}

async fn a_claim_colliding_with_a_tombstone_writes_nothing(backend: Backend) {
    let app = TestApp::spawn(backend).await;
    let ref_id = new_ref();
    // A rollback of a refId never seen: the tombstone that forbids a later debit of it.
    let mut tombstone = debit_claim(&new_key(), &format!("rb-{}", Uuid::new_v4()), "t0");
    tombstone.transaction.kind = "ROLLBACK".to_owned();
    tombstone.transaction.amount_cents = 0;
    tombstone.transaction.original_ref_id = Some(ref_id.clone());
    let outcomes = insert_claims(&app.store, vec![tombstone]).await;
    assert_eq!(outcomes, [ClaimInsert::Inserted]);

    let (late, other) = (new_key(), new_key());
    let outcomes = insert_claims(
        &app.store,
        vec![
            debit_claim(&late, &ref_id, "t1"),
            debit_claim(&other, &new_ref(), "t2"),
        ],
    )
    .await;
    assert_eq!(outcomes, [ClaimInsert::Taken, ClaimInsert::Inserted]);
    assert_eq!(key_row(&app.store, &late).await, None);
    assert_eq!(transaction_by_key(&app.store, &late).await, None);
}

async fn a_lost_lease_in_a_settlement_group_writes_only_that_one_nothing(backend: Backend) {
    let app = TestApp::spawn(backend).await;
    let group: Vec<NewClaim> = fresh_claims(1..=3);
    insert_claims(&app.store, group.clone()).await;
    let settlements = vec![
        approval(&group[0], "t1"),
        approval(&group[1], "a lease taken over since"),
        approval(&group[2], "t3"),
    ];
    let written = app
        .store
        .run(move |conn| settlements::settle_many(conn, &settlements))
        .await
        .unwrap();
    assert_eq!(written, [true, false, true]);
    for (claim, settled) in group.iter().zip(written) {
        let key = key_row(&app.store, &claim.key.idempotency_key)
            .await
            .unwrap();
        let transaction = transaction_by_key(&app.store, &claim.key.idempotency_key)
            .await
            .unwrap();
        let events = events_of(&app.store, &claim.transaction.id).await;
        if settled {
            assert_eq!(key.state, idempotency_keys::COMPLETED);
            assert_eq!(key.response_status, Some(201));
            assert_eq!(key.lease_token, None);
            assert_eq!(transaction.status, transactions::COMPLETED);
            assert_eq!(transaction.balance_cents, Some(900));
            assert_eq!(transaction.next_recovery_at, None);
            assert_eq!(events, 1);
        } else {
            assert_eq!(key.state, idempotency_keys::IN_PROGRESS);
            assert_eq!(key.lease_token.as_deref(), Some("t2"));
            assert_eq!(transaction.status, transactions::PENDING);
            assert_eq!(events, 0);
        }
    }
}

/// Records the size of every group written, and whether it was split.
#[derive(Default)]
struct Groups(Mutex<Vec<(usize, bool)>>);

impl GroupObserver for Groups {
    fn group_written(&self, _write: &'static str, size: usize, split: bool) {
        self.0.lock().unwrap().push((size, split));
    }
}

impl Groups {
    fn seen(&self) -> Vec<(usize, bool)> {
        self.0.lock().unwrap().clone()
    }
}

/// Holds the database's write lock (SQLite) or a lock on `transactions` and
/// `idempotency_keys` that every insert and update waits for (Postgres), until dropped.
struct WriteBlocker(#[allow(dead_code)] DbConnection);

impl WriteBlocker {
    fn hold(app: &TestApp) -> Self {
        let mut conn = establish(&app.database_url).expect("a connection of the test's own");
        let lock = match conn {
            DbConnection::Sqlite(ref mut c) => c.batch_execute("BEGIN IMMEDIATE"),
            DbConnection::Postgres(ref mut c) => c.batch_execute(
                "BEGIN; LOCK TABLE transactions, idempotency_keys IN SHARE ROW EXCLUSIVE MODE",
            ),
        };
        lock.expect("take the lock");
        Self(conn)
    }
}

/// A committer with one writer, whose first group (`blocked_first`, alone) is held up by
/// `blocker` until the rest are queued behind it.
async fn queue_behind<W: GroupWrite>(
    commit: &GroupCommit<W>,
    blocked_first: W::Item,
    rest: Vec<W::Item>,
) -> (
    tokio::task::JoinHandle<Result<W::Output, StoreError>>,
    Vec<tokio::task::JoinHandle<Result<W::Output, StoreError>>>,
) {
    let first = {
        let commit = commit.clone();
        tokio::spawn(async move { commit.submit(blocked_first).await })
    };
    // Queued (a writer is busy) and taken (nothing waits): the writer holds it alone.
    eventually(
        "the first group to be taken",
        Duration::from_secs(5),
        || async { (commit.writing() == 1 && commit.waiting() == 0).then_some(()) },
    )
    .await;
    let count = rest.len();
    let rest: Vec<_> = rest
        .into_iter()
        .map(|item| {
            let commit = commit.clone();
            tokio::spawn(async move { commit.submit(item).await })
        })
        .collect();
    eventually("the rest to queue", Duration::from_secs(5), || async {
        (commit.waiting() == count).then_some(())
    })
    .await;
    (first, rest)
}

fn one_writer() -> GroupLimits {
    GroupLimits {
        max_batch: 64,
        writers: 1,
    }
}

async fn concurrent_callers_share_one_commit(backend: Backend) {
    let app = TestApp::spawn(backend).await;
    let groups = Arc::new(Groups::default());
    let commit = GroupCommit::new(app.store.clone(), ClaimWrite, one_writer(), groups.clone());
    let claims: Vec<NewClaim> = fresh_claims(0..6);
    let blocker = WriteBlocker::hold(&app);
    let (first, rest) = queue_behind(&commit, claims[0].clone(), claims[1..].to_vec()).await;
    drop(blocker);
    assert_eq!(first.await.unwrap().unwrap(), ClaimInsert::Inserted);
    for outcome in rest {
        assert_eq!(outcome.await.unwrap().unwrap(), ClaimInsert::Inserted);
    }
    assert_eq!(
        groups.seen(),
        [(1, false), (5, false)],
        "five callers, one commit"
    );
    for claim in &claims {
        assert!(key_row(&app.store, &claim.key.idempotency_key)
            .await
            .is_some());
    }
}

async fn a_group_with_a_broken_item_is_written_item_by_item(backend: Backend) {
    let app = TestApp::spawn(backend).await;
    let claims: Vec<NewClaim> = fresh_claims(0..4);
    insert_claims(&app.store, claims.clone()).await;
    // Its lease holds, yet the transaction is no longer PENDING: an invariant broken.
    let broken = claims[2].transaction.id.clone();
    app.store
        .run(move |conn| {
            let settled = Settlement {
                status: transactions::REJECTED,
                reason: Some("INSUFFICIENT_FUNDS".to_owned()),
                balance_cents: None,
                operator_reference: None,
                updated_at: now(),
                next_recovery_at: None,
            };
            transactions::settle(conn, &broken, &settled).map_err(StoreError::from)
        })
        .await
        .unwrap();
    let groups = Arc::new(Groups::default());
    let commit = GroupCommit::new(app.store.clone(), SettleWrite, one_writer(), groups.clone());
    let settlements: Vec<SettleRow> = claims
        .iter()
        .enumerate()
        .map(|(n, claim)| approval(claim, &format!("t{n}")))
        .collect();
    let blocker = WriteBlocker::hold(&app);
    let (first, rest) =
        queue_behind(&commit, settlements[0].clone(), settlements[1..].to_vec()).await;
    drop(blocker);
    assert!(first.await.unwrap().unwrap());
    let outcomes: Vec<Result<bool, StoreError>> = futures_util::future::join_all(rest)
        .await
        .into_iter()
        .map(Result::unwrap)
        .collect();
    assert!(matches!(outcomes[0], Ok(true)), "{:?}", outcomes[0]);
    assert!(
        matches!(&outcomes[1], Err(StoreError::Invariant(reason)) if reason.contains(&claims[2].transaction.id)),
        "{:?}",
        outcomes[1]
    );
    assert!(matches!(outcomes[2], Ok(true)), "{:?}", outcomes[2]);
    assert_eq!(groups.seen(), [(1, false), (3, true)]);
    for (n, claim) in claims.iter().enumerate() {
        let key = key_row(&app.store, &claim.key.idempotency_key)
            .await
            .unwrap();
        let expected = if n == 2 {
            idempotency_keys::IN_PROGRESS
        } else {
            idempotency_keys::COMPLETED
        };
        assert_eq!(key.state, expected, "claim {n}");
        assert_eq!(
            events_of(&app.store, &claim.transaction.id).await,
            usize::from(n != 2)
        );
    }
}

/// The database restarts while a group is being written: the group is all or nothing, and
/// each caller is told what happened to its own item.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[cfg_attr(
    not(postgres_tests),
    ignore = "set TEST_DATABASE_URL to run the Postgres half"
)]
async fn a_group_whose_commit_fails_in_a_database_restart_loses_nothing_and_halves_nothing() {
    let postgres = PrivatePostgres::create();
    let options = Options {
        postgres_server: Some(postgres.url()),
        db_acquire_timeout: Duration::from_secs(20),
        drain: false,
        ..Options::default()
    };
    let app = TestApp::spawn_with(Backend::Postgres, options).await;
    let groups = Arc::new(Groups::default());
    let commit = GroupCommit::new(app.store.clone(), ClaimWrite, one_writer(), groups.clone());
    let claims: Vec<NewClaim> = fresh_claims(0..8);
    let blocker = WriteBlocker::hold(&app);
    let (first, rest) = queue_behind(&commit, claims[0].clone(), claims[1..].to_vec()).await;
    // The first group is mid-write (waiting on the lock) and seven more wait behind it.
    postgres.stop();
    drop(blocker);
    postgres.start();
    let mut outcomes = vec![first.await.unwrap()];
    for handle in rest {
        outcomes.push(handle.await.unwrap());
    }
    assert!(
        outcomes.iter().any(Result::is_err) || groups.seen().iter().any(|(_, split)| *split),
        "the restart was felt by the group in flight: {outcomes:?}"
    );
    for (claim, outcome) in claims.iter().zip(&outcomes) {
        let key = key_row(&app.store, &claim.key.idempotency_key).await;
        let transaction = transaction_by_key(&app.store, &claim.key.idempotency_key).await;
        assert_eq!(
            key.is_some(),
            transaction.is_some(),
            "a key and its transaction commit together: {outcome:?}"
        );
        match outcome {
            Ok(ClaimInsert::Inserted) => assert!(key.is_some(), "an answered claim is kept"),
            Ok(ClaimInsert::Taken) => panic!("nothing stood in the way of {:?}", claim.key),
            // Unknown to its caller, who retries under its key: either state is safe, a
            // half of one is not (checked above).
            Err(_) => {}
        }
    }
}

/// A request whose lease lapsed and the retry that took its key over both settle, in one
/// group: only the lease holder's settlement counts, and the transaction gets one webhook.
async fn two_settlements_of_one_key_in_a_group_count_only_the_lease_holders(backend: Backend) {
    let app = TestApp::spawn(backend).await;
    let claim = debit_claim(&new_key(), &new_ref(), "retry");
    let other = debit_claim(&new_key(), &new_ref(), "other");
    insert_claims(&app.store, vec![claim.clone(), other.clone()]).await;
    let groups = Arc::new(Groups::default());
    let commit = GroupCommit::new(app.store.clone(), SettleWrite, one_writer(), groups.clone());
    let blocker = WriteBlocker::hold(&app);
    let (first, rest) = queue_behind(
        &commit,
        approval(&other, "other"),
        vec![approval(&claim, "lapsed"), approval(&claim, "retry")],
    )
    .await;
    drop(blocker);
    assert!(first.await.unwrap().unwrap());
    let outcomes: Vec<bool> = futures_util::future::join_all(rest)
        .await
        .into_iter()
        .map(|joined| joined.unwrap().unwrap())
        .collect();
    assert_eq!(outcomes, [false, true], "only the lease holder settled");
    assert_eq!(groups.seen(), [(1, false), (2, true)]);
    assert_eq!(events_of(&app.store, &claim.transaction.id).await, 1);
    let key = key_row(&app.store, &claim.key.idempotency_key)
        .await
        .unwrap();
    assert_eq!(key.state, idempotency_keys::COMPLETED);
}
