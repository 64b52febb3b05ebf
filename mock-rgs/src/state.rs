//! What the mock RGS received, and the faults it has been told to answer with.

use std::collections::HashSet;
use std::sync::Mutex;
use std::time::{Duration, SystemTime};

use serde::Serialize;
use serde_json::Value;

#[derive(Debug, Clone, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Delivery {
    pub received_at_ms: u128,
    /// The same instant in microseconds: commit→delivery latency on loopback is often
    /// below a millisecond, which `received_at_ms` would round to 0 or 1.
    pub received_at_us: u128,
    pub event_id: Option<String>,
    pub event_type: Option<String>,
    pub correlation_id: Option<String>,
    pub signature_valid: bool,
    pub standard_signature_valid: bool,
    /// What the mock answered.
    pub status: u16,
    pub body: Value,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Fault {
    pub status: u16,
    pub delay: Duration,
    pub retry_after_seconds: Option<u64>,
}

#[derive(Debug, Default)]
pub struct Inbox {
    pub deliveries: Vec<Delivery>,
    fault: Option<(Fault, u32)>,
}

impl Inbox {
    pub fn inject(&mut self, fault: Fault, count: u32) {
        self.fault = (count > 0).then_some((fault, count));
    }

    pub fn next_fault(&mut self) -> Option<Fault> {
        let (fault, remaining) = self.fault.as_mut()?;
        let fault = *fault;
        *remaining -= 1;
        if *remaining == 0 {
            self.fault = None;
        }
        Some(fault)
    }

    /// Accepted deliveries of an event id that had already been accepted.
    pub fn duplicates(&self) -> usize {
        let mut seen = HashSet::new();
        self.accepted()
            .filter(|d| !seen.insert(d.event_id.clone()))
            .count()
    }

    pub fn accepted(&self) -> impl Iterator<Item = &Delivery> {
        self.deliveries
            .iter()
            .filter(|d| (200..300).contains(&d.status))
    }
}

/// Microseconds since the Unix epoch.
pub fn now_us() -> u128 {
    SystemTime::now()
        .duration_since(SystemTime::UNIX_EPOCH)
        .unwrap_or_default()
        .as_micros()
}

#[derive(Debug, Default)]
pub struct SharedInbox(pub Mutex<Inbox>);

impl SharedInbox {
    pub fn lock(&self) -> std::sync::MutexGuard<'_, Inbox> {
        self.0
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }
}
