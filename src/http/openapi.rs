//! `GET /openapi.json` (the contract, kept in docs/openapi.json) and `GET /` (where to start).

use actix_web::HttpResponse;
use serde_json::json;

pub const DOCUMENT: &str = include_str!("../../docs/openapi.json");

pub async fn document() -> HttpResponse {
    HttpResponse::Ok()
        .content_type("application/json")
        .body(DOCUMENT)
}

pub async fn index() -> HttpResponse {
    HttpResponse::Ok().json(json!({
        "service": "hub",
        "version": env!("CARGO_PKG_VERSION"),
        "openapi": "/openapi.json",
        "health": "/health",
        "ready": "/ready",
        "metrics": "/metrics",
    }))
}
