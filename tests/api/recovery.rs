//! Abandoned PENDING transactions are resolved in the background, exactly once; old
//! idempotency keys are forgotten while refIds keep guarding.

use std::time::Duration;

use chrono::{TimeDelta, Utc};
use hub::store::{idempotency_keys, StoreError};
use mock_operator::FaultKind;

use crate::helpers::{
    answer, eventually, new_key, on_both_backends, wallet_body, Backend, Options, TestApp,
};

on_both_backends!(
    the_completer_settles_abandoned_transactions_with_one_charge_and_a_webhook,
    the_reaper_forgets_old_keys_but_refids_still_guard,
);

async fn abandon(app: &TestApp, fault: FaultKind) -> (String, String, serde_json::Value) {
    let (key, body) = (new_key(), wallet_body("player-005", 700, "USD"));
    app.operator.inject_fault(fault, 1000);
    let response = answer(app.debit(&key, &body).await).await;
    assert_eq!(response.status, 502, "{}", response.text);
    app.operator.inject_fault(FaultKind::ServerError, 0);
    let pending = app.transaction_for_key(&key).await.expect("recorded");
    assert_eq!(pending.status, "PENDING");
    (key, pending.id, body)
}

async fn wait_until_settled_and_delivered(app: &TestApp, key: &str, transaction_id: &str) {
    eventually(
        "the completer to settle it",
        Duration::from_secs(20),
        || async {
            let row = app.transaction_for_key(key).await?;
            (row.status == "COMPLETED").then_some(())
        },
    )
    .await;
    let event_id = app.only_event_of(transaction_id).await;
    app.wait_for_status(&event_id, "DELIVERED").await;
    assert!(
        app.rgs.accepted_event_ids().contains(&event_id),
        "the RGS hears about the charge"
    );
}

async fn the_completer_settles_abandoned_transactions_with_one_charge_and_a_webhook(
    backend: Backend,
) {
    let mut options = Options::default();
    options.retry.attempt_timeout = Duration::from_millis(250);
    options.retry.deadline = Duration::from_millis(700);
    options.completer_after = Duration::from_secs(1);
    let app = TestApp::spawn_with(backend, options).await;

    // The operator took the money but its answer never arrived.
    let (charged_key, charged_id, charged_body) = abandon(
        &app,
        FaultKind::Timeout {
            delay: Duration::from_secs(5),
        },
    )
    .await;
    assert_eq!(app.operator.charges_for(&charged_id), 1);
    // The operator never saw the call at all.
    let (unseen_key, unseen_id, _) = abandon(&app, FaultKind::ServerError).await;
    assert_eq!(app.operator.charges_for(&unseen_id), 0);

    wait_until_settled_and_delivered(&app, &charged_key, &charged_id).await;
    wait_until_settled_and_delivered(&app, &unseen_key, &unseen_id).await;

    assert_eq!(
        app.operator.charges_for(&charged_id),
        1,
        "an applied charge is answered, not repeated"
    );
    assert_eq!(
        app.operator.charges_for(&unseen_id),
        1,
        "resolved with exactly one charge"
    );
    assert_eq!(app.operator.total_charges(), 2);
    assert_eq!(app.operator.balance("player-005"), Some(25_000 - 2 * 700));
    let replay = answer(app.debit(&charged_key, &charged_body).await).await;
    assert_eq!(
        replay.status, 201,
        "the client coming back gets the completer's answer: {}",
        replay.text
    );
    assert_eq!(replay.json["transactionId"], charged_id.as_str());
    assert_eq!(replay.headers["idempotent-replayed"], "true");
    assert_eq!(app.operator.total_charges(), 2, "and no new charge");
}

async fn the_reaper_forgets_old_keys_but_refids_still_guard(backend: Backend) {
    let app = TestApp::spawn(backend).await;
    let (key, body) = (new_key(), wallet_body("player-001", 100, "USD"));
    assert_eq!(app.debit(&key, &body).await.status(), 201);
    let before = (Utc::now() + TimeDelta::seconds(1)).naive_utc();

    let reaped = app
        .store
        .run(move |conn| idempotency_keys::reap(conn, before, 500).map_err(StoreError::from))
        .await
        .unwrap();

    assert_eq!(reaped, 1);
    let again = answer(app.debit(&key, &body).await).await;
    assert_eq!(again.status, 409, "{}", again.text);
    assert_eq!(
        again.json["code"], "DUPLICATE_REF_ID",
        "the refId still refuses a second charge"
    );
    assert_eq!(app.operator.total_charges(), 1);
}
