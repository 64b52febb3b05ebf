//! Configuration from environment variables, validated once at start.
//!
//! Every value has a default except the signing secrets of `hub serve`; a bad value stops
//! the process with one line naming the variable. Tests build [`Config`] directly.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use crate::domain::money::Currency;
use crate::operator::BreakerConfig;
use crate::wallet::completer::RecoveryConfig;

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
#[error("{0}")]
pub struct ConfigError(String);

#[derive(Clone, PartialEq, Eq)]
pub enum DatabaseUrl {
    Postgres(String),
    Sqlite(PathBuf),
}

impl std::fmt::Debug for DatabaseUrl {
    // Hand-written: the URL's password must never reach a log line.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            DatabaseUrl::Postgres(url) => {
                f.debug_tuple("Postgres").field(&redact_url(url)).finish()
            }
            DatabaseUrl::Sqlite(path) => f.debug_tuple("Sqlite").field(path).finish(),
        }
    }
}

#[derive(Debug, Clone)]
pub struct DatabaseConfig {
    pub url: DatabaseUrl,
    pub pool_size: u32,
    /// How long a request waits for a pooled connection before the store counts as down.
    pub acquire_timeout: Duration,
}

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
            .finish()
    }
}

/// Delivery of the outbox to the RGS.
#[derive(Clone)]
pub struct WebhookConfig {
    /// Whether this process drains the outbox (off for API-only replicas).
    pub drain: bool,
    pub url: String,
    /// HMAC key for both signature schemes (from `WEBHOOK_SECRET`, `whsec_` base64 or raw).
    pub key: Vec<u8>,
    /// Wait before each retry; after the last one fails the event is dead-lettered.
    pub schedule: Vec<Duration>,
    pub attempt_timeout: Duration,
    pub concurrency: usize,
    pub batch_size: usize,
    /// How long a claimed row stays reserved for its drainer.
    pub lease: Duration,
    /// Fallback wake-up when no notification arrives.
    pub poll_interval: Duration,
    /// Delivered events older than this are deleted, with their attempts.
    pub retention: Duration,
}

impl std::fmt::Debug for WebhookConfig {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("WebhookConfig")
            .field("drain", &self.drain)
            .field("url", &redact_url(&self.url))
            .field("key", &"<redacted>")
            .field("schedule", &self.schedule)
            .field("attempt_timeout", &self.attempt_timeout)
            .field("concurrency", &self.concurrency)
            .field("batch_size", &self.batch_size)
            .field("lease", &self.lease)
            .field("poll_interval", &self.poll_interval)
            .field("retention", &self.retention)
            .finish()
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LogFormat {
    Json,
    Pretty,
}

#[derive(Clone)]
pub struct Config {
    pub listen_addr: SocketAddr,
    pub database: DatabaseConfig,
    /// Any one verifies an inbound request; rotation adds the new one, then drops the old.
    pub hmac_secrets: Vec<Vec<u8>>,
    pub signature_tolerance: Duration,
    pub supported_currencies: Vec<Currency>,
    pub operator: OperatorConfig,
    pub body_limit_bytes: usize,
    pub log_format: LogFormat,
    pub workers: usize,
    pub webhooks: WebhookConfig,
    /// Bearer token of the admin API; `None` turns the admin API off.
    pub admin_token: Option<String>,
    pub recovery: RecoveryConfig,
}

impl std::fmt::Debug for Config {
    // Hand-written so that the secrets can never reach a log line.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Config")
            .field("listen_addr", &self.listen_addr)
            .field("database", &self.database)
            .field(
                "hmac_secrets",
                &format!("<{} redacted>", self.hmac_secrets.len()),
            )
            .field("signature_tolerance", &self.signature_tolerance)
            .field("supported_currencies", &self.supported_currencies)
            .field("operator", &self.operator)
            .field("body_limit_bytes", &self.body_limit_bytes)
            .field("log_format", &self.log_format)
            .field("workers", &self.workers)
            .field("webhooks", &self.webhooks)
            .field(
                "admin_token",
                &self.admin_token.as_ref().map(|_| "<redacted>"),
            )
            .finish()
    }
}

pub const MIN_SECRET_BYTES: usize = 32;
/// The secret `hub demo` signs with when none is configured; printed in the README.
pub const DEMO_HMAC_SECRET: &str = "demo-secret-for-local-use-only-0123456789";
/// The secret `hub demo` signs webhooks with; the `mock-rgs` binary defaults to the same one.
pub const DEMO_WEBHOOK_SECRET: &str = "demo-webhook-secret-for-local-use-0123456789";

