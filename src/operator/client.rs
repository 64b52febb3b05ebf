//! HTTP client for the operator with retries inside one deadline.
//!
//! Only a readable wallet status decides. 5xx, timeouts, connection errors and every answer
//! that is not a wallet status (a redirect, a gateway's HTML page, an idempotency layer's
//! "409 in progress", an unknown status string) mean "outcome unknown": they back off
//! exponentially with jitter inside one deadline, and past it the call is unavailable (the
//! transaction stays `PENDING`). A 429 waits its `Retry-After`, clamped. The same
//! transaction id is sent on every attempt, so retrying never charges twice.

use std::sync::Arc;
use std::time::Duration;

use backoff::backoff::Backoff;
use backoff::{ExponentialBackoff, ExponentialBackoffBuilder};
use reqwest::StatusCode;
use serde::Serialize;
use serde_json::value::RawValue;
use tokio::time::Instant;
use tokio_util::bytes::Bytes;

use chrono::SecondsFormat;

use super::governor::{Governor, Refusal};
use super::listing::{self, ListQuery, Page};
use super::{response, BalanceAnswer, Decision, OperatorCall, OperatorError};
use super::{OperatorConfig, RetryConfig};
use crate::domain::TransactionKind;
use crate::metrics::Metrics;
use crate::outbound::{self, BodyError};

/// A wallet answer is a few hundred bytes; anything past this is not one.
const MAX_WALLET_ANSWER_BYTES: usize = 64 * 1024;
/// A listing page holds at most a few thousand transactions.
const MAX_LISTING_PAGE_BYTES: usize = 32 * 1024 * 1024;

#[derive(Clone)]
pub struct OperatorClient {
    http: reqwest::Client,
    base_url: String,
    retry: RetryConfig,
    metrics: Arc<Metrics>,
    governor: Arc<Governor>,
}

/// Whether calls wait for the governor's slots (wallet calls) or not (the listing, which the
/// operator's wallet rate limit does not cover).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Pacing {
    Governed { first_slot_taken: bool },
    Free,
}

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct WalletBody<'a> {
    /// Written from exact decimal text: a JSON number, never a float.
    amount: Box<RawValue>,
    currency: &'a str,
    transaction_id: &'a str,
    #[serde(skip_serializing_if = "Option::is_none")]
    original_transaction_id: Option<&'a str>,
    description: &'a str,
}

/// What one attempt tells the retry loop.
enum Attempt<T> {
    Decided(T),
    /// Final: asking again would get the same answer.
    Refused(String),
    Retry {
        /// The `result` label of `hub_operator_attempts_total`.
        kind: &'static str,
        failure: String,
        retry_after: Option<Duration>,
    },
}

impl OperatorClient {
    pub fn new(
        config: &OperatorConfig,
        metrics: Arc<Metrics>,
        governor: Arc<Governor>,
    ) -> Result<Self, reqwest::Error> {
        let http = outbound::client_builder(&config.tls).build()?;
        Ok(Self {
            http,
            base_url: config.base_url.clone(),
            retry: config.retry.clone(),
            metrics,
            governor,
        })
    }

    /// At start: whether an `https://` operator presents a certificate `OPERATOR_CA_FILE`
    /// (or the public roots) refuses.
    pub async fn check_certificate(&self) -> Result<(), String> {
        outbound::tls::check_peer_certificate(&self.http, &self.base_url, "OPERATOR_CA_FILE").await
    }

    /// Sends `call` until the operator decides or `budget` (at most the configured deadline)
    /// passes, each attempt in a slot of the governor (`first_slot_taken`: the caller already
    /// waited for the first one).
    #[tracing::instrument(skip_all, fields(transaction_id = %call.transaction_id))]
    pub async fn execute(
        &self,
        call: &OperatorCall,
        first_slot_taken: bool,
        budget: Duration,
    ) -> Result<Decision, OperatorError> {
        let pacing = Pacing::Governed { first_slot_taken };
        self.send(call, pacing, budget.min(self.retry.deadline))
            .await
    }

    /// Like [`Self::execute`] within `budget` instead of the configured deadline: the
    /// recovery policy's attempts are short, and its own schedule spaces them out.
    #[tracing::instrument(skip_all, fields(transaction_id = %call.transaction_id))]
    pub async fn execute_within(
        &self,
        call: &OperatorCall,
        budget: Duration,
    ) -> Result<Decision, OperatorError> {
        let pacing = Pacing::Governed {
            first_slot_taken: false,
        };
        self.send(call, pacing, budget).await
    }

