//! The recovery policy (DESIGN §8): credits whose outcome is unknown are driven forward in
//! the background, exactly once; debits are never charged once their client gave up, and
//! are flagged for review instead; one failing transaction never delays another; a reaped
//! key's replay is still the first answer.

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use chrono::{TimeDelta, Utc};
use hub::store::{idempotency_keys, StoreError};
use mock_operator::FaultKind;
use serde_json::{json, Value};

use crate::helpers::{
    answer, eventually, new_key, on_both_backends, wallet_body, Backend, Options, TestApp,
    ADMIN_TOKEN,
};
use crate::hostile::{Hostile, Reply};

on_both_backends!(
    the_completer_settles_abandoned_credits_with_one_call_and_a_webhook,
    a_debit_past_its_resume_window_is_cancelled_by_the_hub_never_charged_late,
    a_credit_unknown_past_the_review_age_is_flagged_and_still_retried,
    fifty_failing_transactions_do_not_delay_a_new_ones_resolution,
    the_completers_failed_calls_never_open_the_circuit,
    the_replay_after_a_key_is_reaped_is_the_first_answer_byte_for_byte,
);

/// Leaves a call PENDING: the operator fails every attempt of the first request.
async fn abandon(
    app: &TestApp,
    path: &str,
    body: Value,
    fault: FaultKind,
) -> (String, String, Value) {
    let key = new_key();
    app.operator.inject_fault(fault, 1000);
    let response = answer(app.post_signed(path, &key, &body.to_string()).await).await;
    assert_eq!(response.status, 502, "{}", response.text);
    app.operator.inject_fault(FaultKind::ServerError, 0);
    let pending = app.transaction_for_key(&key).await.expect("recorded");
    assert_eq!(pending.status, "PENDING");
    (key, pending.id, body)
}

async fn wait_until_settled_and_delivered(app: &TestApp, key: &str, transaction_id: &str) {
    app.wait_for_transaction(key, "COMPLETED", Duration::from_secs(20))
        .await;
    let event_id = app.only_event_of(transaction_id).await;
    app.wait_for_status(&event_id, "DELIVERED").await;
    assert!(
        app.rgs.accepted_event_ids().contains(&event_id),
        "the RGS hears about the credit"
    );
}

fn short_calls(options: &mut Options) {
    options.retry.attempt_timeout = Duration::from_millis(250);
    options.retry.deadline = Duration::from_millis(700);
}

async fn the_completer_settles_abandoned_credits_with_one_call_and_a_webhook(backend: Backend) {
    let mut options = Options::default();
    short_calls(&mut options);
    options.completer_after = Duration::from_secs(1);
    let app = TestApp::spawn_with(backend, options).await;
    let credit = || wallet_body("player-005", 700, "USD");

    // The operator paid the win but its answer never arrived.
    let delay = Duration::from_secs(5);
    let (paid_key, paid_id, paid_body) = abandon(
        &app,
        "/wallet/credit",
        credit(),
        FaultKind::Timeout { delay },
    )
    .await;
    assert_eq!(app.operator.charges_for(&paid_id), 1);
    // The operator never saw the call at all.
    let (unseen_key, unseen_id, _) =
        abandon(&app, "/wallet/credit", credit(), FaultKind::ServerError).await;
    assert_eq!(app.operator.charges_for(&unseen_id), 0);

    wait_until_settled_and_delivered(&app, &paid_key, &paid_id).await;
    wait_until_settled_and_delivered(&app, &unseen_key, &unseen_id).await;

    assert_eq!(
        app.operator.charges_for(&paid_id),
        1,
        "an applied credit is answered, not repeated"
    );
    assert_eq!(
        app.operator.charges_for(&unseen_id),
        1,
        "resolved with exactly one credit"
    );
    assert_eq!(app.operator.balance("player-005"), Some(25_000 + 2 * 700));
    let replay = answer(app.credit(&paid_key, &paid_body).await).await;
    assert_eq!(
        replay.status, 201,
        "the client coming back gets the completer's answer: {}",
        replay.text
    );
    assert_eq!(replay.json["transactionId"], paid_id.as_str());
    assert_eq!(replay.headers["idempotent-replayed"], "true");
    assert_eq!(app.operator.total_charges(), 2, "and no new call");
}

