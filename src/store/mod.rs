//! Storage over Postgres or embedded SQLite with one diesel code base.
//!
//! [`DbConnection`] is an enum over the two diesel connections; [`with_conn!`] expands one
//! query for each, so every query is written once and type-checked against both backends.
//! All database work runs on the blocking pool through [`Store::run`].

pub mod claims;
pub mod group_commit;
pub mod idempotency_keys;
mod migrations;
pub mod outbox;
pub mod postgres_tls;
pub mod schema;
mod settings;
pub mod settlements;
pub mod transactions;
mod values;

use std::path::Path;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use diesel::connection::{AnsiTransactionManager, SimpleConnection, TransactionManager};
use diesel::r2d2;
use diesel::result::DatabaseErrorKind;
use diesel::{Connection, PgConnection, RunQueryDsl, SqliteConnection};

use crate::settings::redact_url;

use group_commit::{GroupCommit, GroupLimits, GroupObserver, GroupWrite};
pub use migrations::run_migrations;
pub use settings::{DatabaseConfig, DatabaseUrl};

pub enum DbConnection {
    Postgres(PgConnection),
    Sqlite(SqliteConnection),
}

/// Runs `$body` with `$c` bound to the concrete diesel connection of either backend.
macro_rules! with_conn {
    ($conn:expr, |$c:ident| $body:expr) => {
        match $conn {
            $crate::store::DbConnection::Postgres($c) => $body,
            $crate::store::DbConnection::Sqlite($c) => $body,
        }
    };
}
pub(crate) use with_conn;

#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("database unavailable: {0}")]
    Unavailable(String),
    #[error("database error: {0}")]
    Query(diesel::result::Error),
    #[error("migration failed: {0}")]
    Migration(String),
    #[error("database task did not finish")]
    TaskFailed,
    #[error("invariant broken: {0}")]
    Invariant(String),
}

impl From<diesel::result::Error> for StoreError {
    /// A connection the server closed is an outage (503), not a fault of the query (500).
    fn from(error: diesel::result::Error) -> Self {
        match error {
            diesel::result::Error::DatabaseError(DatabaseErrorKind::ClosedConnection, info) => {
                StoreError::Unavailable(info.message().to_owned())
            }
            other => StoreError::Query(other),
        }
    }
}

impl StoreError {
    /// The database could not be reached: writing a group's items again, one by one, would
    /// only make each of them wait for the pool in turn.
    pub fn is_outage(&self) -> bool {
        matches!(
            self,
            StoreError::Unavailable(_)
                | StoreError::TaskFailed
                | StoreError::Query(diesel::result::Error::BrokenTransactionManager)
        )
    }

    /// The same error for another caller of one failed group write (a diesel error is not
    /// `Clone`; its text is what is kept).
    pub fn duplicate(&self) -> StoreError {
        match self {
            StoreError::Unavailable(reason) => StoreError::Unavailable(reason.clone()),
            StoreError::Query(error) => StoreError::Unavailable(error.to_string()),
            StoreError::Migration(reason) => StoreError::Migration(reason.clone()),
            StoreError::TaskFailed => StoreError::TaskFailed,
            StoreError::Invariant(reason) => StoreError::Invariant(reason.clone()),
        }
    }
}

impl DbConnection {
    /// Runs `work` in one database transaction that takes the write lock up front: plain
    /// `BEGIN` on Postgres, `BEGIN IMMEDIATE` on SQLite, whose deferred transactions can
    /// otherwise fail to upgrade from reader to writer under concurrency.
    pub fn write_transaction<T, E>(
        &mut self,
        work: impl FnOnce(&mut DbConnection) -> Result<T, E>,
    ) -> Result<T, E>
    where
        E: From<StoreError>,
    {
        let begun = match self {
            DbConnection::Postgres(c) => AnsiTransactionManager::begin_transaction(c),
            DbConnection::Sqlite(c) => {
                AnsiTransactionManager::begin_transaction_sql(c, "BEGIN IMMEDIATE")
            }
        };
        begun.map_err(StoreError::from)?;
        match work(self) {
            Ok(value) => {
                match with_conn!(self, |c| AnsiTransactionManager::commit_transaction(c)) {
                    Ok(()) => Ok(value),
                    Err(error) => {
                        // A failed COMMIT can leave the transaction open; closing it keeps the
                        // pooled connection usable. The commit error is the one that matters.
                        let _ =
                            with_conn!(self, |c| AnsiTransactionManager::rollback_transaction(c));
                        Err(StoreError::from(error).into())
                    }
                }
            }
            Err(error) => {
                with_conn!(self, |c| AnsiTransactionManager::rollback_transaction(c))
                    .map_err(StoreError::from)?;
                Err(error)
            }
        }
    }

