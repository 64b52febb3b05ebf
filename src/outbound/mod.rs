//! Everything the hub sends to the outside (the operator, the RGS) leaves through a client
//! built here (Redis through [`redis::RedisLink`]), and everything that comes back is bounded here before the rest of the code
//! sees it: redirects are never followed, bodies are read up to a limit, and `Retry-After`
//! is clamped.

pub mod redis;
pub mod retry_after;
pub mod tls;

use std::time::Duration;

use reqwest::header::HeaderMap;
use tokio_util::bytes::{Bytes, BytesMut};

/// A client builder for outside calls. A redirect is an answer like any other (and never a
/// delivery or a decision): following one would re-send a signed payload to whatever host it
/// names, or mistake a GET elsewhere for the answer to our POST. `tls` names the CA the peer
/// is trusted by and the certificate presented to it.
pub fn client_builder(tls: &tls::PeerTls) -> reqwest::ClientBuilder {
    tls.apply(reqwest::Client::builder())
        .redirect(reqwest::redirect::Policy::none())
        .pool_idle_timeout(Duration::from_secs(90))
        .tcp_nodelay(true)
}

/// The body was longer than the caller is willing to read.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("the answer's body is longer than {limit} bytes")]
pub struct TooLarge {
    pub limit: usize,
}

#[derive(Debug, thiserror::Error)]
pub enum BodyError {
    #[error(transparent)]
    TooLarge(#[from] TooLarge),
    #[error(transparent)]
    Transport(#[from] reqwest::Error),
}

/// Reads at most `limit` bytes of body; a longer one is refused without being buffered.
pub async fn read_body(mut response: reqwest::Response, limit: usize) -> Result<Bytes, BodyError> {
    if response
        .content_length()
        .is_some_and(|length| length > limit as u64)
    {
        return Err(TooLarge { limit }.into());
    }
    let mut body = BytesMut::new();
    while let Some(chunk) = response.chunk().await? {
        if body.len() + chunk.len() > limit {
            return Err(TooLarge { limit }.into());
        }
        body.extend_from_slice(&chunk);
    }
    Ok(body.freeze())
}

/// The answer's `Retry-After`, clamped to [`retry_after::MAX`]; `None` if absent or unusable.
pub fn retry_after_of(headers: &HeaderMap) -> Option<Duration> {
    headers
        .get(reqwest::header::RETRY_AFTER)
        .and_then(|value| value.to_str().ok())
        .and_then(|value| retry_after::parse(value, std::time::SystemTime::now()))
}