async fn a_debit_past_its_resume_window_is_cancelled_by_the_hub_never_charged_late(
    backend: Backend,
) {
    let mut options = Options::default();
    short_calls(&mut options);
    options.completer_after = Duration::from_millis(100);
    options.debit_resume_window = Duration::from_secs(1);
    let app = TestApp::spawn_with(backend, options).await;
    let (key, transaction_id, body) = abandon(
        &app,
        "/wallet/debit",
        wallet_body("player-001", 300, "USD"),
        FaultKind::ServerError,
    )
    .await;

    let cancelled = app
        .wait_for_transaction(&key, "ROLLED_BACK", Duration::from_secs(20))
        .await;
    assert_eq!(cancelled.reason.as_deref(), Some("CANCELLED"));
    assert_eq!(cancelled.next_recovery_at, None, "out of the queue");
    let rollback = app
        .transaction_for_key(&format!("hub-cancel:{transaction_id}"))
        .await
        .expect("the hub's own rollback is recorded under a key of its own");
    assert_eq!(rollback.kind, "ROLLBACK");
    assert_eq!(rollback.status, "COMPLETED");
    assert_eq!(
        rollback.original_transaction_id.as_deref(),
        Some(transaction_id.as_str())
    );
    assert_eq!(rollback.amount_cents, 300);

    let late = answer(app.debit(&key, &body).await).await;
    assert_eq!(late.status, 409, "{}", late.text);
    assert_eq!(late.json["code"], "TRANSACTION_ROLLED_BACK");
    let withdrawals_after_the_window = app
        .operator
        .calls()
        .iter()
        .filter(|call| call.path.ends_with("/withdraw"))
        .filter(|call| call.status != 500)
        .count();
    assert_eq!(
        withdrawals_after_the_window, 0,
        "the debit is never sent again once its window has passed"
    );
    assert_eq!(app.operator.charges_for(&transaction_id), 0);
    assert!(app.operator.is_cancelled(&transaction_id));
    assert_eq!(app.operator.balance("player-001"), Some(10_000));

    let event_id = app.only_event_of(&rollback.id).await;
    app.wait_for_status(&event_id, "DELIVERED").await;
    assert!(
        app.outbox_for(&transaction_id).await.is_empty(),
        "no event of the debit's own"
    );
}

async fn a_credit_unknown_past_the_review_age_is_flagged_and_still_retried(backend: Backend) {
    let mut options = Options::default();
    short_calls(&mut options);
    options.completer_after = Duration::from_millis(100);
    options.manual_review_after = Duration::from_secs(1);
    options.completer_backoff_initial = Duration::from_millis(200);
    let app = TestApp::spawn_with(backend, options).await;
    let key = new_key();
    app.operator.inject_fault(FaultKind::ServerError, 100_000);
    let credit = wallet_body("player-005", 900, "USD");
    let first = answer(
        app.post_signed("/wallet/credit", &key, &credit.to_string())
            .await,
    )
    .await;
    assert_eq!(first.status, 502, "{}", first.text);
    let transaction_id = app.transaction_for_key(&key).await.expect("recorded").id;

    let flagged = eventually(
        "the completer to flag the credit for review",
        Duration::from_secs(20),
        || async {
            let row = app.transaction_for_key(&key).await?;
            row.review_since.is_some().then_some(row)
        },
    )
    .await;
    assert_eq!(flagged.status, "PENDING", "its outcome is still unknown");
    assert!(flagged.next_recovery_at.is_some(), "still retried");

    let listed = answer(
        app.client
            .get(format!("{}/admin/transactions/review", app.address))
            .bearer_auth(ADMIN_TOKEN)
            .send()
            .await
            .unwrap(),
    )
    .await;
    assert_eq!(listed.status, 200, "{}", listed.text);
    assert_eq!(listed.json["count"], 1);
    let ids: Vec<&str> = listed.json["transactions"]
        .as_array()
        .unwrap()
        .iter()
        .map(|t| t["transactionId"].as_str().unwrap())
        .collect();
    assert_eq!(ids, [transaction_id.as_str()]);
    eventually("the review gauge", Duration::from_secs(10), || async {
        app.metrics_text()
            .await?
            .contains("hub_transactions_under_review 1")
            .then_some(())
    })
    .await;
    let cli = app.hub_cli(&["transactions", "review"]);
    assert!(cli.status.success(), "{cli:?}");
    assert!(String::from_utf8_lossy(&cli.stdout).contains(&transaction_id));

    app.operator.inject_fault(FaultKind::ServerError, 0);
    wait_until_settled_and_delivered(&app, &key, &transaction_id).await;
}