    /// How long one attempt may take.
    pub fn attempt_timeout(&self) -> Duration {
        self.retry.attempt_timeout
    }

    async fn send(
        &self,
        call: &OperatorCall,
        pacing: Pacing,
        budget: Duration,
    ) -> Result<Decision, OperatorError> {
        let url = self.url(call);
        let body = wallet_body(call);
        self.with_retries(pacing, budget, |timeout| {
            self.attempt(&url, &body, call, timeout)
        })
        .await
    }

    /// The player's balance, read live: retried like a wallet call inside the deadline (a
    /// read moves no money, so every failure may simply be asked again).
    #[tracing::instrument(skip_all)]
    pub async fn balance(&self, player_id: &str) -> Result<BalanceAnswer, OperatorError> {
        let url = format!(
            "{}/v2/players/{}/balance",
            self.base_url,
            url_path_segment(player_id)
        );
        let pacing = Pacing::Governed {
            first_slot_taken: false,
        };
        self.with_retries(pacing, self.retry.deadline, |timeout| {
            self.fetch_balance(&url, timeout)
        })
        .await
    }

    async fn fetch_balance(&self, url: &str, timeout: Duration) -> Attempt<BalanceAnswer> {
        let sent = self.http.get(url).timeout(timeout).send().await;
        let (status, body) = match read_answer(sent, timeout, MAX_WALLET_ANSWER_BYTES).await {
            Ok(answer) => answer,
            Err(retry) => return retry,
        };
        match response::balance(&body) {
            Some(answer) if !status.is_redirection() => Attempt::Decided(answer),
            _ => retry(
                "unknown_answer",
                format!("operator answered {status} without a readable balance"),
                None,
            ),
        }
    }

    /// One page of the operator's transactions created in `[start, end]`, ordered by id.
    pub async fn list_transactions(&self, query: &ListQuery) -> Result<Page, OperatorError> {
        let mut url =
            reqwest::Url::parse(&format!("{}/v2/transactions", self.base_url)).map_err(|_| {
                OperatorError::Refused(
                    "OPERATOR_BASE_URL cannot be joined with /v2/transactions".into(),
                )
            })?;
        url.query_pairs_mut()
            .append_pair(
                "startDate",
                &query.start.to_rfc3339_opts(SecondsFormat::Micros, true),
            )
            .append_pair(
                "endDate",
                &query.end.to_rfc3339_opts(SecondsFormat::Micros, true),
            )
            .append_pair("limit", &query.limit.to_string());
        if let Some(cursor) = &query.cursor {
            url.query_pairs_mut().append_pair("cursor", cursor);
        }
        self.with_retries(Pacing::Free, self.retry.deadline, |timeout| {
            self.fetch_page(url.clone(), timeout)
        })
        .await
    }

    /// Runs `attempt` until it decides, or until the deadline would pass before the next try.
    async fn with_retries<T, F, Fut>(
        &self,
        pacing: Pacing,
        budget: Duration,
        attempt: F,
    ) -> Result<T, OperatorError>
    where
        F: FnMut(Duration) -> Fut,
        Fut: std::future::Future<Output = Attempt<T>>,
    {
        let started = Instant::now();
        let result = self.retry_until_deadline(pacing, budget, attempt).await;
        let outcome = match &result {
            Ok(_) => "answered",
            Err(OperatorError::Refused(_)) => "refused",
            Err(OperatorError::Unavailable { .. }) => "unavailable",
        };
        self.metrics
            .operator_calls
            .with_label_values(&[outcome])
            .inc();
        self.metrics
            .operator_duration
            .observe(started.elapsed().as_secs_f64());
        result
    }

