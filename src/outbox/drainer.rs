//! The drainer: claims due events under a lease, delivers them with bounded concurrency,
//! records every attempt, and reschedules or dead-letters failures.

use std::sync::Arc;
use std::time::Duration;

use chrono::{NaiveDateTime, Utc};
use futures_util::StreamExt;
use tokio::sync::Notify;
use tokio_util::sync::CancellationToken;
use uuid::Uuid;

use super::delivery::{self, Attempted};
use super::schedule::{Next, RetrySchedule};
use super::signer::WebhookSigner;
use crate::config::WebhookConfig;
use crate::metrics::Metrics;
use crate::store::outbox::{self, AfterAttempt, AttemptRow, OutboxRow};
use crate::store::{Store, StoreError};

fn now() -> NaiveDateTime {
    Utc::now().naive_utc()
}

#[derive(Clone)]
pub struct Drainer {
    store: Store,
    http: reqwest::Client,
    url: String,
    signer: WebhookSigner,
    schedule: RetrySchedule,
    attempt_timeout: Duration,
    concurrency: usize,
    batch_size: usize,
    lease: Duration,
    poll_interval: Duration,
    /// Identifies this drainer's claims; unique per process start.
    worker: String,
    wake: Arc<Notify>,
    metrics: Arc<Metrics>,
}

impl Drainer {
    pub fn new(
        store: Store,
        config: &WebhookConfig,
        wake: Arc<Notify>,
        metrics: Arc<Metrics>,
    ) -> Result<Self, reqwest::Error> {
        let http = reqwest::Client::builder()
            .pool_idle_timeout(Duration::from_secs(90))
            .pool_max_idle_per_host(config.concurrency)
            .tcp_nodelay(true)
            .build()?;
        Ok(Self {
            store,
            http,
            url: config.url.clone(),
            signer: WebhookSigner::new(config.key.clone()),
            schedule: RetrySchedule::new(config.schedule.clone()),
            attempt_timeout: config.attempt_timeout,
            concurrency: config.concurrency,
            batch_size: config.batch_size,
            lease: config.lease,
            poll_interval: config.poll_interval,
            worker: format!("{}-{}", std::process::id(), Uuid::new_v4().simple()),
            wake,
            metrics,
        })
    }

    /// Identifies this drainer in `locked_by` and in the attempts it records.
    pub fn worker(&self) -> &str {
        &self.worker
    }

    /// Claims due events for this drainer. A drainer that dies after claiming holds them
    /// until the lease ends; then any drainer may claim them again.
    pub async fn claim(&self) -> Result<Vec<OutboxRow>, StoreError> {
        let (worker, lease_until, limit) = (
            self.worker.clone(),
            now() + self.lease,
            self.batch_size as i64,
        );
        self.store
            .run(move |conn| outbox::claim_due(conn, &worker, now(), lease_until, limit))
            .await
    }

    /// Claims one batch, delivers it, and records every attempt in one database transaction;
    /// returns how many were claimed. Once `cancel` fires, events not yet started are released
    /// instead of delivered.
    pub async fn run_once(&self, cancel: &CancellationToken) -> Result<usize, StoreError> {
        let events = self.claim().await?;
        let claimed = events.len();
        let outcomes: Vec<Result<(AttemptRow, AfterAttempt), String>> =
            futures_util::stream::iter(events)
                .map(|event| async move {
                    if cancel.is_cancelled() {
                        Err(event.id)
                    } else {
                        Ok(self.deliver(event).await)
                    }
                })
                .buffer_unordered(self.concurrency)
                .collect()
                .await;
        let (mut attempts, mut unstarted) = (Vec::new(), Vec::new());
        for outcome in outcomes {
            match outcome {
                Ok(attempt) => attempts.push(attempt),
                Err(event_id) => unstarted.push(event_id),
            }
        }
        // If recording fails, the leases bring the events back: delivered again, never lost.
        if !unstarted.is_empty() {
            if let Err(error) = self.release(unstarted).await {
                tracing::warn!(%error, "could not release unstarted webhooks; their leases will lapse");
            }
        }
        if !attempts.is_empty() {
            let recorded = attempts.len();
            let moved = self
                .store
                .run(move |conn| outbox::record_attempts(conn, &attempts, now()))
                .await;
            match moved {
                Ok(moved) if moved < recorded => tracing::warn!(
                    lapsed = recorded - moved,
                    "leases lapsed during delivery; another drainer owns those webhooks now"
                ),
                Ok(_) => {}
                Err(error) => tracing::warn!(%error, "could not record webhook attempts"),
            }
        }
        Ok(claimed)
    }

