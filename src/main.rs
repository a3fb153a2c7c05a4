//! The ordergraph command line: `serve` (default), `migrate`, `schema`, `token`, and
//! `projections status|rebuild|verify`.

use std::sync::Arc;
use std::time::Duration;

use anyhow::Context as _;
use clap::{Parser, Subcommand, ValueEnum};
use indicatif::{MultiProgress, ProgressBar, ProgressStyle};
use ordergraph::auth::{self, Role};
use ordergraph::config::Settings;
use ordergraph::log::horizon::safe_horizon;
use ordergraph::read::Projection;
use ordergraph::read::rebuild::{CHANGED_KEYS_LIMIT, Changed, Phase, Progress, Replayer};
use ordergraph::{Application, db, graphql, telemetry};
use secrecy::ExposeSecret;

/// mimalloc rather than glibc's malloc: a GraphQL request allocates per field, and glibc
/// spent about a fifth of a read request's CPU time in malloc and free (BENCHMARKS.md).
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

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
    /// Rebuild a view (every view at once without NAME) from the event log into a shadow
    /// copy while the live view keeps serving, then swap it in atomically.
    Rebuild {
        /// catalog, cart, orders or dashboard.
        name: Option<String>,
    },
    /// Replay the log into a scratch copy of a view (every view without NAME) and compare
    /// it with the live view row by row (exit code 1 on a difference).
    Verify {
        /// catalog, cart, orders or dashboard.
        name: Option<String>,
    },
}

/// The projections named on the command line: one, or all.
fn chosen(name: Option<&str>) -> anyhow::Result<Vec<Arc<dyn Projection>>> {
    let all = ordergraph::read::all_projections();
    match name {
        None => Ok(all),
        Some(name) => {
            let known = all.iter().map(|p| p.name()).collect::<Vec<_>>().join(", ");
            all.into_iter()
                .find(|p| p.name() == name)
                .map(|p| vec![p])
                .with_context(|| format!("unknown projection {name:?} (known: {known})"))
        }
    }
}

/// A progress bar that follows a rebuild or a verify.
fn bar(name: &str) -> ProgressBar {
    let bar = ProgressBar::new(0);
    bar.set_style(
        ProgressStyle::with_template(
            "{prefix:>10} {msg:<9} [{bar:30}] {human_pos}/{human_len} events {per_sec} eta {eta}",
        )
        .expect("a valid template")
        .progress_chars("=> "),
    );
    bar.set_prefix(name.to_owned());
    bar
}

fn follow(bar: &ProgressBar) -> impl Fn(&Progress) + Send + Sync + '_ {
    move |p: &Progress| {
        bar.set_length(p.total);
        bar.set_position(p.done);
        bar.set_message(match p.phase {
            Phase::Idle => "idle",
            Phase::Replaying => "replaying",
            Phase::Swapping => "swapping",
            Phase::Done => "done",
            Phase::Failed => "failed",
        });
    }
}

/// The views' database (a read replica's `READ_DATABASE_URL`, else the database) and
/// the log's (the database), both migrated.
async fn open_replayer(settings: &Settings, connections: u32) -> anyhow::Result<Replayer> {
    let url = settings.effective_database_url();
    let log = db::connect(&url, connections).await?;
    db::migrate(&log).await?;
    let (db, url) = match &settings.read_database_url {
        Some(read) => {
            let views = db::connect(read, connections).await?;
            db::migrate(&views).await?;
            (views, read.clone())
        }
        None => (log.clone(), url),
    };
    Ok(Replayer {
        db,
        log,
        url,
        gate: None,
    })
}

