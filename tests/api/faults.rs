//! Faults under load, judged by the books: the operator's per-transaction charge counts, the
//! RGS's received event ids, and `hub reconcile`.

use std::collections::{HashMap, HashSet};
use std::time::Duration;

use futures_util::StreamExt;
use mock_operator::{FaultKind, Flapping};
use serde_json::Value;

use crate::helpers::{
    answer, eventually, new_key, on_both_backends, spawn_hub_process, try_post_signed, wallet_body,
    Answer, Backend, HubProcess, Options, TestApp,
};
use crate::private_postgres::PrivatePostgres;

on_both_backends!(
    a_hub_killed_under_3000_requests_a_second_charges_each_key_once_and_loses_no_webhook,
    a_flapping_operator_never_charges_twice,
    an_rgs_down_past_half_the_schedule_loses_no_event,
    rollbacks_under_a_flapping_operator_and_a_kill_leave_every_player_whole
);

/// Short leases: a killed hub's keys and claimed webhooks come back within seconds.
const SHORT_LEASES: [(&str, &str); 4] = [
    ("OPERATOR_DEADLINE_MS", "1000"),
    ("IDEMPOTENCY_LEASE_MARGIN_MS", "500"),
    ("WEBHOOK_LEASE_SECONDS", "2"),
    ("WEBHOOK_TIMEOUT_MS", "1000"),
];

/// SIGKILLs `doomed` once the operator has seen `calls` calls: the load is under way.
async fn kill_once_under_way(app: &TestApp, doomed: HubProcess, calls: usize, within: Duration) {
    eventually("the load to be under way", within, || async {
        (app.operator.calls().len() >= calls).then_some(())
    })
    .await;
    drop(doomed); // SIGKILL
}

/// One signed debit; `None` when no answer came (the hub died, the connection broke).
async fn debit_once(app: &TestApp, address: &str, key: &str, body: &Value) -> Option<Answer> {
    let sent = try_post_signed(
        &app.client,
        address,
        "/wallet/debit",
        key,
        &body.to_string(),
    )
    .await;
    match sent {
        Ok(response) => Some(answer(response).await),
        Err(_) => None,
    }
}

/// Sends every (key, body) to `address`, `concurrency` at a time.
async fn send_all(
    app: &TestApp,
    address: &str,
    requests: &[(String, Value)],
    concurrency: usize,
) -> Vec<Option<Answer>> {
    futures_util::stream::iter(requests)
        .map(|(key, body)| debit_once(app, address, key, body))
        .buffered(concurrency)
        .collect()
        .await
}

