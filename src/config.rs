//! The hub's configuration: each module reads its own settings from the environment
//! (`store`, `operator`, `outbox`, `wallet`, `http`, `telemetry`, through the one parser in
//! [`crate::settings`]); this module assembles them, checks what spans modules, and knows
//! what `hub demo` fills in. A bad value stops the process with one line naming the variable.
//! Tests build [`Config`] directly.

use std::net::SocketAddr;
use std::time::Duration;

use crate::domain::money::Currency;
use crate::http::settings as api;
use crate::operator::OperatorConfig;
use crate::outbox::WebhookConfig;
use crate::signature::SignatureSettings;
use crate::store::DatabaseConfig;
use crate::telemetry::LogFormat;
use crate::wallet::completer::RecoveryConfig;

pub use crate::settings::{ConfigError, Env};

#[derive(Clone)]
pub struct Config {
    pub listen_addr: SocketAddr,
    /// Where `/metrics` and the admin API are served; `None`: on `listen_addr`.
    pub metrics_addr: Option<SocketAddr>,
    /// Bearer token `/metrics` asks for; `None` leaves it open.
    pub metrics_token: Option<String>,
    pub database: DatabaseConfig,
    /// Any one verifies an inbound request; rotation adds the new one, then drops the old.
    pub hmac_secrets: Vec<Vec<u8>>,
    pub signature_tolerance: Duration,
    pub signatures: SignatureSettings,
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
            .field("metrics_addr", &self.metrics_addr)
            .field(
                "metrics_token",
                &self.metrics_token.as_ref().map(|_| "<redacted>"),
            )
            .field("database", &self.database)
            .field(
                "hmac_secrets",
                &format!("<{} redacted>", self.hmac_secrets.len()),
            )
            .field("signature_tolerance", &self.signature_tolerance)
            .field("signatures", &self.signatures)
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

/// The secret `hub demo` signs with when none is configured; printed in the README.
pub const DEMO_HMAC_SECRET: &str = "demo-secret-for-local-use-only-0123456789";
/// The secret `hub demo` signs webhooks with; the `mock-rgs` binary defaults to the same one.
pub const DEMO_WEBHOOK_SECRET: &str = "demo-webhook-secret-for-local-use-0123456789";

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
        let config = Self {
            listen_addr: api::listen_addr(env)?,
            metrics_addr: api::metrics_addr(env)?,
            metrics_token: api::metrics_token(env)?,
            database: DatabaseConfig::from_env(env)?,
            hmac_secrets: api::hmac_secrets(env, defaults.hmac_secret)?,
            signature_tolerance: api::signature_tolerance(env)?,
            signatures: SignatureSettings::from_env(env)?,
            supported_currencies: api::currencies(env)?,
            operator: OperatorConfig::from_env(env)?,
            body_limit_bytes: api::body_limit(env)?,
            log_format: LogFormat::from_env(env, defaults.log_format)?,
            workers: api::workers(env)?,
            webhooks: WebhookConfig::from_env(env, defaults.webhook_secret)?,
            admin_token: api::admin_token(env)?,
            recovery: RecoveryConfig::from_env(env)?,
        };
        config.check_across_modules()?;
        Ok(config)
    }

    /// What no one module can check on its own.
    fn check_across_modules(&self) -> Result<(), ConfigError> {
        // A crashed request's key is free again only after the deadline and the lease margin;
        // a window no longer than that leaves its client no chance to resume the debit.
        let key_free_after = self.operator.retry.deadline + self.recovery.lease_margin;
        if self.recovery.debit_resume_window <= key_free_after {
            return Err(ConfigError(format!(
                "DEBIT_RESUME_WINDOW_SECONDS must exceed OPERATOR_DEADLINE_MS + IDEMPOTENCY_LEASE_MARGIN_MS ({} s), got {} s",
                key_free_after.as_secs_f64(),
                self.recovery.debit_resume_window.as_secs()
            )));
        }
        if self.metrics_token.is_some() && self.metrics_token == self.admin_token {
            return Err(ConfigError(
                "METRICS_TOKEN must differ from ADMIN_TOKEN: the scraper's token would open the admin API"
                    .into(),
            ));
        }
        Ok(())
    }
}

