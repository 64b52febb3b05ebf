//! Rollbacks, balance and rounds (DESIGN §8): every row of the rollback table, and the races
//! the design is there for — a rollback against its own debit still on its way to the
//! operator, two rollbacks of one debit (on one hub and on two replicas), a client's rollback
//! against the completer's cancellation — each ending with the player's money unchanged net
//! and exactly one `transaction.rolled_back` webhook.

use std::collections::HashSet;
use std::time::Duration;

use chrono::{TimeDelta, Utc};
use hub::store::outbox::OutboxRow;
use hub::store::transactions::{self, TransactionRow};
use hub::store::{idempotency_keys, StoreError};
use mock_operator::FaultKind;
use serde_json::{json, Value};
use uuid::Uuid;

use crate::helpers::{
    answer, eventually, new_key, on_both_backends, post_signed_without_key, wallet_body, Answer,
    Backend, Options, TestApp, SECRET,
};

on_both_backends!(
    a_completed_debit_is_refunded_once_and_marked_rolled_back,
    a_pending_debit_the_operator_never_charged_is_cancelled,
    a_pending_debit_the_operator_charged_is_refunded,
    a_rejected_debit_is_rolled_back_without_the_operator,
    an_unknown_ref_id_leaves_a_tombstone_that_refuses_the_debit,
    a_second_rollback_under_another_key_is_told_which_came_first,
    only_a_players_own_debit_in_its_own_round_can_be_rolled_back,
    an_unreachable_operator_leaves_the_rollback_pending_for_the_retry,
    while_the_circuit_is_open_a_rollback_waits_and_then_resumes,
    rollback_requests_are_idempotent_and_validated,
    a_rollbacks_replay_after_its_key_is_reaped_is_the_first_answer,
    the_balance_is_read_live_from_the_operator,
    rounds_are_part_of_the_request_stored_and_sent,
);

const ROLLED_BACK: &str = "transaction.rolled_back";

fn rollback_body(player: &str, original_ref_id: &str) -> Value {
    json!({
        "playerId": player,
        "refId": format!("rb-{}", Uuid::new_v4()),
        "originalRefId": original_ref_id,
    })
}

fn text<'a>(value: &'a Value, field: &str) -> &'a str {
    value[field]
        .as_str()
        .unwrap_or_else(|| panic!("{field} is a string in {value}"))
}

/// The fields of a JSON object, sorted.
fn fields(value: &Value) -> Vec<&str> {
    let mut names: Vec<&str> = value
        .as_object()
        .expect("an object")
        .keys()
        .map(String::as_str)
        .collect();
    names.sort_unstable();
    names
}

/// Every attempt gives up quickly, and failures never open the circuit.
fn short_calls(options: &mut Options) {
    options.retry.attempt_timeout = Duration::from_millis(250);
    options.retry.deadline = Duration::from_millis(700);
    options.breaker.min_calls = 1_000_000;
}

fn impatient() -> Options {
    let mut options = Options::default();
    short_calls(&mut options);
    options
}

/// Debits `player` and expects the charge: returns the key, the body and the answer.
async fn debit_charged(app: &TestApp, player: &str, amount: i64) -> (String, Value, Answer) {
    let (key, body) = (new_key(), wallet_body(player, amount, "USD"));
    let charged = answer(app.debit(&key, &body).await).await;
    assert_eq!(charged.status, 201, "{}", charged.text);
    (key, body, charged)
}

/// Leaves a debit `PENDING`: every attempt of its request fails with `fault` (a
/// `ServerError` is never applied, a `Timeout` is applied and answered too late).
async fn debit_left_pending(app: &TestApp, body: &Value, fault: FaultKind) -> (String, String) {
    let key = new_key();
    app.operator.inject_fault(fault, 1000);
    let failed = answer(app.debit(&key, body).await).await;
    app.operator.inject_fault(FaultKind::ServerError, 0);
    assert_eq!(failed.status, 502, "{}", failed.text);
    let pending = app.transaction_for_key(&key).await.expect("recorded");
    assert_eq!(pending.status, "PENDING");
    (key, pending.id)
}

async fn row(app: &TestApp, key: &str) -> TransactionRow {
    app.transaction_for_key(key)
        .await
        .unwrap_or_else(|| panic!("a transaction for key {key}"))
}

/// The rollback (or tombstone) the hub recorded for `original_ref_id`, if any.
async fn rollback_of(app: &TestApp, original_ref_id: &str) -> Option<TransactionRow> {
    let original = original_ref_id.to_owned();
    app.store
        .run(move |conn| transactions::rollback_of(conn, &original).map_err(StoreError::from))
        .await
        .expect("read transactions")
}

