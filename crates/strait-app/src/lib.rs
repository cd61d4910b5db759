//! Wiring and lifecycle: builds listeners and the proxy from a config snapshot, runs them,
//! and drains on shutdown.

mod deadline;
pub mod demo;
mod proxy;

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use indexmap::IndexMap;
use strait_admin::AdminState;
use strait_config::Config;
use strait_core::{Drain, DrainWatch};
use strait_tls::TlsListener;
use tokio::net::TcpListener;
use tokio::task::JoinSet;
use tracing::info;

pub use proxy::Proxy;

/// A running strait: its bound addresses and the handle to stop it.
#[derive(Debug)]
pub struct Running {
    entrypoints: IndexMap<String, SocketAddr>,
    admin: Option<SocketAddr>,
    admin_state: AdminState,
    proxy: Proxy,
    drain: Drain,
    tasks: JoinSet<()>,
}

/// Why strait could not start.
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
}

/// Binds every listener of `config` and starts serving on the current Tokio runtime.
pub async fn start(config: Config) -> Result<Running, StartError> {
    let (drain, watch) = Drain::new();
    let proxy = Proxy::new(&config)?;
    let mut tls = Vec::with_capacity(config.entrypoints.len());
    for (name, entrypoint) in &config.entrypoints {
        tls.push(match &entrypoint.tls {
            Some(settings) => Some(Arc::new(TlsListener::new(name, settings).map_err(
                |source| StartError::Tls {
                    what: format!("entrypoint `{name}`"),
                    source,
                },
            )?)),
            None => None,
        });
    }
    let admin_state = AdminState::default();
    let mut tasks = JoinSet::new();

    let mut listeners = Vec::with_capacity(config.entrypoints.len());
    for (name, entrypoint) in &config.entrypoints {
        let listener = bind(format!("entrypoint `{name}`"), entrypoint.address).await?;
        listeners.push((name.clone(), listener));
    }
    let admin_listener = match &config.admin {
        Some(admin) => Some(bind("the admin listener".to_owned(), admin.address).await?),
        None => None,
    };

    let mut entrypoints = IndexMap::new();
    for (index, ((name, listener), tls)) in listeners.into_iter().zip(tls).enumerate() {
        let address = local_addr(&listener, &name)?;
        info!(entrypoint = %name, %address, tls = tls.is_some(), "listening");
        entrypoints.insert(name.clone(), address);
        if let Some(tls) = &tls {
            tasks.spawn(tls.store().clone().watch(watch.clone()));
        }
        tasks.spawn(strait_http::serve(
            listener,
            Arc::from(name.as_str()),
            index,
            tls,
            proxy.clone(),
            watch.clone(),
        ));
    }
    let admin = match admin_listener {
        Some(listener) => {
            let address = local_addr(&listener, "admin")?;
            info!(%address, "admin listening");
            tasks.spawn(strait_admin::serve(
                listener,
                admin_state.clone(),
                watch.clone(),
            ));
            Some(address)
        }
        None => None,
    };
    admin_state.set_ready(true);
    Ok(Running {
        entrypoints,
        admin,
        admin_state,
        proxy,
        drain,
        tasks,
    })
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
        self.entrypoints.get(name).copied()
    }

    pub fn entrypoints(&self) -> &IndexMap<String, SocketAddr> {
        &self.entrypoints
    }

    pub fn admin(&self) -> Option<SocketAddr> {
        self.admin
    }

    pub fn proxy(&self) -> &Proxy {
        &self.proxy
    }

    /// A watch that fires when shutdown starts.
    pub fn drain_watch(&self) -> DrainWatch {
        self.drain.watch()
    }

    /// Stops accepting, tells open connections to finish (HTTP/2 GOAWAY, HTTP/1.1
    /// `connection: close`), and waits up to `grace` for them to end. Returns false if some
    /// were still open when `grace` ran out.
    pub async fn shutdown(mut self, grace: Duration) -> bool {
        self.admin_state.set_ready(false);
        self.drain.start();
        while self.tasks.join_next().await.is_some() {}
        tokio::time::timeout(grace, self.drain.drained())
            .await
            .is_ok()
    }
}
