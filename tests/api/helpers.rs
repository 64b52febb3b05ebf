//! A real hub on an ephemeral port, a real mock operator on another, and a fresh database per
//! test: a SQLite file in a temporary directory, or a new database on `TEST_DATABASE_URL`.

use std::collections::HashSet;
use std::future::Future;
use std::net::TcpListener;
use std::time::{Duration, Instant};

use diesel::{Connection, PgConnection, RunQueryDsl};
use hub::config::{Config, Defaults, Env};
use hub::operator::{BreakerConfig, OperatorConfig, RetryConfig};
use hub::outbound::tls::PeerTls;
use hub::outbox::Drainer;
use hub::startup::Application;
use hub::store::group_commit::GroupLimits;
use hub::store::outbox::{self, AttemptRow, OutboxRow, Window};
use hub::store::transactions::{self, TransactionRow};
use hub::store::{DatabaseConfig, DatabaseUrl, DbConnection, Store, StoreError};
use hub::supervisor::Supervisor;
use mock_operator::{MockOperator, MockOperatorConfig};
use mock_rgs::{MockRgs, MockRgsConfig};
use serde_json::{json, Value};
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;
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

/// What a test may change about the hub, its operator or its RGS.
#[derive(Debug, Clone)]
pub struct Options {
    pub operator_rpm: u32,
    pub retry: RetryConfig,
    pub breaker: BreakerConfig,
    /// The hub's own limit on operator calls per minute (0: none).
    pub governor_rpm: u32,
    pub redis_url: Option<String>,
    pub secrets: Vec<String>,
    pub body_limit_bytes: usize,
    pub webhook_schedule: Vec<Duration>,
    pub webhook_lease: Duration,
    pub webhook_concurrency: usize,
    pub webhook_batch_size: usize,
    /// How long one webhook POST may take before it is a failed attempt.
    pub webhook_attempt_timeout: Duration,
    pub drain: bool,
    pub admin_token: Option<String>,
    /// How old a PENDING transaction must be before the completer resolves it.
    pub completer_after: Duration,
    /// Another Postgres server than TEST_DATABASE_URL's (e.g. a private one to restart).
    pub postgres_server: Option<String>,
    /// How long a request waits for a pooled connection before answering 503.
    pub db_acquire_timeout: Duration,
    /// How long a PENDING debit may be resumed by its client's retry.
    pub debit_resume_window: Duration,
    pub manual_review_after: Duration,
    pub completer_backoff_initial: Duration,
    pub completer_backoff_max: Duration,
    pub completer_concurrency: usize,
    /// Another operator than the test's mock (e.g. a hostile one of the test's own).
    pub operator_url: Option<String>,
    /// Another RGS than the test's mock.
    pub rgs_url: Option<String>,
    /// The CA and client certificate of the operator's and the RGS's HTTPS.
    pub operator_tls: PeerTls,
    pub webhook_tls: PeerTls,
    /// The CA and client certificate of a `rediss://` `redis_url`.
    pub redis_tls: PeerTls,
}

pub const ADMIN_TOKEN: &str = "test-admin-token-0123456789";

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
            breaker: BreakerConfig {
                failure_ratio: 0.5,
                min_calls: 10,
                window: Duration::from_secs(30),
                open_for: Duration::from_secs(15),
            },
            governor_rpm: 0,
            redis_url: None,
            secrets: vec![SECRET.to_owned()],
            body_limit_bytes: 64 * 1024,
            webhook_schedule: [50, 100, 200].map(Duration::from_millis).to_vec(),
            webhook_lease: Duration::from_secs(30),
            webhook_concurrency: 8,
            webhook_batch_size: 50,
            webhook_attempt_timeout: Duration::from_secs(2),
            drain: true,
            admin_token: Some(ADMIN_TOKEN.to_owned()),
            completer_after: Duration::from_secs(3600),
            postgres_server: None,
            db_acquire_timeout: Duration::from_secs(10),
            debit_resume_window: Duration::from_secs(60),
            manual_review_after: Duration::from_secs(3600),
            completer_backoff_initial: Duration::from_secs(1),
            completer_backoff_max: Duration::from_secs(300),
            completer_concurrency: 8,
            operator_url: None,
            rgs_url: None,
            operator_tls: PeerTls::default(),
            webhook_tls: PeerTls::default(),
            redis_tls: PeerTls::default(),
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

