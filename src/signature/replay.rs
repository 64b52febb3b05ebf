//! The v1 replay guard. A v1 signature covers the body and the timestamp only, so within the
//! tolerance window a captured request could be sent again to another endpoint, or under
//! another Idempotency-Key, and still verify. The guard remembers, per signature, the
//! [`Binding`] (method, path, Idempotency-Key) it was first used with:
//!
//! - the same signature with the same binding is the client's retry of the same request: let
//!   through (the wallet answers it as an idempotent replay);
//! - the same signature with another binding is refused ([`SignatureError::Replayed`]).
//!
//! Only signatures that verified (timestamp in the window included) are remembered, for as
//! long as this hub would accept them plus [`CLOCK_SKEW_MARGIN`] (another replica's clock may
//! lag), i.e. at most 2 × tolerance + margin, typically tolerance + margin.
//!
//! With `REDIS_URL` the memory is shared by every replica: `{prefix}sig:v1:{sha256(signature)}`
//! holds `sha256(binding)`, set only if absent, with that expiry. Each hub also remembers in
//! process (at most [`LOCAL_CAPACITY`] signatures, the oldest forgotten first), and that
//! memory alone decides while Redis is unreachable: a replay across replicas is then caught
//! only where the signature was seen, which is logged, counted
//! (`hub_signature_guard_events_total{event="redis_fallback"}`) and never fails a request.
//! What a hub saw meanwhile is what it offers Redis as the first use when that signature
//! comes to it again, so a request it refuses never becomes the first use Redis tells the
//! other replicas.
//! Version 2 binds the request in the signature itself and needs none of this.

use std::collections::{HashMap, VecDeque};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use redis::Script;
use sha2::{Digest, Sha256};

use super::{Binding, SignatureError};
use crate::metrics::Metrics;
use crate::outbound::redis::RedisLink;
use crate::outbound::tls::PeerTls;

/// How much longer than this hub another replica might still accept a signature.
pub const CLOCK_SKEW_MARGIN: Duration = Duration::from_secs(60);
/// The longest a signature is remembered: far past any sensible tolerance, short enough
/// for an `Instant` and a Redis expiry.
const LONGEST_MEMORY: Duration = Duration::from_secs(100 * 365 * 24 * 3600);
/// Signatures remembered in process. At the default tolerance an entry lives about 6 minutes:
/// room for some 270 v1 requests a second on one hub before the oldest are forgotten early.
pub const LOCAL_CAPACITY: usize = 100_000;

/// KEYS: the signature's key. ARGV: the binding's digest, expiry in ms.
/// Returns the digest of the binding the signature was first used with (now ours if new).
/// A script rather than `SET NX GET`, which needs Redis 7.
const FIRST_USE: &str = r"
local first = redis.call('GET', KEYS[1])
if first then return first end
redis.call('SET', KEYS[1], ARGV[1], 'PX', ARGV[2])
return ARGV[1]
";

type Digest32 = [u8; 32];

fn digest(parts: &[&[u8]]) -> Digest32 {
    let mut hasher = Sha256::new();
    for part in parts {
        hasher.update(part);
    }
    hasher.finalize().into()
}

fn binding_digest(binding: &Binding<'_>) -> Digest32 {
    let mut hasher = Sha256::new();
    binding.feed(&mut |part| hasher.update(part));
    hasher.finalize().into()
}

struct Shared {
    link: RedisLink,
    prefix: String,
    first_use: Script,
}

pub struct ReplayGuard {
    local: Mutex<LocalMemory>,
    shared: Option<Shared>,
    metrics: Arc<Metrics>,
}

impl ReplayGuard {
    /// `redis_url` `None` keeps the memory in process; `tls` and `key_prefix` as for the
    /// governor.
    pub fn new(
        redis_url: Option<&str>,
        tls: &PeerTls,
        key_prefix: &str,
        metrics: Arc<Metrics>,
    ) -> Result<Self, redis::RedisError> {
        let link = RedisLink::optional(
            redis_url,
            tls,
            "the signature replay guard",
            metrics.signature_guard_redis_up.clone(),
        )?;
        let shared = link.map(|link| Shared {
            link,
            prefix: format!("{key_prefix}sig:v1:"),
            first_use: Script::new(FIRST_USE),
        });
        Ok(Self {
            local: Mutex::new(LocalMemory::new(LOCAL_CAPACITY)),
            shared,
            metrics,
        })
    }

