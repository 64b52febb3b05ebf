//! `hub reconcile` as ops run it: the real binary against the test's database and mock
//! operator, judged by its exit code and the files it leaves.

use std::collections::BTreeMap;
use std::path::Path;
use std::time::Duration;

use chrono::{DateTime, NaiveDate, TimeDelta, Utc};
use hub::store::transactions::{self, TransactionRow};
use hub::store::StoreError;
use mock_operator::{Drift, FaultKind, Operation, RollbackDetails, TransactionRecord};

use serde_json::{json, Value};

use crate::helpers::{
    answer, new_key, on_both_backends, wallet_body, Answer, Backend, Options, TestApp,
};

on_both_backends!(
    a_clean_window_passes_with_an_empty_detail_and_right_counts,
    every_kind_of_drift_is_reported_in_its_category,
    a_young_pending_transaction_fails_the_run_only_past_its_grace_period,
    window_edges_put_each_transaction_in_its_own_day,
    a_run_that_cannot_finish_exits_2_and_claims_nothing,
    rollbacks_of_every_kind_leave_a_day_that_agrees,
    a_refund_the_hub_never_asked_for_is_refunded_but_completed,
    a_rolled_back_debit_whose_refund_the_operator_lost_is_charged_but_rolled_back,
    a_debit_rolled_back_after_its_window_meets_its_refund_there,
);

struct Run {
    code: i32,
    stdout: String,
    stderr: String,
    out: tempfile::TempDir,
}

impl Run {
    fn files(&self) -> Vec<String> {
        let mut names: Vec<String> = std::fs::read_dir(self.out.path())
            .map(|dir| {
                dir.map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
                    .collect()
            })
            .unwrap_or_default();
        names.sort();
        names
    }

    /// The detail CSV, one map per finding.
    fn findings(&self) -> Vec<BTreeMap<String, String>> {
        let csv = self
            .files()
            .into_iter()
            .find(|f| f.ends_with(".csv"))
            .expect("a detail file");
        let mut reader = csv::Reader::from_path(self.out.path().join(csv)).unwrap();
        reader.deserialize().map(|row| row.unwrap()).collect()
    }

    fn summary(&self) -> String {
        let name = self
            .files()
            .into_iter()
            .find(|f| f.ends_with("-summary.txt"))
            .expect("a summary file");
        std::fs::read_to_string(self.out.path().join(name)).unwrap()
    }
}

fn reconcile(app: &TestApp, operator_url: &str, args: &[&str]) -> Run {
    let out = tempfile::tempdir().unwrap();
    let mut all = vec!["reconcile", "--out", out.path().to_str().unwrap()];
    all.extend_from_slice(args);
    let env = [
        ("OPERATOR_BASE_URL", operator_url),
        ("OPERATOR_DEADLINE_MS", "1500"),
    ];
    let output = app.hub_cli_with(&all, &env);
    Run {
        code: output.status.code().expect("an exit code"),
        stdout: String::from_utf8_lossy(&output.stdout).into_owned(),
        stderr: String::from_utf8_lossy(&output.stderr).into_owned(),
        out,
    }
}

/// The hour around now, as RFC 3339 bounds: immune to a test running across midnight.
fn around_now() -> [String; 2] {
    let now = Utc::now();
    [now - TimeDelta::hours(1), now + TimeDelta::hours(1)].map(|t| t.to_rfc3339())
}

fn reconcile_now(app: &TestApp, extra: &[&str]) -> Run {
    let [from, to] = around_now();
    let mut args = vec!["--from", &from, "--to", &to];
    args.extend_from_slice(extra);
    reconcile(app, &app.operator.base_url(), &args)
}

async fn debit(app: &TestApp, player: &str, amount: i64, currency: &str) -> String {
    let response = answer(
        app.debit(&new_key(), &wallet_body(player, amount, currency))
            .await,
    )
    .await;
    response.json["transactionId"]
        .as_str()
        .expect("a transaction id")
        .to_owned()
}

