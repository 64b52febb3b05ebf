//! `loadgen`: drives any service that speaks the hub's wallet API (signed, idempotent
//! `POST /wallet/debit|credit`) and reports throughput, statuses and latency.
//!
//! Closed loop (`--concurrency N`): N clients send back to back. Open loop (`--rate R`):
//! requests start on a fixed schedule and latency is measured from the scheduled start, so a
//! slow server cannot hide its queueing (no coordinated omission).
//!
//! With `--webhooks-url` (a mock RGS) it also waits for the webhook of every answered request
//! and reports commit→delivery latency: the mock's receive time minus the event's
//! `timestamp`, which the hub sets when it settles the transaction.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::process::ExitCode;
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use clap::Parser;
use hmac::{Hmac, Mac};
use serde_json::{json, Value};
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
    /// All debits, each player first credited with what its share of the run will debit
    /// (the mock operator's players start with at most 250 USD, and it knows no others).
    #[arg(long)]
    debits_only: bool,
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
    /// Base URL of a mock RGS the service delivers its webhooks to (`GET /webhooks`): report
    /// commit→delivery latency for this run's requests.
    #[arg(long)]
    webhooks_url: Option<String>,
    /// How long to wait for the last webhook after the last answer, in seconds.
    #[arg(long, default_value_t = 30.0)]
    webhooks_deadline: f64,
}

#[derive(Default)]
struct Results {
    latencies_us: Vec<u64>,
    statuses: BTreeMap<u16, u64>,
    transport_errors: u64,
    /// refIds of the requests answered 2xx: each settled, so each must produce a webhook.
    answered: Vec<String>,
}

fn sign(secret: &[u8], body: &str, timestamp: &str) -> String {
    let mut mac = Hmac::<Sha256>::new_from_slice(secret).expect("any key length");
    mac.update(body.as_bytes());
    mac.update(timestamp.as_bytes());
    hex::encode(mac.finalize().into_bytes())
}

fn players(args: &Args) -> Vec<&str> {
    args.players
        .split(',')
        .map(str::trim)
        .filter(|p| !p.is_empty())
        .collect()
}

async fn one_request(
    client: &reqwest::Client,
    args: &Args,
    index: usize,
    ref_id: &str,
) -> Result<u16, reqwest::Error> {
    let players = players(args);
    // Spreads the credits evenly: exactly `credit_share` of every run of requests.
    let credit = (index as f64 * args.credit_share).fract() + args.credit_share >= 1.0;
    let path = if credit { "credit" } else { "debit" };
    let player = players[index % players.len()];
    send(client, args, path, player, args.amount_cents, ref_id).await
}

