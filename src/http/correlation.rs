//! Correlation ids: taken from `X-Correlation-ID` (or `X-Request-ID`) or made here, put on
//! every log line of the request, passed on to the operator, echoed on the response.

use std::time::Instant;

use actix_web::body::MessageBody;
use actix_web::dev::{ServiceRequest, ServiceResponse};
use actix_web::http::header::{HeaderName, HeaderValue};
use actix_web::middleware::Next;
use actix_web::{Error, HttpMessage, HttpRequest};
use tracing::Instrument;
use uuid::Uuid;

pub const HEADER: &str = "x-correlation-id";
const ALTERNATIVE_HEADER: &str = "x-request-id";

#[derive(Debug, Clone)]
pub struct CorrelationId(pub String);

/// An incoming id is kept only if it is short printable ASCII, so that it is safe in logs.
fn incoming(request: &ServiceRequest) -> Option<String> {
    [HEADER, ALTERNATIVE_HEADER].iter().find_map(|name| {
        let value = request.headers().get(*name)?.to_str().ok()?.trim();
        let usable =
            !value.is_empty() && value.len() <= 128 && value.bytes().all(|b| b.is_ascii_graphic());
        usable.then(|| value.to_owned())
    })
}

pub async fn middleware(
    request: ServiceRequest,
    next: Next<impl MessageBody>,
) -> Result<ServiceResponse<impl MessageBody>, Error> {
    let id = incoming(&request).unwrap_or_else(|| Uuid::new_v4().to_string());
    request.extensions_mut().insert(CorrelationId(id.clone()));
    let span = tracing::info_span!(
        "request",
        correlation_id = %id,
        method = %request.method(),
        path = %request.path(),
    );
    let started = Instant::now();
    let mut response = next.call(request).instrument(span.clone()).await?;
    if let Ok(value) = HeaderValue::from_str(&id) {
        response
            .headers_mut()
            .insert(HeaderName::from_static(HEADER), value);
    }
    let took = started.elapsed();
    record(&response, took);
    span.in_scope(|| {
        tracing::info!(
            status = response.status().as_u16(),
            latency_ms = took.as_secs_f64() * 1000.0,
            "request finished"
        )
    });
    Ok(response)
}

pub fn of(request: &HttpRequest) -> String {
    request
        .extensions()
        .get::<CorrelationId>()
        .map(|id| id.0.clone())
        .unwrap_or_else(|| Uuid::new_v4().to_string())
}

/// The `method` label: the standard methods by name, anything a client invents as `OTHER`
/// (each new label value would be a new series kept forever).
fn method_label(method: &actix_web::http::Method) -> &'static str {
    use actix_web::http::Method;
    [
        Method::GET,
        Method::POST,
        Method::PUT,
        Method::DELETE,
        Method::PATCH,
        Method::HEAD,
        Method::OPTIONS,
    ]
    .into_iter()
    .zip(["GET", "POST", "PUT", "DELETE", "PATCH", "HEAD", "OPTIONS"])
    .find_map(|(known, label)| (known == method).then_some(label))
    .unwrap_or("OTHER")
}

/// Counts the request under its route pattern (never the raw path, which would let clients
/// create unbounded label values).
fn record<B>(response: &ServiceResponse<B>, took: std::time::Duration) {
    let request = response.request();
    let Some(state) = request.app_data::<actix_web::web::Data<super::AppState>>() else {
        return;
    };
    let route = request
        .match_pattern()
        .unwrap_or_else(|| "unmatched".to_owned());
    let method = method_label(request.method());
    let status = response.status().as_u16().to_string();
    state
        .metrics
        .http_requests
        .with_label_values(&[route.as_str(), method, status.as_str()])
        .inc();
    state
        .metrics
        .http_duration
        .with_label_values(&[route.as_str(), method])
        .observe(took.as_secs_f64());
}
