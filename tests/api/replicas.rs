//! Several `hub serve` processes on one Postgres and one Redis, as deployed behind a load
//! balancer: a shared rate limit, a shared Retry-After pause, and a replica killed with
//! SIGKILL while it drains.

use std::time::Duration;

use futures_util::future::join_all;
use mock_operator::FaultKind;
use mock_rgs::Fault;
use uuid::Uuid;

use crate::helpers::{
    answer, eventually, new_key, post_signed, spawn_hub_process, wallet_body, Backend, HubProcess,
    Options, TestApp,
};

fn redis_url() -> String {
    std::env::var("TEST_REDIS_URL")
        .expect("the replica tests need TEST_REDIS_URL, e.g. redis://127.0.0.1:6379")
}

/// A `hub serve` replica sharing the test's Redis under `prefix`.
fn spawn_replica(app: &TestApp, prefix: &str, extra: &[(&str, &str)]) -> HubProcess {
    let redis = redis_url();
    let mut env = vec![("REDIS_URL", redis.as_str()), ("REDIS_KEY_PREFIX", prefix)];
    env.extend_from_slice(extra);
    spawn_hub_process(app, &env)
}

fn prefix() -> String {
    format!("hub-replicas-{}:", Uuid::new_v4().simple())
}

async fn debit_at(app: &TestApp, address: &str) -> crate::helpers::Answer {
    let body = wallet_body("player-005", 100, "USD").to_string();
    answer(post_signed(&app.client, address, "/wallet/debit", &new_key(), &body).await).await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
#[cfg_attr(
    not(all(postgres_tests, redis_tests)),
    ignore = "set TEST_DATABASE_URL and TEST_REDIS_URL to run the replica tests"
)]
async fn three_replicas_share_one_operator_rate_limit() {
    let app = TestApp::spawn_with(
        Backend::Postgres,
        Options {
            operator_rpm: 60,
            ..Options::default()
        },
    )
    .await;
    let prefix = prefix();
    let settings = [
        ("OPERATOR_RATE_LIMIT_RPM", "60"),
        ("OPERATOR_DEADLINE_MS", "25000"),
    ];
    let replicas: Vec<HubProcess> = (0..3)
        .map(|_| spawn_replica(&app, &prefix, &settings))
        .collect();

    // A burst of 150 at once, spread over the three. Alone, each replica would send one call a
    // second: 75 in 25 s, past the operator's 60 a minute. Together they must send 25.
    let answers = join_all((0..150).map(|i| debit_at(&app, &replicas[i % 3].address))).await;

    let calls = app.operator.calls();
    assert!(
        calls.iter().all(|c| c.status == 200),
        "the operator answered 429: {:?}",
        calls.iter().map(|c| c.status).collect::<Vec<_>>()
    );
    let settled = answers.iter().filter(|a| a.status == 201).count();
    for refused in answers.iter().filter(|a| a.status != 201) {
        assert_eq!(
            (refused.status, refused.json["code"].as_str()),
            (503, Some("OPERATOR_RATE_LIMITED")),
            "{}",
            refused.text
        );
        assert!(refused.headers.contains_key("retry-after"));
    }
    assert_eq!(
        app.operator.total_charges() as usize,
        settled,
        "every 201 is one charge, every refusal none"
    );
    assert!(
        (20..=27).contains(&settled),
        "about one call a second for 25 s, got {settled}"
    );
    assert_eq!(
        app.operator.balance("player-005"),
        Some(25_000 - 100 * settled as i64)
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
#[cfg_attr(
    not(all(postgres_tests, redis_tests)),
    ignore = "set TEST_DATABASE_URL and TEST_REDIS_URL to run the replica tests"
)]
async fn a_retry_after_seen_by_one_replica_holds_every_replica_back() {
    let app = TestApp::spawn(Backend::Postgres).await;
    let prefix = prefix();
    let replicas: Vec<HubProcess> = (0..3).map(|_| spawn_replica(&app, &prefix, &[])).collect();
    app.operator.inject_fault(
        FaultKind::RateLimited {
            retry_after_seconds: 3,
        },
        1,
    );

    let first = debit_at(&app, &replicas[0].address);
    let others = async {
        // Once the pause is in Redis, the other replicas' calls must wait for it too.
        let redis = redis::Client::open(redis_url()).unwrap();
        let connection = redis.get_multiplexed_async_connection().await.unwrap();
        let key = format!("{prefix}governor:paused_until");
        eventually("the pause to be shared", Duration::from_secs(5), || {
            let (mut connection, key) = (connection.clone(), key.clone());
            async move {
                let paused: Option<i64> = redis::cmd("GET")
                    .arg(&key)
                    .query_async(&mut connection)
                    .await
                    .unwrap();
                paused.map(|_| ())
            }
        })
        .await;
        join_all([
            debit_at(&app, &replicas[1].address),
            debit_at(&app, &replicas[2].address),
        ])
        .await
    };
    let (first, others) = tokio::join!(first, others);

    assert_eq!(first.status, 201, "{}", first.text);
    assert!(others.iter().all(|a| a.status == 201));
    let calls = app.operator.calls();
    let limited_at = calls
        .iter()
        .find(|c| c.status == 429)
        .expect("the operator said 429")
        .received_at_ms;
    for call in calls.iter().filter(|c| c.status == 200) {
        assert!(
            call.received_at_ms >= limited_at + 3000,
            "a call reached the operator {} ms after its 429 with Retry-After: 3",
            call.received_at_ms - limited_at
        );
    }
    assert_eq!(calls.iter().filter(|c| c.status == 200).count(), 3);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
#[cfg_attr(
    not(all(postgres_tests, redis_tests)),
    ignore = "set TEST_DATABASE_URL and TEST_REDIS_URL to run the replica tests"
)]
async fn a_replica_killed_while_draining_loses_no_webhook() {
    const EVENTS: usize = 300;
    // The in-test hub only serves the debits; the two replicas drain.
    let app = TestApp::spawn_with(
        Backend::Postgres,
        Options {
            drain: false,
            ..Options::default()
        },
    )
    .await;
    let prefix = prefix();
    let settings = [
        ("WEBHOOK_LEASE_SECONDS", "2"),
        ("WEBHOOK_TIMEOUT_MS", "1000"),
        ("WEBHOOK_CONCURRENCY", "4"),
        ("WEBHOOK_BATCH_SIZE", "20"),
    ];
    let slow = Fault {
        status: 200,
        delay: Duration::from_millis(20),
        retry_after_seconds: None,
    };
    app.rgs.inject(slow, 100_000);
    let statuses = join_all((0..EVENTS).map(|_| async {
        let body = wallet_body("player-005", 1, "USD").to_string();
        post_signed(
            &app.client,
            &app.address,
            "/wallet/debit",
            &new_key(),
            &body,
        )
        .await
        .status()
        .as_u16()
    }))
    .await;
    assert!(statuses.iter().all(|s| *s == 201));
    let doomed = spawn_replica(&app, &prefix, &settings);
    let _survivor = spawn_replica(&app, &prefix, &settings);

    eventually(
        "draining to be under way",
        Duration::from_secs(20),
        || async { (app.rgs.deliveries().len() >= 40).then_some(()) },
    )
    .await;
    drop(doomed); // SIGKILL, mid-batch: its claims stay leased until the lease ends

    app.wait_until_all_delivered(EVENTS).await;
    let accepted: std::collections::HashSet<String> =
        app.rgs.accepted_event_ids().into_iter().collect();
    assert_eq!(accepted.len(), EVENTS, "every event id reached the RGS");
    // Outcomes are recorded as they land and a delivery slot is freed only once its outcome
    // is written: what can go out again (under the same event ids) is the killed replica's
    // requests in flight, at most WEBHOOK_CONCURRENCY = 4.
    assert!(
        app.rgs.duplicates() <= 4,
        "at most the killed replica's unrecorded deliveries repeat"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
#[cfg_attr(
    not(all(postgres_tests, redis_tests)),
    ignore = "set TEST_DATABASE_URL and TEST_REDIS_URL to run the replica tests"
)]
async fn a_circuit_opened_by_one_replica_protects_the_others() {
    let app = TestApp::spawn(Backend::Postgres).await;
    let prefix = prefix();
    let settings = [
        ("OPERATOR_BREAKER_MIN_CALLS", "2"),
        ("OPERATOR_BREAKER_OPEN_MS", "60000"),
        ("OPERATOR_DEADLINE_MS", "300"),
    ];
    let discoverer = spawn_replica(&app, &prefix, &settings);
    let other = spawn_replica(&app, &prefix, &settings);
    app.operator.inject_fault(FaultKind::ServerError, 100_000);
    for _ in 0..2 {
        assert_eq!(debit_at(&app, &discoverer.address).await.status, 502);
    }
    let calls_before = app.operator.calls().len();

    let protected = debit_at(&app, &other.address).await;

    assert_eq!(protected.status, 503, "{}", protected.text);
    assert_eq!(protected.json["code"], "OPERATOR_UNAVAILABLE");
    assert_eq!(
        app.operator.calls().len(),
        calls_before,
        "the other replica left the operator alone"
    );
}
