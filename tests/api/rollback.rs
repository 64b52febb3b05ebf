//! Rollbacks, balance and rounds (DESIGN §8): every row of the rollback table, and the races
//! the design is there for — a rollback against its own debit still on its way to the
//! operator, two rollbacks of one debit (on one hub and on two replicas), a client's rollback
//! against the completer's cancellation — each ending with the player's money unchanged net
//! and exactly one `transaction.rolled_back` webhook.

use std::collections::{BTreeMap, HashSet};
use std::time::Duration;

use chrono::{TimeDelta, Utc};
use futures_util::future::join_all;
use hub::store::outbox::OutboxRow;
use hub::store::transactions::{self, TransactionRow};
use hub::store::{idempotency_keys, StoreError};
use mock_operator::FaultKind;
use serde_json::{json, Value};
use uuid::Uuid;

use crate::gate::{GatedOperator, Hold};
use crate::helpers::{
    answer, eventually, new_key, on_both_backends, post_signed, post_signed_without_key,
    wallet_body, Answer, Backend, Options, TestApp, SECRET,
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
    a_debit_overruled_by_a_pending_rollback_replays_its_409_after_its_key_is_reaped,
    the_balance_is_read_live_from_the_operator,
    rounds_are_part_of_the_request_stored_and_sent,
    a_rollback_overtaking_its_debit_at_the_operator_cancels_it,
    a_rollback_while_the_debits_answer_is_on_its_way_refunds_it,
    a_debit_and_its_rollback_sent_together_move_no_money_net,
    two_rollbacks_of_one_debit_under_two_keys_settle_once,
    a_client_rollback_while_the_completer_cancels_the_debit_settles_once,
    a_debit_its_client_is_rolling_back_is_left_to_that_rollback,
    client_rollbacks_racing_the_completer_move_no_money_net,
    a_debit_whose_client_vanished_is_refunded_by_the_completer,
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

/// The debit's key got its 409 when the rollback was claimed; the rollback is still unknown
/// a day later when the reaper removes that key: the debit's replay is still the 409.
async fn a_debit_overruled_by_a_pending_rollback_replays_its_409_after_its_key_is_reaped(
    backend: Backend,
) {
    let app = TestApp::spawn_with(backend, impatient()).await;
    app.operator.inject_fault(FaultKind::ServerError, 1000);
    let (debit_key, debit_body) = (new_key(), wallet_body("player-001", 500, "USD"));
    let unknown = answer(app.debit(&debit_key, &debit_body).await).await;
    assert_eq!(unknown.status, 502, "{}", unknown.text);
    let (key, body) = (
        new_key(),
        rollback_body("player-001", text(&debit_body, "refId")),
    );
    let failed = answer(app.rollback(&key, &body).await).await;
    assert_eq!(failed.status, 502, "{}", failed.text);
    let overruled = answer(app.debit(&debit_key, &debit_body).await).await;
    assert_eq!(overruled.status, 409, "{}", overruled.text);
    assert_eq!(overruled.json["code"], "TRANSACTION_ROLLED_BACK");

    let before = (Utc::now() + TimeDelta::seconds(1)).naive_utc();
    let reaped = app
        .store
        .run(move |conn| idempotency_keys::reap(conn, before, 500).map_err(StoreError::from))
        .await
        .unwrap();
    assert_eq!(reaped, 1, "only the debit's key has its answer");
    assert_eq!(
        row(&app, &debit_key).await.status,
        "PENDING",
        "its rollback decides it"
    );

    let again = answer(app.debit(&debit_key, &debit_body).await).await;
    assert_eq!(again.status, 409, "{}", again.text);
    assert_eq!(again.text, overruled.text, "byte for byte");
    assert_eq!(app.operator.charges_for(&row(&app, &debit_key).await.id), 0);
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
    // And the debit it forbids is refused as such, not told to come back later.
    let mut forbidden = wallet_body("player-001", 100, "USD");
    forbidden["refId"] = json!(unknown);
    let refused_debit = answer(app.debit(&new_key(), &forbidden).await).await;
    assert_eq!(refused_debit.status, 409, "{}", refused_debit.text);
    assert_eq!(refused_debit.json["code"], "TRANSACTION_ROLLED_BACK");

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
    // The rollback names no round (its debit has one): the row records none either.
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

    for (asked, status, code) in [
        (
            json!({"playerId": "player-nobody", "currency": "USD"}),
            404,
            "PLAYER_NOT_FOUND",
        ),
        (
            json!({"playerId": "player-001", "currency": "EUR"}),
            422,
            "CURRENCY_MISMATCH",
        ),
        (
            json!({"playerId": "player-001", "currency": "TRY"}),
            422,
            "UNSUPPORTED_CURRENCY",
        ),
    ] {
        let refused = answer(app.balance(&asked).await).await;
        assert_eq!(refused.status, status, "{asked}: {}", refused.text);
        assert_eq!(refused.json["code"], code, "{asked}");
    }
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
    assert_eq!(
        debit_event["data"]["roundClosed"], false,
        "present with its round"
    );
    let credit_event = payload_of(credit_row.id.clone()).await;
    assert_eq!(credit_event["data"]["roundId"], "round-42");
    assert_eq!(credit_event["data"]["roundClosed"], true);
    let delivered: Vec<Value> = app.rgs.deliveries().into_iter().map(|d| d.body).collect();
    assert!(delivered
        .iter()
        .any(|body| body["data"]["roundClosed"] == true && body["data"]["roundId"] == "round-42"));
}

// ---------------------------------------------------------------------------------------
// A rollback racing its own debit.

/// A hub whose operator calls pass through a gate in front of the test's mock operator.
async fn gated_app(backend: Backend, mut options: Options) -> (TestApp, GatedOperator) {
    let gated = GatedOperator::start();
    options.operator_url = Some(gated.base_url.clone());
    let app = TestApp::spawn_with(backend, options).await;
    gated.forward_to(app.operator.base_url());
    (app, gated)
}

fn patient() -> Options {
    let mut options = Options::default();
    options.retry.attempt_timeout = Duration::from_secs(5);
    options.retry.deadline = Duration::from_secs(10);
    options
}

/// The debit's call is held at the gate (before the operator, or with the operator's answer)
/// while its rollback arrives and settles; then the debit's call goes on.
async fn rollback_while_the_debit_is_held(
    app: &TestApp,
    gated: &GatedOperator,
    hold: Hold,
) -> (String, Value, Answer, Answer) {
    let gate = gated.hold(hold, |path, _| path.ends_with("/withdraw"));
    let (debit_key, debit_body) = (new_key(), wallet_body("player-001", 600, "USD"));
    let body = rollback_body("player-001", text(&debit_body, "refId"));
    let (debit, rolled_back) = tokio::join!(
        async { answer(app.debit(&debit_key, &debit_body).await).await },
        async {
            eventually(
                "the debit's call to be held",
                Duration::from_secs(10),
                || async { (gate.waiting() > 0).then_some(()) },
            )
            .await;
            let rolled_back = answer(app.rollback(&new_key(), &body).await).await;
            assert_eq!(gate.waiting(), 1, "the debit's call still held");
            gate.open();
            rolled_back
        },
    );
    (debit_key, debit_body, debit, rolled_back)
}

/// Whatever the interleaving, the debit ends ROLLED_BACK and its key answers 409.
async fn assert_cancelled_in_flight(
    app: &TestApp,
    debit_key: &str,
    debit_body: &Value,
    debit: &Answer,
    rolled_back: &Answer,
) -> String {
    assert_eq!(rolled_back.status, 201, "{}", rolled_back.text);
    assert_eq!(debit.status, 409, "{}", debit.text);
    assert_eq!(debit.json["code"], "TRANSACTION_ROLLED_BACK");
    let debit_row = row(app, debit_key).await;
    assert_eq!(
        (debit_row.status.as_str(), debit_row.reason.as_deref()),
        ("ROLLED_BACK", Some("CANCELLED"))
    );
    assert_eq!(
        rolled_back.json["originalTransactionId"],
        debit_row.id.as_str()
    );
    assert_debit_key_says_rolled_back(app, debit_key, debit_body, &debit_row.id).await;
    assert!(
        event_types(app, &debit_row.id).await.is_empty(),
        "no transaction.completed for a debit rolled back in flight"
    );
    let data = the_rolled_back_webhook(app, text(debit_body, "refId")).await;
    assert_eq!(data["originalTransactionId"], debit_row.id.as_str());
    debit_row.id
}

/// A debit held at `hold` while its rollback arrives: the rollback answers with the player's
/// balance unchanged and the debit ends cancelled in flight. The gate stays open with the app.
async fn rolled_back_while_held(backend: Backend, hold: Hold) -> (TestApp, GatedOperator, String) {
    let (app, gated) = gated_app(backend, patient()).await;
    let (debit_key, debit_body, debit, rolled_back) =
        rollback_while_the_debit_is_held(&app, &gated, hold).await;
    let debit_id =
        assert_cancelled_in_flight(&app, &debit_key, &debit_body, &debit, &rolled_back).await;
    assert_eq!(rolled_back.json["balanceCents"], 10_000);
    (app, gated, debit_id)
}

async fn a_rollback_overtaking_its_debit_at_the_operator_cancels_it(backend: Backend) {
    let (app, _gated, debit_id) = rolled_back_while_held(backend, Hold::BeforeOperator).await;
    assert!(app.operator.is_cancelled(&debit_id));
    assert_eq!(
        app.operator.charges_for(&debit_id),
        0,
        "the late withdraw was refused"
    );
    assert_eq!(app.operator.refunds_for(&debit_id), 0);
    let withdraws: Vec<u16> = app
        .operator
        .calls()
        .iter()
        .filter(|c| {
            c.transaction_id.as_deref() == Some(&*debit_id) && c.path.ends_with("/withdraw")
        })
        .map(|c| c.status)
        .collect();
    assert_eq!(
        withdraws,
        [409],
        "it reached the operator after the rollback"
    );
    assert_eq!(app.operator.balance("player-001"), Some(10_000));
}

async fn a_rollback_while_the_debits_answer_is_on_its_way_refunds_it(backend: Backend) {
    let (app, _gated, debit_id) = rolled_back_while_held(backend, Hold::AfterOperator).await;
    assert_eq!(app.operator.charges_for(&debit_id), 1, "it was charged");
    assert_eq!(app.operator.refunds_for(&debit_id), 1, "and refunded");
    assert_eq!(app.operator.balance("player-001"), Some(10_000));
}

async fn a_debit_and_its_rollback_sent_together_move_no_money_net(backend: Backend) {
    let app = TestApp::spawn(backend).await;
    debits_racing_their_rollbacks(&app, [app.address.as_str(), app.address.as_str()]).await;
}

/// The same race with the debit sent to one replica and its rollback to the other: the
/// debit's lease, the rollback's claim and both settlements meet only in the database.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
#[cfg_attr(
    not(postgres_tests),
    ignore = "set TEST_DATABASE_URL to run the replica tests on Postgres"
)]
async fn a_debit_and_its_rollback_on_two_replicas_move_no_money_net() {
    let app = TestApp::spawn(Backend::Postgres).await;
    let replica = app.start_replica(&Options::default()).await;
    debits_racing_their_rollbacks(&app, [app.address.as_str(), replica.address.as_str()]).await;
}

