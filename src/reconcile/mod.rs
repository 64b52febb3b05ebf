//! `hub reconcile`: proves that the hub and the operator agree on a window of transactions.
//!
//! Both ledgers are streamed in transaction id order and merged, so memory stays flat as
//! the window grows. Both are read with a margin around the window, because the operator
//! stamps a transaction a little after the hub does: a pair belongs to the window by the
//! hub's time, an unmatched record by its own side's time.
//!
//! Rollbacks are merged by their own id like any transaction, but they also speak about the
//! debit they name, which sits elsewhere in the id order (the rules are in `compare.rs`).
//! Memory stays bounded by the rollbacks in the window, never by the window itself:
//!
//! - A debit the hub holds as `COMPLETED` that the operator refunded on its own is found
//!   from the refunding rollback, the one record of it that is out of place: for each
//!   operator rollback unknown to the hub that refunded something, the debit is looked up in
//!   the hub's database by primary key (and its own rollback by the unique `original_ref_id`
//!   index). Nothing is kept.
//! - A `ROLLED_BACK` debit the operator charged needs a refund somewhere in the operator's
//!   listing. Its refund usually comes later in id order (ids are UUIDv7, and a rollback is
//!   recorded after its debit), so the debit waits in `Merger::awaiting_refund` until a
//!   refund naming it passes; a refund that comes first waits in `Merger::refunds_ahead`
//!   until the merge reaches its debit, and is dropped once the merge has gone past it.
//!   Each holds at most one entry per rollback read (the window and its margins), and
//!   usually far fewer, since an entry leaves as soon as its partner passes. A debit still
//!   waiting at the end was rolled back after the window (its refund is then looked for in
//!   the operator's listing within the margin around the hub's rollback, streamed like the
//!   main listing), or was never refunded: `CHARGED_BUT_ROLLED_BACK`.

mod compare;
pub mod report;
mod streams;

use std::collections::{BTreeMap, BTreeSet};
use std::io::IsTerminal;
use std::path::PathBuf;
use std::time::{Duration, Instant};

use chrono::{NaiveDateTime, Utc};

use compare::{disagreements, hub_alone, refund_against_hub, HubAlone};
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
        store,
        operator,
        pending_cutoff: Utc::now().naive_utc() - options.pending_grace,
        tally: Tally::default(),
        detail: DetailWriter::create(&ReportFiles::partial(&files.detail), options.format)?,
        progress: Progress::new(options.show_progress),
        refunds_ahead: BTreeSet::new(),
        awaiting_refund: BTreeMap::new(),
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
                merge.operator_only(&o).await?;
                next_operator = listing.next().await?;
            }
            (Some(h), Some(o)) => match h.id.as_bytes().cmp(o.transaction_id.as_bytes()) {
                std::cmp::Ordering::Less => {
                    merge.hub_only(&h)?;
                    (next_hub, next_operator) = (hub.next().await?, Some(o));
                }
                std::cmp::Ordering::Greater => {
                    merge.operator_only(&o).await?;
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
    merge.never_refunded().await?;
    merge.progress.done();
    merge.detail.finish()?;
    Ok(merge.tally)
}

struct Merger<'a> {
    options: &'a ReconcileOptions,
    store: &'a Store,
    operator: &'a OperatorClient,
    pending_cutoff: NaiveDateTime,
    tally: Tally,
    detail: DetailWriter,
    progress: Progress,
    /// Debits named by an operator refund seen before the merge reached them (the refund's
    /// id sorts first); dropped once the merge has gone past them.
    refunds_ahead: BTreeSet<String>,
    /// `ROLLED_BACK` debits of the window that the operator charged, by id, until a refund
    /// naming them is seen.
    awaiting_refund: BTreeMap<String, Awaiting>,
}

/// A rolled-back debit the operator charged, and whether it agreed otherwise.
struct Awaiting {
    hub: TransactionRow,
    operator: OperatorTransaction,
    fields_agree: bool,
}

