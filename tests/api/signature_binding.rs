//! Signature version 2 binds a request to its method, path and Idempotency-Key; a version 1
//! signature, which cannot, is refused when it is used again for another request.

use chrono::Utc;
use hub::signature::{sign, sign_v2, Binding};
use serde_json::{json, Value};

use crate::helpers::{
    answer, eventually, metric_value, metrics_at, new_key, on_both_backends, spawn_hub_process,
    wallet_body, Answer, Backend, TestApp, SECRET,
};

on_both_backends!(
    v2_signatures_are_accepted_on_debit_credit_rollback_and_balance,
    a_v2_signature_made_for_a_debit_is_refused_on_credit,
    a_v2_signature_is_refused_under_another_idempotency_key,
    a_v1_debit_replayed_to_credit_is_refused_and_moves_no_money,
    an_identical_v1_retry_still_gets_the_idempotent_replay,
);

/// One request, headers as given.
#[derive(Clone)]
struct Call<'a> {
    path: &'a str,
    key: Option<&'a str>,
    body: String,
    timestamp: String,
    version: Option<&'a str>,
    signature: String,
}

impl<'a> Call<'a> {
    /// Signed now with version 2 for `path` and `key`.
    fn v2(path: &'a str, key: Option<&'a str>, body: &Value) -> Self {
        let body = body.to_string();
        let timestamp = Utc::now().timestamp().to_string();
        let binding = Binding {
            method: "POST",
            path,
            idempotency_key: key.unwrap_or("").as_bytes(),
        };
        let signature = sign_v2(SECRET.as_bytes(), &binding, &timestamp, body.as_bytes());
        Self {
            path,
            key,
            body,
            timestamp,
            version: Some("2"),
            signature,
        }
    }

    /// Signed now with version 1 (body and timestamp only), no version header.
    fn v1(path: &'a str, key: Option<&'a str>, body: &Value) -> Self {
        let body = body.to_string();
        let timestamp = Utc::now().timestamp().to_string();
        let signature = sign(SECRET.as_bytes(), body.as_bytes(), &timestamp);
        Self {
            path,
            key,
            body,
            timestamp,
            version: None,
            signature,
        }
    }

    /// The same headers and bytes, sent to `path` under `key`: what a replay looks like.
    fn replayed_to(&self, path: &'a str, key: Option<&'a str>) -> Self {
        Self {
            path,
            key,
            body: self.body.clone(),
            timestamp: self.timestamp.clone(),
            version: self.version,
            signature: self.signature.clone(),
        }
    }

    async fn send(&self, client: &reqwest::Client, address: &str) -> Answer {
        let mut request = client
            .post(format!("{address}{}", self.path))
            .header("Content-Type", "application/json")
            .header("X-Timestamp", &self.timestamp)
            .header("X-Signature", &self.signature)
            .body(self.body.clone());
        if let Some(key) = self.key {
            request = request.header("Idempotency-Key", key);
        }
        if let Some(version) = self.version {
            request = request.header("X-Signature-Version", version);
        }
        answer(request.send().await.expect("the hub answers")).await
    }
}

/// A debit of 100 USD cents for player-001 under `key`, signed by `signed`.
fn one_dollar_debit<'a>(
    signed: fn(&'a str, Option<&'a str>, &Value) -> Call<'a>,
    key: &'a str,
) -> Call<'a> {
    signed(
        "/wallet/debit",
        Some(key),
        &wallet_body("player-001", 100, "USD"),
    )
}

fn assert_refused(response: &Answer, code: &str, what: &str) {
    assert_eq!(response.status, 401, "{what}: {}", response.text);
    assert_eq!(response.json["code"], code, "{what}: {}", response.text);
    assert!(!response.text.contains(SECRET), "{what}: the secret leaks");
}

