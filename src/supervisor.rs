//! Background loops (drainer, completer, reaper, listener, retention) run under a
//! supervisor: a loop that panics, returns an error or ends on its own is logged, counted in
//! `hub_background_restarts_total{loop}`, and started again after a backoff that grows
//! while it keeps failing. A loop that has failed [`FAILING_AFTER`] times in a row without
//! a successful round in between is reported by `/ready` and `hub_background_loop_up`.

use std::collections::BTreeMap;
use std::future::Future;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

use crate::metrics::Metrics;

/// Failures in a row, with no successful round between them, after which a loop is failing.
pub const FAILING_AFTER: u32 = 3;

/// The wait before a restart: `initial`, doubling with each failure in a row, at most `max`.
#[derive(Debug, Clone, Copy)]
pub struct RestartBackoff {
    pub initial: Duration,
    pub max: Duration,
}

impl RestartBackoff {
    pub const DEFAULT: RestartBackoff = RestartBackoff {
        initial: Duration::from_millis(500),
        max: Duration::from_secs(30),
    };

    fn after(&self, failures_in_a_row: u32) -> Duration {
        let doublings = failures_in_a_row.saturating_sub(1).min(16);
        self.initial.saturating_mul(1 << doublings).min(self.max)
    }
}

#[derive(Debug, Clone, Default)]
struct LoopState {
    failures_in_a_row: u32,
}

/// A loop that keeps failing, as `/ready` reports it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FailingLoop {
    pub name: &'static str,
    pub failures_in_a_row: u32,
}

#[derive(Clone)]
pub struct Supervisor {
    loops: Arc<Mutex<BTreeMap<&'static str, LoopState>>>,
    backoff: RestartBackoff,
    metrics: Arc<Metrics>,
}

/// Given to a loop so that it can say a round went well (which ends a run of failures).
#[derive(Clone)]
pub struct LoopHealth {
    name: &'static str,
    supervisor: Supervisor,
}

impl LoopHealth {
    pub fn round_succeeded(&self) {
        self.supervisor.set_failures(self.name, 0);
    }
}

impl Supervisor {
    pub fn new(backoff: RestartBackoff, metrics: Arc<Metrics>) -> Self {
        Self {
            loops: Arc::default(),
            backoff,
            metrics,
        }
    }

