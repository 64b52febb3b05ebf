//! `mock-rgs`: receives the hub's webhooks on `MOCK_RGS_ADDR` (default 127.0.0.1:3002).

use std::net::TcpListener;

use mock_rgs::{MockRgs, MockRgsConfig};

/// The secret `hub demo` signs its webhooks with unless WEBHOOK_SECRET is set.
const DEMO_WEBHOOK_SECRET: &str = "demo-webhook-secret-for-local-use-0123456789";

#[tokio::main]
async fn main() -> std::io::Result<()> {
    let addr = std::env::var("MOCK_RGS_ADDR").unwrap_or_else(|_| "127.0.0.1:3002".into());
    let secret = std::env::var("WEBHOOK_SECRET").unwrap_or_else(|_| DEMO_WEBHOOK_SECRET.into());
    let key = mock_rgs::verify::key_from_secret(&secret);
    let rgs = MockRgs::start(TcpListener::bind(&addr)?, MockRgsConfig { key, workers: 2 })?;
    println!("mock RGS listening on {}", rgs.webhook_url());
    tokio::signal::ctrl_c().await?;
    rgs.stop().await;
    Ok(())
}