    fn ping(&mut self) -> Result<(), diesel::result::Error> {
        with_conn!(self, |c| diesel::sql_query("SELECT 1").execute(c)).map(|_| ())
    }

    fn is_broken(&mut self) -> bool {
        with_conn!(self, |c| {
            AnsiTransactionManager::is_broken_transaction_manager(c)
        })
    }
}

#[derive(Debug, thiserror::Error)]
#[error("{0}")]
pub struct ConnectError(String);

/// Opens connections of the configured backend, with SQLite's per-connection settings.
pub struct ConnectionManager {
    url: DatabaseUrl,
    /// Connections found dead so far (see [`PooledConnection`]).
    losses: Arc<AtomicU64>,
}

const SQLITE_SETUP: &str = "PRAGMA journal_mode = WAL; PRAGMA synchronous = FULL; \
                            PRAGMA busy_timeout = 10000; PRAGMA foreign_keys = ON;";

pub fn establish(url: &DatabaseUrl) -> Result<DbConnection, ConnectError> {
    match url {
        // libpq's message spans lines; the URL (without its password) shows which sslmode
        // and sslrootcert a TLS failure was met with.
        DatabaseUrl::Postgres(url) => {
            init_openssl();
            PgConnection::establish(url)
                .map(DbConnection::Postgres)
                .map_err(|e| {
                    let reason: Vec<String> = e
                        .to_string()
                        .lines()
                        .map(str::trim)
                        .map(str::to_owned)
                        .collect();
                    ConnectError(format!(
                        "cannot connect to Postgres at DATABASE_URL {}: {}",
                        redact_url(url),
                        reason.join(" ").trim()
                    ))
                })
        }
        DatabaseUrl::Sqlite(path) => {
            let path_text = path
                .to_str()
                .ok_or_else(|| ConnectError("the SQLite path must be UTF-8".into()))?;
            let mut conn = SqliteConnection::establish(path_text).map_err(|e| {
                ConnectError(format!("cannot open SQLite database {path_text}: {e}"))
            })?;
            conn.batch_execute(SQLITE_SETUP).map_err(|e| {
                ConnectError(format!("cannot configure SQLite database {path_text}: {e}"))
            })?;
            Ok(DbConnection::Sqlite(conn))
        }
    }
}

/// Initialises OpenSSL before libpq does, without its exit handler: OpenSSL's `atexit`
/// cleanup frees the library while pooled connections on other threads may still use it,
/// which crashed one `hub reconcile` in ten at exit. Idempotent and cheap.
fn init_openssl() {
    openssl_sys::init();
}

/// How long a connection may sit idle in the pool and still be handed out without a ping.
/// A busy pool reuses connections within milliseconds and never pings; one idle longer may
/// have outlived its server (a restart, an idle timeout, a failover), and a ping costs
/// nothing there, since nobody is waiting on the pool. A connection that dies while in use
/// is caught by [`PooledConnection::after_work`] instead.
const PING_IF_IDLE_FOR: Duration = Duration::from_secs(1);

/// A pooled connection with what the pool knows of it without asking the server.
pub struct PooledConnection {
    conn: DbConnection,
    /// Work on it failed and the server did not answer a ping after: discarded at return.
    lost: bool,
    /// When work last ended on it (or it was opened).
    last_used: Instant,
    /// Connections of this pool found dead so far, shared by all of them; and how many of
    /// those this one had seen when it last answered. One dead connection (a database
    /// restart) makes every other one answer a ping before it is handed out again.
    losses: Arc<AtomicU64>,
    losses_seen: u64,
}

impl PooledConnection {
    fn new(conn: DbConnection, losses: Arc<AtomicU64>) -> Self {
        Self {
            conn,
            lost: false,
            last_used: Instant::now(),
            losses_seen: losses.load(Ordering::Relaxed),
            losses,
        }
    }

    /// Called once work on the connection ended. A failure is the connection's own when the
    /// server no longer answers a ping right after it: the connection is marked lost (so
    /// the pool drops it instead of handing it out again) and the failure is an outage,
    /// which is returned. Costs a round trip only after a failure.
    fn after_work(&mut self, failed: bool) -> Option<StoreError> {
        self.last_used = Instant::now();
        if !failed {
            return None;
        }
        let error = self.conn.ping().err()?;
        self.lost = true;
        self.losses.fetch_add(1, Ordering::Relaxed);
        Some(StoreError::Unavailable(format!(
            "the database connection was lost: {error}"
        )))
    }
}

