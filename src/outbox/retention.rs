//! Deletes delivered events (and their attempts) past their retention, in small batches
//! on a timer, away from the request path.

use std::time::Duration;

use chrono::Utc;
use tokio_util::sync::CancellationToken;

use crate::domain::instant::earlier_by;
use crate::store::{outbox, Store, StoreError};
use crate::supervisor::LoopHealth;

const BATCH: i64 = 500;
const EVERY: Duration = Duration::from_secs(600);

/// Deletes every delivered event older than `retention`; returns how many.
pub async fn prune(store: &Store, retention: Duration) -> Result<usize, StoreError> {
    let before = earlier_by(Utc::now().naive_utc(), retention);
    let mut total = 0;
    loop {
        let deleted = store
            .run(move |conn| outbox::prune_delivered(conn, before, BATCH))
            .await?;
        total += deleted;
        if deleted < BATCH as usize {
            return Ok(total);
        }
    }
}

pub async fn prune_until_cancelled(
    store: Store,
    retention: Duration,
    cancel: CancellationToken,
    health: LoopHealth,
) -> Result<(), StoreError> {
    while !cancel.is_cancelled() {
        let deleted = prune(&store, retention).await?;
        if deleted > 0 {
            tracing::info!(deleted, "pruned delivered webhooks past retention");
        }
        health.round_succeeded();
        tokio::select! {
            _ = cancel.cancelled() => {}
            _ = tokio::time::sleep(EVERY) => {}
        }
    }
    Ok(())
}