async fn v2_signatures_are_accepted_on_debit_credit_rollback_and_balance(backend: Backend) {
    let app = TestApp::spawn(backend).await;
    let bet = wallet_body("player-001", 300, "USD");
    let (debit_key, credit_key, rollback_key) = (new_key(), new_key(), new_key());

    let debit = Call::v2("/wallet/debit", Some(&debit_key), &bet)
        .send(&app.client, &app.address)
        .await;
    assert_eq!(debit.status, 201, "debit: {}", debit.text);
    assert_eq!(debit.json["balanceCents"], 9700);
    let win = wallet_body("player-001", 50, "USD");
    let credit = Call::v2("/wallet/credit", Some(&credit_key), &win)
        .send(&app.client, &app.address)
        .await;
    assert_eq!(credit.status, 201, "credit: {}", credit.text);
    assert_eq!(credit.json["balanceCents"], 9750);
    let cancel = json!({
        "playerId": "player-001",
        "refId": format!("rollback-{}", bet["refId"].as_str().unwrap()),
        "originalRefId": bet["refId"],
    });
    let rollback = Call::v2("/wallet/rollback", Some(&rollback_key), &cancel)
        .send(&app.client, &app.address)
        .await;
    assert_eq!(rollback.status, 201, "rollback: {}", rollback.text);
    assert_eq!(rollback.json["balanceCents"], 10050);
    let read = json!({"playerId": "player-001", "currency": "USD"});
    let balance = Call::v2("/wallet/balance", None, &read)
        .send(&app.client, &app.address)
        .await;
    assert_eq!(balance.status, 200, "balance: {}", balance.text);
    assert_eq!(balance.json["balanceCents"], 10050);
}

async fn a_v2_signature_made_for_a_debit_is_refused_on_credit(backend: Backend) {
    let app = TestApp::spawn(backend).await;
    let key = new_key();
    let debit = one_dollar_debit(Call::v2, &key);

    // Captured before it reached the hub, and sent to the credit endpoint instead.
    let replayed = debit
        .replayed_to("/wallet/credit", Some(&key))
        .send(&app.client, &app.address)
        .await;
    assert_refused(
        &replayed,
        "INVALID_SIGNATURE",
        "a debit signature on credit",
    );
    let with_query = debit
        .replayed_to("/wallet/debit?to=credit", Some(&key))
        .send(&app.client, &app.address)
        .await;
    assert_eq!(
        with_query.status, 201,
        "the query string is not signed: {}",
        with_query.text
    );
    assert_eq!(
        app.operator.total_charges(),
        1,
        "only the debit reached the operator"
    );
    assert_eq!(
        app.transaction_for_key(&key).await.unwrap().kind,
        "DEBIT",
        "the key holds the debit"
    );
}

async fn a_v2_signature_is_refused_under_another_idempotency_key(backend: Backend) {
    let app = TestApp::spawn(backend).await;
    let key = new_key();
    let debit = one_dollar_debit(Call::v2, &key);
    let first = debit.send(&app.client, &app.address).await;
    assert_eq!(first.status, 201, "{}", first.text);

    let other_key = new_key();
    for (what, key) in [("another key", Some(other_key.as_str())), ("no key", None)] {
        let replayed = debit
            .replayed_to("/wallet/debit", key)
            .send(&app.client, &app.address)
            .await;
        assert_refused(&replayed, "INVALID_SIGNATURE", what);
    }
    let again = debit.send(&app.client, &app.address).await;
    assert_eq!(
        again.status, 201,
        "the same request is a retry: {}",
        again.text
    );
    assert_eq!(
        again.headers.get("Idempotent-Replayed").unwrap(),
        "true",
        "and answered as a replay"
    );
    assert_eq!(app.operator.total_charges(), 1);
    assert!(app.transaction_for_key(&other_key).await.is_none());
}

async fn a_v1_debit_replayed_to_credit_is_refused_and_moves_no_money(backend: Backend) {
    let app = TestApp::spawn(backend).await;
    let key = new_key();
    let debit = one_dollar_debit(Call::v1, &key);
    let first = debit.send(&app.client, &app.address).await;
    assert_eq!(first.status, 201, "v1 is still accepted: {}", first.text);

    let credit_key = new_key();
    let replays = [
        (
            "to credit under a new key",
            "/wallet/credit",
            Some(credit_key.as_str()),
        ),
        (
            "to credit under the same key",
            "/wallet/credit",
            Some(key.as_str()),
        ),
        (
            "to debit under a new key",
            "/wallet/debit",
            Some(credit_key.as_str()),
        ),
    ];
    for (what, path, key) in replays {
        let replayed = debit
            .replayed_to(path, key)
            .send(&app.client, &app.address)
            .await;
        assert_refused(&replayed, "SIGNATURE_REPLAYED", what);
    }
    // Another spelling of the same signature is the same signature.
    let mut shouted = debit.replayed_to("/wallet/credit", Some(&credit_key));
    shouted.signature = shouted.signature.to_uppercase();
    let replayed = shouted.send(&app.client, &app.address).await;
    assert_refused(&replayed, "SIGNATURE_REPLAYED", "upper-case hex");

    assert_eq!(
        app.operator.total_charges(),
        1,
        "only the debit was charged"
    );
    assert!(
        app.transaction_for_key(&credit_key).await.is_none(),
        "no credit was recorded"
    );
    let balance = answer(
        app.balance(&json!({"playerId": "player-001", "currency": "USD"}))
            .await,
    )
    .await;
    assert_eq!(balance.json["balanceCents"], 9900, "{}", balance.text);
}

