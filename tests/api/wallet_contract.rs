//! Every row of DESIGN §3's response table, on both backends.

use std::time::Duration;

use chrono::Utc;
use mock_operator::FaultKind;
use serde_json::json;

use crate::helpers::{
    answer, eventually, new_key, on_both_backends, wallet_body, Backend, Options, TestApp,
};

on_both_backends!(
    a_debit_is_charged_once_and_recorded_with_its_webhook,
    a_credit_adds_to_the_balance,
    the_same_key_and_body_replays_the_first_answer_byte_for_byte,
    the_same_key_with_another_body_is_refused,
    the_same_key_while_the_first_is_in_flight_is_told_to_wait,
    a_ref_id_used_by_another_key_is_a_conflict,
    a_missing_idempotency_key_is_a_bad_request,
    invalid_bodies_name_the_field,
    an_unsupported_currency_lists_the_allowed_ones,
    operator_rejections_keep_their_reason,
    an_oversized_body_is_refused_before_anything_else,
    an_unreachable_operator_leaves_the_transaction_pending_for_the_retry,
    a_retry_after_a_crashed_owner_resumes_once_its_lease_lapses,
);

async fn a_debit_is_charged_once_and_recorded_with_its_webhook(backend: Backend) {
    // No drainer, so that the queued webhook is still there to be looked at.
    let app = TestApp::spawn_with(
        backend,
        Options {
            drain: false,
            ..Options::default()
        },
    )
    .await;
    let body = wallet_body("player-001", 1000, "USD");

    let response = answer(app.debit(&new_key(), &body).await).await;

    assert_eq!(response.status, 201, "{}", response.text);
    assert_eq!(response.json["status"], "OK");
    assert_eq!(response.json["balanceCents"], 9000);
    assert_eq!(response.json["refId"], body["refId"]);
    let transaction_id = response.json["transactionId"]
        .as_str()
        .expect("a transaction id");
    assert_eq!(app.operator.charges_for(transaction_id), 1);
    assert_eq!(app.operator.balance("player-001"), Some(9000));
    assert!(response.headers.contains_key("x-correlation-id"));

    let events = app.outbox_for(transaction_id).await;
    assert_eq!(events.len(), 1, "exactly one webhook is queued");
    let event: serde_json::Value = serde_json::from_str(&events[0].payload).unwrap();
    assert_eq!(events[0].status, "PENDING");
    assert_eq!(event["eventType"], "transaction.completed");
    assert_eq!(event["eventId"], events[0].id.as_str());
    assert_eq!(
        event["data"],
        json!({
            "transactionId": transaction_id, "refId": body["refId"], "playerId": "player-001",
            "type": "DEBIT", "amountCents": 1000, "currency": "USD", "status": "COMPLETED",
            "balanceCents": 9000, "reason": null, "meta": body["meta"],
        })
    );
}

async fn a_credit_adds_to_the_balance(backend: Backend) {
    let app = TestApp::spawn(backend).await;

    let response = answer(
        app.credit(&new_key(), &wallet_body("player-002", 250, "EUR"))
            .await,
    )
    .await;

    assert_eq!(response.status, 201, "{}", response.text);
    assert_eq!(response.json["balanceCents"], 5250);
    assert_eq!(app.operator.balance("player-002"), Some(5250));
}

async fn the_same_key_and_body_replays_the_first_answer_byte_for_byte(backend: Backend) {
    let app = TestApp::spawn(backend).await;
    let (key, body) = (new_key(), wallet_body("player-001", 700, "USD"));

    let first = answer(app.debit(&key, &body).await).await;
    let calls_after_first = app.operator.calls().len();
    let second = answer(app.debit(&key, &body).await).await;

    assert_eq!(first.status, 201);
    assert_eq!(second.status, 201);
    assert_eq!(second.text, first.text, "byte-identical");
    assert_eq!(
        second
            .headers
            .get("idempotent-replayed")
            .map(|v| v.as_bytes()),
        Some(&b"true"[..])
    );
    assert_eq!(
        app.operator.calls().len(),
        calls_after_first,
        "the operator is not called again"
    );
    assert_eq!(app.operator.balance("player-001"), Some(9300));
}

async fn the_same_key_with_another_body_is_refused(backend: Backend) {
    let app = TestApp::spawn(backend).await;
    let key = new_key();
    let body = wallet_body("player-001", 700, "USD");
    assert_eq!(app.debit(&key, &body).await.status(), 201);

    let mut changed = body.clone();
    changed["amountCents"] = json!(701);
    let response = answer(app.debit(&key, &changed).await).await;

    assert_eq!(response.status, 422);
    assert_eq!(response.json["code"], "IDEMPOTENCY_KEY_REUSED");
    let as_credit = answer(app.credit(&key, &body).await).await;
    assert_eq!(
        as_credit.json["code"], "IDEMPOTENCY_KEY_REUSED",
        "debit and credit differ"
    );
    assert_eq!(app.operator.total_charges(), 1);
}

