//! The `strait` command line: `run`, `check config`, `check tls`, `version`.

use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Parser, Subcommand};
use tracing::{error, info, warn};

#[cfg(feature = "mimalloc")]
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

#[derive(Parser, Debug)]
#[command(
    name = "strait",
    version,
    about = "A gRPC-native edge proxy and API gateway for HTTP/2"
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand, Debug)]
enum Command {
    /// Run the proxy. Without --config, runs an embedded default in front of a demo echo service.
    Run {
        /// Config file (.yaml, .yml or .toml).
        #[arg(long, short)]
        config: Option<PathBuf>,
        /// Worker threads (default: the number of cores).
        #[arg(long, value_parser = clap::value_parser!(u16).range(1..))]
        workers: Option<u16>,
    },
    /// Validate things without running the proxy.
    Check {
        #[command(subcommand)]
        what: Check,
    },
    /// Print the version.
    Version,
}

#[derive(Subcommand, Debug)]
enum Check {
    /// Validate a config file: print the effective config, or every error with its location.
    Config {
        /// Config file (.yaml, .yml or .toml).
        file: PathBuf,
    },
    /// Connect to a TLS server and say whether gRPC clients will work: the negotiated ALPN,
    /// TLS version and cipher suite, the certificate chain, its verification, and a diagnosis.
    /// Exits 0 when fine, 1 on a problem.
    Tls {
        /// HOST:PORT ([ADDR]:PORT for IPv6).
        target: String,
        /// ALPN protocols to offer, in order, comma-separated.
        #[arg(long, value_delimiter = ',', default_value = "h2,http/1.1")]
        alpn: Vec<String>,
        /// Server name to send (SNI) and verify (default: the host, when it is a DNS name).
        #[arg(long, value_name = "NAME")]
        sni: Option<String>,
        /// Trust the CA certificates in this PEM file instead of the public web roots.
        #[arg(long, value_name = "FILE", conflicts_with = "insecure")]
        ca: Option<PathBuf>,
        /// Client certificate chain (PEM), for servers that require one.
        #[arg(long, value_name = "FILE", requires = "key")]
        cert: Option<PathBuf>,
        /// The client certificate's private key (PEM).
        #[arg(long, value_name = "FILE", requires = "cert")]
        key: Option<PathBuf>,
        /// Do not verify the server's certificate (still show it).
        #[arg(long)]
        insecure: bool,
        /// Print one JSON object instead of text.
        #[arg(long)]
        json: bool,
    },
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    match cli.command {
        Command::Run { config, workers } => run(config, workers),
        Command::Check {
            what: Check::Config { file },
        } => check_config(&file),
        Command::Check {
            what:
                Check::Tls {
                    target,
                    alpn,
                    sni,
                    ca,
                    cert,
                    key,
                    insecure,
                    json,
                },
        } => check_tls(
            &strait_tls::check::CheckOptions {
                target,
                alpn,
                sni,
                ca,
                cert,
                key,
                insecure,
            },
            json,
        ),
        Command::Version => {
            println!("strait {}", env!("CARGO_PKG_VERSION"));
            ExitCode::SUCCESS
        }
    }
}

fn check_config(file: &std::path::Path) -> ExitCode {
    match strait_config::load(file) {
        Ok(config) => {
            print!("{}", config.to_yaml());
            ExitCode::SUCCESS
        }
        Err(errors) => {
            for e in &errors {
                eprintln!("{e}");
            }
            eprintln!(
                "{}: {} error{}",
                file.display(),
                errors.len(),
                if errors.len() == 1 { "" } else { "s" }
            );
            ExitCode::FAILURE
        }
    }
}

