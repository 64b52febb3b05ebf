//! Postgres `LISTEN` so that an event committed by any replica wakes every drainer at once.
//! The drainer's poll interval remains the fallback while the supervisor reconnects it.

use std::future::poll_fn;
use std::sync::Arc;
use std::time::Duration;

use tokio::sync::Notify;
use tokio_postgres::AsyncMessage;
use tokio_util::sync::CancellationToken;

use crate::store::outbox::CHANNEL;
use crate::store::postgres_tls::ListenTarget;
use crate::supervisor::LoopHealth;

/// A black-holed database host must not hold the listener (or a shutdown) for minutes.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(10);

#[derive(Debug, thiserror::Error)]
pub enum ListenError {
    #[error("no connection to Postgres within {} s", CONNECT_TIMEOUT.as_secs())]
    ConnectTimeout,
    #[error(transparent)]
    Postgres(#[from] tokio_postgres::Error),
}

/// Listens until cancelled (`Ok`) or the connection fails (`Err`, for the supervisor to
/// connect again after its backoff).
pub async fn listen_until_cancelled(
    target: ListenTarget,
    wake: Arc<Notify>,
    cancel: CancellationToken,
    health: LoopHealth,
) -> Result<(), ListenError> {
    let connecting = tokio::time::timeout(CONNECT_TIMEOUT, target.config.connect(target.tls));
    let (client, mut connection) = tokio::select! {
        _ = cancel.cancelled() => return Ok(()),
        connected = connecting => match connected {
            Ok(connected) => connected?,
            Err(_) => return Err(ListenError::ConnectTimeout),
        },
    };
    // The connection future carries the notifications; it must be polled while LISTEN runs.
    let messages = async {
        loop {
            match poll_fn(|cx| connection.poll_message(cx)).await {
                Some(Ok(AsyncMessage::Notification(_))) => wake.notify_one(),
                Some(Ok(_)) => {}
                Some(Err(error)) => return Err(error.into()),
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
    health.round_succeeded();
    // Whatever was committed while we were not listening is due now.
    wake.notify_one();
    tokio::select! {
        _ = cancel.cancelled() => Ok(()),
        ended = &mut messages => ended,
    }
}