/// Retries each request with its own key until it has a final answer (2xx or 4xx other than
/// 409), pausing between rounds as a client's backoff would; fails after a minute.
async fn retry_until_final(
    app: &TestApp,
    address: &str,
    requests: &[(String, Value)],
) -> Vec<Answer> {
    let deadline = std::time::Instant::now() + Duration::from_secs(60);
    let mut finals: Vec<Option<Answer>> = (0..requests.len()).map(|_| None).collect();
    loop {
        let open: Vec<usize> = (0..requests.len())
            .filter(|i| finals[*i].is_none())
            .collect();
        if open.is_empty() {
            return finals.into_iter().map(|a| a.expect("final")).collect();
        }
        assert!(
            std::time::Instant::now() < deadline,
            "{} requests never got a final answer",
            open.len()
        );
        let batch: Vec<(String, Value)> = open.iter().map(|i| requests[*i].clone()).collect();
        for (index, answered) in open.iter().zip(send_all(app, address, &batch, 16).await) {
            finals[*index] = answered.filter(|a| a.status < 500 && a.status != 409);
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// The hub's books agree with the operator's: one charge per completed transaction, none
/// for anything else, never two.
async fn assert_charged_exactly_once(app: &TestApp, answers: &[Answer]) {
    let completed: HashSet<String> = answers
        .iter()
        .filter(|a| a.status == 201)
        .map(|a| a.json["transactionId"].as_str().unwrap().to_owned())
        .collect();
    for id in &completed {
        assert_eq!(app.operator.charges_for(id), 1, "transaction {id}");
    }
    assert_eq!(
        app.operator.total_charges() as usize,
        completed.len(),
        "no charge outside a completed transaction"
    );
}

/// `hub reconcile` over the last hour exits 0: the hub's and the operator's ledgers agree.
fn assert_reconciles(app: &TestApp) {
    let out = tempfile::tempdir().unwrap();
    let now = chrono::Utc::now();
    let from = (now - chrono::TimeDelta::hours(1)).to_rfc3339();
    let to = (now + chrono::TimeDelta::hours(1)).to_rfc3339();
    let reconcile = app.hub_cli_with(
        &[
            "reconcile",
            "--from",
            &from,
            "--to",
            &to,
            "--out",
            out.path().to_str().unwrap(),
        ],
        &[("OPERATOR_BASE_URL", &app.operator.base_url())],
    );
    assert_eq!(
        reconcile.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&reconcile.stdout)
    );
}

fn debits(count: usize) -> Vec<(String, Value)> {
    (0..count)
        .map(|_| (new_key(), wallet_body("player-005", 10, "USD")))
        .collect()
}

async fn a_flapping_operator_never_charges_twice(backend: Backend) {
    let mut options = Options::default();
    options.retry.attempt_timeout = Duration::from_millis(300);
    options.retry.deadline = Duration::from_millis(1500);
    options.breaker.min_calls = 100_000;
    options.completer_after = Duration::from_secs(1);
    let app = TestApp::spawn_with(backend, options).await;
    app.operator.flap(Some(Flapping {
        server_error_per_mille: 300,
        rate_limited_per_mille: 100,
        late_per_mille: 50,
        late_by: Duration::from_millis(600),
        retry_after_seconds: 1,
        seed: 20_261_124,
    }));
    let requests = debits(150);

    let first_round = send_all(&app, &app.address, &requests, 16).await;
    let answers = retry_until_final(&app, &app.address, &requests).await;
    app.operator.flap(None);

    assert!(
        first_round.iter().flatten().any(|a| a.status >= 500),
        "the operator did flap"
    );
    assert!(
        answers.iter().all(|a| a.status == 201),
        "a retried debit settles in the end"
    );
    assert_charged_exactly_once(&app, &answers).await;
    let ids: HashSet<&str> = answers
        .iter()
        .map(|a| a.json["transactionId"].as_str().unwrap())
        .collect();
    assert_eq!(ids.len(), requests.len(), "one transaction per key");
    assert_eq!(
        app.operator.balance("player-005"),
        Some(25_000 - 10 * requests.len() as i64)
    );
    assert_reconciles(&app);
}

async fn an_rgs_down_past_half_the_schedule_loses_no_event(backend: Backend) {
    let schedule = [100, 200, 400, 800].map(Duration::from_millis).to_vec();
    let app = TestApp::spawn_with(
        backend,
        Options {
            webhook_schedule: schedule,
            ..Options::default()
        },
    )
    .await;
    app.rgs.fail_next(1_000_000, 503, Duration::ZERO);
    let answers = send_all(&app, &app.address, &debits(20), 8).await;
    assert!(answers
        .iter()
        .all(|a| a.as_ref().is_some_and(|a| a.status == 201)));

    // Down until every event has used three of its five attempts.
    eventually(
        "every event to fail three times",
        Duration::from_secs(20),
        || async {
            let events = app.all_events().await;
            (events.len() == 20
                && events
                    .iter()
                    .all(|e| e.attempts >= 3 && e.status == "PENDING"))
            .then_some(())
        },
    )
    .await;
    app.rgs.fail_next(0, 200, Duration::ZERO);

    app.wait_until_all_delivered(20).await;
    let accepted: HashSet<String> = app.rgs.accepted_event_ids().into_iter().collect();
    assert_eq!(accepted.len(), 20, "every event delivered");
    assert_eq!(app.rgs.duplicates(), 0);
    assert_reconciles(&app);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
#[cfg_attr(
    not(postgres_tests),
    ignore = "set TEST_DATABASE_URL to run the Postgres half"
)]
async fn a_hub_killed_mid_load_charges_each_key_once_after_the_clients_retry() {
    let app = TestApp::spawn(Backend::Postgres).await;
    let doomed = spawn_hub_process(&app, &SHORT_LEASES);
    // Slow answers keep requests in flight when the hub dies.
    app.operator.inject_fault(
        FaultKind::Timeout {
            delay: Duration::from_millis(200),
        },
        1_000_000,
    );
    let requests = debits(200);

    let address = doomed.address.clone();
    let load = send_all(&app, &address, &requests, 32);
    let kill = kill_once_under_way(&app, doomed, 60, Duration::from_secs(20));
    let (first_round, ()) = tokio::join!(load, kill);
    app.operator.inject_fault(FaultKind::ServerError, 0);
    let interrupted = first_round.iter().filter(|a| a.is_none()).count();
    assert!(interrupted > 0, "the kill interrupted requests in flight");

    let restarted = spawn_hub_process(&app, &SHORT_LEASES);
    let answers = retry_until_final(&app, &restarted.address, &requests).await;

    assert!(
        answers.iter().all(|a| a.status == 201),
        "every key settles after retries"
    );
    assert_charged_exactly_once(&app, &answers).await;
    let by_key: HashMap<&str, &str> = requests
        .iter()
        .zip(&answers)
        .map(|((key, _), a)| (key.as_str(), a.json["transactionId"].as_str().unwrap()))
        .collect();
    assert_eq!(
        by_key.values().collect::<HashSet<_>>().len(),
        200,
        "one transaction per key"
    );
    app.wait_until_all_delivered(200).await;
    assert_eq!(
        app.rgs
            .accepted_event_ids()
            .into_iter()
            .collect::<HashSet<_>>()
            .len(),
        200
    );

    assert_reconciles(&app);
}

/// Sends each request at its slot of a fixed schedule of `per_second` (open loop: a slow
/// hub does not slow the offered load), all of them in flight at once if need be.
async fn send_at_rate(
    app: &TestApp,
    address: &str,
    requests: &[(String, Value)],
    per_second: f64,
) -> Vec<Option<Answer>> {
    let started = tokio::time::Instant::now();
    let sends = requests
        .iter()
        .enumerate()
        .map(|(slot, (key, body))| async move {
            tokio::time::sleep_until(started + Duration::from_secs_f64(slot as f64 / per_second))
                .await;
            debit_once(app, address, key, body).await
        });
    futures_util::future::join_all(sends).await
}

/// Group commit under the load it is for: a hub process SIGKILLed while 3,000 debits a
/// second are offered, with groups of claims and settlements in flight. After the clients
/// retry with their keys: each key charged exactly once, every webhook delivered (those
/// answered before the kill included), and the books reconcile.
async fn a_hub_killed_under_3000_requests_a_second_charges_each_key_once_and_loses_no_webhook(
    backend: Backend,
) {
    let app = TestApp::spawn(backend).await;
    let doomed = spawn_hub_process(&app, &SHORT_LEASES);
    let requests: Vec<(String, Value)> = (0..3_000)
        .map(|_| (new_key(), wallet_body("player-005", 5, "USD")))
        .collect();
    let address = doomed.address.clone();
    let load = send_at_rate(&app, &address, &requests, 3_000.0);
    let kill = kill_once_under_way(&app, doomed, 500, Duration::from_secs(30));
    let (first_round, ()) = tokio::join!(load, kill);
    let answered_before_kill: Vec<String> = first_round
        .iter()
        .flatten()
        .filter(|a| a.status == 201)
        .map(|a| a.json["transactionId"].as_str().unwrap().to_owned())
        .collect();
    assert!(
        first_round.iter().any(Option::is_none),
        "the kill interrupted requests in flight"
    );

    let restarted = spawn_hub_process(&app, &SHORT_LEASES);
    let answers = retry_until_final(&app, &restarted.address, &requests).await;
    assert!(
        answers.iter().all(|a| a.status == 201),
        "every key settles after retries"
    );
    assert_charged_exactly_once(&app, &answers).await;
    let settled: HashSet<&str> = answers
        .iter()
        .map(|a| a.json["transactionId"].as_str().unwrap())
        .collect();
    assert_eq!(settled.len(), requests.len(), "one transaction per key");
    for id in &answered_before_kill {
        assert!(
            settled.contains(id.as_str()),
            "an answer given before the kill stands"
        );
    }
    app.wait_until_all_delivered(requests.len()).await;
    let delivered: HashSet<String> = app.rgs.accepted_event_ids().into_iter().collect();
    assert_eq!(
        delivered.len(),
        requests.len(),
        "one webhook per transaction"
    );
    assert_reconciles(&app);
}

async fn ready_status(app: &TestApp) -> u16 {
    app.client
        .get(format!("{}/ready", app.address))
        .send()
        .await
        .map_or(0, |r| r.status().as_u16())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
#[cfg_attr(
    not(postgres_tests),
    ignore = "set TEST_DATABASE_URL to run the Postgres half"
)]
async fn a_postgres_restart_mid_load_is_ridden_out_without_half_written_state() {
    let postgres = PrivatePostgres::create();
    let options = Options {
        postgres_server: Some(postgres.url()),
        db_acquire_timeout: Duration::from_millis(500),
        completer_after: Duration::from_secs(1),
        ..Options::default()
    };
    let app = TestApp::spawn_with(Backend::Postgres, options).await;
    let requests = debits(120);
    let (before, during_and_after) = requests.split_at(40);
    assert!(send_all(&app, &app.address, before, 8)
        .await
        .iter()
        .all(|a| a.as_ref().is_some_and(|a| a.status == 201)));

    postgres.stop();
    eventually(
        "/ready to report the outage",
        Duration::from_secs(10),
        || async { (ready_status(&app).await == 503).then_some(()) },
    )
    .await;
    let during = send_all(&app, &app.address, &during_and_after[..20], 4).await;
    postgres.start();
    eventually(
        "/ready to recover without a restart",
        Duration::from_secs(30),
        || async { (ready_status(&app).await == 200).then_some(()) },
    )
    .await;

    for answered in during.iter().flatten() {
        assert!(
            answered.status < 500 || answered.status == 503,
            "no 500 for an outage: {}",
            answered.text
        );
    }
    assert!(
        during
            .iter()
            .flatten()
            .any(|a| a.json["code"] == "SERVICE_UNAVAILABLE"),
        "the outage was felt"
    );
    let answers = retry_until_final(&app, &app.address, &requests).await;
    assert!(answers.iter().all(|a| a.status == 201));
    assert_charged_exactly_once(&app, &answers).await;
    // Every settled transaction has exactly its one webhook: nothing half-written.
    for answered in &answers {
        let transaction_id = answered.json["transactionId"].as_str().unwrap();
        assert_eq!(
            app.outbox_for(transaction_id).await.len(),
            1,
            "transaction {transaction_id}"
        );
    }
    assert_reconciles(&app);
}