/// The environment as a lookup table, so that tests can vary it without touching globals.
pub struct Env(HashMap<String, String>);

impl Env {
    pub fn from_process() -> Self {
        Self(std::env::vars().collect())
    }

    pub fn from_pairs<'a>(pairs: impl IntoIterator<Item = (&'a str, &'a str)>) -> Self {
        Self(
            pairs
                .into_iter()
                .map(|(k, v)| (k.to_owned(), v.to_owned()))
                .collect(),
        )
    }

    fn get(&self, name: &str) -> Option<&str> {
        self.0
            .get(name)
            .map(String::as_str)
            .filter(|v| !v.trim().is_empty())
    }

    fn parse<T: std::str::FromStr>(
        &self,
        name: &str,
        default: T,
        what: &str,
    ) -> Result<T, ConfigError> {
        match self.get(name) {
            None => Ok(default),
            Some(text) => text
                .trim()
                .parse()
                .map_err(|_| ConfigError(format!("{name} must be {what}, got {text:?}"))),
        }
    }

    fn millis(&self, name: &str, default_ms: u64) -> Result<Duration, ConfigError> {
        let ms: u64 = self.parse(name, default_ms, "a whole number of milliseconds")?;
        if ms == 0 {
            return Err(ConfigError(format!("{name} must be greater than 0")));
        }
        Ok(Duration::from_millis(ms))
    }
}

/// What differs between `hub serve` and `hub demo` when a variable is unset.
#[derive(Debug, Clone, Copy)]
pub struct Defaults {
    pub hmac_secret: Option<&'static str>,
    pub webhook_secret: Option<&'static str>,
    pub log_format: LogFormat,
}

impl Defaults {
    pub const SERVE: Defaults = Defaults {
        hmac_secret: None,
        webhook_secret: None,
        log_format: LogFormat::Json,
    };
    pub const DEMO: Defaults = Defaults {
        hmac_secret: Some(DEMO_HMAC_SECRET),
        webhook_secret: Some(DEMO_WEBHOOK_SECRET),
        log_format: LogFormat::Pretty,
    };
}

impl Config {
    pub fn from_env(env: &Env, defaults: Defaults) -> Result<Self, ConfigError> {
        let listen_addr = env.parse(
            "LISTEN_ADDR",
            "127.0.0.1:3000".parse().expect("valid"),
            "a socket address like 0.0.0.0:3000",
        )?;
        let operator = OperatorConfig::from_env(env)?;
        let recovery = recovery_config(env)?;
        // A crashed request's key is free again only after the deadline and the lease margin;
        // a window no longer than that leaves its client no chance to resume the debit.
        let key_free_after = operator.retry.deadline + recovery.lease_margin;
        if recovery.debit_resume_window <= key_free_after {
            return Err(ConfigError(format!(
                "DEBIT_RESUME_WINDOW_SECONDS must exceed OPERATOR_DEADLINE_MS + IDEMPOTENCY_LEASE_MARGIN_MS ({} s), got {} s",
                key_free_after.as_secs_f64(),
                recovery.debit_resume_window.as_secs()
            )));
        }
        Ok(Self {
            listen_addr,
            database: database_config(env)?,
            hmac_secrets: hmac_secrets(env, defaults)?,
            signature_tolerance: Duration::from_secs(env.parse(
                "SIGNATURE_TOLERANCE_SECONDS",
                300,
                "a whole number of seconds",
            )?),
            supported_currencies: currencies(
                env.get("SUPPORTED_CURRENCIES").unwrap_or("USD,EUR,GBP"),
            )?,
            operator,
            body_limit_bytes: positive(
                env.parse("BODY_LIMIT_BYTES", 64 * 1024, "a whole number of bytes")?,
                "BODY_LIMIT_BYTES",
            )?,
            log_format: log_format(env.get("LOG_FORMAT"), defaults.log_format)?,
            workers: positive(
                env.parse("HTTP_WORKERS", 2, "a whole number")?,
                "HTTP_WORKERS",
            )?,
            webhooks: webhook_config(env, defaults)?,
            admin_token: admin_token(env)?,
            recovery,
        })
    }
}