/// The `transaction.rolled_back` events queued for rollbacks of `original_ref_id`.
async fn rolled_back_events(app: &TestApp, original_ref_id: &str) -> Vec<(OutboxRow, Value)> {
    app.all_events()
        .await
        .into_iter()
        .filter(|event| event.event_type == ROLLED_BACK)
        .map(|event| {
            let payload: Value = serde_json::from_str(&event.payload).expect("JSON payload");
            (event, payload)
        })
        .filter(|(_, payload)| payload["data"]["originalRefId"] == original_ref_id)
        .collect()
}

/// Waits until the rollback of `original_ref_id` has been delivered to the RGS, checks it
/// was the only `transaction.rolled_back` for it, queued and delivered, and returns its data.
async fn the_rolled_back_webhook(app: &TestApp, original_ref_id: &str) -> Value {
    let (event, payload) = eventually(
        &format!("the rollback of {original_ref_id} to be delivered"),
        Duration::from_secs(20),
        || async {
            let mut events = rolled_back_events(app, original_ref_id).await;
            assert!(events.len() <= 1, "one rollback webhook, not {events:?}");
            events
                .pop()
                .filter(|(event, _)| event.status == "DELIVERED")
        },
    )
    .await;
    assert_eq!(payload["eventType"], ROLLED_BACK);
    let delivered: HashSet<String> = app
        .rgs
        .deliveries()
        .into_iter()
        .filter(|d| (200..300).contains(&d.status))
        .filter(|d| d.body["eventType"] == ROLLED_BACK)
        .filter(|d| d.body["data"]["originalRefId"] == original_ref_id)
        .filter_map(|d| d.event_id)
        .collect();
    assert_eq!(
        delivered,
        HashSet::from([event.id.clone()]),
        "the RGS got it"
    );
    payload["data"].clone()
}

/// The event types the hub queued for `transaction_id`.
async fn event_types(app: &TestApp, transaction_id: &str) -> Vec<String> {
    app.outbox_for(transaction_id)
        .await
        .into_iter()
        .map(|event| event.event_type)
        .collect()
}

/// Calls the operator received on its rollback route.
fn operator_rollback_calls(app: &TestApp) -> usize {
    let calls = app.operator.calls();
    calls
        .iter()
        .filter(|c| c.path.ends_with("/rollback"))
        .count()
}

/// The debit's own key, asked again, answers that it was rolled back before it settled.
async fn assert_debit_key_says_rolled_back(app: &TestApp, key: &str, body: &Value, id: &str) {
    let calls = app.operator.calls().len();
    let again = answer(app.debit(key, body).await).await;
    assert_eq!(again.status, 409, "{}", again.text);
    assert_eq!(again.json["status"], "ROLLED_BACK");
    assert_eq!(again.json["code"], "TRANSACTION_ROLLED_BACK");
    assert_eq!(again.json["transactionId"], id);
    assert_eq!(again.json["refId"], body["refId"]);
    assert_eq!(again.headers["idempotent-replayed"], "true");
    let twice = answer(app.debit(key, body).await).await;
    assert_eq!(twice.text, again.text, "byte for byte");
    assert_eq!(app.operator.calls().len(), calls, "without the operator");
}

// ---------------------------------------------------------------------------------------
// The table of DESIGN §8, row by row.

async fn a_completed_debit_is_refunded_once_and_marked_rolled_back(backend: Backend) {
    let app = TestApp::spawn(backend).await;
    let (debit_key, mut debit_body) = (new_key(), wallet_body("player-001", 1000, "USD"));
    debit_body["roundId"] = json!("round-7");
    let debit = answer(app.debit(&debit_key, &debit_body).await).await;
    assert_eq!(debit.status, 201, "{}", debit.text);
    let debit_id = text(&debit.json, "transactionId").to_owned();
    let debit_ref = text(&debit_body, "refId");
    let mut body = rollback_body("player-001", debit_ref);
    body["roundId"] = json!("round-7");

    let rolled_back = answer(app.rollback(&new_key(), &body).await).await;

    assert_eq!(rolled_back.status, 201, "{}", rolled_back.text);
    assert_eq!(
        fields(&rolled_back.json),
        [
            "balanceCents",
            "originalTransactionId",
            "refId",
            "status",
            "transactionId"
        ]
    );
    assert_eq!(rolled_back.json["status"], "OK");
    assert_eq!(rolled_back.json["balanceCents"], 10_000);
    assert_eq!(rolled_back.json["refId"], body["refId"]);
    assert_eq!(rolled_back.json["originalTransactionId"], debit_id.as_str());
    let rollback_id = text(&rolled_back.json, "transactionId");
    assert_ne!(rollback_id, debit_id);
    assert_eq!(app.operator.charges_for(&debit_id), 1);
    assert_eq!(app.operator.refunds_for(&debit_id), 1, "refunded once");
    assert_eq!(app.operator.balance("player-001"), Some(10_000));

    let debit_row = row(&app, &debit_key).await;
    assert_eq!(debit_row.status, "ROLLED_BACK");
    assert_eq!(
        debit_row.reason, None,
        "it had completed: refunded, not cancelled"
    );
    let rollback = rollback_of(&app, debit_ref).await.expect("recorded");
    assert_eq!(rollback.id, rollback_id);
    assert_eq!(
        (rollback.kind.as_str(), rollback.status.as_str()),
        ("ROLLBACK", "COMPLETED")
    );
    assert_eq!(
        (rollback.amount_cents, rollback.currency.as_str()),
        (1000, "USD")
    );
    assert_eq!(
        rollback.original_transaction_id.as_deref(),
        Some(&*debit_id)
    );
    assert_eq!(rollback.round_id.as_deref(), Some("round-7"));
    assert_eq!(rollback.reason, None);

    let replay = answer(app.debit(&debit_key, &debit_body).await).await;
    assert_eq!(replay.status, 201, "{}", replay.text);
    assert_eq!(
        replay.text, debit.text,
        "the debit's key keeps its first answer"
    );

    let data = the_rolled_back_webhook(&app, debit_ref).await;
    assert_eq!(data["transactionId"], rollback_id);
    assert_eq!(data["originalTransactionId"], debit_id.as_str());
    assert_eq!(data["originalRefId"], debit_ref);
    assert_eq!(data["refId"], body["refId"]);
    assert_eq!(data["type"], "ROLLBACK");
    assert_eq!(data["status"], "COMPLETED");
    assert_eq!(data["amountCents"], 1000);
    assert_eq!(data["balanceCents"], 10_000);
    assert_eq!(data["roundId"], "round-7");
    assert_eq!(
        event_types(&app, &debit_id).await,
        ["transaction.completed"],
        "the debit's own webhook is not repeated"
    );
}