async fn a_clean_window_passes_with_an_empty_detail_and_right_counts(backend: Backend) {
    let app = TestApp::spawn(backend).await;
    for _ in 0..3 {
        debit(&app, "player-001", 250, "USD").await;
    }
    let credited = answer(
        app.credit(&new_key(), &wallet_body("player-002", 75, "EUR"))
            .await,
    )
    .await;
    assert_eq!(credited.status, 201);
    let refused = answer(
        app.debit(&new_key(), &wallet_body("player-004", 500, "USD"))
            .await,
    )
    .await;
    assert_eq!(refused.json["reason"], "INSUFFICIENT_FUNDS");

    let run = reconcile_now(&app, &[]);

    assert_eq!(run.code, 0, "{}{}", run.stdout, run.stderr);
    assert!(
        run.findings().is_empty(),
        "the detail has a header and nothing else"
    );
    let summary = run.summary();
    assert_eq!(
        run.stdout.lines().next(),
        summary.lines().next(),
        "the summary is printed too"
    );
    assert!(summary.starts_with("hub reconcile: PASS"), "{summary}");
    assert!(
        summary.contains("compared   5 hub and 5 operator transactions; 5 matched"),
        "{summary}"
    );
    for line in [
        "  hub       USD      DEBIT            3                   7.50",
        "  operator  USD      DEBIT            3                   7.50",
        "  hub       EUR      CREDIT           1                   0.75",
        "  operator  EUR      CREDIT           1                   0.75",
    ] {
        assert!(summary.contains(line), "missing {line:?} in\n{summary}");
    }
    assert_eq!(count_in(&summary, "MISSING_IN_OPERATOR"), 0, "{summary}");
}

async fn every_kind_of_drift_is_reported_in_its_category(backend: Backend) {
    let app = TestApp::spawn(backend).await;
    let mut ids = Vec::new();
    for _ in 0..6 {
        ids.push(debit(&app, "player-005", 100, "USD").await);
    }
    let drifts = [
        (
            Drift::Drop {
                transaction_id: ids[0].clone(),
            },
            &ids[0],
            "MISSING_IN_OPERATOR",
        ),
        (
            Drift::Amount {
                transaction_id: ids[1].clone(),
                delta_minor: 1,
            },
            &ids[1],
            "AMOUNT_MISMATCH",
        ),
        (
            Drift::Status {
                transaction_id: ids[2].clone(),
                status: "FAILED",
            },
            &ids[2],
            "STATUS_MISMATCH",
        ),
        (
            Drift::Currency {
                transaction_id: ids[3].clone(),
                currency: "GBP".into(),
            },
            &ids[3],
            "CURRENCY_MISMATCH",
        ),
        (
            Drift::Type {
                transaction_id: ids[4].clone(),
            },
            &ids[4],
            "TYPE_MISMATCH",
        ),
        (
            Drift::Player {
                transaction_id: ids[5].clone(),
                player_id: "player-003".into(),
            },
            &ids[5],
            "PLAYER_MISMATCH",
        ),
    ];
    let mut expected: Vec<(String, String)> = Vec::new();
    for (drift, id, category) in drifts {
        assert!(app.operator.drift(drift), "the mock knows {id}");
        expected.push((category.to_owned(), id.clone()));
    }
    let foreign = TransactionRecord::settled(
        "foreign-1",
        "player-001",
        Operation::Withdraw,
        999,
        "USD",
        "SUCCESS",
        Utc::now(),
    );
    app.operator.drift(Drift::Extra { record: foreign });
    expected.push(("MISSING_IN_HUB".into(), "foreign-1".into()));

    let run = reconcile_now(&app, &[]);

    assert_eq!(run.code, 1, "{}{}", run.stdout, run.stderr);
    let mut found: Vec<(String, String)> = run
        .findings()
        .iter()
        .map(|f| (f["category"].clone(), f["transaction_id"].clone()))
        .collect();
    found.sort();
    expected.sort();
    assert_eq!(found, expected);
    let findings = run.findings();
    let amount = findings
        .iter()
        .find(|f| f["category"] == "AMOUNT_MISMATCH")
        .unwrap();
    assert_eq!(
        (
            amount["hub_amount_cents"].as_str(),
            amount["operator_amount_cents"].as_str()
        ),
        ("100", "101")
    );
    let missing = findings
        .iter()
        .find(|f| f["category"] == "MISSING_IN_OPERATOR")
        .unwrap();
    assert!(!missing["ref_id"].is_empty() && missing["operator_status"].is_empty());
    assert!(run.summary().starts_with("hub reconcile: FAIL"));
}

