//! Why dmvpnd stopped or could not start: one variant per cause, so the
//! exit status and the message follow from it.

use std::io;
use std::net::SocketAddr;
use std::path::PathBuf;

use crate::runtime::control_socket::ServerError;

#[derive(Debug, thiserror::Error)]
pub enum DaemonError {
    /// The file failed validation: `FILE:LINE:COL: key: problem (fix)`
    /// lines, as `--check` prints them.
    #[error("{}", .0.diagnostics.iter().map(|d| d.to_string()).collect::<Vec<_>>().join("\n"))]
    Config(#[from] dmvpn_config::ConfigErrors),
    /// Valid, but not something this node can run.
    #[error("{0}")]
    Unrunnable(#[from] dmvpn_node::control::config_map::MapError),
    #[error("cannot start the runtime: {0}")]
    Runtime(io::Error),
    /// The tunnel's source interface does not exist or cannot be read.
    #[error("{0}")]
    Source(String),
    #[error("cannot read the OS random source: {0}")]
    Random(String),
    #[error("key log {}: {reason}", path.display())]
    KeyLog { path: PathBuf, reason: String },
    #[error("cannot create TUN device {name}: {source}")]
    Tun { name: String, source: io::Error },
    #[error("cannot add route {prefix} via {tunnel}: {source}")]
    Route {
        prefix: String,
        tunnel: String,
        source: io::Error,
    },
    #[error("{0}")]
    Sockets(io::Error),
    #[error(transparent)]
    Control(#[from] ServerError),
    #[error("metrics: cannot listen on {addr}: {source}")]
    Metrics { addr: SocketAddr, source: io::Error },
    #[error("cannot watch signals: {0}")]
    Signals(io::Error),
    /// The TUN device failed while running.
    #[error("TUN {name} failed: {source}")]
    TunFailed { name: String, source: io::Error },
}

impl DaemonError {
    /// Exit status: 2 for a configuration `--check` would refuse (as
    /// `--check` itself exits), 1 for everything else.
    pub fn exit_code(&self) -> u8 {
        match self {
            DaemonError::Config(_) => 2,
            _ => 1,
        }
    }
}