    async fn retry_until_deadline<T, F, Fut>(
        &self,
        pacing: Pacing,
        budget: Duration,
        mut attempt: F,
    ) -> Result<T, OperatorError>
    where
        F: FnMut(Duration) -> Fut,
        Fut: std::future::Future<Output = Attempt<T>>,
    {
        let deadline = Instant::now() + budget;
        let mut intervals = self.intervals();
        let mut attempts = 0;
        loop {
            attempts += 1;
            let governed = match pacing {
                Pacing::Governed { first_slot_taken } => !(first_slot_taken && attempts == 1),
                Pacing::Free => false,
            };
            if governed {
                let remaining = deadline.saturating_duration_since(Instant::now());
                if let Err(refusal) = self.governor.acquire(remaining).await {
                    let (Refusal::RateLimited(wait) | Refusal::CircuitOpen(wait)) = refusal;
                    let last_failure =
                        format!("no slot to call the operator within the deadline ({refusal:?})");
                    return Err(OperatorError::Unavailable {
                        attempts,
                        last_failure,
                        retry_after: Some(wait),
                    });
                }
            }
            let remaining = deadline.saturating_duration_since(Instant::now());
            // An attempt with almost no time could still move money and then only time out:
            // an unknown outcome made on purpose. Stop before sending it.
            if remaining < self.retry.attempt_timeout / 10 {
                return Err(OperatorError::Unavailable {
                    attempts: attempts - 1,
                    last_failure: "no time left for an attempt within the deadline".into(),
                    retry_after: None,
                });
            }
            let attempted = attempt(remaining.min(self.retry.attempt_timeout)).await;
            let kind = match &attempted {
                Attempt::Decided(_) => "answered",
                Attempt::Refused(_) => "refused",
                Attempt::Retry { kind, .. } => kind,
            };
            self.metrics
                .operator_attempts
                .with_label_values(&[kind])
                .inc();
            let (failure, retry_after) = match attempted {
                Attempt::Decided(decided) => return Ok(decided),
                Attempt::Refused(reason) => return Err(OperatorError::Refused(reason)),
                Attempt::Retry {
                    failure,
                    retry_after,
                    ..
                } => (failure, retry_after),
            };
            if let (Some(pause), Pacing::Governed { .. }) = (retry_after, pacing) {
                // Every replica waits for this one, not just this call.
                self.governor.pause(pause).await;
            }
            let wait = retry_after
                .or_else(|| intervals.next_backoff())
                .unwrap_or(Duration::ZERO);
            if Instant::now()
                .checked_add(wait)
                .is_none_or(|next_try| next_try >= deadline)
            {
                tracing::warn!(attempts, %failure, "operator call gave up at its deadline");
                return Err(OperatorError::Unavailable {
                    attempts,
                    last_failure: failure,
                    retry_after,
                });
            }
            tracing::info!(attempts, %failure, wait_ms = wait.as_millis() as u64, "operator call will be retried");
            tokio::time::sleep(wait).await;
        }
    }

    async fn fetch_page(&self, url: reqwest::Url, timeout: Duration) -> Attempt<Page> {
        let sent = self.http.get(url).timeout(timeout).send().await;
        let (status, body) = match read_answer(sent, timeout, MAX_LISTING_PAGE_BYTES).await {
            Ok(answer) => answer,
            Err(retry) => return retry,
        };
        if !status.is_success() {
            return Attempt::Refused(format!(
                "operator refused the transaction listing with {status}"
            ));
        }
        match listing::parse_page(&body) {
            Ok(page) => Attempt::Decided(page),
            Err(error) => Attempt::Refused(format!(
                "operator's transaction listing is not readable: {error}"
            )),
        }
    }

    fn intervals(&self) -> ExponentialBackoff {
        ExponentialBackoffBuilder::new()
            .with_initial_interval(self.retry.initial_backoff)
            .with_max_interval(self.retry.max_backoff)
            .with_multiplier(2.0)
            .with_randomization_factor(0.5)
            .with_max_elapsed_time(None)
            .build()
    }

    fn url(&self, call: &OperatorCall) -> String {
        let action = match call.kind {
            TransactionKind::Debit => "withdraw",
            TransactionKind::Credit => "deposit",
            TransactionKind::Rollback => "rollback",
        };
        let player: String = url_path_segment(&call.player_id);
        format!("{}/v2/players/{player}/{action}", self.base_url)
    }

    async fn attempt(
        &self,
        url: &str,
        body: &str,
        call: &OperatorCall,
        timeout: Duration,
    ) -> Attempt<Decision> {
        let sent = self
            .http
            .post(url)
            .timeout(timeout)
            .header("Content-Type", "application/json")
            .header("X-Correlation-ID", &call.correlation_id)
            .header("Idempotency-Key", &call.transaction_id)
            .body(body.to_owned())
            .send()
            .await;
        let (status, body) = match read_answer(sent, timeout, MAX_WALLET_ANSWER_BYTES).await {
            Ok(answer) => answer,
            Err(retry) => return retry,
        };
        match response::decision(&body, call.currency, call.kind) {
            // A redirect is never the answer to our POST, whatever its body says.
            Some(decision) if !status.is_redirection() => Attempt::Decided(decision),
            // Not a wallet answer: the operator may or may not have moved the money. Ask
            // again with the same transaction id; past the deadline the call stays unknown.
            _ => retry(
                "unknown_answer",
                format!("operator answered {status} without a wallet status"),
                None,
            ),
        }
    }
}

