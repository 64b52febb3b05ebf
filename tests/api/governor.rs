//! The governor keeps the hub serving while Redis is away and shares again once it is back.

use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::Duration;

use crate::certs::{Issued, TestCa};
use crate::helpers::{answer, eventually, new_key, wallet_body, Backend, Options, TestApp};

pub fn ephemeral_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// A private Redis on a fixed ephemeral port, so that it can be stopped and started again.
pub struct PrivateRedis {
    port: u16,
    server: Option<Child>,
    tls: bool,
}

impl PrivateRedis {
    fn start(port: u16) -> Self {
        Self::start_with(port, &["--port", &port.to_string()], false)
    }

    /// TLS only (`--port 0`) on a fresh ephemeral port, presenting `server`; with
    /// `require_client_cert`, only clients holding a certificate of `ca` are let in.
    pub fn start_tls(server: &Issued, ca: &TestCa, require_client_cert: bool) -> Self {
        let port = ephemeral_port();
        let path = |p: &std::path::Path| p.display().to_string();
        Self::start_with(
            port,
            &[
                "--port",
                "0",
                "--tls-port",
                &port.to_string(),
                "--tls-cert-file",
                &path(&server.cert_file),
                "--tls-key-file",
                &path(&server.key_file),
                "--tls-ca-cert-file",
                &path(&ca.ca_file()),
                "--tls-auth-clients",
                if require_client_cert { "yes" } else { "no" },
            ],
            true,
        )
    }

    fn start_with(port: u16, listen: &[&str], tls: bool) -> Self {
        let server = Command::new("redis-server")
            .args(listen)
            .args(["--bind", "127.0.0.1", "--save", "", "--appendonly", "no"])
            .stdout(Stdio::null())
            .spawn()
            .expect("redis-server (the replica tests need it)");
        Self {
            port,
            server: Some(server),
            tls,
        }
    }

    pub fn url(&self) -> String {
        let scheme = if self.tls { "rediss" } else { "redis" };
        format!("{scheme}://127.0.0.1:{}", self.port)
    }

    fn stop(&mut self) {
        if let Some(mut server) = self.server.take() {
            let _ = server.kill();
            let _ = server.wait();
        }
    }
}

impl Drop for PrivateRedis {
    fn drop(&mut self) {
        self.stop();
    }
}

pub async fn redis_answers(url: &str) -> bool {
    let Ok(client) = redis::Client::open(url) else {
        return false;
    };
    let Ok(Ok(mut connection)) = tokio::time::timeout(
        Duration::from_millis(200),
        client.get_multiplexed_async_connection(),
    )
    .await
    else {
        return false;
    };
    redis::cmd("PING")
        .query_async::<String>(&mut connection)
        .await
        .is_ok()
}

pub async fn redis_up_gauge(app: &TestApp) -> Option<f64> {
    app.metrics_text()
        .await?
        .lines()
        .find_map(|line| line.strip_prefix("hub_governor_redis_up ")?.parse().ok())
}

static SETTLED: AtomicU32 = AtomicU32::new(0);

async fn debit_ok(app: &TestApp) -> bool {
    let settled = answer(
        app.debit(&new_key(), &wallet_body("player-005", 1, "USD"))
            .await,
    )
    .await
    .status
        == 201;
    if settled {
        SETTLED.fetch_add(1, Ordering::SeqCst);
    }
    settled
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[cfg_attr(
    not(redis_tests),
    ignore = "set TEST_REDIS_URL to run the Redis tests (they start their own redis-server)"
)]
async fn requests_keep_succeeding_while_redis_is_down_and_share_again_when_it_returns() {
    let port = ephemeral_port();
    let mut redis = PrivateRedis::start(port);
    eventually("the private Redis", Duration::from_secs(10), || async {
        redis_answers(&redis.url()).await.then_some(())
    })
    .await;
    let options = Options {
        governor_rpm: 6000,
        redis_url: Some(redis.url()),
        ..Options::default()
    };
    let app = TestApp::spawn_with(Backend::Sqlite, options).await;

    assert!(debit_ok(&app).await);
    assert_eq!(
        redis_up_gauge(&app).await,
        Some(1.0),
        "shared through Redis"
    );

    redis.stop();
    for _ in 0..5 {
        assert!(
            debit_ok(&app).await,
            "Redis being down must not fail a debit"
        );
    }
    assert_eq!(
        redis_up_gauge(&app).await,
        Some(0.0),
        "the fallback shows in /metrics"
    );

    let mut redis = PrivateRedis::start(port);
    eventually(
        "the governor to share again",
        Duration::from_secs(20),
        || async {
            let ok = redis_answers(&redis.url()).await && debit_ok(&app).await;
            (ok && redis_up_gauge(&app).await == Some(1.0)).then_some(())
        },
    )
    .await;
    redis.stop();
    assert_eq!(
        app.operator.total_charges(),
        SETTLED.load(Ordering::SeqCst),
        "one charge per settled debit"
    );
}
