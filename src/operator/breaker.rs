//! A circuit breaker around the operator. It opens when the share of failed calls over a
//! sliding window passes a threshold, refuses new work at once while open, and after a pause
//! lets a single probe through: its success closes the circuit, its failure opens it again.

use std::collections::VecDeque;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

#[derive(Debug, Clone)]
pub struct BreakerConfig {
    /// Failed share of calls (0..=1) in the window that opens the circuit.
    pub failure_ratio: f64,
    /// Calls needed in the window before the ratio is trusted.
    pub min_calls: u32,
    pub window: Duration,
    /// How long the circuit stays open before a probe is allowed.
    pub open_for: Duration,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BreakerState {
    Closed,
    Open,
    HalfOpen,
}

impl BreakerState {
    /// The value of the `hub_operator_circuit_state` gauge.
    pub fn gauge(self) -> i64 {
        match self {
            BreakerState::Closed => 0,
            BreakerState::Open => 1,
            BreakerState::HalfOpen => 2,
        }
    }
}

#[derive(Debug)]
enum Mode {
    Closed,
    Open { until: Instant },
    HalfOpen { probing: bool },
}

#[derive(Debug)]
struct Inner {
    mode: Mode,
    /// (when, succeeded) of recent calls while closed.
    outcomes: VecDeque<(Instant, bool)>,
}

#[derive(Debug)]
pub struct CircuitBreaker {
    config: BreakerConfig,
    inner: Mutex<Inner>,
}

/// Leave to call the operator once. Dropped unrecorded (the call never happened), a probe's
/// slot is given back so that the next request can probe.
pub struct Permit {
    breaker: Arc<CircuitBreaker>,
    probe: bool,
    recorded: bool,
}

impl Permit {
    /// Records the call's outcome; `Some(open_for)` if this opened the circuit.
    pub fn record(mut self, succeeded: bool) -> Option<Duration> {
        self.recorded = true;
        self.breaker.record(self.probe, succeeded)
    }
}

impl Drop for Permit {
    fn drop(&mut self) {
        if self.probe && !self.recorded {
            let mut inner = self.breaker.lock();
            if let Mode::HalfOpen { probing } = &mut inner.mode {
                *probing = false;
            }
        }
    }
}

impl CircuitBreaker {
    pub fn new(config: BreakerConfig) -> Arc<Self> {
        Arc::new(Self {
            config,
            inner: Mutex::new(Inner {
                mode: Mode::Closed,
                outcomes: VecDeque::new(),
            }),
        })
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Inner> {
        self.inner
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    /// A permit to call the operator, or `Err(wait)` while the circuit refuses calls.
    pub fn admit(self: &Arc<Self>) -> Result<Permit, Duration> {
        let mut inner = self.lock();
        let now = Instant::now();
        let probe = match &mut inner.mode {
            Mode::Closed => false,
            Mode::Open { until } if now < *until => return Err(*until - now),
            Mode::Open { .. } => {
                inner.mode = Mode::HalfOpen { probing: true };
                tracing::info!("operator circuit half-open: sending one probe");
                true
            }
            Mode::HalfOpen { probing: true } => return Err(Duration::from_secs(1)),
            Mode::HalfOpen { probing } => {
                *probing = true;
                true
            }
        };
        Ok(Permit {
            breaker: self.clone(),
            probe,
            recorded: false,
        })
    }

    /// `Some(open_for)` when this outcome opened the circuit.
    fn record(&self, probe: bool, succeeded: bool) -> Option<Duration> {
        let mut inner = self.lock();
        let now = Instant::now();
        let open_for = self.config.open_for;
        if probe {
            inner.outcomes.clear();
            if succeeded {
                tracing::info!("operator circuit closed: the probe succeeded");
                inner.mode = Mode::Closed;
                return None;
            }
            tracing::warn!("operator circuit open again: the probe failed");
            inner.mode = Mode::Open {
                until: now + open_for,
            };
            return Some(open_for);
        }
        if !matches!(inner.mode, Mode::Closed) {
            return None;
        }
        inner.outcomes.push_back((now, succeeded));
        while inner
            .outcomes
            .front()
            .is_some_and(|(at, _)| now.duration_since(*at) > self.config.window)
        {
            inner.outcomes.pop_front();
        }
        let calls = inner.outcomes.len();
        let failures = inner.outcomes.iter().filter(|(_, ok)| !ok).count();
        let tripped = calls >= self.config.min_calls as usize
            && failures as f64 >= self.config.failure_ratio * calls as f64;
        if !tripped {
            return None;
        }
        tracing::warn!(
            calls,
            failures,
            open_for_s = open_for.as_secs(),
            "operator circuit open"
        );
        inner.outcomes.clear();
        inner.mode = Mode::Open {
            until: now + open_for,
        };
        Some(open_for)
    }

    pub fn state(&self) -> BreakerState {
        match self.lock().mode {
            Mode::Closed => BreakerState::Closed,
            Mode::Open { .. } => BreakerState::Open,
            Mode::HalfOpen { .. } => BreakerState::HalfOpen,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn breaker(open_for: Duration) -> Arc<CircuitBreaker> {
        CircuitBreaker::new(BreakerConfig {
            failure_ratio: 0.5,
            min_calls: 4,
            window: Duration::from_secs(60),
            open_for,
        })
    }

    fn fail(breaker: &Arc<CircuitBreaker>, times: usize) {
        for _ in 0..times {
            breaker.admit().expect("admitted").record(false);
        }
    }

    #[test]
    fn opens_only_once_enough_calls_fail() {
        let breaker = breaker(Duration::from_secs(60));
        fail(&breaker, 3);
        assert_eq!(
            breaker.state(),
            BreakerState::Closed,
            "three calls are too few to judge"
        );
        breaker.admit().unwrap().record(true);
        assert_eq!(breaker.state(), BreakerState::Open, "3 of 4 failed");
        let wait = breaker.admit().err().expect("refused while open");
        assert!(wait > Duration::from_secs(50));
    }

    #[test]
    fn one_probe_at_a_time_decides_after_the_pause() {
        let breaker = breaker(Duration::ZERO);
        fail(&breaker, 4);
        let probe = breaker.admit().expect("the pause is over: a probe");
        assert_eq!(breaker.state(), BreakerState::HalfOpen);
        assert!(breaker.admit().is_err(), "only one probe at a time");
        probe.record(false);
        assert_eq!(breaker.state(), BreakerState::Open);
        breaker.admit().expect("another probe").record(true);
        assert_eq!(breaker.state(), BreakerState::Closed);
        assert!(breaker.admit().is_ok());
    }

    #[test]
    fn an_unused_probe_lets_the_next_request_probe() {
        let breaker = breaker(Duration::ZERO);
        fail(&breaker, 4);
        drop(breaker.admit().expect("a probe"));
        assert!(breaker.admit().is_ok(), "the slot came back");
    }
}
