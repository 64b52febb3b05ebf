//! Configuration from environment variables, validated once at start.
//!
//! Every value has a default except the signing secrets of `hub serve`; a bad value stops
//! the process with one line naming the variable. Tests build [`Config`] directly.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use crate::domain::money::Currency;

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
#[error("{0}")]
pub struct ConfigError(String);

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum DatabaseUrl {
    Postgres(String),
    Sqlite(PathBuf),
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

#[derive(Debug, Clone)]
pub struct OperatorConfig {
    pub base_url: String,
    pub retry: RetryConfig,
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
            .finish()
    }
}

pub const MIN_SECRET_BYTES: usize = 32;
/// The secret `hub demo` signs with when none is configured; printed in the README.
pub const DEMO_HMAC_SECRET: &str = "demo-secret-for-local-use-only-0123456789";

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
    pub log_format: LogFormat,
}

impl Defaults {
    pub const SERVE: Defaults = Defaults {
        hmac_secret: None,
        log_format: LogFormat::Json,
    };
    pub const DEMO: Defaults = Defaults {
        hmac_secret: Some(DEMO_HMAC_SECRET),
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
        let operator = OperatorConfig {
            base_url: operator_base_url(
                env.get("OPERATOR_BASE_URL")
                    .unwrap_or("http://127.0.0.1:3001"),
            )?,
            retry: retry_config(env)?,
        };
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
        })
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
    let trimmed = text.trim().trim_end_matches('/');
    let valid = reqwest::Url::parse(trimmed)
        .map(|url| matches!(url.scheme(), "http" | "https") && url.host().is_some())
        .unwrap_or(false);
    if !valid {
        return Err(ConfigError(format!(
            "OPERATOR_BASE_URL must be an http(s) URL, got {:?}",
            redact_url(text)
        )));
    }
    Ok(trimmed.to_owned())
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

    fn config(pairs: &[(&str, &str)]) -> Result<Config, ConfigError> {
        Config::from_env(&Env::from_pairs(pairs.iter().copied()), Defaults::SERVE)
    }

    const SECRET: (&str, &str) = ("HMAC_SECRETS", "0123456789abcdef0123456789abcdef");

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
        let config = config(&[SECRET]).unwrap();
        assert!(!format!("{config:?}").contains(SECRET.1));
    }
}