/// `hub config check`: the effective `serve` configuration, one `NAME=value` line per
/// variable, secrets redacted, then `Ok`; or the first problem found.
pub fn check(env: &Env) -> Result<Vec<String>, ConfigError> {
    Config::from_env(env, Defaults::SERVE)?;
    Ok(env.effective())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::DatabaseUrl;

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
    fn debug_output_shows_tls_file_paths_and_never_a_key() {
        let dir = tempfile::tempdir().unwrap();
        let key = rcgen::KeyPair::generate().unwrap();
        let cert = rcgen::CertificateParams::new(vec!["hub".to_owned()])
            .unwrap()
            .self_signed(&key)
            .unwrap();
        let (cert_path, key_path) = (dir.path().join("c.pem"), dir.path().join("k.pem"));
        std::fs::write(&cert_path, cert.pem()).unwrap();
        std::fs::write(&key_path, key.serialize_pem()).unwrap();
        let (cert_path, key_path) = (
            cert_path.display().to_string(),
            key_path.display().to_string(),
        );
        let mut pairs = vec![SECRET, ("REDIS_URL", "rediss://cache:6380")];
        for peer in ["OPERATOR", "WEBHOOK", "REDIS"] {
            pairs.push((leak(format!("{peer}_CA_FILE")), cert_path.as_str()));
            pairs.push((leak(format!("{peer}_CLIENT_CERT")), cert_path.as_str()));
            pairs.push((leak(format!("{peer}_CLIENT_KEY")), key_path.as_str()));
        }
        let shown = format!("{:#?}", config(&pairs).unwrap());
        assert_eq!(shown.matches(key_path.as_str()).count(), 3, "{shown}");
        let key_body = key.serialize_pem().lines().nth(1).unwrap().to_owned();
        assert!(!shown.contains(&key_body), "{shown}");
        assert!(!shown.contains("PRIVATE KEY"), "{shown}");
    }

    fn leak(text: String) -> &'static str {
        Box::leak(text.into_boxed_str())
    }

    #[test]
    fn debug_output_hides_secrets() {
        let config = config(&[SECRET, ("ADMIN_TOKEN", "admin-token-0123456789")]).unwrap();
        let shown = format!("{config:?}");
        for secret in [SECRET.1, WEBHOOK.1, "admin-token-0123456789"] {
            assert!(!shown.contains(secret), "{secret} shows in {shown}");
        }
    }

    #[test]
    fn the_check_shows_every_setting_with_secrets_redacted() {
        let env = Env::from_pairs([
            SECRET,
            WEBHOOK,
            ("ADMIN_TOKEN", "admin-token-0123456789"),
            ("DATABASE_URL", "postgres://hub:db-password-1@db:5432/hub"),
            ("HTTP_WORKERS", "4"),
        ]);
        let lines = check(&env).expect("a valid configuration");
        let shown = lines.join("\n");
        for secret in [
            SECRET.1,
            WEBHOOK.1,
            "admin-token-0123456789",
            "db-password-1",
        ] {
            assert!(!shown.contains(secret), "{secret} shown in {shown}");
        }
        for line in [
            "HMAC_SECRETS=<redacted, 32 bytes>",
            "DATABASE_URL=postgres://hub:***@db:5432/hub",
            "HTTP_WORKERS=4",
            "LISTEN_ADDR=127.0.0.1:3000 (default)",
            "REDIS_URL (unset)",
        ] {
            assert!(
                lines.iter().any(|l| l == line),
                "{line} missing from {shown}"
            );
        }
    }

    #[test]
    fn the_metrics_token_cannot_open_the_admin_api() {
        let token = "one-token-for-everything-0123";
        let error =
            config(&[SECRET, ("ADMIN_TOKEN", token), ("METRICS_TOKEN", token)]).unwrap_err();
        assert!(
            error
                .0
                .starts_with("METRICS_TOKEN must differ from ADMIN_TOKEN"),
            "{error}"
        );
        let other = "another-token-for-metrics-01";
        assert!(config(&[SECRET, ("ADMIN_TOKEN", token), ("METRICS_TOKEN", other)]).is_ok());
    }

    #[test]
    fn the_check_names_the_first_bad_variable() {
        let env = Env::from_pairs([SECRET, WEBHOOK, ("HTTP_WORKERS", "many")]);
        let error = check(&env).unwrap_err();
        assert_eq!(error.0, "HTTP_WORKERS must be a whole number, got \"many\"");
    }
}