impl Merger<'_> {
    fn in_window(&self, at: NaiveDateTime) -> bool {
        self.options.from <= at && at <= self.options.to
    }

    /// The merge has reached `id`: every hub transaction before it has been seen, so a
    /// refund naming one of those can no longer meet its debit.
    fn reached(&mut self, id: &str) {
        while let Some(first) = self.refunds_ahead.first() {
            if first.as_bytes() >= id.as_bytes() {
                break;
            }
            self.refunds_ahead.pop_first();
        }
    }

    /// Notes an operator rollback that refunded a debit, whatever its time (a refund in the
    /// margin still clears a debit of the window).
    fn note_refund(&mut self, operator: &OperatorTransaction) {
        let Some(original) = operator.refund_of() else {
            return;
        };
        if let Some(waiting) = self.awaiting_refund.remove(original) {
            if waiting.fields_agree {
                self.tally.matched += 1;
            }
        } else if original.as_bytes() > operator.transaction_id.as_bytes() {
            self.refunds_ahead.insert(original.to_owned());
        }
    }

    fn hub_only(&mut self, hub: &TransactionRow) -> std::io::Result<()> {
        self.reached(&hub.id);
        if !self.in_window(hub.created_at) {
            return Ok(());
        }
        self.tally.count_hub(hub);
        match hub_alone(hub) {
            HubAlone::Finding(category) => self.report(category, Some(hub), None),
            HubAlone::Rejected => {
                self.tally.rejected_unknown_to_operator += 1;
                Ok(())
            }
            HubAlone::RolledBack => {
                self.tally.rolled_back_unknown_to_operator += 1;
                Ok(())
            }
            HubAlone::NotSent => {
                self.tally.rollbacks_not_sent += 1;
                Ok(())
            }
        }
    }

    async fn operator_only(
        &mut self,
        operator: &OperatorTransaction,
    ) -> Result<(), ReconcileError> {
        self.reached(&operator.transaction_id);
        self.note_refund(operator);
        if !self.in_window(operator.created_at.naive_utc()) {
            return Ok(());
        }
        self.tally.count_operator(operator);
        self.report(Category::MissingInHub, None, Some(operator))?;
        let Some(original) = operator.refund_of() else {
            return Ok(());
        };
        // The operator refunded on its own: what does the hub hold for that debit?
        let original = original.to_owned();
        let (debit, rollback_pending) = self
            .store
            .run(move |conn| {
                let debit = transactions::find(conn, &original)?;
                let rollback = match &debit {
                    Some(debit) => transactions::rollback_of(conn, &debit.ref_id)?,
                    None => None,
                };
                let pending = rollback.is_some_and(|r| r.status == transactions::PENDING);
                Ok::<_, StoreError>((debit, pending))
            })
            .await?;
        if let Some(category) = refund_against_hub(debit.as_ref(), rollback_pending) {
            self.report(category, debit.as_ref(), Some(operator))?;
        }
        Ok(())
    }

    fn pair(
        &mut self,
        hub: &TransactionRow,
        operator: &OperatorTransaction,
    ) -> std::io::Result<()> {
        self.reached(&hub.id);
        self.note_refund(operator);
        let refunded = self.refunds_ahead.remove(&hub.id);
        if !self.in_window(hub.created_at) {
            return Ok(());
        }
        self.tally.count_hub(hub);
        self.tally.count_operator(operator);
        let mut found = disagreements(hub, operator, refunded);
        if let Some(at) = found
            .iter()
            .position(|c| *c == Category::ChargedButRolledBack)
        {
            // Not yet: the refund may come later in the listing.
            found.remove(at);
            let waiting = Awaiting {
                hub: hub.clone(),
                operator: operator.clone(),
                fields_agree: found.is_empty(),
            };
            self.awaiting_refund.insert(hub.id.clone(), waiting);
        } else if found.is_empty() {
            self.tally.matched += 1;
        }
        for category in found {
            self.report(category, Some(hub), Some(operator))?;
        }
        Ok(())
    }

    /// The rolled-back debits whose refund the merge never met: refunded after the window,
    /// or never (`CHARGED_BUT_ROLLED_BACK`).
    async fn never_refunded(&mut self) -> Result<(), ReconcileError> {
        for (id, waiting) in std::mem::take(&mut self.awaiting_refund) {
            let ref_id = waiting.hub.ref_id.clone();
            let rollback = self
                .store
                .run(move |conn| transactions::rollback_of(conn, &ref_id).map_err(StoreError::from))
                .await?;
            let refunded = match rollback {
                // Rolled back after the window: its operator record is not in what was read.
                Some(rollback) if rollback.created_at > self.options.to => {
                    self.refunded_around(&id, rollback.created_at).await?
                }
                _ => false,
            };
            if !refunded {
                self.report(
                    Category::ChargedButRolledBack,
                    Some(&waiting.hub),
                    Some(&waiting.operator),
                )?;
            } else if waiting.fields_agree {
                self.tally.matched += 1;
            }
        }
        Ok(())
    }

    /// Whether the operator's listing within the margin around `at` holds a refund of
    /// `debit_id`; streamed, like the main listing.
    async fn refunded_around(
        &self,
        debit_id: &str,
        at: NaiveDateTime,
    ) -> Result<bool, ReconcileError> {
        let margin = self.options.margin;
        let mut listing = streams::operator(
            self.operator.clone(),
            (at - margin).and_utc(),
            (at + margin).and_utc(),
            self.options.page_size,
        );
        while let Some(operator) = listing.next().await? {
            if operator.refund_of() == Some(debit_id) {
                return Ok(true);
            }
        }
        Ok(false)
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
