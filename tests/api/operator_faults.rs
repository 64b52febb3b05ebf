//! The operator misbehaving: server errors, rate limits, and answers that come too late.

use std::time::Duration;

use mock_operator::FaultKind;

use crate::helpers::{
    answer, eventually, new_key, on_both_backends, wallet_body, Backend, Options, TestApp,
};

on_both_backends!(
    two_server_errors_then_success_charge_once,
    a_429_is_waited_out_for_its_full_retry_after,
    a_charge_whose_answer_was_lost_is_completed_by_the_retry_without_charging_again,
);

async fn two_server_errors_then_success_charge_once(backend: Backend) {
    let app = TestApp::spawn(backend).await;
    app.operator.inject_fault(FaultKind::ServerError, 2);

    let response = answer(
        app.debit(&new_key(), &wallet_body("player-003", 1500, "GBP"))
            .await,
    )
    .await;

    assert_eq!(response.status, 201, "{}", response.text);
    let transaction_id = response.json["transactionId"].as_str().unwrap();
    let statuses: Vec<u16> = app
        .operator
        .calls()
        .iter()
        .map(|call| call.status)
        .collect();
    assert_eq!(statuses, [500, 500, 200]);
    assert!(
        app.operator
            .calls()
            .iter()
            .all(|call| call.transaction_id.as_deref() == Some(transaction_id)),
        "every attempt carries the same transaction id"
    );
    assert_eq!(app.operator.charges_for(transaction_id), 1);
    assert_eq!(app.operator.balance("player-003"), Some(13_500));
}

async fn a_429_is_waited_out_for_its_full_retry_after(backend: Backend) {
    let app = TestApp::spawn(backend).await;
    app.operator.inject_fault(
        FaultKind::RateLimited {
            retry_after_seconds: 2,
        },
        1,
    );

    let response = answer(
        app.debit(&new_key(), &wallet_body("player-001", 100, "USD"))
            .await,
    )
    .await;

    assert_eq!(response.status, 201, "{}", response.text);
    let calls = app.operator.calls();
    assert_eq!(
        calls.iter().map(|c| c.status).collect::<Vec<_>>(),
        [429, 200]
    );
    let waited_ms = calls[1].received_at_ms - calls[0].received_at_ms;
    assert!(
        waited_ms >= 2000,
        "the retry came {waited_ms} ms after the 429, before its Retry-After of 2 s"
    );
    assert_eq!(app.operator.total_charges(), 1);
}

async fn a_charge_whose_answer_was_lost_is_completed_by_the_retry_without_charging_again(
    backend: Backend,
) {
    let mut options = Options::default();
    options.retry.attempt_timeout = Duration::from_millis(250);
    options.retry.deadline = Duration::from_millis(800);
    let app = TestApp::spawn_with(backend, options).await;
    let (key, body) = (new_key(), wallet_body("player-005", 2500, "USD"));
    // Every attempt within the deadline is applied by the operator and answered too late.
    app.operator.inject_fault(
        FaultKind::Timeout {
            delay: Duration::from_secs(5),
        },
        100,
    );

    let first = answer(app.debit(&key, &body).await).await;

    assert_eq!(first.status, 502, "{}", first.text);
    assert_eq!(first.json["code"], "OPERATOR_UNAVAILABLE");
    let pending = app.transaction_for_key(&key).await.expect("recorded");
    assert_eq!(pending.status, "PENDING");
    assert_eq!(
        app.operator.charges_for(&pending.id),
        1,
        "the operator did take the money"
    );

    app.operator.inject_fault(FaultKind::ServerError, 0);
    let retry = answer(app.debit(&key, &body).await).await;

    assert_eq!(retry.status, 201, "{}", retry.text);
    assert_eq!(retry.json["transactionId"], pending.id.as_str());
    assert_eq!(retry.json["balanceCents"], 22_500);
    assert_eq!(app.operator.total_charges(), 1, "charged exactly once");
    assert_eq!(app.operator.balance("player-005"), Some(22_500));
}

