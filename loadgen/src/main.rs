//! `loadgen`: drives any service that speaks the hub's wallet API (signed, idempotent
//! `POST /wallet/debit|credit`) and reports throughput, statuses and latency.
//!
//! Closed loop (`--concurrency N`): N clients send back to back. Open loop (`--rate R`):
//! requests start on a fixed schedule and latency is measured from the scheduled start, so a
//! slow server cannot hide its queueing (no coordinated omission).

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use clap::Parser;
use hmac::{Hmac, Mac};
use serde_json::json;
use sha2::Sha256;
use tokio::sync::{Mutex, Semaphore};

#[derive(Parser, Debug, Clone)]
#[command(
    name = "loadgen",
    about = "Load for a wallet API that speaks DESIGN §3"
)]
struct Args {
    /// Base URL of the service.
    #[arg(long, default_value = "http://127.0.0.1:3000")]
    url: String,
    /// HMAC secret the service verifies with.
    #[arg(
        long,
        env = "LOADGEN_SECRET",
        default_value = "demo-secret-for-local-use-only-0123456789"
    )]
    secret: String,
    /// Requests in flight at most (closed loop: the number of clients).
    #[arg(long, default_value_t = 16)]
    concurrency: usize,
    /// Requests per second on a fixed schedule (open loop) instead of back to back.
    #[arg(long)]
    rate: Option<f64>,
    /// Total requests to send.
    #[arg(long, default_value_t = 10_000)]
    requests: usize,
    /// Share of credits in the mix (0 = all debits, 1 = all credits).
    #[arg(long, default_value_t = 0.5)]
    credit_share: f64,
    /// Players to spread the load over, comma-separated.
    #[arg(long, default_value = "player-005")]
    players: String,
    #[arg(long, default_value = "USD")]
    currency: String,
    #[arg(long, default_value_t = 1)]
    amount_cents: i64,
    /// Also report the hub's own time per call from this Prometheus endpoint.
    #[arg(long)]
    metrics_url: Option<String>,
}

#[derive(Default)]
struct Results {
    latencies_us: Vec<u64>,
    statuses: BTreeMap<u16, u64>,
    transport_errors: u64,
}

fn sign(secret: &[u8], body: &str, timestamp: &str) -> String {
    let mut mac = Hmac::<Sha256>::new_from_slice(secret).expect("any key length");
    mac.update(body.as_bytes());
    mac.update(timestamp.as_bytes());
    hex::encode(mac.finalize().into_bytes())
}

async fn one_request(
    client: &reqwest::Client,
    args: &Args,
    index: usize,
) -> Result<u16, reqwest::Error> {
    let players: Vec<&str> = args.players.split(',').collect();
    // Spreads the credits evenly: exactly `credit_share` of every run of requests.
    let credit = (index as f64 * args.credit_share).fract() + args.credit_share >= 1.0;
    let path = if credit { "credit" } else { "debit" };
    let body = json!({
        "playerId": players[index % players.len()],
        "amountCents": args.amount_cents,
        "currency": args.currency,
        "refId": format!("loadgen-{}", uuid::Uuid::new_v4()),
    })
    .to_string();
    let timestamp = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap_or_default()
        .as_secs()
        .to_string();
    let signature = sign(args.secret.as_bytes(), &body, &timestamp);
    let response = client
        .post(format!("{}/wallet/{path}", args.url))
        .header("Content-Type", "application/json")
        .header("Idempotency-Key", uuid::Uuid::new_v4().to_string())
        .header("X-Timestamp", timestamp)
        .header("X-Signature", signature)
        .body(body)
        .send()
        .await?;
    let status = response.status().as_u16();
    response.bytes().await?;
    Ok(status)
}

fn percentile(sorted: &[u64], p: f64) -> f64 {
    if sorted.is_empty() {
        return 0.0;
    }
    let index = ((sorted.len() as f64 * p).ceil() as usize).clamp(1, sorted.len()) - 1;
    sorted[index] as f64 / 1000.0
}

