//! An operator that answers anything but a wallet status: redirects, gateway pages, an
//! idempotency layer's "409 in progress", unreadable bodies, unknown statuses and absurd
//! `Retry-After`s. None of them decides an outcome: the hub retries with the same transaction
//! id within its deadline, answers 502 and leaves the transaction PENDING, never REJECTED.
//! Only a readable wallet status decides, whatever the HTTP status it comes with.

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, OnceLock};
use std::time::{Duration, Instant};

use hub::store::transactions::TransactionRow;
use serde_json::{json, Value};

use crate::helpers::{
    answer, eventually, new_key, on_both_backends, wallet_body, Answer, Backend, Options, TestApp,
};
use crate::hostile::{Hostile, Reply, Seen};

on_both_backends!(
    a_redirect_is_never_followed_and_leaves_the_debit_pending,
    gateway_pages_on_401_403_and_404_leave_the_debit_pending_and_never_rejected,
    a_charge_that_timed_out_then_409_in_progress_is_resumed_by_the_retry_and_charged_once,
    a_200_with_an_unreadable_body_leaves_the_debit_pending,
    an_unknown_wallet_status_leaves_the_debit_pending,
    a_genuine_decline_on_a_422_still_rejects_the_debit,
    unknown_answers_count_as_failures_and_open_the_circuit,
    a_negative_or_garbage_retry_after_is_ignored_and_the_call_retried,
    a_huge_or_far_future_retry_after_is_clamped_and_given_up_on_at_once,
);

/// Short attempts inside a short deadline, so that each outcome is known within a second.
fn short_retries(operator: &Hostile) -> Options {
    let mut options = Options {
        operator_url: Some(operator.base_url.clone()),
        ..Options::default()
    };
    options.retry.attempt_timeout = Duration::from_millis(300);
    options.retry.deadline = Duration::from_secs(1);
    options.retry.initial_backoff = Duration::from_millis(20);
    options.retry.max_backoff = Duration::from_millis(100);
    options
}

async fn hub_against(backend: Backend, operator: &Hostile) -> TestApp {
    TestApp::spawn_with(backend, short_retries(operator)).await
}

fn is_wallet_call(seen: &Seen) -> bool {
    seen.path.ends_with("/withdraw") || seen.path.ends_with("/deposit")
}

/// A hostile operator whose wallet calls get whatever the test set last.
fn answering_whatever_is_set() -> (Hostile, Arc<Mutex<Reply>>) {
    let current = Arc::new(Mutex::new(Reply::new(500, "nothing set yet")));
    let set = current.clone();
    let operator = Hostile::start(move |_, _| set.lock().unwrap().clone());
    (operator, current)
}

/// Debits player-001 one dollar under a new key.
async fn debit(app: &TestApp) -> (String, Answer) {
    let key = new_key();
    let response = answer(
        app.debit(&key, &wallet_body("player-001", 100, "USD"))
            .await,
    )
    .await;
    (key, response)
}

/// The hub gave up on an unknown outcome: 502, the transaction PENDING, nothing emitted.
async fn assert_left_pending(
    app: &TestApp,
    key: &str,
    response: &Answer,
    case: &str,
) -> TransactionRow {
    assert_eq!(response.status, 502, "{case}: {}", response.text);
    assert_eq!(response.json["code"], "OPERATOR_UNAVAILABLE", "{case}");
    let row = app
        .transaction_for_key(key)
        .await
        .unwrap_or_else(|| panic!("{case}: the transaction is recorded"));
    assert_eq!(row.status, "PENDING", "{case}: never REJECTED");
    assert!(
        app.outbox_for(&row.id).await.is_empty(),
        "{case}: no event (no transaction.rejected) for an unknown outcome"
    );
    row
}

/// How many wallet calls `calls` holds, after checking that each was a POST carrying
/// `transaction_id` (a followed 301 would have turned into a GET).
fn attempts_with_one_id(calls: &[Seen], transaction_id: &str, case: &str) -> usize {
    let calls: Vec<&Seen> = calls.iter().filter(|s| is_wallet_call(s)).collect();
    assert!(!calls.is_empty(), "{case}: the operator was called");
    for call in &calls {
        assert_eq!(call.method, "POST", "{case}");
        assert_eq!(
            call.json_text("transactionId").as_deref(),
            Some(transaction_id),
            "{case}: every attempt carries the same transaction id"
        );
    }
    calls.len()
}

/// Every wallet call the operator saw so far carried `transaction_id`; how many there were.
fn attempts_all_for(operator: &Hostile, transaction_id: &str, case: &str) -> usize {
    attempts_with_one_id(&operator.seen(), transaction_id, case)
}

