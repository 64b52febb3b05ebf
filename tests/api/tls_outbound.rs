//! The operator and the RGS over HTTPS with a private CA and mutual TLS: the real mock
//! operator and mock RGS behind a TLS front that requires a client certificate. A refused
//! handshake is a transport failure like any other: the debit stays PENDING (502), never
//! REJECTED, and a webhook is retried, never marked delivered. A peer certificate the
//! configured CA did not sign is a misconfiguration: the hub refuses to start, in one line.

use std::time::Duration;

use hub::outbound::tls::PeerTls;
use hub::startup::Application;

use crate::certs::{tls_settings, TestCa};
use crate::helpers::{answer, new_key, on_both_backends, wallet_body, Backend, Options, TestApp};
use crate::tls_front::TlsFront;

on_both_backends!(
    a_debit_goes_through_an_operator_that_requires_a_client_certificate,
    without_a_client_certificate_the_operator_call_fails_and_the_debit_stays_pending,
    webhooks_reach_an_https_rgs_that_requires_a_client_certificate,
);

/// A hub whose operator is the mock behind `front`, with short retries so that an operator
/// that cannot be reached is given up on within a second.
async fn hub_behind(backend: Backend, mut front: TlsFront, tls: PeerTls) -> (TestApp, TlsFront) {
    let mut options = Options {
        operator_url: Some(front.base_url()),
        operator_tls: tls,
        ..Options::default()
    };
    options.retry.attempt_timeout = Duration::from_millis(500);
    options.retry.deadline = Duration::from_secs(1);
    let app = TestApp::spawn_with(backend, options).await;
    front.forward_to(app.operator.addr());
    (app, front)
}

/// Debits once and checks the unknown-outcome rules: 502, PENDING, nothing charged.
async fn assert_debit_stays_pending(app: &TestApp) {
    let key = new_key();
    let response = answer(
        app.debit(&key, &wallet_body("player-001", 100, "USD"))
            .await,
    )
    .await;
    assert_eq!(response.status, 502, "{}", response.text);
    assert_eq!(response.json["code"], "OPERATOR_UNAVAILABLE");
    let row = app.transaction_for_key(&key).await.expect("recorded");
    assert_eq!(row.status, "PENDING", "never REJECTED");
    assert_eq!(
        app.operator.total_charges(),
        0,
        "the operator was never reached"
    );
}

async fn a_debit_goes_through_an_operator_that_requires_a_client_certificate(backend: Backend) {
    let ca = TestCa::new("operator");
    let front = TlsFront::bind(&ca.server("operator"), Some(&ca)).await;
    let tls = tls_settings("OPERATOR", &ca, Some(&ca.client("hub")));
    let (app, _front) = hub_behind(backend, front, tls).await;

    let response = answer(
        app.debit(&new_key(), &wallet_body("player-001", 100, "USD"))
            .await,
    )
    .await;
    assert_eq!(response.status, 201, "{}", response.text);
    let id = response.json["transactionId"].as_str().unwrap();
    assert_eq!(
        app.operator.charges_for(id),
        1,
        "charged once, over mutual TLS"
    );
}

async fn without_a_client_certificate_the_operator_call_fails_and_the_debit_stays_pending(
    backend: Backend,
) {
    let ca = TestCa::new("operator");
    let front = TlsFront::bind(&ca.server("operator"), Some(&ca)).await;
    let (app, _front) = hub_behind(backend, front, tls_settings("OPERATOR", &ca, None)).await;
    assert_debit_stays_pending(&app).await;
}

/// Starts a hub on `app`'s database with `options` and returns why it refused to start.
async fn refused_start(app: &TestApp, options: &Options) -> String {
    match Application::build(app.replica_config(options)).await {
        Ok(_) => panic!("the hub started although it cannot trust its peer"),
        Err(error) => error.to_string(),
    }
}

fn assert_one_line_naming(error: &str, variable: &str) {
    assert_eq!(error.lines().count(), 1, "{error}");
    assert!(error.starts_with(variable), "{error}");
    assert!(error.contains("does not trust"), "{error}");
    assert!(error.contains("UnknownIssuer"), "{error}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_operator_certificate_from_another_ca_stops_the_start_with_one_line() {
    let app = TestApp::spawn(Backend::Sqlite).await;
    let (ca, other) = (TestCa::new("operator"), TestCa::new("other"));
    let mut front = TlsFront::bind(&ca.server("operator"), Some(&ca)).await;
    front.forward_to(app.operator.addr());
    // The hub holds a good client certificate, but trusts only the other CA.
    let options = Options {
        operator_url: Some(front.base_url()),
        operator_tls: tls_settings("OPERATOR", &other, Some(&ca.client("hub"))),
        ..Options::default()
    };
    let error = refused_start(&app, &options).await;
    assert_one_line_naming(&error, "OPERATOR_CA_FILE");
    assert_eq!(app.operator.total_charges(), 0);
}

/// A hub whose RGS is the mock behind `front`.
async fn hub_sending_to(
    backend: Backend,
    mut front: TlsFront,
    tls: PeerTls,
) -> (TestApp, TlsFront) {
    let options = Options {
        rgs_url: Some(format!("{}/webhooks", front.base_url())),
        webhook_tls: tls,
        ..Options::default()
    };
    let app = TestApp::spawn_with(backend, options).await;
    front.forward_to(app.rgs.addr());
    (app, front)
}

async fn webhooks_reach_an_https_rgs_that_requires_a_client_certificate(backend: Backend) {
    let ca = TestCa::new("rgs");
    let front = TlsFront::bind(&ca.server("rgs"), Some(&ca)).await;
    let tls = tls_settings("WEBHOOK", &ca, Some(&ca.client("hub")));
    let (app, _front) = hub_sending_to(backend, front, tls).await;

    let event = app.debit_event().await;
    app.wait_for_status(&event, "DELIVERED").await;
    assert_eq!(app.rgs.accepted_event_ids(), [event]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_rgs_certificate_from_another_ca_stops_the_start_with_one_line() {
    let app = TestApp::spawn(Backend::Sqlite).await;
    let (ca, other) = (TestCa::new("rgs"), TestCa::new("other"));
    let mut front = TlsFront::bind(&ca.server("rgs"), None).await;
    front.forward_to(app.rgs.addr());
    let options = Options {
        rgs_url: Some(format!("{}/webhooks", front.base_url())),
        webhook_tls: tls_settings("WEBHOOK", &other, None),
        ..Options::default()
    };
    let error = refused_start(&app, &options).await;
    assert_one_line_naming(&error, "WEBHOOK_CA_FILE");
    assert!(app.rgs.deliveries().is_empty(), "nothing reached the RGS");
}
