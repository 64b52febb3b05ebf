//! The public API's settings: where it listens, whom it trusts, what it accepts.

use std::net::SocketAddr;
use std::time::Duration;

use crate::domain::money::Currency;
use crate::outbox::settings::MIN_SECRET_BYTES;
use crate::settings::{positive, ConfigError, Env};

pub fn listen_addr(env: &Env) -> Result<SocketAddr, ConfigError> {
    env.parse(
        "LISTEN_ADDR",
        SocketAddr::from(([127, 0, 0, 1], 3000)),
        "a socket address like 0.0.0.0:3000",
    )
}

/// Any one verifies an inbound request; rotation adds the new one, then drops the old.
/// `default` is used when none is set (`hub demo` has one).
pub fn hmac_secrets(env: &Env, default: Option<&str>) -> Result<Vec<Vec<u8>>, ConfigError> {
    let text = env
        .secret("HMAC_SECRETS")
        .or_else(|| env.secret("HMAC_SECRET"))
        .or(default)
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

pub fn signature_tolerance(env: &Env) -> Result<Duration, ConfigError> {
    Ok(Duration::from_secs(env.parse(
        "SIGNATURE_TOLERANCE_SECONDS",
        300,
        "a whole number of seconds",
    )?))
}

pub fn currencies(env: &Env) -> Result<Vec<Currency>, ConfigError> {
    let list: Vec<Currency> = env
        .text("SUPPORTED_CURRENCIES", "USD,EUR,GBP")
        .split(',')
        .map(str::trim)
        .filter(|code| !code.is_empty())
        .map(|code| {
            Currency::from_iso_code(code).ok_or_else(|| {
                ConfigError(format!(
                    "SUPPORTED_CURRENCIES has {code:?}, which is not an ISO 4217 code the hub knows"
                ))
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

pub fn body_limit(env: &Env) -> Result<usize, ConfigError> {
    positive(
        env.parse("BODY_LIMIT_BYTES", 64 * 1024, "a whole number of bytes")?,
        "BODY_LIMIT_BYTES",
    )
}

pub fn workers(env: &Env) -> Result<usize, ConfigError> {
    positive(
        env.parse("HTTP_WORKERS", 2, "a whole number")?,
        "HTTP_WORKERS",
    )
}

/// `METRICS_ADDR`: a second listener for `/metrics` and the admin API, off the public port;
/// `None` serves everything on `LISTEN_ADDR`.
pub fn metrics_addr(env: &Env) -> Result<Option<SocketAddr>, ConfigError> {
    env.get("METRICS_ADDR")
        .map(|text| {
            text.trim().parse().map_err(|_| {
                ConfigError(format!(
                    "METRICS_ADDR must be a socket address like 0.0.0.0:9090, got {text:?}"
                ))
            })
        })
        .transpose()
}

/// `METRICS_TOKEN`: the bearer token `/metrics` asks for; `None` leaves it open.
pub fn metrics_token(env: &Env) -> Result<Option<String>, ConfigError> {
    token(env, "METRICS_TOKEN")
}

/// Bearer token of the admin API; `None` turns the admin API off.
pub fn admin_token(env: &Env) -> Result<Option<String>, ConfigError> {
    token(env, "ADMIN_TOKEN")
}

fn token(env: &Env, name: &str) -> Result<Option<String>, ConfigError> {
    match env.secret(name) {
        None => Ok(None),
        Some(token) if token.trim().len() < 16 => Err(ConfigError(format!(
            "{name} must be at least 16 characters"
        ))),
        Some(token) => Ok(Some(token.trim().to_owned())),
    }
}
