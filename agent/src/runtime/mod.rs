//! tokio runtime pieces: they move bytes between the TUN device and the
//! underlay sockets and call into the sans-IO data plane; no protocol
//! decision is made here.

pub mod dataplane;
pub mod direct;
pub mod netfilter;
pub mod netlink;
pub mod rtnl;
pub mod sockets;
pub mod tun;