on_both_backends!(a_rate_limit_longer_than_the_deadline_is_refused_at_once_and_passed_on);

async fn a_rate_limit_longer_than_the_deadline_is_refused_at_once_and_passed_on(backend: Backend) {
    // The operator allows one call a minute: the second debit's Retry-After (about 60 s)
    // lies beyond the hub's 10 s deadline, so waiting could only end in failure.
    let options = Options {
        operator_rpm: 1,
        ..Options::default()
    };
    let app = TestApp::spawn_with(backend, options).await;
    assert_eq!(
        app.debit(&new_key(), &wallet_body("player-001", 100, "USD"))
            .await
            .status(),
        201
    );

    let key = new_key();
    let refused = answer(
        app.debit(&key, &wallet_body("player-001", 100, "USD"))
            .await,
    )
    .await;

    assert_eq!(refused.status, 502, "{}", refused.text);
    assert_eq!(refused.json["code"], "OPERATOR_UNAVAILABLE");
    let retry_after: u64 = refused.headers["retry-after"]
        .to_str()
        .unwrap()
        .parse()
        .unwrap();
    assert!(
        (50..=60).contains(&retry_after),
        "the operator's wait is passed on, got {retry_after}"
    );
    let pending = app.transaction_for_key(&key).await.expect("recorded");
    let attempts = app
        .operator
        .calls()
        .iter()
        .filter(|c| c.transaction_id.as_deref() == Some(&pending.id))
        .count();
    assert_eq!(
        attempts, 1,
        "no retry is sent into a rate limit that outlasts the deadline"
    );
}

on_both_backends!(a_failing_operator_opens_the_circuit_and_a_probe_closes_it);

async fn a_failing_operator_opens_the_circuit_and_a_probe_closes_it(backend: Backend) {
    let mut options = Options::default();
    options.retry.attempt_timeout = Duration::from_millis(100);
    options.retry.deadline = Duration::from_millis(250);
    options.breaker.min_calls = 3;
    options.breaker.open_for = Duration::from_millis(500);
    let app = TestApp::spawn_with(backend, options).await;
    let (settled_key, settled_body) = (new_key(), wallet_body("player-001", 100, "USD"));
    let settled = answer(app.debit(&settled_key, &settled_body).await).await;
    assert_eq!(settled.status, 201);
    app.operator.inject_fault(FaultKind::ServerError, 100_000);
    // With the success above, two failures make 2 of 3 calls: past the 50 % threshold.
    for _ in 0..2 {
        assert_eq!(
            app.debit(&new_key(), &wallet_body("player-001", 100, "USD"))
                .await
                .status(),
            502
        );
    }

    let calls_before = app.operator.calls().len();
    let (refused_key, refused_body) = (new_key(), wallet_body("player-001", 100, "USD"));
    let refused = answer(app.debit(&refused_key, &refused_body).await).await;

    assert_eq!(refused.status, 503, "{}", refused.text);
    assert_eq!(refused.json["code"], "OPERATOR_UNAVAILABLE");
    assert!(refused.headers.contains_key("retry-after"));
    assert!(
        app.transaction_for_key(&refused_key).await.is_none(),
        "nothing is recorded while open"
    );
    assert_eq!(
        app.operator.calls().len(),
        calls_before,
        "the operator is left alone while open"
    );
    let replayed = answer(app.debit(&settled_key, &settled_body).await).await;
    assert_eq!(
        (replayed.status, replayed.text),
        (201, settled.text),
        "stored answers still replay"
    );

    app.operator.inject_fault(FaultKind::ServerError, 0);
    eventually(
        "a probe to close the circuit",
        Duration::from_secs(10),
        || async {
            let status = app
                .debit(&new_key(), &wallet_body("player-001", 100, "USD"))
                .await
                .status();
            (status == 201).then_some(())
        },
    )
    .await;
    let retried = answer(app.debit(&refused_key, &refused_body).await).await;
    assert_eq!(
        retried.status, 201,
        "the refused request starts cleanly once closed: {}",
        retried.text
    );
}
