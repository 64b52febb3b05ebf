//! Prometheus metrics, one registry per running hub (no globals, so that two hubs can run
//! in one test). Counters and histograms are updated where things happen; gauges that
//! describe state (outbox rows, pool, circuit) are read when `/metrics` is scraped.

use crate::store::group_commit::GroupObserver;

use prometheus::{
    Encoder, Gauge, Histogram, HistogramOpts, HistogramVec, IntCounter, IntCounterVec, IntGauge,
    IntGaugeVec, Opts, Registry, TextEncoder,
};

/// Seconds; from 0.5 ms to 30 s.
const LATENCY_BUCKETS: &[f64] = &[
    0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0,
];

pub struct Metrics {
    registry: Registry,
    pub http_requests: IntCounterVec,
    pub http_duration: HistogramVec,
    pub wallet_overhead: Histogram,
    pub operator_calls: IntCounterVec,
    pub operator_attempts: IntCounterVec,
    pub operator_duration: Histogram,
    pub circuit_state: IntGauge,
    pub webhook_deliveries: IntCounterVec,
    pub webhook_duration: Histogram,
    pub outbox_rows: IntGaugeVec,
    pub outbox_oldest_due_age: Gauge,
    pub db_connections: IntGaugeVec,
    pub governor_redis_up: IntGauge,
    pub signature_guard_redis_up: IntGauge,
    pub signature_guard_events: IntCounterVec,
    pub signed_requests: IntCounterVec,
    pub background_restarts: IntCounterVec,
    pub background_loop_up: IntGaugeVec,
    pub recovery_attempts: IntCounterVec,
    pub under_review: IntGauge,
    pub webhook_record_failures: IntCounter,
    pub group_commit_size: HistogramVec,
    pub group_commit_splits: IntCounterVec,
}

fn histogram(name: &str, help: &str) -> HistogramOpts {
    HistogramOpts::new(name, help).buckets(LATENCY_BUCKETS.to_vec())
}

impl Metrics {
    pub fn new() -> Self {
        let registry = Registry::new();
        let metrics = Self {
            http_requests: IntCounterVec::new(
                Opts::new("hub_http_requests_total", "HTTP requests by route, method and status"),
                &["route", "method", "status"],
            )
            .expect("valid metric"),
            http_duration: HistogramVec::new(
                histogram("hub_http_request_duration_seconds", "HTTP request latency by route and method"),
                &["route", "method"],
            )
            .expect("valid metric"),
            wallet_overhead: Histogram::with_opts(histogram(
                "hub_wallet_overhead_seconds",
                "Time a debit or credit spends in the hub itself: the wallet flow minus the operator call",
            ))
            .expect("valid metric"),
            operator_calls: IntCounterVec::new(
                Opts::new("hub_operator_calls_total", "Operator calls by final outcome"),
                &["outcome"],
            )
            .expect("valid metric"),
            operator_attempts: IntCounterVec::new(
                Opts::new(
                    "hub_operator_attempts_total",
                    "HTTP attempts towards the operator by result (retries are the non-answered ones)",
                ),
                &["result"],
            )
            .expect("valid metric"),
            operator_duration: Histogram::with_opts(histogram(
                "hub_operator_call_duration_seconds",
                "Operator call latency, retries and waits included",
            ))
            .expect("valid metric"),
            circuit_state: IntGauge::new(
                "hub_operator_circuit_state",
                "Operator circuit breaker: 0 closed, 1 open, 2 half-open",
            )
            .expect("valid metric"),
            webhook_deliveries: IntCounterVec::new(
                Opts::new("hub_webhook_deliveries_total", "Webhook delivery attempts by result"),
                &["result"],
            )
            .expect("valid metric"),
            webhook_duration: Histogram::with_opts(histogram(
                "hub_webhook_delivery_duration_seconds",
                "Latency of one webhook delivery attempt",
            ))
            .expect("valid metric"),
            outbox_rows: IntGaugeVec::new(Opts::new("hub_outbox_rows", "Outbox rows waiting for delivery (PENDING) or dead-lettered (DEAD_LETTER)"), &["status"])
                .expect("valid metric"),
            outbox_oldest_due_age: Gauge::new(
                "hub_outbox_oldest_due_age_seconds",
                "How long the oldest due webhook has been waiting (0 when none is due)",
            )
            .expect("valid metric"),
            db_connections: IntGaugeVec::new(
                Opts::new("hub_db_pool_connections", "Pooled database connections by state"),
                &["state"],
            )
            .expect("valid metric"),
            governor_redis_up: IntGauge::new(
                "hub_governor_redis_up",
                "1 while the operator governor is shared through Redis, 0 while it runs in process",
            )
            .expect("valid metric"),
            signature_guard_redis_up: IntGauge::new(
                "hub_signature_guard_redis_up",
                "1 while the v1 signature replay guard is shared through Redis, 0 while it runs in process",
            )
            .expect("valid metric"),
            signature_guard_events: IntCounterVec::new(
                Opts::new(
                    "hub_signature_guard_events_total",
                    "v1 replay guard: replays refused, decisions made in process because Redis was unreachable, entries forgotten early for room",
                ),
                &["event"],
            )
            .expect("valid metric"),
            signed_requests: IntCounterVec::new(
                Opts::new(
                    "hub_signed_requests_total",
                    "Requests whose signature verified, by signature version (1 or 2)",
                ),
                &["version"],
            )
            .expect("valid metric"),
            background_restarts: IntCounterVec::new(
                Opts::new(
                    "hub_background_restarts_total",
                    "Restarts of a background loop after it panicked, failed or ended early",
                ),
                &["loop"],
            )
            .expect("valid metric"),
            background_loop_up: IntGaugeVec::new(
                Opts::new(
                    "hub_background_loop_up",
                    "1 while a background loop runs, 0 while it keeps failing",
                ),
                &["loop"],
            )
            .expect("valid metric"),
            recovery_attempts: IntCounterVec::new(
                Opts::new(
                    "hub_recovery_attempts_total",
                    "The completer's attempts on transactions whose outcome is unknown, by result",
                ),
                &["result"],
            )
            .expect("valid metric"),
            under_review: IntGauge::new(
                "hub_transactions_under_review",
                "PENDING transactions flagged for manual review (as of the completer's last round)",
            )
            .expect("valid metric"),
            webhook_record_failures: IntCounter::new(
                "hub_webhook_record_failures_total",
                "Webhook outcomes that could not be recorded (their events come back after the lease and are delivered again)",
            )
            .expect("valid metric"),
            group_commit_size: HistogramVec::new(
                HistogramOpts::new(
                    "hub_group_commit_size",
                    "Writes that shared one database commit, by kind (claim, settle, outcome)",
                )
                .buckets(vec![1.0, 2.0, 4.0, 8.0, 16.0, 32.0, 64.0, 128.0, 256.0, 500.0]),
                &["write"],
            )
            .expect("valid metric"),
            group_commit_splits: IntCounterVec::new(
                Opts::new(
                    "hub_group_commit_splits_total",
                    "Group writes that failed and were written again one item at a time",
                ),
                &["write"],
            )
            .expect("valid metric"),
            registry,
        };
        metrics.register();
        metrics
    }

