use std::io::IsTerminal;

use tracing_subscriber::EnvFilter;

/// Installs the process-wide diagnostic log on stderr: human-readable and coloured on a
/// terminal, one JSON object a line otherwise (for log collectors). `STRAIT_LOG` filters it
/// (`RUST_LOG` syntax, default `info`). Calling it twice keeps the first.
pub fn init_logging() {
    let filter = EnvFilter::try_from_env("STRAIT_LOG").unwrap_or_else(|_| EnvFilter::new("info"));
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .with_target(false);
    let _ = if std::io::stderr().is_terminal() {
        builder.with_ansi(true).try_init()
    } else {
        builder.json().with_current_span(false).try_init()
    };
}