/// Checks out without a round trip unless the connection sat idle past [`PING_IF_IDLE_FOR`];
/// diesel exposes no cheaper sign of a dead Postgres connection (libpq's status and socket
/// are private to `PgConnection`, and libpq only learns of a closed socket by using it).
impl r2d2::ManageConnection for ConnectionManager {
    type Connection = PooledConnection;
    type Error = ConnectError;

    fn connect(&self) -> Result<PooledConnection, ConnectError> {
        establish(&self.url).map(|conn| PooledConnection::new(conn, self.losses.clone()))
    }

    fn is_valid(&self, pooled: &mut PooledConnection) -> Result<(), ConnectError> {
        let losses = self.losses.load(Ordering::Relaxed);
        if pooled.last_used.elapsed() < PING_IF_IDLE_FOR && pooled.losses_seen == losses {
            return Ok(());
        }
        pooled
            .conn
            .ping()
            .map_err(|e| ConnectError(e.to_string()))?;
        pooled.losses_seen = losses;
        Ok(())
    }

    fn has_broken(&self, pooled: &mut PooledConnection) -> bool {
        pooled.lost || pooled.conn.is_broken()
    }
}

/// The connection pool; cheap to clone.
#[derive(Clone)]
pub struct Store {
    pool: r2d2::Pool<ConnectionManager>,
    group_limits: GroupLimits,
}

impl Store {
    /// Applies pending migrations, then opens the pool.
    pub fn connect(config: &DatabaseConfig) -> Result<Self, StoreError> {
        if let DatabaseUrl::Sqlite(path) = &config.url {
            create_parent_dir(path)?;
        }
        let mut conn = establish(&config.url).map_err(|e| StoreError::Unavailable(e.0))?;
        run_migrations(&mut conn)?;
        let pool = r2d2::Pool::builder()
            .max_size(config.pool_size)
            .min_idle(Some(1))
            .connection_timeout(config.acquire_timeout)
            .build(ConnectionManager {
                url: config.url.clone(),
                losses: Arc::default(),
            })
            .map_err(|e| StoreError::Unavailable(e.to_string()))?;
        Ok(Self {
            pool,
            group_limits: config.group_commit,
        })
    }

    /// Groups concurrent `write`s into shared commits, within the configured limits.
    pub fn group_commit<W: GroupWrite>(
        &self,
        write: W,
        observer: Arc<dyn GroupObserver>,
    ) -> GroupCommit<W> {
        GroupCommit::new(self.clone(), write, self.group_limits, observer)
    }

    /// Runs blocking database work off the async executor, with a pooled connection that is
    /// returned as soon as `work` ends. When `work` fails because the connection died (the
    /// server no longer answers), the error is [`StoreError::Unavailable`], an outage rather
    /// than a fault of the query, and the connection is dropped instead of pooled again.
    pub async fn run<T, E, F>(&self, work: F) -> Result<T, E>
    where
        F: FnOnce(&mut DbConnection) -> Result<T, E> + Send + 'static,
        T: Send + 'static,
        E: From<StoreError> + Send + 'static,
    {
        let pool = self.pool.clone();
        tokio::task::spawn_blocking(move || {
            let mut pooled = pool
                .get()
                .map_err(|e| StoreError::Unavailable(e.to_string()))?;
            let result = work(&mut pooled.conn);
            match pooled.after_work(result.is_err()) {
                Some(lost) => Err(lost.into()),
                None => result,
            }
        })
        .await
        .map_err(|_| StoreError::TaskFailed)?
    }

    /// Pooled connections (in use, idle).
    pub fn connections(&self) -> (u32, u32) {
        let state = self.pool.state();
        (
            state.connections - state.idle_connections,
            state.idle_connections,
        )
    }

    /// True when a connection can be had and answers.
    pub async fn is_reachable(&self) -> bool {
        self.run(|conn| conn.ping().map_err(StoreError::from))
            .await
            .is_ok()
    }
}

fn create_parent_dir(path: &Path) -> Result<(), StoreError> {
    match path.parent() {
        Some(dir) if !dir.as_os_str().is_empty() => std::fs::create_dir_all(dir)
            .map_err(|e| StoreError::Unavailable(format!("cannot create {}: {e}", dir.display()))),
        _ => Ok(()),
    }
}
