//! `hub outbox list|show|replay`: the admin API's outbox operations from a terminal.

use clap::{Args, Subcommand};

use super::cli_bounds;
use crate::outbox::admin::{self, Replayed};
use crate::store::outbox::Window;
use crate::store::Store;

#[derive(Debug, Subcommand)]
pub enum OutboxCommand {
    /// List webhook events, newest first.
    List(ListOptions),
    /// Show one event with its payload and every delivery attempt.
    Show {
        /// The event id (the RGS sees it as eventId / X-Event-Id).
        event_id: String,
    },
    /// Queue events again with their original event ids.
    Replay(ReplayOptions),
}

#[derive(Debug, Args)]
pub struct ListOptions {
    /// PENDING, DELIVERED or DEAD_LETTER.
    #[arg(long)]
    status: Option<String>,
    /// Created at or after: RFC 3339 instant or YYYY-MM-DD (UTC).
    #[arg(long)]
    from: Option<String>,
    /// Created at or before: RFC 3339 instant or YYYY-MM-DD (the whole day, UTC).
    #[arg(long)]
    to: Option<String>,
    #[arg(long, default_value_t = 50)]
    limit: i64,
}

#[derive(Debug, Args)]
#[command(group = clap::ArgGroup::new("what").required(true).args(["event_id", "dead_letters"]))]
pub struct ReplayOptions {
    /// One event to replay (delivered or dead-lettered).
    event_id: Option<String>,
    /// Replay every dead letter created in --from..--to (all of them without bounds).
    #[arg(long)]
    dead_letters: bool,
    /// With --dead-letters: created at or after (RFC 3339 or YYYY-MM-DD, UTC).
    #[arg(long)]
    from: Option<String>,
    /// With --dead-letters: created at or before (RFC 3339 or YYYY-MM-DD, the whole day).
    #[arg(long)]
    to: Option<String>,
}

/// Runs the command; the `Err` text is the one line to print.
pub async fn run(command: OutboxCommand, store: &Store) -> Result<(), String> {
    match command {
        OutboxCommand::List(options) => {
            let status = options.status.map(|s| s.to_ascii_uppercase());
            if status
                .as_deref()
                .is_some_and(|s| !["PENDING", "DELIVERED", "DEAD_LETTER"].contains(&s))
            {
                return Err("--status must be PENDING, DELIVERED or DEAD_LETTER".into());
            }
            let (from, to) = cli_bounds(options.from.as_deref(), options.to.as_deref())?;
            let window = Window { status, from, to };
            let events = admin::list(store, window, options.limit)
                .await
                .map_err(|e| e.to_string())?;
            println!(
                "{:<36}  {:<11}  {:>8}  {:<24}  {:<21}  LAST ERROR",
                "EVENT ID", "STATUS", "ATTEMPTS", "CREATED", "TYPE"
            );
            for event in &events {
                println!(
                    "{:<36}  {:<11}  {:>8}  {:<24}  {:<21}  {}",
                    event.event_id,
                    event.status,
                    event.attempts,
                    event
                        .created_at
                        .to_rfc3339_opts(chrono::SecondsFormat::Millis, true),
                    event.event_type,
                    event.last_error.as_deref().unwrap_or("-")
                );
            }
            println!("{} event(s)", events.len());
            Ok(())
        }
        OutboxCommand::Show { event_id } => {
            let detail = admin::show(store, &event_id)
                .await
                .map_err(|e| e.to_string())?;
            let detail = detail.ok_or_else(|| format!("no webhook event {event_id}"))?;
            println!(
                "{}",
                serde_json::to_string_pretty(&detail).expect("serialisable")
            );
            Ok(())
        }
        OutboxCommand::Replay(options) => {
            println!("{}", replay(options, store).await?);
            Ok(())
        }
    }
}

async fn replay(options: ReplayOptions, store: &Store) -> Result<String, String> {
    if let Some(event_id) = options.event_id {
        if options.from.is_some() || options.to.is_some() {
            return Err("--from and --to select dead letters; use them with --dead-letters, not an event id".into());
        }
        return match admin::replay(store, &event_id)
            .await
            .map_err(|e| e.to_string())?
        {
            Replayed::Queued => Ok(format!("queued {event_id} for delivery")),
            Replayed::AlreadyPending => Ok(format!("{event_id} is already waiting for delivery")),
            Replayed::NotFound => Err(format!("no webhook event {event_id}")),
        };
    }
    let (from, to) = cli_bounds(options.from.as_deref(), options.to.as_deref())?;
    let requeued = admin::replay_dead_letters(store, from, to)
        .await
        .map_err(|e| e.to_string())?;
    Ok(format!("queued {requeued} dead letter(s) for delivery"))
}
