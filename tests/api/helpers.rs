//! A real hub on an ephemeral port, a real mock operator on another, and a fresh database per
//! test: a SQLite file in a temporary directory, or a new database on `TEST_DATABASE_URL`.

use std::future::Future;
use std::net::TcpListener;
use std::time::{Duration, Instant};

use actix_web::dev::ServerHandle;
use diesel::{Connection, PgConnection, RunQueryDsl};
use hub::config::{
    Config, DatabaseConfig, DatabaseUrl, Defaults, Env, OperatorConfig, RetryConfig,
};
use hub::startup::Application;
use hub::store::outbox::{self, OutboxRow};
use hub::store::transactions::{self, TransactionRow};
use hub::store::{DbConnection, Store, StoreError};
use mock_operator::{MockOperator, MockOperatorConfig};
use serde_json::{json, Value};
use uuid::Uuid;

pub const SECRET: &str = "test-secret-0123456789-0123456789-abcdef";

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Backend {
    Sqlite,
    Postgres,
}

/// Runs one scenario as two tests, `<name>::sqlite` and `<name>::postgres`.
macro_rules! on_both_backends {
    ($($scenario:ident),* $(,)?) => {$(
        mod $scenario {
            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn sqlite() {
                super::$scenario(crate::helpers::Backend::Sqlite).await
            }

            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            #[cfg_attr(not(postgres_tests), ignore = "set TEST_DATABASE_URL to run the Postgres half")]
            async fn postgres() {
                super::$scenario(crate::helpers::Backend::Postgres).await
            }
        }
    )*};
}
pub(crate) use on_both_backends;

/// What a test may change about the hub or its operator.
#[derive(Debug, Clone)]
pub struct Options {
    pub operator_rpm: u32,
    pub retry: RetryConfig,
    pub secrets: Vec<String>,
    pub body_limit_bytes: usize,
}

impl Default for Options {
    fn default() -> Self {
        Self {
            operator_rpm: 0,
            retry: RetryConfig {
                attempt_timeout: Duration::from_secs(2),
                deadline: Duration::from_secs(10),
                initial_backoff: Duration::from_millis(20),
                max_backoff: Duration::from_millis(200),
            },
            secrets: vec![SECRET.to_owned()],
            body_limit_bytes: 64 * 1024,
        }
    }
}

/// Deleted when the test ends.
enum TestDatabase {
    Sqlite(#[allow(dead_code)] tempfile::TempDir),
    Postgres { admin_url: String, name: String },
}

impl Drop for TestDatabase {
    fn drop(&mut self) {
        if let TestDatabase::Postgres { admin_url, name } = self {
            if let Ok(mut conn) = PgConnection::establish(admin_url) {
                let _ = diesel::sql_query(format!("DROP DATABASE IF EXISTS {name} WITH (FORCE)"))
                    .execute(&mut conn);
            }
        }
    }
}

fn test_database(backend: Backend) -> (DatabaseUrl, TestDatabase) {
    match backend {
        Backend::Sqlite => {
            let dir = tempfile::tempdir().expect("temporary directory");
            (
                DatabaseUrl::Sqlite(dir.path().join("hub.db")),
                TestDatabase::Sqlite(dir),
            )
        }
        Backend::Postgres => {
            let admin_url = std::env::var("TEST_DATABASE_URL")
                .expect("the Postgres tests need TEST_DATABASE_URL, e.g. postgres://postgres@127.0.0.1:5432/test");
            let name = format!("hub_test_{}", Uuid::new_v4().simple());
            let mut conn =
                PgConnection::establish(&admin_url).expect("connect to TEST_DATABASE_URL");
            diesel::sql_query(format!("CREATE DATABASE {name}"))
                .execute(&mut conn)
                .expect("create test database");
            let mut url = reqwest::Url::parse(&admin_url).expect("TEST_DATABASE_URL is a URL");
            url.set_path(&name);
            (
                DatabaseUrl::Postgres(url.to_string()),
                TestDatabase::Postgres { admin_url, name },
            )
        }
    }
}

pub struct TestApp {
    pub address: String,
    pub operator: MockOperator,
    pub store: Store,
    pub client: reqwest::Client,
    handle: ServerHandle,
    _database: TestDatabase,
}

impl Drop for TestApp {
    fn drop(&mut self) {
        drop(self.handle.stop(false));
    }
}

pub fn config_for(url: DatabaseUrl, operator_base_url: String, options: &Options) -> Config {
    let mut config = Config::from_env(
        &Env::from_pairs([("HMAC_SECRETS", SECRET)]),
        Defaults::SERVE,
    )
    .expect("test configuration is valid");
    config.listen_addr = "127.0.0.1:0".parse().unwrap();
    config.database = DatabaseConfig {
        url,
        pool_size: 8,
        acquire_timeout: Duration::from_secs(10),
    };
    config.hmac_secrets = options
        .secrets
        .iter()
        .map(|s| s.as_bytes().to_vec())
        .collect();
    config.operator = OperatorConfig {
        base_url: operator_base_url,
        retry: options.retry.clone(),
    };
    config.body_limit_bytes = options.body_limit_bytes;
    config.workers = 2;
    config
}

impl TestApp {
    pub async fn spawn(backend: Backend) -> Self {
        Self::spawn_with(backend, Options::default()).await
    }

