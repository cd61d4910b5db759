//! Wiring and lifecycle: builds listeners and the proxy from a config snapshot, runs them,
//! and drains on shutdown.

mod admin;
pub mod demo;
mod pipeline;
mod proxy;
mod snapshot;

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use arc_swap::ArcSwap;
use indexmap::IndexMap;
use strait_admin::AdminState;
use strait_config::{Config, Entrypoint};
use strait_core::{Drain, DrainWatch};
use strait_http::ListenerConfig;
use strait_telemetry::Metrics;
use strait_tls::TlsListener;
use tokio::net::TcpListener;
use tracing::{error, info, warn};

pub use proxy::Proxy;

/// How often the config file is re-read for changes.
const CONFIG_WATCH_INTERVAL: Duration = Duration::from_secs(1);
/// How long connections of a removed entrypoint may take to finish.
const RETIRE_GRACE: Duration = Duration::from_secs(30);

/// A running strait: its bound addresses, reload, and the handle to stop it.
#[derive(Clone, Debug)]
pub struct Running {
    state: Arc<State>,
}

#[derive(Debug)]
struct State {
    proxy: Proxy,
    admin: Option<SocketAddr>,
    admin_state: AdminState,
    /// Held across a whole reload, so two reloads never interleave.
    listeners: tokio::sync::Mutex<IndexMap<String, Listener>>,
    /// A copy of the listeners' bound addresses for lock-free reads.
    bound: ArcSwap<IndexMap<String, SocketAddr>>,
    live: ArcSwap<Live>,
    /// Fires when the drain starts; held by the config watcher.
    shutdown: Drain,
    /// Fires once the drain has ended: the admin listener answers (`/readyz` 503,
    /// `/metrics`) through the whole shutdown.
    admin_stop: Drain,
    metrics: Metrics,
}

/// The config that is serving now.
#[derive(Debug)]
pub struct Live {
    pub config: Config,
    /// 1 for the config strait started with, +1 for each successful reload.
    pub generation: u64,
    /// The file it came from, when there is one.
    pub source: Option<PathBuf>,
}

/// One entrypoint's socket. Its connections hold watches on `drain`, so the listener knows
/// when the last of them has finished.
#[derive(Debug)]
struct Listener {
    configured: SocketAddr,
    bound: SocketAddr,
    /// Settings for new connections: TLS, HTTP/2, lifecycle.
    settings: Arc<ArcSwap<ListenerConfig>>,
    drain: Drain,
    /// Stops the certificate watcher of the current TLS config.
    cert_watch: Option<Drain>,
}

/// Why strait could not start, or a reload could not be applied.
#[derive(Debug, thiserror::Error)]
pub enum StartError {
    #[error("{what} cannot listen on {address}: {source} (is another process using the port?)")]
    Bind {
        what: String,
        address: SocketAddr,
        source: std::io::Error,
    },
    #[error("TLS of {what}: {source}")]
    Tls {
        what: String,
        source: strait_tls::TlsError,
    },
    #[error("{}", .0.iter().map(ToString::to_string).collect::<Vec<_>>().join("\n"))]
    Config(Vec<strait_config::ConfigError>),
    #[error("there is no config file to reload (strait runs the embedded default or a config given in code)")]
    NoSource,
    #[error("strait is shutting down: the config is no longer reloaded")]
    ShuttingDown,
    #[error("cannot open the access log: {source}")]
    AccessLog { source: std::io::Error },
    #[error("cannot read the admin token file {path}: {source}")]
    Token {
        path: PathBuf,
        source: std::io::Error,
    },
}