/// Sixteen rounds of a debit (to `addresses[0]`) and its rollback (to `addresses[1]`) sent
/// a few milliseconds apart in every order; each ends with the player's money unchanged.
async fn debits_racing_their_rollbacks(app: &TestApp, addresses: [&str; 2]) {
    let mut seen: BTreeMap<&str, usize> = BTreeMap::new();
    for round in 0..16_u64 {
        let (debit_key, debit_body) = (new_key(), wallet_body("player-005", 100, "USD"));
        let debit_ref = text(&debit_body, "refId");
        let body = rollback_body("player-005", debit_ref);
        // Staggered by a few milliseconds, so that every order gets its turn.
        let (rollback_later, debit_later) = match round % 4 {
            0 => (0, 0),
            1 => (3, 0),
            2 => (8, 0),
            _ => (0, 3),
        };
        let (debit, rolled_back) = tokio::join!(
            async {
                tokio::time::sleep(Duration::from_millis(debit_later)).await;
                let raw = debit_body.to_string();
                let sent =
                    post_signed(&app.client, addresses[0], "/wallet/debit", &debit_key, &raw);
                answer(sent.await).await
            },
            async {
                tokio::time::sleep(Duration::from_millis(rollback_later)).await;
                let (key, raw) = (new_key(), body.to_string());
                let sent = post_signed(&app.client, addresses[1], "/wallet/rollback", &key, &raw);
                answer(sent.await).await
            },
        );
        assert_eq!(rolled_back.status, 201, "{}", rolled_back.text);
        let outcome = match (debit.status, app.transaction_for_key(&debit_key).await) {
            (201, Some(debit_row)) => {
                assert_eq!(
                    rolled_back.json["originalTransactionId"],
                    debit_row.id.as_str()
                );
                assert_eq!(debit_row.status, "ROLLED_BACK");
                assert_eq!(app.operator.charges_for(&debit_row.id), 1);
                assert_eq!(app.operator.refunds_for(&debit_row.id), 1);
                assert_eq!(
                    event_types(app, &debit_row.id).await,
                    ["transaction.completed"]
                );
                "debit completed, then refunded"
            }
            (409, Some(_)) => {
                assert_cancelled_in_flight(app, &debit_key, &debit_body, &debit, &rolled_back)
                    .await;
                "debit cancelled in flight"
            }
            (409, None) => {
                assert_eq!(
                    debit.json["code"], "TRANSACTION_ROLLED_BACK",
                    "{}",
                    debit.text
                );
                assert_eq!(rolled_back.json.get("originalTransactionId"), None);
                "tombstone first, debit refused"
            }
            (status, _) => panic!("debit answered {status}: {}", debit.text),
        };
        *seen.entry(outcome).or_default() += 1;
        the_rolled_back_webhook(app, debit_ref).await;
        assert_eq!(
            app.operator.balance("player-005"),
            Some(25_000),
            "round {round} ({outcome})"
        );
    }
    println!("interleavings seen: {seen:?}");
}

