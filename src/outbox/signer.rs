//! Webhook signatures: the hub's own scheme (`X-Signature` over body ++ timestamp, as for
//! inbound calls) and Standard Webhooks (`webhook-signature: v1,<base64>` over
//! `id.timestamp.body`), so that receivers can verify with off-the-shelf libraries.

use base64::Engine;
use hmac::{Hmac, Mac};
use sha2::Sha256;

use crate::signature;

#[derive(Clone)]
pub struct WebhookSigner {
    key: Vec<u8>,
}

impl WebhookSigner {
    pub fn new(key: Vec<u8>) -> Self {
        Self { key }
    }

    /// The signature headers for `body` of event `event_id`, sent at `timestamp` (unix seconds).
    pub fn headers(
        &self,
        event_id: &str,
        body: &[u8],
        timestamp: i64,
    ) -> [(&'static str, String); 5] {
        let timestamp = timestamp.to_string();
        let mut standard = Hmac::<Sha256>::new_from_slice(&self.key).expect("any key length");
        for part in [event_id.as_bytes(), b".", timestamp.as_bytes(), b".", body] {
            standard.update(part);
        }
        let standard =
            base64::engine::general_purpose::STANDARD.encode(standard.finalize().into_bytes());
        [
            ("X-Signature", signature::sign(&self.key, body, &timestamp)),
            ("X-Timestamp", timestamp.clone()),
            ("webhook-id", event_id.to_owned()),
            ("webhook-timestamp", timestamp),
            ("webhook-signature", format!("v1,{standard}")),
        ]
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn matches_the_standard_webhooks_reference_vector() {
        // From the Standard Webhooks specification's test vectors.
        use base64::Engine;
        let key = base64::engine::general_purpose::STANDARD
            .decode("MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw")
            .unwrap();
        let body = br#"{"test": 2432232314}"#;
        let headers =
            WebhookSigner::new(key).headers("msg_p5jXN8AQM9LWM0D4loKWxJek", body, 1614265330);
        assert_eq!(
            headers[4].1,
            "v1,g0hM9SsE+OTPJTGt/tmIKtSyZlE3uFJELVlNIOLJ1OE="
        );
    }

    #[test]
    fn signs_the_legacy_scheme_like_inbound_calls() {
        let headers = WebhookSigner::new(b"k".to_vec()).headers("id", b"{}", 7);
        assert_eq!(headers[0].1, signature::sign(b"k", b"{}", "7"));
        assert_eq!(headers[1].1, "7");
    }
}