/// Binds every listener of `config` and starts serving on the current Tokio runtime.
pub async fn start(config: Config) -> Result<Running, StartError> {
    let metrics = Metrics::new();
    let proxy = Proxy::empty(metrics.clone());
    let snapshot = proxy.prepare(&config)?;
    let tls = tls_listeners(&config)?;
    let mut sockets = Vec::with_capacity(config.entrypoints.len());
    for (name, entrypoint) in &config.entrypoints {
        sockets.push(bind(format!("entrypoint `{name}`"), entrypoint.address).await?);
    }
    let admin_listener = match &config.admin {
        Some(admin) => Some(bind("the admin listener".to_owned(), admin.address).await?),
        None => None,
    };

    proxy.install(snapshot);
    let shutdown = Drain::new().0;
    let admin_stop = Drain::new().0;
    let admin_state = AdminState::default();
    let mut listeners = IndexMap::new();
    for (((name, entrypoint), socket), tls) in config.entrypoints.iter().zip(sockets).zip(tls) {
        let listener = spawn_listener(name, entrypoint, socket, tls, &proxy)?;
        listeners.insert(name.clone(), listener);
    }
    let admin = match &admin_listener {
        Some(listener) => Some(local_addr(listener, "admin")?),
        None => None,
    };
    let token = match config.admin.as_ref().and_then(|a| a.token_file.as_ref()) {
        Some(path) => Some(read_token(path)?),
        None => None,
    };
    metrics.set_config_generation(1);
    let bound = bound_addresses(&listeners);
    let running = Running {
        state: Arc::new(State {
            proxy,
            admin,
            admin_state: admin_state.clone(),
            listeners: tokio::sync::Mutex::new(listeners),
            bound: ArcSwap::from_pointee(bound),
            live: ArcSwap::from_pointee(Live {
                config,
                generation: 1,
                source: None,
            }),
            shutdown,
            admin_stop,
            metrics,
        }),
    };
    if let (Some(listener), Some(address)) = (admin_listener, admin) {
        info!(%address, token = token.is_some(), "admin listening");
        let api = Arc::new(admin::AdminHandle {
            running: running.clone(),
        });
        tokio::spawn(strait_admin::serve(
            listener,
            admin_state.clone(),
            api,
            token,
            running.state.admin_stop.watch(),
        ));
    }
    admin_state.set_ready(true);
    Ok(running)
}

fn read_token(path: &std::path::Path) -> Result<Arc<str>, StartError> {
    let text = std::fs::read_to_string(path).map_err(|source| StartError::Token {
        path: path.to_owned(),
        source,
    })?;
    Ok(Arc::from(text.trim()))
}

fn tls_listeners(config: &Config) -> Result<Vec<Option<Arc<TlsListener>>>, StartError> {
    config
        .entrypoints
        .iter()
        .map(|(name, entrypoint)| match &entrypoint.tls {
            Some(settings) => TlsListener::new(name, settings)
                .map(|tls| Some(Arc::new(tls)))
                .map_err(|source| StartError::Tls {
                    what: format!("entrypoint `{name}`"),
                    source,
                }),
            None => Ok(None),
        })
        .collect()
}

fn spawn_listener(
    name: &str,
    entrypoint: &Entrypoint,
    socket: TcpListener,
    tls: Option<Arc<TlsListener>>,
    proxy: &Proxy,
) -> Result<Listener, StartError> {
    let bound = local_addr(&socket, name)?;
    info!(entrypoint = %name, address = %bound, tls = tls.is_some(), "listening");
    let (drain, watch) = Drain::new();
    let cert_watch = tls.as_ref().map(watch_certificates);
    let settings = Arc::new(ArcSwap::from_pointee(listener_config(entrypoint, tls)));
    tokio::spawn(strait_http::serve(
        socket,
        Arc::from(name),
        settings.clone(),
        BoxedHandler(proxy.clone()),
        proxy.metrics().clone(),
        watch,
    ));
    Ok(Listener {
        configured: entrypoint.address,
        bound,
        settings,
        drain,
        cert_watch,
    })
}

/// The proxy as the listeners' handler, with each request's future on the heap. A request's
/// future (routing, balancing, the upstream call, telemetry) is several KiB, and hyper and
/// tokio move it by value: into the stream task, into the task cell, between task stages.
/// Boxing it once turns those copies into pointer moves: callgrind counted ~55% of all
/// instructions per request in `memcpy` before (BENCHMARKS.md).
#[derive(Clone, Debug)]
struct BoxedHandler(Proxy);

impl strait_http::Handler for BoxedHandler {
    fn handle(
        &self,
        request: http::Request<strait_core::Body>,
        conn: &Arc<strait_http::ConnInfo>,
    ) -> impl std::future::Future<Output = http::Response<strait_core::Body>> + Send + 'static {
        Box::pin(self.0.handle(request, conn))
    }
}

fn listener_config(entrypoint: &Entrypoint, tls: Option<Arc<TlsListener>>) -> ListenerConfig {
    ListenerConfig {
        tls,
        protocols: entrypoint.protocols,
        http2: entrypoint.http2.clone(),
        lifecycle: entrypoint.lifecycle.clone(),
        limits: entrypoint.limits.clone(),
        path_normalization: entrypoint.path_normalization,
    }
}

fn watch_certificates(tls: &Arc<TlsListener>) -> Drain {
    let (drain, watch) = Drain::new();
    tokio::spawn(tls.store().clone().watch(watch));
    drain
}

