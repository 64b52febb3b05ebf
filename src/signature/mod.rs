//! HMAC-SHA256 request signatures, lowercase hex.
//!
//! - **v1** (no `X-Signature-Version`, or `1`): over `body ++ timestamp`, as the RGS has always
//!   signed inbound calls and as the hub signs its webhooks. It does not say where the request
//!   was sent, so [`replay`] refuses its second use for another request.
//! - **v2** (`X-Signature-Version: 2`): over the [`canonical_v2`] string, which binds the
//!   method, the path and the Idempotency-Key as well.

pub mod replay;
mod settings;

use std::time::Duration;

use hmac::{Hmac, Mac};
use sha2::Sha256;

pub use settings::SignatureSettings;

type HmacSha256 = Hmac<Sha256>;

fn keyed(secret: &[u8]) -> HmacSha256 {
    HmacSha256::new_from_slice(secret).expect("HMAC accepts keys of any length")
}

fn mac(secret: &[u8], body: &[u8], timestamp: &str) -> HmacSha256 {
    let mut mac = keyed(secret);
    mac.update(body);
    mac.update(timestamp.as_bytes());
    mac
}

/// The v1 `X-Signature` value for `body` sent at `timestamp` (unix seconds, decimal).
pub fn sign(secret: &[u8], body: &[u8], timestamp: &str) -> String {
    hex::encode(mac(secret, body, timestamp).finalize().into_bytes())
}

/// Where a request was sent and under which key: what a v2 signature binds, and what the v1
/// replay guard remembers.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Binding<'a> {
    /// As sent, e.g. `POST`.
    pub method: &'a str,
    /// The path as received, percent-encoding untouched, without the query string.
    pub path: &'a str,
    /// The `Idempotency-Key` header's bytes; empty when it is absent (`/wallet/balance`).
    pub idempotency_key: &'a [u8],
}

impl Binding<'_> {
    /// `METHOD\nPATH\nIdempotency-Key`: the part of the v2 canonical string before the
    /// timestamp. No field can hold a newline (header values and paths cannot), so the
    /// joined string is unambiguous.
    fn feed(&self, sink: &mut impl FnMut(&[u8])) {
        sink(self.method.as_bytes());
        sink(b"\n");
        sink(self.path.as_bytes());
        sink(b"\n");
        sink(self.idempotency_key);
    }
}

/// The v2 canonical string: `METHOD\nPATH\nIdempotency-Key\nX-Timestamp\nbody`, e.g.
/// `POST\n/wallet/debit\nkey-1\n1700000000\n{"playerId":...}`. The body comes last, as
/// the exact bytes sent, and is not followed by a newline.
pub fn canonical_v2(binding: &Binding<'_>, timestamp: &str, body: &[u8]) -> Vec<u8> {
    let mut canonical = Vec::with_capacity(body.len() + 64);
    feed_v2(binding, timestamp, body, &mut |part| {
        canonical.extend_from_slice(part)
    });
    canonical
}

fn feed_v2(binding: &Binding<'_>, timestamp: &str, body: &[u8], sink: &mut impl FnMut(&[u8])) {
    binding.feed(sink);
    sink(b"\n");
    sink(timestamp.as_bytes());
    sink(b"\n");
    sink(body);
}

fn mac_v2(secret: &[u8], binding: &Binding<'_>, timestamp: &str, body: &[u8]) -> HmacSha256 {
    let mut mac = keyed(secret);
    feed_v2(binding, timestamp, body, &mut |part| mac.update(part));
    mac
}

/// The v2 `X-Signature` value: HMAC-SHA256 over [`canonical_v2`], lowercase hex.
pub fn sign_v2(secret: &[u8], binding: &Binding<'_>, timestamp: &str, body: &[u8]) -> String {
    hex::encode(
        mac_v2(secret, binding, timestamp, body)
            .finalize()
            .into_bytes(),
    )
}

/// The scheme a request says it is signed with (`X-Signature-Version`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Version {
    V1,
    V2,
}

impl Version {
    /// Absent or `1`: v1; `2`: v2; anything else is refused.
    pub fn parse(header: Option<&str>) -> Result<Self, SignatureError> {
        match header {
            None | Some("1") => Ok(Version::V1),
            Some("2") => Ok(Version::V2),
            Some(_) => Err(SignatureError::UnsupportedVersion),
        }
    }
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
    #[error("X-Signature-Version must be 1 or 2 (or absent, meaning 1)")]
    UnsupportedVersion,
    #[error("signature version 1 is turned off: sign with version 2 (X-Signature-Version: 2)")]
    V2Required,
    #[error("this signature was already used for another request (another path, method or Idempotency-Key); sign each request anew, preferably with version 2")]
    Replayed,
}

/// The headers and bytes of a request that claim to be signed.
#[derive(Debug, Clone, Copy)]
pub struct SignedRequest<'a> {
    /// `X-Signature-Version`, as received.
    pub version: Option<&'a str>,
    pub binding: Binding<'a>,
    pub body: &'a [u8],
    pub timestamp: Option<&'a str>,
    pub signature: Option<&'a str>,
}