/// An unknown outcome was asked again, with the same transaction id, within the deadline.
fn assert_retried_with_one_id(calls: &[Seen], transaction_id: &str, case: &str) {
    let attempts = attempts_with_one_id(calls, transaction_id, case);
    assert!(
        attempts >= 2,
        "{case}: an unknown outcome is asked again within the deadline, saw {attempts} call(s)"
    );
}

/// Where the operator's requests for the next case start.
struct Since(usize);

impl Since {
    fn now(operator: &Hostile) -> Self {
        Self(operator.seen().len())
    }

    fn calls(&self, operator: &Hostile) -> Vec<Seen> {
        operator.seen().split_off(self.0)
    }
}

async fn a_redirect_is_never_followed_and_leaves_the_debit_pending(backend: Backend) {
    const TARGET: &str = "/elsewhere/v2/players/player-001/withdraw";
    let redirect_status = Arc::new(Mutex::new(301));
    let base_url = Arc::new(OnceLock::<String>::new());
    let (status, base) = (redirect_status.clone(), base_url.clone());
    let operator = Hostile::start(move |seen, _| {
        if seen.path == TARGET {
            return Reply::wallet_success(seen);
        }
        let location = format!("{}{TARGET}", base.get().unwrap());
        Reply::json(*status.lock().unwrap(), json!({"status": "SUCCESS"}))
            .header("Location", location)
    });
    base_url.set(operator.base_url.clone()).unwrap();
    let app = hub_against(backend, &operator).await;

    for code in [301, 307] {
        *redirect_status.lock().unwrap() = code;
        let case = format!("a {code} redirect");
        let since = Since::now(&operator);

        let (key, response) = debit(&app).await;

        let row = assert_left_pending(&app, &key, &response, &case).await;
        assert_retried_with_one_id(&since.calls(&operator), &row.id, &case);
        assert!(
            operator.seen_on(TARGET).is_empty(),
            "{case}: the Location was never requested"
        );
    }
}

async fn gateway_pages_on_401_403_and_404_leave_the_debit_pending_and_never_rejected(
    backend: Backend,
) {
    let (operator, current) = answering_whatever_is_set();
    let app = hub_against(backend, &operator).await;

    for code in [401, 403, 404] {
        let page = format!("<html><body><h1>{code}</h1>nginx gateway</body></html>");
        *current.lock().unwrap() = Reply::new(code, page).header("Content-Type", "text/html");
        let case = format!("a {code} gateway page");
        let since = Since::now(&operator);

        let (key, response) = debit(&app).await;

        let row = assert_left_pending(&app, &key, &response, &case).await;
        assert_retried_with_one_id(&since.calls(&operator), &row.id, &case);
    }
}

/// An operator behind an idempotency layer: the first attempt for a transaction id charges
/// and answers too late; while it "runs", later attempts get `409 request in progress`.
/// Once recovered, it answers SUCCESS idempotently, charging only what it had not charged.
struct IdempotencyLayer {
    charges: Mutex<HashMap<String, u32>>,
    recovered: AtomicBool,
}

impl IdempotencyLayer {
    fn answer(&self, seen: &Seen, earlier: &[Seen]) -> Reply {
        let Some(id) = seen.json_text("transactionId") else {
            return Reply::new(400, "no transactionId");
        };
        let mut charges = self.charges.lock().unwrap();
        let charged = charges.entry(id.clone()).or_default();
        if self.recovered.load(Ordering::SeqCst) {
            if *charged == 0 {
                *charged += 1;
            }
            return Reply::wallet_success(seen);
        }
        let first = !earlier
            .iter()
            .any(|e| e.json_text("transactionId").as_deref() == Some(id.as_str()));
        if first {
            *charged += 1;
            Reply::wallet_success(seen).after(Duration::from_secs(2))
        } else {
            Reply::new(409, "request in progress").header("Content-Type", "text/plain")
        }
    }

    fn charges_for(&self, transaction_id: &str) -> u32 {
        let charges = self.charges.lock().unwrap();
        charges.get(transaction_id).copied().unwrap_or(0)
    }
}