    /// Lets the first use of a verified v1 `signature` through, and later uses with the same
    /// binding; refuses it for any other binding. `valid_for`: how much longer this hub would
    /// accept the signature.
    pub async fn admit(
        &self,
        signature: &[u8],
        binding: &Binding<'_>,
        valid_for: Duration,
    ) -> Result<(), SignatureError> {
        let signature = digest(&[signature]);
        let ours = binding_digest(binding);
        // Capped so that neither `Instant + ttl` nor Redis's expiry can overflow, whatever
        // SIGNATURE_TOLERANCE_SECONDS says.
        let ttl = (valid_for + CLOCK_SKEW_MARGIN).min(LONGEST_MEMORY);
        // What this replica already knows came first (seen while Redis was away, say) is
        // what it offers Redis, not this request: a refused request must never become the
        // first use Redis tells the other replicas.
        let candidate = self.known_first(&signature).unwrap_or(ours);
        let first = match self.shared_first_use(&signature, &candidate, ttl).await {
            Some(shared_first) => shared_first,
            None => candidate,
        };
        // Remember what Redis says came first (or ours), so that an outage later still knows.
        let local_first = self.remember(signature, first, ttl);
        if first == ours && local_first == ours {
            return Ok(());
        }
        self.count("replay_refused");
        tracing::warn!(
            method = binding.method,
            path = binding.path,
            "a v1 signature was used again for another request: refused"
        );
        Err(SignatureError::Replayed)
    }

    /// The binding this hub remembers `signature` was first used with, if any.
    fn known_first(&self, signature: &Digest32) -> Option<Digest32> {
        let local = self.local.lock().unwrap_or_else(|p| p.into_inner());
        local.known(signature, Instant::now())
    }

    fn remember(&self, signature: Digest32, binding: Digest32, ttl: Duration) -> Digest32 {
        let mut local = self.local.lock().unwrap_or_else(|p| p.into_inner());
        let (first, evicted) = local.first_use(signature, binding, ttl, Instant::now());
        drop(local);
        if evicted {
            self.count("evicted");
        }
        first
    }

    /// The binding digest Redis holds for `signature` (ours if it is new there); `None` when
    /// Redis is not configured or not reachable.
    async fn shared_first_use(
        &self,
        signature: &Digest32,
        ours: &Digest32,
        ttl: Duration,
    ) -> Option<Digest32> {
        let shared = self.shared.as_ref()?;
        let mut invocation = shared.first_use.prepare_invoke();
        invocation
            .key(format!("{}{}", shared.prefix, hex::encode(signature)))
            .arg(hex::encode(ours))
            .arg(u64::try_from(ttl.as_millis()).unwrap_or(u64::MAX));
        let Some(answer) = shared.link.invoke::<String>(&invocation).await else {
            self.count("redis_fallback");
            return None;
        };
        // Redis is outside the process: an unreadable value is somebody else's binding.
        let mut first = [0u8; 32];
        Some(match hex::decode_to_slice(answer, &mut first) {
            Ok(()) => first,
            Err(_) => [0u8; 32],
        })
    }

    fn count(&self, event: &str) {
        self.metrics
            .signature_guard_events
            .with_label_values(&[event])
            .inc();
    }
}

/// First uses in process: bounded, each forgotten when it expires (or, past the capacity,
/// the oldest first).
struct LocalMemory {
    capacity: usize,
    first: HashMap<Digest32, (Digest32, Instant)>,
    /// Insertion order, for pruning and eviction.
    order: VecDeque<(Digest32, Instant)>,
}

impl LocalMemory {
    fn new(capacity: usize) -> Self {
        Self {
            capacity: capacity.max(1),
            first: HashMap::new(),
            order: VecDeque::new(),
        }
    }

    /// The binding `signature` was first used with, while that is remembered.
    fn known(&self, signature: &Digest32, now: Instant) -> Option<Digest32> {
        self.first
            .get(signature)
            .filter(|(_, until)| *until > now)
            .map(|(first, _)| *first)
    }

    /// The binding `signature` was first used with, recording `binding` if it is new; and
    /// whether an entry was forgotten early to make room.
    fn first_use(
        &mut self,
        signature: Digest32,
        binding: Digest32,
        ttl: Duration,
        now: Instant,
    ) -> (Digest32, bool) {
        while self.order.front().is_some_and(|(_, until)| *until <= now) {
            self.pop_oldest(now);
        }
        if let Some(first) = self.known(&signature, now) {
            return (first, false);
        }
        let mut evicted = false;
        while self.first.len() >= self.capacity && !self.order.is_empty() {
            evicted |= self.pop_oldest(now);
        }
        let until = now + ttl;
        self.first.insert(signature, (binding, until));
        self.order.push_back((signature, until));
        (binding, evicted)
    }