fn bound_addresses(listeners: &IndexMap<String, Listener>) -> IndexMap<String, SocketAddr> {
    listeners
        .iter()
        .map(|(name, l)| (name.clone(), l.bound))
        .collect()
}

async fn bind(what: String, address: SocketAddr) -> Result<TcpListener, StartError> {
    TcpListener::bind(address)
        .await
        .map_err(|source| StartError::Bind {
            what,
            address,
            source,
        })
}

fn local_addr(listener: &TcpListener, what: &str) -> Result<SocketAddr, StartError> {
    listener.local_addr().map_err(|source| StartError::Bind {
        what: what.to_owned(),
        address: SocketAddr::from(([0, 0, 0, 0], 0)),
        source,
    })
}

// === impl Running ===

impl Running {
    /// The bound address of an entrypoint (useful with port 0).
    pub fn entrypoint(&self, name: &str) -> Option<SocketAddr> {
        self.state.bound.load().get(name).copied()
    }

    /// Every entrypoint's bound address.
    pub fn entrypoints(&self) -> IndexMap<String, SocketAddr> {
        IndexMap::clone(&self.state.bound.load())
    }

    pub fn admin(&self) -> Option<SocketAddr> {
        self.state.admin
    }

    pub fn proxy(&self) -> &Proxy {
        &self.state.proxy
    }

    /// The metric families behind `/metrics`.
    pub fn metrics(&self) -> &Metrics {
        &self.state.metrics
    }

    /// The config serving now.
    pub fn live(&self) -> Arc<Live> {
        self.state.live.load_full()
    }

    /// How long open requests may take to finish at shutdown (the live config's
    /// `drain_timeout`).
    pub fn drain_timeout(&self) -> Duration {
        self.state.live.load().config.drain_timeout
    }

    /// How long entrypoints keep accepting after a stop signal while `/readyz` already
    /// answers 503 (the live config's `lifecycle.accept_grace`).
    pub fn accept_grace(&self) -> Duration {
        self.state.live.load().config.lifecycle.accept_grace
    }

    /// A watch that fires when the drain starts: listeners stop accepting (after the accept
    /// grace, when [`Running::stop`] runs the sequence).
    pub fn drain_watch(&self) -> DrainWatch {
        self.state.shutdown.watch()
    }

    /// Applies `config` in place. It is checked completely first (TLS files, services,
    /// new sockets); on any error nothing changes and the old config keeps serving. Then new
    /// requests use the new routes and services while requests in flight finish on the old
    /// ones; entrypoints whose address did not change keep their socket (their TLS settings
    /// are swapped for new handshakes), added ones start, removed ones drain.
    pub async fn reload(&self, config: Config) -> Result<u64, StartError> {
        let result = self.apply(config).await;
        let generation = self.state.live.load().generation;
        self.state.metrics.config_reload(result.is_ok(), generation);
        result
    }

    async fn apply(&self, config: Config) -> Result<u64, StartError> {
        // Checked before and after the lock: the drain holds it until it has ended, and
        // listeners started now would never be drained.
        if self.draining() {
            return Err(StartError::ShuttingDown);
        }
        let mut listeners = self.state.listeners.lock().await;
        if self.draining() {
            return Err(StartError::ShuttingDown);
        }
        let snapshot = self.state.proxy.prepare(&config)?;
        let tls = tls_listeners(&config)?;
        let mut sockets = IndexMap::new();
        for (name, entrypoint) in &config.entrypoints {
            let kept = listeners
                .get(name)
                .is_some_and(|l| l.configured == entrypoint.address);
            if !kept {
                let socket = bind(format!("entrypoint `{name}`"), entrypoint.address).await?;
                sockets.insert(name.clone(), socket);
            }
        }

        // Everything is ready: switch.
        self.state.proxy.install(snapshot);
        let mut next = IndexMap::new();
        for ((name, entrypoint), tls) in config.entrypoints.iter().zip(tls) {
            let listener = match (listeners.shift_remove(name), sockets.shift_remove(name)) {
                (Some(mut old), None) => {
                    if let Some(stop) = old.cert_watch.take() {
                        stop.start();
                    }
                    old.cert_watch = tls.as_ref().map(watch_certificates);
                    old.settings
                        .store(Arc::new(listener_config(entrypoint, tls)));
                    old
                }
                (old, Some(socket)) => {
                    if let Some(old) = old {
                        retire(name, old);
                    }
                    spawn_listener(name, entrypoint, socket, tls, &self.state.proxy)?
                }
                (None, None) => continue,
            };
            next.insert(name.clone(), listener);
        }
        for (name, old) in listeners.drain(..) {
            retire(&name, old);
        }
        *listeners = next;
        self.state
            .bound
            .store(Arc::new(bound_addresses(&listeners)));
        let live = self.state.live.load();
        let generation = live.generation + 1;
        self.state.live.store(Arc::new(Live {
            config,
            generation,
            source: live.source.clone(),
        }));
        info!(generation, "config reloaded");
        Ok(generation)
    }

