//! The examples of docs/INTEGRATION.md (signing, rollback, balance), run against a real hub as
//! printed.

use serde_json::{json, Value};

use crate::helpers::{answer, new_key, signing_example, Backend, TestApp, SECRET};

const SNIPPETS: [&str; 12] = [
    "sign.sh",
    "sign.js",
    "sign.py",
    "sign.rs",
    "rollback.sh",
    "rollback.js",
    "rollback.py",
    "rollback.rs",
    "balance.sh",
    "balance.js",
    "balance.py",
    "balance.rs",
];

/// The Rust rollback example, as printed: it calls `signed_post` of the signing example.
mod rollback_example {
    use crate::helpers::signing_example::signed_post;
    include!("../../docs/snippets/rollback.rs");
}

/// The Rust balance example, as printed.
mod balance_example {
    include!("../../docs/snippets/balance.rs");
}

fn snippet(name: &str) -> String {
    std::fs::read_to_string(format!(
        "{}/docs/snippets/{name}",
        env!("CARGO_MANIFEST_DIR")
    ))
    .unwrap()
}

#[test]
fn the_guide_prints_every_example_verbatim() {
    let guide = std::fs::read_to_string(format!(
        "{}/docs/INTEGRATION.md",
        env!("CARGO_MANIFEST_DIR")
    ))
    .unwrap();
    for name in SNIPPETS {
        assert!(
            guide.contains(&snippet(name)),
            "docs/INTEGRATION.md no longer prints docs/snippets/{name}"
        );
    }
}

#[tokio::test]
async fn the_rust_example_makes_a_signed_debit() {
    let app = TestApp::spawn(Backend::Sqlite).await;
    let body =
        r#"{"playerId":"player-001","amountCents":100,"currency":"USD","refId":"rust-example"}"#;

    let url = format!("{}/wallet/debit", app.address);
    let response =
        signing_example::signed_post(&app.client, &url, SECRET.as_bytes(), &new_key(), body)
            .await
            .expect("the hub answers");

    assert_eq!(response.status(), 201);
}

/// A signed debit or credit of 100 USD cents for player-001 with `ref_id`; its answer.
async fn settled(app: &TestApp, path: &str, ref_id: &str) -> Value {
    let body =
        json!({"playerId": "player-001", "amountCents": 100, "currency": "USD", "refId": ref_id})
            .to_string();
    let url = format!("{}{path}", app.address);
    let done = answer(
        signing_example::signed_post(&app.client, &url, SECRET.as_bytes(), &new_key(), &body)
            .await
            .expect("the hub answers"),
    )
    .await;
    assert_eq!(done.status, 201, "{path}: {}", done.text);
    done.json
}

#[tokio::test]
async fn the_rust_examples_roll_a_debit_back_and_read_the_balance() {
    let app = TestApp::spawn(Backend::Sqlite).await;
    let secret = SECRET.as_bytes();
    let debit = settled(&app, "/wallet/debit", "rust-bet-1").await;
    assert_eq!(debit["balanceCents"], 9900);

    let roll_back = || async {
        rollback_example::rollback(
            &app.client,
            &app.address,
            secret,
            "player-001",
            "rust-bet-1",
        )
        .await
        .expect("the hub answers")
    };
    let (status, rolled_back) = roll_back().await;
    assert_eq!(status, 201, "{rolled_back}");
    assert_eq!(rolled_back["status"], "OK");
    assert_eq!(rolled_back["refId"], "rollback-rust-bet-1");
    assert_eq!(rolled_back["originalTransactionId"], debit["transactionId"]);
    assert_eq!(rolled_back["balanceCents"], 10000);
    // Run again, it is the same rollback: the same answer, nothing refunded twice.
    let again = roll_back().await;
    assert_eq!(again, (201, rolled_back));

    let (status, balance) =
        balance_example::balance(&app.client, &app.address, secret, "player-001", "USD")
            .await
            .expect("the hub answers");
    assert_eq!(status, 200, "{balance}");
    assert_eq!(
        balance,
        json!({"playerId": "player-001", "currency": "USD", "balanceCents": 10000})
    );
    let (status, unknown) =
        balance_example::balance(&app.client, &app.address, secret, "no-such-player", "USD")
            .await
            .expect("the hub answers");
    assert_eq!(
        (status, &unknown["code"]),
        (404, &json!("PLAYER_NOT_FOUND"))
    );

    // A final refusal comes back at once, not retried.
    settled(&app, "/wallet/credit", "rust-win-1").await;
    let (status, refused) = rollback_example::rollback(
        &app.client,
        &app.address,
        secret,
        "player-001",
        "rust-win-1",
    )
    .await
    .expect("the hub answers");
    assert_eq!(
        (status, &refused["code"]),
        (422, &json!("NOT_ROLLBACKABLE"))
    );
}