async fn a_pending_debit_the_operator_never_charged_is_cancelled(backend: Backend) {
    let app = TestApp::spawn_with(backend, impatient()).await;
    let debit_body = wallet_body("player-001", 300, "USD");
    let (debit_key, debit_id) = debit_left_pending(&app, &debit_body, FaultKind::ServerError).await;
    let debit_ref = text(&debit_body, "refId");
    assert_eq!(app.operator.charges_for(&debit_id), 0);

    let body = rollback_body("player-001", debit_ref);
    let rolled_back = answer(app.rollback(&new_key(), &body).await).await;

    assert_eq!(rolled_back.status, 201, "{}", rolled_back.text);
    assert_eq!(rolled_back.json["status"], "OK");
    assert_eq!(rolled_back.json["balanceCents"], 10_000);
    assert_eq!(rolled_back.json["originalTransactionId"], debit_id.as_str());
    assert!(
        app.operator.is_cancelled(&debit_id),
        "the operator will refuse it"
    );
    assert_eq!(app.operator.charges_for(&debit_id), 0);
    assert_eq!(app.operator.refunds_for(&debit_id), 0);
    assert_eq!(app.operator.balance("player-001"), Some(10_000));
    let debit_row = row(&app, &debit_key).await;
    assert_eq!(debit_row.status, "ROLLED_BACK");
    assert_eq!(debit_row.reason.as_deref(), Some("CANCELLED"));
    assert_eq!(debit_row.next_recovery_at, None, "nothing left to recover");

    assert_debit_key_says_rolled_back(&app, &debit_key, &debit_body, &debit_id).await;
    let data = the_rolled_back_webhook(&app, debit_ref).await;
    assert_eq!(data["originalTransactionId"], debit_id.as_str());
    assert_eq!(data["balanceCents"], 10_000);
    assert_eq!(data["amountCents"], 300);
    assert!(event_types(&app, &debit_id).await.is_empty());
}

async fn a_pending_debit_the_operator_charged_is_refunded(backend: Backend) {
    let app = TestApp::spawn_with(backend, impatient()).await;
    let debit_body = wallet_body("player-001", 300, "USD");
    let late = FaultKind::Timeout {
        delay: Duration::from_secs(2),
    };
    let (debit_key, debit_id) = debit_left_pending(&app, &debit_body, late).await;
    assert_eq!(
        app.operator.charges_for(&debit_id),
        1,
        "charged, answer lost"
    );
    assert_eq!(app.operator.balance("player-001"), Some(9_700));

    let body = rollback_body("player-001", text(&debit_body, "refId"));
    let rolled_back = answer(app.rollback(&new_key(), &body).await).await;

    assert_eq!(rolled_back.status, 201, "{}", rolled_back.text);
    assert_eq!(rolled_back.json["balanceCents"], 10_000);
    assert_eq!(app.operator.refunds_for(&debit_id), 1);
    assert_eq!(app.operator.balance("player-001"), Some(10_000));
    let debit_row = row(&app, &debit_key).await;
    assert_eq!(
        (debit_row.status.as_str(), debit_row.reason.as_deref()),
        ("ROLLED_BACK", Some("CANCELLED"))
    );
    assert_debit_key_says_rolled_back(&app, &debit_key, &debit_body, &debit_id).await;
    assert_eq!(
        app.operator.charges_for(&debit_id),
        1,
        "never charged again"
    );
    the_rolled_back_webhook(&app, text(&debit_body, "refId")).await;
}