async fn send(
    client: &reqwest::Client,
    args: &Args,
    path: &str,
    player: &str,
    amount_cents: i64,
    ref_id: &str,
) -> Result<u16, reqwest::Error> {
    let body = json!({
        "playerId": player,
        "amountCents": amount_cents,
        "currency": args.currency,
        "refId": ref_id,
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

/// p50, p95, p99 and max of `sorted` microseconds, in milliseconds.
fn summary_ms(sorted: &[u64]) -> (f64, f64, f64, f64) {
    (
        percentile(sorted, 0.50),
        percentile(sorted, 0.95),
        percentile(sorted, 0.99),
        percentile(sorted, 1.0),
    )
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

/// Where the mock RGS lists what it received.
fn listing_url(base: &str) -> String {
    let base = base.trim_end_matches('/');
    if base.ends_with("/webhooks") {
        base.to_owned()
    } else {
        format!("{base}/webhooks")
    }
}

/// The mock RGS's latest `limit` deliveries and its running total.
async fn webhook_listing(
    client: &reqwest::Client,
    url: &str,
    limit: usize,
) -> Result<(usize, Vec<Value>), String> {
    let response = client
        .get(format!("{}?limit={limit}", listing_url(url)))
        .send()
        .await
        .map_err(|e| format!("GET {}: {e}", listing_url(url)))?;
    let mut listing: Value = serde_json::from_slice(
        &response
            .bytes()
            .await
            .map_err(|e| format!("reading the listing: {e}"))?,
    )
    .map_err(|e| format!("the listing is not JSON: {e}"))?;
    let total = listing["total"]
        .as_u64()
        .ok_or("the listing has no total")? as usize;
    let webhooks = match listing["webhooks"].take() {
        Value::Array(webhooks) => webhooks,
        _ => return Err("the listing has no webhooks array".into()),
    };
    Ok((total, webhooks))
}

/// Receive time and settlement time of one event, in microseconds since the epoch.
fn delivery_times(delivery: &Value) -> Option<(i64, i64)> {
    // Mocks before `receivedAtUs` only had milliseconds.
    let received_us = delivery["receivedAtUs"]
        .as_i64()
        .or_else(|| delivery["receivedAtMs"].as_i64().map(|ms| ms * 1000))?;
    let settled = delivery["body"]["timestamp"].as_str()?;
    let settled_us = chrono::DateTime::parse_from_rfc3339(settled)
        .ok()?
        .timestamp_micros();
    Some((received_us, settled_us))
}

struct Webhooks {
    /// Commit→delivery of each answered request whose webhook arrived, in µs.
    latencies_us: Vec<u64>,
    missing: Vec<String>,
    waited: Duration,
}

/// Waits until every refId in `answered` has an accepted delivery at the mock RGS received
/// after `baseline` (its total before the run), or until `deadline`; the first accepted
/// delivery of each counts.
async fn collect_webhooks(
    client: &reqwest::Client,
    url: &str,
    baseline: usize,
    answered: &[String],
    deadline: Duration,
) -> Result<Webhooks, String> {
    let started = Instant::now();
    let wanted: HashSet<&str> = answered.iter().map(String::as_str).collect();
    let mut found: HashMap<String, (i64, i64)> = HashMap::new();
    let mut seen = baseline;
    loop {
        // Cheap poll first: only fetch bodies once enough deliveries arrived to cover the run.
        let (total, _) = webhook_listing(client, url, 0).await?;
        if total < seen {
            return Err("the mock RGS's listing was cleared during the run".into());
        }
        let ready = total.saturating_sub(baseline) >= wanted.len();
        if (ready || started.elapsed() >= deadline) && total > seen {
            // Deliveries keep arriving (retries, other runs' stragglers): ask for a margin and
            // fetch again if the window still does not reach back to what was not yet read.
            let mut limit = total - seen + 1000;
            let (total, webhooks) = loop {
                let (total, webhooks) = webhook_listing(client, url, limit).await?;
                if total < seen {
                    return Err("the mock RGS's listing was cleared during the run".into());
                }
                if total.saturating_sub(webhooks.len()) <= seen {
                    break (total, webhooks);
                }
                limit = total - seen + 1000;
            };
            let first_new = webhooks.len() - (total - seen);
            for delivery in &webhooks[first_new..] {
                let accepted = delivery["status"]
                    .as_u64()
                    .is_some_and(|s| (200..300).contains(&s));
                let Some(ref_id) = delivery["body"]["data"]["refId"].as_str() else {
                    continue;
                };
                if !accepted || !wanted.contains(ref_id) || found.contains_key(ref_id) {
                    continue;
                }
                if let Some(times) = delivery_times(delivery) {
                    found.insert(ref_id.to_owned(), times);
                }
            }
            seen = total;
        }
        if found.len() == wanted.len() || started.elapsed() >= deadline {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let mut latencies_us: Vec<u64> = found
        .values()
        // The timestamp has millisecond resolution and is taken just before the commit, so
        // a delivery within the same millisecond can read as slightly negative: count it 0.
        .map(|(received, settled)| (received - settled).max(0) as u64)
        .collect();
    latencies_us.sort_unstable();
    let missing = answered
        .iter()
        .filter(|r| !found.contains_key(r.as_str()))
        .cloned()
        .collect();
    Ok(Webhooks {
        latencies_us,
        missing,
        waited: started.elapsed(),
    })
}

/// Credits each player with what the run will debit from it, so that no debit is refused
/// for insufficient funds.
async fn prefund(client: &reqwest::Client, args: &Args) -> Result<(), String> {
    let players = players(args);
    let per_player = args.requests.div_ceil(players.len()) as i64;
    let amount = per_player
        .checked_mul(args.amount_cents)
        .ok_or("the run debits more than fits in 64 bits")?;
    for player in &players {
        let ref_id = format!("loadgen-prefund-{}", uuid::Uuid::new_v4());
        let status = send(client, args, "credit", player, amount, &ref_id)
            .await
            .map_err(|e| format!("crediting {player}: {e}"))?;
        if !(200..300).contains(&status) {
            return Err(format!(
                "crediting {player} with {amount} answered {status}"
            ));
        }
    }
    println!(
        "prefunded    {} player(s) with {amount} each",
        players.len()
    );
    Ok(())
}

#[tokio::main]
async fn main() -> ExitCode {
    let mut args = Args::parse();
    if players(&args).is_empty() {
        eprintln!("error: --players names no player");
        return ExitCode::FAILURE;
    }
    if args.debits_only {
        args.credit_share = 0.0;
    }
    let client = match reqwest::Client::builder()
        .pool_max_idle_per_host(args.concurrency)
        .tcp_nodelay(true)
        .build()
    {
        Ok(client) => client,
        Err(e) => {
            eprintln!("error: building the HTTP client: {e}");
            return ExitCode::FAILURE;
        }
    };
    let mut failed = false;
    if args.debits_only {
        if let Err(e) = prefund(&client, &args).await {
            eprintln!("error: prefunding: {e}");
            return ExitCode::FAILURE;
        }
    }
    let webhooks_baseline = match &args.webhooks_url {
        Some(url) => match webhook_listing(&client, url, 0).await {
            Ok((total, _)) => Some(total),
            Err(e) => {
                eprintln!("error: webhooks: {e}");
                return ExitCode::FAILURE;
            }
        },
        None => None,
    };
    let before = match &args.metrics_url {
        Some(url) => overhead_buckets(&client, url).await,
        None => None,
    };
    let results = Arc::new(Mutex::new(Results::default()));
    let slots = Arc::new(Semaphore::new(args.concurrency.max(1)));
    let started = Instant::now();
    let mut tasks = Vec::with_capacity(args.requests);
    for index in 0..args.requests {
        // Closed loop: no timer at all. Tokio rounds a sleep up to its next millisecond
        // tick, so even `sleep_until(now)` capped the closed loop at about one request per
        // millisecond (the ~900/s of earlier figures was the load generator's ceiling).
        let scheduled = match args.rate {
            Some(rate) => {
                let slot = started + Duration::from_secs_f64(index as f64 / rate);
                tokio::time::sleep_until(slot.into()).await;
                slot
            }
            None => Instant::now(),
        };
        let Ok(permit) = slots.clone().acquire_owned().await else {
            break;
        };
        let (client, args, results) = (client.clone(), args.clone(), results.clone());
        let from = if args.rate.is_some() {
            scheduled
        } else {
            Instant::now()
        };
        tasks.push(tokio::spawn(async move {
            let ref_id = format!("loadgen-{}", uuid::Uuid::new_v4());
            let outcome = one_request(&client, &args, index, &ref_id).await;
            let took = from.elapsed().as_micros() as u64;
            drop(permit);
            let mut results = results.lock().await;
            match outcome {
                Ok(status) => {
                    *results.statuses.entry(status).or_default() += 1;
                    if (200..300).contains(&status) {
                        results.answered.push(ref_id);
                    }
                }
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
    let settled_per_s = results.answered.len() as f64 / elapsed;
    let (p50, p95, p99, max) = summary_ms(sorted);
    println!(
        "requests     {} in {elapsed:.2} s: {throughput:.0} per second, {settled_per_s:.0} answered 2xx per second",
        sorted.len()
    );
    println!(
        "statuses     {:?}, transport errors {}",
        results.statuses, results.transport_errors
    );
    println!("latency ms   p50 {p50:.2}  p95 {p95:.2}  p99 {p99:.2}  max {max:.2}");
    let mut summary = json!({
        "url": args.url, "requests": sorted.len(), "seconds": elapsed, "throughput_per_s": throughput,
        "answered_2xx": results.answered.len(), "answered_2xx_per_s": settled_per_s,
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
    if let (Some(url), Some(baseline)) = (&args.webhooks_url, webhooks_baseline) {
        let deadline = Duration::from_secs_f64(args.webhooks_deadline.max(0.0));
        match collect_webhooks(&client, url, baseline, &results.answered, deadline).await {
            Ok(webhooks) => {
                let sorted = &webhooks.latencies_us;
                let (p50, p95, p99, max) = summary_ms(sorted);
                println!(
                    "webhooks     {} of {} answered requests delivered (waited {:.2} s)",
                    sorted.len(),
                    results.answered.len(),
                    webhooks.waited.as_secs_f64()
                );
                println!(
                    "commit→delivery ms  p50 {p50:.2}  p95 {p95:.2}  p99 {p99:.2}  max {max:.2}"
                );
                if !webhooks.missing.is_empty() {
                    failed = true;
                    eprintln!(
                        "error: {} answered request(s) have no delivered webhook, e.g. refId {}",
                        webhooks.missing.len(),
                        webhooks.missing[..webhooks.missing.len().min(5)].join(", ")
                    );
                }
                summary["webhooks"] = json!({
                    "answered": results.answered.len(), "delivered": sorted.len(),
                    "missing": webhooks.missing.len(),
                    "commit_to_delivery_ms": {"p50": p50, "p95": p95, "p99": p99, "max": max},
                });
            }
            Err(e) => {
                failed = true;
                eprintln!("error: webhooks: {e}");
            }
        }
    }
    println!("{summary}");
    if failed {
        ExitCode::FAILURE
    } else {
        ExitCode::SUCCESS
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_listing_is_found_from_the_base_or_the_webhook_url() {
        assert_eq!(listing_url("http://h:1"), "http://h:1/webhooks");
        assert_eq!(listing_url("http://h:1/"), "http://h:1/webhooks");
        assert_eq!(listing_url("http://h:1/webhooks"), "http://h:1/webhooks");
    }

    #[test]
    fn delivery_times_prefer_microseconds_and_refuse_what_they_cannot_read() {
        let timestamp = "2026-11-24T10:20:30.123Z";
        let settled_us = 1_795_515_630_123_000;
        let precise =
            json!({"receivedAtMs": 1, "receivedAtUs": 7, "body": {"timestamp": timestamp}});
        assert_eq!(delivery_times(&precise), Some((7, settled_us)));
        let older_mock = json!({"receivedAtMs": 2, "body": {"timestamp": timestamp}});
        assert_eq!(delivery_times(&older_mock), Some((2000, settled_us)));
        let unreadable = json!({"receivedAtUs": 7, "body": {"timestamp": "yesterday"}});
        assert_eq!(delivery_times(&unreadable), None);
        assert_eq!(delivery_times(&json!({"body": null})), None);
    }
}
