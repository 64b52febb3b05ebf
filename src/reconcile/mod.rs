//! `hub reconcile`: proves that the hub and the operator agree on a window of transactions.
//!
//! Both ledgers are streamed in transaction id order and merged, so memory stays flat as
//! the window grows. Both are read with a margin around the window, because the operator
//! stamps a transaction a little after the hub does: a pair belongs to the window by the
//! hub's time, an unmatched record by its own side's time.

mod compare;
pub mod report;
mod streams;

use std::io::IsTerminal;
use std::path::PathBuf;
use std::time::{Duration, Instant};

use chrono::{NaiveDateTime, Utc};

use compare::disagreements;
pub use compare::{Category, Finding};
use report::{DetailFormat, DetailWriter, ReportFiles, SummaryContext, Tally};

use crate::operator::listing::OperatorTransaction;
use crate::operator::{OperatorClient, OperatorError};
use crate::store::transactions::{self, TransactionRow};
use crate::store::{Store, StoreError};

#[derive(Debug, thiserror::Error)]
pub enum ReconcileError {
    #[error("database: {0}")]
    Store(#[from] StoreError),
    #[error("operator: {0}")]
    Operator(#[from] OperatorError),
    #[error("the {side} listing is not in transaction id order ({previous} came before {next}); a merge cannot be trusted")]
    Unordered {
        side: &'static str,
        previous: String,
        next: String,
    },
    #[error("the operator's listing returned the same cursor twice")]
    StalledCursor,
    #[error("cannot write the report: {0}")]
    Report(#[from] std::io::Error),
}

#[derive(Debug, Clone)]
pub struct ReconcileOptions {
    /// Both ends inclusive, UTC.
    pub from: NaiveDateTime,
    pub to: NaiveDateTime,
    pub out_dir: PathBuf,
    pub format: DetailFormat,
    /// A `PENDING` transaction younger than this is reported but does not fail the run.
    pub pending_grace: Duration,
    /// How far around the window both ledgers are read (see the module comment).
    pub margin: Duration,
    pub page_size: usize,
    pub show_progress: bool,
}

#[derive(Debug)]
pub struct Outcome {
    pub passed: bool,
    pub summary: String,
    pub detail_path: PathBuf,
    pub summary_path: PathBuf,
}

pub async fn run(
    store: &Store,
    operator: &OperatorClient,
    options: &ReconcileOptions,
) -> Result<Outcome, ReconcileError> {
    let run_at = Utc::now();
    let started = Instant::now();
    std::fs::create_dir_all(&options.out_dir)?;
    let files = ReportFiles::for_run(&options.out_dir, run_at, options.format);
    let merged = merge(store, operator, options, &files).await;
    let tally = match merged {
        Ok(tally) => tally,
        Err(error) => {
            files.discard();
            return Err(error);
        }
    };
    let context = SummaryContext {
        from: options.from,
        to: options.to,
        run_at,
        took: started.elapsed(),
        pending_grace: options.pending_grace,
        detail: &files.detail,
    };
    let summary = report::render(&tally, &context);
    let written = std::fs::write(ReportFiles::partial(&files.summary), &summary)
        .and_then(|()| files.publish());
    if let Err(error) = written {
        files.discard();
        return Err(error.into());
    }
    Ok(Outcome {
        passed: tally.passed(),
        summary,
        detail_path: files.detail,
        summary_path: files.summary,
    })
}

async fn merge(
    store: &Store,
    operator: &OperatorClient,
    options: &ReconcileOptions,
    files: &ReportFiles,
) -> Result<Tally, ReconcileError> {
    let (read_from, read_to) = (options.from - options.margin, options.to + options.margin);
    let mut hub = streams::hub(store.clone(), read_from, read_to, options.page_size);
    let mut listing = streams::operator(
        operator.clone(),
        read_from.and_utc(),
        read_to.and_utc(),
        options.page_size,
    );
    let mut merge = Merger {
        options,
        pending_cutoff: Utc::now().naive_utc() - options.pending_grace,
        tally: Tally::default(),
        detail: DetailWriter::create(&ReportFiles::partial(&files.detail), options.format)?,
        progress: Progress::new(options.show_progress),
    };
    let (mut next_hub, mut next_operator) = (hub.next().await?, listing.next().await?);
    loop {
        match (next_hub.take(), next_operator.take()) {
            (None, None) => break,
            (Some(h), None) => {
                merge.hub_only(&h)?;
                next_hub = hub.next().await?;
            }
            (None, Some(o)) => {
                merge.operator_only(&o)?;
                next_operator = listing.next().await?;
            }
            (Some(h), Some(o)) => match h.id.as_bytes().cmp(o.transaction_id.as_bytes()) {
                std::cmp::Ordering::Less => {
                    merge.hub_only(&h)?;
                    (next_hub, next_operator) = (hub.next().await?, Some(o));
                }
                std::cmp::Ordering::Greater => {
                    merge.operator_only(&o)?;
                    (next_hub, next_operator) = (Some(h), listing.next().await?);
                }
                std::cmp::Ordering::Equal => {
                    merge.pair(&h, &o)?;
                    (next_hub, next_operator) = (hub.next().await?, listing.next().await?);
                }
            },
        }
        merge.progress.tick(&merge.tally);
    }
    merge.progress.done();
    merge.detail.finish()?;
    Ok(merge.tally)
}

struct Merger<'a> {
    options: &'a ReconcileOptions,
    pending_cutoff: NaiveDateTime,
    tally: Tally,
    detail: DetailWriter,
    progress: Progress,
}

impl Merger<'_> {
    fn in_window(&self, at: NaiveDateTime) -> bool {
        self.options.from <= at && at <= self.options.to
    }

    fn hub_only(&mut self, hub: &TransactionRow) -> std::io::Result<()> {
        if !self.in_window(hub.created_at) {
            return Ok(());
        }
        self.tally.count_hub(hub);
        match hub.status.as_str() {
            transactions::PENDING => self.report(Category::PendingInHub, Some(hub), None),
            transactions::REJECTED => {
                self.tally.rejected_unknown_to_operator += 1;
                Ok(())
            }
            _ => self.report(Category::MissingInOperator, Some(hub), None),
        }
    }

    fn operator_only(&mut self, operator: &OperatorTransaction) -> std::io::Result<()> {
        if !self.in_window(operator.created_at.naive_utc()) {
            return Ok(());
        }
        self.tally.count_operator(operator);
        self.report(Category::MissingInHub, None, Some(operator))
    }

    fn pair(
        &mut self,
        hub: &TransactionRow,
        operator: &OperatorTransaction,
    ) -> std::io::Result<()> {
        if !self.in_window(hub.created_at) {
            return Ok(());
        }
        self.tally.count_hub(hub);
        self.tally.count_operator(operator);
        let found = disagreements(hub, operator);
        if found.is_empty() {
            self.tally.matched += 1;
        }
        for category in found {
            self.report(category, Some(hub), Some(operator))?;
        }
        Ok(())
    }

    fn report(
        &mut self,
        category: Category,
        hub: Option<&TransactionRow>,
        operator: Option<&OperatorTransaction>,
    ) -> std::io::Result<()> {
        let mut finding = Finding::new(category, hub, operator);
        if category == Category::PendingInHub {
            finding.counts_as_failure = hub.is_some_and(|h| h.created_at < self.pending_cutoff);
        }
        self.tally.count_finding(&finding);
        self.detail.write(&finding)
    }
}

/// A line on a terminal that shows a long run is moving; silent when stderr is not a terminal.
struct Progress {
    enabled: bool,
    last: Instant,
}

impl Progress {
    fn new(requested: bool) -> Self {
        Self {
            enabled: requested && std::io::stderr().is_terminal(),
            last: Instant::now(),
        }
    }

    fn tick(&mut self, tally: &Tally) {
        if self.enabled && self.last.elapsed() >= Duration::from_millis(500) {
            self.last = Instant::now();
            eprint!(
                "\r  compared {} hub / {} operator transactions, {} findings",
                tally.hub_compared,
                tally.operator_compared,
                tally.findings.values().sum::<u64>()
            );
        }
    }

    fn done(&self) {
        if self.enabled {
            eprintln!();
        }
    }
}
