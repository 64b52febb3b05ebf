//! The mock operator behaves like the operator the hub's tests assume it is.

use std::net::TcpListener;

use mock_operator::{MockOperator, MockOperatorConfig};
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
