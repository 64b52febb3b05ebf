//! The pool against a real Postgres whose server side of a pooled connection is gone: a
//! dead connection is not handed out again, and the request that meets one sees an outage.

use std::time::Duration;

use diesel::prelude::*;
use hub::store::group_commit::GroupLimits;
use hub::store::{DatabaseConfig, DatabaseUrl, DbConnection, Store, StoreError};

use crate::helpers::{database, postgres_url, Backend};

/// Terminates every other connection to the database behind `url`, as a restart would.
fn kill_other_backends(url: &str) -> usize {
    #[derive(QueryableByName)]
    struct Killed {
        #[diesel(sql_type = diesel::sql_types::BigInt)]
        killed: i64,
    }
    let mut killer = PgConnection::establish(url).unwrap();
    let killed: Killed = diesel::sql_query(
        "SELECT count(pg_terminate_backend(pid)) AS killed FROM pg_stat_activity \
         WHERE datname = current_database() AND pid <> pg_backend_pid()",
    )
    .get_result(&mut killer)
    .unwrap();
    usize::try_from(killed.killed).unwrap()
}

/// A pool of one connection, so that the next request gets the connection the last one used.
fn pool(url: &DatabaseUrl) -> Store {
    let config = DatabaseConfig {
        url: url.clone(),
        pool_size: 1,
        acquire_timeout: Duration::from_secs(5),
        group_commit: GroupLimits {
            max_batch: 64,
            writers: 1,
        },
    };
    Store::connect(&config).expect("open the pool")
}

async fn select_one(store: &Store) -> Result<(), StoreError> {
    store
        .run(|conn| {
            let selected = match conn {
                DbConnection::Postgres(c) => diesel::sql_query("SELECT 1").execute(c),
                DbConnection::Sqlite(c) => diesel::sql_query("SELECT 1").execute(c),
            };
            selected.map(|_| ()).map_err(StoreError::from)
        })
        .await
}

#[tokio::test]
#[cfg_attr(
    not(postgres_tests),
    ignore = "set TEST_DATABASE_URL to run the Postgres half"
)]
async fn a_pooled_connection_killed_while_idle_is_not_handed_out() {
    let db = database(Backend::Postgres);
    let store = pool(&db.url);
    select_one(&store).await.unwrap();
    assert!(kill_other_backends(postgres_url(&db.url)) >= 1);
    // Idle past the threshold, as a pool is across a database restart: pinged at checkout.
    tokio::time::sleep(Duration::from_millis(1_100)).await;
    select_one(&store)
        .await
        .expect("the dead connection was replaced at checkout");
}

#[tokio::test]
#[cfg_attr(
    not(postgres_tests),
    ignore = "set TEST_DATABASE_URL to run the Postgres half"
)]
async fn a_pooled_connection_killed_between_requests_fails_one_as_an_outage_then_is_replaced() {
    let db = database(Backend::Postgres);
    let store = pool(&db.url);
    select_one(&store).await.unwrap();
    assert!(kill_other_backends(postgres_url(&db.url)) >= 1);
    // Used a moment ago, so handed out without a ping: the request that meets the dead
    // connection fails, as an outage (a 503 to a client), never as a query fault (a 500).
    // On a machine slow enough to pass the idle threshold here it is pinged and succeeds.
    match select_one(&store).await {
        Ok(()) | Err(StoreError::Unavailable(_)) => {}
        Err(other) => panic!("a lost connection must be an outage, not {other}"),
    }
    select_one(&store)
        .await
        .expect("the dead connection was dropped, not pooled again");
}
