//! `GET /metrics`: Prometheus text. State gauges are read now; counters accumulate.

use actix_web::{web, HttpRequest, HttpResponse};
use chrono::Utc;

use super::{bearer, ApiError, AppState};
use crate::store::{outbox, StoreError};

pub async fn render(
    request: HttpRequest,
    state: web::Data<AppState>,
) -> Result<HttpResponse, ApiError> {
    if let Some(token) = &state.metrics_token {
        bearer::require(&request, token)?;
    }
    let metrics = &state.metrics;
    metrics.circuit_state.set(state.breaker.state().gauge());
    let (in_use, idle) = state.store.connections();
    metrics
        .db_connections
        .with_label_values(&["in_use"])
        .set(i64::from(in_use));
    metrics
        .db_connections
        .with_label_values(&["idle"])
        .set(i64::from(idle));
    let now = Utc::now().naive_utc();
    match state
        .store
        .run(move |conn| outbox::stats(conn, now).map_err(StoreError::from))
        .await
    {
        Ok(stats) => {
            for (status, count) in [
                (outbox::PENDING, stats.pending),
                (outbox::DEAD_LETTER, stats.dead_letters),
            ] {
                metrics.outbox_rows.with_label_values(&[status]).set(count);
            }
            let age = stats
                .oldest_due
                .map_or(0.0, |due| (now - due).as_seconds_f64().max(0.0));
            metrics.outbox_oldest_due_age.set(age);
        }
        // The rest of the metrics are still worth having while the database is away.
        Err(error) => tracing::warn!(%error, "outbox metrics unavailable"),
    }
    Ok(HttpResponse::Ok()
        .content_type("text/plain; version=0.0.4; charset=utf-8")
        .body(metrics.render()))
}
