//! Migrations, one tree per backend, embedded in the binary.

use diesel::{QueryableByName, RunQueryDsl, SqliteConnection};
use diesel_migrations::{embed_migrations, EmbeddedMigrations, MigrationHarness};

use super::{DbConnection, StoreError};

const POSTGRES: EmbeddedMigrations = embed_migrations!("migrations/postgres");
const SQLITE: EmbeddedMigrations = embed_migrations!("migrations/sqlite");

/// Serialises migrations when several replicas start against one Postgres at once.
const MIGRATION_LOCK: i64 = 0x6875_625f_6d69_6772; // "hub_migr"

/// Applies every pending migration; returns the versions applied.
pub fn run_migrations(conn: &mut DbConnection) -> Result<Vec<String>, StoreError> {
    let failed = |e: Box<dyn std::error::Error + Send + Sync>| StoreError::Migration(e.to_string());
    let applied = match conn {
        DbConnection::Postgres(c) => {
            diesel::sql_query(format!("SELECT pg_advisory_lock({MIGRATION_LOCK})")).execute(c)?;
            let result = c
                .run_pending_migrations(POSTGRES)
                .map(|v| v.iter().map(ToString::to_string).collect());
            diesel::sql_query(format!("SELECT pg_advisory_unlock({MIGRATION_LOCK})")).execute(c)?;
            result.map_err(failed)?
        }
        DbConnection::Sqlite(c) => {
            record_a_finished_rebuild(c)?;
            c.run_pending_migrations(SQLITE)
                .map(|v| v.iter().map(ToString::to_string).collect())
                .map_err(failed)?
        }
    };
    Ok(applied)
}

/// SQLite's rollback migration rebuilds `transactions` in a transaction of its own (it cannot
/// alter a CHECK in place), and diesel records it only after that commits. A crash between
/// the two would run the rebuild again over rows that already use the new columns, losing
/// them; so a rebuild that is there is recorded first.
fn record_a_finished_rebuild(c: &mut SqliteConnection) -> Result<(), StoreError> {
    #[derive(QueryableByName)]
    struct Found {
        #[diesel(sql_type = diesel::sql_types::BigInt)]
        count: i64,
    }
    let rebuilt: Found = diesel::sql_query(
        "SELECT (SELECT COUNT(*) FROM sqlite_master WHERE name = '__diesel_schema_migrations') \
              * (SELECT COUNT(*) FROM pragma_table_info('transactions') \
                 WHERE name = 'original_ref_id') AS count",
    )
    .get_result(c)?;
    if rebuilt.count > 0 {
        diesel::sql_query(format!(
            "INSERT OR IGNORE INTO __diesel_schema_migrations (version) VALUES ('{SQLITE_REBUILD}')"
        ))
        .execute(c)?;
    }
    Ok(())
}

/// The version diesel gives `2026-11-24-000005_rollbacks_and_rounds`.
const SQLITE_REBUILD: &str = "20261124000005";