/// A signature that checked out.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Verified {
    pub version: Version,
    /// The signature's bytes (hex decoded, so its spellings are one).
    pub signature: Vec<u8>,
    /// How much longer this hub would accept the same signature.
    pub valid_for: Duration,
}

/// Verifies inbound signatures against every active secret.
#[derive(Clone)]
pub struct Verifier {
    secrets: Vec<Vec<u8>>,
    tolerance: Duration,
    accept_v1: bool,
}

impl Verifier {
    /// Accepts both versions; see [`Verifier::accepting_v1`].
    pub fn new(secrets: Vec<Vec<u8>>, tolerance: Duration) -> Self {
        Self {
            secrets,
            tolerance,
            accept_v1: true,
        }
    }

    /// Whether v1 signatures are accepted (`SIGNATURE_V1`).
    pub fn accepting_v1(mut self, accept: bool) -> Self {
        self.accept_v1 = accept;
        self
    }

    /// Checks a request's signature in the version it names, then the clock: a request that
    /// was never signed by us learns nothing about our time window.
    pub fn verify_request(
        &self,
        request: &SignedRequest<'_>,
        now_unix: i64,
    ) -> Result<Verified, SignatureError> {
        let version = Version::parse(request.version)?;
        let (signature, valid_for) = match version {
            Version::V1 if !self.accept_v1 => return Err(SignatureError::V2Required),
            Version::V1 => self.check(
                request.timestamp,
                request.signature,
                now_unix,
                |secret, ts| mac(secret, request.body, ts),
            )?,
            Version::V2 => self.check(
                request.timestamp,
                request.signature,
                now_unix,
                |secret, ts| mac_v2(secret, &request.binding, ts, request.body),
            )?,
        };
        Ok(Verified {
            version,
            signature,
            valid_for,
        })
    }

    /// The signature's bytes and how long it stays acceptable, once it matches under one
    /// secret and its timestamp is in the window.
    fn check(
        &self,
        timestamp: Option<&str>,
        signature: Option<&str>,
        now_unix: i64,
        mac: impl Fn(&[u8], &str) -> HmacSha256,
    ) -> Result<(Vec<u8>, Duration), SignatureError> {
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
            .any(|secret| mac(secret, timestamp).verify_slice(&provided).is_ok());
        if !matches {
            return Err(SignatureError::Mismatch);
        }
        let sent_at: i64 = timestamp
            .parse()
            .map_err(|_| SignatureError::MalformedTimestamp)?;
        let tolerance = self.tolerance.as_secs();
        if now_unix.abs_diff(sent_at) > tolerance {
            return Err(SignatureError::Stale);
        }
        // Accepted until sent_at + tolerance; both are at most 12 digits, no overflow.
        let last = sent_at.saturating_add_unsigned(tolerance);
        let valid_for =
            Duration::from_secs(u64::try_from(last.saturating_sub(now_unix)).unwrap_or(0));
        Ok((provided, valid_for))
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

    /// Verifies a v1 request (no `X-Signature-Version`) to `/wallet/debit`.
    fn verify_v1(
        verifier: &Verifier,
        body: &[u8],
        timestamp: Option<&str>,
        signature: Option<&str>,
        now_unix: i64,
    ) -> Result<(), SignatureError> {
        let request = SignedRequest {
            version: None,
            binding: Binding {
                method: "POST",
                path: "/wallet/debit",
                idempotency_key: b"key-1",
            },
            body,
            timestamp,
            signature,
        };
        verifier.verify_request(&request, now_unix).map(|_| ())
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
                verify_v1(&verifier(), body, Some("1000"), Some(&signature), 1000),
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
            verify_v1(&v, br#"{"a":2}"#, Some("1000"), Some(&signature), 1000),
            Err(SignatureError::Mismatch)
        );
        assert_eq!(
            verify_v1(&v, body, Some("1001"), Some(&signature), 1000),
            Err(SignatureError::Mismatch)
        );
        assert_eq!(
            verify_v1(&v, body, Some("1000"), Some("zz"), 1000),
            Err(SignatureError::Mismatch)
        );
        assert_eq!(
            verify_v1(&v, body, Some("1000"), Some(&signature), 1301),
            Err(SignatureError::Stale)
        );
        assert_eq!(
            verify_v1(&v, body, Some("1000"), Some(&signature), 699),
            Err(SignatureError::Stale)
        );
        assert_eq!(
            verify_v1(&v, body, Some("1000"), Some(&signature), 1300),
            Ok(())
        );
        assert_eq!(
            verify_v1(&v, body, None, Some(&signature), 1000),
            Err(SignatureError::Missing)
        );
        assert_eq!(
            verify_v1(&v, body, Some("1000"), None, 1000),
            Err(SignatureError::Missing)
        );
        assert_eq!(
            verify_v1(&v, body, Some("-5"), Some(&signature), 1000),
            Err(SignatureError::MalformedTimestamp)
        );
        let foreign = sign(b"someone-else-entirely-0123456789ab", body, "1000");
        assert_eq!(
            verify_v1(&v, body, Some("1000"), Some(&foreign), 1000),
            Err(SignatureError::Mismatch)
        );
    }

    const DEBIT: Binding<'static> = Binding {
        method: "POST",
        path: "/wallet/debit",
        idempotency_key: b"key-1",
    };

