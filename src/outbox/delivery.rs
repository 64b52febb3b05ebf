//! One HTTP attempt to hand an event to the RGS.

use std::time::{Duration, Instant};

use reqwest::StatusCode;

use super::signer::WebhookSigner;
use crate::outbound;
use crate::store::outbox::OutboxRow;

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Attempted {
    pub status_code: Option<u16>,
    /// `None` when the RGS accepted the event (2xx).
    pub error: Option<String>,
    pub retry_after: Option<Duration>,
    /// 410 Gone: the receiver will never take this event.
    pub gone: bool,
    pub took: Duration,
}

pub async fn attempt(
    http: &reqwest::Client,
    url: &str,
    signer: &WebhookSigner,
    event: &OutboxRow,
    timeout: Duration,
) -> Attempted {
    let started = Instant::now();
    let mut request = http
        .post(url)
        .timeout(timeout)
        .header("Content-Type", "application/json")
        .header("X-Event-Id", &event.id)
        .header("X-Event-Type", &event.event_type);
    if let Some(correlation_id) = &event.correlation_id {
        request = request.header("X-Correlation-ID", correlation_id);
    }
    for (name, value) in signer.headers(
        &event.id,
        event.payload.as_bytes(),
        chrono::Utc::now().timestamp(),
    ) {
        request = request.header(name, value);
    }
    let sent = request.body(event.payload.clone()).send().await;
    let took = started.elapsed();
    let response = match sent {
        Ok(response) => response,
        Err(error) => {
            let error = if error.is_timeout() {
                format!("no answer within {} ms", timeout.as_millis())
            } else if error.is_connect() {
                "could not connect to the RGS".to_owned()
            } else {
                "the connection to the RGS failed".to_owned()
            };
            return Attempted {
                status_code: None,
                error: Some(error),
                retry_after: None,
                gone: false,
                took,
            };
        }
    };
    let status = response.status();
    let retry_after = match status {
        StatusCode::TOO_MANY_REQUESTS | StatusCode::SERVICE_UNAVAILABLE => {
            outbound::retry_after_of(response.headers())
        }
        _ => None,
    };
    Attempted {
        status_code: Some(status.as_u16()),
        // Only a 2xx to the POST itself is a delivery: a redirect is not followed, and fails.
        error: (!status.is_success()).then(|| format!("the RGS answered {status}")),
        retry_after,
        gone: status == StatusCode::GONE,
        took,
    }
}