    fn lock(&self) -> MutexGuard<'_, BTreeMap<&'static str, LoopState>> {
        self.loops
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    fn set_failures(&self, name: &'static str, failures_in_a_row: u32) {
        self.lock().entry(name).or_default().failures_in_a_row = failures_in_a_row;
        let up = i64::from(failures_in_a_row < FAILING_AFTER);
        self.metrics
            .background_loop_up
            .with_label_values(&[name])
            .set(up);
    }

    fn failed(&self, name: &'static str) -> u32 {
        let failures = self
            .lock()
            .get(name)
            .map_or(0, |state| state.failures_in_a_row)
            .saturating_add(1);
        self.set_failures(name, failures);
        self.metrics
            .background_restarts
            .with_label_values(&[name])
            .inc();
        failures
    }

    /// The loops failing right now, by name.
    pub fn failing(&self) -> Vec<FailingLoop> {
        self.lock()
            .iter()
            .filter(|(_, state)| state.failures_in_a_row >= FAILING_AFTER)
            .map(|(name, state)| FailingLoop {
                name,
                failures_in_a_row: state.failures_in_a_row,
            })
            .collect()
    }

    /// Runs `start(health)` as loop `name` until `cancel` fires, starting it again whenever
    /// it panics, fails or ends early. The loop itself must stop once `cancel` fires.
    pub fn spawn<F, Fut, E>(
        &self,
        name: &'static str,
        cancel: CancellationToken,
        start: F,
    ) -> JoinHandle<()>
    where
        F: Fn(LoopHealth) -> Fut + Send + 'static,
        Fut: Future<Output = Result<(), E>> + Send + 'static,
        E: std::fmt::Display + Send + 'static,
    {
        self.set_failures(name, 0);
        let supervisor = self.clone();
        tokio::spawn(async move {
            let health = LoopHealth {
                name,
                supervisor: supervisor.clone(),
            };
            loop {
                // A task of its own, so that a panic ends this run, not the supervisor.
                let ended = tokio::spawn(start(health.clone())).await;
                if cancel.is_cancelled() {
                    return;
                }
                let failure = match ended {
                    Ok(Ok(())) => "ended on its own".to_owned(),
                    Ok(Err(error)) => error.to_string(),
                    Err(join) if join.is_panic() => format!("panicked: {}", panic_text(join)),
                    Err(_) => "was aborted".to_owned(),
                };
                let failures_in_a_row = supervisor.failed(name);
                let wait = supervisor.backoff.after(failures_in_a_row);
                tracing::error!(
                    background_loop = name,
                    %failure,
                    failures_in_a_row,
                    restart_in_ms = u64::try_from(wait.as_millis()).unwrap_or(u64::MAX),
                    "background loop failed; restarting it"
                );
                tokio::select! {
                    _ = cancel.cancelled() => return,
                    _ = tokio::time::sleep(wait) => {}
                }
            }
        })
    }
}

fn panic_text(join: tokio::task::JoinError) -> String {
    let payload = join.into_panic();
    payload
        .downcast_ref::<&str>()
        .map(|text| (*text).to_owned())
        .or_else(|| payload.downcast_ref::<String>().cloned())
        .unwrap_or_else(|| "a non-text panic".to_owned())
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::{AtomicU32, Ordering};

    fn quick() -> RestartBackoff {
        RestartBackoff {
            initial: Duration::from_millis(1),
            max: Duration::from_millis(4),
        }
    }

    #[test]
    fn the_restart_wait_doubles_up_to_its_maximum() {
        let backoff = RestartBackoff {
            initial: Duration::from_millis(500),
            max: Duration::from_secs(30),
        };
        let waits: Vec<u64> = [1, 2, 3, 4, 8, 1000]
            .map(|n| backoff.after(n).as_millis() as u64)
            .to_vec();
        assert_eq!(waits, [500, 1000, 2000, 4000, 30_000, 30_000]);
    }

    #[tokio::test]
    async fn a_panicking_loop_is_restarted_counted_and_reported_until_it_recovers() {
        let metrics = Arc::new(Metrics::new());
        let supervisor = Supervisor::new(quick(), metrics.clone());
        let runs = Arc::new(AtomicU32::new(0));
        let (recovered_tx, recovered) = tokio::sync::oneshot::channel::<Vec<FailingLoop>>();
        let recovered_tx = Arc::new(Mutex::new(Some(recovered_tx)));
        let cancel = CancellationToken::new();
        let (counter, stop, reporter) = (runs.clone(), cancel.clone(), supervisor.clone());
        let handle = supervisor.spawn("flaky", cancel.clone(), move |health| {
            let (counter, stop, reporter) = (counter.clone(), stop.clone(), reporter.clone());
            let recovered_tx = recovered_tx.clone();
            async move {
                let run = counter.fetch_add(1, Ordering::SeqCst) + 1;
                if run <= 4 {
                    panic!("run {run} fails");
                }
                // What the fifth run sees before it reports any success.
                let failing_before = reporter.failing();
                health.round_succeeded();
                if let Some(tx) = recovered_tx.lock().unwrap().take() {
                    let _ = tx.send(failing_before);
                }
                stop.cancelled().await;
                Ok::<(), String>(())
            }
        });
        let failing_before = recovered.await.expect("the fifth run recovers");
        assert_eq!(
            failing_before,
            [FailingLoop {
                name: "flaky",
                failures_in_a_row: 4
            }]
        );
        assert!(supervisor.failing().is_empty(), "no longer failing");
        let text = metrics.render();
        assert!(
            text.contains(r#"hub_background_restarts_total{loop="flaky"} 4"#),
            "{text}"
        );
        assert!(
            text.contains(r#"hub_background_loop_up{loop="flaky"} 1"#),
            "{text}"
        );
        cancel.cancel();
        handle.await.unwrap();
        assert_eq!(
            runs.load(Ordering::SeqCst),
            5,
            "not restarted once cancelled"
        );
    }

    #[tokio::test]
    async fn an_error_counts_like_a_panic() {
        let metrics = Arc::new(Metrics::new());
        let supervisor = Supervisor::new(quick(), metrics.clone());
        let cancel = CancellationToken::new();
        let stop = cancel.clone();
        let runs = Arc::new(AtomicU32::new(0));
        let counter = runs.clone();
        let handle = supervisor.spawn("erring", cancel.clone(), move |_| {
            let (stop, counter) = (stop.clone(), counter.clone());
            async move {
                if counter.fetch_add(1, Ordering::SeqCst) == FAILING_AFTER {
                    stop.cancel();
                }
                Err::<(), _>("the database is away")
            }
        });
        handle.await.unwrap();
        assert_eq!(
            supervisor.failing(),
            [FailingLoop {
                name: "erring",
                failures_in_a_row: FAILING_AFTER
            }]
        );
        assert!(metrics
            .render()
            .contains(r#"hub_background_loop_up{loop="erring"} 0"#));
    }
}
