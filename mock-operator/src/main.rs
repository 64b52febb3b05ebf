//! `mock-operator`: the operator wallet API on `MOCK_OPERATOR_ADDR` (default 127.0.0.1:3001).

use std::net::TcpListener;

use mock_operator::{MockOperator, MockOperatorConfig};

#[tokio::main]
async fn main() -> std::io::Result<()> {
    let addr = std::env::var("MOCK_OPERATOR_ADDR").unwrap_or_else(|_| "127.0.0.1:3001".into());
    let requests_per_minute = match std::env::var("MOCK_OPERATOR_RPM") {
        Ok(text) => text.parse().map_err(|_| {
            std::io::Error::other(format!(
                "MOCK_OPERATOR_RPM must be a whole number, got {text:?}"
            ))
        })?,
        Err(_) => MockOperatorConfig::default().requests_per_minute,
    };
    let config = MockOperatorConfig {
        requests_per_minute,
        ..MockOperatorConfig::default()
    };
    let operator = MockOperator::start(TcpListener::bind(&addr)?, config)?;
    println!(
        "mock operator listening on {} ({requests_per_minute} requests/minute, 0 = unlimited)",
        operator.base_url()
    );
    tokio::signal::ctrl_c().await?;
    operator.stop().await;
    Ok(())
}