fn check_tls(options: &strait_tls::check::CheckOptions, json: bool) -> ExitCode {
    let runtime = match tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
    {
        Ok(runtime) => runtime,
        Err(e) => {
            eprintln!("cannot start the runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    let report = runtime.block_on(strait_tls::check::run(options));
    if json {
        println!("{}", report.to_json());
    } else {
        print!("{}", report.to_text());
    }
    if report.is_fine() {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    }
}

fn run(path: Option<PathBuf>, workers: Option<u16>) -> ExitCode {
    strait_telemetry::init_logging();
    let config = match &path {
        Some(path) => match strait_config::load(path) {
            Ok(config) => Some(config),
            Err(errors) => {
                for e in &errors {
                    error!("{e}");
                }
                error!(
                    "{}: refusing to start with an invalid config",
                    path.display()
                );
                return ExitCode::FAILURE;
            }
        },
        None => None,
    };
    let workers = workers.map_or_else(
        || std::thread::available_parallelism().map_or(1, usize::from),
        usize::from,
    );
    let runtime = match runtime(workers) {
        Ok(runtime) => runtime,
        Err(e) => {
            error!("cannot start the runtime with {workers} workers: {e}");
            return ExitCode::FAILURE;
        }
    };
    runtime.block_on(async move {
        let mut signals = match Signals::new() {
            Ok(signals) => signals,
            Err(e) => {
                error!("cannot listen for signals: {e}");
                return ExitCode::FAILURE;
            }
        };
        let config = match config {
            Some(config) => config,
            None => match strait_app::demo::default_config().await {
                Ok((config, demo)) => {
                    info!(%demo, "no --config given: running the embedded default in front of the demo echo service");
                    config
                }
                Err(e) => {
                    error!("{e}");
                    return ExitCode::FAILURE;
                }
            },
        };
        let running = match strait_app::start(config).await {
            Ok(running) => running,
            Err(e) => {
                error!("{e}");
                return ExitCode::FAILURE;
            }
        };
        if let Some(path) = path {
            running.watch_config_file(path);
        }
        info!(workers, "strait is serving");
        while signals.next().await == Signal::Reload {
            match running.reload_from_source().await {
                Ok(generation) => info!(generation, "reloaded on SIGHUP"),
                Err(e) => strait_app::log_reload_error(&e),
            }
        }
        info!("stop signal: not ready from now on (signal again to exit at once)");
        // Not ready at once, the accept grace, then the drain; the admin listener answers
        // through all of it.
        tokio::select! {
            _ = running.stop() => ExitCode::SUCCESS,
            _ = signals.next_stop() => {
                warn!("second signal: exiting without waiting for open requests");
                ExitCode::from(130)
            }
        }
    })
}

/// One worker runs everything on the calling thread: a current-thread runtime has no
/// cross-thread wake-ups and no work-stealing queues, and measured +47% req/s per core over a
/// one-worker multi-thread runtime (BENCHMARKS.md). More workers share one multi-thread
/// runtime.
fn runtime(workers: usize) -> std::io::Result<tokio::runtime::Runtime> {
    if workers == 1 {
        tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
    } else {
        tokio::runtime::Builder::new_multi_thread()
            .worker_threads(workers)
            .enable_all()
            .build()
    }
}

#[derive(Debug, PartialEq, Eq)]
enum Signal {
    Reload,
    Stop,
}

/// SIGHUP reloads; SIGTERM and SIGINT (Ctrl-C) stop.
struct Signals {
    hangup: tokio::signal::unix::Signal,
    terminate: tokio::signal::unix::Signal,
    interrupt: tokio::signal::unix::Signal,
}

impl Signals {
    fn new() -> std::io::Result<Signals> {
        use tokio::signal::unix::{signal, SignalKind};
        Ok(Signals {
            hangup: signal(SignalKind::hangup())?,
            terminate: signal(SignalKind::terminate())?,
            interrupt: signal(SignalKind::interrupt())?,
        })
    }

    async fn next(&mut self) -> Signal {
        tokio::select! {
            _ = self.hangup.recv() => Signal::Reload,
            _ = self.terminate.recv() => Signal::Stop,
            _ = self.interrupt.recv() => Signal::Stop,
        }
    }

    async fn next_stop(&mut self) {
        while self.next().await == Signal::Reload {}
    }
}
