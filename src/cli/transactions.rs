//! `hub transactions review`: the transactions flagged for a person, from a terminal.

use clap::Subcommand;

use crate::store::Store;
use crate::wallet::review;

#[derive(Debug, Subcommand)]
pub enum TransactionsCommand {
    /// List PENDING transactions flagged for manual review, longest-waiting first.
    Review {
        #[arg(long, default_value_t = 100)]
        limit: i64,
    },
}

/// Runs the command; the `Err` text is the one line to print.
pub async fn run(command: TransactionsCommand, store: &Store) -> Result<(), String> {
    let TransactionsCommand::Review { limit } = command;
    let flagged = review::under_review(store, limit)
        .await
        .map_err(|e| e.to_string())?;
    let at =
        |t: chrono::DateTime<chrono::Utc>| t.to_rfc3339_opts(chrono::SecondsFormat::Secs, true);
    println!(
        "{:<36}  {:<8}  {:>12}  {:<3}  {:<20}  {:<20}  {:>6}  REF ID",
        "TRANSACTION ID", "KIND", "AMOUNT", "CUR", "CREATED", "FLAGGED", "ROUNDS"
    );
    for t in &flagged {
        println!(
            "{:<36}  {:<8}  {:>12}  {:<3}  {:<20}  {:<20}  {:>6}  {}",
            t.transaction_id,
            t.kind,
            t.amount_cents,
            t.currency,
            at(t.created_at),
            t.review_since.map(at).unwrap_or_default(),
            t.recovery_attempts,
            t.ref_id
        );
    }
    println!("{} transaction(s) under review", flagged.len());
    Ok(())
}
