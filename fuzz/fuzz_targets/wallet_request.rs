//! Whatever bytes arrive, parsing a wallet request and verifying its signature return an
//! answer: no panic, no overflow, no hang.
#![no_main]

use std::time::Duration;

use hub::domain::{Currency, IdempotencyKey, WalletRequest};
use hub::signature::{Binding, SignedRequest, Verifier};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let supported: Vec<Currency> = ["USD", "EUR", "JPY", "KWD"].iter().filter_map(|c| Currency::from_iso_code(c)).collect();
    if let Ok(request) = WalletRequest::parse(data, &supported) {
        assert!(request.amount_minor > 0);
        let _ = request.fingerprint(hub::domain::TransactionKind::Debit);
        let major = request.currency.to_major_text(request.amount_minor);
        assert_eq!(request.currency.from_major_text(&major), Ok(request.amount_minor));
    }
    // The first bytes play the headers, the rest the body.
    let (head, body) = data.split_at(data.len().min(96));
    let (timestamp, signature) = head.split_at(head.len().min(16));
    let verifier = Verifier::new(vec![b"fuzz-secret-0123456789-0123456789-abc".to_vec()], Duration::from_secs(300));
    for version in [None, Some("1"), Some("2"), std::str::from_utf8(&head[..head.len().min(2)]).ok()] {
        let request = SignedRequest {
            version,
            binding: Binding { method: "POST", path: "/wallet/debit", idempotency_key: head },
            body,
            timestamp: std::str::from_utf8(timestamp).ok(),
            signature: std::str::from_utf8(signature).ok(),
        };
        let _ = verifier.verify_request(&request, 1_700_000_000);
    }
    let _ = IdempotencyKey::parse(Some(head));
});