    fn v2_request<'a>(binding: Binding<'a>, signature: &'a str) -> SignedRequest<'a> {
        SignedRequest {
            version: Some("2"),
            binding,
            body: br#"{"a":1}"#,
            timestamp: Some("1000"),
            signature: Some(signature),
        }
    }

    #[test]
    fn the_v2_canonical_string_joins_method_path_key_timestamp_and_body_with_newlines() {
        assert_eq!(
            canonical_v2(&DEBIT, "1700000000", br#"{"a":1}"#),
            b"POST\n/wallet/debit\nkey-1\n1700000000\n{\"a\":1}"
        );
        let balance = Binding {
            path: "/wallet/balance",
            idempotency_key: b"",
            ..DEBIT
        };
        assert_eq!(
            canonical_v2(&balance, "1700000000", b""),
            b"POST\n/wallet/balance\n\n1700000000\n",
            "an absent Idempotency-Key is the empty string, an empty body adds nothing"
        );
    }

    #[test]
    fn v2_signatures_match_an_independent_hmac_of_the_canonical_string() {
        // python3: hmac.new(b"key", b'POST\n/wallet/debit\nkey-1\n1700000000\n{"a":1}', sha256)
        assert_eq!(
            sign_v2(b"key", &DEBIT, "1700000000", br#"{"a":1}"#),
            "f96e17501903e985ee9e303b82334eb301a6258ec984d0a21eb37089603a554d"
        );
        let balance = Binding {
            path: "/wallet/balance",
            idempotency_key: b"",
            ..DEBIT
        };
        assert_eq!(
            sign_v2(b"key", &balance, "1700000000", br#"{"a":1}"#),
            "46795416f45b34d116d8450866e0e2302a51bf90e512a1f075c773ace6b003b1"
        );
    }

    #[test]
    fn a_v2_signature_verifies_only_for_the_method_path_and_key_it_was_made_for() {
        let v = verifier();
        let signature = sign_v2(NEW, &DEBIT, "1000", br#"{"a":1}"#);
        let verified = v
            .verify_request(&v2_request(DEBIT, &signature), 1000)
            .unwrap();
        assert_eq!(verified.version, Version::V2);
        assert_eq!(verified.valid_for, Duration::from_secs(300));
        let elsewhere = [
            Binding {
                path: "/wallet/credit",
                ..DEBIT
            },
            Binding {
                method: "PUT",
                ..DEBIT
            },
            Binding {
                idempotency_key: b"key-2",
                ..DEBIT
            },
            Binding {
                idempotency_key: b"",
                ..DEBIT
            },
        ];
        for binding in elsewhere {
            assert_eq!(
                v.verify_request(&v2_request(binding, &signature), 1000),
                Err(SignatureError::Mismatch),
                "{binding:?}"
            );
        }
        let as_v1 = SignedRequest {
            version: None,
            ..v2_request(DEBIT, &signature)
        };
        assert_eq!(
            v.verify_request(&as_v1, 1000),
            Err(SignatureError::Mismatch),
            "a v2 signature is no v1 signature"
        );
    }

    #[test]
    fn versions_other_than_1_and_2_are_refused_and_v1_can_be_turned_off() {
        let v1 = sign(NEW, br#"{"a":1}"#, "1000");
        let request = |version| SignedRequest {
            version,
            ..v2_request(DEBIT, &v1)
        };
        for version in [None, Some("1")] {
            let verified = verifier().verify_request(&request(version), 1100).unwrap();
            assert_eq!(verified.version, Version::V1);
            assert_eq!(verified.valid_for, Duration::from_secs(200));
            assert_eq!(verified.signature, hex::decode(&v1).unwrap());
        }
        for version in ["3", "", "v2", " 2", "02"] {
            assert_eq!(
                verifier().verify_request(&request(Some(version)), 1000),
                Err(SignatureError::UnsupportedVersion),
                "{version:?}"
            );
        }
        let v2_only = verifier().accepting_v1(false);
        for version in [None, Some("1")] {
            assert_eq!(
                v2_only.verify_request(&request(version), 1000),
                Err(SignatureError::V2Required)
            );
        }
        let v2 = sign_v2(NEW, &DEBIT, "1000", br#"{"a":1}"#);
        assert!(v2_only
            .verify_request(&v2_request(DEBIT, &v2), 1000)
            .is_ok());
    }
}