// ---------------------------------------------------------------------------------------
// Two rollbacks of one debit.

/// One debit (charged, or left pending and never charged), then two rollbacks of it under
/// two keys sent at once, one to each address: exactly one wins.
async fn two_rollbacks_race(app: &TestApp, addresses: [&str; 2], pending: bool) {
    let debit_body = wallet_body("player-005", 100, "USD");
    let debit_id = if pending {
        debit_left_pending(app, &debit_body, FaultKind::ServerError)
            .await
            .1
    } else {
        let debit = answer(app.debit(&new_key(), &debit_body).await).await;
        assert_eq!(debit.status, 201, "{}", debit.text);
        text(&debit.json, "transactionId").to_owned()
    };
    let debit_ref = text(&debit_body, "refId");
    let rollback_calls = operator_rollback_calls(app);
    let sent: Vec<(String, Value)> = (0..2)
        .map(|_| (new_key(), rollback_body("player-005", debit_ref)))
        .collect();

    let answers = join_all(
        sent.iter()
            .zip(addresses)
            .map(|((key, body), address)| async move {
                let body = body.to_string();
                answer(post_signed(&app.client, address, "/wallet/rollback", key, &body).await)
                    .await
            }),
    )
    .await;

    let (won, lost): (Vec<_>, Vec<_>) = answers
        .iter()
        .zip(&sent)
        .partition(|(a, _)| a.status == 201);
    assert_eq!(
        (won.len(), lost.len()),
        (1, 1),
        "{:?}",
        answers.iter().map(|a| &a.text).collect::<Vec<_>>()
    );
    let (winner, loser) = (won[0].0, lost[0]);
    assert_eq!(loser.0.status, 409, "{}", loser.0.text);
    assert_eq!(loser.0.json["code"], "ALREADY_ROLLED_BACK");
    assert_eq!(loser.0.json["transactionId"], winner.json["transactionId"]);
    assert_eq!(app.transaction_for_key(&loser.1 .0).await, None);
    assert_eq!(operator_rollback_calls(app), rollback_calls + 1, "one call");
    if pending {
        assert!(app.operator.is_cancelled(&debit_id));
        assert_eq!(app.operator.refunds_for(&debit_id), 0);
    } else {
        assert_eq!(app.operator.refunds_for(&debit_id), 1, "one refund");
    }
    let data = the_rolled_back_webhook(app, debit_ref).await;
    assert_eq!(data["transactionId"], winner.json["transactionId"]);
    assert_eq!(app.operator.balance("player-005"), Some(25_000));
}