    /// Drains until `cancel` fires: at once when woken (a commit in this process or, on
    /// Postgres, in any replica), otherwise every poll interval. In-flight deliveries finish
    /// before it returns.
    pub async fn run_until_cancelled(self, cancel: CancellationToken) {
        tracing::info!(worker = %self.worker, url = %crate::config::redact_url(&self.url), "webhook drainer started");
        while !cancel.is_cancelled() {
            match self.run_once(&cancel).await {
                Ok(claimed) if claimed == self.batch_size => continue,
                Ok(_) => {}
                Err(error) => tracing::warn!(%error, "could not claim webhooks; will try again"),
            }
            tokio::select! {
                _ = cancel.cancelled() => {}
                _ = self.wake.notified() => {}
                _ = tokio::time::sleep(self.poll_interval) => {}
            }
        }
        tracing::info!(worker = %self.worker, "webhook drainer stopped");
    }

    #[tracing::instrument(skip_all, fields(event_id = %event.id, correlation_id = event.correlation_id.as_deref().unwrap_or("")))]
    async fn deliver(&self, event: OutboxRow) -> (AttemptRow, AfterAttempt) {
        let attempted_at = now();
        let result = delivery::attempt(
            &self.http,
            &self.url,
            &self.signer,
            &event,
            self.attempt_timeout,
        )
        .await;
        let attempt = event.attempts.saturating_add(1);
        let after = self.after(attempt, &result);
        let outcome = match after {
            AfterAttempt::Delivered => "delivered",
            AfterAttempt::RetryAt(_) => "failed",
            AfterAttempt::DeadLetter => "dead_letter",
        };
        self.metrics
            .webhook_deliveries
            .with_label_values(&[outcome])
            .inc();
        self.metrics
            .webhook_duration
            .observe(result.took.as_secs_f64());
        match after {
            AfterAttempt::Delivered => tracing::info!(
                attempt,
                took_ms = result.took.as_millis() as u64,
                "webhook delivered"
            ),
            AfterAttempt::RetryAt(at) => {
                tracing::warn!(attempt, error = result.error.as_deref(), next_attempt_at = %at, "webhook failed; will retry")
            }
            AfterAttempt::DeadLetter => tracing::error!(
                attempt,
                error = result.error.as_deref(),
                "webhook dead-lettered"
            ),
        }
        let record = AttemptRow {
            id: 0,
            outbox_id: event.id,
            attempt,
            attempted_at,
            status_code: result.status_code.map(i32::from),
            error: result.error,
            duration_ms: result.took.as_millis() as i64,
            worker: self.worker.clone(),
        };
        (record, after)
    }

    fn after(&self, attempt: i32, result: &Attempted) -> AfterAttempt {
        if result.error.is_none() {
            return AfterAttempt::Delivered;
        }
        match self
            .schedule
            .after_failure(attempt.max(1) as u32, result.retry_after, result.gone)
        {
            Next::RetryIn(wait) => AfterAttempt::RetryAt(now() + wait),
            Next::DeadLetter => AfterAttempt::DeadLetter,
        }
    }

    async fn release(&self, ids: Vec<String>) -> Result<(), StoreError> {
        let worker = self.worker.clone();
        self.store
            .run(move |conn| outbox::release(conn, &ids, &worker, now()).map_err(StoreError::from))
            .await
            .map(|_| ())
    }
}
