//! The operator governor: how fast, and whether, this hub may call the operator, agreed
//! between replicas through Redis when `REDIS_URL` is set.
//!
//! - A shared rate limit: each call reserves the next free slot (GCRA with no burst, so that
//!   no sliding minute ever holds more than the configured number of calls), in one atomic
//!   Lua script on Redis's clock, so replicas' clocks do not matter.
//! - A shared pause: a 429's `Retry-After` seen by one replica holds every replica back.
//! - A shared open circuit: one replica's breaker opening protects all of them.
//!
//! Redis is never the source of truth for money; if it cannot be reached the same rules run
//! in process (logged once, `hub_governor_redis_up` 0) until it answers again.

use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use redis::Script;

use crate::metrics::Metrics;
use crate::outbound::redis::RedisLink;
use crate::outbound::tls::PeerTls;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Refusal {
    /// The next slot is further away than the caller can wait.
    RateLimited(Duration),
    CircuitOpen(Duration),
}

/// KEYS: next free slot, pause until, circuit open until (all Redis-clock milliseconds).
/// ARGV: slot interval in ms (0 = no limit), longest acceptable wait in ms.
/// Returns {0, wait} (slot reserved), {1, remaining} (circuit open) or {2, wait} (too long).
const ACQUIRE: &str = r"
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
local open_until = tonumber(redis.call('GET', KEYS[3]) or '0')
if open_until > now then return {1, open_until - now} end
local interval = tonumber(ARGV[1])
local start = math.max(now, tonumber(redis.call('GET', KEYS[2]) or '0'))
if interval > 0 then start = math.max(start, tonumber(redis.call('GET', KEYS[1]) or '0')) end
local wait = start - now
if wait > tonumber(ARGV[2]) then return {2, wait} end
if interval > 0 then redis.call('SET', KEYS[1], start + interval, 'PX', wait + interval + 60000) end
return {0, wait}
";

/// KEYS: the key to push forward. ARGV: milliseconds from now. Never moves it back.
const HOLD_UNTIL: &str = r"
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
local until_ms = now + tonumber(ARGV[1])
if until_ms > tonumber(redis.call('GET', KEYS[1]) or '0') then
  redis.call('SET', KEYS[1], until_ms, 'PX', tonumber(ARGV[1]) + 1000)
end
return until_ms
";

#[derive(Debug, Default)]
struct LocalState {
    next_slot: Option<Instant>,
    paused_until: Option<Instant>,
    open_until: Option<Instant>,
}

struct Shared {
    link: RedisLink,
    keys: [String; 3],
    acquire: Script,
    hold_until: Script,
}

pub struct Governor {
    /// Time between two calls; `None` when the operator sets no rate limit.
    interval: Option<Duration>,
    local: Mutex<LocalState>,
    shared: Option<Shared>,
}

impl Governor {
    /// `requests_per_minute` 0 means no limit. `redis_url` `None` keeps everything in process;
    /// `tls` applies to a `rediss://` URL.
    pub fn new(
        requests_per_minute: u32,
        redis_url: Option<&str>,
        tls: &PeerTls,
        key_prefix: &str,
        metrics: Arc<Metrics>,
    ) -> Result<Arc<Self>, redis::RedisError> {
        let link = RedisLink::optional(
            redis_url,
            tls,
            "the operator governor",
            metrics.governor_redis_up.clone(),
        )?;
        let shared = link.map(|link| Shared {
            link,
            keys: ["next_slot", "paused_until", "open_until"]
                .map(|k| format!("{key_prefix}governor:{k}")),
            acquire: Script::new(ACQUIRE),
            hold_until: Script::new(HOLD_UNTIL),
        });
        Ok(Arc::new(Self {
            interval: (requests_per_minute > 0)
                .then(|| Duration::from_secs(60) / requests_per_minute),
            local: Mutex::new(LocalState::default()),
            shared,
        }))
    }

    /// At start: whether a `rediss://` Redis refuses the TLS handshake (see
    /// [`RedisLink::check_tls`]).
    pub async fn check_tls(&self) -> Result<(), redis::RedisError> {
        match &self.shared {
            Some(shared) => shared.link.check_tls().await,
            None => Ok(()),
        }
    }

    /// A governor that never holds a call back, for clients whose calls it does not pace
    /// (the transaction listing of `hub reconcile`).
    pub fn unpaced(metrics: Arc<Metrics>) -> Arc<Self> {
        Self::new(0, None, &PeerTls::default(), "", metrics)
            .expect("without a Redis URL there is nothing to fail")
    }

    /// Whether calls can be made to wait: a rate limit, or replicas that may pause each other.
    pub fn paces(&self) -> bool {
        self.interval.is_some() || self.shared.is_some()
    }