async fn two_rollbacks_of_one_debit_under_two_keys_settle_once(backend: Backend) {
    let app = TestApp::spawn_with(backend, impatient()).await;
    for round in 0..12 {
        two_rollbacks_race(&app, [&app.address, &app.address], round % 3 == 2).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
#[cfg_attr(
    not(postgres_tests),
    ignore = "set TEST_DATABASE_URL to run the replica tests on Postgres"
)]
async fn two_rollbacks_on_two_replicas_settle_once() {
    let app = TestApp::spawn_with(Backend::Postgres, impatient()).await;
    let replica = app.start_replica(&impatient()).await;
    for round in 0..12 {
        // Each replica gets the first and the second rollback in turn.
        let addresses = if round % 2 == 0 {
            [app.address.as_str(), replica.address.as_str()]
        } else {
            [replica.address.as_str(), app.address.as_str()]
        };
        two_rollbacks_race(&app, addresses, round % 3 == 2).await;
    }
}

// ---------------------------------------------------------------------------------------
// A client's rollback racing the completer's cancellation of an abandoned debit.

fn cancelling_soon(options: &mut Options) {
    options.debit_resume_window = Duration::from_secs(1);
    options.completer_backoff_initial = Duration::from_millis(100);
    options.completer_backoff_max = Duration::from_millis(200);
    options.breaker.min_calls = 1_000_000;
}

