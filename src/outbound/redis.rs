//! The hub's connection to Redis, shared by the features that agree between replicas through
//! it (the operator governor, the signature replay guard). Redis is never the source of truth:
//! a round trip that fails or outlasts [`REDIS_TIMEOUT`] yields `None`, the caller applies its
//! in-process rules, and Redis is left alone for [`REDIS_RETRY`]. Only the changes between up
//! and down are logged; a gauge says which it is.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Mutex;
use std::time::{Duration, Instant};

use prometheus::IntGauge;
use redis::aio::ConnectionManager;
use redis::{FromRedisValue, ScriptInvocation};
use tokio::sync::Mutex as AsyncMutex;

use super::tls::PeerTls;

/// How long one Redis round trip may take before the in-process rules are used instead.
pub const REDIS_TIMEOUT: Duration = Duration::from_millis(250);
/// How long to leave Redis alone after it failed.
pub const REDIS_RETRY: Duration = Duration::from_secs(1);
/// How long the start-time check of a `rediss://` URL waits for Redis.
const TLS_CHECK_TIMEOUT: Duration = Duration::from_secs(3);

pub struct RedisLink {
    client: redis::Client,
    connection: AsyncMutex<Option<ConnectionManager>>,
    down: AtomicBool,
    last_failure: Mutex<Option<Instant>>,
    /// Who relies on this link, for the log lines ("the operator governor").
    user: &'static str,
    up: IntGauge,
}

impl RedisLink {
    /// Parses `url` (no connection yet: the first call connects); `up` is set to 1. `tls`
    /// applies to a `rediss://` URL: its CA instead of the system's, its client certificate.
    pub fn open(
        url: &str,
        tls: &PeerTls,
        user: &'static str,
        up: IntGauge,
    ) -> Result<Self, redis::RedisError> {
        let client = if tls.is_set() {
            redis::Client::build_with_tls(url, tls.redis_certificates())?
        } else {
            redis::Client::open(url)?
        };
        up.set(1);
        Ok(Self {
            client,
            connection: AsyncMutex::new(None),
            down: AtomicBool::new(false),
            last_failure: Mutex::new(None),
            user,
            up,
        })
    }

    /// A link when `url` is set; without one the gauge says 0 (in process) for good.
    pub fn optional(
        url: Option<&str>,
        tls: &PeerTls,
        user: &'static str,
        up: IntGauge,
    ) -> Result<Option<Self>, redis::RedisError> {
        match url {
            Some(url) => Self::open(url, tls, user, up).map(Some),
            None => {
                up.set(0);
                Ok(None)
            }
        }
    }

    /// At start, with `rediss://`: a TLS handshake that fails (a certificate the configured
    /// CA did not sign, a client certificate refused) is a misconfiguration, reported now.
    /// Redis that does not answer at all is an outage, ridden out in process as always.
    pub async fn check_tls(&self) -> Result<(), redis::RedisError> {
        if !matches!(
            self.client.get_connection_info().addr,
            redis::ConnectionAddr::TcpTls { .. }
        ) {
            return Ok(());
        }
        let ping = async {
            let mut connection = self.client.get_multiplexed_async_connection().await?;
            redis::cmd("PING")
                .query_async::<String>(&mut connection)
                .await
        };
        match tokio::time::timeout(TLS_CHECK_TIMEOUT, ping).await {
            Ok(Err(error))
                if error.is_io_error()
                    && !(error.is_connection_refusal()
                        || error.is_timeout()
                        || error.is_connection_dropped()) =>
            {
                Err(error)
            }
            _ => Ok(()),
        }
    }

    /// Runs `invocation`; `None` when Redis cannot be reached or does not answer in time.
    pub async fn invoke<T: FromRedisValue>(&self, invocation: &ScriptInvocation<'_>) -> Option<T> {
        let mut connection = self.connection().await?;
        let answer =
            tokio::time::timeout(REDIS_TIMEOUT, invocation.invoke_async::<T>(&mut connection))
                .await;
        match answer {
            Ok(Ok(value)) => {
                self.mark(true);
                Some(value)
            }
            _ => {
                self.mark(false);
                None
            }
        }
    }

    fn recently_failed(&self) -> bool {
        self.last_failure
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .is_some_and(|at| at.elapsed() < REDIS_RETRY)
    }

    async fn connection(&self) -> Option<ConnectionManager> {
        if self.recently_failed() {
            return None;
        }
        let mut slot = self.connection.lock().await;
        // Asked again: whoever held the slot may have just failed to connect, and every call
        // queued behind it must not wait out a connect timeout of its own, one after another.
        if self.recently_failed() {
            return None;
        }
        if slot.is_none() {
            // Boxed: the connecting future's type is deep enough to overflow the compiler's
            // auto-trait checks of every future that awaits it.
            let connect: std::pin::Pin<
                Box<dyn std::future::Future<Output = redis::RedisResult<ConnectionManager>> + Send>,
            > = Box::pin(self.client.get_connection_manager());
            let connecting = tokio::time::timeout(REDIS_TIMEOUT, connect).await;
            match connecting {
                Ok(Ok(manager)) => *slot = Some(manager),
                _ => {
                    // Marked before the slot is let go, so the next in line sees the failure.
                    self.mark(false);
                    drop(slot);
                    return None;
                }
            }
        }
        slot.clone()
    }

    /// Records whether Redis answered; logs only the changes.
    fn mark(&self, up: bool) {
        if !up {
            // Start from a fresh connection when Redis answers again.
            if let Ok(mut slot) = self.connection.try_lock() {
                *slot = None;
            }
        }
        let was_down = self.down.swap(!up, Ordering::SeqCst);
        *self.last_failure.lock().unwrap_or_else(|p| p.into_inner()) = (!up).then(Instant::now);
        self.up.set(i64::from(up));
        match (was_down, up) {
            (false, false) => tracing::warn!(
                "Redis unreachable: {} runs in process until it is back",
                self.user
            ),
            (true, true) => tracing::info!("Redis is back: {} is shared again", self.user),
            _ => {}
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A Redis that accepts connections and never answers: a blackholed or hung server.
    async fn silent_redis() -> (String, tokio::task::JoinHandle<()>) {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let port = listener.local_addr().unwrap().port();
        let task = tokio::spawn(async move {
            let mut held = Vec::new();
            while let Ok((socket, _)) = listener.accept().await {
                held.push(socket);
            }
        });
        // Database 1, so that connecting sends SELECT and waits for an answer.
        (format!("redis://127.0.0.1:{port}/1"), task)
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn calls_waiting_on_a_failing_connect_do_not_each_try_again() {
        let (url, server) = silent_redis().await;
        let link = std::sync::Arc::new(
            RedisLink::open(
                &url,
                &PeerTls::default(),
                "the test",
                IntGauge::new("up", "up").unwrap(),
            )
            .unwrap(),
        );
        let script = redis::Script::new("return 1");
        let started = Instant::now();
        let calls: Vec<_> = (0..8)
            .map(|_| {
                let (link, script) = (link.clone(), script.clone());
                tokio::spawn(async move { link.invoke::<i64>(&script.prepare_invoke()).await })
            })
            .collect();
        for call in calls {
            assert_eq!(call.await.unwrap(), None);
        }
        // One connect attempt times out; the calls queued behind it see that Redis just
        // failed and use the in-process rules at once instead of trying one after another.
        assert!(
            started.elapsed() < REDIS_TIMEOUT * 3,
            "8 concurrent calls took {:?}",
            started.elapsed()
        );
        server.abort();
    }
}
