//! Logging: `tracing` with an env filter (RUST_LOG), as text or JSON lines.

use tracing_subscriber::EnvFilter;

/// Installs the global subscriber once, for the CLI. Tests do not call this.
pub fn init(json: bool) {
    let filter = EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| EnvFilter::new("info,sqlx=warn,sea_orm=warn"));
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr);
    if json {
        builder.json().init();
    } else {
        builder.init();
    }
}
