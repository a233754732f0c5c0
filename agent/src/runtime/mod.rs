//! tokio runtime pieces: the TUN device, the underlay sockets, the
//! direct send path, netlink and netfilter probing, the control socket's
//! server. No protocol decision
//! is made here.

pub mod control_socket;
pub mod direct;
pub mod netfilter;
pub mod netlink;
pub mod rtnl;
pub mod sockets;
pub mod tun;
