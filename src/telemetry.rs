//! Logging: JSON lines for machines (`hub serve`), readable lines for people (`hub demo`).
//! `RUST_LOG` filters as usual; the default is `info`.

use std::io::IsTerminal;

use tracing_subscriber::EnvFilter;

use crate::settings::{ConfigError, Env};

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LogFormat {
    Json,
    Pretty,
}

impl LogFormat {
    /// `LOG_FORMAT`: `json` or `pretty`; `default` differs between `serve` and `demo`.
    pub fn from_env(env: &Env, default: LogFormat) -> Result<Self, ConfigError> {
        let default_name = match default {
            LogFormat::Json => "json",
            LogFormat::Pretty => "pretty",
        };
        match env
            .text("LOG_FORMAT", default_name)
            .trim()
            .to_ascii_lowercase()
            .as_str()
        {
            "json" => Ok(LogFormat::Json),
            "pretty" | "text" => Ok(LogFormat::Pretty),
            other => Err(ConfigError(format!(
                "LOG_FORMAT must be json or pretty, got {other:?}"
            ))),
        }
    }
}

pub fn init(format: LogFormat) {
    init_with_default(format, "info");
}

/// As [`init`], with another filter when `RUST_LOG` is unset (`warn` for one-shot commands).
pub fn init_with_default(format: LogFormat, default_filter: &str) {
    let filter =
        EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new(default_filter));
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr);
    // A second init (tests building several apps) keeps the first subscriber.
    let _ = match format {
        LogFormat::Json => builder
            .json()
            .with_current_span(true)
            .with_span_list(false)
            .try_init(),
        LogFormat::Pretty => builder
            .compact()
            .with_ansi(std::io::stderr().is_terminal())
            .try_init(),
    };
}