async fn a_young_pending_transaction_fails_the_run_only_past_its_grace_period(backend: Backend) {
    let mut options = Options::default();
    options.retry.attempt_timeout = Duration::from_millis(200);
    options.retry.deadline = Duration::from_millis(500);
    let app = TestApp::spawn_with(backend, options).await;
    debit(&app, "player-001", 100, "USD").await;
    app.operator.inject_fault(FaultKind::ServerError, 1000);
    let key = new_key();
    assert_eq!(
        app.debit(&key, &wallet_body("player-001", 100, "USD"))
            .await
            .status(),
        502
    );
    let pending = app.transaction_for_key(&key).await.unwrap();
    app.operator.inject_fault(FaultKind::ServerError, 0);

    let within_grace = reconcile_now(&app, &[]);
    let past_grace = reconcile_now(&app, &["--pending-grace-minutes", "0"]);

    assert_eq!(
        within_grace.code, 0,
        "{}{}",
        within_grace.stdout, within_grace.stderr
    );
    let listed = &within_grace.findings()[0];
    assert_eq!(
        (
            listed["category"].as_str(),
            listed["transaction_id"].as_str()
        ),
        ("PENDING_IN_HUB", pending.id.as_str())
    );
    assert_eq!(listed["counts_as_failure"], "false");
    assert!(within_grace
        .summary()
        .contains("(1 younger than the 15 min grace period, not counted as failures)"));
    assert_eq!(past_grace.code, 1, "{}", past_grace.stdout);
    assert_eq!(past_grace.findings()[0]["counts_as_failure"], "true");
}

fn at(date: NaiveDate, h: u32, m: u32, s: u32, ms: u32) -> chrono::NaiveDateTime {
    date.and_hms_milli_opt(h, m, s, ms).unwrap()
}

async fn window_edges_put_each_transaction_in_its_own_day(backend: Backend) {
    let app = TestApp::spawn(backend).await;
    let day = NaiveDate::from_ymd_opt(2024, 1, 1).unwrap();
    let next_day = day.succ_opt().unwrap();
    // The operator stamps each transaction a few milliseconds after the hub: the first one
    // lands on the operator's books on the next day.
    let edges = [
        ("edge-late", at(day, 23, 59, 59, 999)),
        ("edge-early", at(next_day, 0, 0, 0, 0)),
    ];
    for (id, created_at) in edges {
        app.insert_transaction(settled_row(id, created_at)).await;
        let operator_time: DateTime<Utc> = (created_at + TimeDelta::milliseconds(5)).and_utc();
        let record = TransactionRecord::settled(
            id,
            "player-001",
            Operation::Withdraw,
            100,
            "USD",
            "SUCCESS",
            operator_time,
        );
        app.operator.seed([record]);
    }
    let url = app.operator.base_url();

    let first_day = reconcile(&app, &url, &["--from", "2024-01-01", "--to", "2024-01-01"]);
    let second_day = reconcile(&app, &url, &["--from", "2024-01-02", "--to", "2024-01-02"]);
    let without_margin = reconcile(
        &app,
        &url,
        &[
            "--from",
            "2024-01-01",
            "--to",
            "2024-01-01",
            "--margin-minutes",
            "0",
        ],
    );

    for run in [&first_day, &second_day] {
        assert_eq!(run.code, 0, "{}{}", run.stdout, run.stderr);
        assert!(
            run.summary()
                .contains("compared   1 hub and 1 operator transactions; 1 matched"),
            "{}",
            run.summary()
        );
    }
    assert!(first_day
        .summary()
        .contains("window     2024-01-01T00:00:00.000000Z .. 2024-01-01T23:59:59.999999Z"));
    assert_eq!(
        without_margin.code, 1,
        "without a margin the operator's record falls outside the day"
    );
    assert_eq!(
        without_margin.findings()[0]["category"],
        "MISSING_IN_OPERATOR"
    );
    assert_eq!(without_margin.findings()[0]["transaction_id"], "edge-late");
}

