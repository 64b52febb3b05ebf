//! `/metrics` and the admin API off the public port (`METRICS_ADDR`), `/metrics` behind an
//! optional bearer token (`METRICS_TOKEN`), and the exposition read by a real Prometheus
//! parser.

use std::net::SocketAddr;

use crate::helpers::{
    answer, get_json, new_key, wallet_body, Backend, Hub, Options, TestApp, ADMIN_TOKEN,
};

const METRICS_TOKEN: &str = "metrics-token-0123456789";

/// A second hub on `app`'s database whose metrics and admin API listen on their own port.
async fn hub_with_metrics_listener(app: &TestApp, token: Option<&str>) -> Hub {
    let mut config = app.replica_config(&Options::default());
    config.metrics_addr = Some(SocketAddr::from(([127, 0, 0, 1], 0)));
    config.metrics_token = token.map(str::to_owned);
    Hub::start(config).await
}

async fn status_of(client: &reqwest::Client, url: String, bearer: Option<&str>) -> u16 {
    let mut request = client.get(url);
    if let Some(token) = bearer {
        request = request.bearer_auth(token);
    }
    request
        .send()
        .await
        .expect("the hub answers")
        .status()
        .as_u16()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn metrics_and_admin_move_to_their_own_port_and_leave_the_public_one() {
    let app = TestApp::spawn(Backend::Sqlite).await;
    let hub = hub_with_metrics_listener(&app, None).await;
    assert_ne!(hub.address, hub.metrics_address);
    let client = &app.client;
    let (public, private) = (&hub.address, &hub.metrics_address);

    let debit = crate::helpers::post_signed(
        client,
        public,
        "/wallet/debit",
        &new_key(),
        &wallet_body("player-001", 100, "USD").to_string(),
    )
    .await;
    assert_eq!(answer(debit).await.status, 201, "the API stays public");

    assert_eq!(
        status_of(client, format!("{public}/metrics"), None).await,
        404
    );
    let admin = "/admin/outbox?limit=1";
    assert_eq!(
        status_of(client, format!("{public}{admin}"), Some(ADMIN_TOKEN)).await,
        404,
        "the admin API is not on the public port"
    );
    assert_eq!(
        status_of(client, format!("{private}/metrics"), None).await,
        200
    );
    assert_eq!(
        status_of(client, format!("{private}{admin}"), Some(ADMIN_TOKEN)).await,
        200
    );
    assert_eq!(
        status_of(client, format!("{private}{admin}"), None).await,
        401,
        "the admin API still asks for its token"
    );
    for probe in ["/health", "/ready"] {
        assert_eq!(
            status_of(client, format!("{public}{probe}"), None).await,
            200
        );
        assert_eq!(
            status_of(client, format!("{private}{probe}"), None).await,
            200
        );
    }
    let described = get_json(client, &format!("{public}/openapi.json")).await;
    let paths = described["paths"].as_object().unwrap();
    assert!(paths.contains_key("/wallet/debit"));
    assert!(
        !paths
            .keys()
            .any(|p| p == "/metrics" || p.starts_with("/admin")),
        "the public port does not advertise what it does not serve: {:?}",
        paths.keys().collect::<Vec<_>>()
    );
    let index = get_json(client, &format!("{public}/")).await;
    assert!(index.get("metrics").is_none(), "{index}");
    let wallet_on_private = client
        .post(format!("{private}/wallet/debit"))
        .send()
        .await
        .unwrap();
    assert_eq!(
        wallet_on_private.status(),
        404,
        "the wallet API is not on the metrics port"
    );
    hub.shut_down().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_metrics_token_is_asked_for_on_either_port() {
    let app = TestApp::spawn(Backend::Sqlite).await;
    let separate = hub_with_metrics_listener(&app, Some(METRICS_TOKEN)).await;
    let mut config = app.replica_config(&Options::default());
    config.metrics_token = Some(METRICS_TOKEN.to_owned());
    let shared = Hub::start(config).await;
    for hub in [&separate, &shared] {
        let url = format!("{}/metrics", hub.metrics_address);
        assert_eq!(status_of(&app.client, url.clone(), None).await, 401);
        assert_eq!(
            status_of(&app.client, url.clone(), Some("metrics-token-0123456788")).await,
            401
        );
        let refused = app.client.get(url.clone()).send().await.unwrap();
        assert_eq!(refused.headers()["www-authenticate"], "Bearer");
        let body: serde_json::Value = refused.json().await.unwrap();
        assert_eq!(body["code"], "UNAUTHORIZED");
        assert_eq!(status_of(&app.client, url, Some(METRICS_TOKEN)).await, 200);
    }
    separate.shut_down().await;
    shared.shut_down().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[cfg_attr(
    not(doc_examples),
    ignore = "set TEST_DOC_EXAMPLES=1 to parse /metrics with the Python prometheus_client parser (pip install prometheus-client)"
)]
async fn the_exposition_on_the_metrics_port_reads_without_error_in_prometheus_client() {
    let app = TestApp::spawn(Backend::Sqlite).await;
    let hub = hub_with_metrics_listener(&app, Some(METRICS_TOKEN)).await;
    let debit = crate::helpers::post_signed(
        &app.client,
        &hub.address,
        "/wallet/debit",
        &new_key(),
        &wallet_body("player-001", 100, "USD").to_string(),
    )
    .await;
    assert_eq!(answer(debit).await.status, 201);
    let text = app
        .client
        .get(format!("{}/metrics", hub.metrics_address))
        .bearer_auth(METRICS_TOKEN)
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("metrics.txt");
    std::fs::write(&path, &text).unwrap();
    // The parser raises on any line it cannot read; the families it found are printed.
    let script = "import sys\n\
                  from prometheus_client.parser import text_string_to_metric_families\n\
                  for family in text_string_to_metric_families(open(sys.argv[1]).read()):\n\
                  \x20   print(family.name, family.type, len(family.samples))\n";
    let output = tokio::process::Command::new("python3")
        .args(["-c", script])
        .arg(&path)
        .output()
        .await
        .expect("run python3");
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert!(
        output.status.success(),
        "prometheus_client refused the exposition: {}\n{text}",
        String::from_utf8_lossy(&output.stderr)
    );
    for family in [
        "hub_http_requests counter",
        "hub_operator_circuit_state gauge",
        "hub_background_loop_up gauge",
    ] {
        assert!(
            stdout.lines().any(|line| line.starts_with(family)),
            "{family} not parsed from the exposition: {stdout}"
        );
    }
    hub.shut_down().await;
}