async fn the_same_key_while_the_first_is_in_flight_is_told_to_wait(backend: Backend) {
    let app = TestApp::spawn(backend).await;
    let (key, body) = (new_key(), wallet_body("player-001", 100, "USD"));
    // The operator applies the debit and then takes 1.5 s to say so: the first request is
    // in flight for that long, well inside its 2 s attempt timeout.
    app.operator.inject_fault(
        FaultKind::Timeout {
            delay: Duration::from_millis(1500),
        },
        1,
    );

    let first = {
        let (app, key, body) = (&app, key.clone(), body.clone());
        async move { answer(app.debit(&key, &body).await).await }
    };
    let second = async {
        eventually(
            "the operator to receive the first call",
            Duration::from_secs(5),
            || async { (!app.operator.calls().is_empty()).then_some(()) },
        )
        .await;
        answer(app.debit(&key, &body).await).await
    };
    let (first, second) = tokio::join!(first, second);

    assert_eq!(second.status, 409, "{}", second.text);
    assert_eq!(second.json["code"], "REQUEST_IN_PROGRESS");
    assert!(second.headers.contains_key("retry-after"));
    assert_eq!(first.status, 201, "{}", first.text);
    assert_eq!(app.operator.total_charges(), 1);
}

async fn a_ref_id_used_by_another_key_is_a_conflict(backend: Backend) {
    let app = TestApp::spawn(backend).await;
    let body = wallet_body("player-001", 100, "USD");
    assert_eq!(app.debit(&new_key(), &body).await.status(), 201);

    let other_key = new_key();
    let response = answer(app.debit(&other_key, &body).await).await;

    assert_eq!(response.status, 409);
    assert_eq!(response.json["code"], "DUPLICATE_REF_ID");
    assert!(
        app.transaction_for_key(&other_key).await.is_none(),
        "nothing is recorded for the refused key"
    );
    assert_eq!(app.operator.total_charges(), 1);
}

async fn a_missing_idempotency_key_is_a_bad_request(backend: Backend) {
    let app = TestApp::spawn(backend).await;
    let body = wallet_body("player-001", 100, "USD").to_string();
    let timestamp = Utc::now().timestamp().to_string();
    let signature = hub::signature::sign(
        crate::helpers::SECRET.as_bytes(),
        body.as_bytes(),
        &timestamp,
    );

    let response = app
        .client
        .post(format!("{}/wallet/debit", app.address))
        .header("X-Timestamp", timestamp)
        .header("X-Signature", signature)
        .body(body)
        .send()
        .await
        .unwrap();
    let response = answer(response).await;

    assert_eq!(response.status, 400);
    assert_eq!(response.json["code"], "MISSING_IDEMPOTENCY_KEY");
    assert!(app.operator.calls().is_empty());
}

async fn invalid_bodies_name_the_field(backend: Backend) {
    let app = TestApp::spawn(backend).await;
    let cases = [
        (
            r#"{"playerId":"player-001","amountCents":10,"currency":"USD""#,
            "body",
        ),
        (
            r#"{"amountCents":10,"currency":"USD","refId":"r"}"#,
            "playerId",
        ),
        (
            r#"{"playerId":"player-001","currency":"USD","refId":"r"}"#,
            "amountCents",
        ),
        (
            r#"{"playerId":"player-001","amountCents":0,"currency":"USD","refId":"r"}"#,
            "amountCents",
        ),
        (
            r#"{"playerId":"player-001","amountCents":-100,"currency":"USD","refId":"r"}"#,
            "amountCents",
        ),
        (
            r#"{"playerId":"player-001","amountCents":10,"refId":"r"}"#,
            "currency",
        ),
        (
            r#"{"playerId":"player-001","amountCents":10,"currency":"USD"}"#,
            "refId",
        ),
    ];
    for (body, field) in cases {
        let response = answer(app.post_signed("/wallet/debit", &new_key(), body).await).await;
        assert_eq!(response.status, 400, "{body}: {}", response.text);
        assert_eq!(response.json["code"], "INVALID_REQUEST", "{body}");
        assert_eq!(response.json["field"], field, "{body}");
        assert!(
            response.json["message"]
                .as_str()
                .is_some_and(|m| m.contains(field)),
            "{}",
            response.text
        );
    }
    assert!(app.operator.calls().is_empty());
}

async fn an_unsupported_currency_lists_the_allowed_ones(backend: Backend) {
    let app = TestApp::spawn(backend).await;

    let response = answer(
        app.debit(&new_key(), &wallet_body("player-001", 100, "TRY"))
            .await,
    )
    .await;

    assert_eq!(response.status, 422);
    assert_eq!(response.json["code"], "UNSUPPORTED_CURRENCY");
    let message = response.json["message"].as_str().unwrap();
    assert!(message.contains("USD, EUR, GBP"), "{message}");
}