async fn a_rejected_debit_is_rolled_back_without_the_operator(backend: Backend) {
    let app = TestApp::spawn(backend).await;
    let (debit_key, debit_body) = (new_key(), wallet_body("player-004", 500, "USD"));
    let refused = answer(app.debit(&debit_key, &debit_body).await).await;
    assert_eq!(refused.status, 422, "{}", refused.text);
    let debit_id = text(&refused.json, "transactionId").to_owned();
    let calls = app.operator.calls().len();
    let debit_ref = text(&debit_body, "refId");

    let rolled_back = answer(
        app.rollback(&new_key(), &rollback_body("player-004", debit_ref))
            .await,
    )
    .await;

    assert_eq!(rolled_back.status, 201, "{}", rolled_back.text);
    assert_eq!(
        fields(&rolled_back.json),
        ["originalTransactionId", "refId", "status", "transactionId"],
        "no balance: the operator was not asked"
    );
    assert_eq!(rolled_back.json["originalTransactionId"], debit_id.as_str());
    assert_eq!(app.operator.calls().len(), calls, "no operator call");
    let rollback = rollback_of(&app, debit_ref).await.expect("recorded");
    assert_eq!(rollback.status, "COMPLETED");
    assert_eq!(rollback.reason.as_deref(), Some("ORIGINAL_REJECTED"));
    assert_eq!(
        row(&app, &debit_key).await.status,
        "REJECTED",
        "nothing moved"
    );
    let data = the_rolled_back_webhook(&app, debit_ref).await;
    assert_eq!(data["reason"], "ORIGINAL_REJECTED");
    assert_eq!(data["originalTransactionId"], debit_id.as_str());
    assert_eq!(data["balanceCents"], Value::Null);
    let replay = answer(app.debit(&debit_key, &debit_body).await).await;
    assert_eq!(
        replay.text, refused.text,
        "the debit's key keeps its answer"
    );
}

async fn an_unknown_ref_id_leaves_a_tombstone_that_refuses_the_debit(backend: Backend) {
    let app = TestApp::spawn(backend).await;
    let mut debit_body = wallet_body("player-001", 400, "USD");
    let debit_ref = text(&debit_body, "refId").to_owned();

    // The game cancels a bet whose debit never reached the hub (yet).
    let body = rollback_body("player-001", &debit_ref);
    let tombstone = answer(app.rollback(&new_key(), &body).await).await;

    assert_eq!(tombstone.status, 201, "{}", tombstone.text);
    assert_eq!(
        fields(&tombstone.json),
        ["refId", "status", "transactionId"],
        "no balance, no original"
    );
    let recorded = rollback_of(&app, &debit_ref).await.expect("recorded");
    assert_eq!(recorded.reason.as_deref(), Some("ORIGINAL_UNKNOWN"));
    assert_eq!(recorded.status, "COMPLETED");
    assert_eq!(recorded.amount_cents, 0);
    assert_eq!(recorded.original_transaction_id, None);

    // Then the debit arrives: refused, whichever key, and the operator never hears of it.
    let debit_key = new_key();
    for key in [&debit_key, &debit_key, &new_key()] {
        let late = answer(app.debit(key, &debit_body).await).await;
        assert_eq!(late.status, 409, "{}", late.text);
        assert_eq!(late.json["code"], "TRANSACTION_ROLLED_BACK");
    }
    debit_body["amountCents"] = json!(1);
    let other = answer(app.debit(&new_key(), &debit_body).await).await;
    assert_eq!(
        other.json["code"], "TRANSACTION_ROLLED_BACK",
        "{}",
        other.text
    );
    assert!(
        app.operator.calls().is_empty(),
        "{:?}",
        app.operator.calls()
    );
    assert_eq!(app.transaction_for_key(&debit_key).await, None);
    assert_eq!(app.operator.balance("player-001"), Some(10_000));

    let data = the_rolled_back_webhook(&app, &debit_ref).await;
    assert_eq!(data["transactionId"], tombstone.json["transactionId"]);
    assert_eq!(data["reason"], "ORIGINAL_UNKNOWN");
    assert_eq!(data.get("originalTransactionId"), None);
    assert_eq!(data["amountCents"], 0);
}

