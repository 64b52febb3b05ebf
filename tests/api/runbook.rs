//! Every SQL query of docs/RUNBOOK.md runs against a real Postgres with the real schema and
//! some real traffic in it, so the runbook cannot silently rot.

use std::time::Duration;

use diesel::RunQueryDsl;
use hub::store::{DbConnection, StoreError};
use mock_operator::FaultKind;
use serde_json::json;

use crate::helpers::{answer, new_key, wallet_body, Backend, Options, TestApp};

fn runbook_queries() -> Vec<String> {
    let runbook =
        std::fs::read_to_string(format!("{}/docs/RUNBOOK.md", env!("CARGO_MANIFEST_DIR"))).unwrap();
    runbook
        .split("```sql\n")
        .skip(1)
        .map(|block| block.split("```").next().unwrap().to_owned())
        .collect()
}

#[tokio::test]
#[cfg_attr(
    not(postgres_tests),
    ignore = "set TEST_DATABASE_URL to run the Postgres half"
)]
async fn every_runbook_query_runs_on_postgres() {
    let mut options = Options::default();
    options.retry.deadline = Duration::from_millis(300);
    let app = TestApp::spawn_with(Backend::Postgres, options).await;
    let done = answer(
        app.debit(&new_key(), &wallet_body("player-001", 100, "USD"))
            .await,
    )
    .await;
    assert_eq!(done.status, 201);
    // A rolled-back debit and a tombstone, for the rollback queries.
    let ref_id = done.json["refId"].as_str().unwrap();
    for original in [ref_id, "never-seen"] {
        let rollback = json!({
            "playerId": "player-001",
            "refId": format!("rollback-{original}"),
            "originalRefId": original,
        });
        let rolled_back = app
            .post_signed("/wallet/rollback", &new_key(), &rollback.to_string())
            .await;
        assert_eq!(rolled_back.status(), 201);
    }
    app.operator.inject_fault(FaultKind::ServerError, 1000);
    assert_eq!(
        app.debit(&new_key(), &wallet_body("player-001", 100, "USD"))
            .await
            .status(),
        502
    );
    let queries = runbook_queries();
    assert!(queries.len() >= 10, "found only {} queries", queries.len());

    for query in queries {
        let sql = query.clone();
        let ran = app
            .store
            .run(move |conn| match conn {
                DbConnection::Postgres(c) => {
                    diesel::sql_query(sql).execute(c).map_err(StoreError::from)
                }
                DbConnection::Sqlite(_) => unreachable!("the runbook is for Postgres"),
            })
            .await;
        assert!(ran.is_ok(), "runbook query failed: {ran:?}\n{query}");
    }
}