fn hub_cancel_key(debit_id: &str) -> String {
    format!("hub-cancel:{debit_id}")
}

async fn a_client_rollback_while_the_completer_cancels_the_debit_settles_once(backend: Backend) {
    let mut options = patient();
    options.retry.deadline = Duration::from_millis(700);
    cancelling_soon(&mut options);
    let (app, gated) = gated_app(backend, options).await;
    let gate = gated.hold(Hold::BeforeOperator, |path, body| {
        path.ends_with("/rollback") && body.contains("refId=hub-cancel:")
    });
    let debit_body = wallet_body("player-001", 800, "USD");
    let debit_ref = text(&debit_body, "refId");
    let (debit_key, debit_id) = debit_left_pending(&app, &debit_body, FaultKind::ServerError).await;

    eventually(
        "the completer's rollback to be at the operator",
        Duration::from_secs(10),
        || async { (gate.waiting() > 0).then_some(()) },
    )
    .await;
    let hub_rollback = row(&app, &hub_cancel_key(&debit_id)).await;
    assert_eq!(hub_rollback.status, "PENDING");
    assert_eq!(hub_rollback.ref_id, hub_cancel_key(&debit_id));
    assert_eq!(row(&app, &debit_key).await.next_recovery_at, None);
    // The debit's key was given its final answer when the completer claimed the rollback.
    let early = answer(app.debit(&debit_key, &debit_body).await).await;
    assert_eq!(
        early.json["code"], "TRANSACTION_ROLLED_BACK",
        "{}",
        early.text
    );

    let client = answer(
        app.rollback(&new_key(), &rollback_body("player-001", debit_ref))
            .await,
    )
    .await;

    assert_eq!(client.status, 409, "{}", client.text);
    assert_eq!(client.json["code"], "ALREADY_ROLLED_BACK");
    assert_eq!(client.json["transactionId"], hub_rollback.id.as_str());
    gate.open();
    eventually(
        "the completer's rollback to settle",
        Duration::from_secs(20),
        || async { (row(&app, &debit_key).await.status == "ROLLED_BACK").then_some(()) },
    )
    .await;
    assert_eq!(
        row(&app, &hub_cancel_key(&debit_id)).await.status,
        "COMPLETED"
    );
    assert!(app.operator.is_cancelled(&debit_id));
    assert_eq!(app.operator.charges_for(&debit_id), 0);
    assert_eq!(app.operator.balance("player-001"), Some(10_000));
    let data = the_rolled_back_webhook(&app, debit_ref).await;
    assert_eq!(data["transactionId"], hub_rollback.id.as_str());
    assert_eq!(data["refId"], hub_cancel_key(&debit_id));
    assert_eq!(data["originalTransactionId"], debit_id.as_str());
    assert_debit_key_says_rolled_back(&app, &debit_key, &debit_body, &debit_id).await;
}