    fn register(&self) {
        let collectors: [Box<dyn prometheus::core::Collector>; 23] = [
            Box::new(self.group_commit_size.clone()),
            Box::new(self.group_commit_splits.clone()),
            Box::new(self.signature_guard_redis_up.clone()),
            Box::new(self.signature_guard_events.clone()),
            Box::new(self.signed_requests.clone()),
            Box::new(self.webhook_record_failures.clone()),
            Box::new(self.background_restarts.clone()),
            Box::new(self.background_loop_up.clone()),
            Box::new(self.recovery_attempts.clone()),
            Box::new(self.under_review.clone()),
            Box::new(self.governor_redis_up.clone()),
            Box::new(self.http_requests.clone()),
            Box::new(self.http_duration.clone()),
            Box::new(self.wallet_overhead.clone()),
            Box::new(self.operator_calls.clone()),
            Box::new(self.operator_attempts.clone()),
            Box::new(self.operator_duration.clone()),
            Box::new(self.circuit_state.clone()),
            Box::new(self.webhook_deliveries.clone()),
            Box::new(self.webhook_duration.clone()),
            Box::new(self.outbox_rows.clone()),
            Box::new(self.outbox_oldest_due_age.clone()),
            Box::new(self.db_connections.clone()),
        ];
        for collector in collectors {
            self.registry
                .register(collector)
                .expect("each metric is registered once");
        }
    }

    /// The Prometheus text exposition of every metric.
    pub fn render(&self) -> String {
        let mut out = Vec::new();
        TextEncoder::new()
            .encode(&self.registry.gather(), &mut out)
            .expect("text encoding cannot fail");
        String::from_utf8(out).expect("the text format is UTF-8")
    }
}

impl GroupObserver for Metrics {
    fn group_written(&self, write: &'static str, size: usize, split: bool) {
        self.group_commit_size
            .with_label_values(&[write])
            .observe(size as f64);
        if split {
            self.group_commit_splits.with_label_values(&[write]).inc();
        }
    }
}

impl Default for Metrics {
    fn default() -> Self {
        Self::new()
    }
}