async fn a_charge_that_timed_out_then_409_in_progress_is_resumed_by_the_retry_and_charged_once(
    backend: Backend,
) {
    let layer = Arc::new(IdempotencyLayer {
        charges: Mutex::new(HashMap::new()),
        recovered: AtomicBool::new(false),
    });
    let script = layer.clone();
    let operator = Hostile::start(move |seen, earlier| script.answer(seen, earlier));
    let app = hub_against(backend, &operator).await;
    let (key, body) = (new_key(), wallet_body("player-001", 1000, "USD"));

    let first = answer(app.debit(&key, &body).await).await;

    let pending = assert_left_pending(&app, &key, &first, "409 in progress").await;
    let calls = operator.seen();
    assert_retried_with_one_id(&calls, &pending.id, "409 in progress");
    assert_eq!(
        layer.charges_for(&pending.id),
        1,
        "the first attempt charged"
    );

    layer.recovered.store(true, Ordering::SeqCst);
    let retry = answer(app.debit(&key, &body).await).await;

    assert_eq!(retry.status, 201, "{}", retry.text);
    assert_eq!(retry.json["transactionId"], pending.id.as_str());
    assert_eq!(retry.json["balanceCents"], 9000);
    assert!(
        operator.seen().len() > calls.len(),
        "the retry asked the operator again"
    );
    attempts_all_for(&operator, &pending.id, "the resumed debit");
    assert_eq!(layer.charges_for(&pending.id), 1, "charged exactly once");
    let completed = app.transaction_for_key(&key).await.unwrap();
    assert_eq!(completed.status, "COMPLETED");
    let event = eventually(
        "the settled debit's event",
        Duration::from_secs(5),
        || async { app.outbox_for(&pending.id).await.into_iter().next() },
    )
    .await;
    let payload: Value = serde_json::from_str(&event.payload).unwrap();
    assert_eq!(payload["eventType"], "transaction.completed");
    assert_eq!(app.outbox_for(&pending.id).await.len(), 1, "one event");
}

async fn a_200_with_an_unreadable_body_leaves_the_debit_pending(backend: Backend) {
    let (operator, current) = answering_whatever_is_set();
    let app = hub_against(backend, &operator).await;
    let unreadable = [
        ("an HTML page", "<html>ok</html>", "text/html"),
        (
            "truncated JSON",
            r#"{"status":"SUCCESS","transactionId":"tx-1","bala"#,
            "application/json",
        ),
    ];

    for (case, body, content_type) in unreadable {
        *current.lock().unwrap() = Reply::new(200, body).header("Content-Type", content_type);
        let since = Since::now(&operator);

        let (key, response) = debit(&app).await;

        let row = assert_left_pending(&app, &key, &response, case).await;
        assert_retried_with_one_id(&since.calls(&operator), &row.id, case);
    }
}

async fn an_unknown_wallet_status_leaves_the_debit_pending(backend: Backend) {
    let (operator, current) = answering_whatever_is_set();
    let app = hub_against(backend, &operator).await;

    for status in ["MAYBE", "PENDING"] {
        *current.lock().unwrap() = Reply::json(
            200,
            json!({"status": status, "balance": 90.00, "currency": "USD"}),
        );
        let case = format!("status {status}");
        let since = Since::now(&operator);

        let (key, response) = debit(&app).await;

        let row = assert_left_pending(&app, &key, &response, &case).await;
        assert_retried_with_one_id(&since.calls(&operator), &row.id, &case);
    }
}

async fn a_genuine_decline_on_a_422_still_rejects_the_debit(backend: Backend) {
    let operator = Hostile::start(|seen, _| {
        Reply::json(
            422,
            json!({
                "status": "INSUFFICIENT_FUNDS", "transactionId": seen.json_text("transactionId"),
                "message": "balance too low",
            }),
        )
    });
    let app = hub_against(backend, &operator).await;

    let (key, response) = debit(&app).await;

    assert_eq!(response.status, 422, "{}", response.text);
    assert_eq!(response.json["status"], "REJECTED");
    assert_eq!(response.json["reason"], "INSUFFICIENT_FUNDS");
    let row = app.transaction_for_key(&key).await.expect("recorded");
    assert_eq!(row.status, "REJECTED");
    assert_eq!(
        attempts_all_for(&operator, &row.id, "a decline"),
        1,
        "a decline decides at once"
    );
    let events = app.outbox_for(&row.id).await;
    assert_eq!(events.len(), 1, "one event");
    let payload: Value = serde_json::from_str(&events[0].payload).unwrap();
    assert_eq!(payload["eventType"], "transaction.rejected");
}

async fn unknown_answers_count_as_failures_and_open_the_circuit(backend: Backend) {
    let operator = Hostile::start(|_, _| Reply::new(200, "<html>ok</html>"));
    let mut options = short_retries(&operator);
    options.breaker.min_calls = 3;
    options.breaker.open_for = Duration::from_secs(60);
    let app = TestApp::spawn_with(backend, options).await;
    for _ in 0..3 {
        let (key, response) = debit(&app).await;
        assert_left_pending(&app, &key, &response, "an unreadable 200").await;
    }
    let calls_before = operator.seen().len();

    let (key, refused) = debit(&app).await;

    assert_eq!(refused.status, 503, "the circuit is open: {}", refused.text);
    assert_eq!(refused.json["code"], "OPERATOR_UNAVAILABLE");
    assert_eq!(
        operator.seen().len(),
        calls_before,
        "the operator is left alone"
    );
    assert!(app.transaction_for_key(&key).await.is_none());
}

