//! The `hub` command line: `serve`, `demo`, `migrate`, `outbox`.

use std::net::TcpListener;
use std::process::ExitCode;

use clap::{Parser, Subcommand};
use hub::cli::outbox::OutboxCommand;
use hub::cli::reconcile::ReconcileArgs;
use hub::cli::transactions::TransactionsCommand;
use hub::config::{Config, Defaults, Env};
use hub::operator::{OperatorClient, OperatorConfig};
use hub::startup::Application;
use hub::store::{DatabaseConfig, Store};
use hub::telemetry::LogFormat;
use mock_operator::{MockOperator, MockOperatorConfig};
use mock_rgs::{MockRgs, MockRgsConfig};
use tokio_util::sync::CancellationToken;

/// Wallet integration hub: game servers call its signed, idempotent /wallet/debit and
/// /wallet/credit; it calls the operator's wallet, records every transaction, and delivers
/// a signed webhook for each to the game server.
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
    /// Run the wallet API and the webhook drainer. Needs HMAC_SECRETS and WEBHOOK_SECRET;
    /// DATABASE_URL defaults to SQLite in ./data.
    Serve,
    /// Try the hub on one machine: the API on :3000, a mock operator on :3001 and a mock RGS
    /// receiving the webhooks on :3002, SQLite in ./data, built-in demo secrets (see the
    /// README's curl example).
    Demo {
        /// Where the mock operator listens.
        #[arg(long, default_value = "127.0.0.1:3001")]
        operator_addr: String,
        /// The mock operator's rate limit in requests per minute (0 turns it off).
        #[arg(long, env = "MOCK_OPERATOR_RPM", default_value_t = 60)]
        operator_rpm: u32,
        /// Where the mock RGS listens for webhooks.
        #[arg(long, default_value = "127.0.0.1:3002")]
        rgs_addr: String,
    },
    /// Apply pending database migrations to DATABASE_URL and exit.
    Migrate,
    /// Compare the hub's transactions (DATABASE_URL) with the operator's listing
    /// (OPERATOR_BASE_URL) and write a report. Exit 0: they agree; 1: they disagree;
    /// 2: the comparison could not run.
    Reconcile(ReconcileArgs),
    /// Inspect and replay webhook events in DATABASE_URL (no running hub needed).
    Outbox {
        #[command(subcommand)]
        command: OutboxCommand,
    },
    /// Inspect transactions in DATABASE_URL: those flagged for manual review.
    Transactions {
        #[command(subcommand)]
        command: TransactionsCommand,
    },
    /// Check the configuration `hub serve` would start with.
    Config {
        #[command(subcommand)]
        command: ConfigCommand,
    },
}

#[derive(Subcommand)]
enum ConfigCommand {
    /// Print every setting `hub serve` reads with its effective value (secrets redacted,
    /// defaults marked). Exit 0: it would start; 1: it would not, and why.
    Check,
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
            rgs_addr,
        } => Config::from_env(&env, Defaults::DEMO)
            .map_err(|e| e.to_string())
            .and_then(|config| {
                runtime.block_on(demo(config, &operator_addr, operator_rpm, &rgs_addr))
            }),
        Command::Migrate => DatabaseConfig::from_env(&env)
            .map_err(|e| e.to_string())
            .and_then(migrate),
        Command::Outbox { command } => DatabaseConfig::from_env(&env)
            .map_err(|e| e.to_string())
            .and_then(|database| runtime.block_on(outbox(database, command))),
        Command::Transactions { command } => DatabaseConfig::from_env(&env)
            .map_err(|e| e.to_string())
            .and_then(|database| runtime.block_on(transactions(database, command))),
        Command::Config {
            command: ConfigCommand::Check,
        } => return config_check(&env),
        Command::Reconcile(args) => {
            return match runtime.block_on(reconcile(&env, &args)) {
                Ok(true) => ExitCode::SUCCESS,
                Ok(false) => ExitCode::from(1),
                Err(message) => fail(&message),
            }
        }
    };
    match outcome {
        Ok(()) => ExitCode::SUCCESS,
        Err(message) => fail(&message),
    }
}