/// One request of the seamless-wallet load, retried with its own key until it is final.
#[derive(Debug, Clone)]
struct Job {
    path: &'static str,
    key: String,
    body: Value,
}

impl Job {
    fn new(path: &'static str, body: Value) -> Self {
        Self {
            path,
            key: new_key(),
            body,
        }
    }
}

/// Final: anything but a 5xx or a request still in progress (a 409 such as
/// TRANSACTION_ROLLED_BACK or RESUME_WINDOW_PASSED is the key's answer, not a retry hint).
fn is_final(answered: &Answer) -> bool {
    answered.status < 500 && answered.json["code"] != "REQUEST_IN_PROGRESS"
}

async fn send_jobs(app: &TestApp, address: &str, jobs: &[Job]) -> Vec<Option<Answer>> {
    futures_util::stream::iter(jobs)
        .map(|job| async move {
            let sent = try_post_signed(
                &app.client,
                address,
                job.path,
                &job.key,
                &job.body.to_string(),
            )
            .await;
            match sent {
                Ok(response) => Some(answer(response).await),
                Err(_) => None,
            }
        })
        .buffer_unordered(16)
        .collect()
        .await
}

async fn retry_jobs_until_final(app: &TestApp, address: &str, jobs: &[Job]) {
    let deadline = std::time::Instant::now() + Duration::from_secs(90);
    let mut open: Vec<Job> = jobs.to_vec();
    while !open.is_empty() {
        assert!(
            std::time::Instant::now() < deadline,
            "{} requests never got a final answer",
            open.len()
        );
        let answers = futures_util::stream::iter(open.clone())
            .map(|job| async move {
                let sent = try_post_signed(
                    &app.client,
                    address,
                    job.path,
                    &job.key,
                    &job.body.to_string(),
                )
                .await;
                let finished = match sent {
                    Ok(response) => is_final(&answer(response).await),
                    Err(_) => false,
                };
                (job, finished)
            })
            .buffer_unordered(16)
            .collect::<Vec<_>>()
            .await;
        open = answers
            .into_iter()
            .filter(|(_, finished)| !finished)
            .map(|(job, _)| job)
            .collect();
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

async fn all_transactions(app: &TestApp) -> Vec<hub::store::transactions::TransactionRow> {
    use diesel::prelude::*;
    use hub::store::schema::transactions::dsl::transactions;
    use hub::store::transactions::TransactionRow;
    use hub::store::{DbConnection, StoreError};
    app.store
        .run(|conn| {
            let rows = match conn {
                DbConnection::Postgres(c) => {
                    transactions.select(TransactionRow::as_select()).load(c)
                }
                DbConnection::Sqlite(c) => transactions.select(TransactionRow::as_select()).load(c),
            };
            rows.map_err(StoreError::from)
        })
        .await
        .expect("read the transactions")
}

/// The seamless-wallet fault suite: a flapping operator, rollbacks of debits in flight and
/// of completed ones, and a SIGKILL mid-load. Judged by the books: per player, the
/// operator's balance moved by exactly the completed credits minus the completed debits that
/// were not rolled back, every debit is charged net once or not at all, every settled
/// rollback has one `transaction.rolled_back`, and `hub reconcile` exits 0.
async fn rollbacks_under_a_flapping_operator_and_a_kill_leave_every_player_whole(backend: Backend) {
    let mut options = Options::default();
    options.retry.attempt_timeout = Duration::from_millis(300);
    options.retry.deadline = Duration::from_millis(1000);
    options.breaker.min_calls = 100_000;
    options.completer_after = Duration::from_secs(1);
    options.debit_resume_window = Duration::from_secs(3);
    options.completer_backoff_initial = Duration::from_millis(200);
    options.completer_backoff_max = Duration::from_secs(1);
    let app = TestApp::spawn_with(backend, options).await;
    let settings = [
        ("OPERATOR_DEADLINE_MS", "1000"),
        ("OPERATOR_ATTEMPT_TIMEOUT_MS", "300"),
        ("IDEMPOTENCY_LEASE_MARGIN_MS", "500"),
        ("DEBIT_RESUME_WINDOW_SECONDS", "3"),
        ("COMPLETER_AFTER_SECONDS", "1"),
        ("COMPLETER_INTERVAL_MS", "200"),
        ("COMPLETER_BACKOFF_INITIAL_MS", "200"),
        ("COMPLETER_BACKOFF_MAX_SECONDS", "1"),
        ("OPERATOR_BREAKER_MIN_CALLS", "100000"),
        ("WEBHOOK_LEASE_SECONDS", "2"),
        ("WEBHOOK_TIMEOUT_MS", "1000"),
    ];
    let players = ["player-001", "player-005"];
    let opening: HashMap<&str, i64> = players
        .iter()
        .map(|p| (*p, app.operator.balance(p).unwrap()))
        .collect();
    let doomed = spawn_hub_process(&app, &settings);
    app.operator.flap(Some(Flapping {
        server_error_per_mille: 200,
        rate_limited_per_mille: 50,
        late_per_mille: 80,
        late_by: Duration::from_millis(500),
        retry_after_seconds: 1,
        seed: 20_261_125,
    }));

    // Every third debit is rolled back: one half while it is in flight (sent right behind
    // it), the other half once the load is over (by then completed, pending or cancelled).
    let mut first_wave = Vec::new();
    let mut late_rollbacks = Vec::new();
    for index in 0..90 {
        let player = players[index % 2];
        let ref_id = format!("bet-{}", new_key());
        let mut debit = wallet_body(player, 10 + (index as i64 % 7), "USD");
        debit["refId"] = Value::from(ref_id.clone());
        first_wave.push(Job::new("/wallet/debit", debit));
        if index % 3 == 0 {
            let rollback = Job::new(
                "/wallet/rollback",
                serde_json::json!({"playerId": player, "refId": format!("rb-{}", new_key()),
                                   "originalRefId": ref_id}),
            );
            if index % 2 == 0 {
                first_wave.push(rollback);
            } else {
                late_rollbacks.push(rollback);
            }
        }
        if index % 3 == 1 {
            first_wave.push(Job::new("/wallet/credit", wallet_body(player, 5, "USD")));
        }
    }

    let address = doomed.address.clone();
    let load = send_jobs(&app, &address, &first_wave);
    let kill = kill_once_under_way(&app, doomed, 60, Duration::from_secs(30));
    let (first_round, ()) = tokio::join!(load, kill);
    assert!(
        first_round.iter().any(Option::is_none),
        "the kill interrupted requests in flight"
    );

    let restarted = spawn_hub_process(&app, &settings);
    let everything: Vec<Job> = first_wave.iter().chain(&late_rollbacks).cloned().collect();
    retry_jobs_until_final(&app, &restarted.address, &everything).await;
    app.operator.flap(None);

    // Whatever the clients left unknown, the completers resolve: credits and rollbacks
    // driven forward, debits past their window cancelled.
    let settled = eventually(
        "every transaction to be settled",
        Duration::from_secs(60),
        || async {
            let rows = all_transactions(&app).await;
            rows.iter().all(|t| t.status != "PENDING").then_some(rows)
        },
    )
    .await;

    let mut expected_change: HashMap<&str, i64> = players.iter().map(|p| (*p, 0)).collect();
    let mut rolled_back = 0;
    for row in &settled {
        let player = players
            .iter()
            .find(|p| **p == row.player_id)
            .expect("a player of the load");
        match (row.kind.as_str(), row.status.as_str()) {
            ("CREDIT", "COMPLETED") => {
                *expected_change.get_mut(player).unwrap() += row.amount_cents
            }
            ("DEBIT", "COMPLETED") => *expected_change.get_mut(player).unwrap() -= row.amount_cents,
            _ => {}
        }
        if row.kind == "DEBIT" {
            let charged = app.operator.charges_for(&row.id);
            let refunded = app.operator.refunds_for(&row.id);
            assert!(
                charged <= 1 && refunded <= charged,
                "debit {}: {charged} charges, {refunded} refunds",
                row.id
            );
            let net = charged - refunded;
            let expected = u32::from(row.status == "COMPLETED");
            assert_eq!(
                net, expected,
                "debit {} is {} ({:?})",
                row.id, row.status, row.reason
            );
            rolled_back += usize::from(row.status == "ROLLED_BACK");
        }
        if row.kind == "ROLLBACK" {
            let events = app.outbox_for(&row.id).await;
            assert_eq!(events.len(), 1, "rollback {}", row.id);
            assert_eq!(events[0].event_type, "transaction.rolled_back");
        }
    }
    assert!(rolled_back > 0, "debits were rolled back");
    for player in players {
        let change = app.operator.balance(player).unwrap() - opening[player];
        assert_eq!(change, expected_change[player], "{player}");
    }
    // A debit cancelled before it settled has no event of its own: its rollback's says it.
    let cancelled = settled
        .iter()
        .filter(|t| t.status == "ROLLED_BACK" && t.reason.as_deref() == Some("CANCELLED"))
        .count();
    app.wait_until_all_delivered(settled.len() - cancelled)
        .await;
    assert_reconciles(&app);
}
