//! The mock operator behaves like the operator the hub's tests assume it is.

use std::net::TcpListener;
use std::time::Duration;

use mock_operator::{FaultKind, MockOperator, MockOperatorConfig};
use serde_json::{json, Value};

fn start(requests_per_minute: u32) -> MockOperator {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    MockOperator::start(
        listener,
        MockOperatorConfig {
            requests_per_minute,
            workers: 1,
        },
    )
    .unwrap()
}

async fn post(
    operator: &MockOperator,
    path: &str,
    body: &str,
) -> (u16, reqwest::header::HeaderMap, Value) {
    let response = reqwest::Client::new()
        .post(format!("{}{path}", operator.base_url()))
        .header("Content-Type", "application/json")
        .body(body.to_owned())
        .send()
        .await
        .unwrap();
    let status = response.status().as_u16();
    let headers = response.headers().clone();
    (
        status,
        headers,
        response.json().await.unwrap_or(Value::Null),
    )
}

async fn withdraw(operator: &MockOperator, player: &str, amount: &str, id: &str) -> (u16, Value) {
    let body = format!(
        r#"{{"amount":{amount},"currency":"USD","transactionId":"{id}","description":"t"}}"#
    );
    let (status, _, json) = post(operator, &format!("/v2/players/{player}/withdraw"), &body).await;
    (status, json)
}

#[tokio::test]
async fn withdrawals_are_exact_and_idempotent_on_the_transaction_id() {
    let operator = start(0);

    let (status, first) = withdraw(&operator, "player-001", "10.05", "t-1").await;
    let (_, again) = withdraw(&operator, "player-001", "10.05", "t-1").await;
    let (conflict, _) = withdraw(&operator, "player-001", "11.00", "t-1").await;

    assert_eq!(status, 200);
    assert_eq!(first["status"], "SUCCESS");
    assert_eq!(again, first, "a retry gets the first answer");
    assert_eq!(conflict, 409, "the same id for another amount is refused");
    assert_eq!(operator.balance("player-001"), Some(10_000 - 1005));
    assert_eq!(operator.charges_for("t-1"), 1);
}

