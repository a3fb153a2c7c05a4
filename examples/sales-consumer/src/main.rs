//! `sales-consumer`: follows ordergraph's event stream into `units_sold`, until Ctrl-C;
//! `sales-consumer report` prints the table.
//!
//! Settings (environment): `SALES_NATS_URL` (`nats://127.0.0.1:4222`),
//! `SALES_DATABASE_URL` (`sqlite://sales.db?mode=rwc`), and ordergraph's own
//! `ORDERGRAPH_NATS_STREAM` (`ORDERGRAPH_EVENTS`) and `ORDERGRAPH_NATS_SUBJECT_PREFIX`
//! (`ordergraph`).

use sales_consumer::{Config, open, position, run, units_sold};

fn env_or(name: &str, default: &str) -> String {
    std::env::var(name).unwrap_or_else(|_| default.to_owned())
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env().unwrap_or_else(|_| "info".into()),
        )
        .init();
    let config = Config {
        nats_url: env_or("SALES_NATS_URL", "nats://127.0.0.1:4222"),
        stream: env_or("ORDERGRAPH_NATS_STREAM", "ORDERGRAPH_EVENTS"),
        subject_prefix: env_or("ORDERGRAPH_NATS_SUBJECT_PREFIX", "ordergraph"),
        database_url: env_or("SALES_DATABASE_URL", "sqlite://sales.db?mode=rwc"),
    };
    if std::env::args().nth(1).as_deref() == Some("report") {
        let pool = open(&config.database_url).await?;
        println!("after position {}", position(&pool).await?);
        println!("{:<36}  {:<10}  {:>8}", "product", "day", "units");
        for row in units_sold(&pool).await? {
            println!("{:<36}  {:<10}  {:>8}", row.product_id, row.day, row.units);
        }
        return Ok(());
    }
    run(&config, async {
        let _ = tokio::signal::ctrl_c().await;
    })
    .await
}
