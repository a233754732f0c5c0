//! Which of the node's routes the kernel's routing table shows: the ones
//! NHRP taught it (shortcuts once they carry traffic, and on a hub the
//! registered spokes), as FRR's nhrpd and IOS (`H` routes) show theirs.
//! Configured routes, static maps and routes read from the kernel are
//! not reported: they are the operator's or a routing daemon's.
//!
//! The node only decides; the driver installs and removes (dmvpnd through
//! the TUN device, with its own route protocol number). A route that
//! covers an NBMA address the tunnel sends to (ours, the NHSs', the one it
//! leads to) is never reported: in the kernel it would route the tunnel's
//! own outer packets into the tunnel.

use std::collections::BTreeSet;
use std::net::{IpAddr, Ipv4Addr};

use dmvpn_wire::prefix::Prefix;

/// A change to the kernel's routing table: `prefix/len` into the tunnel.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum KernelRoute {
    Install { prefix: IpAddr, len: u8 },
    Remove { prefix: IpAddr, len: u8 },
}

impl std::fmt::Display for KernelRoute {
    /// `install 10.3.0.0/24`, `remove 192.168.1.3/32`.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            KernelRoute::Install { prefix, len } => write!(f, "install {prefix}/{len}"),
            KernelRoute::Remove { prefix, len } => write!(f, "remove {prefix}/{len}"),
        }
    }
}

/// What the driver has been told, and which prefixes came from
/// registrations.
#[derive(Debug, Default)]
pub(super) struct KernelRoutes {
    /// Prefixes clients registered with us (hub).
    registered: BTreeSet<(IpAddr, u8)>,
    /// Prefixes the driver was told to install and not yet to remove.
    installed: BTreeSet<(IpAddr, u8)>,
}

impl KernelRoutes {
    pub(super) fn register(&mut self, key: (IpAddr, u8)) {
        self.registered.insert(key);
    }

    pub(super) fn unregister(&mut self, key: (IpAddr, u8)) {
        self.registered.remove(&key);
    }

    pub(super) fn is_registered(&self, key: &(IpAddr, u8)) -> bool {
        self.registered.contains(key)
    }

    /// The change that makes the kernel show `key` (or not), if any.
    pub(super) fn set(&mut self, key: (IpAddr, u8), wanted: bool) -> Option<KernelRoute> {
        let (prefix, len) = key;
        if wanted && self.installed.insert(key) {
            Some(KernelRoute::Install { prefix, len })
        } else if !wanted && self.installed.remove(&key) {
            Some(KernelRoute::Remove { prefix, len })
        } else {
            None
        }
    }

    /// The prefixes currently installed, in order.
    pub(super) fn installed(&self) -> Vec<(IpAddr, u8)> {
        self.installed.iter().copied().collect()
    }
}

/// Whether `prefix/len` contains any of `addrs`.
pub(super) fn covers(prefix: IpAddr, len: u8, addrs: &[Ipv4Addr]) -> bool {
    let p = Prefix::new(prefix, len);
    addrs.iter().any(|a| p.contains_addr(IpAddr::V4(*a)))
}
