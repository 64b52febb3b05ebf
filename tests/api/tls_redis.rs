//! Redis over TLS (`rediss://`) with the test's own CA: the governor shares its state through
//! a TLS-only redis-server that requires a client certificate; a server certificate from
//! another CA stops the hub at start with one line; Redis merely down at start does not.

use std::time::Duration;

use hub::outbound::tls::PeerTls;
use hub::startup::Application;
use hub::store::DatabaseUrl;

use crate::certs::{tls_settings, TestCa};
use crate::governor::{ephemeral_port, redis_up_gauge, PrivateRedis};
use crate::helpers::{
    answer, config_for, eventually, new_key, wallet_body, Backend, Options, TestApp,
};

/// A connection of the test's own, with the same CA and client certificate as the hub.
async fn connect(url: &str, tls: &PeerTls) -> Option<redis::aio::MultiplexedConnection> {
    let client = redis::Client::build_with_tls(url, tls.redis_certificates()).ok()?;
    let mut connection = tokio::time::timeout(
        Duration::from_millis(500),
        client.get_multiplexed_async_connection(),
    )
    .await
    .ok()?
    .ok()?;
    redis::cmd("PING")
        .query_async::<String>(&mut connection)
        .await
        .ok()?;
    Some(connection)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[cfg_attr(
    not(redis_tests),
    ignore = "set TEST_REDIS_URL to run the Redis tests (they start their own redis-server)"
)]
async fn governor_limited_calls_are_shared_through_a_tls_only_redis_with_a_client_certificate() {
    let ca = TestCa::new("redis");
    let redis = PrivateRedis::start_tls(&ca.server("redis"), &ca, true);
    let url = redis.url();
    let tls = tls_settings("REDIS", &ca, Some(&ca.client("hub")));
    let mut connection = eventually("the private TLS Redis", Duration::from_secs(10), || {
        connect(&url, &tls)
    })
    .await;
    let options = Options {
        governor_rpm: 6000,
        redis_url: Some(redis.url()),
        redis_tls: tls,
        ..Options::default()
    };
    let app = TestApp::spawn_with(Backend::Sqlite, options).await;

    for _ in 0..2 {
        let response = answer(
            app.debit(&new_key(), &wallet_body("player-005", 1, "USD"))
                .await,
        )
        .await;
        assert_eq!(response.status, 201, "{}", response.text);
    }
    assert_eq!(
        redis_up_gauge(&app).await,
        Some(1.0),
        "shared, not in process"
    );
    let slots: Vec<String> = redis::cmd("KEYS")
        .arg("*governor:next_slot")
        .query_async(&mut connection)
        .await
        .unwrap();
    assert_eq!(
        slots.len(),
        1,
        "the rate limit's slot is kept in the TLS Redis"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[cfg_attr(
    not(redis_tests),
    ignore = "set TEST_REDIS_URL to run the Redis tests (they start their own redis-server)"
)]
async fn a_redis_certificate_from_another_ca_stops_the_hub_at_start_with_one_line() {
    let (ca, other) = (TestCa::new("redis"), TestCa::new("other"));
    let redis = PrivateRedis::start_tls(&ca.server("redis"), &ca, false);
    let url = redis.url();
    let good = tls_settings("REDIS", &ca, None);
    eventually("the private TLS Redis", Duration::from_secs(10), || {
        connect(&url, &good)
    })
    .await;
    let url = redis
        .url()
        .replace("rediss://", "rediss://:pw-never-shown@");
    let options = Options {
        governor_rpm: 6000,
        redis_url: Some(url.clone()),
        redis_tls: tls_settings("REDIS", &other, None),
        ..Options::default()
    };
    let dir = tempfile::tempdir().unwrap();
    let config = config_for(
        DatabaseUrl::Sqlite(dir.path().join("hub.db")),
        "http://127.0.0.1:9".into(),
        "http://127.0.0.1:9/webhooks".into(),
        &options,
    );

    let error = match Application::build(config).await {
        Ok(_) => panic!("the hub started although it cannot verify Redis"),
        Err(error) => error.to_string(),
    };
    assert!(!error.contains('\n'), "one line: {error}");
    assert!(error.contains("REDIS_CA_FILE"), "{error}");
    assert!(error.contains("127.0.0.1"), "names the server: {error}");
    assert!(!error.contains("pw-never-shown"), "{error}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_tls_redis_that_is_down_at_start_is_ridden_out_in_process() {
    let ca = TestCa::new("redis");
    let url = format!("rediss://127.0.0.1:{}", ephemeral_port());
    let options = Options {
        governor_rpm: 6000,
        redis_url: Some(url.clone()),
        redis_tls: tls_settings("REDIS", &ca, None),
        ..Options::default()
    };
    let app = TestApp::spawn_with(Backend::Sqlite, options).await;
    let response = answer(
        app.debit(&new_key(), &wallet_body("player-005", 1, "USD"))
            .await,
    )
    .await;
    assert_eq!(response.status, 201, "{}", response.text);
    assert_eq!(redis_up_gauge(&app).await, Some(0.0), "in process");
}
