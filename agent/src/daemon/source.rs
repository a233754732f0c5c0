//! The tunnel source: the NBMA address dmvpnd sends from. A configured
//! address is used as written; an interface's primary IPv4 address is
//! resolved at start and followed while dmvpnd runs (DHCP renewal with a
//! new lease, failover), so that the node re-registers from the new
//! address without a restart.
//!
//! An interface with no IPv4 address at start holds the start (logged)
//! until one appears, as IOS keeps a tunnel down until its source has an
//! address; an interface that does not exist is a configuration error.
//! Losing the address while running keeps the last one (logged once):
//! nothing can be sent until an address returns.

use std::net::Ipv4Addr;

use tracing::{info, warn};

use crate::runtime::rtnl::{self, Watch};

/// What the kernel says about a [`Source`] (read off the event loop, by
/// the kernel worker).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Reading {
    /// The interface's primary IPv4 address (`None`: it has none).
    Interface(Option<Ipv4Addr>),
    /// Whether the configured address is on some interface.
    Address(bool),
}

/// Where the NBMA address comes from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Source {
    Address(Ipv4Addr),
    Interface { name: String, index: u32 },
}

impl Source {
    /// The source of a mapped configuration; an interface must exist.
    pub fn of(cfg: &dmvpn_node::control::NodeConfig) -> Result<Source, String> {
        match &cfg.source_interface {
            None => Ok(Source::Address(cfg.nbma)),
            Some(name) => {
                let index = rtnl::ifindex(name).map_err(|e| {
                    format!("tunnel {}: source interface {name}: {e}", cfg.interface)
                })?;
                Ok(Source::Interface {
                    name: name.clone(),
                    index,
                })
            }
        }
    }

    /// The address to send from now: the configured one, or the
    /// interface's primary IPv4 address (`None` while it has none). An
    /// address that another tunnel of this dmvpnd has as its source is
    /// that tunnel's: the next one of the interface is taken instead.
    pub fn current(&self) -> Option<Ipv4Addr> {
        match self {
            Source::Address(a) => Some(*a),
            Source::Interface { name, index } => match rtnl::ipv4_addresses(*index) {
                Ok(v) => v
                    .iter()
                    .map(|(a, _)| *a)
                    .find(|a| !super::routes::is_own_nbma(*a)),
                Err(e) => {
                    warn!(target: "dmvpn::ctl", "cannot read the addresses of {name}: {e}");
                    None
                }
            },
        }
    }

    /// Reads what the kernel says about this source now (blocking: a
    /// netlink dump of the interfaces' addresses).
    pub fn read(&self) -> Reading {
        match self {
            Source::Interface { .. } => Reading::Interface(self.current()),
            Source::Address(a) => Reading::Address(rtnl::has_ipv4_address(*a).unwrap_or(true)),
        }
    }

    /// Whether the UDP sockets must take datagrams to any local address
    /// (an interface source changes address under them).
    pub fn follows_interface(&self) -> bool {
        matches!(self, Source::Interface { .. })
    }

    /// Waits (logging once) until the interface has an IPv4 address.
    pub async fn first_address(&self) -> Ipv4Addr {
        if let Some(a) = self.current() {
            return a;
        }
        let Source::Interface { name, .. } = self else {
            unreachable!("an address source always has its address");
        };
        warn!(target: "dmvpn::ctl", "tunnel source {name} has no IPv4 address yet: waiting for one (the tunnel stays down until then)");
        let watch = Watch::addresses().ok();
        loop {
            let tick = tokio::time::sleep(std::time::Duration::from_secs(1));
            match &watch {
                Some(w) => {
                    tokio::select! {
                        _ = w.changed() => {},
                        _ = tick => {},
                    }
                }
                None => tick.await,
            }
            if let Some(a) = self.current() {
                info!(target: "dmvpn::ctl", "tunnel source {name} has address {a}");
                return a;
            }
        }
    }
}

/// Follows the source while dmvpnd runs: [`SourceWatch::check`] after each
/// address notification (and on a slow poll) says whether the NBMA address
/// changed.
pub struct SourceWatch {
    pub source: Source,
    /// The last problem logged (address gone), so it is logged once.
    missing: bool,
}

impl SourceWatch {
    pub fn new(source: Source) -> SourceWatch {
        SourceWatch {
            source,
            missing: false,
        }
    }

    /// The new NBMA address if it is no longer `current`, reading the
    /// kernel now ([`Source::read`], then [`SourceWatch::apply`]).
    pub fn check(&mut self, current: Ipv4Addr) -> Option<Ipv4Addr> {
        let r = self.source.read();
        self.apply(current, r)
    }

    /// The new NBMA address if `reading` says it is no longer `current`.
    /// A source that lost its address is logged once (and again once it
    /// is back).
    pub fn apply(&mut self, current: Ipv4Addr, reading: Reading) -> Option<Ipv4Addr> {
        match (&self.source, reading) {
            (Source::Interface { name, .. }, Reading::Interface(a)) => match a {
                Some(a) => {
                    self.missing = false;
                    (a != current).then_some(a)
                }
                None => {
                    if !self.missing {
                        warn!(target: "dmvpn::ctl", "tunnel source {name} lost its IPv4 address {current}: the tunnel is down until it has one");
                    }
                    self.missing = true;
                    None
                }
            },
            (Source::Address(a), Reading::Address(present)) => {
                if !present && !self.missing {
                    warn!(target: "dmvpn::ctl", "tunnel source address {a} is no longer on any interface: nothing can be sent until it is back (with `source = \"<interface>\"` dmvpnd follows an interface's address)");
                } else if present && self.missing {
                    info!(target: "dmvpn::ctl", "tunnel source address {a} is back");
                }
                self.missing = !present;
                None
            }
            // A reading of another source (not made by this watch).
            _ => None,
        }
    }
}