    /// Waits for this hub's turn to call the operator, at most `max_wait`.
    pub async fn acquire(&self, max_wait: Duration) -> Result<(), Refusal> {
        let reserved = match self.shared_acquire(max_wait).await {
            Some(reserved) => reserved,
            None => self.local_acquire(max_wait),
        }?;
        if !reserved.is_zero() {
            tokio::time::sleep(reserved).await;
        }
        Ok(())
    }

    /// Holds every replica back until `retry_after` from now (a 429 from the operator).
    pub async fn pause(&self, retry_after: Duration) {
        self.hold_local(|state| &mut state.paused_until, retry_after);
        self.shared_hold(1, retry_after).await;
    }

    /// Tells every replica that the circuit is open for `open_for`.
    pub async fn open_circuit(&self, open_for: Duration) {
        self.hold_local(|state| &mut state.open_until, open_for);
        self.shared_hold(2, open_for).await;
    }

    fn hold_local(&self, field: fn(&mut LocalState) -> &mut Option<Instant>, duration: Duration) {
        let now = Instant::now();
        let until = now
            .checked_add(duration)
            .unwrap_or(now + crate::outbound::retry_after::MAX);
        let mut state = self.local.lock().unwrap_or_else(|p| p.into_inner());
        let slot = field(&mut state);
        *slot = Some(slot.map_or(until, |current| current.max(until)));
    }

    fn local_acquire(&self, max_wait: Duration) -> Result<Duration, Refusal> {
        let now = Instant::now();
        let mut state = self.local.lock().unwrap_or_else(|p| p.into_inner());
        if let Some(open_until) = state.open_until.filter(|until| *until > now) {
            return Err(Refusal::CircuitOpen(open_until - now));
        }
        let mut start = state.paused_until.map_or(now, |paused| paused.max(now));
        if self.interval.is_some() {
            start = state.next_slot.map_or(start, |slot| slot.max(start));
        }
        let wait = start - now;
        if wait > max_wait {
            return Err(Refusal::RateLimited(wait));
        }
        if let Some(interval) = self.interval {
            state.next_slot = Some(start + interval);
        }
        Ok(wait)
    }

    /// `None` when Redis is not configured or not reachable: use the local rules.
    async fn shared_acquire(&self, max_wait: Duration) -> Option<Result<Duration, Refusal>> {
        let shared = self.shared.as_ref()?;
        let interval_ms = self.interval.map_or(0, |i| i.as_millis() as u64);
        let mut invocation = shared.acquire.prepare_invoke();
        invocation
            .key(&shared.keys[0])
            .key(&shared.keys[1])
            .key(&shared.keys[2]);
        invocation.arg(interval_ms).arg(max_wait.as_millis() as u64);
        let (verdict, millis) = shared.link.invoke::<(i64, i64)>(&invocation).await?;
        // Redis is outside the process too: a corrupted key must not make a call wait for ever.
        let duration = Duration::from_millis(u64::try_from(millis).unwrap_or(0))
            .min(crate::outbound::retry_after::MAX);
        Some(match verdict {
            0 => Ok(duration.min(max_wait)),
            1 => Err(Refusal::CircuitOpen(duration)),
            _ => Err(Refusal::RateLimited(duration)),
        })
    }

    async fn shared_hold(&self, key: usize, duration: Duration) {
        let Some(shared) = self.shared.as_ref() else {
            return;
        };
        let mut invocation = shared.hold_until.prepare_invoke();
        invocation
            .key(&shared.keys[key])
            .arg(duration.as_millis() as u64);
        shared.link.invoke::<i64>(&invocation).await;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn governor(per_minute: u32) -> Arc<Governor> {
        Governor::new(
            per_minute,
            None,
            &PeerTls::default(),
            "test:",
            Arc::new(Metrics::new()),
        )
        .unwrap()
    }

    #[test]
    fn spaces_calls_evenly_and_refuses_what_cannot_wait() {
        let governor = governor(600); // one call every 100 ms
        assert_eq!(governor.local_acquire(Duration::ZERO), Ok(Duration::ZERO));
        let second = governor.local_acquire(Duration::from_secs(1)).unwrap();
        assert!(
            second > Duration::from_millis(90) && second <= Duration::from_millis(100),
            "{second:?}"
        );
        assert!(matches!(
            governor.local_acquire(Duration::from_millis(150)),
            Err(Refusal::RateLimited(_))
        ));
    }

    #[test]
    fn a_pause_and_an_open_circuit_hold_calls_back() {
        let governor = governor(0);
        assert_eq!(
            governor.local_acquire(Duration::ZERO),
            Ok(Duration::ZERO),
            "no limit, no wait"
        );
        governor.hold_local(|s| &mut s.paused_until, Duration::from_secs(2));
        let wait = governor.local_acquire(Duration::from_secs(5)).unwrap();
        assert!(wait > Duration::from_millis(1900), "{wait:?}");
        governor.hold_local(|s| &mut s.open_until, Duration::from_secs(5));
        assert!(matches!(
            governor.local_acquire(Duration::from_secs(60)),
            Err(Refusal::CircuitOpen(_))
        ));
    }
}
