use std::io::IsTerminal;

use tracing_subscriber::EnvFilter;

/// Installs the process-wide log subscriber. Calling it twice keeps the first.
pub fn init_logging() {
    let filter = EnvFilter::try_from_env("STRAIT_LOG").unwrap_or_else(|_| EnvFilter::new("info"));
    let _ = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .with_target(false)
        .with_ansi(std::io::stderr().is_terminal())
        .try_init();
}
