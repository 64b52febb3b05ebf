//! Outbox delivery to a real RGS receiver: signatures, retries, dead letters and replay,
//! several drainers on one database, drainers that stop or die mid-batch, the admin API.

use std::collections::HashSet;
use std::sync::Arc;
use std::time::Duration;

use futures_util::StreamExt;
use hub::outbox::Drainer;
use mock_rgs::Fault;
use serde_json::json;
use tokio::sync::Notify;

use crate::helpers::{
    answer, eventually, new_key, on_both_backends, post_signed, wallet_body, Backend, Options,
    TestApp, ADMIN_TOKEN, SECRET,
};

on_both_backends!(
    a_debits_webhook_arrives_signed_under_both_schemes,
    an_rgs_failing_twice_gets_one_delivery_and_two_recorded_failures,
    dead_letters_replayed_by_api_and_cli_are_delivered_once_with_their_event_id,
    two_drainers_deliver_two_thousand_events_exactly_once,
    events_claimed_by_a_dead_drainer_are_delivered_by_another_after_the_lease,
    a_drainer_stopped_mid_batch_finishes_or_releases_everything,
    the_admin_api_refuses_missing_or_wrong_tokens_and_leaks_nothing,
);

const PATIENCE: Duration = Duration::from_secs(20);

async fn a_debits_webhook_arrives_signed_under_both_schemes(backend: Backend) {
    let app = TestApp::spawn(backend).await;
    let body = wallet_body("player-001", 1000, "USD");
    let text = body.to_string();
    let timestamp = chrono::Utc::now().timestamp().to_string();
    let response = app
        .client
        .post(format!("{}/wallet/debit", app.address))
        .header("Idempotency-Key", new_key())
        .header("X-Timestamp", &timestamp)
        .header(
            "X-Signature",
            hub::signature::sign(SECRET.as_bytes(), text.as_bytes(), &timestamp),
        )
        .header("X-Correlation-ID", "corr-webhook-1")
        .body(text)
        .send()
        .await
        .unwrap();
    let response = answer(response).await;
    assert_eq!(response.status, 201, "{}", response.text);
    let transaction_id = response.json["transactionId"].as_str().unwrap();

    let delivery = eventually("the webhook", PATIENCE, || async {
        app.rgs.deliveries().into_iter().next()
    })
    .await;

    assert_eq!(delivery.status, 200);
    assert!(delivery.signature_valid, "X-Signature verifies");
    assert!(
        delivery.standard_signature_valid,
        "webhook-signature verifies"
    );
    assert_eq!(
        delivery.event_type.as_deref(),
        Some("transaction.completed")
    );
    assert_eq!(delivery.correlation_id.as_deref(), Some("corr-webhook-1"));
    assert_eq!(
        delivery.body["eventId"].as_str(),
        delivery.event_id.as_deref()
    );
    assert_eq!(
        delivery.body["data"],
        json!({
            "transactionId": transaction_id, "refId": body["refId"], "playerId": "player-001",
            "type": "DEBIT", "amountCents": 1000, "currency": "USD", "status": "COMPLETED",
            "balanceCents": 9000, "reason": null, "meta": body["meta"],
        })
    );
    let event_id = delivery.event_id.unwrap();
    let row = app.wait_for_status(&event_id, "DELIVERED").await;
    assert_eq!(row.attempts, 1);
    let attempts = app.attempts(&event_id).await;
    assert_eq!(
        attempts.iter().map(|a| a.status_code).collect::<Vec<_>>(),
        [Some(200)]
    );
}

async fn an_rgs_failing_twice_gets_one_delivery_and_two_recorded_failures(backend: Backend) {
    let app = TestApp::spawn(backend).await;
    app.rgs.fail_next(2, 500, Duration::ZERO);

    let response = answer(
        app.debit(&new_key(), &wallet_body("player-003", 500, "GBP"))
            .await,
    )
    .await;
    assert_eq!(response.status, 201);
    let event_id = app
        .only_event_of(response.json["transactionId"].as_str().unwrap())
        .await;
    app.wait_for_status(&event_id, "DELIVERED").await;

    assert_eq!(
        app.rgs.accepted_event_ids(),
        std::slice::from_ref(&event_id),
        "exactly one successful delivery"
    );
    let statuses: Vec<u16> = app.rgs.deliveries().iter().map(|d| d.status).collect();
    assert_eq!(statuses, [500, 500, 200]);
    let attempts = app.attempts(&event_id).await;
    assert_eq!(
        attempts.iter().map(|a| a.status_code).collect::<Vec<_>>(),
        [Some(500), Some(500), Some(200)]
    );
    assert!(attempts[..2]
        .iter()
        .all(|a| a.error.as_deref().is_some_and(|e| e.contains("500"))));
    assert_eq!(attempts[2].error, None);
}

