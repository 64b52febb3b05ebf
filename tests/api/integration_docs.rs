//! The signing examples of docs/INTEGRATION.md, run against a real hub as printed.

use crate::helpers::{new_key, signing_example, Backend, TestApp, SECRET};

const SNIPPETS: [&str; 4] = ["sign.sh", "sign.js", "sign.py", "sign.rs"];

fn snippet(name: &str) -> String {
    std::fs::read_to_string(format!(
        "{}/docs/snippets/{name}",
        env!("CARGO_MANIFEST_DIR")
    ))
    .unwrap()
}

#[test]
fn the_guide_prints_every_example_verbatim() {
    let guide = std::fs::read_to_string(format!(
        "{}/docs/INTEGRATION.md",
        env!("CARGO_MANIFEST_DIR")
    ))
    .unwrap();
    for name in SNIPPETS {
        assert!(
            guide.contains(&snippet(name)),
            "docs/INTEGRATION.md no longer prints docs/snippets/{name}"
        );
    }
}

#[tokio::test]
async fn the_rust_example_makes_a_signed_debit() {
    let app = TestApp::spawn(Backend::Sqlite).await;
    let body =
        r#"{"playerId":"player-001","amountCents":100,"currency":"USD","refId":"rust-example"}"#;

    let url = format!("{}/wallet/debit", app.address);
    let response =
        signing_example::signed_post(&app.client, &url, SECRET.as_bytes(), &new_key(), body)
            .await
            .expect("the hub answers");

    assert_eq!(response.status(), 201);
}

#[tokio::test]
#[cfg_attr(
    not(doc_examples),
    ignore = "set TEST_DOC_EXAMPLES=1 to run the curl, Node and Python examples (needs curl, openssl, node, python3)"
)]
async fn the_curl_node_and_python_examples_make_signed_debits() {
    let app = TestApp::spawn(Backend::Sqlite).await;
    for (interpreter, name) in [
        ("bash", "sign.sh"),
        ("node", "sign.js"),
        ("python3", "sign.py"),
    ] {
        let path = format!("{}/docs/snippets/{name}", env!("CARGO_MANIFEST_DIR"));
        let output = tokio::process::Command::new(interpreter)
            .arg(&path)
            .env("HUB_URL", &app.address)
            .env("HUB_SECRET", SECRET)
            .output()
            .await
            .unwrap_or_else(|e| panic!("run {interpreter}: {e}"));
        let stdout = String::from_utf8_lossy(&output.stdout);
        let lines: Vec<&str> = stdout.lines().collect();
        assert!(
            output.status.success(),
            "{name}: {}",
            String::from_utf8_lossy(&output.stderr)
        );
        assert_eq!(lines.last(), Some(&"201"), "{name} printed {stdout}");
        assert!(
            stdout.contains(r#""status":"OK""#),
            "{name} printed {stdout}"
        );
    }
}