async fn a_second_rollback_under_another_key_is_told_which_came_first(backend: Backend) {
    let app = TestApp::spawn(backend).await;
    let (_, debit_body, debit) = debit_charged(&app, "player-001", 700).await;
    let debit_ref = text(&debit_body, "refId");
    let debit_id = text(&debit.json, "transactionId");
    let (first_key, first_body) = (new_key(), rollback_body("player-001", debit_ref));
    let first = answer(app.rollback(&first_key, &first_body).await).await;
    assert_eq!(first.status, 201, "{}", first.text);

    let second_key = new_key();
    let second = answer(
        app.rollback(&second_key, &rollback_body("player-001", debit_ref))
            .await,
    )
    .await;

    assert_eq!(second.status, 409, "{}", second.text);
    assert_eq!(second.json["code"], "ALREADY_ROLLED_BACK");
    assert_eq!(second.json["transactionId"], first.json["transactionId"]);
    assert_eq!(app.transaction_for_key(&second_key).await, None);
    assert_eq!(app.operator.refunds_for(debit_id), 1);
    assert_eq!(app.operator.balance("player-001"), Some(10_000));
    let replay = answer(app.rollback(&first_key, &first_body).await).await;
    assert_eq!(replay.text, first.text, "the first one still replays");

    // The same for a tombstone.
    let unknown = format!("never-seen-{}", Uuid::new_v4());
    let tomb = answer(
        app.rollback(&new_key(), &rollback_body("player-001", &unknown))
            .await,
    )
    .await;
    assert_eq!(tomb.status, 201, "{}", tomb.text);
    let again = answer(
        app.rollback(&new_key(), &rollback_body("player-001", &unknown))
            .await,
    )
    .await;
    assert_eq!(again.status, 409, "{}", again.text);
    assert_eq!(again.json["code"], "ALREADY_ROLLED_BACK");
    assert_eq!(again.json["transactionId"], tomb.json["transactionId"]);
    the_rolled_back_webhook(&app, debit_ref).await;
    the_rolled_back_webhook(&app, &unknown).await;
}

async fn only_a_players_own_debit_in_its_own_round_can_be_rolled_back(backend: Backend) {
    let app = TestApp::spawn(backend).await;
    let credit_body = wallet_body("player-001", 100, "USD");
    let credit = answer(app.credit(&new_key(), &credit_body).await).await;
    assert_eq!(credit.status, 201, "{}", credit.text);
    let (debit_key, mut debit_body) = (new_key(), wallet_body("player-001", 200, "USD"));
    debit_body["roundId"] = json!("round-a");
    let debit = answer(app.debit(&debit_key, &debit_body).await).await;
    assert_eq!(debit.status, 201, "{}", debit.text);
    let debit_ref = text(&debit_body, "refId");
    let mut other_round = rollback_body("player-001", debit_ref);
    other_round["roundId"] = json!("round-b");

    for (body, code) in [
        (
            rollback_body("player-001", text(&credit_body, "refId")),
            "NOT_ROLLBACKABLE",
        ),
        (rollback_body("player-005", debit_ref), "ROLLBACK_MISMATCH"),
        (other_round, "ROLLBACK_MISMATCH"),
    ] {
        let key = new_key();
        let refused = answer(app.rollback(&key, &body).await).await;
        assert_eq!(refused.status, 422, "{}", refused.text);
        assert_eq!(refused.json["code"], code, "{}", refused.text);
        assert_eq!(
            app.transaction_for_key(&key).await,
            None,
            "nothing recorded"
        );
    }
    assert_eq!(operator_rollback_calls(&app), 0);
    assert_eq!(row(&app, &debit_key).await.status, "COMPLETED");

    // The refusals did not use the debit's one rollback up.
    let mut right = rollback_body("player-001", debit_ref);
    right["roundId"] = json!("round-a");
    let rolled_back = answer(app.rollback(&new_key(), &right).await).await;
    assert_eq!(rolled_back.status, 201, "{}", rolled_back.text);
    assert_eq!(app.operator.balance("player-001"), Some(10_100));
}

async fn an_unreachable_operator_leaves_the_rollback_pending_for_the_retry(backend: Backend) {
    let app = TestApp::spawn_with(backend, impatient()).await;
    let (debit_key, debit_body, debit) = debit_charged(&app, "player-001", 500).await;
    let debit_id = text(&debit.json, "transactionId");
    let (key, body) = (
        new_key(),
        rollback_body("player-001", text(&debit_body, "refId")),
    );
    app.operator.inject_fault(FaultKind::ServerError, 1000);

    let failed = answer(app.rollback(&key, &body).await).await;

    assert_eq!(failed.status, 502, "{}", failed.text);
    assert_eq!(failed.json["code"], "OPERATOR_UNAVAILABLE");
    let pending = row(&app, &key).await;
    assert_eq!(pending.status, "PENDING");
    assert!(pending.next_recovery_at.is_some(), "never abandoned");
    assert_eq!(app.operator.refunds_for(debit_id), 0);
    assert_eq!(row(&app, &debit_key).await.status, "COMPLETED", "not yet");
    assert!(app.outbox_for(&pending.id).await.is_empty());

    app.operator.inject_fault(FaultKind::ServerError, 0);
    let resumed = answer(app.rollback(&key, &body).await).await;

    assert_eq!(resumed.status, 201, "{}", resumed.text);
    assert_eq!(
        resumed.json["transactionId"],
        pending.id.as_str(),
        "resumed"
    );
    assert_eq!(resumed.json["balanceCents"], 10_000);
    assert_eq!(app.operator.refunds_for(debit_id), 1);
    assert_eq!(row(&app, &debit_key).await.status, "ROLLED_BACK");
    let replay = answer(app.rollback(&key, &body).await).await;
    assert_eq!(replay.text, resumed.text);
    assert_eq!(app.operator.refunds_for(debit_id), 1, "refunded once");
    the_rolled_back_webhook(&app, text(&debit_body, "refId")).await;
}

