//! `GET /health` (the process answers) and `GET /ready` (its database answers and none of
//! its background loops keeps failing).

use actix_web::{web, HttpResponse};
use serde_json::json;

use super::AppState;

pub async fn health() -> HttpResponse {
    HttpResponse::Ok().json(json!({"status": "ok"}))
}

pub async fn ready(state: web::Data<AppState>) -> HttpResponse {
    if !state.store.is_reachable().await {
        return HttpResponse::ServiceUnavailable()
            .json(json!({"code": "NOT_READY", "message": "the database is unreachable"}));
    }
    let failing = state.supervisor.failing();
    if failing.is_empty() {
        return HttpResponse::Ok().json(json!({"status": "ready"}));
    }
    let names: Vec<&str> = failing.iter().map(|l| l.name).collect();
    let loops: Vec<_> = failing
        .iter()
        .map(|l| json!({"loop": l.name, "failuresInARow": l.failures_in_a_row}))
        .collect();
    HttpResponse::ServiceUnavailable().json(json!({
        "code": "NOT_READY",
        "message": format!("background work keeps failing: {}", names.join(", ")),
        "failingLoops": loops,
    }))
}