fn retry<T>(kind: &'static str, failure: String, retry_after: Option<Duration>) -> Attempt<T> {
    Attempt::Retry {
        kind,
        failure,
        retry_after,
    }
}

/// The status and (bounded) body of an answer the operator meant to give, or the retry that
/// a transport failure, a 429, a 5xx or an oversized body calls for.
async fn read_answer<T>(
    sent: Result<reqwest::Response, reqwest::Error>,
    timeout: Duration,
    limit: usize,
) -> Result<(StatusCode, Bytes), Attempt<T>> {
    let response = sent.map_err(|error| transport_failure(&error, timeout))?;
    let status = response.status();
    if status == StatusCode::TOO_MANY_REQUESTS {
        let wait = outbound::retry_after_of(response.headers());
        return Err(retry(
            "rate_limited",
            "operator answered 429 Too Many Requests".into(),
            wait,
        ));
    }
    if status.is_server_error() {
        return Err(retry(
            "server_error",
            format!("operator answered {status}"),
            None,
        ));
    }
    match outbound::read_body(response, limit).await {
        Ok(body) => Ok((status, body)),
        Err(BodyError::Transport(error)) => Err(transport_failure(&error, timeout)),
        Err(BodyError::TooLarge(too_large)) => Err(retry(
            "unknown_answer",
            format!("operator answered {status}: {too_large}"),
            None,
        )),
    }
}

fn wallet_body(call: &OperatorCall) -> String {
    let amount = RawValue::from_string(call.currency.to_major_text(call.amount_minor))
        .expect("a plain decimal is a valid JSON number");
    let body = WalletBody {
        amount,
        currency: call.currency.code(),
        transaction_id: &call.transaction_id,
        original_transaction_id: call.original_transaction_id.as_deref(),
        description: &call.description,
    };
    serde_json::to_string(&body).expect("plain struct serialises")
}

/// A failure described without the URL, which may carry credentials.
fn transport_failure<T>(error: &reqwest::Error, timeout: Duration) -> Attempt<T> {
    if error.is_timeout() {
        retry(
            "timeout",
            format!("no answer within {} ms", timeout.as_millis()),
            None,
        )
    } else if error.is_connect() {
        retry(
            "connect_error",
            "could not connect to the operator".into(),
            None,
        )
    } else {
        retry(
            "transport_error",
            "the connection to the operator failed".into(),
            None,
        )
    }
}

/// Percent-encodes everything outside RFC 3986's unreserved set.
fn url_path_segment(text: &str) -> String {
    text.bytes()
        .map(|b| match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'.' | b'_' | b'~' => {
                (b as char).to_string()
            }
            _ => format!("%{b:02X}"),
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::domain::Currency;

    fn call(amount_minor: i64, currency: &str) -> OperatorCall {
        OperatorCall {
            kind: TransactionKind::Debit,
            transaction_id: "tx-1".into(),
            original_transaction_id: None,
            player_id: "player/001".into(),
            amount_minor,
            currency: Currency::from_iso_code(currency).unwrap(),
            description: "debit r1".into(),
            correlation_id: "c1".into(),
        }
    }

    #[test]
    fn encodes_the_amount_as_an_exact_json_number() {
        assert_eq!(
            wallet_body(&call(1005, "USD")),
            r#"{"amount":10.05,"currency":"USD","transactionId":"tx-1","description":"debit r1"}"#
        );
        assert!(wallet_body(&call(i64::MAX, "USD")).contains(r#""amount":92233720368547758.07,"#));
        assert!(wallet_body(&call(7, "JPY")).contains(r#""amount":7,"#));
    }

    #[test]
    fn escapes_player_ids_in_the_path() {
        assert_eq!(url_path_segment("player/001 x"), "player%2F001%20x");
        assert_eq!(url_path_segment("player-001"), "player-001");
    }
}
