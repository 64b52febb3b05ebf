//! Postgres over TLS: `sslmode` and `sslrootcert` in `DATABASE_URL` hold for the pool (libpq)
//! and the outbox listener (tokio-postgres) alike, checked in the server's own `pg_stat_ssl`.

use std::time::Duration;

use hub::startup::Application;
use hub::store::postgres_tls::LISTENER_APPLICATION_NAME;
use hub::store::DatabaseUrl;

use crate::certs::TestCa;
use crate::helpers::{config_for, eventually, Backend, Options, TestApp};
use crate::private_postgres::PrivatePostgres;

/// `url` with `pairs` added to its query.
fn with_query(url: &str, pairs: &[(&str, &str)]) -> String {
    let mut url = reqwest::Url::parse(url).expect("a Postgres URL");
    url.query_pairs_mut().extend_pairs(pairs);
    url.to_string()
}

/// `(application_name, ssl)` of every connection to the test's database, read over a
/// connection of the test's own to `server`'s `postgres` database.
async fn connections(server: &str, database: &str) -> Vec<(String, bool)> {
    let mut url = reqwest::Url::parse(server).unwrap();
    url.set_path("postgres");
    url.set_query(None);
    let (client, connection) = tokio_postgres::connect(url.as_str(), tokio_postgres::NoTls)
        .await
        .expect("connect to read pg_stat_ssl");
    tokio::spawn(connection);
    client
        .query(
            "SELECT a.application_name, s.ssl FROM pg_stat_ssl s \
             JOIN pg_stat_activity a USING (pid) WHERE a.datname = $1",
            &[&database],
        )
        .await
        .expect("read pg_stat_ssl")
        .iter()
        .map(|row| (row.get(0), row.get(1)))
        .collect()
}

/// Waits for the listener's connection, then checks that the pool's and the listener's
/// connections are all encrypted.
async fn assert_pool_and_listener_encrypted(app: &TestApp, server: &str) {
    let DatabaseUrl::Postgres(url) = &app.database_url else {
        panic!("a Postgres test")
    };
    let database = reqwest::Url::parse(url).unwrap().path()[1..].to_owned();
    let seen = eventually(
        "the listener's connection in pg_stat_activity",
        Duration::from_secs(10),
        || async {
            let seen = connections(server, &database).await;
            seen.iter()
                .any(|(name, _)| name == LISTENER_APPLICATION_NAME)
                .then_some(seen)
        },
    )
    .await;
    assert!(seen.len() >= 2, "the pool and the listener: {seen:?}");
    assert!(seen.iter().all(|(_, ssl)| *ssl), "all encrypted: {seen:?}");
}

/// A debit settles and its webhook is delivered.
async fn assert_debit_and_webhook(app: &TestApp) {
    let event = app.debit_event().await;
    app.wait_for_status(&event, "DELIVERED").await;
    assert_eq!(app.rgs.accepted_event_ids(), [event]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[cfg_attr(
    not(postgres_tests),
    ignore = "set TEST_DATABASE_URL to run the Postgres half"
)]
async fn sslmode_require_encrypts_the_pools_and_the_listeners_connections() {
    let server = std::env::var("TEST_DATABASE_URL").unwrap();
    let options = Options {
        postgres_server: Some(with_query(&server, &[("sslmode", "require")])),
        ..Options::default()
    };
    let app = TestApp::spawn_with(Backend::Postgres, options).await;
    assert_debit_and_webhook(&app).await;
    assert_pool_and_listener_encrypted(&app, &server).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[cfg_attr(
    not(postgres_tests),
    ignore = "set TEST_DATABASE_URL to run the Postgres half"
)]
async fn verify_full_against_a_private_ca_carries_a_debit_and_its_webhook() {
    let ca = TestCa::new("postgres");
    let postgres = PrivatePostgres::create_with_tls(&ca.server("postgres"));
    let ca_file = ca.ca_file().display().to_string();
    let options = Options {
        postgres_server: Some(with_query(
            &postgres.url(),
            &[("sslmode", "verify-full"), ("sslrootcert", &ca_file)],
        )),
        ..Options::default()
    };
    let app = TestApp::spawn_with(Backend::Postgres, options).await;
    assert_debit_and_webhook(&app).await;
    assert_pool_and_listener_encrypted(&app, &postgres.url()).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[cfg_attr(
    not(postgres_tests),
    ignore = "set TEST_DATABASE_URL to run the Postgres half"
)]
async fn a_server_certificate_from_another_ca_stops_the_hub_at_start_with_one_line() {
    let ca = TestCa::new("postgres");
    let other = TestCa::new("other");
    let postgres = PrivatePostgres::create_with_tls(&ca.server("postgres"));
    let other_file = other.ca_file().display().to_string();
    let mut url = reqwest::Url::parse(&postgres.url()).unwrap();
    url.set_password(Some("pw-never-shown")).unwrap();
    let url = with_query(
        url.as_str(),
        &[("sslmode", "verify-full"), ("sslrootcert", &other_file)],
    );
    let config = config_for(
        DatabaseUrl::Postgres(url),
        "http://127.0.0.1:9".into(),
        "http://127.0.0.1:9/webhooks".into(),
        &Options::default(),
    );

    let error = match Application::build(config).await {
        Ok(_) => panic!("the hub started although it cannot verify Postgres"),
        Err(error) => error.to_string(),
    };
    assert!(!error.contains('\n'), "one line: {error}");
    assert!(error.contains("DATABASE_URL"), "{error}");
    assert!(error.contains("sslrootcert"), "{error}");
    assert!(error.contains("certificate verify failed"), "{error}");
    assert!(!error.contains("pw-never-shown"), "{error}");
}
