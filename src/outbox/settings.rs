//! Delivery of the outbox to the RGS: where, how it is signed, how often it is retried.

use std::time::Duration;

use crate::outbound::tls::PeerTls;
use crate::settings::{http_url, redact_url, ConfigError, Env};

/// The shortest HMAC key the hub accepts, inbound or outbound.
pub const MIN_SECRET_BYTES: usize = 32;

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
    /// `WEBHOOK_CA_FILE`, `WEBHOOK_CLIENT_CERT`, `WEBHOOK_CLIENT_KEY`.
    pub tls: PeerTls,
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
            .field("tls", &self.tls)
            .finish()
    }
}

/// What a claimed event's lease must leave, past one attempt, to record its outcome.
const RECORDING_MARGIN: Duration = Duration::from_secs(1);

impl WebhookConfig {
    /// `default_secret` is used when `WEBHOOK_SECRET` is unset (`hub demo` has one).
    pub fn from_env(env: &Env, default_secret: Option<&str>) -> Result<Self, ConfigError> {
        let url = env
            .url("RGS_WEBHOOK_URL", Some("http://127.0.0.1:3002/webhooks"))
            .unwrap_or_default();
        let secret = env
            .secret("WEBHOOK_SECRET")
            .or(default_secret)
            .ok_or_else(|| {
                ConfigError(
                    "WEBHOOK_SECRET must be set: at least 32 bytes, or whsec_ followed by base64"
                        .into(),
                )
            })?;
        let webhooks = WebhookConfig {
            drain: env.flag("WEBHOOK_DRAINER", true)?,
            url: http_url("RGS_WEBHOOK_URL", url)?,
            key: webhook_key(secret)?,
            schedule: retry_schedule(env.text("WEBHOOK_RETRY_SCHEDULE", "1s,5s,15s,60s,300s"))?,
            attempt_timeout: env.millis("WEBHOOK_TIMEOUT_MS", 5_000)?,
            concurrency: env.count("WEBHOOK_CONCURRENCY", 64, 1..=1024)?,
            batch_size: env.count("WEBHOOK_BATCH_SIZE", 100, 1..=1000)?,
            lease: env.seconds("WEBHOOK_LEASE_SECONDS", 60)?,
            poll_interval: env.millis("WEBHOOK_POLL_INTERVAL_MS", 1_000)?,
            retention: env.hours("WEBHOOK_RETENTION_HOURS", 168)?,
            tls: PeerTls::from_env(env, "WEBHOOK")?,
        };
        // Every claimed event starts at once, so a claim must outlast one attempt and the
        // recording of its outcome; a shorter lease lets a second drainer send it meanwhile.
        if webhooks.lease < webhooks.attempt_timeout + RECORDING_MARGIN {
            return Err(ConfigError(format!(
                "WEBHOOK_LEASE_SECONDS must exceed WEBHOOK_TIMEOUT_MS by at least {} s, got a lease of {} s for attempts of {} ms",
                RECORDING_MARGIN.as_secs(),
                webhooks.lease.as_secs(),
                webhooks.attempt_timeout.as_millis()
            )));
        }
        Ok(webhooks)
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