/// An operator that answers each transaction id's first call 429 with `retry_after`, and
/// later ones SUCCESS, charging once per transaction id.
fn rate_limiting_once(retry_after: &'static str) -> (Hostile, Arc<Mutex<HashMap<String, u32>>>) {
    let charges = Arc::new(Mutex::new(HashMap::<String, u32>::new()));
    let books = charges.clone();
    let operator = Hostile::start(move |seen, earlier| {
        let id = seen.json_text("transactionId").unwrap_or_default();
        let first = !earlier
            .iter()
            .any(|e| e.json_text("transactionId").as_deref() == Some(id.as_str()));
        if first {
            return Reply::new(429, "slow down").header("Retry-After", retry_after);
        }
        let mut charges = books.lock().unwrap();
        let charged = charges.entry(id).or_default();
        if *charged == 0 {
            *charged += 1;
        }
        Reply::wallet_success(seen)
    });
    (operator, charges)
}

fn retry_after_seconds(response: &Answer) -> Option<u64> {
    response.headers.get("retry-after").map(|value| {
        value
            .to_str()
            .ok()
            .and_then(|v| v.parse().ok())
            .unwrap_or_else(|| panic!("Retry-After is delta-seconds: {value:?}"))
    })
}

async fn a_negative_or_garbage_retry_after_is_ignored_and_the_call_retried(backend: Backend) {
    for retry_after in ["-5", "soon"] {
        let case = format!("Retry-After {retry_after:?}");
        let (operator, charges) = rate_limiting_once(retry_after);
        let app = hub_against(backend, &operator).await;

        let started = Instant::now();
        let (key, response) = debit(&app).await;
        let took = started.elapsed();

        assert_eq!(response.status, 201, "{case}: {}", response.text);
        assert!(
            took < Duration::from_secs(5),
            "{case}: answered in {took:?}"
        );
        let row = app.transaction_for_key(&key).await.unwrap();
        assert_eq!(
            attempts_all_for(&operator, &row.id, &case),
            2,
            "{case}: a 429 then one retry"
        );
        assert_eq!(charges.lock().unwrap().get(&row.id), Some(&1), "{case}");
        let (_, later) = debit(&app).await;
        assert_eq!(
            later.status, 201,
            "{case}: the hub is not held back: {}",
            later.text
        );
    }
}

async fn a_huge_or_far_future_retry_after_is_clamped_and_given_up_on_at_once(backend: Backend) {
    for retry_after in ["99999999999999999999", "Fri, 31 Dec 9999 23:59:59 GMT"] {
        let case = format!("Retry-After {retry_after:?}");
        // A hub of its own per case: the clamped pause holds its later calls back.
        let (operator, charges) = rate_limiting_once(retry_after);
        let app = hub_against(backend, &operator).await;

        let started = Instant::now();
        let (key, response) = debit(&app).await;
        let took = started.elapsed();

        let row = assert_left_pending(&app, &key, &response, &case).await;
        assert!(
            took < Duration::from_secs(5),
            "{case}: answered in {took:?}"
        );
        let passed_on = retry_after_seconds(&response)
            .unwrap_or_else(|| panic!("{case}: the 502 passes the wait on"));
        assert!(
            (1..=300).contains(&passed_on),
            "{case}: clamped to five minutes, got {passed_on}"
        );
        assert_eq!(
            attempts_all_for(&operator, &row.id, &case),
            1,
            "{case}: no retry into a wait beyond the deadline"
        );
        assert!(
            charges.lock().unwrap().is_empty(),
            "{case}: nothing charged"
        );

        // Still answering, holding calls back for no more than the clamped wait.
        let calls_before = operator.seen().len();
        let (_, later) = debit(&app).await;
        assert_eq!(later.status, 503, "{case}: {}", later.text);
        let held_for = retry_after_seconds(&later)
            .unwrap_or_else(|| panic!("{case}: the refusal says how long"));
        assert!(
            (1..=300).contains(&held_for),
            "{case}: held back at most five minutes, got {held_for}"
        );
        assert_eq!(
            operator.seen().len(),
            calls_before,
            "{case}: pause honoured"
        );
        let health = app
            .client
            .get(format!("{}/health", app.address))
            .send()
            .await
            .expect("the hub answers");
        assert!(health.status().is_success(), "{case}: the hub is alive");
    }
}
