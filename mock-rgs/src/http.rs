//! Routes of the mock RGS.

use std::time::Duration;

use actix_web::{web, HttpRequest, HttpResponse};
use serde::Deserialize;
use serde_json::{json, Value};

use crate::state::{now_us, Delivery, Fault, SharedInbox};
use crate::verify;

/// The key both signature schemes are checked with.
pub struct Key(pub Vec<u8>);

pub fn routes(config: &mut web::ServiceConfig) {
    config
        .route("/health", web::get().to(health))
        .route("/webhooks", web::post().to(receive))
        .route("/webhooks", web::get().to(list))
        .route("/webhooks/clear", web::post().to(clear))
        .route("/simulate/error", web::post().to(simulate_error));
}

async fn health() -> HttpResponse {
    HttpResponse::Ok().json(json!({"status": "ok"}))
}

fn header<'a>(request: &'a HttpRequest, name: &str) -> Option<&'a str> {
    request.headers().get(name).and_then(|v| v.to_str().ok())
}

async fn receive(
    request: HttpRequest,
    body: web::Bytes,
    inbox: web::Data<SharedInbox>,
    key: web::Data<Key>,
) -> HttpResponse {
    let signature_valid = verify::legacy(
        &key.0,
        &body,
        header(&request, "X-Timestamp"),
        header(&request, "X-Signature"),
    );
    let standard_signature_valid = verify::standard(
        &key.0,
        &body,
        header(&request, "webhook-id"),
        header(&request, "webhook-timestamp"),
        header(&request, "webhook-signature"),
    );
    let fault = {
        let mut inbox = inbox.lock();
        if signature_valid && standard_signature_valid {
            inbox.next_fault()
        } else {
            None
        }
    };
    if let Some(delay) = fault.map(|f| f.delay).filter(|d| !d.is_zero()) {
        tokio::time::sleep(delay).await;
    }
    let status = match fault {
        _ if !(signature_valid && standard_signature_valid) => 401,
        Some(fault) => fault.status,
        None => 200,
    };
    // Taken once, so both fields name the same instant.
    let received_at_us = now_us();
    inbox.lock().deliveries.push(Delivery {
        received_at_ms: received_at_us / 1000,
        received_at_us,
        event_id: header(&request, "X-Event-Id").map(str::to_owned),
        event_type: header(&request, "X-Event-Type").map(str::to_owned),
        correlation_id: header(&request, "X-Correlation-ID").map(str::to_owned),
        signature_valid,
        standard_signature_valid,
        status,
        body: serde_json::from_slice(&body).unwrap_or(Value::Null),
    });
    let mut response =
        HttpResponse::build(actix_web::http::StatusCode::from_u16(status).unwrap_or_default());
    if let Some(seconds) = fault.and_then(|f| f.retry_after_seconds) {
        response.insert_header(("Retry-After", seconds.to_string()));
    }
    response.json(json!({"received": status == 200}))
}

#[derive(Deserialize)]
struct ListQuery {
    limit: Option<usize>,
}

/// The latest `limit` deliveries (default 100), oldest first, with totals.
async fn list(query: web::Query<ListQuery>, inbox: web::Data<SharedInbox>) -> HttpResponse {
    let inbox = inbox.lock();
    let limit = query.limit.unwrap_or(100);
    let skip = inbox.deliveries.len().saturating_sub(limit);
    HttpResponse::Ok().json(json!({
        "total": inbox.deliveries.len(),
        "accepted": inbox.accepted().count(),
        "duplicates": inbox.duplicates(),
        "webhooks": &inbox.deliveries[skip..],
    }))
}

async fn clear(inbox: web::Data<SharedInbox>) -> HttpResponse {
    inbox.lock().deliveries.clear();
    HttpResponse::Ok().json(json!({"cleared": true}))
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct SimulateError {
    #[serde(default = "one")]
    count: u32,
    #[serde(default = "server_error")]
    status: u16,
    #[serde(default)]
    delay_ms: u64,
    retry_after_seconds: Option<u64>,
}

fn one() -> u32 {
    1
}

fn server_error() -> u16 {
    500
}

async fn simulate_error(
    request: web::Json<SimulateError>,
    inbox: web::Data<SharedInbox>,
) -> HttpResponse {
    if !(200..600).contains(&request.status) {
        return HttpResponse::BadRequest()
            .json(json!({"message": "status must be an HTTP status code"}));
    }
    let fault = Fault {
        status: request.status,
        delay: Duration::from_millis(request.delay_ms),
        retry_after_seconds: request.retry_after_seconds,
    };
    inbox.lock().inject(fault, request.count);
    HttpResponse::Ok().json(
        json!({"count": request.count, "status": request.status, "delayMs": request.delay_ms}),
    )
}