async fn a_debit_its_client_is_rolling_back_is_left_to_that_rollback(backend: Backend) {
    let mut options = patient();
    cancelling_soon(&mut options);
    let (app, gated) = gated_app(backend, options).await;
    let debit_body = wallet_body("player-001", 800, "USD");
    let debit_ref = text(&debit_body, "refId").to_owned();
    let body = rollback_body("player-001", &debit_ref);
    let client_ref = text(&body, "refId").to_owned();
    let gate = gated.hold(Hold::BeforeOperator, move |path, text| {
        path.ends_with("/rollback") && text.contains(&client_ref)
    });
    let (debit_key, rollback_key) = (new_key(), new_key());
    // A second abandoned debit, created just after: once the completer has cancelled it,
    // it has looked at ours too.
    let sentinel_body = wallet_body("player-005", 100, "USD");
    let sentinel_key = new_key();
    app.operator.inject_fault(FaultKind::ServerError, 100_000);

    // While the debit's request is still retrying, its client gives up on it.
    let client_gives_up = async {
        eventually(
            "the debit to be recorded",
            Duration::from_secs(10),
            || async { app.transaction_for_key(&debit_key).await.map(|_| ()) },
        )
        .await;
        answer(app.rollback(&rollback_key, &body).await).await
    };
    let abandoned = async {
        let (debit, sentinel) = tokio::join!(
            async { answer(app.debit(&debit_key, &debit_body).await).await },
            async {
                tokio::time::sleep(Duration::from_millis(50)).await;
                answer(app.debit(&sentinel_key, &sentinel_body).await).await
            },
        );
        eventually(
            "the client's rollback to be at the operator",
            Duration::from_secs(10),
            || async { (gate.waiting() > 0).then_some(()) },
        )
        .await;
        app.operator.inject_fault(FaultKind::ServerError, 0);
        app.wait_for_transaction(&sentinel_key, "ROLLED_BACK", Duration::from_secs(20))
            .await;
        gate.open();
        (debit, sentinel)
    };
    let (rolled_back, (debit, sentinel)) = tokio::join!(client_gives_up, abandoned);

    assert_eq!(sentinel.status, 502, "{}", sentinel.text);
    assert_eq!(rolled_back.status, 201, "{}", rolled_back.text);
    assert!(
        debit.status == 502 || debit.json["code"] == "TRANSACTION_ROLLED_BACK",
        "{}",
        debit.text
    );
    let debit_id = row(&app, &debit_key).await.id;
    assert_eq!(
        app.transaction_for_key(&hub_cancel_key(&debit_id)).await,
        None,
        "the completer left it to the client's rollback"
    );
    assert_eq!(rolled_back.json["originalTransactionId"], debit_id.as_str());
    assert_eq!(app.operator.charges_for(&debit_id), 0);
    assert_eq!(app.operator.balance("player-001"), Some(10_000));
    assert_debit_key_says_rolled_back(&app, &debit_key, &debit_body, &debit_id).await;
    let data = the_rolled_back_webhook(&app, &debit_ref).await;
    assert_eq!(data["transactionId"], rolled_back.json["transactionId"]);
    the_rolled_back_webhook(&app, text(&sentinel_body, "refId")).await;
}

async fn client_rollbacks_racing_the_completer_move_no_money_net(backend: Backend) {
    let mut options = Options::default();
    options.retry.attempt_timeout = Duration::from_secs(5);
    options.retry.deadline = Duration::from_secs(5);
    cancelling_soon(&mut options);
    let app = TestApp::spawn_with(backend, options).await;
    let mut seen: BTreeMap<&str, usize> = BTreeMap::new();
    let never_applied = FaultKind::ServerError;
    let applied_late = FaultKind::Timeout {
        delay: Duration::from_secs(2),
    };
    for fault in [never_applied, applied_late] {
        // Six debits abandoned together; each client gives up a little later than the last,
        // around the moment the completer (every 100 ms) takes them.
        let bodies: Vec<Value> = (0..6)
            .map(|_| wallet_body("player-005", 100, "USD"))
            .collect();
        let keys: Vec<String> = bodies.iter().map(|_| new_key()).collect();
        app.operator.inject_fault(fault, 100_000);
        let failed = join_all(
            keys.iter()
                .zip(&bodies)
                .map(|(key, body)| async { answer(app.debit(key, body).await).await }),
        )
        .await;
        app.operator.inject_fault(FaultKind::ServerError, 0);
        assert!(
            failed.iter().all(|a| a.status == 502),
            "{:?}",
            failed.iter().map(|a| &a.text).collect::<Vec<_>>()
        );

        let answers = join_all(bodies.iter().enumerate().map(|(n, body)| {
            let app = &app;
            async move {
                tokio::time::sleep(Duration::from_millis(n as u64 * 40)).await;
                let ours = rollback_body("player-005", text(body, "refId"));
                answer(app.rollback(&new_key(), &ours).await).await
            }
        }))
        .await;

        for ((key, body), ours) in keys.iter().zip(&bodies).zip(&answers) {
            let debit_id = row(&app, key).await.id;
            let hub = app.transaction_for_key(&hub_cancel_key(&debit_id)).await;
            let outcome = match (ours.status, &hub) {
                (201, None) => "client's rollback first",
                (409, Some(hub)) => {
                    assert_eq!(ours.json["code"], "ALREADY_ROLLED_BACK", "{}", ours.text);
                    assert_eq!(ours.json["transactionId"], hub.id.as_str());
                    "completer's rollback first"
                }
                (status, hub) => panic!("client answered {status} ({}), hub {hub:?}", ours.text),
            };
            *seen.entry(outcome).or_default() += 1;
            eventually(
                "the debit to be rolled back",
                Duration::from_secs(20),
                || async { (row(&app, key).await.status == "ROLLED_BACK").then_some(()) },
            )
            .await;
            let data = the_rolled_back_webhook(&app, text(body, "refId")).await;
            assert_eq!(data["originalTransactionId"], debit_id.as_str());
            let (charged, refunded) = (
                app.operator.charges_for(&debit_id),
                app.operator.refunds_for(&debit_id),
            );
            assert_eq!(
                charged, refunded,
                "{outcome}: charged {charged}, refunded {refunded}"
            );
            assert_debit_key_says_rolled_back(&app, key, body, &debit_id).await;
        }
        assert_eq!(app.operator.balance("player-005"), Some(25_000));
    }
    println!("interleavings seen: {seen:?}");
}