fn config_check(env: &Env) -> ExitCode {
    match hub::config::check(env) {
        Ok(lines) => {
            for line in lines {
                println!("{line}");
            }
            println!("configuration ok");
            ExitCode::SUCCESS
        }
        Err(error) => {
            eprintln!("hub: configuration invalid: {error}");
            ExitCode::from(1)
        }
    }
}

/// One line on stderr, even when a library's message spans several.
fn fail(message: &str) -> ExitCode {
    let one_line: Vec<&str> = message
        .lines()
        .map(str::trim)
        .filter(|l| !l.is_empty())
        .collect();
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
    let cancel = CancellationToken::new();
    let running = tokio::spawn(app.run_until_cancelled(cancel.clone()));
    shutdown_signal().await;
    tracing::info!("shutting down: finishing in-flight requests and webhook deliveries");
    cancel.cancel();
    running
        .await
        .map_err(|e| e.to_string())?
        .map_err(|e| e.to_string())
}

async fn demo(
    mut config: Config,
    operator_addr: &str,
    operator_rpm: u32,
    rgs_addr: &str,
) -> Result<(), String> {
    let bind =
        |addr: &str| TcpListener::bind(addr).map_err(|e| format!("cannot listen on {addr}: {e}"));
    let operator_config = MockOperatorConfig {
        requests_per_minute: operator_rpm,
        ..MockOperatorConfig::default()
    };
    let operator =
        MockOperator::start(bind(operator_addr)?, operator_config).map_err(|e| e.to_string())?;
    let rgs_config = MockRgsConfig {
        key: config.webhooks.key.clone(),
        workers: 2,
    };
    let rgs = MockRgs::start(bind(rgs_addr)?, rgs_config).map_err(|e| e.to_string())?;
    config.operator.base_url = operator.base_url();
    config.webhooks.url = rgs.webhook_url();
    let banner = format!(
        "hub demo: API on http://{}, mock operator on {} ({operator_rpm} requests/minute), \
         mock RGS on {} (GET it to see the webhooks), database {:?}",
        config.listen_addr, config.operator.base_url, config.webhooks.url, config.database.url
    );
    let served = serve(config, Some(banner)).await;
    operator.stop().await;
    rgs.stop().await;
    served
}

fn migrate(database: DatabaseConfig) -> Result<(), String> {
    Store::connect(&database).map_err(|e| e.to_string())?;
    println!("migrations applied");
    Ok(())
}

async fn connect(database: DatabaseConfig) -> Result<Store, String> {
    tokio::task::spawn_blocking(move || Store::connect(&database))
        .await
        .map_err(|e| e.to_string())?
        .map_err(|e| e.to_string())
}

async fn outbox(database: DatabaseConfig, command: OutboxCommand) -> Result<(), String> {
    hub::cli::outbox::run(command, &connect(database).await?).await
}

async fn transactions(
    database: DatabaseConfig,
    command: TransactionsCommand,
) -> Result<(), String> {
    hub::cli::transactions::run(command, &connect(database).await?).await
}

/// `Ok(true)`: the ledgers agree; `Ok(false)`: they do not; `Err`: nothing was proven.
async fn reconcile(env: &Env, args: &ReconcileArgs) -> Result<bool, String> {
    hub::telemetry::init_with_default(LogFormat::Pretty, "warn");
    let options = args.options()?;
    let operator_config = OperatorConfig::from_env(env).map_err(|e| e.to_string())?;
    let database = DatabaseConfig::from_env(env).map_err(|e| e.to_string())?;
    let store = connect(database).await?;
    // A one-shot command exposes no metrics, and the listing is not paced by the governor.
    let metrics = std::sync::Arc::new(hub::metrics::Metrics::new());
    let governor = hub::operator::Governor::unpaced(metrics.clone());
    let operator =
        OperatorClient::new(&operator_config, metrics, governor).map_err(|e| e.to_string())?;
    hub::cli::reconcile::run(&options, &store, &operator).await
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