/// Cumulative bucket counts of `hub_wallet_overhead_seconds`, by upper bound.
async fn overhead_buckets(client: &reqwest::Client, url: &str) -> Option<Vec<(f64, f64)>> {
    let text = client.get(url).send().await.ok()?.text().await.ok()?;
    let buckets = text
        .lines()
        .filter_map(|line| line.strip_prefix("hub_wallet_overhead_seconds_bucket{le=\""))
        .filter_map(|rest| {
            let (bound, count) = rest.split_once("\"} ")?;
            let bound = if bound == "+Inf" {
                f64::INFINITY
            } else {
                bound.parse().ok()?
            };
            Some((bound, count.trim().parse().ok()?))
        })
        .collect();
    Some(buckets)
}

/// The bucket bound under which `p` of the calls between two scrapes fell, in ms.
fn bucket_percentile(before: &[(f64, f64)], after: &[(f64, f64)], p: f64) -> Option<f64> {
    let deltas: Vec<(f64, f64)> = after
        .iter()
        .map(|(bound, count)| {
            (
                *bound,
                count
                    - before
                        .iter()
                        .find(|(b, _)| b == bound)
                        .map_or(0.0, |(_, c)| *c),
            )
        })
        .collect();
    let total = deltas.last()?.1;
    deltas
        .iter()
        .find(|(_, count)| *count >= total * p)
        .map(|(bound, _)| bound * 1000.0)
}

#[tokio::main]
async fn main() {
    let args = Args::parse();
    let client = reqwest::Client::builder()
        .pool_max_idle_per_host(args.concurrency)
        .tcp_nodelay(true)
        .build()
        .expect("an HTTP client");
    let before = match &args.metrics_url {
        Some(url) => overhead_buckets(&client, url).await,
        None => None,
    };
    let results = Arc::new(Mutex::new(Results::default()));
    let slots = Arc::new(Semaphore::new(args.concurrency));
    let started = Instant::now();
    let mut tasks = Vec::with_capacity(args.requests);
    for index in 0..args.requests {
        let scheduled = match args.rate {
            Some(rate) => started + Duration::from_secs_f64(index as f64 / rate),
            None => Instant::now(),
        };
        tokio::time::sleep_until(scheduled.into()).await;
        let permit = slots.clone().acquire_owned().await.expect("never closed");
        let (client, args, results) = (client.clone(), args.clone(), results.clone());
        let from = if args.rate.is_some() {
            scheduled
        } else {
            Instant::now()
        };
        tasks.push(tokio::spawn(async move {
            let outcome = one_request(&client, &args, index).await;
            let took = from.elapsed().as_micros() as u64;
            drop(permit);
            let mut results = results.lock().await;
            match outcome {
                Ok(status) => *results.statuses.entry(status).or_default() += 1,
                Err(_) => results.transport_errors += 1,
            }
            results.latencies_us.push(took);
        }));
    }
    for task in tasks {
        let _ = task.await;
    }
    let elapsed = started.elapsed().as_secs_f64();
    let mut results = results.lock().await;
    results.latencies_us.sort_unstable();
    let sorted = &results.latencies_us;
    let throughput = sorted.len() as f64 / elapsed;
    let (p50, p95, p99, max) = (
        percentile(sorted, 0.50),
        percentile(sorted, 0.95),
        percentile(sorted, 0.99),
        percentile(sorted, 1.0),
    );
    println!(
        "requests     {} in {elapsed:.2} s: {throughput:.0} per second",
        sorted.len()
    );
    println!(
        "statuses     {:?}, transport errors {}",
        results.statuses, results.transport_errors
    );
    println!("latency ms   p50 {p50:.2}  p95 {p95:.2}  p99 {p99:.2}  max {max:.2}");
    let mut summary = json!({
        "url": args.url, "requests": sorted.len(), "seconds": elapsed, "throughput_per_s": throughput,
        "concurrency": args.concurrency, "rate": args.rate,
        "statuses": results.statuses, "transport_errors": results.transport_errors,
        "latency_ms": {"p50": p50, "p95": p95, "p99": p99, "max": max},
    });
    if let (Some(url), Some(before)) = (&args.metrics_url, before) {
        if let Some(after) = overhead_buckets(&client, url).await {
            let overhead_p50 = bucket_percentile(&before, &after, 0.50);
            let overhead_p99 = bucket_percentile(&before, &after, 0.99);
            println!(
                "hub overhead ms (bucket bound)  p50 ≤ {overhead_p50:?}  p99 ≤ {overhead_p99:?}"
            );
            summary["hub_overhead_ms"] =
                json!({"p50_at_most": overhead_p50, "p99_at_most": overhead_p99});
        }
    }
    println!("{summary}");
}