// ---------------------------------------------------------------------------------------
// A debit nobody waits for any more.

async fn a_debit_whose_client_vanished_is_refunded_by_the_completer(backend: Backend) {
    let mut options = impatient();
    cancelling_soon(&mut options);
    let app = TestApp::spawn_with(backend, options).await;
    let debit_body = wallet_body("player-001", 300, "USD");
    let debit_ref = text(&debit_body, "refId");
    let late = FaultKind::Timeout {
        delay: Duration::from_millis(1500),
    };

    // Charged, but the answer is lost, and the client never retries.
    let (debit_key, debit_id) = debit_left_pending(&app, &debit_body, late).await;
    assert_eq!(app.operator.charges_for(&debit_id), 1);
    assert_eq!(app.operator.balance("player-001"), Some(9_700));

    eventually(
        "the completer to cancel the debit",
        Duration::from_secs(20),
        || async { (row(&app, &debit_key).await.status == "ROLLED_BACK").then_some(()) },
    )
    .await;

    let debit_row = row(&app, &debit_key).await;
    assert_eq!(debit_row.reason.as_deref(), Some("CANCELLED"));
    let cancellation = row(&app, &hub_cancel_key(&debit_id)).await;
    assert_eq!(
        (cancellation.kind.as_str(), cancellation.status.as_str()),
        ("ROLLBACK", "COMPLETED")
    );
    assert_eq!(cancellation.ref_id, hub_cancel_key(&debit_id));
    assert_eq!(
        cancellation.original_transaction_id.as_deref(),
        Some(&*debit_id)
    );
    assert_eq!(app.operator.refunds_for(&debit_id), 1, "refunded once");
    assert_eq!(
        app.operator.charges_for(&debit_id),
        1,
        "never charged again"
    );
    assert_eq!(app.operator.balance("player-001"), Some(10_000));

    let data = the_rolled_back_webhook(&app, debit_ref).await;
    assert_eq!(data["transactionId"], cancellation.id.as_str());
    assert_eq!(data["originalTransactionId"], debit_id.as_str());
    assert_eq!(data["refId"], hub_cancel_key(&debit_id));
    assert_eq!(data["amountCents"], 300);
    assert_eq!(data["balanceCents"], 10_000);
    assert!(event_types(&app, &debit_id).await.is_empty());
    assert_debit_key_says_rolled_back(&app, &debit_key, &debit_body, &debit_id).await;

    // The game's own rollback, coming at last, is told it was done.
    let client = answer(
        app.rollback(&new_key(), &rollback_body("player-001", debit_ref))
            .await,
    )
    .await;
    assert_eq!(client.status, 409, "{}", client.text);
    assert_eq!(client.json["code"], "ALREADY_ROLLED_BACK");
    assert_eq!(client.json["transactionId"], cancellation.id.as_str());
    assert_eq!(app.operator.refunds_for(&debit_id), 1);
}
