//! The ordergraph command line: `serve` (default), `migrate`, `schema`, `token`.

use std::time::Duration;

use anyhow::Context as _;
use clap::{Parser, Subcommand, ValueEnum};
use ordergraph::auth::{self, Role};
use ordergraph::config::Settings;
use ordergraph::{Application, db, graphql, telemetry};
use secrecy::ExposeSecret;

#[derive(Parser)]
#[command(
    name = "ordergraph",
    version,
    about = "A shop's catalog, carts and orders over GraphQL, event sourced"
)]
struct Cli {
    #[command(flatten)]
    settings: Settings,
    /// Log format.
    #[arg(
        long,
        env = "ORDERGRAPH_LOG_FORMAT",
        value_enum,
        default_value = "text",
        global = true
    )]
    log_format: LogFormat,
    #[command(subcommand)]
    command: Option<Command>,
}

#[derive(Clone, Copy, ValueEnum)]
enum LogFormat {
    Text,
    Json,
}

#[derive(Subcommand)]
enum Command {
    /// Serve the API (the default).
    Serve,
    /// Apply pending database migrations and exit.
    Migrate,
    /// Print the GraphQL schema (SDL) to stdout.
    Schema,
    /// Operate the read views (projections).
    Projections {
        #[command(subcommand)]
        action: ProjectionsAction,
    },
    /// Print a signed JWT for local use.
    Token {
        /// User id (the `sub` claim).
        #[arg(long)]
        sub: String,
        #[arg(long, value_enum, default_value = "customer")]
        role: Role,
        /// Lifetime in hours.
        #[arg(long, default_value_t = 24)]
        ttl_hours: u64,
    },
}

#[derive(Subcommand)]
enum ProjectionsAction {
    /// Each projection's checkpoint, the log's safe head, the lag, and whether it failed
    /// (exit code 1 when one has).
    Status,
}

/// Prints the status table; true when every projection is healthy.
async fn projections_status(settings: &Settings) -> anyhow::Result<bool> {
    let url = settings.effective_database_url();
    let conn = db::connect(&url, 2).await?;
    db::migrate(&conn).await?;
    let names: Vec<&'static str> = ordergraph::read::all_projections()
        .iter()
        .map(|p| p.name())
        .collect();
    let report = ordergraph::read::status::Statuses::offline(&conn, &names).await?;
    println!(
        "{:<10} {:>12} {:>12} {:>10} {:>10}  {:<8} updated / error",
        "projection", "checkpoint", "head", "lag", "lag ms", "status"
    );
    let mut healthy = true;
    for r in report {
        let (status, detail) = match (&r.error, r.failed_position) {
            (Some(error), Some(at)) => {
                healthy = false;
                ("failed", format!("at position {at}: {error}"))
            }
            _ => (
                "ok",
                r.updated_at
                    .map_or_else(|| "-".to_owned(), |t| t.to_rfc3339()),
            ),
        };
        println!(
            "{:<10} {:>12} {:>12} {:>10} {:>10}  {:<8} {}",
            r.name, r.position, r.head, r.lag, r.lag_millis, status, detail
        );
    }
    Ok(healthy)
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let cli = Cli::parse();
    match cli.command.unwrap_or(Command::Serve) {
        Command::Schema => {
            print!("{}", graphql::schema_sdl());
            Ok(())
        }
        Command::Token {
            sub,
            role,
            ttl_hours,
        } => {
            let (secret, _) =
                auth::resolve_secret(cli.settings.jwt_secret.as_ref(), &cli.settings.data_dir)?;
            let token = auth::mint_token(
                secret.expose_secret(),
                &sub,
                role,
                Duration::from_secs(ttl_hours.saturating_mul(3600)),
            )?;
            println!("{token}");
            Ok(())
        }
        Command::Projections {
            action: ProjectionsAction::Status,
        } => {
            if cli.settings.database_url.is_none() {
                std::fs::create_dir_all(&cli.settings.data_dir)?;
            }
            if projections_status(&cli.settings).await? {
                Ok(())
            } else {
                std::process::exit(1)
            }
        }
        Command::Migrate => {
            telemetry::init(matches!(cli.log_format, LogFormat::Json));
            if cli.settings.database_url.is_none() {
                std::fs::create_dir_all(&cli.settings.data_dir)?;
            }
            let url = cli.settings.effective_database_url();
            let conn = db::connect(&url, 2).await?;
            db::migrate(&conn).await?;
            tracing::info!(database = %db::redact(&url), "migrations applied");
            Ok(())
        }
        Command::Serve => {
            telemetry::init(matches!(cli.log_format, LogFormat::Json));
            let app = Application::build(cli.settings)
                .await
                .context("starting ordergraph")?;
            app.run_until_stopped(shutdown_signal()).await
        }
    }
}

/// Resolves on ctrl-c or SIGTERM.
async fn shutdown_signal() {
    let ctrl_c = async {
        let _ = tokio::signal::ctrl_c().await;
    };
    #[cfg(unix)]
    let terminate = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut s) => {
                s.recv().await;
            }
            Err(_) => std::future::pending::<()>().await,
        }
    };
    #[cfg(not(unix))]
    let terminate = std::future::pending::<()>();
    tokio::select! {
        _ = ctrl_c => {},
        _ = terminate => {},
    }
}