    /// Drops the oldest entry; whether it was still live (not replaced or expired).
    fn pop_oldest(&mut self, now: Instant) -> bool {
        let Some((signature, until)) = self.order.pop_front() else {
            return false;
        };
        match self.first.get(&signature) {
            Some((_, current)) if *current == until => {
                self.first.remove(&signature);
                until > now
            }
            _ => false,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const DEBIT: Binding<'static> = Binding {
        method: "POST",
        path: "/wallet/debit",
        idempotency_key: b"key-1",
    };
    const CREDIT: Binding<'static> = Binding {
        path: "/wallet/credit",
        ..DEBIT
    };

    fn guard() -> ReplayGuard {
        ReplayGuard::new(None, &PeerTls::default(), "test:", Arc::new(Metrics::new())).unwrap()
    }

    #[tokio::test]
    async fn the_same_request_again_passes_and_another_binding_is_refused() {
        let guard = guard();
        let minute = Duration::from_secs(60);
        assert_eq!(guard.admit(b"sig-a", &DEBIT, minute).await, Ok(()));
        assert_eq!(guard.admit(b"sig-a", &DEBIT, minute).await, Ok(()));
        assert_eq!(
            guard.admit(b"sig-a", &CREDIT, minute).await,
            Err(SignatureError::Replayed)
        );
        let other_key = Binding {
            idempotency_key: b"key-2",
            ..DEBIT
        };
        assert_eq!(
            guard.admit(b"sig-a", &other_key, minute).await,
            Err(SignatureError::Replayed)
        );
        assert_eq!(guard.admit(b"sig-b", &CREDIT, minute).await, Ok(()));
    }

    #[tokio::test]
    async fn an_enormous_tolerance_does_not_panic() {
        // SIGNATURE_TOLERANCE_SECONDS is any u64: a signature may stay valid for ~i64::MAX s.
        let guard = guard();
        let forever = Duration::from_secs(u64::try_from(i64::MAX).unwrap());
        assert_eq!(guard.admit(b"sig-a", &DEBIT, forever).await, Ok(()));
        assert_eq!(
            guard.admit(b"sig-a", &CREDIT, forever).await,
            Err(SignatureError::Replayed)
        );
    }

    /// Two replicas' guards on the Redis of `TEST_REDIS_URL`, under a prefix of their own.
    fn replicas() -> Option<(ReplayGuard, ReplayGuard)> {
        let url = std::env::var("TEST_REDIS_URL").ok()?;
        let prefix = format!("test:{}:", uuid::Uuid::new_v4());
        let guard = || {
            ReplayGuard::new(
                Some(&url),
                &PeerTls::default(),
                &prefix,
                Arc::new(Metrics::new()),
            )
            .unwrap()
        };
        Some((guard(), guard()))
    }

    #[tokio::test]
    async fn what_one_replica_saw_while_redis_was_down_reaches_redis_when_it_is_back() {
        let Some((a, b)) = replicas() else {
            eprintln!("TEST_REDIS_URL unset: skipped");
            return;
        };
        let minute = Duration::from_secs(60);
        // During an outage, replica A let the debit through and remembered it only itself.
        let signature = digest(&[b"sig-a"]);
        a.remember(signature, binding_digest(&DEBIT), minute);
        // Redis is back. The same signature sent to A for a credit is refused...
        assert_eq!(
            a.admit(b"sig-a", &CREDIT, minute).await,
            Err(SignatureError::Replayed)
        );
        // ...and must not have become the first use that Redis tells every other replica.
        assert_eq!(
            b.admit(b"sig-a", &CREDIT, minute).await,
            Err(SignatureError::Replayed),
            "another replica lets the refused credit through"
        );
        assert_eq!(
            b.admit(b"sig-a", &DEBIT, minute).await,
            Ok(()),
            "the client's retry of its debit is refused elsewhere"
        );
    }

    #[test]
    fn memory_forgets_expired_entries_and_stays_within_its_capacity() {
        let mut memory = LocalMemory::new(2);
        let now = Instant::now();
        let second = Duration::from_secs(1);
        let (a, b, c) = ([1u8; 32], [2u8; 32], [3u8; 32]);
        assert_eq!(memory.first_use(a, a, second, now), (a, false));
        assert_eq!(memory.first_use(a, b, second, now), (a, false));
        // Expired: a new first use.
        assert_eq!(memory.first_use(a, b, second, now + 2 * second), (b, false));
        assert_eq!(memory.first.len(), 1, "the expired entry is gone");
        let later = now + 2 * second;
        assert_eq!(memory.first_use(b, b, 10 * second, later), (b, false));
        let (_, evicted) = memory.first_use(c, c, 10 * second, later);
        assert!(memory.first.len() <= 2, "capacity holds");
        assert!(evicted, "a live entry made room");
    }
}