async fn an_identical_v1_retry_still_gets_the_idempotent_replay(backend: Backend) {
    let app = TestApp::spawn(backend).await;
    let key = new_key();
    let debit = one_dollar_debit(Call::v1, &key);
    let first = debit.send(&app.client, &app.address).await;
    assert_eq!(first.status, 201, "{}", first.text);

    let retry = debit.send(&app.client, &app.address).await;
    assert_eq!(retry.status, 201, "{}", retry.text);
    assert_eq!(retry.text, first.text, "byte-identical answer");
    assert_eq!(retry.headers.get("Idempotent-Replayed").unwrap(), "true");
    assert_eq!(app.operator.total_charges(), 1, "charged once");
    // A balance read sent twice with the same signature is the same read twice.
    let read = Call::v1(
        "/wallet/balance",
        None,
        &json!({"playerId": "player-001", "currency": "USD"}),
    );
    for _ in 0..2 {
        let balance = read.send(&app.client, &app.address).await;
        assert_eq!(balance.status, 200, "{}", balance.text);
    }
    // Balance reads no Idempotency-Key, so a client that adds a fresh one to every request
    // is still reading the same balance.
    for fresh in [new_key(), new_key()] {
        let with_a_key = Call {
            key: Some(&fresh),
            ..read.clone()
        };
        let balance = with_a_key.send(&app.client, &app.address).await;
        assert_eq!(balance.status, 200, "{}", balance.text);
    }
}

#[tokio::test]
async fn an_unknown_signature_version_is_refused_with_its_own_code() {
    let app = TestApp::spawn(Backend::Sqlite).await;
    let key = new_key();
    for version in ["3", "v2", "two"] {
        let mut call = Call::v2(
            "/wallet/debit",
            Some(&key),
            &wallet_body("player-001", 100, "USD"),
        );
        call.version = Some(version);
        let refused = call.send(&app.client, &app.address).await;
        assert_refused(&refused, "UNSUPPORTED_SIGNATURE_VERSION", version);
    }
    assert!(app.operator.calls().is_empty());
}

/// A `hub serve` with `SIGNATURE_V1=off`, read from its environment as in production.
#[tokio::test]
async fn with_signature_v1_off_v1_is_refused_and_v2_accepted() {
    let app = TestApp::spawn(Backend::Sqlite).await;
    let hub = spawn_hub_process(&app, &[("SIGNATURE_V1", "off")]);
    let body = wallet_body("player-001", 100, "USD");
    let key = new_key();

    for version in [None, Some("1")] {
        let mut call = Call::v1("/wallet/debit", Some(&key), &body);
        call.version = version;
        let refused = call.send(&app.client, &hub.address).await;
        assert_refused(&refused, "SIGNATURE_V2_REQUIRED", "v1");
        assert!(
            refused.json["message"]
                .as_str()
                .unwrap()
                .contains("X-Signature-Version: 2"),
            "the message says what to do: {}",
            refused.text
        );
    }
    let accepted = Call::v2("/wallet/debit", Some(&key), &body)
        .send(&app.client, &hub.address)
        .await;
    assert_eq!(accepted.status, 201, "{}", accepted.text);
}

