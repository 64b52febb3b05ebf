//! What operators watch: /metrics moving with the traffic, /health and /ready.

use std::sync::atomic::{AtomicBool, AtomicU32, Ordering};
use std::sync::Arc;
use std::time::Duration;

use mock_operator::FaultKind;
use tokio_util::sync::CancellationToken;

use crate::helpers::{
    answer, eventually, get_json, new_key, on_both_backends, wallet_body, Backend, Options,
    TestApp, ADMIN_TOKEN,
};

on_both_backends!(
    metrics_follow_requests_operator_calls_and_webhooks,
    health_and_readiness_answer,
    invented_http_methods_share_one_metrics_label,
    a_background_loop_that_keeps_failing_is_restarted_and_reported_by_ready,
);

/// The value of the sample `name{labels}` (labels exactly as Prometheus prints them).
fn sample(text: &str, series: &str) -> Option<f64> {
    text.lines()
        .find_map(|line| line.strip_prefix(series)?.strip_prefix(' ')?.parse().ok())
}

async fn scrape(app: &TestApp) -> String {
    let response = app
        .client
        .get(format!("{}/metrics", app.address))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 200);
    assert!(response.headers()["content-type"]
        .to_str()
        .unwrap()
        .starts_with("text/plain; version=0.0.4"));
    response.text().await.unwrap()
}

