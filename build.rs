//! Turns the Postgres half of the test suite on when `TEST_DATABASE_URL` is set, so that
//! without it `cargo test` lists those tests as ignored, with the reason, instead of
//! passing them silently.

fn main() {
    println!("cargo::rustc-check-cfg=cfg(postgres_tests)");
    println!("cargo::rerun-if-env-changed=TEST_DATABASE_URL");
    println!("cargo::rerun-if-changed=build.rs");
    if std::env::var("TEST_DATABASE_URL").is_ok_and(|url| !url.trim().is_empty()) {
        println!("cargo::rustc-cfg=postgres_tests");
    }
}