async fn while_the_circuit_is_open_a_rollback_waits_and_then_resumes(backend: Backend) {
    let mut options = impatient();
    options.breaker.min_calls = 2;
    options.breaker.failure_ratio = 0.5;
    options.breaker.open_for = Duration::from_millis(500);
    let app = TestApp::spawn_with(backend, options).await;
    let (_, debit_body, debit) = debit_charged(&app, "player-001", 500).await;
    let debit_id = text(&debit.json, "transactionId");
    let debit_ref = text(&debit_body, "refId");
    let (key, body) = (new_key(), rollback_body("player-001", debit_ref));
    app.operator.inject_fault(FaultKind::ServerError, 1000);
    let failed = answer(app.rollback(&key, &body).await).await;
    assert_eq!(failed.status, 502, "{}", failed.text);

    // One call of two failed: the circuit is open.
    let refused = answer(app.rollback(&key, &body).await).await;
    assert_eq!(refused.status, 503, "{}", refused.text);
    assert_eq!(refused.json["code"], "OPERATOR_UNAVAILABLE");
    assert!(refused.headers.contains_key("retry-after"));
    assert_eq!(row(&app, &key).await.status, "PENDING");
    // A rollback that needs no operator call is still recorded.
    let unknown = format!("never-seen-{}", Uuid::new_v4());
    let tomb = answer(
        app.rollback(&new_key(), &rollback_body("player-001", &unknown))
            .await,
    )
    .await;
    assert_eq!(tomb.status, 201, "{}", tomb.text);

    app.operator.inject_fault(FaultKind::ServerError, 0);
    let resumed = eventually(
        "the circuit to let the retry through",
        Duration::from_secs(10),
        || async {
            let retried = answer(app.rollback(&key, &body).await).await;
            (retried.status != 503).then_some(retried)
        },
    )
    .await;
    assert_eq!(resumed.status, 201, "{}", resumed.text);
    assert_eq!(app.operator.refunds_for(debit_id), 1);
    assert_eq!(app.operator.balance("player-001"), Some(10_000));
    the_rolled_back_webhook(&app, debit_ref).await;
}

async fn rollback_requests_are_idempotent_and_validated(backend: Backend) {
    let app = TestApp::spawn(backend).await;
    let (_, debit_body, _) = debit_charged(&app, "player-001", 500).await;
    let debit_ref = text(&debit_body, "refId");
    let (key, body) = (new_key(), rollback_body("player-001", debit_ref));
    let first = answer(app.rollback(&key, &body).await).await;
    assert_eq!(first.status, 201, "{}", first.text);

    let replay = answer(app.rollback(&key, &body).await).await;
    assert_eq!(replay.status, 201);
    assert_eq!(replay.text, first.text, "byte for byte");
    assert_eq!(replay.headers["idempotent-replayed"], "true");
    // Same fields in another order and spacing: the same request.
    let reordered = format!(
        r#"{{ "originalRefId": "{debit_ref}", "refId": "{}",  "playerId": "player-001" }}"#,
        text(&body, "refId")
    );
    let same = answer(app.post_signed("/wallet/rollback", &key, &reordered).await).await;
    assert_eq!(same.text, first.text);
    assert_eq!(
        app.operator
            .refunds_for(text(&first.json, "originalTransactionId")),
        1
    );

    let mut changed = body.clone();
    changed["meta"] = json!({"reason": "other"});
    let reused = answer(app.rollback(&key, &changed).await).await;
    assert_eq!(reused.status, 422, "{}", reused.text);
    assert_eq!(reused.json["code"], "IDEMPOTENCY_KEY_REUSED");

    let unkeyed = answer(
        post_signed_without_key(
            &app.client,
            &app.address,
            "/wallet/rollback",
            &rollback_body("player-001", debit_ref).to_string(),
        )
        .await,
    )
    .await;
    assert_eq!(unkeyed.status, 400, "{}", unkeyed.text);
    assert_eq!(unkeyed.json["code"], "MISSING_IDEMPOTENCY_KEY");

    let mut own_ref = rollback_body("player-001", debit_ref);
    own_ref["refId"] = json!(debit_ref);
    let mut no_original = rollback_body("player-001", debit_ref);
    no_original.as_object_mut().unwrap().remove("originalRefId");
    let mut numeric_round = rollback_body("player-001", debit_ref);
    numeric_round["roundId"] = json!(7);
    for (invalid, field) in [
        (own_ref, "refId"),
        (no_original, "originalRefId"),
        (numeric_round, "roundId"),
    ] {
        let key = new_key();
        let refused = answer(app.rollback(&key, &invalid).await).await;
        assert_eq!(refused.status, 400, "{}", refused.text);
        assert_eq!(refused.json["code"], "INVALID_REQUEST");
        assert_eq!(refused.json["field"], field, "{}", refused.text);
        assert_eq!(app.transaction_for_key(&key).await, None);
    }

    // A rollback's own refId is unique like any other.
    let taken = answer(
        app.credit(&new_key(), &wallet_body("player-001", 100, "USD"))
            .await,
    )
    .await;
    let mut duplicate = rollback_body("player-001", &format!("x-{}", Uuid::new_v4()));
    duplicate["refId"] = taken.json["refId"].clone();
    let conflict = answer(app.rollback(&new_key(), &duplicate).await).await;
    assert_eq!(conflict.status, 409, "{}", conflict.text);
    assert_eq!(conflict.json["code"], "DUPLICATE_REF_ID");

    let forged = app
        .client
        .post(format!("{}/wallet/rollback", app.address))
        .header("Content-Type", "application/json")
        .header("Idempotency-Key", new_key())
        .header("X-Timestamp", Utc::now().timestamp().to_string())
        .header("X-Signature", "0".repeat(64))
        .body(rollback_body("player-001", debit_ref).to_string())
        .send()
        .await
        .unwrap();
    assert_eq!(forged.status(), 401);
    assert_eq!(operator_rollback_calls(&app), 1);
}