/// Runs a documented script against `app`; its output lines, the last one the HTTP status.
async fn run_example(
    app: &TestApp,
    interpreter: &str,
    name: &str,
    env: &[(&str, &str)],
) -> Vec<String> {
    let path = format!("{}/docs/snippets/{name}", env!("CARGO_MANIFEST_DIR"));
    let output = tokio::process::Command::new(interpreter)
        .arg(&path)
        .env("HUB_URL", &app.address)
        .env("HUB_SECRET", SECRET)
        .envs(env.iter().copied())
        .output()
        .await
        .unwrap_or_else(|e| panic!("run {interpreter}: {e}"));
    assert!(
        output.status.success(),
        "{name}: {}",
        String::from_utf8_lossy(&output.stderr)
    );
    String::from_utf8_lossy(&output.stdout)
        .lines()
        .map(str::to_owned)
        .collect()
}

#[tokio::test]
#[cfg_attr(
    not(doc_examples),
    ignore = "set TEST_DOC_EXAMPLES=1 to run the curl, Node and Python examples (needs curl, openssl, node, python3)"
)]
async fn the_curl_node_and_python_examples_make_signed_debits() {
    let app = TestApp::spawn(Backend::Sqlite).await;
    for (interpreter, language) in [("bash", "sh"), ("node", "js"), ("python3", "py")] {
        let lines = run_example(&app, interpreter, &format!("sign.{language}"), &[]).await;
        assert_eq!(
            lines.last().map(String::as_str),
            Some("201"),
            "sign.{language} printed {lines:?}"
        );
        assert!(
            lines[0].contains(r#""status":"OK""#),
            "sign.{language} printed {lines:?}"
        );
    }
}

#[tokio::test]
#[cfg_attr(
    not(doc_examples),
    ignore = "set TEST_DOC_EXAMPLES=1 to run the curl, Node and Python examples (needs curl, openssl, node, python3)"
)]
async fn the_curl_node_and_python_examples_roll_back_and_read_balances() {
    let app = TestApp::spawn(Backend::Sqlite).await;
    for (interpreter, language) in [("bash", "sh"), ("node", "js"), ("python3", "py")] {
        let bet = format!("{language}-bet");
        let debit = settled(&app, "/wallet/debit", &bet).await;
        let name = format!("rollback.{language}");
        let env = [("ORIGINAL_REF_ID", bet.as_str())];
        let lines = run_example(&app, interpreter, &name, &env).await;
        assert_eq!(
            lines.last().map(String::as_str),
            Some("201"),
            "{name}: {lines:?}"
        );
        let rolled_back: Value = serde_json::from_str(&lines[0]).unwrap();
        assert_eq!(rolled_back["originalTransactionId"], debit["transactionId"]);
        assert_eq!(rolled_back["refId"], format!("rollback-{bet}"));
        // Run again: the same rollback, answered with the same bytes.
        let again = run_example(&app, interpreter, &name, &env).await;
        assert_eq!(again, lines, "{name} run twice");

        let name = format!("balance.{language}");
        let lines = run_example(&app, interpreter, &name, &[]).await;
        assert_eq!(
            lines.last().map(String::as_str),
            Some("200"),
            "{name}: {lines:?}"
        );
        let balance: Value = serde_json::from_str(&lines[0]).unwrap();
        assert_eq!(
            balance,
            json!({"playerId": "player-001", "currency": "USD", "balanceCents": 10000})
        );
        let lines = run_example(&app, interpreter, &name, &[("PLAYER_ID", "nobody")]).await;
        assert_eq!(
            lines.last().map(String::as_str),
            Some("404"),
            "{name}: {lines:?}"
        );
        assert!(lines[0].contains("PLAYER_NOT_FOUND"), "{name}: {lines:?}");
    }
}
