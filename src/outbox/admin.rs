//! Inspection and replay of the outbox, shared by the admin API and `hub outbox`.

use chrono::{DateTime, NaiveDateTime, Utc};
use serde::Serialize;
use serde_json::value::RawValue;

use crate::store::outbox::{self, AttemptRow, OutboxRow, Window};
use crate::store::{Store, StoreError};

#[derive(Debug, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct EventSummary {
    pub event_id: String,
    pub transaction_id: String,
    pub event_type: String,
    pub status: String,
    pub attempts: i32,
    pub next_attempt_at: DateTime<Utc>,
    pub last_error: Option<String>,
    pub correlation_id: Option<String>,
    pub created_at: DateTime<Utc>,
    pub delivered_at: Option<DateTime<Utc>>,
}

#[derive(Debug, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct AttemptView {
    pub attempt: i32,
    pub attempted_at: DateTime<Utc>,
    pub status_code: Option<i32>,
    pub error: Option<String>,
    pub duration_ms: i64,
    pub worker: String,
}

#[derive(Debug, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct EventDetail {
    #[serde(flatten)]
    pub summary: EventSummary,
    /// The exact body the RGS receives.
    pub payload: Box<RawValue>,
    pub delivery_attempts: Vec<AttemptView>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum Replayed {
    Queued,
    AlreadyPending,
    NotFound,
}

impl From<OutboxRow> for EventSummary {
    fn from(row: OutboxRow) -> Self {
        Self {
            event_id: row.id,
            transaction_id: row.transaction_id,
            event_type: row.event_type,
            status: row.status,
            attempts: row.attempts,
            next_attempt_at: row.next_attempt_at.and_utc(),
            last_error: row.last_error,
            correlation_id: row.correlation_id,
            created_at: row.created_at.and_utc(),
            delivered_at: row.delivered_at.map(|t| t.and_utc()),
        }
    }
}

impl From<AttemptRow> for AttemptView {
    fn from(row: AttemptRow) -> Self {
        Self {
            attempt: row.attempt,
            attempted_at: row.attempted_at.and_utc(),
            status_code: row.status_code,
            error: row.error,
            duration_ms: row.duration_ms,
            worker: row.worker,
        }
    }
}

pub const MAX_LIST: i64 = 1000;

pub async fn list(
    store: &Store,
    window: Window,
    limit: i64,
) -> Result<Vec<EventSummary>, StoreError> {
    let limit = limit.clamp(1, MAX_LIST);
    let rows = store
        .run(move |conn| outbox::list(conn, &window, limit).map_err(StoreError::from))
        .await?;
    Ok(rows.into_iter().map(EventSummary::from).collect())
}

pub async fn show(store: &Store, event_id: &str) -> Result<Option<EventDetail>, StoreError> {
    let id = event_id.to_owned();
    store
        .run(move |conn| {
            let Some(row) = outbox::find(conn, &id)? else {
                return Ok(None);
            };
            let attempts = outbox::attempts_of(conn, &id)?;
            // The payload was written by this hub as JSON; if it were not, show it as a string.
            let payload = RawValue::from_string(row.payload.clone())
                .or_else(|_| {
                    RawValue::from_string(
                        serde_json::Value::String(row.payload.clone()).to_string(),
                    )
                })
                .map_err(|e| {
                    StoreError::Query(diesel::result::Error::DeserializationError(Box::new(e)))
                })?;
            Ok(Some(EventDetail {
                summary: row.into(),
                payload,
                delivery_attempts: attempts.into_iter().map(AttemptView::from).collect(),
            }))
        })
        .await
}

/// Queues one event again with its original event id, whether delivered or dead-lettered.
pub async fn replay(store: &Store, event_id: &str) -> Result<Replayed, StoreError> {
    let id = event_id.to_owned();
    store
        .run(move |conn| {
            let Some(row) = outbox::find(conn, &id)? else {
                return Ok(Replayed::NotFound);
            };
            if row.status == outbox::PENDING {
                return Ok(Replayed::AlreadyPending);
            }
            outbox::requeue(
                conn,
                &[id],
                &[outbox::DELIVERED, outbox::DEAD_LETTER],
                now(),
            )?;
            Ok(Replayed::Queued)
        })
        .await
}

/// Queues every dead letter created in the window again; returns how many.
pub async fn replay_dead_letters(
    store: &Store,
    from: Option<NaiveDateTime>,
    to: Option<NaiveDateTime>,
) -> Result<usize, StoreError> {
    let window = Window {
        status: Some(outbox::DEAD_LETTER.to_owned()),
        from,
        to,
    };
    store
        .run(move |conn| {
            let mut total = 0;
            loop {
                let ids: Vec<String> = outbox::list(conn, &window, MAX_LIST)?
                    .into_iter()
                    .map(|row| row.id)
                    .collect();
                if ids.is_empty() {
                    return Ok(total);
                }
                total += outbox::requeue(conn, &ids, &[outbox::DEAD_LETTER], now())?;
            }
        })
        .await
}

fn now() -> NaiveDateTime {
    Utc::now().naive_utc()
}