async fn dead_letters_replayed_by_api_and_cli_are_delivered_once_with_their_event_id(
    backend: Backend,
) {
    let options = Options {
        webhook_schedule: vec![Duration::from_millis(20); 2],
        ..Options::default()
    };
    let app = TestApp::spawn_with(backend, options).await;
    app.rgs.fail_next(1000, 503, Duration::ZERO);
    let mut event_ids = Vec::new();
    for _ in 0..2 {
        let response = answer(
            app.debit(&new_key(), &wallet_body("player-001", 100, "USD"))
                .await,
        )
        .await;
        event_ids.push(
            app.only_event_of(response.json["transactionId"].as_str().unwrap())
                .await,
        );
    }
    for event_id in &event_ids {
        let dead = app.wait_for_status(event_id, "DEAD_LETTER").await;
        assert_eq!(
            dead.attempts, 3,
            "one attempt and the two retries of the schedule"
        );
        assert!(
            dead.last_error
                .as_deref()
                .is_some_and(|e| e.contains("503")),
            "{:?}",
            dead.last_error
        );
    }
    assert!(app.rgs.accepted_event_ids().is_empty());
    app.rgs.fail_next(0, 200, Duration::ZERO);

    let by_api = app
        .client
        .post(format!(
            "{}/admin/outbox/{}/replay",
            app.address, event_ids[0]
        ))
        .bearer_auth(ADMIN_TOKEN)
        .send()
        .await
        .unwrap();
    let by_api = answer(by_api).await;
    assert_eq!(by_api.status, 200, "{}", by_api.text);
    assert_eq!(by_api.json["result"], "QUEUED");
    let by_cli = app.hub_cli(&["outbox", "replay", &event_ids[1]]);
    assert!(
        by_cli.status.success(),
        "{}",
        String::from_utf8_lossy(&by_cli.stderr)
    );
    assert!(String::from_utf8_lossy(&by_cli.stdout).contains("queued"));

    for event_id in &event_ids {
        app.wait_for_status(event_id, "DELIVERED").await;
    }
    let mut accepted = app.rgs.accepted_event_ids();
    accepted.sort();
    let mut expected = event_ids.clone();
    expected.sort();
    assert_eq!(
        accepted, expected,
        "each delivered once, under its original event id"
    );
    for delivery in app.rgs.deliveries().iter().filter(|d| d.status == 200) {
        assert_eq!(
            delivery.body["eventId"].as_str(),
            delivery.event_id.as_deref()
        );
    }
}

async fn two_drainers_deliver_two_thousand_events_exactly_once(backend: Backend) {
    const EVENTS: usize = 2000;
    let app = TestApp::spawn(backend).await;
    let replica = app.start_replica(&Options::default()).await;
    let addresses = [app.address.clone(), replica.address.clone()];

    let statuses: Vec<u16> = futures_util::stream::iter(0..EVENTS)
        .map(|i| {
            let (client, address) = (&app.client, &addresses[i % 2]);
            async move {
                let body = wallet_body("player-005", 1, "USD").to_string();
                post_signed(client, address, "/wallet/debit", &new_key(), &body)
                    .await
                    .status()
                    .as_u16()
            }
        })
        .buffer_unordered(32)
        .collect()
        .await;
    assert!(statuses.iter().all(|s| *s == 201), "every debit succeeds");

    eventually(
        "every event at the RGS",
        Duration::from_secs(120),
        || async { (app.rgs.accepted_event_ids().len() >= EVENTS).then_some(()) },
    )
    .await;
    let accepted = app.rgs.accepted_event_ids();
    let unique: HashSet<_> = accepted.iter().collect();
    assert_eq!(unique.len(), EVENTS, "every event id delivered");
    assert_eq!(accepted.len(), EVENTS, "none delivered twice");
    assert_eq!(app.rgs.duplicates(), 0);
    app.wait_until_all_delivered(EVENTS).await;
    let workers = app.attempt_workers().await;
    assert!(
        workers.contains(app.hub.drainer.worker()) && workers.contains(replica.drainer.worker()),
        "both drainers took part: {workers:?}"
    );
}