/// Replays must not depend on the key still being stored: after the reaper removed it, the
/// same rollback gets its first answer again (rebuilt from its row), never a conflict.
async fn a_rollbacks_replay_after_its_key_is_reaped_is_the_first_answer(backend: Backend) {
    let app = TestApp::spawn(backend).await;
    let (_, mut debit_body) = (new_key(), wallet_body("player-001", 500, "USD"));
    debit_body["roundId"] = json!("round-r");
    let debit = answer(app.debit(&new_key(), &debit_body).await).await;
    assert_eq!(debit.status, 201, "{}", debit.text);
    // The rollback names no round: it is recorded in its debit's.
    let refunded = (
        new_key(),
        rollback_body("player-001", text(&debit_body, "refId")),
    );
    let tombstone = (
        new_key(),
        rollback_body("player-001", &format!("never-seen-{}", Uuid::new_v4())),
    );
    let mut firsts = Vec::new();
    for (key, body) in [&refunded, &tombstone] {
        let first = answer(app.rollback(key, body).await).await;
        assert_eq!(first.status, 201, "{}", first.text);
        firsts.push(first);
    }
    let before = (Utc::now() + TimeDelta::seconds(1)).naive_utc();
    let reaped = app
        .store
        .run(move |conn| idempotency_keys::reap(conn, before, 500).map_err(StoreError::from))
        .await
        .unwrap();
    assert_eq!(reaped, 3);

    for ((key, body), first) in [&refunded, &tombstone].into_iter().zip(&firsts) {
        let again = answer(app.rollback(key, body).await).await;
        assert_eq!(again.status, 201, "{}", again.text);
        assert_eq!(again.text, first.text, "byte for byte");
        assert_eq!(again.headers["idempotent-replayed"], "true");
        let mut changed = body.clone();
        changed["meta"] = json!({"changed": true});
        let reused = answer(app.rollback(key, &changed).await).await;
        assert_eq!(reused.status, 422, "{}", reused.text);
        assert_eq!(reused.json["code"], "IDEMPOTENCY_KEY_REUSED");
    }
    assert_eq!(operator_rollback_calls(&app), 1);
}

