//! `hub config check`: what operators run before a deploy.

use std::process::{Command, Output};

const HMAC: &str = "config-check-hmac-secret-0123456789abcdef";
const WEBHOOK: &str = "config-check-webhook-secret-0123456789ab";

fn check(env: &[(&str, &str)]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_hub"))
        .args(["config", "check"])
        .env_clear()
        .envs(env.iter().copied())
        .output()
        .expect("run hub config check")
}

#[test]
fn a_valid_configuration_is_printed_with_its_secrets_redacted_and_exits_0() {
    let output = check(&[
        ("HMAC_SECRETS", HMAC),
        ("WEBHOOK_SECRET", WEBHOOK),
        (
            "DATABASE_URL",
            "postgres://hub:db-password-7@db.internal/hub",
        ),
        ("METRICS_TOKEN", "metrics-token-0123456789"),
        ("METRICS_ADDR", "0.0.0.0:9090"),
    ]);
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert_eq!(output.status.code(), Some(0), "{stdout}");
    for secret in [HMAC, WEBHOOK, "db-password-7", "metrics-token-0123456789"] {
        assert!(!stdout.contains(secret), "{secret} printed: {stdout}");
    }
    let lines: Vec<&str> = stdout.lines().collect();
    for expected in [
        "DATABASE_URL=postgres://hub:***@db.internal/hub",
        "HMAC_SECRETS=<redacted, 41 bytes>",
        "METRICS_ADDR=0.0.0.0:9090",
        "METRICS_TOKEN=<redacted, 24 bytes>",
        "OPERATOR_DEADLINE_MS=10000 (default)",
        "ADMIN_TOKEN (unset)",
        "configuration ok",
    ] {
        assert!(lines.contains(&expected), "{expected} missing: {stdout}");
    }
}

#[test]
fn an_invalid_configuration_names_the_variable_on_one_line_and_exits_1() {
    let output = check(&[
        ("HMAC_SECRETS", HMAC),
        ("WEBHOOK_SECRET", WEBHOOK),
        ("METRICS_ADDR", "9090"),
    ]);
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert_eq!(output.status.code(), Some(1), "{stderr}");
    assert_eq!(
        stderr.trim(),
        "hub: configuration invalid: METRICS_ADDR must be a socket address like 0.0.0.0:9090, got \"9090\""
    );
    assert!(output.stdout.is_empty());
}

#[test]
fn a_missing_secret_is_reported_without_starting_anything() {
    let output = check(&[("WEBHOOK_SECRET", WEBHOOK)]);
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert_eq!(output.status.code(), Some(1), "{stderr}");
    assert!(
        stderr.starts_with("hub: configuration invalid: HMAC_SECRETS must be set"),
        "{stderr}"
    );
}