async fn events_claimed_by_a_dead_drainer_are_delivered_by_another_after_the_lease(
    backend: Backend,
) {
    let options = Options {
        drain: false,
        ..Options::default()
    };
    let app = TestApp::spawn_with(backend, options.clone()).await;
    for _ in 0..5 {
        assert_eq!(
            app.debit(&new_key(), &wallet_body("player-001", 100, "USD"))
                .await
                .status(),
            201
        );
    }
    let mut dying = app.replica_config(&options).webhooks;
    dying.lease = Duration::from_secs(1);
    let metrics = Arc::new(hub::metrics::Metrics::new());
    let dead = Drainer::new(app.store.clone(), &dying, Arc::new(Notify::new()), metrics).unwrap();
    let claimed_at_ms = mock_rgs_now_ms();
    assert_eq!(
        dead.claim(5).await.unwrap().len(),
        5,
        "the doomed drainer holds every event"
    );
    drop(dead);

    let survivor = app.start_replica(&Options::default()).await;
    eventually("the other drainer to deliver them", PATIENCE, || async {
        (app.rgs.accepted_event_ids().len() >= 5).then_some(())
    })
    .await;

    assert_eq!(app.rgs.duplicates(), 0);
    assert_eq!(app.rgs.accepted_event_ids().len(), 5);
    for delivery in app.rgs.deliveries() {
        assert!(
            delivery.received_at_ms >= claimed_at_ms + 1000,
            "delivered before the dead drainer's lease ended"
        );
    }
    app.wait_until_all_delivered(5).await;
    assert_eq!(
        app.attempt_workers().await,
        HashSet::from([survivor.drainer.worker().to_owned()])
    );
}

async fn a_drainer_stopped_mid_batch_finishes_or_releases_everything(backend: Backend) {
    let app = TestApp::spawn_with(
        backend,
        Options {
            drain: false,
            ..Options::default()
        },
    )
    .await;
    for _ in 0..6 {
        assert_eq!(
            app.debit(&new_key(), &wallet_body("player-001", 100, "USD"))
                .await
                .status(),
            201
        );
    }
    let slow = Fault {
        status: 200,
        delay: Duration::from_millis(300),
        retry_after_seconds: None,
    };
    app.rgs.inject(slow, 1000);
    let one_at_a_time = Options {
        webhook_concurrency: 1,
        ..Options::default()
    };
    let stopping = app.start_replica(&one_at_a_time).await;
    eventually("the first slow delivery", PATIENCE, || async {
        (!app.rgs.deliveries().is_empty()).then_some(())
    })
    .await;

    stopping.shut_down().await;

    let rows = app.all_events().await;
    assert!(
        rows.iter()
            .all(|row| row.locked_by.is_none() && row.locked_until.is_none()),
        "nothing is left locked after a graceful stop: {rows:?}"
    );
    let delivered = rows.iter().filter(|row| row.status == "DELIVERED").count();
    assert_eq!(
        delivered,
        app.rgs.accepted_event_ids().len(),
        "in-flight deliveries were finished and recorded"
    );
    assert!(delivered < 6, "the stop came mid-batch");

    app.rgs.inject(slow, 0);
    let _successor = app.start_replica(&Options::default()).await;
    eventually("the rest to be delivered", PATIENCE, || async {
        (app.rgs.accepted_event_ids().len() >= 6).then_some(())
    })
    .await;
    assert_eq!(app.rgs.duplicates(), 0);
}

async fn the_admin_api_refuses_missing_or_wrong_tokens_and_leaks_nothing(backend: Backend) {
    let app = TestApp::spawn(backend).await;
    let event_id = app.debit_event().await;
    app.wait_for_status(&event_id, "DELIVERED").await;
    let routes = [
        ("GET", "/admin/outbox".to_owned()),
        ("GET", format!("/admin/outbox/{event_id}")),
        ("POST", format!("/admin/outbox/{event_id}/replay")),
        ("POST", "/admin/outbox/replay-dead-letters".to_owned()),
    ];
    let wrong = [
        None,
        Some("Bearer not-the-token-0123456789"),
        Some("Basic dGVzdDp0ZXN0"),
        Some(ADMIN_TOKEN),
    ];

    for (method, path) in &routes {
        for authorization in wrong {
            let mut request = app
                .client
                .request(method.parse().unwrap(), format!("{}{path}", app.address));
            if let Some(value) = authorization {
                request = request.header("Authorization", value);
            }
            let refused = answer(request.send().await.unwrap()).await;
            assert_eq!(
                refused.status, 401,
                "{method} {path} with {authorization:?}"
            );
            assert_eq!(refused.json["code"], "UNAUTHORIZED");
            assert_eq!(refused.headers["www-authenticate"], "Bearer");
            for secret in ["player-001", "transaction.completed", ADMIN_TOKEN] {
                assert!(
                    !refused.text.contains(secret),
                    "{method} {path} leaks {secret}: {}",
                    refused.text
                );
            }
        }
    }
    assert_eq!(
        app.rgs.accepted_event_ids().len(),
        1,
        "a refused replay replays nothing"
    );

    let get = |path: String| {
        let request = app
            .client
            .get(format!("{}{path}", app.address))
            .bearer_auth(ADMIN_TOKEN);
        async move { answer(request.send().await.unwrap()).await }
    };
    let listed = get("/admin/outbox?status=DELIVERED".into()).await;
    assert_eq!(listed.status, 200, "{}", listed.text);
    assert_eq!(listed.json["events"][0]["eventId"], event_id.as_str());
    let shown = get(format!("/admin/outbox/{event_id}")).await;
    assert_eq!(shown.json["payload"]["eventId"], event_id.as_str());
    assert_eq!(shown.json["deliveryAttempts"][0]["statusCode"], 200);
    assert_eq!(
        get("/admin/outbox/no-such-event".into()).await.json["code"],
        "EVENT_NOT_FOUND"
    );
    assert_eq!(
        get("/admin/outbox?status=LOST".into()).await.json["code"],
        "INVALID_REQUEST"
    );
    assert_eq!(
        get("/admin/outbox?limit=many".into()).await.json["code"],
        "INVALID_REQUEST"
    );

    let without_token = TestApp::spawn_with(
        backend,
        Options {
            admin_token: None,
            ..Options::default()
        },
    )
    .await;
    let off = without_token
        .client
        .get(format!("{}/admin/outbox", without_token.address))
        .bearer_auth(ADMIN_TOKEN);
    assert_eq!(
        off.send().await.unwrap().status(),
        404,
        "no ADMIN_TOKEN, no admin API"
    );
}

