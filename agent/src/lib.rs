//! dmvpn-agent: the I/O around the DMVPN node that `dmvpnd` is built
//! from — the TUN device, the underlay sockets and direct send path,
//! netlink, netfilter probing, logging, the key-log file and the daemon's
//! event loop. The node itself (every protocol and forwarding decision)
//! is `dmvpn_node::Router`.

pub mod daemon;
pub mod runtime;