async fn the_balance_is_read_live_from_the_operator(backend: Backend) {
    let app = TestApp::spawn(backend).await;
    let asked = json!({"playerId": "player-001", "currency": "USD"});
    let balance = answer(app.balance(&asked).await).await;
    assert_eq!(balance.status, 200, "{}", balance.text);
    assert_eq!(
        balance.json,
        json!({"playerId": "player-001", "currency": "USD", "balanceCents": 10_000})
    );
    debit_charged(&app, "player-001", 250).await;
    let after = answer(app.balance(&asked).await).await;
    assert_eq!(after.json["balanceCents"], 9_750, "{}", after.text);
    let euros = answer(
        app.balance(&json!({"playerId": "player-002", "currency": "EUR"}))
            .await,
    )
    .await;
    assert_eq!(euros.json["balanceCents"], 5_000, "{}", euros.text);

    let unknown = answer(
        app.balance(&json!({"playerId": "player-nobody", "currency": "USD"}))
            .await,
    )
    .await;
    assert_eq!(unknown.status, 404, "{}", unknown.text);
    assert_eq!(unknown.json["code"], "PLAYER_NOT_FOUND");
    let wrong = answer(
        app.balance(&json!({"playerId": "player-001", "currency": "EUR"}))
            .await,
    )
    .await;
    assert_eq!(wrong.status, 422, "{}", wrong.text);
    assert_eq!(wrong.json["code"], "CURRENCY_MISMATCH");
    let unsupported = answer(
        app.balance(&json!({"playerId": "player-001", "currency": "TRY"}))
            .await,
    )
    .await;
    assert_eq!(unsupported.status, 422, "{}", unsupported.text);
    assert_eq!(unsupported.json["code"], "UNSUPPORTED_CURRENCY");
    let missing = answer(app.balance(&json!({"currency": "USD"})).await).await;
    assert_eq!(missing.status, 400, "{}", missing.text);
    assert_eq!(missing.json["field"], "playerId");

    let body = asked.to_string();
    let timestamp = Utc::now().timestamp().to_string();
    let wrong_secret = SECRET.replace('0', "1");
    let forged = hub::signature::sign(wrong_secret.as_bytes(), body.as_bytes(), &timestamp);
    let refused = answer(
        app.client
            .post(format!("{}/wallet/balance", app.address))
            .header("Content-Type", "application/json")
            .header("X-Timestamp", timestamp)
            .header("X-Signature", forged)
            .body(body)
            .send()
            .await
            .unwrap(),
    )
    .await;
    assert_eq!(refused.status, 401, "{}", refused.text);
    assert_eq!(refused.json["code"], "INVALID_SIGNATURE");
}

async fn rounds_are_part_of_the_request_stored_and_sent(backend: Backend) {
    let app = TestApp::spawn(backend).await;
    let (debit_key, mut debit_body) = (new_key(), wallet_body("player-001", 300, "USD"));
    debit_body["roundId"] = json!("round-42");
    debit_body["roundClosed"] = json!(false);
    let debit = answer(app.debit(&debit_key, &debit_body).await).await;
    assert_eq!(debit.status, 201, "{}", debit.text);
    let (credit_key, mut credit_body) = (new_key(), wallet_body("player-001", 900, "USD"));
    credit_body["roundId"] = json!("round-42");
    credit_body["roundClosed"] = json!(true);
    let credit = answer(app.credit(&credit_key, &credit_body).await).await;
    assert_eq!(credit.status, 201, "{}", credit.text);

    // The round is part of what the key stands for.
    let mut moved = debit_body.clone();
    moved["roundId"] = json!("round-43");
    let mut closed = debit_body.clone();
    closed["roundClosed"] = json!(true);
    let mut dropped = debit_body.clone();
    dropped.as_object_mut().unwrap().remove("roundId");
    for other in [moved, closed, dropped] {
        let reused = answer(app.debit(&debit_key, &other).await).await;
        assert_eq!(reused.status, 422, "{other}: {}", reused.text);
        assert_eq!(reused.json["code"], "IDEMPOTENCY_KEY_REUSED");
    }
    // An explicit `false` is the default.
    let mut implicit = debit_body.clone();
    implicit.as_object_mut().unwrap().remove("roundClosed");
    let replay = answer(app.debit(&debit_key, &implicit).await).await;
    assert_eq!(replay.text, debit.text);

    for (body, field) in [
        (json!(12), "roundId"),
        (json!(""), "roundId"),
        (json!("yes"), "roundClosed"),
    ] {
        let mut invalid = wallet_body("player-001", 100, "USD");
        invalid[field] = body;
        let refused = answer(app.debit(&new_key(), &invalid).await).await;
        assert_eq!(refused.status, 400, "{}", refused.text);
        assert_eq!(refused.json["field"], field, "{}", refused.text);
    }

    let debit_row = row(&app, &debit_key).await;
    assert_eq!(
        (debit_row.round_id.as_deref(), debit_row.round_closed),
        (Some("round-42"), false)
    );
    let credit_row = row(&app, &credit_key).await;
    assert_eq!(
        (credit_row.round_id.as_deref(), credit_row.round_closed),
        (Some("round-42"), true)
    );
    app.wait_until_all_delivered(2).await;
    let payload_of = |id: String| {
        let app = &app;
        async move {
            let events = app.outbox_for(&id).await;
            assert_eq!(events.len(), 1);
            serde_json::from_str::<Value>(&events[0].payload).unwrap()
        }
    };
    let debit_event = payload_of(debit_row.id.clone()).await;
    assert_eq!(debit_event["data"]["roundId"], "round-42");
    assert_ne!(debit_event["data"]["roundClosed"], true);
    let credit_event = payload_of(credit_row.id.clone()).await;
    assert_eq!(credit_event["data"]["roundId"], "round-42");
    assert_eq!(credit_event["data"]["roundClosed"], true);
    let delivered: Vec<Value> = app.rgs.deliveries().into_iter().map(|d| d.body).collect();
    assert!(delivered
        .iter()
        .any(|body| body["data"]["roundClosed"] == true && body["data"]["roundId"] == "round-42"));
}