fn mock_rgs_now_ms() -> u128 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_millis()
}

on_both_backends!(
    a_410_dead_letters_at_once_and_bulk_replay_requeues_every_dead_letter,
    a_429_retry_after_from_the_rgs_is_waited_out,
    retention_prunes_old_delivered_events_with_their_attempts_and_nothing_else,
);

async fn a_410_dead_letters_at_once_and_bulk_replay_requeues_every_dead_letter(backend: Backend) {
    let app = TestApp::spawn(backend).await;
    app.rgs.fail_next(2, 410, Duration::ZERO);
    let gone = [app.debit_event().await, app.debit_event().await];
    for event_id in &gone {
        let dead = app.wait_for_status(event_id, "DEAD_LETTER").await;
        assert_eq!(dead.attempts, 1, "410 Gone is final");
    }
    let delivered = app.debit_event().await;
    app.wait_for_status(&delivered, "DELIVERED").await;

    let response = app
        .client
        .post(format!("{}/admin/outbox/replay-dead-letters", app.address))
        .bearer_auth(ADMIN_TOKEN)
        .send()
        .await
        .unwrap();
    let response = answer(response).await;

    assert_eq!(response.json["requeued"], 2, "{}", response.text);
    app.wait_until_all_delivered(3).await;
    let mut accepted = app.rgs.accepted_event_ids();
    accepted.sort();
    let mut expected = vec![gone[0].clone(), gone[1].clone(), delivered];
    expected.sort();
    assert_eq!(
        accepted, expected,
        "only the dead letters were sent again, once each"
    );
}

async fn a_429_retry_after_from_the_rgs_is_waited_out(backend: Backend) {
    let app = TestApp::spawn(backend).await;
    let busy = Fault {
        status: 429,
        delay: Duration::ZERO,
        retry_after_seconds: Some(1),
    };
    app.rgs.inject(busy, 1);

    let event_id = app.debit_event().await;
    app.wait_for_status(&event_id, "DELIVERED").await;

    let deliveries = app.rgs.deliveries();
    assert_eq!(
        deliveries.iter().map(|d| d.status).collect::<Vec<_>>(),
        [429, 200]
    );
    let waited = deliveries[1].received_at_ms - deliveries[0].received_at_ms;
    assert!(
        waited >= 1000,
        "retried {waited} ms after a Retry-After of 1 s (the schedule alone says 50 ms)"
    );
}

async fn retention_prunes_old_delivered_events_with_their_attempts_and_nothing_else(
    backend: Backend,
) {
    let app = TestApp::spawn(backend).await;
    app.rgs.fail_next(1, 410, Duration::ZERO);
    let dead = app.debit_event().await;
    app.wait_for_status(&dead, "DEAD_LETTER").await;
    let delivered = app.debit_event().await;
    app.wait_for_status(&delivered, "DELIVERED").await;

    let kept_a_week = hub::outbox::retention::prune(&app.store, Duration::from_secs(7 * 24 * 3600))
        .await
        .unwrap();
    assert_eq!(kept_a_week, 0, "nothing is a week old yet");
    let pruned = hub::outbox::retention::prune(&app.store, Duration::ZERO)
        .await
        .unwrap();

    assert_eq!(pruned, 1);
    let remaining: Vec<String> = app.all_events().await.into_iter().map(|e| e.id).collect();
    assert_eq!(
        remaining,
        std::slice::from_ref(&dead),
        "dead letters are never pruned"
    );
    assert!(
        app.attempts(&delivered).await.is_empty(),
        "the pruned event's attempts went with it"
    );
    assert_eq!(app.attempts(&dead).await.len(), 1);
}
