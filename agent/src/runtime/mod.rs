//! tokio runtime pieces: the TUN device, the underlay sockets, the
//! direct send path, netlink and netfilter probing. No protocol decision
//! is made here.

pub mod direct;
pub mod netfilter;
pub mod netlink;
pub mod rtnl;
pub mod sockets;
pub mod tun;
