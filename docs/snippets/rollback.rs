// A rollback from Rust, with `signed_post` from the signing example above (crates: serde_json,
// tokio). The rollback's own refId and Idempotency-Key derive from the debit's refId, so every
// retry is the same rollback; it is retried until its answer is final.

/// Cancels the debit of `player_id` whose refId is `original_ref_id`, and returns the final
/// answer: 201, or 409 ALREADY_ROLLED_BACK / 422 (final too: nothing to retry).
pub async fn rollback(
    client: &reqwest::Client,
    hub_url: &str,
    secret: &[u8],
    player_id: &str,
    original_ref_id: &str,
) -> Result<(u16, serde_json::Value), reqwest::Error> {
    let url = format!("{hub_url}/wallet/rollback");
    let key = format!("rollback-{original_ref_id}");
    // Serialised once: every retry sends (and signs) the same bytes under the same key.
    let body = serde_json::json!({
        "playerId": player_id,
        "refId": key,
        "originalRefId": original_ref_id,
    })
    .to_string();
    let mut wait = std::time::Duration::from_millis(500);
    loop {
        let response = signed_post(client, &url, secret, &key, &body).await?;
        let status = response.status().as_u16();
        let answer: serde_json::Value = response.json().await?;
        // 502: recorded, outcome unknown; 503: nothing recorded yet; 409 REQUEST_IN_PROGRESS:
        // this same rollback is still running. A rollback is never given up: ask again.
        let in_progress = status == 409 && answer["code"] == "REQUEST_IN_PROGRESS";
        if status != 502 && status != 503 && !in_progress {
            return Ok((status, answer));
        }
        tokio::time::sleep(wait).await;
        wait = (wait * 2).min(std::time::Duration::from_secs(30));
    }
}
