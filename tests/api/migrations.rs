//! Migrations that must survive a crash at the worst moment.

use std::time::Duration;

use diesel::connection::SimpleConnection;
use diesel::RunQueryDsl;
use hub::store::group_commit::GroupLimits;
use hub::store::{DatabaseConfig, DatabaseUrl};
use hub::store::{DbConnection, Store, StoreError};

fn sqlite_config(path: &std::path::Path) -> DatabaseConfig {
    DatabaseConfig {
        url: DatabaseUrl::Sqlite(path.to_path_buf()),
        pool_size: 2,
        acquire_timeout: Duration::from_secs(5),
        group_commit: GroupLimits {
            max_batch: 64,
            writers: 1,
        },
    }
}

#[derive(diesel::QueryableByName)]
struct Round {
    #[diesel(sql_type = diesel::sql_types::Nullable<diesel::sql_types::Text>)]
    round_id: Option<String>,
}

/// SQLite's rebuild of `transactions` commits before diesel records it. If the hub died
/// between the two, the next start must not rebuild again over rows using the new columns
/// (that would drop their rounds, or fail on a ROLLBACK row forever).
#[tokio::test]
async fn a_sqlite_rebuild_committed_but_not_recorded_is_not_run_again() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("hub.db");
    let store = Store::connect(&sqlite_config(&path)).expect("first start migrates");
    store
        .run(|conn| {
            let DbConnection::Sqlite(c) = conn else {
                unreachable!("a SQLite store")
            };
            c.batch_execute(
                "INSERT INTO transactions (id, idempotency_key, ref_id, player_id, kind,
                     amount_cents, currency, status, created_at, updated_at, round_id,
                     original_ref_id)
                 VALUES ('t1', 'k1', 'r1', 'p', 'ROLLBACK', 0, '', 'COMPLETED',
                     '2026-11-24 00:00:00', '2026-11-24 00:00:00', 'round-9', 'gone');
                 DELETE FROM __diesel_schema_migrations WHERE version = '20261124000005';",
            )
            .map_err(StoreError::from)
        })
        .await
        .unwrap();
    drop(store);

    let store = Store::connect(&sqlite_config(&path)).expect("the second start comes up");
    let rounds: Vec<Round> = store
        .run(|conn| {
            let DbConnection::Sqlite(c) = conn else {
                unreachable!("a SQLite store")
            };
            diesel::sql_query("SELECT round_id FROM transactions WHERE id = 't1'")
                .load(c)
                .map_err(StoreError::from)
        })
        .await
        .unwrap();
    assert_eq!(rounds.len(), 1);
    assert_eq!(
        rounds[0].round_id.as_deref(),
        Some("round-9"),
        "nothing lost"
    );
}
