//! The control socket's and the metrics endpoint's server tasks. A
//! reload that changes `[control]` or `[metrics]` binds the new socket
//! first ([`Listeners::prepare`]: a bind that fails refuses the reload,
//! and the old one keeps serving), then replaces the old server task
//! ([`Listeners::commit`]). Connections already open, such as the
//! `dmvpnctl reload` that asked, keep their own tasks and get their
//! answers.

use std::net::SocketAddr;

use tokio::sync::mpsc;
use tokio::task::JoinHandle;
use tracing::{info, warn};

use super::error::DaemonError;
use super::metrics;
use crate::runtime::control_socket::{self, ControlRequest, ControlSocket, SocketOptions};

/// The running server tasks and the channel their requests go into.
pub struct Listeners {
    handler: mpsc::Sender<ControlRequest>,
    control: (SocketOptions, JoinHandle<std::io::Result<()>>),
    metrics: Option<(SocketAddr, JoinHandle<()>)>,
}

/// Sockets bound for a reload, not yet serving.
#[derive(Default)]
pub struct Prepared {
    /// The control socket at its new path.
    control_moved: Option<(SocketOptions, ControlSocket)>,
    /// The same path with another mode or group.
    control_permissions: Option<SocketOptions>,
    /// `Some(None)`: stop serving metrics.
    metrics: Option<Option<(SocketAddr, tokio::net::TcpListener)>>,
}

impl Listeners {
    /// Binds the control socket and, when `[metrics] listen` is set, the
    /// metrics endpoint, and starts serving both into `handler`.
    pub async fn start(
        cfg: &dmvpn_config::Config,
        handler: mpsc::Sender<ControlRequest>,
    ) -> Result<Listeners, DaemonError> {
        let opts = SocketOptions::from_config(&cfg.control);
        let socket = ControlSocket::bind(&opts)?;
        let metrics = match cfg.metrics.listen {
            Some(addr) => {
                let l = tokio::net::TcpListener::bind(addr)
                    .await
                    .map_err(|source| DaemonError::Metrics { addr, source })?;
                info!("metrics on http://{addr}/metrics");
                Some((addr, tokio::spawn(metrics::serve(l, handler.clone()))))
            }
            None => None,
        };
        let server = tokio::spawn(control_socket::serve(socket, handler.clone()));
        Ok(Listeners {
            handler,
            control: (opts, server),
            metrics,
        })
    }

    /// Binds what `new` asks for and the running listeners do not serve
    /// yet; nothing changes until [`Listeners::commit`]. The reason of a
    /// bind that fails refuses the reload.
    pub fn prepare(&self, new: &dmvpn_config::Config) -> Result<Prepared, String> {
        let mut p = Prepared::default();
        let opts = SocketOptions::from_config(&new.control);
        let running = &self.control.0;
        if opts.path != running.path {
            let s = ControlSocket::bind(&opts).map_err(|e| e.to_string())?;
            p.control_moved = Some((opts, s));
        } else if opts != *running {
            p.control_permissions = Some(opts);
        }
        let serving = self.metrics.as_ref().map(|(a, _)| *a);
        if new.metrics.listen != serving {
            p.metrics = Some(match new.metrics.listen {
                Some(addr) => {
                    let l = bind_tcp(addr)
                        .map_err(|e| format!("metrics endpoint: cannot listen on {addr}: {e}"))?;
                    Some((addr, l))
                }
                None => None,
            });
        }
        Ok(p)
    }

    /// Serves on what [`Listeners::prepare`] bound and stops the servers
    /// it replaces (an old control socket file is removed).
    pub fn commit(&mut self, p: Prepared) {
        if let Some((opts, socket)) = p.control_moved {
            let server = tokio::spawn(control_socket::serve(socket, self.handler.clone()));
            let (old, task) = std::mem::replace(&mut self.control, (opts, server));
            task.abort();
            info!(target: "dmvpn::ctl", "control socket moved from {} to {}", old.path.display(), self.control.0.path.display());
        }
        if let Some(opts) = p.control_permissions {
            match control_socket::set_permissions(&opts) {
                Ok(()) => self.control.0 = opts,
                Err(e) => warn!(target: "dmvpn::ctl", "{e}"),
            }
        }
        if let Some(m) = p.metrics {
            if let Some((addr, task)) = self.metrics.take() {
                task.abort();
                info!("metrics no longer on http://{addr}/metrics");
            }
            if let Some((addr, l)) = m {
                info!("metrics on http://{addr}/metrics");
                self.metrics = Some((addr, tokio::spawn(metrics::serve(l, self.handler.clone()))));
            }
        }
    }

    /// Stops both servers (connections already open finish on their own)
    /// and waits until the control socket file is removed.
    pub async fn stop(self) {
        if let Some((_, task)) = self.metrics {
            task.abort();
        }
        self.control.1.abort();
        let _ = self.control.1.await;
    }
}

/// A listening TCP socket for the running tokio runtime, bound at once
/// (as `tokio::net::TcpListener::bind` does, without waiting).
fn bind_tcp(addr: SocketAddr) -> std::io::Result<tokio::net::TcpListener> {
    let l = std::net::TcpListener::bind(addr)?;
    l.set_nonblocking(true)?;
    tokio::net::TcpListener::from_std(l)
}
