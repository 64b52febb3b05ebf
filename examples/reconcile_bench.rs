//! Benchmark of `hub reconcile` over one day of N transactions on each side (not a test).
//!
//! Writes N settled transactions for 2024-03-01 straight into DATABASE_URL (which should be
//! an empty database), seeds a mock operator in this process with the same N records, then
//! runs the release `hub reconcile` binary against both and reports its wall time and peak
//! resident memory. Build the binary first:
//!
//! ```sh
//! cargo build --release
//! DATABASE_URL=postgres://postgres@127.0.0.1:5432/hub_bench \
//!   cargo run --release --example reconcile_bench -- 1000000
//! ```

use std::net::TcpListener;
use std::process::Command;
use std::time::Instant;

use chrono::{NaiveDate, TimeDelta};
use hub::config::Env;
use hub::store::transactions::{self, TransactionRow, COMPLETED};
use hub::store::DatabaseConfig;
use hub::store::{Store, StoreError};
use mock_operator::{MockOperator, MockOperatorConfig, Operation, TransactionRecord};

const BATCH: usize = 2000;

fn row(index: usize, count: usize) -> TransactionRow {
    let day = NaiveDate::from_ymd_opt(2024, 3, 1)
        .unwrap()
        .and_hms_opt(0, 0, 0)
        .unwrap();
    // Spread over the day, in id order as UUIDv7 ids would be.
    let created_at = day + TimeDelta::milliseconds(index as i64 * 86_399_000 / count as i64);
    TransactionRow {
        id: format!("bench-{index:09}"),
        idempotency_key: format!("bench-key-{index:09}"),
        ref_id: format!("bench-ref-{index:09}"),
        player_id: format!("player-{:03}", index % 500),
        kind: if index % 3 == 0 { "CREDIT" } else { "DEBIT" }.into(),
        amount_cents: 1 + (index as i64 * 7919) % 100_000,
        currency: "USD".into(),
        status: COMPLETED.into(),
        reason: None,
        balance_cents: Some(0),
        operator_reference: None,
        meta: None,
        correlation_id: None,
        created_at,
        updated_at: created_at,
        recovery_attempts: 0,
        next_recovery_at: None,
        review_since: None,
        round_id: None,
        round_closed: false,
        original_ref_id: None,
        original_transaction_id: None,
    }
}

fn record(row: &TransactionRow) -> TransactionRecord {
    let operation = if row.kind == "CREDIT" {
        Operation::Deposit
    } else {
        Operation::Withdraw
    };
    let at = (row.created_at + TimeDelta::milliseconds(3)).and_utc();
    TransactionRecord::settled(
        &row.id,
        &row.player_id,
        operation,
        row.amount_cents,
        &row.currency,
        "SUCCESS",
        at,
    )
}

/// The child's peak resident memory so far (`VmHWM`, which starts afresh at `exec`, so the
/// seeded records of this process do not count), in KiB.
fn peak_rss_kib(pid: u32) -> Option<u64> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    let line = status.lines().find(|l| l.starts_with("VmHWM:"))?;
    line.split_whitespace().nth(1)?.parse().ok()
}

#[tokio::main]
async fn main() -> Result<(), String> {
    let count: usize = std::env::args()
        .nth(1)
        .map_or(Ok(1_000_000), |n| n.parse())
        .map_err(|_| "N must be a number")?;
    let database = DatabaseConfig::from_env(&Env::from_process()).map_err(|e| e.to_string())?;
    let store = Store::connect(&database).map_err(|e| e.to_string())?;

    let started = Instant::now();
    for start in (0..count).step_by(BATCH) {
        let rows: Vec<TransactionRow> = (start..(start + BATCH).min(count))
            .map(|i| row(i, count))
            .collect();
        store
            .run(move |conn| transactions::insert_many(conn, &rows).map_err(StoreError::from))
            .await
            .map_err(|e| e.to_string())?;
    }
    println!(
        "wrote {count} hub transactions in {:.1} s",
        started.elapsed().as_secs_f64()
    );

    let listener = TcpListener::bind("127.0.0.1:0").map_err(|e| e.to_string())?;
    let operator = MockOperator::start(
        listener,
        MockOperatorConfig {
            requests_per_minute: 0,
            workers: 1,
        },
    )
    .map_err(|e| e.to_string())?;
    operator.seed((0..count).map(|i| record(&row(i, count))));
    println!("seeded the mock operator with {count} records");

    let out = std::env::temp_dir().join("hub-reconcile-bench");
    let started = Instant::now();
    let mut child = Command::new("target/release/hub")
        .args([
            "reconcile",
            "--from",
            "2024-03-01",
            "--to",
            "2024-03-01",
            "--out",
        ])
        .arg(&out)
        .env("OPERATOR_BASE_URL", operator.base_url())
        .spawn()
        .map_err(|e| {
            format!("run target/release/hub (build it with cargo build --release): {e}")
        })?;
    let mut peak_kib = 0;
    let status = loop {
        if let Some(status) = child.try_wait().map_err(|e| e.to_string())? {
            break status;
        }
        peak_kib = peak_kib.max(peak_rss_kib(child.id()).unwrap_or(0));
        tokio::time::sleep(std::time::Duration::from_millis(5)).await;
    };
    println!(
        "reconcile of {count} transactions per side: exit {}, wall {:.2} s, peak RSS {:.1} MiB",
        status.code().unwrap_or(-1),
        started.elapsed().as_secs_f64(),
        peak_kib as f64 / 1024.0
    );
    Ok(())
}