fn seconds(env: &Env, name: &str, default: u64) -> Result<Duration, ConfigError> {
    Ok(Duration::from_secs(positive(
        env.parse(name, default, "a whole number of seconds")?,
        name,
    )?))
}

fn recovery_config(env: &Env) -> Result<RecoveryConfig, ConfigError> {
    let recovery = RecoveryConfig {
        abandoned_after: seconds(env, "COMPLETER_AFTER_SECONDS", 60)?,
        debit_resume_window: seconds(env, "DEBIT_RESUME_WINDOW_SECONDS", 60)?,
        manual_review_after: seconds(env, "MANUAL_REVIEW_AFTER_SECONDS", 3600)?,
        backoff_initial: env.millis("COMPLETER_BACKOFF_INITIAL_MS", 1_000)?,
        backoff_max: seconds(env, "COMPLETER_BACKOFF_MAX_SECONDS", 300)?,
        concurrency: bounded(
            env.parse("COMPLETER_CONCURRENCY", 8, "a whole number")?,
            "COMPLETER_CONCURRENCY",
            1..=256,
        )?,
        every: env.millis("COMPLETER_INTERVAL_MS", 5_000)?,
        lease_margin: env.millis("IDEMPOTENCY_LEASE_MARGIN_MS", 15_000)?,
        key_retention: Duration::from_secs(
            3600 * positive(
                env.parse(
                    "IDEMPOTENCY_KEY_RETENTION_HOURS",
                    24,
                    "a whole number of hours",
                )?,
                "IDEMPOTENCY_KEY_RETENTION_HOURS",
            )?,
        ),
    };
    if recovery.backoff_max < recovery.backoff_initial {
        return Err(ConfigError(
            "COMPLETER_BACKOFF_MAX_SECONDS must not be below COMPLETER_BACKOFF_INITIAL_MS".into(),
        ));
    }
    Ok(recovery)
}

fn bounded(
    value: usize,
    name: &str,
    range: std::ops::RangeInclusive<usize>,
) -> Result<usize, ConfigError> {
    if range.contains(&value) {
        Ok(value)
    } else {
        Err(ConfigError(format!(
            "{name} must be between {} and {}, got {value}",
            range.start(),
            range.end()
        )))
    }
}

fn positive<T: PartialOrd + Default>(value: T, name: &str) -> Result<T, ConfigError> {
    if value > T::default() {
        Ok(value)
    } else {
        Err(ConfigError(format!("{name} must be greater than 0")))
    }
}

pub fn database_url(text: &str) -> Result<DatabaseUrl, ConfigError> {
    if text.starts_with("postgres://") || text.starts_with("postgresql://") {
        return Ok(DatabaseUrl::Postgres(text.to_owned()));
    }
    match text
        .strip_prefix("sqlite://")
        .or_else(|| text.strip_prefix("sqlite:"))
    {
        Some(path) if !path.is_empty() => Ok(DatabaseUrl::Sqlite(PathBuf::from(path))),
        _ => Err(ConfigError(format!(
            "DATABASE_URL must start with postgres://, postgresql:// or sqlite://, got {:?}",
            redact_url(text)
        ))),
    }
}

/// Drops the password of a URL before it is shown anywhere.
pub fn redact_url(text: &str) -> String {
    match (text.find("://"), text.rfind('@')) {
        (Some(scheme_end), Some(at)) if at > scheme_end => {
            let userinfo = &text[scheme_end + 3..at];
            let user = userinfo.split(':').next().unwrap_or("");
            format!("{}{user}:***{}", &text[..scheme_end + 3], &text[at..])
        }
        _ => text.to_owned(),
    }
}

