//! When to try an event again: the configured schedule with ±20 % jitter, never sooner than
//! the receiver's `Retry-After`, and dead-lettered after the last step or on 410 Gone.

use std::time::Duration;

use rand::Rng;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Next {
    RetryIn(Duration),
    DeadLetter,
}

#[derive(Debug, Clone)]
pub struct RetrySchedule(Vec<Duration>);

impl RetrySchedule {
    pub fn new(steps: Vec<Duration>) -> Self {
        Self(steps)
    }

    /// After failed attempt number `attempt` (1-based).
    pub fn after_failure(&self, attempt: u32, retry_after: Option<Duration>, gone: bool) -> Next {
        let step = (attempt as usize)
            .checked_sub(1)
            .and_then(|index| self.0.get(index));
        match step {
            Some(step) if !gone => {
                let jittered = step.mul_f64(rand::thread_rng().gen_range(0.8..=1.2));
                Next::RetryIn(jittered.max(retry_after.unwrap_or_default()))
            }
            _ => Next::DeadLetter,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn schedule() -> RetrySchedule {
        RetrySchedule::new([1, 5, 15, 60, 300].map(Duration::from_secs).to_vec())
    }

    #[test]
    fn follows_the_schedule_with_bounded_jitter_then_dead_letters() {
        for (attempt, seconds) in [(1, 1.0), (2, 5.0), (3, 15.0), (4, 60.0), (5, 300.0)] {
            let Next::RetryIn(wait) = schedule().after_failure(attempt, None, false) else {
                panic!("attempt {attempt} should be retried");
            };
            let wait = wait.as_secs_f64();
            assert!(
                wait >= seconds * 0.8 && wait <= seconds * 1.2,
                "attempt {attempt}: {wait}"
            );
        }
        assert_eq!(schedule().after_failure(6, None, false), Next::DeadLetter);
    }

    #[test]
    fn retry_after_is_a_floor_and_gone_is_final() {
        let Next::RetryIn(wait) = schedule().after_failure(1, Some(Duration::from_secs(30)), false)
        else {
            panic!("retried");
        };
        assert_eq!(wait, Duration::from_secs(30));
        assert_eq!(schedule().after_failure(1, None, true), Next::DeadLetter);
    }
}