async fn metrics_follow_requests_operator_calls_and_webhooks(backend: Backend) {
    let mut options = Options::default();
    options.retry.deadline = Duration::from_millis(300);
    let app = TestApp::spawn_with(backend, options).await;
    let before = scrape(&app).await;
    assert_eq!(sample(&before, "hub_operator_circuit_state"), Some(0.0));

    let event_id = app.debit_event().await;
    app.wait_for_status(&event_id, "DELIVERED").await;
    app.operator.inject_fault(FaultKind::ServerError, 1000);
    assert_eq!(
        app.debit(&new_key(), &wallet_body("player-001", 100, "USD"))
            .await
            .status(),
        502
    );
    let admin = app
        .client
        .get(format!("{}/admin/outbox/{event_id}", app.address))
        .bearer_auth(ADMIN_TOKEN);
    assert_eq!(admin.send().await.unwrap().status(), 200);

    let after = eventually(
        "the delivery to be counted",
        Duration::from_secs(10),
        || async {
            let text = scrape(&app).await;
            sample(&text, r#"hub_webhook_deliveries_total{result="delivered"}"#).map(|_| text)
        },
    )
    .await;
    let expectations = [
        (
            r#"hub_http_requests_total{method="POST",route="/wallet/debit",status="201"}"#,
            1.0,
        ),
        (
            r#"hub_http_requests_total{method="POST",route="/wallet/debit",status="502"}"#,
            1.0,
        ),
        (
            r#"hub_http_requests_total{method="GET",route="/admin/outbox/{event_id}",status="200"}"#,
            1.0,
        ),
        (r#"hub_operator_calls_total{outcome="answered"}"#, 1.0),
        (r#"hub_operator_calls_total{outcome="unavailable"}"#, 1.0),
        (r#"hub_webhook_deliveries_total{result="delivered"}"#, 1.0),
        (r#"hub_outbox_rows{status="PENDING"}"#, 0.0),
        (r#"hub_outbox_rows{status="DEAD_LETTER"}"#, 0.0),
        ("hub_wallet_overhead_seconds_count", 2.0),
    ];
    for (series, expected) in expectations {
        assert_eq!(
            sample(&after, series),
            Some(expected),
            "{series} in\n{after}"
        );
    }
    let retries = sample(
        &after,
        r#"hub_operator_attempts_total{result="server_error"}"#,
    )
    .unwrap_or(0.0);
    assert!(retries >= 2.0, "every failed attempt is counted: {retries}");
    assert!(sample(&after, r#"hub_db_pool_connections{state="idle"}"#).is_some());
    assert!(!after.contains(&event_id), "raw paths never become labels");
    assert!(
        !after.contains(r#"status="DELIVERED""#),
        "the delivered history is never counted on a scrape"
    );
}

async fn invented_http_methods_share_one_metrics_label(backend: Backend) {
    let app = TestApp::spawn(backend).await;
    for method in ["BREW", "PROPFIND", "X-ANYTHING"] {
        let response = app
            .client
            .request(method.parse().unwrap(), format!("{}/health", app.address))
            .send()
            .await
            .unwrap();
        assert_eq!(response.status(), 405, "{method}");
    }
    let text = scrape(&app).await;
    assert_eq!(
        sample(
            &text,
            r#"hub_http_requests_total{method="OTHER",route="/health",status="405"}"#
        ),
        Some(3.0),
        "{text}"
    );
    for method in ["BREW", "PROPFIND", "X-ANYTHING"] {
        assert!(!text.contains(method), "{method} became a label");
    }
}

async fn a_background_loop_that_keeps_failing_is_restarted_and_reported_by_ready(backend: Backend) {
    let app = TestApp::spawn(backend).await;
    let ready = || async {
        answer(
            app.client
                .get(format!("{}/ready", app.address))
                .send()
                .await
                .unwrap(),
        )
        .await
    };
    assert_eq!(ready().await.status, 200);
    // A loop of this hub's supervisor that panics on its first five runs, then works.
    let runs = Arc::new(AtomicU32::new(0));
    let healthy = Arc::new(AtomicBool::new(false));
    let (counter, works) = (runs.clone(), healthy.clone());
    let cancel = CancellationToken::new();
    let stop = cancel.clone();
    let supervised = app
        .hub
        .supervisor
        .spawn("test_loop", cancel.clone(), move |health| {
            let (counter, works, stop) = (counter.clone(), works.clone(), stop.clone());
            async move {
                counter.fetch_add(1, Ordering::SeqCst);
                if !works.load(Ordering::SeqCst) {
                    panic!("the test loop fails");
                }
                health.round_succeeded();
                stop.cancelled().await;
                Ok::<(), String>(())
            }
        });

    let not_ready = eventually(
        "/ready to report the failing loop",
        Duration::from_secs(20),
        || async { Some(ready().await).filter(|r| r.status == 503) },
    )
    .await;
    assert_eq!(not_ready.json["code"], "NOT_READY");
    assert_eq!(not_ready.json["failingLoops"][0]["loop"], "test_loop");
    assert!(not_ready.json["message"]
        .as_str()
        .unwrap()
        .contains("test_loop"));
    let restarts = sample(
        &scrape(&app).await,
        r#"hub_background_restarts_total{loop="test_loop"}"#,
    )
    .unwrap();
    assert!(restarts >= 3.0, "{restarts}");
    assert_eq!(
        sample(
            &scrape(&app).await,
            r#"hub_background_loop_up{loop="test_loop"}"#
        ),
        Some(0.0)
    );
    assert_eq!(
        sample(
            &scrape(&app).await,
            r#"hub_background_loop_up{loop="drainer"}"#
        ),
        Some(1.0),
        "the hub's own loops are supervised too"
    );

    healthy.store(true, Ordering::SeqCst);
    eventually("/ready to recover", Duration::from_secs(60), || async {
        (ready().await.status == 200).then_some(())
    })
    .await;
    assert_eq!(
        sample(
            &scrape(&app).await,
            r#"hub_background_loop_up{loop="test_loop"}"#
        ),
        Some(1.0)
    );
    cancel.cancel();
    supervised.await.unwrap();
    assert!(runs.load(Ordering::SeqCst) >= 4);
}

async fn health_and_readiness_answer(backend: Backend) {
    let app = TestApp::spawn(backend).await;
    for (path, body) in [
        ("/health", r#"{"status":"ok"}"#),
        ("/ready", r#"{"status":"ready"}"#),
    ] {
        let response = answer(
            app.client
                .get(format!("{}{path}", app.address))
                .send()
                .await
                .unwrap(),
        )
        .await;
        assert_eq!((response.status, response.text.as_str()), (200, body));
    }
}

/// Every route a listener serves is in the OpenAPI document it serves, and every operation
/// in that document is served there: a new route or a renamed one fails here until the
/// contract follows, and with `METRICS_ADDR` the public port does not advertise the others.
#[test]
fn the_openapi_document_describes_exactly_the_served_routes() {
    use hub::http::Listener;
    for listener in [Listener::Only, Listener::Public, Listener::Metrics] {
        let document: serde_json::Value =
            serde_json::from_str(hub::http::openapi_document(listener)).expect("valid JSON");
        assert_eq!(document["openapi"], "3.0.3");
        let mut documented: Vec<(String, String)> = Vec::new();
        for (path, operations) in document["paths"].as_object().unwrap() {
            for method in operations.as_object().unwrap().keys() {
                documented.push((method.to_uppercase(), path.clone()));
            }
        }
        let mut served: Vec<(String, String)> = hub::http::route_table(listener, true)
            .into_iter()
            .map(|(m, p)| (m.to_string(), p.to_owned()))
            .collect();
        documented.sort();
        served.sort();
        assert_eq!(documented, served, "{listener:?}");
    }
}

#[tokio::test]
async fn the_document_is_served_and_documented_routes_exist() {
    let app = TestApp::spawn(Backend::Sqlite).await;
    let served = get_json(&app.client, &format!("{}/openapi.json", app.address)).await;
    assert_eq!(
        served.to_string(),
        serde_json::from_str::<serde_json::Value>(hub::http::openapi_document(
            hub::http::Listener::Only,
        ))
        .unwrap()
        .to_string()
    );
    for (method, path) in hub::http::route_table(hub::http::Listener::Only, true) {
        let url = format!(
            "{}{}",
            app.address,
            path.replace("{event_id}", "no-such-event")
        );
        let method = reqwest::Method::from_bytes(method.as_str().as_bytes()).unwrap();
        let response = app
            .client
            .request(method.clone(), url)
            .send()
            .await
            .unwrap();
        let body: serde_json::Value = response.json().await.unwrap_or_default();
        assert!(
            body["code"] != "NOT_FOUND" && body["code"] != "METHOD_NOT_ALLOWED",
            "{method} {path} is documented but not routed"
        );
    }
}