async fn operator_rejections_keep_their_reason(backend: Backend) {
    let app = TestApp::spawn(backend).await;
    let cases = [
        (
            wallet_body("player-004", 500, "USD"),
            422,
            "INSUFFICIENT_FUNDS",
        ),
        (
            wallet_body("player-999", 500, "USD"),
            404,
            "PLAYER_NOT_FOUND",
        ),
        (
            wallet_body("player-002", 500, "USD"),
            422,
            "CURRENCY_MISMATCH",
        ),
    ];
    for (body, status, reason) in cases {
        let key = new_key();
        let response = answer(app.debit(&key, &body).await).await;
        assert_eq!(response.status, status, "{reason}: {}", response.text);
        assert_eq!(response.json["status"], "REJECTED");
        assert_eq!(response.json["reason"], reason);
        assert_eq!(response.json["code"], reason);
        let transaction = app.transaction_for_key(&key).await.expect("recorded");
        assert_eq!(transaction.status, "REJECTED");
        assert_eq!(transaction.reason.as_deref(), Some(reason));
        let events = app.outbox_for(&transaction.id).await;
        assert_eq!(events.len(), 1);
        assert_eq!(events[0].event_type, "transaction.rejected");
        let replay = answer(app.debit(&key, &body).await).await;
        assert_eq!(
            (replay.status, replay.text),
            (status, response.text),
            "rejections replay too"
        );
    }
    assert_eq!(app.operator.total_charges(), 0);
    assert_eq!(app.operator.balance("player-004"), Some(100));
}

async fn an_oversized_body_is_refused_before_anything_else(backend: Backend) {
    let app = TestApp::spawn(backend).await;
    let huge = format!(r#"{{"playerId":"{}"}}"#, "x".repeat(1024 * 1024));

    let response = answer(app.post_signed("/wallet/debit", &new_key(), &huge).await).await;

    assert_eq!(response.status, 413);
    assert_eq!(response.json["code"], "PAYLOAD_TOO_LARGE");
}

fn impatient() -> Options {
    let mut options = Options::default();
    options.retry.attempt_timeout = Duration::from_millis(200);
    options.retry.deadline = Duration::from_millis(600);
    options
}

async fn an_unreachable_operator_leaves_the_transaction_pending_for_the_retry(backend: Backend) {
    let app = TestApp::spawn_with(backend, impatient()).await;
    let (key, body) = (new_key(), wallet_body("player-001", 1000, "USD"));
    app.operator.inject_fault(FaultKind::ServerError, 1000);

    let first = answer(app.debit(&key, &body).await).await;

    assert_eq!(first.status, 502, "{}", first.text);
    assert_eq!(first.json["code"], "OPERATOR_UNAVAILABLE");
    let pending = app.transaction_for_key(&key).await.expect("recorded");
    assert_eq!(pending.status, "PENDING");
    assert!(
        app.outbox_for(&pending.id).await.is_empty(),
        "no webhook for an undecided transaction"
    );
    assert!(
        app.operator.calls().len() >= 2,
        "the hub retried within its deadline"
    );

    app.operator.inject_fault(FaultKind::ServerError, 0);
    let retry = answer(app.debit(&key, &body).await).await;

    assert_eq!(retry.status, 201, "{}", retry.text);
    assert_eq!(
        retry.json["transactionId"],
        pending.id.as_str(),
        "same transaction, same operator id"
    );
    assert_eq!(app.operator.charges_for(&pending.id), 1);
    assert_eq!(app.operator.total_charges(), 1);
    assert_eq!(app.outbox_for(&pending.id).await.len(), 1);
}

async fn a_retry_after_a_crashed_owner_resumes_once_its_lease_lapses(backend: Backend) {
    let app = TestApp::spawn_with(backend, impatient()).await;
    let (key, body) = (new_key(), wallet_body("player-001", 1000, "USD"));
    app.operator.inject_fault(FaultKind::ServerError, 1000);
    assert_eq!(app.debit(&key, &body).await.status(), 502);
    app.operator.inject_fault(FaultKind::ServerError, 0);

    // An owner that died mid-call still holds the key until its lease ends.
    app.set_lease(
        &key,
        (Utc::now() + chrono::Duration::minutes(5)).naive_utc(),
    )
    .await;
    let while_held = answer(app.debit(&key, &body).await).await;
    assert_eq!(while_held.status, 409);
    assert_eq!(while_held.json["code"], "REQUEST_IN_PROGRESS");

    app.set_lease(
        &key,
        (Utc::now() - chrono::Duration::seconds(1)).naive_utc(),
    )
    .await;
    let after_lapse = answer(app.debit(&key, &body).await).await;
    assert_eq!(after_lapse.status, 201, "{}", after_lapse.text);
    assert_eq!(app.operator.total_charges(), 1);
}
