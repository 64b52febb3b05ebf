//! `hub reconcile`: compare a window of the hub's transactions with the operator's listing.

use std::path::PathBuf;
use std::time::Duration;

use chrono::{NaiveDateTime, TimeDelta, Utc};
use clap::Args;

use super::cli_bounds;
use crate::domain::instant::{window_end, window_start};
use crate::operator::OperatorClient;
use crate::reconcile::report::DetailFormat;
use crate::reconcile::{self, ReconcileOptions};
use crate::store::Store;

#[derive(Debug, Args)]
pub struct ReconcileArgs {
    /// Start of the window: a UTC date (YYYY-MM-DD, from its first instant) or an RFC 3339
    /// instant. Without --from and --to: yesterday, UTC.
    #[arg(long, requires = "to")]
    from: Option<String>,
    /// End of the window, inclusive: a UTC date (to its last instant) or an RFC 3339 instant.
    #[arg(long, requires = "from")]
    to: Option<String>,
    /// Where the reports go.
    #[arg(long, default_value = "./reconciliation-reports")]
    out: PathBuf,
    /// Format of the detail file (one entry per finding).
    #[arg(long, value_enum, default_value_t = DetailFormat::Csv)]
    format: DetailFormat,
    /// PENDING transactions younger than this are listed but do not fail the run.
    #[arg(long, env = "RECONCILE_PENDING_GRACE_MINUTES", default_value_t = 15)]
    pending_grace_minutes: u64,
    /// How far around the window both ledgers are read, so that a transaction the operator
    /// stamped just after midnight still meets its hub record.
    #[arg(long, env = "RECONCILE_MARGIN_MINUTES", default_value_t = 60)]
    margin_minutes: u64,
    /// Transactions per page, on each side.
    #[arg(long, default_value_t = 1000, value_parser = clap::value_parser!(u64).range(1..=10_000))]
    page_size: u64,
}

impl ReconcileArgs {
    fn window(&self) -> Result<(NaiveDateTime, NaiveDateTime), String> {
        // clap lets --from and --to come only together.
        let (from, to) = match cli_bounds(self.from.as_deref(), self.to.as_deref())? {
            (Some(from), Some(to)) => (from, to),
            _ => {
                let yesterday = (Utc::now() - TimeDelta::days(1)).date_naive().to_string();
                (
                    window_start(&yesterday).expect("a date"),
                    window_end(&yesterday).expect("a date"),
                )
            }
        };
        if from > to {
            return Err(format!("--from ({from}) is after --to ({to})"));
        }
        Ok((from, to))
    }

    /// The validated options, or the one-line reason they are not valid.
    pub fn options(&self) -> Result<ReconcileOptions, String> {
        let (from, to) = self.window()?;
        Ok(ReconcileOptions {
            from,
            to,
            out_dir: self.out.clone(),
            format: self.format,
            pending_grace: Duration::from_secs(60 * self.pending_grace_minutes),
            margin: Duration::from_secs(60 * self.margin_minutes),
            page_size: self.page_size as usize,
            show_progress: true,
        })
    }
}

/// Prints the summary; `Ok(true)` when both ledgers agree.
pub async fn run(
    options: &ReconcileOptions,
    store: &Store,
    operator: &OperatorClient,
) -> Result<bool, String> {
    let outcome = reconcile::run(store, operator, options)
        .await
        .map_err(|e| format!("reconcile could not run: {e}"))?;
    print!("{}", outcome.summary);
    println!("summary    {}", outcome.summary_path.display());
    Ok(outcome.passed)
}