/// Two `hub serve` replicas sharing the test's Redis under one prefix, on `backend`.
async fn a_v1_signature_seen_by_one_replica_is_refused_for_another_request_by_the_other(
    backend: Backend,
) {
    let app = TestApp::spawn(backend).await;
    let redis = std::env::var("TEST_REDIS_URL")
        .expect("the replica tests need TEST_REDIS_URL, e.g. redis://127.0.0.1:6379");
    let prefix = format!("hub-sig-test-{}:", uuid::Uuid::new_v4().simple());
    let env = [("REDIS_URL", redis.as_str()), ("REDIS_KEY_PREFIX", &prefix)];
    let (first, second) = (spawn_hub_process(&app, &env), spawn_hub_process(&app, &env));
    let key = new_key();
    let debit = one_dollar_debit(Call::v1, &key);

    let charged = debit.send(&app.client, &first.address).await;
    assert_eq!(charged.status, 201, "{}", charged.text);
    let credit_key = new_key();
    let replayed = debit
        .replayed_to("/wallet/credit", Some(&credit_key))
        .send(&app.client, &second.address)
        .await;
    assert_refused(&replayed, "SIGNATURE_REPLAYED", "on the other replica");
    let retried = debit.send(&app.client, &second.address).await;
    assert_eq!(
        retried.status, 201,
        "a retry may land anywhere: {}",
        retried.text
    );
    assert_eq!(retried.text, charged.text);

    assert_eq!(app.operator.total_charges(), 1);
    assert!(app.transaction_for_key(&credit_key).await.is_none());
    let refused_count = eventually(
        "the refusal to be counted",
        std::time::Duration::from_secs(5),
        || async {
            let metrics = metrics_at(&app.client, &second.address).await?;
            metric_value(
                &metrics,
                r#"hub_signature_guard_events_total{event="replay_refused"}"#,
            )
        },
    )
    .await;
    assert_eq!(refused_count, "1");
}

mod a_v1_signature_seen_by_one_replica_is_refused_for_another_request_by_the_other {
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    #[cfg_attr(not(redis_tests), ignore = "set TEST_REDIS_URL to run the Redis tests")]
    async fn sqlite() {
        super::a_v1_signature_seen_by_one_replica_is_refused_for_another_request_by_the_other(
            crate::helpers::Backend::Sqlite,
        )
        .await
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    #[cfg_attr(
        not(all(postgres_tests, redis_tests)),
        ignore = "set TEST_DATABASE_URL and TEST_REDIS_URL to run the Postgres half"
    )]
    async fn postgres() {
        super::a_v1_signature_seen_by_one_replica_is_refused_for_another_request_by_the_other(
            crate::helpers::Backend::Postgres,
        )
        .await
    }
}

/// Redis configured but not answering: the guard decides in process, counts it, and the
/// clients see the same answers.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn with_redis_unreachable_the_replay_guard_still_refuses_in_process() {
    let closed = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let url = format!("redis://{}", closed.local_addr().unwrap());
    drop(closed);
    let options = crate::helpers::Options {
        redis_url: Some(url),
        ..crate::helpers::Options::default()
    };
    let app = TestApp::spawn_with(Backend::Sqlite, options).await;
    let key = new_key();
    let debit = one_dollar_debit(Call::v1, &key);

    let charged = debit.send(&app.client, &app.address).await;
    assert_eq!(charged.status, 201, "{}", charged.text);
    let retried = debit.send(&app.client, &app.address).await;
    assert_eq!(retried.status, 201, "{}", retried.text);
    let replayed = debit
        .replayed_to("/wallet/credit", Some(&new_key()))
        .send(&app.client, &app.address)
        .await;
    assert_refused(&replayed, "SIGNATURE_REPLAYED", "with Redis down");
    assert_eq!(app.operator.total_charges(), 1);

    let metrics = app.metrics_text().await.expect("metrics");
    assert_eq!(
        metric_value(&metrics, "hub_signature_guard_redis_up").as_deref(),
        Some("0")
    );
    let fallbacks: u64 = metric_value(
        &metrics,
        r#"hub_signature_guard_events_total{event="redis_fallback"}"#,
    )
    .expect("fallbacks are counted")
    .parse()
    .unwrap();
    assert!(fallbacks >= 1, "{fallbacks}");
}

/// Sends `head` (request line and headers, CRLF-separated, no blank line) and `body` over a
/// fresh connection; the status code answered.
async fn raw(address: &str, head: &[u8], body: &[u8]) -> (u16, String) {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let host = address.trim_start_matches("http://");
    let mut stream = tokio::net::TcpStream::connect(host).await.unwrap();
    let mut request = head.to_vec();
    request.extend_from_slice(
        format!(
            "\r\nHost: {host}\r\nContent-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n",
            body.len()
        )
        .as_bytes(),
    );
    request.extend_from_slice(body);
    stream.write_all(&request).await.unwrap();
    let mut answer = Vec::new();
    stream.read_to_end(&mut answer).await.unwrap();
    let answer = String::from_utf8_lossy(&answer).into_owned();
    let status = answer
        .split(' ')
        .nth(1)
        .and_then(|s| s.parse().ok())
        .unwrap_or(0);
    (status, answer)
}

