//! `GET /openapi.json` (the contract, kept in docs/openapi.json) and `GET /` (where to start).
//! With `METRICS_ADDR` set, each listener describes only the routes it serves, so the public
//! port does not advertise `/metrics` or the admin API.

use std::sync::OnceLock;

use actix_web::{web, HttpResponse};
use serde_json::{json, Value};

use super::{route_table, Listener};

pub const DOCUMENT: &str = include_str!("../../docs/openapi.json");

pub async fn document(listener: web::Data<Listener>) -> HttpResponse {
    HttpResponse::Ok()
        .content_type("application/json")
        .body(document_for(**listener))
}

/// The document as `listener` serves it: whole on the only listener, otherwise without the
/// operations another listener serves.
pub fn document_for(listener: Listener) -> &'static str {
    static PUBLIC: OnceLock<String> = OnceLock::new();
    static METRICS: OnceLock<String> = OnceLock::new();
    match listener {
        Listener::Only => DOCUMENT,
        Listener::Public => PUBLIC.get_or_init(|| only_served(Listener::Public)),
        Listener::Metrics => METRICS.get_or_init(|| only_served(Listener::Metrics)),
    }
}

fn only_served(listener: Listener) -> String {
    let served = route_table(listener, true);
    let mut document: Value = serde_json::from_str(DOCUMENT).expect("docs/openapi.json is JSON");
    if let Some(paths) = document["paths"].as_object_mut() {
        for (path, operations) in paths.iter_mut() {
            if let Some(operations) = operations.as_object_mut() {
                operations.retain(|method, _| {
                    served
                        .iter()
                        .any(|(m, p)| p == path && m.as_str().eq_ignore_ascii_case(method))
                });
            }
        }
        paths.retain(|_, operations| operations.as_object().is_some_and(|o| !o.is_empty()));
    }
    document.to_string()
}

pub async fn index(listener: web::Data<Listener>) -> HttpResponse {
    let mut links = json!({
        "service": "hub",
        "version": env!("CARGO_PKG_VERSION"),
        "openapi": "/openapi.json",
        "health": "/health",
        "ready": "/ready",
    });
    if **listener != Listener::Public {
        links["metrics"] = json!("/metrics");
    }
    HttpResponse::Ok().json(links)
}
