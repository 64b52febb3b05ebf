//! The recovery policy's knobs (DESIGN §8): when the completer acts, how it backs off, and
//! how long idempotency keys are kept.

use super::completer::RecoveryConfig;
use crate::settings::{ConfigError, Env};

impl RecoveryConfig {
    pub fn from_env(env: &Env) -> Result<Self, ConfigError> {
        let recovery = RecoveryConfig {
            abandoned_after: env.seconds("COMPLETER_AFTER_SECONDS", 60)?,
            debit_resume_window: env.seconds("DEBIT_RESUME_WINDOW_SECONDS", 60)?,
            manual_review_after: env.seconds("MANUAL_REVIEW_AFTER_SECONDS", 3600)?,
            backoff_initial: env.millis("COMPLETER_BACKOFF_INITIAL_MS", 1_000)?,
            backoff_max: env.seconds("COMPLETER_BACKOFF_MAX_SECONDS", 300)?,
            concurrency: env.count("COMPLETER_CONCURRENCY", 8, 1..=256)?,
            every: env.millis("COMPLETER_INTERVAL_MS", 5_000)?,
            lease_margin: env.millis("IDEMPOTENCY_LEASE_MARGIN_MS", 15_000)?,
            key_retention: env.hours("IDEMPOTENCY_KEY_RETENTION_HOURS", 24)?,
        };
        if recovery.backoff_max < recovery.backoff_initial {
            return Err(ConfigError(
                "COMPLETER_BACKOFF_MAX_SECONDS must not be below COMPLETER_BACKOFF_INITIAL_MS"
                    .into(),
            ));
        }
        Ok(recovery)
    }
}