fn code_of(answer: &str) -> String {
    let body = answer.split("\r\n\r\n").nth(1).unwrap_or("");
    serde_json::from_str::<Value>(body).map_or(String::new(), |v| {
        v["code"].as_str().unwrap_or("").to_owned()
    })
}

/// Paths spelled another way, duplicated and non-UTF-8 headers: each is refused or is the
/// same request, never another request under a captured signature, and never a 500.
#[tokio::test]
async fn odd_spellings_of_paths_and_headers_never_stretch_a_signature() {
    let app = TestApp::spawn(Backend::Sqlite).await;
    let body = wallet_body("player-001", 100, "USD").to_string();
    let timestamp = Utc::now().timestamp().to_string();
    let key = new_key();
    let v1 = sign(SECRET.as_bytes(), body.as_bytes(), &timestamp);
    let v2_for = |path: &str, key: &[u8]| {
        let binding = Binding {
            method: "POST",
            path,
            idempotency_key: key,
        };
        sign_v2(SECRET.as_bytes(), &binding, &timestamp, body.as_bytes())
    };
    let head = |path: &str, extra: &str| {
        format!("POST {path} HTTP/1.1\r\nX-Timestamp: {timestamp}{extra}").into_bytes()
    };

    // The first use of the v1 signature: a debit under `key`.
    let (status, text) = raw(
        &app.address,
        &head(
            "/wallet/debit",
            &format!("\r\nIdempotency-Key: {key}\r\nX-Signature: {v1}"),
        ),
        body.as_bytes(),
    )
    .await;
    assert_eq!(status, 201, "{text}");

    // Another spelling of the path, a query string, a trailing slash: refused, 404, or the
    // idempotent replay of the same debit.
    let other_key = new_key();
    for (path, key) in [
        ("/wallet/%64ebit", key.as_str()),
        ("/wallet/%63redit", other_key.as_str()),
        ("/wallet/credit/", other_key.as_str()),
        ("/wallet//credit", other_key.as_str()),
        ("/wallet/credit?x=1", other_key.as_str()),
        ("/wallet/debit?x=1", key.as_str()),
    ] {
        let (status, text) = raw(
            &app.address,
            &head(
                path,
                &format!("\r\nIdempotency-Key: {key}\r\nX-Signature: {v1}"),
            ),
            body.as_bytes(),
        )
        .await;
        let code = code_of(&text);
        assert!(
            code == "SIGNATURE_REPLAYED"
                || status == 404
                || (status == 201
                    && text
                        .to_ascii_lowercase()
                        .contains("idempotent-replayed: true")),
            "{path}: {status} {text}"
        );
    }

    // Two version headers: the first decides, and the signature must match it.
    let v2 = v2_for("/wallet/credit", other_key.as_bytes());
    for (versions, signature) in [
        ("\r\nX-Signature-Version: 1\r\nX-Signature-Version: 2", &v2),
        ("\r\nX-Signature-Version: 2\r\nX-Signature-Version: 1", &v1),
    ] {
        let (status, text) = raw(
            &app.address,
            &head(
                "/wallet/credit",
                &format!("\r\nIdempotency-Key: {other_key}{versions}\r\nX-Signature: {signature}"),
            ),
            body.as_bytes(),
        )
        .await;
        assert_eq!(status, 401, "{versions:?}: {text}");
    }

    // A v2 signature over a non-UTF-8 Idempotency-Key verifies, and the key is then refused.
    let latin1 = b"caf\xe9-key";
    let signature = v2_for("/wallet/credit", latin1);
    let mut request = head(
        "/wallet/credit",
        "\r\nX-Signature-Version: 2\r\nIdempotency-Key: ",
    );
    request.extend_from_slice(latin1);
    request.extend_from_slice(format!("\r\nX-Signature: {signature}").as_bytes());
    let (status, text) = raw(&app.address, &request, body.as_bytes()).await;
    assert_eq!(status, 400, "{text}");
    assert_eq!(code_of(&text), "INVALID_IDEMPOTENCY_KEY", "{text}");

    // Lower-case method: no route.
    let (status, text) = raw(
        &app.address,
        &format!("post /wallet/credit HTTP/1.1\r\nX-Timestamp: {timestamp}\r\nIdempotency-Key: {other_key}\r\nX-Signature: {v1}").into_bytes(),
        body.as_bytes(),
    )
    .await;
    assert!(
        status == 405 || status == 404 || status == 400,
        "{status} {text}"
    );

    assert_eq!(app.operator.total_charges(), 1, "only the one debit");
    assert!(app.transaction_for_key(&other_key).await.is_none());
}