/// Rebuilds the chosen views: one of them, or every one from one reading of the log,
/// each page folded into every view's scratch copy at once, then each swapped in on its
/// own (`Replayer::rebuild_all`). A view whose rebuild fails keeps its live rows; the
/// others still finish, and the command then fails naming it.
async fn projections_rebuild(settings: &Settings, name: Option<&str>) -> anyhow::Result<()> {
    let projections = chosen(name)?;
    // A page being read, and a swap for each view at once.
    let replayer = open_replayer(settings, projections.len() as u32 + 2).await?;
    let bars = MultiProgress::new();
    let followed: Vec<(&'static str, ProgressBar)> = projections
        .iter()
        .map(|p| (p.name(), bars.add(bar(p.name()))))
        .collect();
    let report = |p: &Progress| {
        if let Some((_, bar)) = followed.iter().find(|(name, _)| *name == p.name) {
            follow(bar)(p);
        }
    };
    let db = replayer.log.clone();
    let results = replayer
        .rebuild_all(&projections, || safe_horizon(&db, 0), &report)
        .await;
    let mut failed = Vec::new();
    for ((projection, (_, bar)), result) in projections.iter().zip(&followed).zip(results) {
        bar.finish();
        match result {
            Ok((done, changed)) => {
                let changed = match changed {
                    Changed::Keys(keys) => format!("{} keys changed", keys.len()),
                    Changed::TooMany => format!("more than {CHANGED_KEYS_LIMIT} keys changed"),
                };
                // Above the bars on a terminal; printed all the same when there is none
                // (`MultiProgress::println` prints nothing then).
                bars.suspend(|| {
                    println!(
                        "{}: rebuilt from {} events in {:.1}s ({:.0} events/s); {} rows ({changed}), at position {}",
                        projection.name(),
                        done.done,
                        done.elapsed.as_secs_f64(),
                        done.rate(),
                        done.rows,
                        done.position
                    );
                });
            }
            Err(e) => failed.push(anyhow::Error::new(e).context(format!(
                "rebuilding {} (the live view is unchanged)",
                projection.name()
            ))),
        }
    }
    match failed.len() {
        0 => Ok(()),
        1 => Err(failed.into_iter().next().expect("one error")),
        _ => {
            for e in &failed {
                eprintln!("error: {e:#}");
            }
            anyhow::bail!("{} of {} rebuilds failed", failed.len(), projections.len())
        }
    }
}

/// Verifies the chosen views; true when every one equals its replay.
async fn projections_verify(settings: &Settings, name: Option<&str>) -> anyhow::Result<bool> {
    let projections = chosen(name)?;
    let replayer = open_replayer(settings, 4).await?;
    let mut all_ok = true;
    for projection in projections {
        let bar = bar(projection.name());
        let report = replayer
            .verify(projection.as_ref(), &follow(&bar))
            .await
            .with_context(|| format!("verifying {}", projection.name()));
        bar.finish_and_clear();
        let report = report?;
        if report.is_ok() {
            println!(
                "{}: ok, {} rows equal a replay of the log up to position {}",
                report.name, report.rows, report.position
            );
            continue;
        }
        all_ok = false;
        println!(
            "{}: DIFFERS, {} of {} rows differ from a replay of the log up to position {}",
            report.name, report.differences, report.rows, report.position
        );
        for d in &report.first {
            let show = |row: &Option<serde_json::Value>| {
                row.as_ref()
                    .map_or_else(|| "(none)".to_owned(), |r| r.to_string())
            };
            println!("  {} {}", d.table, d.key);
            println!("    live:     {}", show(&d.live));
            println!("    replayed: {}", show(&d.replayed));
        }
    }
    Ok(all_ok)
}

/// Prints the status table; true when every projection is healthy.
async fn projections_status(settings: &Settings) -> anyhow::Result<bool> {
    let url = settings.effective_database_url();
    let log = db::connect(&url, 2).await?;
    db::migrate(&log).await?;
    // A read replica's views (and its cluster) are in its read database.
    let conn = match &settings.read_database_url {
        Some(read) => {
            let views = db::connect(read, 2).await?;
            db::migrate(&views).await?;
            views
        }
        None => log.clone(),
    };
    let names: Vec<&'static str> = ordergraph::read::all_projections()
        .iter()
        .map(|p| p.name())
        .collect();
    let report = ordergraph::read::status::Statuses::offline(&conn, &log, &names).await?;
    // Who runs each unit (PostgreSQL: one replica each; SQLite: the serving process).
    let cluster = match conn.get_database_backend() {
        sea_orm::DbBackend::Postgres => Some(ordergraph::cluster::observe::snapshot(&conn).await?),
        _ => None,
    };
    let holder = |unit: &ordergraph::cluster::Unit| match &cluster {
        Some(snapshot) => snapshot.holder(unit).unwrap_or("(nobody)").to_owned(),
        None => "-".to_owned(),
    };
    println!(
        "{:<10} {:>12} {:>12} {:>10} {:>10}  {:<8} {:<24} updated / error",
        "projection", "checkpoint", "head", "lag", "lag ms", "status", "holder"
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
            "{:<10} {:>12} {:>12} {:>10} {:>10}  {:<8} {:<24} {}",
            r.name,
            r.position,
            r.head,
            r.lag,
            r.lag_millis,
            status,
            holder(&ordergraph::cluster::Unit::Projector(r.name)),
            detail
        );
    }
    // The order saga's partitions: their checkpoints and holders (the write side's:
    // a read replica's cluster runs no saga).
    let partitions = settings.saga_partitions_on(log.get_database_backend());
    let stored = ordergraph::read::checkpoints::all(&log).await?;
    let saga = if settings.read_database_url.is_some() {
        Vec::new()
    } else {
        ordergraph::cluster::Partition::all(partitions)
    };
    for partition in saga {
        let name = ordergraph::process::order_saga::checkpoint_name(partition);
        let position = stored
            .iter()
            .find(|row| row.name == name)
            .map_or(0, |row| row.position);
        println!(
            "{:<10} {:>12} {:>12} {:>10} {:>10}  {:<8} {:<24} {}",
            format!("saga:{}", partition.index),
            position,
            "",
            "",
            "",
            "",
            holder(&ordergraph::cluster::Unit::Saga(partition)),
            name
        );
    }
    // The publisher (with a broker): how far the stream is, beside the log's head. It is
    // a unit of the write side's cluster, also when this is a read replica's status.
    if let Some(broker) = settings.broker()? {
        let publisher_holder = match (&settings.read_database_url, log.get_database_backend()) {
            (Some(_), sea_orm::DbBackend::Postgres) => ordergraph::cluster::observe::snapshot(&log)
                .await?
                .holder(&ordergraph::cluster::Unit::Publisher)
                .unwrap_or("(nobody)")
                .to_owned(),
            _ => holder(&ordergraph::cluster::Unit::Publisher),
        };
        let head = ordergraph::log::horizon::committed_head(&log).await?;
        let published = match ordergraph::broker::connect(&broker, "ordergraph-cli").await {
            Ok(js) => match js.get_stream(&broker.stream).await {
                Ok(mut stream) => match stream.info().await {
                    Ok(info) => Ok(i64::try_from(info.state.last_sequence).unwrap_or(i64::MAX)),
                    Err(e) => Err(e.to_string()),
                },
                Err(e) => Err(e.to_string()),
            },
            Err(e) => Err(format!("{e:#}")),
        };
        let (position, lag, detail) = match published {
            Ok(at) => (
                at.to_string(),
                (head - at).max(0).to_string(),
                format!("stream {}", broker.stream),
            ),
            Err(e) => {
                healthy = false;
                ("?".to_owned(), "?".to_owned(), format!("broker: {e}"))
            }
        };
        println!(
            "{:<10} {:>12} {:>12} {:>10} {:>10}  {:<8} {:<24} {}",
            "publisher", position, head, lag, "", "", publisher_holder, detail
        );
    }
    // The replicas (PostgreSQL): alive or not, and how far each serves, as it reported.
    if let Some(snapshot) = &cluster {
        println!();
        println!(
            "{:<24} {:<6} {:<22} {:>12} {:>10}  reported",
            "replica", "alive", "roles", "serving", "lag"
        );
        for node in &snapshot.nodes {
            let (serving, lag, reported) = match node.progress {
                Some(p) => (p.position.to_string(), p.lag.to_string(), p.at.to_rfc3339()),
                None => ("-".to_owned(), "-".to_owned(), "-".to_owned()),
            };
            println!(
                "{:<24} {:<6} {:<22} {:>12} {:>10}  {}",
                node.id,
                if node.alive { "yes" } else { "no" },
                node.roles.map_or_else(|| "?".to_owned(), |r| r.to_string()),
                serving,
                lag,
                reported
            );
        }
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
            let on_postgres = cli
                .settings
                .database_url
                .as_deref()
                .is_some_and(|url| url.starts_with("postgres"));
            if on_postgres && cli.settings.jwt_secret.is_none() {
                anyhow::bail!(ordergraph::config::SHARED_SECRET_REQUIRED);
            }
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
        Command::Projections { action } => {
            if cli.settings.database_url.is_none() {
                std::fs::create_dir_all(&cli.settings.data_dir)?;
            }
            let healthy = match action {
                ProjectionsAction::Status => projections_status(&cli.settings).await?,
                ProjectionsAction::Rebuild { name } => {
                    projections_rebuild(&cli.settings, name.as_deref()).await?;
                    true
                }
                ProjectionsAction::Verify { name } => {
                    projections_verify(&cli.settings, name.as_deref()).await?
                }
            };
            if healthy {
                Ok(())
            } else {
                std::process::exit(1)
            }
        }
        Command::Migrate => {
            let telemetry = telemetry::init(
                matches!(cli.log_format, LogFormat::Json),
                &telemetry::Traces::Off,
            )?;
            if cli.settings.database_url.is_none() {
                std::fs::create_dir_all(&cli.settings.data_dir)?;
            }
            let url = cli.settings.effective_database_url();
            let conn = db::connect(&url, 2).await?;
            db::migrate(&conn).await?;
            tracing::info!(database = %db::redact(&url), "migrations applied");
            telemetry.shutdown().await;
            Ok(())
        }
        Command::Serve => {
            let traces =
                telemetry::Traces::configured(cli.settings.otlp_endpoint.as_deref(), |name| {
                    std::env::var(name).ok()
                })?;
            let telemetry = telemetry::init(matches!(cli.log_format, LogFormat::Json), &traces)?;
            let served = async {
                Application::build(cli.settings)
                    .await
                    .context("starting ordergraph")?
                    .run_until_stopped(shutdown_signal())
                    .await
            }
            .await;
            // The last spans, after the last request: at most a few seconds.
            telemetry.shutdown().await;
            served
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
