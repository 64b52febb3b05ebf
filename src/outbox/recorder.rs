//! Records each delivery outcome as it lands, so that a crash re-sends only what was in
//! flight, never what the RGS had already answered.
//!
//! Outcomes go through the store's group commit (`store::group_commit`): an idle drainer
//! writes each outcome at once, a busy one many per database transaction. [`Recorder::record`]
//! returns only once its outcome is written (or given up on), so a delivery holds its slot
//! until then: a slow database slows claiming, and what is sent but not yet recorded never
//! exceeds the drainer's slots.

use std::sync::Arc;
use std::time::Duration;

use crate::metrics::Metrics;
use crate::store::group_commit::GroupCommit;
use crate::store::outbox::{Outcome, OutcomeWrite};
use crate::store::Store;

#[derive(Clone)]
pub struct Recorder {
    outcomes: GroupCommit<OutcomeWrite>,
    metrics: Arc<Metrics>,
}

/// Tries of one outcome before its event is left to its lease (delivered again later).
const WRITE_TRIES: u32 = 3;

impl Recorder {
    pub fn new(store: &Store, metrics: Arc<Metrics>) -> Self {
        Self {
            outcomes: store.group_commit(OutcomeWrite, metrics.clone()),
            metrics,
        }
    }

    /// Writes one outcome with whatever else is landing, and returns once it is written or
    /// given up on (its lease then brings the event back).
    pub async fn record(&self, outcome: Outcome) {
        for tried in 1..=WRITE_TRIES {
            match self.outcomes.submit(outcome.clone()).await {
                Ok(true) => return,
                Ok(false) => {
                    return tracing::warn!(
                        event_id = %outcome.attempt.outbox_id,
                        "lease lapsed during delivery; another drainer owns this webhook now"
                    )
                }
                Err(error) if tried < WRITE_TRIES => {
                    tracing::warn!(%error, tried, "could not record a webhook attempt; trying again");
                    tokio::time::sleep(Duration::from_millis(200) * tried).await;
                }
                Err(error) => {
                    self.metrics.webhook_record_failures.inc();
                    return tracing::error!(
                        %error,
                        event_id = %outcome.attempt.outbox_id,
                        "could not record a webhook attempt; its lease will bring it back"
                    );
                }
            }
        }
    }
}