async fn fifty_failing_transactions_do_not_delay_a_new_ones_resolution(backend: Backend) {
    // Calls for the poisoned players hang past the attempt timeout, every time; the fresh
    // player's calls fail until the test opens the way.
    let open = Arc::new(AtomicBool::new(false));
    let opened = open.clone();
    let operator = Hostile::start(move |seen, _| {
        if seen.path.contains("/poisoned-") {
            return Reply::new(500, "").after(Duration::from_secs(30));
        }
        if !opened.load(Ordering::SeqCst) {
            return Reply::new(503, "busy");
        }
        Reply::wallet_success(seen)
    });
    let mut options = Options {
        operator_url: Some(operator.base_url.clone()),
        completer_after: Duration::from_millis(100),
        // Every failed transaction is due again at once: the worst case for blocking.
        completer_backoff_initial: Duration::from_millis(10),
        completer_backoff_max: Duration::from_millis(10),
        completer_concurrency: 4,
        ..Options::default()
    };
    options.retry.attempt_timeout = Duration::from_secs(1);
    options.retry.deadline = Duration::from_secs(1);
    // Fifty failures would open the circuit; this test is about the queue, not the breaker.
    options.breaker.min_calls = 1_000_000;
    let app = TestApp::spawn_with(backend, options).await;
    let poisoned = futures_util::future::join_all((0..50).map(|n| {
        let body = wallet_body(&format!("poisoned-{n}"), 100, "USD");
        let app = &app;
        async move { answer(app.credit(&new_key(), &body).await).await.status }
    }))
    .await;
    assert!(poisoned.iter().all(|status| *status == 502), "{poisoned:?}");
    eventually(
        "the completer to have called the operator for every poisoned credit",
        Duration::from_secs(60),
        || async {
            let mut calls: HashMap<String, usize> = HashMap::new();
            for seen in operator.seen() {
                *calls.entry(seen.json_text("transactionId")?).or_default() += 1;
            }
            // One call from the request, at least one more from the completer.
            (calls.len() == 50 && calls.values().all(|n| *n >= 2)).then_some(())
        },
    )
    .await;

    let key = new_key();
    let fresh = answer(
        app.credit(&key, &wallet_body("fresh-player", 100, "USD"))
            .await,
    )
    .await;
    assert_eq!(fresh.status, 502, "{}", fresh.text);
    open.store(true, Ordering::SeqCst);
    let pending_since = Instant::now();

    // Behind 50 hanging transactions taken four at a time, a queue in arrival order would
    // need more than 12 rounds of 1 s before reaching the new one.
    app.wait_for_transaction(&key, "COMPLETED", Duration::from_secs(8))
        .await;
    println!(
        "new credit settled {:?} after its request ended",
        pending_since.elapsed()
    );
}

async fn the_replay_after_a_key_is_reaped_is_the_first_answer_byte_for_byte(backend: Backend) {
    let app = TestApp::spawn(backend).await;
    let (paid_key, paid_body) = (new_key(), wallet_body("player-001", 100, "USD"));
    let paid = answer(app.debit(&paid_key, &paid_body).await).await;
    assert_eq!(paid.status, 201, "{}", paid.text);
    let (refused_key, refused_body) = (new_key(), wallet_body("player-004", 500, "USD"));
    let refused = answer(app.debit(&refused_key, &refused_body).await).await;
    assert_eq!(refused.status, 422, "{}", refused.text);
    let before = (Utc::now() + TimeDelta::seconds(1)).naive_utc();

    let reaped = app
        .store
        .run(move |conn| idempotency_keys::reap(conn, before, 500).map_err(StoreError::from))
        .await
        .unwrap();
    assert_eq!(reaped, 2);

    for (key, body, first) in [
        (&paid_key, &paid_body, &paid),
        (&refused_key, &refused_body, &refused),
    ] {
        let again = answer(app.debit(key, body).await).await;
        assert_eq!(again.status, first.status, "{}", again.text);
        assert_eq!(again.text, first.text, "byte for byte");
        assert_eq!(again.headers["idempotent-replayed"], "true");
    }
    let mut changed = paid_body.clone();
    changed["amountCents"] = json!(101);
    let reused = answer(app.debit(&paid_key, &changed).await).await;
    assert_eq!(reused.status, 422, "{}", reused.text);
    assert_eq!(reused.json["code"], "IDEMPOTENCY_KEY_REUSED");
    let stolen = answer(app.debit(&new_key(), &paid_body).await).await;
    assert_eq!(stolen.status, 409, "{}", stolen.text);
    assert_eq!(
        stolen.json["code"], "DUPLICATE_REF_ID",
        "the refId still refuses a second charge"
    );
    assert_eq!(app.operator.total_charges(), 1);
}

async fn the_completers_failed_calls_never_open_the_circuit(backend: Backend) {
    // Calls for the stuck player fail every time; everybody else's succeed.
    let operator = Hostile::start(|seen, _| {
        if seen.path.contains("/stuck-player/") {
            return Reply::new(500, "");
        }
        Reply::wallet_success(seen)
    });
    let mut options = Options {
        operator_url: Some(operator.base_url.clone()),
        completer_after: Duration::from_millis(100),
        completer_backoff_initial: Duration::from_millis(10),
        completer_backoff_max: Duration::from_millis(10),
        ..Options::default()
    };
    options.retry.attempt_timeout = Duration::from_millis(200);
    options.retry.deadline = Duration::from_millis(300);
    options.breaker.min_calls = 5;
    let app = TestApp::spawn_with(backend, options).await;
    let stuck = answer(
        app.credit(&new_key(), &wallet_body("stuck-player", 100, "USD"))
            .await,
    )
    .await;
    assert_eq!(stuck.status, 502, "{}", stuck.text);

    eventually(
        "the completer to fail on it many times",
        Duration::from_secs(20),
        || async {
            (operator.seen_on("/v2/players/stuck-player/deposit").len() >= 30).then_some(())
        },
    )
    .await;

    let metrics = app.metrics_text().await.expect("the hub answers /metrics");
    assert!(
        metrics.contains("hub_operator_circuit_state 0"),
        "the circuit stays closed: {metrics}"
    );
    let paid = answer(
        app.debit(&new_key(), &wallet_body("player-001", 100, "USD"))
            .await,
    )
    .await;
    assert_eq!(paid.status, 201, "live traffic still flows: {}", paid.text);
}