impl OperatorConfig {
    pub fn from_env(env: &Env) -> Result<Self, ConfigError> {
        Ok(OperatorConfig {
            base_url: operator_base_url(
                env.get("OPERATOR_BASE_URL")
                    .unwrap_or("http://127.0.0.1:3001"),
            )?,
            retry: retry_config(env)?,
            breaker: breaker_config(env)?,
            requests_per_minute: env.parse(
                "OPERATOR_RATE_LIMIT_RPM",
                0,
                "a whole number of calls per minute",
            )?,
            redis_url: redis_url(env.get("REDIS_URL"))?,
            redis_key_prefix: env.get("REDIS_KEY_PREFIX").unwrap_or("hub:").to_owned(),
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

fn breaker_config(env: &Env) -> Result<BreakerConfig, ConfigError> {
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

impl DatabaseConfig {
    pub fn from_env(env: &Env) -> Result<Self, ConfigError> {
        database_config(env)
    }
}

fn database_config(env: &Env) -> Result<DatabaseConfig, ConfigError> {
    let url = database_url(env.get("DATABASE_URL").unwrap_or("sqlite://./data/hub.db"))?;
    let pool_size: u32 = env.parse("DATABASE_POOL_SIZE", 8, "a whole number")?;
    if !(1..=64).contains(&pool_size) {
        return Err(ConfigError(format!(
            "DATABASE_POOL_SIZE must be between 1 and 64, got {pool_size}"
        )));
    }
    Ok(DatabaseConfig {
        url,
        pool_size,
        acquire_timeout: env.millis("DATABASE_ACQUIRE_TIMEOUT_MS", 5_000)?,
    })
}

fn hmac_secrets(env: &Env, defaults: Defaults) -> Result<Vec<Vec<u8>>, ConfigError> {
    let text = env
        .get("HMAC_SECRETS")
        .or_else(|| env.get("HMAC_SECRET"))
        .or(defaults.hmac_secret)
        .ok_or_else(|| {
            ConfigError(
                "HMAC_SECRETS must be set: comma-separated secrets of at least 32 bytes each"
                    .into(),
            )
        })?;
    text.split(',')
        .map(str::trim)
        .enumerate()
        .map(|(index, secret)| {
            if secret.len() < MIN_SECRET_BYTES {
                Err(ConfigError(format!(
                    "HMAC_SECRETS entry {} must be at least {MIN_SECRET_BYTES} bytes, it has {}",
                    index + 1,
                    secret.len()
                )))
            } else {
                Ok(secret.as_bytes().to_vec())
            }
        })
        .collect()
}

fn currencies(text: &str) -> Result<Vec<Currency>, ConfigError> {
    let list: Vec<Currency> = text
        .split(',')
        .map(str::trim)
        .filter(|code| !code.is_empty())
        .map(|code| {
            Currency::from_iso_code(code).ok_or_else(|| {
                ConfigError(format!("SUPPORTED_CURRENCIES has {code:?}, which is not an ISO 4217 code the hub knows"))
            })
        })
        .collect::<Result<_, _>>()?;
    if list.is_empty() {
        return Err(ConfigError(
            "SUPPORTED_CURRENCIES must name at least one currency".into(),
        ));
    }
    Ok(list)
}

fn operator_base_url(text: &str) -> Result<String, ConfigError> {
    http_url("OPERATOR_BASE_URL", text.trim().trim_end_matches('/'))
}

fn http_url(name: &str, text: &str) -> Result<String, ConfigError> {
    let valid = reqwest::Url::parse(text.trim())
        .map(|url| matches!(url.scheme(), "http" | "https") && url.host().is_some())
        .unwrap_or(false);
    if !valid {
        return Err(ConfigError(format!(
            "{name} must be an http(s) URL, got {:?}",
            redact_url(text)
        )));
    }
    Ok(text.trim().to_owned())
}

fn retry_config(env: &Env) -> Result<RetryConfig, ConfigError> {
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

fn webhook_config(env: &Env, defaults: Defaults) -> Result<WebhookConfig, ConfigError> {
    let url = env
        .get("RGS_WEBHOOK_URL")
        .unwrap_or("http://127.0.0.1:3002/webhooks");
    let secret = env
        .get("WEBHOOK_SECRET")
        .or(defaults.webhook_secret)
        .ok_or_else(|| {
            ConfigError(
                "WEBHOOK_SECRET must be set: at least 32 bytes, or whsec_ followed by base64"
                    .into(),
            )
        })?;
    let webhooks = WebhookConfig {
        drain: flag(env, "WEBHOOK_DRAINER", true)?,
        url: http_url("RGS_WEBHOOK_URL", url)?,
        key: webhook_key(secret)?,
        schedule: retry_schedule(
            env.get("WEBHOOK_RETRY_SCHEDULE")
                .unwrap_or("1s,5s,15s,60s,300s"),
        )?,
        attempt_timeout: env.millis("WEBHOOK_TIMEOUT_MS", 5_000)?,
        concurrency: bounded(
            env.parse("WEBHOOK_CONCURRENCY", 16, "a whole number")?,
            "WEBHOOK_CONCURRENCY",
            1..=1024,
        )?,
        batch_size: bounded(
            env.parse("WEBHOOK_BATCH_SIZE", 100, "a whole number")?,
            "WEBHOOK_BATCH_SIZE",
            1..=1000,
        )?,
        lease: seconds(env, "WEBHOOK_LEASE_SECONDS", 60)?,
        poll_interval: env.millis("WEBHOOK_POLL_INTERVAL_MS", 1_000)?,
        retention: Duration::from_secs(
            3600 * positive(
                env.parse("WEBHOOK_RETENTION_HOURS", 168, "a whole number of hours")?,
                "WEBHOOK_RETENTION_HOURS",
            )?,
        ),
    };
    // Every claimed event starts at once, so a claim must outlast one attempt and the
    // recording of its outcome; a shorter lease lets a second drainer send it meanwhile.
    if webhooks.lease < webhooks.attempt_timeout + WEBHOOK_RECORDING_MARGIN {
        return Err(ConfigError(format!(
            "WEBHOOK_LEASE_SECONDS must exceed WEBHOOK_TIMEOUT_MS by at least {} s, got a lease of {} s for attempts of {} ms",
            WEBHOOK_RECORDING_MARGIN.as_secs(),
            webhooks.lease.as_secs(),
            webhooks.attempt_timeout.as_millis()
        )));
    }
    Ok(webhooks)
}

/// What a claimed event's lease must leave, past one attempt, to record its outcome.
const WEBHOOK_RECORDING_MARGIN: Duration = Duration::from_secs(1);

fn flag(env: &Env, name: &str, default: bool) -> Result<bool, ConfigError> {
    match env
        .get(name)
        .map(|v| v.trim().to_ascii_lowercase())
        .as_deref()
    {
        None => Ok(default),
        Some("true" | "on" | "1" | "yes") => Ok(true),
        Some("false" | "off" | "0" | "no") => Ok(false),
        Some(other) => Err(ConfigError(format!(
            "{name} must be true or false, got {other:?}"
        ))),
    }
}

/// `whsec_<base64>` is decoded as Standard Webhooks libraries do; anything else is used as is.
pub fn webhook_key(secret: &str) -> Result<Vec<u8>, ConfigError> {
    use base64::Engine;
    let key = match secret.strip_prefix("whsec_") {
        Some(encoded) => base64::engine::general_purpose::STANDARD
            .decode(encoded)
            .map_err(|_| {
                ConfigError("WEBHOOK_SECRET starts with whsec_ but the rest is not base64".into())
            })?,
        None => secret.as_bytes().to_vec(),
    };
    if key.len() < MIN_SECRET_BYTES {
        return Err(ConfigError(format!(
            "WEBHOOK_SECRET must be at least {MIN_SECRET_BYTES} bytes, it has {}",
            key.len()
        )));
    }
    Ok(key)
}

/// `1s,5s,15s,60s,300s`: each entry a whole number with `ms`, `s` (the default) or `m`.
fn retry_schedule(text: &str) -> Result<Vec<Duration>, ConfigError> {
    let invalid = |entry: &str| {
        ConfigError(format!(
            "WEBHOOK_RETRY_SCHEDULE entries must look like 500ms, 5s or 2m, got {entry:?}"
        ))
    };
    text.split(',')
        .map(str::trim)
        .map(|entry| {
            let (number, unit_ms) = if let Some(n) = entry.strip_suffix("ms") {
                (n, 1)
            } else if let Some(n) = entry.strip_suffix('s') {
                (n, 1_000)
            } else if let Some(n) = entry.strip_suffix('m') {
                (n, 60_000)
            } else {
                (entry, 1_000)
            };
            let value: u64 = number.parse().map_err(|_| invalid(entry))?;
            Ok(Duration::from_millis(
                value.checked_mul(unit_ms).ok_or_else(|| invalid(entry))?,
            ))
        })
        .collect()
}

fn admin_token(env: &Env) -> Result<Option<String>, ConfigError> {
    match env.get("ADMIN_TOKEN") {
        None => Ok(None),
        Some(token) if token.len() < 16 => Err(ConfigError(
            "ADMIN_TOKEN must be at least 16 characters".into(),
        )),
        Some(token) => Ok(Some(token.to_owned())),
    }
}

fn log_format(text: Option<&str>, default: LogFormat) -> Result<LogFormat, ConfigError> {
    match text.map(|t| t.trim().to_ascii_lowercase()).as_deref() {
        None => Ok(default),
        Some("json") => Ok(LogFormat::Json),
        Some("pretty") | Some("text") => Ok(LogFormat::Pretty),
        Some(other) => Err(ConfigError(format!(
            "LOG_FORMAT must be json or pretty, got {other:?}"
        ))),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// `serve` configuration with both secrets set unless `pairs` overrides them.
    fn config(pairs: &[(&str, &str)]) -> Result<Config, ConfigError> {
        let mut all = vec![WEBHOOK];
        all.extend_from_slice(pairs);
        Config::from_env(&Env::from_pairs(all), Defaults::SERVE)
    }

    const SECRET: (&str, &str) = ("HMAC_SECRETS", "0123456789abcdef0123456789abcdef");
    const WEBHOOK: (&str, &str) = ("WEBHOOK_SECRET", "webhook-secret-0123456789abcdef-0123");

    #[test]
    fn debug_output_never_shows_a_password() {
        let config = config(&[
            ("HMAC_SECRETS", "a-secret-of-at-least-32-bytes-0123456789"),
            ("WEBHOOK_SECRET", "a-webhook-secret-of-32-bytes-0123456789"),
            (
                "DATABASE_URL",
                "postgres://hub:db-password-1@db.internal:5432/hub",
            ),
            (
                "OPERATOR_BASE_URL",
                "https://api:operator-password-2@operator.example",
            ),
            ("REDIS_URL", "redis://:redis-password-3@cache.internal:6379"),
            (
                "RGS_WEBHOOK_URL",
                "https://rgs:rgs-password-4@rgs.example/webhooks",
            ),
        ])
        .unwrap();
        let shown = [
            format!("{config:?}"),
            format!("{:?}", config.database),
            format!("{:?}", config.database.url),
            format!("{:?}", config.operator),
            format!("{:#?}", config),
        ];
        for text in shown {
            for secret in [
                "db-password-1",
                "operator-password-2",
                "redis-password-3",
                "rgs-password-4",
                "a-secret-of-at-least",
                "a-webhook-secret",
            ] {
                assert!(!text.contains(secret), "{secret} shown in {text}");
            }
        }
        assert!(format!("{:?}", config.database.url).contains("db.internal"));
    }

    #[test]
    fn serve_defaults_are_sane() {
        let config = config(&[SECRET]).expect("defaults are valid");
        assert_eq!(config.listen_addr.to_string(), "127.0.0.1:3000");
        assert_eq!(
            config.database.url,
            DatabaseUrl::Sqlite("./data/hub.db".into())
        );
        let codes: Vec<_> = config
            .supported_currencies
            .iter()
            .map(|c| c.code())
            .collect();
        assert_eq!(codes, ["USD", "EUR", "GBP"]);
        assert_eq!(config.signature_tolerance, Duration::from_secs(300));
        assert_eq!(config.log_format, LogFormat::Json);
    }

    #[test]
    fn serve_refuses_to_start_without_a_secret() {
        let error = config(&[]).unwrap_err();
        assert!(error.0.starts_with("HMAC_SECRETS must be set"), "{error}");
    }

    #[test]
    fn short_secrets_are_named_by_position() {
        let error =
            config(&[("HMAC_SECRETS", "0123456789abcdef0123456789abcdef,short")]).unwrap_err();
        assert_eq!(
            error.0,
            "HMAC_SECRETS entry 2 must be at least 32 bytes, it has 5"
        );
    }

    #[test]
    fn rotation_pairs_keep_their_order() {
        let second = "fedcba9876543210fedcba9876543210";
        let pair = format!("{},{second}", SECRET.1);
        let config = config(&[("HMAC_SECRETS", &pair)]).unwrap();
        assert_eq!(
            config.hmac_secrets,
            vec![SECRET.1.as_bytes().to_vec(), second.as_bytes().to_vec()]
        );
    }

    #[test]
    fn bad_values_name_the_variable() {
        let cases = [
            ("DATABASE_URL", "mysql://x", "DATABASE_URL must start with"),
            (
                "DATABASE_POOL_SIZE",
                "0",
                "DATABASE_POOL_SIZE must be between 1 and 64",
            ),
            (
                "SUPPORTED_CURRENCIES",
                "USD,XYZ",
                "SUPPORTED_CURRENCIES has \"XYZ\"",
            ),
            (
                "OPERATOR_BASE_URL",
                "ftp://op",
                "OPERATOR_BASE_URL must be an http(s) URL",
            ),
            (
                "OPERATOR_DEADLINE_MS",
                "soon",
                "OPERATOR_DEADLINE_MS must be a whole number",
            ),
            (
                "LISTEN_ADDR",
                "3000",
                "LISTEN_ADDR must be a socket address",
            ),
            ("LOG_FORMAT", "xml", "LOG_FORMAT must be json or pretty"),
            (
                "BODY_LIMIT_BYTES",
                "0",
                "BODY_LIMIT_BYTES must be greater than 0",
            ),
        ];
        for (name, value, expected) in cases {
            let error = config(&[SECRET, (name, value)]).unwrap_err();
            assert!(error.0.starts_with(expected), "{name}={value}: {error}");
        }
    }

    #[test]
    fn webhook_settings_parse_and_validate() {
        let defaults = config(&[SECRET]).unwrap();
        let seconds: Vec<u64> = defaults
            .webhooks
            .schedule
            .iter()
            .map(Duration::as_secs)
            .collect();
        assert_eq!(seconds, [1, 5, 15, 60, 300]);
        assert_eq!(defaults.webhooks.key, WEBHOOK.1.as_bytes());
        assert!(defaults.webhooks.drain, "this process drains by default");
        assert!(
            defaults.admin_token.is_none(),
            "the admin API is off by default"
        );

        let custom = config(&[SECRET, ("WEBHOOK_RETRY_SCHEDULE", "250ms, 2, 1m")]).unwrap();
        assert_eq!(
            custom.webhooks.schedule,
            [
                Duration::from_millis(250),
                Duration::from_secs(2),
                Duration::from_secs(60)
            ]
        );
        let standard = config(&[
            SECRET,
            (
                "WEBHOOK_SECRET",
                "whsec_MDEyMzQ1Njc4OWFiY2RlZjAxMjM0NTY3ODlhYmNkZWY=",
            ),
        ])
        .unwrap();
        assert_eq!(standard.webhooks.key, b"0123456789abcdef0123456789abcdef");

        let cases = [
            (
                "WEBHOOK_RETRY_SCHEDULE",
                "1s,soon",
                "WEBHOOK_RETRY_SCHEDULE entries must look like",
            ),
            (
                "WEBHOOK_SECRET",
                "short",
                "WEBHOOK_SECRET must be at least 32 bytes",
            ),
            (
                "WEBHOOK_SECRET",
                "whsec_***",
                "WEBHOOK_SECRET starts with whsec_",
            ),
            (
                "RGS_WEBHOOK_URL",
                "rgs:3002",
                "RGS_WEBHOOK_URL must be an http(s) URL",
            ),
            (
                "ADMIN_TOKEN",
                "short",
                "ADMIN_TOKEN must be at least 16 characters",
            ),
            (
                "WEBHOOK_DRAINER",
                "maybe",
                "WEBHOOK_DRAINER must be true or false",
            ),
        ];
        for (name, value, expected) in cases {
            let error = config(&[SECRET, (name, value)]).unwrap_err();
            assert!(error.0.starts_with(expected), "{name}={value}: {error}");
        }
    }

    #[test]
    fn serve_refuses_to_start_without_a_webhook_secret() {
        let error = Config::from_env(&Env::from_pairs([SECRET]), Defaults::SERVE).unwrap_err();
        assert!(error.0.starts_with("WEBHOOK_SECRET must be set"), "{error}");
    }

    #[test]
    fn passwords_never_reach_error_messages() {
        let error = database_url("mysql://hub:hunter2@db/hub").unwrap_err();
        assert!(!error.0.contains("hunter2"), "{error}");
        assert_eq!(
            redact_url("postgres://hub:hunter2@db:5432/hub"),
            "postgres://hub:***@db:5432/hub"
        );
    }

    #[test]
    fn debug_output_hides_secrets() {
        let config = config(&[SECRET, ("ADMIN_TOKEN", "admin-token-0123456789")]).unwrap();
        let shown = format!("{config:?}");
        for secret in [SECRET.1, WEBHOOK.1, "admin-token-0123456789"] {
            assert!(!shown.contains(secret), "{secret} shows in {shown}");
        }
    }
}