    /// Reloads the file strait was started from; errors come back with file:line:col.
    pub async fn reload_from_source(&self) -> Result<u64, StartError> {
        let Some(path) = self.state.live.load().source.clone() else {
            return Err(StartError::NoSource);
        };
        match strait_config::load(&path) {
            Ok(config) => self.reload(config).await,
            Err(errors) => {
                let generation = self.state.live.load().generation;
                self.state.metrics.config_reload(false, generation);
                Err(StartError::Config(errors))
            }
        }
    }

    /// Records `path` as the config's file and reloads whenever its content changes
    /// (checked every second, so editors and Kubernetes replacing the file are seen too).
    pub fn watch_config_file(&self, path: PathBuf) {
        let live = self.state.live.load();
        self.state.live.store(Arc::new(Live {
            config: live.config.clone(),
            generation: live.generation,
            source: Some(path.clone()),
        }));
        let running = self.clone();
        let mut stop = self.state.shutdown.watch();
        tokio::spawn(async move {
            let mut last = std::fs::read(&path).ok();
            loop {
                tokio::select! {
                    _ = stop.signaled() => return,
                    _ = tokio::time::sleep(CONFIG_WATCH_INTERVAL) => {}
                }
                let now = std::fs::read(&path).ok();
                if now.is_none() || now == last {
                    continue;
                }
                last = now;
                info!(file = %path.display(), "config file changed; reloading");
                if let Err(e) = running.reload_from_source().await {
                    log_reload_error(&e);
                }
            }
        });
    }

    fn draining(&self) -> bool {
        self.state.shutdown.watch().is_draining()
    }

    /// The whole shutdown sequence, with the live config's settings: `/readyz` answers 503 at
    /// once so load balancers stop sending, entrypoints keep accepting and serving for
    /// `lifecycle.accept_grace`, then [`Running::shutdown`] drains for up to
    /// `drain_timeout`. The admin listener answers until the end. Returns false if
    /// connections were still open when the drain timeout ran out.
    pub async fn stop(self) -> bool {
        self.state.admin_state.set_ready(false);
        let accept_grace = self.accept_grace();
        if !accept_grace.is_zero() {
            info!("not ready; accepting for {accept_grace:?} more before draining");
            tokio::time::sleep(accept_grace).await;
        }
        let grace = self.drain_timeout();
        info!("shutting down: no new connections; open requests have {grace:?} to finish");
        let drained = self.shutdown(grace).await;
        if !drained {
            warn!("connections still open after {grace:?}; closing them");
        }
        drained
    }

    /// The drain: `/readyz` answers 503, listeners stop accepting, open connections are told
    /// to finish (HTTP/2 GOAWAY, HTTP/1.1 `connection: close`), and they get up to `grace` to
    /// end; then the admin listener stops. Returns false if some were still open when
    /// `grace` ran out.
    pub async fn shutdown(self, grace: Duration) -> bool {
        self.state.admin_state.set_ready(false);
        self.state.shutdown.start();
        let mut listeners = self.state.listeners.lock().await;
        for listener in listeners.values_mut() {
            listener.drain.start();
            if let Some(stop) = listener.cert_watch.take() {
                stop.start();
            }
        }
        let all = futures_util::future::join_all(listeners.values().map(|l| l.drain.drained()));
        let drained = tokio::time::timeout(grace, all).await.is_ok();
        self.state.admin_stop.start();
        drained
    }
}

/// Logs a refused reload with every error and its location.
pub fn log_reload_error(err: &StartError) {
    match err {
        StartError::Config(errors) => {
            for e in errors {
                error!("{e}");
            }
            error!("config reload refused; the previous config keeps serving");
        }
        e => error!("config reload refused; the previous config keeps serving: {e}"),
    }
}

/// A removed or moved entrypoint stops accepting; its connections finish what they have in
/// flight, for at most the drain timeout.
fn retire(name: &str, mut listener: Listener) {
    info!(entrypoint = %name, address = %listener.bound, "entrypoint removed; draining");
    listener.drain.start();
    if let Some(stop) = listener.cert_watch.take() {
        stop.start();
    }
    tokio::spawn(async move {
        let _ = tokio::time::timeout(RETIRE_GRACE, listener.drain.drained()).await;
    });
}
