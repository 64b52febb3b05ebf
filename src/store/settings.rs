//! Where the hub keeps its state: `DATABASE_URL` and the pool.

use std::path::PathBuf;
use std::time::Duration;

use super::group_commit::GroupLimits;
use crate::settings::{redact_url, ConfigError, Env};

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

impl DatabaseUrl {
    pub fn parse(text: &str) -> Result<Self, ConfigError> {
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
}

#[derive(Debug, Clone)]
pub struct DatabaseConfig {
    pub url: DatabaseUrl,
    pub pool_size: u32,
    /// How long a request waits for a pooled connection before the store counts as down.
    pub acquire_timeout: Duration,
    /// How claims, settlements and webhook outcomes are grouped into commits.
    pub group_commit: GroupLimits,
}

impl DatabaseConfig {
    pub fn from_env(env: &Env) -> Result<Self, ConfigError> {
        let url = DatabaseUrl::parse(
            env.url("DATABASE_URL", Some("sqlite://./data/hub.db"))
                .unwrap_or_default(),
        )?;
        let pool_size: u32 = env.parse("DATABASE_POOL_SIZE", 8, "a whole number")?;
        if !(1..=64).contains(&pool_size) {
            return Err(ConfigError(format!(
                "DATABASE_POOL_SIZE must be between 1 and 64, got {pool_size}"
            )));
        }
        let group_commit = group_limits(env, pool_size)?;
        Ok(DatabaseConfig {
            url,
            pool_size,
            acquire_timeout: env.millis("DATABASE_ACQUIRE_TIMEOUT_MS", 5_000)?,
            group_commit,
        })
    }
}

/// One writer per kind by default: SQLite has one writer at a time anyway, and on Postgres a
/// second writer halves the groups (docs/BENCHMARKS.md: 2,511 against 2,943 debits/s at
/// concurrency 64 on two cores).
fn group_limits(env: &Env, pool_size: u32) -> Result<GroupLimits, ConfigError> {
    let max_batch: usize = env.parse("GROUP_COMMIT_MAX_BATCH", 64, "a whole number")?;
    if !(1..=500).contains(&max_batch) {
        return Err(ConfigError(format!(
            "GROUP_COMMIT_MAX_BATCH must be between 1 and 500, got {max_batch}"
        )));
    }
    // Claims, settlements and webhook outcomes each have their writers; requests need
    // connections too.
    let most = (pool_size as usize / 4).max(1);
    let writers: usize = env.parse("GROUP_COMMIT_WRITERS", 1, "a whole number")?;
    if !(1..=most).contains(&writers) {
        return Err(ConfigError(format!(
            "GROUP_COMMIT_WRITERS must be between 1 and a quarter of DATABASE_POOL_SIZE ({most}), got {writers}"
        )));
    }
    Ok(GroupLimits { max_batch, writers })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn passwords_never_reach_error_messages() {
        let error = DatabaseUrl::parse("mysql://hub:hunter2@db/hub").unwrap_err();
        assert!(!error.0.contains("hunter2"), "{error}");
        let shown = format!(
            "{:?}",
            DatabaseUrl::parse("postgres://hub:hunter2@db:5432/hub").unwrap()
        );
        assert_eq!(shown, "Postgres(\"postgres://hub:***@db:5432/hub\")");
    }

    #[test]
    fn the_default_is_sqlite_in_data() {
        let config = DatabaseConfig::from_env(&Env::from_pairs([])).unwrap();
        assert_eq!(config.url, DatabaseUrl::Sqlite("./data/hub.db".into()));
        assert_eq!(config.pool_size, 8);
        assert_eq!(
            config.group_commit,
            GroupLimits {
                max_batch: 64,
                writers: 1
            }
        );
    }

    #[test]
    fn group_writers_must_leave_connections_for_requests() {
        let error = DatabaseConfig::from_env(&Env::from_pairs([
            ("DATABASE_POOL_SIZE", "8"),
            ("GROUP_COMMIT_WRITERS", "3"),
        ]))
        .unwrap_err();
        assert!(error.0.contains("GROUP_COMMIT_WRITERS"), "{error}");
        let error = DatabaseConfig::from_env(&Env::from_pairs([("GROUP_COMMIT_MAX_BATCH", "0")]))
            .unwrap_err();
        assert!(error.0.contains("GROUP_COMMIT_MAX_BATCH"), "{error}");
    }
}