#[tokio::test]
async fn listed_amounts_are_written_as_exact_decimals() {
    let operator = start(0);
    withdraw(&operator, "player-005", "1.50", "t").await;
    let listing = reqwest::get(format!("{}/v2/transactions", operator.base_url()))
        .await
        .unwrap();
    assert!(listing.text().await.unwrap().contains(r#""amount":1.50,"#));
}

#[tokio::test]
async fn balances_are_written_as_exact_decimals() {
    let operator = start(0);
    let response = reqwest::get(format!(
        "{}/v2/players/player-004/balance",
        operator.base_url()
    ))
    .await
    .unwrap();
    assert_eq!(
        response.text().await.unwrap(),
        r#"{"playerId":"player-004","balance":1.00,"currency":"USD"}"#
    );
}

#[tokio::test]
async fn refusals_carry_the_wallet_status() {
    let operator = start(0);
    assert_eq!(
        withdraw(&operator, "player-004", "5.00", "a").await.1["status"],
        "INSUFFICIENT_FUNDS"
    );
    assert_eq!(
        withdraw(&operator, "nobody", "5.00", "b").await.1["status"],
        "PLAYER_NOT_FOUND"
    );
    assert_eq!(
        withdraw(&operator, "player-002", "5.00", "c").await.1["status"],
        "INVALID_CURRENCY"
    );
    assert_eq!(withdraw(&operator, "player-001", "0.001", "d").await.0, 400);
    assert_eq!(operator.total_charges(), 0);
}

#[tokio::test]
async fn simulated_errors_fail_the_next_calls_only() {
    let operator = start(0);
    let (status, _, _) = post(
        &operator,
        "/v2/players/simulate/error",
        r#"{"errorType":"500","count":2}"#,
    )
    .await;
    assert_eq!(status, 200);

    let statuses = [
        withdraw(&operator, "player-001", "1", "x").await.0,
        withdraw(&operator, "player-001", "1", "x").await.0,
        withdraw(&operator, "player-001", "1", "x").await.0,
    ];

    assert_eq!(statuses, [500, 500, 200]);
    assert_eq!(operator.charges_for("x"), 1);
    let (unknown, _, _) = post(
        &operator,
        "/v2/players/simulate/error",
        r#"{"errorType":"404"}"#,
    )
    .await;
    assert_eq!(unknown, 400);
}

#[tokio::test]
async fn the_rate_limit_answers_429_with_retry_after() {
    let operator = start(2);
    assert_eq!(withdraw(&operator, "player-001", "1", "r1").await.0, 200);
    assert_eq!(withdraw(&operator, "player-001", "1", "r2").await.0, 200);

    let body = r#"{"amount":1,"currency":"USD","transactionId":"r3"}"#;
    let (status, headers, _) = post(&operator, "/v2/players/player-001/withdraw", body).await;

    assert_eq!(status, 429);
    let wait: u64 = headers["retry-after"].to_str().unwrap().parse().unwrap();
    assert!((1..=60).contains(&wait), "{wait}");
    assert_eq!(operator.charges_for("r3"), 0);
}

#[tokio::test]
async fn transactions_are_listed_in_id_order_page_by_page() {
    let operator = start(0);
    for id in ["c", "a", "b"] {
        withdraw(&operator, "player-005", "1.50", id).await;
    }
    let page = |cursor: &str| {
        let url = format!("{}/v2/transactions?limit=2{cursor}", operator.base_url());
        async move {
            reqwest::get(url)
                .await
                .unwrap()
                .json::<Value>()
                .await
                .unwrap()
        }
    };

    let first = page("").await;
    let second = page("&cursor=b").await;

    let ids = |page: &Value| {
        page["data"]
            .as_array()
            .unwrap()
            .iter()
            .map(|t| t["transactionId"].clone())
            .collect::<Vec<_>>()
    };
    assert_eq!(ids(&first), [json!("a"), json!("b")]);
    assert_eq!(first["nextCursor"], "b");
    assert_eq!(ids(&second), [json!("c")]);
    assert_eq!(second["nextCursor"], Value::Null);
    assert_eq!(first["data"][0]["type"], "WITHDRAW");
}

// Rollbacks (DESIGN §8, operator side).

/// POSTs `body` and returns the status and the body's exact text, for byte-for-byte checks.
async fn post_text(operator: &MockOperator, path: &str, body: &str) -> (u16, String) {
    let response = reqwest::Client::new()
        .post(format!("{}{path}", operator.base_url()))
        .header("Content-Type", "application/json")
        .body(body.to_owned())
        .send()
        .await
        .unwrap();
    let status = response.status().as_u16();
    (status, response.text().await.unwrap())
}

fn rollback_body(id: &str, original: &str, amount: &str, currency: &str) -> String {
    format!(
        r#"{{"transactionId":"{id}","originalTransactionId":"{original}","amount":{amount},"currency":"{currency}","description":"cancel"}}"#
    )
}

/// A USD rollback `id` of `original` for `player`: the status and the exact body text.
async fn rollback(
    operator: &MockOperator,
    player: &str,
    original: &str,
    amount: &str,
    id: &str,
) -> (u16, String) {
    let body = rollback_body(id, original, amount, "USD");
    post_text(operator, &format!("/v2/players/{player}/rollback"), &body).await
}

async fn deposit(operator: &MockOperator, player: &str, amount: &str, id: &str) -> (u16, Value) {
    let body = format!(r#"{{"amount":{amount},"currency":"USD","transactionId":"{id}"}}"#);
    let (status, _, json) = post(operator, &format!("/v2/players/{player}/deposit"), &body).await;
    (status, json)
}

async fn listing(operator: &MockOperator) -> String {
    let url = format!("{}/v2/transactions", operator.base_url());
    reqwest::get(url).await.unwrap().text().await.unwrap()
}

fn listed<'a>(page: &'a Value, id: &str) -> &'a Value {
    page["data"]
        .as_array()
        .unwrap()
        .iter()
        .find(|row| row["transactionId"] == id)
        .unwrap_or_else(|| panic!("{id} is not listed in {page}"))
}

#[tokio::test]
async fn a_rollback_refunds_exactly_what_the_withdraw_charged() {
    let operator = start(0);
    withdraw(&operator, "player-001", "10.05", "bet-1").await;

    // The rollback claims more than was charged: only the charge comes back.
    let (status, body) = rollback(&operator, "player-001", "bet-1", "20.00", "rb-1").await;

    assert_eq!(status, 200);
    assert_eq!(
        body,
        r#"{"status":"SUCCESS","transactionId":"rb-1","originalTransactionId":"bet-1","refunded":true,"balance":100.00,"currency":"USD","message":"refunded"}"#
    );
    assert_eq!(operator.balance("player-001"), Some(10_000));
    assert_eq!(operator.refunds_for("bet-1"), 1);
    assert_eq!(operator.charges_for("bet-1"), 1, "a refund is not a charge");
    assert_eq!(operator.charges_for("rb-1"), 0);
    assert!(
        !operator.is_cancelled("bet-1"),
        "a charged withdraw is refunded, not cancelled"
    );
}

#[tokio::test]
async fn a_retried_rollback_answers_the_same_bytes_and_refunds_once() {
    let operator = start(0);
    withdraw(&operator, "player-001", "10.05", "bet-1").await;

    let first = rollback(&operator, "player-001", "bet-1", "10.05", "rb-1").await;
    let again = rollback(&operator, "player-001", "bet-1", "10.05", "rb-1").await;
    let (other_amount, conflict) = rollback(&operator, "player-001", "bet-1", "1", "rb-1").await;
    let (other_original, _) = rollback(&operator, "player-001", "bet-2", "10.05", "rb-1").await;
    let (other_player, _) = rollback(&operator, "player-005", "bet-1", "10.05", "rb-1").await;
    let (as_withdraw, _) = withdraw(&operator, "player-001", "10.05", "rb-1").await;

    assert_eq!(first.0, 200);
    assert_eq!(again, first, "a retry gets the first answer, byte for byte");
    assert_eq!([other_amount, other_original, other_player], [409; 3]);
    let conflict: Value = serde_json::from_str(&conflict).unwrap();
    assert_eq!(conflict["status"], "FAILED");
    assert_eq!(as_withdraw, 409, "a rollback's id is not a withdraw's");
    assert_eq!(operator.refunds_for("bet-1"), 1);
    assert_eq!(operator.balance("player-001"), Some(10_000));
    assert!(
        !operator.is_cancelled("bet-2"),
        "a refused reuse cancels nothing"
    );
}

#[tokio::test]
async fn a_second_rollback_of_the_same_withdraw_refunds_nothing() {
    let operator = start(0);
    withdraw(&operator, "player-001", "10.05", "bet-1").await;
    rollback(&operator, "player-001", "bet-1", "10.05", "rb-1").await;

    let (status, body) = rollback(&operator, "player-001", "bet-1", "10.05", "rb-2").await;

    assert_eq!(status, 200);
    let body: Value = serde_json::from_str(&body).unwrap();
    assert_eq!(body["status"], "SUCCESS");
    assert_eq!(body["refunded"], false);
    assert_eq!(body["transactionId"], "rb-2");
    assert_eq!(operator.refunds_for("bet-1"), 1);
    assert_eq!(operator.balance("player-001"), Some(10_000));
}

#[tokio::test]
async fn a_withdraw_arriving_after_its_rollback_is_cancelled_and_moves_nothing() {
    let operator = start(0);

    let (status, body) = rollback(&operator, "player-001", "late-bet", "10.05", "rb-1").await;

    assert_eq!(status, 200);
    assert_eq!(
        body,
        r#"{"status":"SUCCESS","transactionId":"rb-1","originalTransactionId":"late-bet","refunded":false,"balance":100.00,"currency":"USD","message":"original transaction unknown; it is cancelled"}"#
    );
    assert!(operator.is_cancelled("late-bet"));

    let path = "/v2/players/player-001/withdraw";
    let body = r#"{"amount":10.05,"currency":"USD","transactionId":"late-bet"}"#;
    let late = post_text(&operator, path, body).await;
    let retried = post_text(&operator, path, body).await;

    assert_eq!(late.0, 409);
    let answer: Value = serde_json::from_str(&late.1).unwrap();
    assert_eq!(answer["status"], "CANCELLED");
    assert_eq!(answer["transactionId"], "late-bet");
    assert!(answer["message"].is_string());
    assert_eq!(retried, late, "the retry replays the refusal");
    assert_eq!(operator.charges_for("late-bet"), 0);
    assert_eq!(operator.refunds_for("late-bet"), 0);
    assert_eq!(operator.balance("player-001"), Some(10_000));

    let page: Value = serde_json::from_str(&listing(&operator).await).unwrap();
    let row = listed(&page, "late-bet");
    assert_eq!(row["type"], "WITHDRAW");
    assert_eq!(row["status"], "CANCELLED");
}

#[tokio::test]
async fn a_rollback_of_a_refused_withdraw_refunds_nothing_and_cancels_it() {
    let operator = start(0);
    let (_, refused) = withdraw(&operator, "player-004", "5.00", "too-big").await;
    assert_eq!(refused["status"], "INSUFFICIENT_FUNDS");

    let (status, body) = rollback(&operator, "player-004", "too-big", "5.00", "rb-1").await;

    assert_eq!(status, 200);
    let body: Value = serde_json::from_str(&body).unwrap();
    assert_eq!(body["refunded"], false);
    assert_eq!(operator.balance("player-004"), Some(100));
    assert_eq!(operator.refunds_for("too-big"), 0);
    assert!(operator.is_cancelled("too-big"));
    // The withdraw's own id still answers what it answered first.
    assert_eq!(
        withdraw(&operator, "player-004", "5.00", "too-big").await.1,
        refused
    );
}

#[tokio::test]
async fn rollbacks_of_a_deposit_or_of_another_players_withdraw_are_refused() {
    let operator = start(0);
    deposit(&operator, "player-001", "5.00", "win-1").await;
    withdraw(&operator, "player-005", "5.00", "bet-5").await;
    let (balance_1, balance_5) = (
        operator.balance("player-001"),
        operator.balance("player-005"),
    );

    let (of_deposit, body) = rollback(&operator, "player-001", "win-1", "5.00", "rb-1").await;
    let (of_other, _) = rollback(&operator, "player-001", "bet-5", "5.00", "rb-2").await;
    let wrong_currency = rollback_body("rb-3", "bet-5", "5.00", "EUR");
    let (of_other_currency, _) = post_text(
        &operator,
        "/v2/players/player-005/rollback",
        &wrong_currency,
    )
    .await;

    assert_eq!([of_deposit, of_other, of_other_currency], [422; 3]);
    let body: Value = serde_json::from_str(&body).unwrap();
    assert_eq!(body["status"], "FAILED");
    assert!(body["message"].is_string());
    assert_eq!(operator.balance("player-001"), balance_1);
    assert_eq!(operator.balance("player-005"), balance_5);
    assert_eq!(
        operator.refunds_for("win-1") + operator.refunds_for("bet-5"),
        0
    );
    assert!(!operator.is_cancelled("win-1") && !operator.is_cancelled("bet-5"));

    // A refusal is not recorded: its id is still free for the rollback that was meant.
    let (meant, _) = rollback(&operator, "player-005", "bet-5", "5.00", "rb-2").await;
    assert_eq!(meant, 200);
    assert_eq!(operator.refunds_for("bet-5"), 1);
}

#[tokio::test]
async fn a_rollback_for_an_unknown_player_still_settles() {
    let operator = start(0);

    let (status, body) = rollback(&operator, "nobody", "bet-x", "1.00", "rb-1").await;

    assert_eq!(status, 200);
    assert_eq!(
        body,
        r#"{"status":"SUCCESS","transactionId":"rb-1","originalTransactionId":"bet-x","refunded":false,"currency":"USD","message":"original transaction unknown; it is cancelled"}"#
    );
    assert!(operator.is_cancelled("bet-x"));
}

#[tokio::test]
async fn malformed_rollbacks_are_refused_like_withdrawals() {
    let operator = start(0);
    let path = "/v2/players/player-001/rollback";
    let cases = [
        "not json".to_owned(),
        r#"{"transactionId":"rb-1","amount":1,"currency":"USD"}"#.to_owned(),
        rollback_body("rb-1", "bet-1", "0.001", "USD"),
        rollback_body("rb-1", "bet-1", "\"1.00\"", "USD"),
        rollback_body("rb-1", "bet-1", "1", "XXX"),
    ];
    for body in cases {
        let (status, text) = post_text(&operator, path, &body).await;
        assert_eq!(status, 400, "{body}");
        let answer: Value = serde_json::from_str(&text).unwrap();
        assert!(answer["status"].is_string(), "{text}");
    }
    assert_eq!(
        rollback(&operator, "player-001", "rb-1", "1", "rb-1")
            .await
            .0,
        422,
        "a rollback cannot cancel itself"
    );
    assert!(!operator.is_cancelled("bet-1"));
}

#[tokio::test]
async fn rollbacks_are_listed_with_their_original_and_what_they_refunded() {
    let operator = start(0);
    withdraw(&operator, "player-005", "1.50", "bet-1").await;
    rollback(&operator, "player-005", "bet-1", "1.50", "rb-1").await;
    rollback(&operator, "player-005", "bet-1", "1.50", "rb-2").await;

    let text = listing(&operator).await;
    let page: Value = serde_json::from_str(&text).unwrap();

    let ids: Vec<_> = page["data"]
        .as_array()
        .unwrap()
        .iter()
        .map(|row| row["transactionId"].clone())
        .collect();
    assert_eq!(ids, [json!("bet-1"), json!("rb-1"), json!("rb-2")]);
    let refund = listed(&page, "rb-1");
    assert_eq!(refund["type"], "ROLLBACK");
    assert_eq!(refund["status"], "SUCCESS");
    assert_eq!(refund["playerId"], "player-005");
    assert_eq!(refund["originalTransactionId"], "bet-1");
    assert_eq!(refund["refunded"], true);
    assert_eq!(listed(&page, "rb-2")["refunded"], false);
    let withdrawal = listed(&page, "bet-1").as_object().unwrap();
    for key in ["originalTransactionId", "refunded", "refundedAmount"] {
        assert!(!withdrawal.contains_key(key), "{key} on a withdraw row");
    }
    // Amounts are exact decimal text, never floats.
    assert!(
        text.contains(r#""refunded":true,"refundedAmount":1.50}"#),
        "{text}"
    );
    assert!(
        text.contains(r#""refunded":false,"refundedAmount":0.00}"#),
        "{text}"
    );
}

#[tokio::test]
async fn simulated_faults_hit_the_rollback_route() {
    let operator = start(0);
    withdraw(&operator, "player-001", "10.05", "bet-1").await;
    post(
        &operator,
        "/v2/players/simulate/error",
        r#"{"errorType":"500","count":1}"#,
    )
    .await;

    let (failed, _) = rollback(&operator, "player-001", "bet-1", "10.05", "rb-1").await;
    assert_eq!(failed, 500);
    assert_eq!(operator.refunds_for("bet-1"), 0, "a 500 moves nothing");
    let (retried, _) = rollback(&operator, "player-001", "bet-1", "10.05", "rb-1").await;
    assert_eq!(retried, 200);
    assert_eq!(operator.refunds_for("bet-1"), 1);

    let logged: Vec<_> = operator
        .calls()
        .into_iter()
        .filter(|call| call.path == "/v2/players/player-001/rollback")
        .map(|call| (call.transaction_id, call.status))
        .collect();
    assert_eq!(
        logged,
        [
            (Some("rb-1".to_owned()), 500),
            (Some("rb-1".to_owned()), 200)
        ]
    );
}

#[tokio::test]
async fn a_timed_out_rollback_is_applied_and_answered_late() {
    let operator = start(0);
    withdraw(&operator, "player-001", "10.05", "bet-1").await;
    operator.inject_fault(
        FaultKind::Timeout {
            delay: Duration::from_millis(1_500),
        },
        1,
    );

    let impatient = reqwest::Client::builder()
        .timeout(Duration::from_millis(300))
        .build()
        .unwrap()
        .post(format!(
            "{}/v2/players/player-001/rollback",
            operator.base_url()
        ))
        .header("Content-Type", "application/json")
        .body(rollback_body("rb-1", "bet-1", "10.05", "USD"))
        .send()
        .await;

    assert!(impatient.is_err(), "the answer comes too late");
    assert_eq!(operator.refunds_for("bet-1"), 1, "but the refund happened");
    assert_eq!(operator.balance("player-001"), Some(10_000));
    let (status, body) = rollback(&operator, "player-001", "bet-1", "10.05", "rb-1").await;
    assert_eq!(status, 200);
    assert!(
        body.contains(r#""refunded":true"#),
        "the retry learns the outcome"
    );
}

#[tokio::test]
async fn the_rate_limit_covers_rollbacks() {
    let operator = start(1);
    assert_eq!(withdraw(&operator, "player-001", "1", "bet-1").await.0, 200);

    let (status, _) = rollback(&operator, "player-001", "bet-1", "1", "rb-1").await;

    assert_eq!(status, 429);
    assert_eq!(operator.refunds_for("bet-1"), 0);
}

#[tokio::test]
async fn the_refund_drift_refunds_a_completed_withdraw_behind_the_callers_back() {
    let operator = start(0);
    withdraw(&operator, "player-001", "10.05", "bet-1").await;
    let drift = r#"{"kind":"refund","transactionId":"op-rb","originalTransactionId":"bet-1"}"#;

    let (status, _, _) = post(&operator, "/_mock/drift", drift).await;

    assert_eq!(status, 200);
    assert_eq!(operator.balance("player-001"), Some(10_000));
    assert_eq!(operator.refunds_for("bet-1"), 1);
    let page: Value = serde_json::from_str(&listing(&operator).await).unwrap();
    let row = listed(&page, "op-rb");
    assert_eq!(row["type"], "ROLLBACK");
    assert_eq!(row["status"], "SUCCESS");
    assert_eq!(row["originalTransactionId"], "bet-1");
    assert_eq!(row["refunded"], true);

    // Never twice: neither another drift nor the hub's own rollback refunds it again.
    let again = r#"{"kind":"refund","transactionId":"op-rb-2","originalTransactionId":"bet-1"}"#;
    assert_eq!(post(&operator, "/_mock/drift", again).await.0, 404);
    let (_, body) = rollback(&operator, "player-001", "bet-1", "10.05", "hub-rb").await;
    assert!(body.contains(r#""refunded":false"#), "{body}");
    assert_eq!(operator.refunds_for("bet-1"), 1);
    assert_eq!(operator.balance("player-001"), Some(10_000));

    let missing = r#"{"kind":"refund","transactionId":"op-rb-3"}"#;
    assert_eq!(post(&operator, "/_mock/drift", missing).await.0, 400);
}
