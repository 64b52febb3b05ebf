//! How the hub reaches the operator: its URL, the retry budget, the circuit breaker and the
//! shared call rate.

use std::time::Duration;

use super::BreakerConfig;
use crate::outbound::tls::{redis_tls, PeerTls};
use crate::settings::{http_url, positive, redact_url, ConfigError, Env};

#[derive(Debug, Clone)]
pub struct RetryConfig {
    pub attempt_timeout: Duration,
    /// Budget for one wallet call towards the operator, waits included.
    pub deadline: Duration,
    pub initial_backoff: Duration,
    pub max_backoff: Duration,
}

#[derive(Clone)]
pub struct OperatorConfig {
    pub base_url: String,
    pub retry: RetryConfig,
    pub breaker: BreakerConfig,
    /// Calls per minute all replicas together may make; 0: no limit.
    pub requests_per_minute: u32,
    /// Shares the governor between replicas; `None` keeps it in process.
    pub redis_url: Option<String>,
    pub redis_key_prefix: String,
    /// `OPERATOR_CA_FILE`, `OPERATOR_CLIENT_CERT`, `OPERATOR_CLIENT_KEY`.
    pub tls: PeerTls,
    /// `REDIS_CA_FILE`, `REDIS_CLIENT_CERT`, `REDIS_CLIENT_KEY` (with `rediss://` only).
    pub redis_tls: PeerTls,
}

impl std::fmt::Debug for OperatorConfig {
    // Hand-written: the base and Redis URLs may carry credentials.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("OperatorConfig")
            .field("base_url", &redact_url(&self.base_url))
            .field("retry", &self.retry)
            .field("breaker", &self.breaker)
            .field("requests_per_minute", &self.requests_per_minute)
            .field("redis_url", &self.redis_url.as_deref().map(redact_url))
            .field("redis_key_prefix", &self.redis_key_prefix)
            .field("tls", &self.tls)
            .field("redis_tls", &self.redis_tls)
            .finish()
    }
}

impl OperatorConfig {
    pub fn from_env(env: &Env) -> Result<Self, ConfigError> {
        let base_url = env
            .url("OPERATOR_BASE_URL", Some("http://127.0.0.1:3001"))
            .unwrap_or_default();
        let redis_url = redis_url(env.url("REDIS_URL", None))?;
        Ok(OperatorConfig {
            base_url: http_url("OPERATOR_BASE_URL", base_url.trim().trim_end_matches('/'))?,
            retry: RetryConfig::from_env(env)?,
            breaker: BreakerConfig::from_env(env)?,
            requests_per_minute: env.parse(
                "OPERATOR_RATE_LIMIT_RPM",
                0,
                "a whole number of calls per minute",
            )?,
            redis_tls: redis_tls(env, redis_url.as_deref())?,
            redis_url,
            redis_key_prefix: env.text("REDIS_KEY_PREFIX", "hub:").to_owned(),
            tls: PeerTls::from_env(env, "OPERATOR")?,
        })
    }
}

fn redis_url(text: Option<&str>) -> Result<Option<String>, ConfigError> {
    match text {
        None => Ok(None),
        Some(url) if url.starts_with("redis://") || url.starts_with("rediss://") => {
            Ok(Some(url.to_owned()))
        }
        Some(url) => Err(ConfigError(format!(
            "REDIS_URL must start with redis://, got {:?}",
            redact_url(url)
        ))),
    }
}

impl RetryConfig {
    fn from_env(env: &Env) -> Result<Self, ConfigError> {
        let retry = RetryConfig {
            attempt_timeout: env.millis("OPERATOR_ATTEMPT_TIMEOUT_MS", 2_000)?,
            deadline: env.millis("OPERATOR_DEADLINE_MS", 10_000)?,
            initial_backoff: env.millis("OPERATOR_RETRY_INITIAL_MS", 100)?,
            max_backoff: env.millis("OPERATOR_RETRY_MAX_MS", 2_000)?,
        };
        if retry.max_backoff < retry.initial_backoff {
            return Err(ConfigError(
                "OPERATOR_RETRY_MAX_MS must not be below OPERATOR_RETRY_INITIAL_MS".into(),
            ));
        }
        Ok(retry)
    }
}

impl BreakerConfig {
    fn from_env(env: &Env) -> Result<Self, ConfigError> {
        let failure_ratio: f64 = env.parse(
            "OPERATOR_BREAKER_FAILURE_RATIO",
            0.5,
            "a number between 0 and 1",
        )?;
        if !(failure_ratio > 0.0 && failure_ratio <= 1.0) {
            return Err(ConfigError(format!(
                "OPERATOR_BREAKER_FAILURE_RATIO must be above 0 and at most 1, got {failure_ratio}"
            )));
        }
        Ok(BreakerConfig {
            failure_ratio,
            min_calls: positive(
                env.parse("OPERATOR_BREAKER_MIN_CALLS", 10, "a whole number")?,
                "OPERATOR_BREAKER_MIN_CALLS",
            )?,
            window: env.millis("OPERATOR_BREAKER_WINDOW_MS", 30_000)?,
            open_for: env.millis("OPERATOR_BREAKER_OPEN_MS", 15_000)?,
        })
    }
}
