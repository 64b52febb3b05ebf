//! The `hub` command line: `serve`, `demo`, `migrate`.

use std::net::TcpListener;
use std::process::ExitCode;

use clap::{Parser, Subcommand};
use hub::config::{Config, DatabaseConfig, Defaults, Env};
use hub::startup::Application;
use mock_operator::{MockOperator, MockOperatorConfig};

/// Wallet integration hub: game servers call its signed, idempotent /wallet/debit and
/// /wallet/credit; it calls the operator's wallet and records every transaction.
///
/// Configuration comes from environment variables (see .env.example and the README).
#[derive(Parser)]
#[command(name = "hub", version, about, long_about)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Run the wallet API. Needs HMAC_SECRETS; DATABASE_URL defaults to SQLite in ./data.
    Serve,
    /// Try the hub on one machine: the API on :3000 plus a mock operator on :3001, SQLite
    /// in ./data, and a built-in demo signing secret (see the README's curl example).
    Demo {
        /// Where the mock operator listens.
        #[arg(long, default_value = "127.0.0.1:3001")]
        operator_addr: String,
        /// The mock operator's rate limit in requests per minute (0 turns it off).
        #[arg(long, env = "MOCK_OPERATOR_RPM", default_value_t = 60)]
        operator_rpm: u32,
    },
    /// Apply pending database migrations to DATABASE_URL and exit.
    Migrate,
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let env = Env::from_process();
    let runtime = match tokio::runtime::Runtime::new() {
        Ok(runtime) => runtime,
        Err(error) => return fail(&format!("cannot start the async runtime: {error}")),
    };
    let outcome = match cli.command {
        Command::Serve => Config::from_env(&env, Defaults::SERVE)
            .map_err(|e| e.to_string())
            .and_then(|config| runtime.block_on(serve(config, None))),
        Command::Demo {
            operator_addr,
            operator_rpm,
        } => Config::from_env(&env, Defaults::DEMO)
            .map_err(|e| e.to_string())
            .and_then(|config| runtime.block_on(demo(config, &operator_addr, operator_rpm))),
        Command::Migrate => DatabaseConfig::from_env(&env)
            .map_err(|e| e.to_string())
            .and_then(migrate),
    };
    match outcome {
        Ok(()) => ExitCode::SUCCESS,
        Err(message) => fail(&message),
    }
}

/// One line on stderr, even when a library's message spans several.
fn fail(message: &str) -> ExitCode {
    let one_line: Vec<&str> = message.lines().map(str::trim).filter(|l| !l.is_empty()).collect();
    eprintln!("hub: {}", one_line.join(" "));
    ExitCode::from(2)
}

async fn serve(config: Config, banner: Option<String>) -> Result<(), String> {
    hub::telemetry::init(config.log_format);
    let app = Application::build(config)
        .await
        .map_err(|e| e.to_string())?;
    tracing::info!(addr = %app.addr(), "hub listening");
    if let Some(banner) = banner {
        println!("{banner}");
    }
    let handle = app.handle();
    let server = tokio::spawn(app.run());
    shutdown_signal().await;
    tracing::info!("shutting down: finishing in-flight requests");
    handle.stop(true).await;
    server
        .await
        .map_err(|e| e.to_string())?
        .map_err(|e| e.to_string())
}

async fn demo(mut config: Config, operator_addr: &str, operator_rpm: u32) -> Result<(), String> {
    let listener = TcpListener::bind(operator_addr)
        .map_err(|e| format!("cannot listen on {operator_addr}: {e}"))?;
    let operator_config = MockOperatorConfig {
        requests_per_minute: operator_rpm,
        ..MockOperatorConfig::default()
    };
    let operator = MockOperator::start(listener, operator_config).map_err(|e| e.to_string())?;
    config.operator.base_url = operator.base_url();
    let banner = format!(
        "hub demo: API on http://{}, mock operator on {} ({operator_rpm} requests/minute), database {:?}",
        config.listen_addr, config.operator.base_url, config.database.url
    );
    let served = serve(config, Some(banner)).await;
    operator.stop().await;
    served
}

fn migrate(database: DatabaseConfig) -> Result<(), String> {
    let store = hub::store::Store::connect(&database).map_err(|e| e.to_string())?;
    drop(store);
    println!("migrations applied");
    Ok(())
}

async fn shutdown_signal() {
    let interrupt = tokio::signal::ctrl_c();
    #[cfg(unix)]
    {
        let mut terminate =
            match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
                Ok(signal) => signal,
                Err(_) => return interrupt.await.unwrap_or(()),
            };
        tokio::select! {
            _ = interrupt => {}
            _ = terminate.recv() => {}
        }
    }
    #[cfg(not(unix))]
    interrupt.await.unwrap_or(());
}