fn test_database(backend: Backend, postgres_server: Option<&str>) -> (DatabaseUrl, TestDatabase) {
    match backend {
        Backend::Sqlite => {
            let dir = tempfile::tempdir().expect("temporary directory");
            (
                DatabaseUrl::Sqlite(dir.path().join("hub.db")),
                TestDatabase::Sqlite(dir),
            )
        }
        Backend::Postgres => {
            let admin_url = postgres_server.map(str::to_owned).unwrap_or_else(|| {
                std::env::var("TEST_DATABASE_URL")
                    .expect("the Postgres tests need TEST_DATABASE_URL, e.g. postgres://postgres@127.0.0.1:5432/test")
            });
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

/// A migrated database of `backend` and a connection to it (dropped with the database).
pub struct Db {
    pub conn: DbConnection,
    pub url: DatabaseUrl,
    _database: TestDatabase,
}

pub fn database(backend: Backend) -> Db {
    let (url, database) = test_database(backend, None);
    let mut conn = hub::store::establish(&url).expect("connect");
    hub::store::run_migrations(&mut conn).expect("migrate");
    Db {
        conn,
        url,
        _database: database,
    }
}

pub fn postgres_url(url: &DatabaseUrl) -> &str {
    match url {
        DatabaseUrl::Postgres(url) => url,
        DatabaseUrl::Sqlite(_) => unreachable!("a Postgres test"),
    }
}

/// The hub's configuration for a test, pointed at the test's database, operator and RGS.
pub fn config_for(
    url: DatabaseUrl,
    operator_base_url: String,
    rgs_url: String,
    options: &Options,
) -> Config {
    let env = Env::from_pairs([("HMAC_SECRETS", SECRET), ("WEBHOOK_SECRET", WEBHOOK_SECRET)]);
    let mut config = Config::from_env(&env, Defaults::SERVE).expect("test configuration is valid");
    config.listen_addr = "127.0.0.1:0".parse().unwrap();
    config.database = DatabaseConfig {
        url,
        pool_size: 8,
        acquire_timeout: options.db_acquire_timeout,
        group_commit: GroupLimits {
            max_batch: 64,
            writers: 2,
        },
    };
    config.hmac_secrets = options
        .secrets
        .iter()
        .map(|s| s.as_bytes().to_vec())
        .collect();
    config.operator = OperatorConfig {
        base_url: options.operator_url.clone().unwrap_or(operator_base_url),
        retry: options.retry.clone(),
        breaker: options.breaker.clone(),
        requests_per_minute: options.governor_rpm,
        redis_url: options.redis_url.clone(),
        redis_key_prefix: format!("hub-test-{}:", Uuid::new_v4().simple()),
        tls: options.operator_tls.clone(),
        redis_tls: options.redis_tls.clone(),
    };
    config.body_limit_bytes = options.body_limit_bytes;
    config.workers = 2;
    config.webhooks.drain = options.drain;
    config.webhooks.url = options.rgs_url.clone().unwrap_or(rgs_url);
    config.webhooks.schedule = options.webhook_schedule.clone();
    config.webhooks.lease = options.webhook_lease;
    config.webhooks.concurrency = options.webhook_concurrency;
    config.webhooks.batch_size = options.webhook_batch_size;
    config.webhooks.poll_interval = Duration::from_millis(100);
    config.webhooks.attempt_timeout = options.webhook_attempt_timeout;
    config.webhooks.tls = options.webhook_tls.clone();
    config.admin_token = options.admin_token.clone();
    config.recovery.abandoned_after = options.completer_after;
    config.recovery.every = Duration::from_millis(100);
    config.recovery.debit_resume_window = options.debit_resume_window;
    config.recovery.manual_review_after = options.manual_review_after;
    config.recovery.backoff_initial = options.completer_backoff_initial;
    config.recovery.backoff_max = options.completer_backoff_max;
    config.recovery.concurrency = options.completer_concurrency;
    config
}

/// One running hub process-equivalent: API, drainer and listener, stopped on drop.
pub struct Hub {
    pub address: String,
    /// Where `/metrics` is served: the API's address unless `METRICS_ADDR` moved it.
    pub metrics_address: String,
    pub store: Store,
    pub drainer: Drainer,
    pub supervisor: Supervisor,
    cancel: CancellationToken,
    running: Option<JoinHandle<std::io::Result<()>>>,
}

impl Hub {
    pub async fn start(config: Config) -> Self {
        let app = Application::build(config).await.expect("build the hub");
        let cancel = CancellationToken::new();
        Self {
            address: format!("http://{}", app.addr()),
            metrics_address: format!("http://{}", app.metrics_addr()),
            store: app.store().clone(),
            drainer: app.drainer(),
            supervisor: app.supervisor(),
            cancel: cancel.clone(),
            running: Some(tokio::spawn(app.run_until_cancelled(cancel))),
        }
    }

    /// Stops as on SIGTERM and waits until everything in flight has finished.
    pub async fn shut_down(mut self) {
        self.cancel.cancel();
        if let Some(running) = self.running.take() {
            running
                .await
                .expect("the hub task")
                .expect("the hub stops cleanly");
        }
    }
}

impl Drop for Hub {
    fn drop(&mut self) {
        self.cancel.cancel();
    }
}

pub struct TestApp {
    pub hub: Hub,
    pub address: String,
    pub store: Store,
    pub operator: MockOperator,
    pub rgs: MockRgs,
    pub client: reqwest::Client,
    pub database_url: DatabaseUrl,
    _database: TestDatabase,
}

pub const WEBHOOK_SECRET: &str = "test-webhook-secret-0123456789-abcdefgh";

impl TestApp {
    pub async fn spawn(backend: Backend) -> Self {
        Self::spawn_with(backend, Options::default()).await
    }

    pub async fn spawn_with(backend: Backend, options: Options) -> Self {
        let _ = tracing_subscriber::fmt()
            .with_test_writer()
            .with_env_filter("info")
            .try_init();
        let operator_config = MockOperatorConfig {
            requests_per_minute: options.operator_rpm,
            workers: 2,
        };
        let operator =
            MockOperator::start(ephemeral(), operator_config).expect("start the mock operator");
        let rgs_config = MockRgsConfig {
            key: WEBHOOK_SECRET.as_bytes().to_vec(),
            workers: 2,
        };
        let rgs = MockRgs::start(ephemeral(), rgs_config).expect("start the mock RGS");
        let (database_url, database) = test_database(backend, options.postgres_server.as_deref());
        let config = config_for(
            database_url.clone(),
            operator.base_url(),
            rgs.webhook_url(),
            &options,
        );
        let hub = Hub::start(config).await;
        Self {
            address: hub.address.clone(),
            store: hub.store.clone(),
            hub,
            operator,
            rgs,
            client: reqwest::Client::new(),
            database_url,
            _database: database,
        }
    }

    /// The configuration another replica of this hub would run with.
    pub fn replica_config(&self, options: &Options) -> Config {
        config_for(
            self.database_url.clone(),
            self.operator.base_url(),
            self.rgs.webhook_url(),
            options,
        )
    }

    /// Another hub on the same database, operator and RGS.
    pub async fn start_replica(&self, options: &Options) -> Hub {
        Hub::start(self.replica_config(options)).await
    }

    /// POSTs `body` to `path`, signed now with the test secret.
    pub async fn post_signed(&self, path: &str, key: &str, body: &str) -> reqwest::Response {
        post_signed(&self.client, &self.address, path, key, body).await
    }

    pub async fn debit(&self, key: &str, body: &Value) -> reqwest::Response {
        self.post_signed("/wallet/debit", key, &body.to_string())
            .await
    }

    pub async fn credit(&self, key: &str, body: &Value) -> reqwest::Response {
        self.post_signed("/wallet/credit", key, &body.to_string())
            .await
    }

    /// `POST /wallet/rollback` under `key`: body `{"playerId","refId","originalRefId",
    /// "roundId"?,"meta"?}`.
    pub async fn rollback(&self, key: &str, body: &Value) -> reqwest::Response {
        self.post_signed("/wallet/rollback", key, &body.to_string())
            .await
    }

    /// `POST /wallet/balance` (signed, no Idempotency-Key): body `{"playerId","currency"}`.
    pub async fn balance(&self, body: &Value) -> reqwest::Response {
        post_signed_without_key(
            &self.client,
            &self.address,
            "/wallet/balance",
            &body.to_string(),
        )
        .await
    }
}

fn ephemeral() -> TcpListener {
    TcpListener::bind("127.0.0.1:0").expect("bind an ephemeral port")
}

/// The Rust signing example of docs/INTEGRATION.md: every signed request of the suite goes
/// through it, so the published example is exercised, and the hub is checked against an HMAC
/// computed independently of its own signing code.
pub mod signing_example {
    include!("../../docs/snippets/sign.rs");
}

/// POSTs `body` to `address` + `path`, signed now with the test secret.
pub async fn try_post_signed(
    client: &reqwest::Client,
    address: &str,
    path: &str,
    key: &str,
    body: &str,
) -> Result<reqwest::Response, reqwest::Error> {
    let url = format!("{address}{path}");
    signing_example::signed_post(client, &url, SECRET.as_bytes(), key, body).await
}

pub async fn post_signed(
    client: &reqwest::Client,
    address: &str,
    path: &str,
    key: &str,
    body: &str,
) -> reqwest::Response {
    try_post_signed(client, address, path, key, body)
        .await
        .expect("the hub answers")
}

/// POSTs `body` to `address` + `path`, signed now with the test secret, without an
/// Idempotency-Key (a balance read, or a wallet call that forgot it).
pub async fn post_signed_without_key(
    client: &reqwest::Client,
    address: &str,
    path: &str,
    body: &str,
) -> reqwest::Response {
    let timestamp = chrono::Utc::now().timestamp().to_string();
    let signature = hub::signature::sign(SECRET.as_bytes(), body.as_bytes(), &timestamp);
    client
        .post(format!("{address}{path}"))
        .header("Content-Type", "application/json")
        .header("X-Timestamp", timestamp)
        .header("X-Signature", signature)
        .body(body.to_owned())
        .send()
        .await
        .expect("the hub answers")
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

/// The `/metrics` text of the hub at `address`, or `None` if it does not answer.
/// `GET url`, its body read as JSON.
pub async fn get_json(client: &reqwest::Client, url: &str) -> Value {
    client
        .get(url)
        .send()
        .await
        .expect("the server answers")
        .json()
        .await
        .expect("a JSON body")
}

pub async fn metrics_at(client: &reqwest::Client, address: &str) -> Option<String> {
    client
        .get(format!("{address}/metrics"))
        .send()
        .await
        .ok()?
        .text()
        .await
        .ok()
}

/// The value of one series (name and labels, as printed) in a `/metrics` text.
pub fn metric_value(metrics: &str, series: &str) -> Option<String> {
    metrics.lines().find_map(|line| {
        line.strip_prefix(series)?
            .strip_prefix(' ')
            .map(str::to_owned)
    })
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

    /// The hub's `/metrics` text, or `None` if it does not answer.
    pub async fn metrics_text(&self) -> Option<String> {
        metrics_at(&self.client, &self.hub.metrics_address).await
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

/// The outbox, as the tests look at it.
impl TestApp {
    pub async fn only_event_of(&self, transaction_id: &str) -> String {
        let events = self.outbox_for(transaction_id).await;
        assert_eq!(events.len(), 1, "one event per settled transaction");
        events[0].id.clone()
    }

    /// Debits player-001 one dollar and returns the id of the webhook event it produced.
    pub async fn debit_event(&self) -> String {
        let response = answer(
            self.debit(&new_key(), &wallet_body("player-001", 100, "USD"))
                .await,
        )
        .await;
        assert_eq!(response.status, 201, "{}", response.text);
        self.only_event_of(response.json["transactionId"].as_str().unwrap())
            .await
    }

    pub async fn event(&self, event_id: &str) -> OutboxRow {
        let id = event_id.to_owned();
        self.store
            .run(move |conn| outbox::find(conn, &id).map_err(StoreError::from))
            .await
            .expect("read the outbox")
            .expect("the event exists")
    }

    /// The transaction of `key` once it has `status`, waiting at most `within`.
    pub async fn wait_for_transaction(
        &self,
        key: &str,
        status: &str,
        within: Duration,
    ) -> TransactionRow {
        eventually(
            &format!("the transaction of key {key} to be {status}"),
            within,
            || async {
                self.transaction_for_key(key)
                    .await
                    .filter(|row| row.status == status)
            },
        )
        .await
    }

    pub async fn wait_for_status(&self, event_id: &str, status: &str) -> OutboxRow {
        eventually(
            &format!("event {event_id} to be {status}"),
            Duration::from_secs(20),
            || async { Some(self.event(event_id).await).filter(|row| row.status == status) },
        )
        .await
    }

    pub async fn attempts(&self, event_id: &str) -> Vec<AttemptRow> {
        let id = event_id.to_owned();
        self.store
            .run(move |conn| outbox::attempts_of(conn, &id).map_err(StoreError::from))
            .await
            .expect("read the attempts")
    }

    pub async fn all_events(&self) -> Vec<OutboxRow> {
        self.store
            .run(|conn| outbox::list(conn, &Window::default(), 100_000).map_err(StoreError::from))
            .await
            .expect("read the outbox")
    }

    /// Waits until the hub has recorded every event as delivered (the RGS sees a delivery
    /// a moment before the drainer records it).
    pub async fn wait_until_all_delivered(&self, expected: usize) {
        eventually(
            &format!("{expected} events recorded as delivered"),
            Duration::from_secs(20),
            || async {
                let events = self.all_events().await;
                (events.len() == expected && events.iter().all(|e| e.status == "DELIVERED"))
                    .then_some(())
            },
        )
        .await
    }

    /// The drainers that recorded at least one attempt.
    pub async fn attempt_workers(&self) -> HashSet<String> {
        use diesel::prelude::*;
        use hub::store::schema::webhook_attempts::dsl as a;
        let workers: Vec<String> = self
            .store
            .run(|conn| {
                let query = a::webhook_attempts.select(a::worker).distinct();
                match conn {
                    DbConnection::Postgres(c) => query.load(c),
                    DbConnection::Sqlite(c) => query.load(c),
                }
                .map_err(StoreError::from)
            })
            .await
            .expect("read the attempts");
        workers.into_iter().collect()
    }

    /// Runs the `hub` binary against this test's database.
    pub fn hub_cli(&self, args: &[&str]) -> std::process::Output {
        self.hub_cli_with(args, &[])
    }

    /// Runs the `hub` binary against this test's database, with more environment.
    pub fn hub_cli_with(&self, args: &[&str], env: &[(&str, &str)]) -> std::process::Output {
        let url = match &self.database_url {
            DatabaseUrl::Postgres(url) => url.clone(),
            DatabaseUrl::Sqlite(path) => format!("sqlite://{}", path.display()),
        };
        std::process::Command::new(env!("CARGO_BIN_EXE_hub"))
            .args(args)
            .env("DATABASE_URL", url)
            .envs(env.iter().copied())
            .output()
            .expect("run the hub binary")
    }
}

/// A `hub serve` process on the test's database, operator and RGS; SIGKILLed when dropped.
pub struct HubProcess {
    child: std::process::Child,
    pub address: String,
}

impl HubProcess {
    /// Whether the process is still running (it has not exited or crashed).
    pub fn is_running(&mut self) -> bool {
        matches!(self.child.try_wait(), Ok(None))
    }
}

impl Drop for HubProcess {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Starts `hub serve` on port 0 (its address read from its "hub listening" log line).
pub fn spawn_hub_process(app: &TestApp, env: &[(&str, &str)]) -> HubProcess {
    use std::io::{BufRead, BufReader};
    use std::process::{Command, Stdio};
    let database_url = match &app.database_url {
        DatabaseUrl::Postgres(url) => url.clone(),
        DatabaseUrl::Sqlite(path) => format!("sqlite://{}", path.display()),
    };
    let mut child = Command::new(env!("CARGO_BIN_EXE_hub"))
        .arg("serve")
        .env("LISTEN_ADDR", "127.0.0.1:0")
        .env("LOG_FORMAT", "json")
        .env("RUST_LOG", "info")
        .env("DATABASE_URL", database_url)
        .env("OPERATOR_BASE_URL", app.operator.base_url())
        .env("RGS_WEBHOOK_URL", app.rgs.webhook_url())
        .env("HMAC_SECRETS", SECRET)
        .env("WEBHOOK_SECRET", WEBHOOK_SECRET)
        .env("WEBHOOK_RETRY_SCHEDULE", "100ms,200ms,400ms")
        .env("WEBHOOK_POLL_INTERVAL_MS", "100")
        .envs(env.iter().copied())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .expect("start hub serve");
    let mut lines = BufReader::new(child.stderr.take().unwrap()).lines();
    let address = loop {
        let line = lines
            .next()
            .expect("hub serve exited before listening")
            .unwrap();
        let Ok(entry) = serde_json::from_str::<Value>(&line) else {
            continue;
        };
        if entry["fields"]["message"] == "hub listening" {
            break format!("http://{}", entry["fields"]["addr"].as_str().unwrap());
        }
    };
    // Keep reading so that the process never blocks on a full pipe.
    std::thread::spawn(move || for _ in lines {});
    HubProcess { child, address }
}
