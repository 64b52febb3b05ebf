//! The drainer: claims due events under a lease, delivers them with bounded concurrency,
//! records each outcome as it lands, and reschedules or dead-letters failures.
//!
//! It claims only as many events as it has free delivery slots, so every claimed event is
//! on its way at once: a claim's lease need only outlast one attempt (validated at start),
//! a slow RGS answer holds back nothing but its own slot, and a crash re-sends only what
//! was in flight.

use std::sync::Arc;
use std::time::Duration;

use chrono::{NaiveDateTime, Utc};
use futures_util::stream::FuturesUnordered;
use futures_util::StreamExt;
use tokio::sync::Notify;
use tokio_util::sync::CancellationToken;
use uuid::Uuid;

use super::delivery::{self, Attempted};
use super::recorder::Recorder;
use super::schedule::{Next, RetrySchedule};
use super::signer::WebhookSigner;
use super::WebhookConfig;
use crate::domain::instant::later_by;
use crate::metrics::Metrics;
use crate::outbound;
use crate::store::outbox::{self, AfterAttempt, AttemptRow, OutboxRow, Outcome};
use crate::store::{Store, StoreError};
use crate::supervisor::LoopHealth;

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
    recorder: Recorder,
    metrics: Arc<Metrics>,
}

impl Drainer {
    pub fn new(
        store: Store,
        config: &WebhookConfig,
        wake: Arc<Notify>,
        metrics: Arc<Metrics>,
    ) -> Result<Self, reqwest::Error> {
        let http = outbound::client_builder(&config.tls)
            .pool_max_idle_per_host(config.concurrency)
            .build()?;
        Ok(Self {
            recorder: Recorder::new(&store, metrics.clone()),
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

    /// At start: whether an `https://` RGS presents a certificate `WEBHOOK_CA_FILE` (or the
    /// public roots) refuses.
    pub async fn check_certificate(&self) -> Result<(), String> {
        outbound::tls::check_peer_certificate(&self.http, &self.url, "WEBHOOK_CA_FILE").await
    }

    /// Identifies this drainer in the attempts it records, and starts each of its claims'
    /// `locked_by`.
    pub fn worker(&self) -> &str {
        &self.worker
    }

    /// Claims up to `limit` due events for this drainer. A drainer that dies after claiming
    /// holds them until the lease ends; then any drainer may claim them again.
    pub async fn claim(&self, limit: usize) -> Result<Vec<OutboxRow>, StoreError> {
        let (claim, lease_until, limit) = (
            format!("{}/{}", self.worker, Uuid::new_v4().simple()),
            later_by(now(), self.lease),
            i64::try_from(limit).unwrap_or(i64::MAX),
        );
        self.store
            .run(move |conn| outbox::claim_due(conn, &claim, now(), lease_until, limit))
            .await
    }

    /// The most events one claim may take: one per free slot, at most a batch. A slot is
    /// free once its outcome is written, so a slow database slows claiming.
    fn claim_size(&self, in_flight: usize) -> usize {
        self.concurrency
            .saturating_sub(in_flight)
            .min(self.batch_size)
    }

    /// Whether to claim now for `room` free slots: at once when nothing is in flight (an idle
    /// drainer adds no wait), otherwise once a quarter of the slots are free. A claim is one
    /// statement whatever its size; refilling slot by slot under a backlog spent a claim
    /// per event (1,187 webhooks/s from a 100,000-event backlog, docs/BENCHMARKS.md).
    fn worth_claiming(&self, room: usize, in_flight: usize) -> bool {
        let quarter = (self.concurrency.min(self.batch_size) / 4).max(1);
        room > 0 && (in_flight == 0 || room >= quarter)
    }

    /// One round, deterministically: claims what fits in the free slots, delivers it all,
    /// and returns once every outcome is recorded; returns how many events it claimed.
    pub async fn run_once(&self) -> Result<usize, StoreError> {
        let events = self.claim(self.claim_size(0)).await?;
        let claimed = events.len();
        let mut deliveries: FuturesUnordered<_> = events
            .into_iter()
            .map(|event| self.deliver_and_record(event))
            .collect();
        while deliveries.next().await.is_some() {}
        Ok(claimed)
    }

    /// Drains until `cancel` fires, refilling free slots as deliveries finish: at once when
    /// woken (a commit in this process or, on Postgres, in any replica), otherwise every
    /// poll interval. In-flight deliveries finish, and are recorded, before it returns.
    /// A claim that fails is returned as the error after in-flight work is recorded, so
    /// that the supervisor counts it and runs the loop again.
    pub async fn run_until_cancelled(
        self,
        cancel: CancellationToken,
        health: LoopHealth,
    ) -> Result<(), StoreError> {
        tracing::info!(worker = %self.worker, url = %crate::settings::redact_url(&self.url), "webhook drainer started");
        let mut in_flight = FuturesUnordered::new();
        let mut poll = tokio::time::interval(self.poll_interval);
        poll.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        // Whether the last claim may have left due events behind.
        let mut more_due = true;
        let mut failure = None;
        while !cancel.is_cancelled() && failure.is_none() {
            let room = self.claim_size(in_flight.len());
            if more_due && self.worth_claiming(room, in_flight.len()) {
                match self.claim(room).await {
                    Ok(events) => {
                        health.round_succeeded();
                        more_due = events.len() == room;
                        in_flight.extend(events.into_iter().map(|e| self.deliver_and_record(e)));
                        if more_due && self.claim_size(in_flight.len()) > 0 {
                            continue;
                        }
                    }
                    Err(error) => {
                        failure = Some(error);
                        continue;
                    }
                }
            }
            tokio::select! {
                _ = cancel.cancelled() => {}
                Some(()) = in_flight.next(), if !in_flight.is_empty() => {}
                _ = self.wake.notified() => more_due = true,
                _ = poll.tick() => more_due = true,
            }
        }
        while in_flight.next().await.is_some() {}
        tracing::info!(worker = %self.worker, "webhook drainer stopped");
        failure.map_or(Ok(()), Err)
    }

    async fn deliver_and_record(&self, event: OutboxRow) {
        let outcome = self.deliver(event).await;
        self.recorder.record(outcome).await;
    }

    #[tracing::instrument(skip_all, fields(event_id = %event.id, correlation_id = event.correlation_id.as_deref().unwrap_or("")))]
    async fn deliver(&self, event: OutboxRow) -> Outcome {
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
        // Claimed rows always carry their claim; without one the outcome moves nothing.
        let claim = event.locked_by.unwrap_or_default();
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
        Outcome {
            attempt: record,
            after,
            claim,
        }
    }

    fn after(&self, attempt: i32, result: &Attempted) -> AfterAttempt {
        if result.error.is_none() {
            return AfterAttempt::Delivered;
        }
        let attempt = u32::try_from(attempt).unwrap_or(1).max(1);
        match self
            .schedule
            .after_failure(attempt, result.retry_after, result.gone)
        {
            Next::RetryIn(wait) => AfterAttempt::RetryAt(later_by(now(), wait)),
            Next::DeadLetter => AfterAttempt::DeadLetter,
        }
    }
}