    pub async fn spawn_with(backend: Backend, options: Options) -> Self {
        let _ = tracing_subscriber::fmt()
            .with_test_writer()
            .with_env_filter("info")
            .try_init();
        let listener = TcpListener::bind("127.0.0.1:0").expect("bind the mock operator");
        let operator_config = MockOperatorConfig {
            requests_per_minute: options.operator_rpm,
            workers: 2,
        };
        let operator =
            MockOperator::start(listener, operator_config).expect("start the mock operator");
        let (url, database) = test_database(backend);
        let config = config_for(url, operator.base_url(), &options);
        let app = Application::build(config).await.expect("build the hub");
        let address = format!("http://{}", app.addr());
        let store = app.store().clone();
        let handle = app.handle();
        tokio::spawn(app.run());
        Self {
            address,
            operator,
            store,
            client: reqwest::Client::new(),
            handle,
            _database: database,
        }
    }

    /// POSTs `body` to `path`, signed now with the test secret.
    pub async fn post_signed(&self, path: &str, key: &str, body: &str) -> reqwest::Response {
        let timestamp = chrono::Utc::now().timestamp().to_string();
        let signature = hub::signature::sign(SECRET.as_bytes(), body.as_bytes(), &timestamp);
        self.client
            .post(format!("{}{path}", self.address))
            .header("Content-Type", "application/json")
            .header("Idempotency-Key", key)
            .header("X-Timestamp", timestamp)
            .header("X-Signature", signature)
            .body(body.to_owned())
            .send()
            .await
            .expect("the hub answers")
    }

    pub async fn debit(&self, key: &str, body: &Value) -> reqwest::Response {
        self.post_signed("/wallet/debit", key, &body.to_string())
            .await
    }

    pub async fn credit(&self, key: &str, body: &Value) -> reqwest::Response {
        self.post_signed("/wallet/credit", key, &body.to_string())
            .await
    }
}

pub fn wallet_body(player: &str, amount_cents: i64, currency: &str) -> Value {
    json!({
        "playerId": player,
        "amountCents": amount_cents,
        "currency": currency,
        "refId": format!("ref-{}", Uuid::new_v4()),
        "meta": {"roundId": "round-1", "game": "slots"},
    })
}

pub fn new_key() -> String {
    Uuid::new_v4().to_string()
}

pub struct Answer {
    pub status: u16,
    pub text: String,
    pub json: Value,
    pub headers: reqwest::header::HeaderMap,
}

pub async fn answer(response: reqwest::Response) -> Answer {
    let status = response.status().as_u16();
    let headers = response.headers().clone();
    let text = response.text().await.expect("a body");
    let json = serde_json::from_str(&text).unwrap_or(Value::Null);
    Answer {
        status,
        text,
        json,
        headers,
    }
}

/// Polls `check` until it yields a value or `within` passes; panics naming `what`.
pub async fn eventually<T, F, Fut>(what: &str, within: Duration, mut check: F) -> T
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Option<T>>,
{
    let deadline = Instant::now() + within;
    loop {
        if let Some(value) = check().await {
            return value;
        }
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

/// Reads of the hub's own books, straight from its database.
impl TestApp {
    pub async fn transaction_for_key(&self, key: &str) -> Option<TransactionRow> {
        let key = key.to_owned();
        self.store
            .run(move |conn| {
                transactions::find_by_idempotency_key(conn, &key).map_err(StoreError::from)
            })
            .await
            .expect("read transactions")
    }

    pub async fn outbox_for(&self, transaction_id: &str) -> Vec<OutboxRow> {
        let id = transaction_id.to_owned();
        self.store
            .run(move |conn| outbox::for_transaction(conn, &id).map_err(StoreError::from))
            .await
            .expect("read the outbox")
    }

    /// Makes the key look as if its owner died holding a lease that ends at `until`.
    pub async fn set_lease(&self, key: &str, until: chrono::NaiveDateTime) {
        use diesel::prelude::*;
        use hub::store::schema::idempotency_keys::dsl as k;
        let key = key.to_owned();
        self.store
            .run(move |conn| {
                let target = k::idempotency_keys.filter(k::idempotency_key.eq(key));
                let change = (
                    k::lease_token.eq("crashed-owner"),
                    k::locked_until.eq(until),
                );
                let updated = match conn {
                    DbConnection::Postgres(c) => diesel::update(target).set(change).execute(c),
                    DbConnection::Sqlite(c) => diesel::update(target).set(change).execute(c),
                };
                updated.map_err(StoreError::from)
            })
            .await
            .expect("update the lease");
    }
}
