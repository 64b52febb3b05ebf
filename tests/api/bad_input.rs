//! Hostile or sloppy input gets a 4xx with a code, never a 5xx, and leaves nothing behind.

use crate::helpers::{answer, new_key, on_both_backends, Backend, TestApp};

on_both_backends!(
    malformed_bodies_get_a_coded_4xx,
    unknown_routes_and_methods_get_a_coded_4xx
);

async fn malformed_bodies_get_a_coded_4xx(backend: Backend) {
    let app = TestApp::spawn(backend).await;
    let too_long = "p".repeat(256);
    let bodies = [
        String::new(),
        "null".into(),
        "[]".into(),
        "\"text\"".into(),
        "{".into(),
        "{\"playerId\":\"player-001\",\"amountCents\":10,\"currency\":\"USD\",\"refId\":\"r\"}trailing".into(),
        r#"{"playerId":["player-001"],"amountCents":10,"currency":"USD","refId":"r"}"#.into(),
        r#"{"playerId":"player-001","amountCents":"10","currency":"USD","refId":"r"}"#.into(),
        r#"{"playerId":"player-001","amountCents":10.5,"currency":"USD","refId":"r"}"#.into(),
        r#"{"playerId":"player-001","amountCents":true,"currency":"USD","refId":"r"}"#.into(),
        r#"{"playerId":"player-001","amountCents":0,"currency":"USD","refId":"r"}"#.into(),
        r#"{"playerId":"player-001","amountCents":-1,"currency":"USD","refId":"r"}"#.into(),
        r#"{"playerId":"player-001","amountCents":9223372036854775808,"currency":"USD","refId":"r"}"#.into(),
        r#"{"playerId":"player-001","amountCents":1e999,"currency":"USD","refId":"r"}"#.into(),
        r#"{"playerId":"","amountCents":10,"currency":"USD","refId":"r"}"#.into(),
        r#"{"playerId":"player-001","amountCents":10,"currency":"","refId":"r"}"#.into(),
        r#"{"playerId":"player-001","amountCents":10,"currency":"USD","refId":"   "}"#.into(),
        r#"{"playerId":"player-001","amountCents":10,"currency":"USD","refId":"r","meta":[1]}"#.into(),
        format!(r#"{{"playerId":"{too_long}","amountCents":10,"currency":"USD","refId":"r"}}"#),
        "\u{0}\u{1}\u{2}".into(),
        format!("{{\"playerId\":\"{}\"}}", "x".repeat(1024 * 1024)),
    ];
    for body in &bodies {
        let response = answer(app.post_signed("/wallet/debit", &new_key(), body).await).await;
        let shown: String = body.chars().take(80).collect();
        assert!(
            (400..500).contains(&response.status),
            "{shown}: {} {}",
            response.status,
            response.text
        );
        assert!(
            response.json["code"].is_string(),
            "{shown}: no code in {}",
            response.text
        );
        assert!(
            response.json["message"].is_string(),
            "{shown}: no message in {}",
            response.text
        );
    }
    assert!(app.operator.calls().is_empty());
}

async fn unknown_routes_and_methods_get_a_coded_4xx(backend: Backend) {
    let app = TestApp::spawn(backend).await;

    let missing = answer(
        app.client
            .get(format!("{}/wallet/nothing", app.address))
            .send()
            .await
            .unwrap(),
    )
    .await;
    let wrong_method = answer(
        app.client
            .get(format!("{}/wallet/debit", app.address))
            .send()
            .await
            .unwrap(),
    )
    .await;

    assert_eq!(
        (missing.status, missing.json["code"].as_str()),
        (404, Some("NOT_FOUND"))
    );
    assert_eq!(
        (wrong_method.status, wrong_method.json["code"].as_str()),
        (405, Some("METHOD_NOT_ALLOWED"))
    );
}
