//! dmvpn-agent: the user-space data plane (GRE, ESP, anti-replay, SA
//! database, MTU handling) and the tokio runtime pieces (TUN, sockets)
//! that `dmvpnd` is built from.

pub mod daemon;
pub mod datapath;
pub mod node;
pub mod runtime;
