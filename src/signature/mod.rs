//! HMAC-SHA256 request signatures: lowercase hex over `body ++ timestamp`, as the RGS signs
//! inbound calls and the hub signs its webhooks.

use std::time::Duration;

use hmac::{Hmac, Mac};
use sha2::Sha256;

type HmacSha256 = Hmac<Sha256>;

fn mac(secret: &[u8], body: &[u8], timestamp: &str) -> HmacSha256 {
    let mut mac = HmacSha256::new_from_slice(secret).expect("HMAC accepts keys of any length");
    mac.update(body);
    mac.update(timestamp.as_bytes());
    mac
}

/// The `X-Signature` value for `body` sent at `timestamp` (unix seconds, decimal).
pub fn sign(secret: &[u8], body: &[u8], timestamp: &str) -> String {
    hex::encode(mac(secret, body, timestamp).finalize().into_bytes())
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum SignatureError {
    #[error("the X-Signature and X-Timestamp headers are required")]
    Missing,
    #[error("X-Timestamp must be unix seconds")]
    MalformedTimestamp,
    #[error("the signature does not match the request")]
    Mismatch,
    #[error("X-Timestamp is outside the allowed window")]
    Stale,
}

/// Verifies inbound signatures against every active secret.
#[derive(Clone)]
pub struct Verifier {
    secrets: Vec<Vec<u8>>,
    tolerance: Duration,
}

impl Verifier {
    pub fn new(secrets: Vec<Vec<u8>>, tolerance: Duration) -> Self {
        Self { secrets, tolerance }
    }

    /// Checks the signature over the exact bytes received, then the clock: a request that
    /// was never signed by us learns nothing about our time window.
    pub fn verify(
        &self,
        body: &[u8],
        timestamp: Option<&str>,
        signature: Option<&str>,
        now_unix: i64,
    ) -> Result<(), SignatureError> {
        let (Some(timestamp), Some(signature)) = (timestamp, signature) else {
            return Err(SignatureError::Missing);
        };
        if timestamp.is_empty()
            || timestamp.len() > 12
            || !timestamp.bytes().all(|b| b.is_ascii_digit())
        {
            return Err(SignatureError::MalformedTimestamp);
        }
        let provided = hex::decode(signature.trim()).map_err(|_| SignatureError::Mismatch)?;
        let matches = self
            .secrets
            .iter()
            .any(|secret| mac(secret, body, timestamp).verify_slice(&provided).is_ok());
        if !matches {
            return Err(SignatureError::Mismatch);
        }
        let sent_at: i64 = timestamp
            .parse()
            .map_err(|_| SignatureError::MalformedTimestamp)?;
        if now_unix.abs_diff(sent_at) > self.tolerance.as_secs() {
            return Err(SignatureError::Stale);
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const OLD: &[u8] = b"old-secret-old-secret-old-secret-0";
    const NEW: &[u8] = b"new-secret-new-secret-new-secret-1";

    fn verifier() -> Verifier {
        Verifier::new(vec![NEW.to_vec(), OLD.to_vec()], Duration::from_secs(300))
    }

    #[test]
    fn matches_the_documented_scheme() {
        // HMAC-SHA256("key", "The quick brown fox jumps over the lazy dog"), split as body + timestamp.
        assert_eq!(
            sign(b"key", b"The quick brown fox jumps over the lazy ", "dog"),
            "f7bc83f430538424b13298e6aa6fb143ef4d59a14946175997479dbc2d1a3cd8"
        );
    }

    #[test]
    fn accepts_any_active_secret() {
        let body = br#"{"a":1}"#;
        for secret in [OLD, NEW] {
            let signature = sign(secret, body, "1000");
            assert_eq!(
                verifier().verify(body, Some("1000"), Some(&signature), 1000),
                Ok(())
            );
        }
    }

    #[test]
    fn rejects_tampering_staleness_and_missing_parts() {
        let body = br#"{"a":1}"#;
        let signature = sign(NEW, body, "1000");
        let v = verifier();
        assert_eq!(
            v.verify(br#"{"a":2}"#, Some("1000"), Some(&signature), 1000),
            Err(SignatureError::Mismatch)
        );
        assert_eq!(
            v.verify(body, Some("1001"), Some(&signature), 1000),
            Err(SignatureError::Mismatch)
        );
        assert_eq!(
            v.verify(body, Some("1000"), Some("zz"), 1000),
            Err(SignatureError::Mismatch)
        );
        assert_eq!(
            v.verify(body, Some("1000"), Some(&signature), 1301),
            Err(SignatureError::Stale)
        );
        assert_eq!(
            v.verify(body, Some("1000"), Some(&signature), 699),
            Err(SignatureError::Stale)
        );
        assert_eq!(v.verify(body, Some("1000"), Some(&signature), 1300), Ok(()));
        assert_eq!(
            v.verify(body, None, Some(&signature), 1000),
            Err(SignatureError::Missing)
        );
        assert_eq!(
            v.verify(body, Some("1000"), None, 1000),
            Err(SignatureError::Missing)
        );
        assert_eq!(
            v.verify(body, Some("-5"), Some(&signature), 1000),
            Err(SignatureError::MalformedTimestamp)
        );
        let foreign = sign(b"someone-else-entirely-0123456789ab", body, "1000");
        assert_eq!(
            v.verify(body, Some("1000"), Some(&foreign), 1000),
            Err(SignatureError::Mismatch)
        );
    }
}
