//! Records each delivery outcome as it lands, so that a crash re-sends only what was in
//! flight, never what the RGS had already answered.
//!
//! Outcomes are written in groups without a timer: the first outcome to arrive while no
//! write is under way writes, and whatever lands during that write goes in the next group
//! (group commit). An idle drainer writes each outcome at once; a busy one writes many per
//! database transaction. [`Recorder::record`] returns only once its outcome is written (or
//! given up on), so a delivery holds its slot until then: a slow database slows claiming,
//! and what is sent but not yet recorded never exceeds the drainer's slots.

use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use chrono::Utc;
use tokio::sync::oneshot;

use crate::metrics::Metrics;
use crate::store::outbox::{self, Outcome};
use crate::store::Store;

/// Outcomes still to write, and whether a writer is at work on them.
/// An outcome and who waits for it to be written.
type Queued = (Outcome, oneshot::Sender<()>);

#[derive(Default)]
struct Queue {
    outcomes: Vec<Queued>,
    writing: bool,
}

#[derive(Clone)]
pub struct Recorder {
    store: Store,
    queue: Arc<Mutex<Queue>>,
    metrics: Arc<Metrics>,
}

/// Tries of one group before its events are left to their leases (delivered again later).
const WRITE_TRIES: u32 = 3;

impl Recorder {
    pub fn new(store: Store, metrics: Arc<Metrics>) -> Self {
        Self {
            store,
            queue: Arc::default(),
            metrics,
        }
    }

    fn lock(&self) -> MutexGuard<'_, Queue> {
        self.queue
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    /// Queues one outcome and returns once it is written or given up on (its lease then
    /// brings the event back). The first caller to find no write under way writes every
    /// group until the queue is empty; the others wait for theirs.
    pub async fn record(&self, outcome: Outcome) {
        let (written, done) = oneshot::channel();
        self.lock().outcomes.push((outcome, written));
        self.write_queue().await;
        // An error only means the writer ended early; the outcome stays queued for the next.
        let _ = done.await;
    }

    /// Writes whatever a writer that ended early (a panic mid-write) left in the queue.
    pub async fn flush(&self) {
        self.write_queue().await;
    }

    async fn write_queue(&self) {
        {
            let mut queue = self.lock();
            if queue.writing || queue.outcomes.is_empty() {
                return;
            }
            queue.writing = true;
        }
        let mut writer = Writer {
            recorder: self,
            done: false,
        };
        while let Some(group) = writer.next_group() {
            let (outcomes, waiting): (Vec<Outcome>, Vec<_>) = group.into_iter().unzip();
            self.write(outcomes).await;
            for written in waiting {
                let _ = written.send(());
            }
        }
    }

    async fn write(&self, group: Vec<Outcome>) {
        let events = group.len();
        for tried in 1..=WRITE_TRIES {
            let batch = group.clone();
            let written = self
                .store
                .run(move |conn| outbox::record_attempts(conn, &batch, Utc::now().naive_utc()))
                .await;
            match written {
                Ok(moved) if moved < events => {
                    return tracing::warn!(
                        lapsed = events - moved,
                        "leases lapsed during delivery; another drainer owns those webhooks now"
                    )
                }
                Ok(_) => return,
                Err(error) if tried < WRITE_TRIES => {
                    tracing::warn!(%error, tried, "could not record webhook attempts; trying again");
                    tokio::time::sleep(Duration::from_millis(200) * tried).await;
                }
                Err(error) => {
                    self.metrics
                        .webhook_record_failures
                        .inc_by(u64::try_from(events).unwrap_or(u64::MAX));
                    return tracing::error!(
                        %error,
                        events,
                        "could not record webhook attempts; their leases will bring them back"
                    );
                }
            }
        }
    }
}

/// The one caller writing the queue. Dropped early (a panic, a cancelled future), it hands
/// the writing back so that the next outcome starts a new writer.
struct Writer<'a> {
    recorder: &'a Recorder,
    done: bool,
}

impl Writer<'_> {
    /// The next group to write, or `None` (and the writing handed back) once the queue is empty.
    fn next_group(&mut self) -> Option<Vec<Queued>> {
        let mut queue = self.recorder.lock();
        if queue.outcomes.is_empty() {
            queue.writing = false;
            self.done = true;
            return None;
        }
        Some(std::mem::take(&mut queue.outcomes))
    }
}

impl Drop for Writer<'_> {
    fn drop(&mut self) {
        if !self.done {
            self.recorder.lock().writing = false;
        }
    }
}