fn settled_row(id: &str, created_at: chrono::NaiveDateTime) -> TransactionRow {
    TransactionRow {
        id: id.to_owned(),
        idempotency_key: format!("key-{id}"),
        ref_id: format!("ref-{id}"),
        player_id: "player-001".into(),
        kind: "DEBIT".into(),
        amount_cents: 100,
        currency: "USD".into(),
        status: transactions::COMPLETED.into(),
        reason: None,
        balance_cents: Some(9900),
        operator_reference: Some(id.to_owned()),
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

async fn a_run_that_cannot_finish_exits_2_and_claims_nothing(backend: Backend) {
    let app = TestApp::spawn(backend).await;
    debit(&app, "player-001", 100, "USD").await;
    let closed = {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        format!("http://{}", listener.local_addr().unwrap())
    };
    let [from, to] = around_now();

    let operator_down = reconcile(&app, &closed, &["--from", &from, "--to", &to]);
    let backwards = reconcile(
        &app,
        &app.operator.base_url(),
        &["--from", "2024-02-01", "--to", "2024-01-01"],
    );
    let nonsense = reconcile(
        &app,
        &app.operator.base_url(),
        &["--from", "last tuesday", "--to", "2024-01-01"],
    );

    for (what, run) in [
        ("operator down", &operator_down),
        ("backwards window", &backwards),
        ("bad date", &nonsense),
    ] {
        assert_eq!(run.code, 2, "{what}: {}{}", run.stdout, run.stderr);
        assert_eq!(
            run.files(),
            Vec::<String>::new(),
            "{what}: no report is left behind"
        );
        let reason: Vec<&str> = run
            .stderr
            .lines()
            .filter(|l| l.starts_with("hub: "))
            .collect();
        assert_eq!(
            reason.len(),
            1,
            "{what}: one line of reason in {:?}",
            run.stderr
        );
        assert!(!run.stdout.contains("PASS"), "{what}");
    }
    assert!(
        operator_down.stderr.contains("operator"),
        "{}",
        operator_down.stderr
    );
}

/// One debit's identity: the hub's transaction id and the game's refId.
struct Debited {
    id: String,
    ref_id: String,
}

/// Debits `body`, which must be settled (completed or refused) by the operator.
async fn debit_body(app: &TestApp, body: Value) -> Debited {
    let response = answer(app.debit(&new_key(), &body).await).await;
    let id = response.json["transactionId"].as_str();
    Debited {
        id: id
            .unwrap_or_else(|| panic!("a transaction id in {}", response.text))
            .to_owned(),
        ref_id: body["refId"].as_str().unwrap().to_owned(),
    }
}

/// A debit whose operator call fails with `fault` until the hub gives up: left `PENDING`.
async fn pending_debit(app: &TestApp, body: Value, fault: FaultKind) -> Debited {
    let key = new_key();
    app.operator.inject_fault(fault, 1000);
    let response = answer(app.debit(&key, &body).await).await;
    app.operator.inject_fault(FaultKind::ServerError, 0);
    assert_eq!(response.status, 502, "{}", response.text);
    let pending = app.transaction_for_key(&key).await.expect("recorded");
    assert_eq!(pending.status, "PENDING");
    Debited {
        id: pending.id,
        ref_id: body["refId"].as_str().unwrap().to_owned(),
    }
}

/// Rolls back the debit with refId `original_ref_id`; answers 201 (the hub's rollback id).
async fn roll_back(app: &TestApp, player: &str, original_ref_id: &str) -> String {
    let body = json!({
        "playerId": player,
        "refId": format!("rollback-{}", new_key()),
        "originalRefId": original_ref_id,
    });
    let rolled = app.post_rollback(&new_key(), &body).await;
    assert_eq!(rolled.status, 201, "{}", rolled.text);
    rolled.json["transactionId"]
        .as_str()
        .expect("the rollback's transaction id")
        .to_owned()
}

/// The count a summary gives for `category`.
fn count_in(summary: &str, category: &str) -> u64 {
    summary
        .lines()
        .find_map(|line| {
            let mut words = line.split_whitespace();
            (words.next() == Some(category)).then(|| words.next()?.parse().ok())?
        })
        .unwrap_or_else(|| panic!("no {category} line in\n{summary}"))
}

fn sorted_findings(run: &Run) -> Vec<(String, String)> {
    let mut found: Vec<(String, String)> = run
        .findings()
        .iter()
        .map(|f| (f["category"].clone(), f["transaction_id"].clone()))
        .collect();
    found.sort();
    found
}

async fn status_of(app: &TestApp, id: &str) -> String {
    let id = id.to_owned();
    app.store
        .run(move |conn| transactions::find(conn, &id).map_err(StoreError::from))
        .await
        .unwrap()
        .expect("the hub has it")
        .status
}

async fn rollbacks_of_every_kind_leave_a_day_that_agrees(backend: Backend) {
    let mut options = Options::default();
    options.retry.attempt_timeout = Duration::from_millis(250);
    options.retry.deadline = Duration::from_millis(700);
    let app = TestApp::spawn_with(backend, options).await;
    // Completed, then rolled back: the operator refunds it.
    let refunded = debit_body(&app, wallet_body("player-001", 250, "USD")).await;
    roll_back(&app, "player-001", &refunded.ref_id).await;
    debit(&app, "player-001", 100, "USD").await;
    // Pending, then rolled back: charged at the operator (only its answer was lost), so
    // refunded; or never seen there, so its id is cancelled.
    let late = FaultKind::Timeout {
        delay: Duration::from_secs(3),
    };
    let charged = pending_debit(&app, wallet_body("player-005", 120, "USD"), late).await;
    roll_back(&app, "player-005", &charged.ref_id).await;
    let unseen = pending_debit(
        &app,
        wallet_body("player-005", 130, "USD"),
        FaultKind::ServerError,
    )
    .await;
    roll_back(&app, "player-005", &unseen.ref_id).await;
    // Rejected, then rolled back: recorded without the operator.
    let rejected = debit_body(&app, wallet_body("player-004", 500, "USD")).await;
    roll_back(&app, "player-004", &rejected.ref_id).await;
    // A refId the hub never saw: a tombstone.
    roll_back(&app, "player-002", &format!("ref-never-seen-{}", new_key())).await;
    for (debit, status) in [
        (&refunded, "ROLLED_BACK"),
        (&charged, "ROLLED_BACK"),
        (&unseen, "ROLLED_BACK"),
        (&rejected, "REJECTED"),
    ] {
        assert_eq!(status_of(&app, &debit.id).await, status, "{}", debit.ref_id);
    }
    assert_eq!(app.operator.refunds_for(&refunded.id), 1);
    assert_eq!(app.operator.refunds_for(&charged.id), 1);
    assert_eq!(app.operator.charges_for(&unseen.id), 0);
    assert!(app.operator.is_cancelled(&unseen.id));

    let run = reconcile_now(&app, &[]);

    assert_eq!(run.code, 0, "{}{}", run.stdout, run.stderr);
    assert_eq!(sorted_findings(&run), Vec::<(String, String)>::new());
    let summary = run.summary();
    // Hub: 5 debits and 5 rollbacks. Operator: 4 withdraws (one refused) and the 3
    // rollbacks that called it. Every operator record has its match.
    assert!(
        summary.contains("compared   10 hub and 7 operator transactions; 7 matched"),
        "{summary}"
    );
    for line in [
        "rolled back before the operator applied them, absent from its listing: 1",
        "rollbacks recorded without an operator call (rejected or unknown original): 2",
        "  hub       USD      ROLLBACK         3                   5.00",
        "  operator  USD      ROLLBACK         3                   5.00",
        "  operator  USD      REFUNDED         2                   3.70",
    ] {
        assert!(summary.contains(line), "missing {line:?} in\n{summary}");
    }
}

async fn a_refund_the_hub_never_asked_for_is_refunded_but_completed(backend: Backend) {
    let app = TestApp::spawn(backend).await;
    let kept = debit_body(&app, wallet_body("player-001", 300, "USD")).await;
    let refund = |id: &str, original: &Debited| Drift::Refund {
        transaction_id: id.to_owned(),
        original_transaction_id: original.id.clone(),
    };
    assert!(app.operator.drift(refund("operator-refund-1", &kept)));
    // Refunded by the operator first, then rolled back by the hub (the operator answers
    // that it was refunded already): the money agrees, only the record is not the hub's.
    // Its id sorts before the debit's, so the merge meets the refund first.
    let twice = debit_body(&app, wallet_body("player-005", 200, "USD")).await;
    assert!(app.operator.drift(refund("0-operator-refund", &twice)));
    roll_back(&app, "player-005", &twice.ref_id).await;
    assert_eq!(status_of(&app, &twice.id).await, "ROLLED_BACK");
    assert_eq!(app.operator.refunds_for(&twice.id), 1, "refunded once");

    let run = reconcile_now(&app, &[]);

    assert_eq!(run.code, 1, "{}{}", run.stdout, run.stderr);
    assert_eq!(
        sorted_findings(&run),
        [
            ("MISSING_IN_HUB", "0-operator-refund"),
            ("MISSING_IN_HUB", "operator-refund-1"),
            ("REFUNDED_BUT_COMPLETED", kept.id.as_str()),
        ]
        .map(|(c, id)| (c.to_owned(), id.to_owned()))
    );
    let findings = run.findings();
    let contradiction = findings
        .iter()
        .find(|f| f["category"] == "REFUNDED_BUT_COMPLETED")
        .unwrap();
    for (column, value) in [
        ("ref_id", kept.ref_id.as_str()),
        ("hub_type", "DEBIT"),
        ("hub_status", "COMPLETED"),
        ("operator_type", "ROLLBACK"),
        ("operator_original_transaction_id", kept.id.as_str()),
        ("operator_refunded", "true"),
        ("operator_refunded_amount_cents", "300"),
    ] {
        assert_eq!(contradiction[column], value, "{column}: {contradiction:?}");
    }
    let summary = run.summary();
    assert_eq!(count_in(&summary, "REFUNDED_BUT_COMPLETED"), 1);
    assert_eq!(count_in(&summary, "MISSING_IN_HUB"), 2);
    assert_eq!(count_in(&summary, "CHARGED_BUT_ROLLED_BACK"), 0);
}

async fn a_rolled_back_debit_whose_refund_the_operator_lost_is_charged_but_rolled_back(
    backend: Backend,
) {
    let app = TestApp::spawn(backend).await;
    let mut body = wallet_body("player-001", 400, "USD");
    body["roundId"] = json!("round-7");
    let charged = debit_body(&app, body).await;
    let rollback_id = roll_back(&app, "player-001", &charged.ref_id).await;
    assert_eq!(app.operator.refunds_for(&charged.id), 1);
    assert!(app.operator.drift(Drift::Drop {
        transaction_id: rollback_id.clone(),
    }));

    let run = reconcile_now(&app, &[]);

    assert_eq!(run.code, 1, "{}{}", run.stdout, run.stderr);
    assert_eq!(
        sorted_findings(&run),
        [
            ("CHARGED_BUT_ROLLED_BACK", charged.id.as_str()),
            ("MISSING_IN_OPERATOR", rollback_id.as_str()),
        ]
        .map(|(c, id)| (c.to_owned(), id.to_owned()))
    );
    let findings = run.findings();
    let column = |category: &str, column: &str| {
        let finding = findings.iter().find(|f| f["category"] == category).unwrap();
        finding[column].clone()
    };
    assert_eq!(
        column("CHARGED_BUT_ROLLED_BACK", "hub_status"),
        "ROLLED_BACK"
    );
    assert_eq!(
        column("CHARGED_BUT_ROLLED_BACK", "operator_type"),
        "WITHDRAW"
    );
    assert_eq!(
        column("CHARGED_BUT_ROLLED_BACK", "operator_status"),
        "SUCCESS"
    );
    assert_eq!(column("CHARGED_BUT_ROLLED_BACK", "round_id"), "round-7");
    assert_eq!(column("MISSING_IN_OPERATOR", "hub_type"), "ROLLBACK");
    assert_eq!(
        column("MISSING_IN_OPERATOR", "hub_original_transaction_id"),
        charged.id
    );
    // A rollback records the round its request named (this one named none).
    assert_eq!(column("MISSING_IN_OPERATOR", "round_id"), "");
    let summary = run.summary();
    assert_eq!(count_in(&summary, "CHARGED_BUT_ROLLED_BACK"), 1);
    assert_eq!(count_in(&summary, "MISSING_IN_OPERATOR"), 1);
}

async fn a_debit_rolled_back_after_its_window_meets_its_refund_there(backend: Backend) {
    let app = TestApp::spawn(backend).await;
    let day = NaiveDate::from_ymd_opt(2024, 3, 1).unwrap();
    let next_day = day.succ_opt().unwrap();
    // Two debits charged late on the first day, rolled back hours into the next (beyond the
    // margin): the operator refunded the first; the second it only says it rolled back.
    for (debit, charged_at, rollback, rolled_back_at, refunded) in [
        (
            "late-debit-a",
            at(day, 23, 30, 0, 0),
            "late-rollback-a",
            at(next_day, 3, 0, 0, 0),
            true,
        ),
        (
            "late-debit-b",
            at(day, 23, 40, 0, 0),
            "late-rollback-b",
            at(next_day, 3, 10, 0, 0),
            false,
        ),
    ] {
        let debit_row = TransactionRow {
            status: transactions::ROLLED_BACK.into(),
            ..settled_row(debit, charged_at)
        };
        let rollback_row = TransactionRow {
            kind: "ROLLBACK".into(),
            original_ref_id: Some(debit_row.ref_id.clone()),
            original_transaction_id: Some(debit.to_owned()),
            ..settled_row(rollback, rolled_back_at)
        };
        app.insert_transaction(debit_row).await;
        app.insert_transaction(rollback_row).await;
        let operator_time = |t: chrono::NaiveDateTime| (t + TimeDelta::milliseconds(5)).and_utc();
        let settled = |id: &str, operation, at| {
            TransactionRecord::settled(id, "player-001", operation, 100, "USD", "SUCCESS", at)
        };
        let mut refund = settled(rollback, Operation::Rollback, operator_time(rolled_back_at));
        refund.rollback = Some(RollbackDetails {
            original_transaction_id: debit.to_owned(),
            refunded,
            refunded_minor: if refunded { 100 } else { 0 },
        });
        app.operator.seed([
            settled(debit, Operation::Withdraw, operator_time(charged_at)),
            refund,
        ]);
    }
    let url = app.operator.base_url();

    let first_day = reconcile(&app, &url, &["--from", "2024-03-01", "--to", "2024-03-01"]);
    let second_day = reconcile(&app, &url, &["--from", "2024-03-02", "--to", "2024-03-02"]);

    assert_eq!(
        first_day.code, 1,
        "{}{}",
        first_day.stdout, first_day.stderr
    );
    assert_eq!(
        sorted_findings(&first_day),
        [(
            "CHARGED_BUT_ROLLED_BACK".to_owned(),
            "late-debit-b".to_owned()
        )],
        "the refund of late-debit-a is found in the listing around its rollback"
    );
    assert!(
        first_day
            .summary()
            .contains("compared   2 hub and 2 operator transactions; 1 matched"),
        "{}",
        first_day.summary()
    );
    assert_eq!(
        second_day.code, 0,
        "{}{}",
        second_day.stdout, second_day.stderr
    );
    assert!(second_day
        .summary()
        .contains("compared   2 hub and 2 operator transactions; 2 matched"));
}

impl TestApp {
    /// `POST /wallet/rollback`, signed like a debit.
    async fn post_rollback(&self, key: &str, body: &Value) -> Answer {
        answer(
            self.post_signed("/wallet/rollback", key, &body.to_string())
                .await,
        )
        .await
    }

    async fn insert_transaction(&self, row: TransactionRow) {
        self.store
            .run(move |conn| transactions::insert(conn, &row).map_err(StoreError::from))
            .await
            .expect("insert a transaction");
    }
}

#[test]
fn reports_are_named_after_their_run() {
    let at = DateTime::parse_from_rfc3339("2026-11-24T01:02:03.456Z")
        .unwrap()
        .with_timezone(&Utc);
    let files = hub::reconcile::report::ReportFiles::for_run(
        Path::new("out"),
        at,
        hub::reconcile::report::DetailFormat::Csv,
    );
    assert_eq!(
        files.detail,
        Path::new("out/reconciliation-20261124T010203.456Z.csv")
    );
    assert_eq!(
        files.summary,
        Path::new("out/reconciliation-20261124T010203.456Z-summary.txt")
    );
}
