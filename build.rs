//! Turns on the tests that need more than Rust: the Postgres half when `TEST_DATABASE_URL`
//! is set (with `TEST_REDIS_URL` too, the multi-replica tests), the curl/Node/Python
//! examples when `TEST_DOC_EXAMPLES=1`. Without them
//! `cargo test` lists those tests as ignored, with the reason, instead of passing them
//! silently.

fn main() {
    println!("cargo::rustc-check-cfg=cfg(postgres_tests)");
    println!("cargo::rustc-check-cfg=cfg(doc_examples)");
    println!("cargo::rustc-check-cfg=cfg(redis_tests)");
    println!("cargo::rerun-if-env-changed=TEST_REDIS_URL");
    println!("cargo::rerun-if-env-changed=TEST_DATABASE_URL");
    println!("cargo::rerun-if-env-changed=TEST_DOC_EXAMPLES");
    println!("cargo::rerun-if-changed=build.rs");
    if std::env::var("TEST_DATABASE_URL").is_ok_and(|url| !url.trim().is_empty()) {
        println!("cargo::rustc-cfg=postgres_tests");
    }
    if std::env::var("TEST_REDIS_URL").is_ok_and(|url| !url.trim().is_empty()) {
        println!("cargo::rustc-cfg=redis_tests");
    }
    if std::env::var("TEST_DOC_EXAMPLES").is_ok_and(|v| v == "1") {
        println!("cargo::rustc-cfg=doc_examples");
    }
}
