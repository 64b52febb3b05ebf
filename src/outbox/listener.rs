//! Postgres `LISTEN` so that an event committed by any replica wakes every drainer at once.
//! The drainer's poll interval remains the fallback while the listener reconnects.

use std::future::poll_fn;
use std::sync::Arc;
use std::time::Duration;

use tokio::sync::Notify;
use tokio_postgres::{AsyncMessage, NoTls};
use tokio_util::sync::CancellationToken;

use crate::store::outbox::CHANNEL;

pub async fn listen_until_cancelled(url: String, wake: Arc<Notify>, cancel: CancellationToken) {
    let mut reported_down = false;
    while !cancel.is_cancelled() {
        match listen(&url, &wake, &cancel).await {
            Ok(()) => return,
            Err(error) if !reported_down => {
                tracing::warn!(%error, "outbox listener lost Postgres; polling until it is back");
                reported_down = true;
            }
            Err(_) => {}
        }
        tokio::select! {
            _ = cancel.cancelled() => return,
            _ = tokio::time::sleep(Duration::from_secs(1)) => {}
        }
    }
}

/// Listens until cancelled (`Ok`) or the connection fails (`Err`).
async fn listen(
    url: &str,
    wake: &Notify,
    cancel: &CancellationToken,
) -> Result<(), tokio_postgres::Error> {
    let (client, mut connection) = tokio_postgres::connect(url, NoTls).await?;
    // The connection future carries the notifications; it must be polled while LISTEN runs.
    let messages = async {
        loop {
            match poll_fn(|cx| connection.poll_message(cx)).await {
                Some(Ok(AsyncMessage::Notification(_))) => wake.notify_one(),
                Some(Ok(_)) => {}
                Some(Err(error)) => return Err(error),
                None => return Ok(()),
            }
        }
    };
    tokio::pin!(messages);
    let statement = format!("LISTEN {CHANNEL}");
    tokio::select! {
        listened = client.batch_execute(&statement) => listened?,
        ended = &mut messages => return ended,
    }
    tracing::info!(channel = CHANNEL, "outbox listener connected");
    // Whatever was committed while we were not listening is due now.
    wake.notify_one();
    tokio::select! {
        _ = cancel.cancelled() => Ok(()),
        ended = &mut messages => ended,
    }
}
