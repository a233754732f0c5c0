//! What the kernel routing table says about the overlay: networks behind
//! this node (answered in NHRP resolutions) and routes through the tunnel
//! with a next hop (installed by an operator or a routing daemon such as
//! FRR), which tell a hub which spoke owns a LAN.

use dmvpn_wire::Prefix;
use std::net::{IpAddr, Ipv4Addr};

use crate::runtime::rtnl::{self, Route};

/// The main table, or nothing (logged) when the kernel does not answer.
fn main_table() -> Vec<Route> {
    rtnl::main_table().unwrap_or_else(|e| {
        tracing::warn!("cannot read the routing table: {e}");
        Vec::new()
    })
}

/// Directly connected networks on other interfaces than the tunnel,
/// except the one holding the NBMA address: the LANs behind this node.
pub fn local_prefixes(tunnel: &str, nbma: Ipv4Addr) -> Vec<(Ipv4Addr, u8)> {
    let tun = rtnl::ifindex(tunnel).ok();
    lan_prefixes(&main_table(), tun, nbma)
}

fn lan_prefixes(table: &[Route], tunnel: Option<u32>, nbma: Ipv4Addr) -> Vec<(Ipv4Addr, u8)> {
    table
        .iter()
        .filter(|r| {
            r.link_scope
                && r.gateway.is_none()
                && r.oif != tunnel
                && r.len > 0
                && !contains(r.prefix, r.len, nbma)
                && !r.prefix.is_loopback()
        })
        .map(|r| (r.prefix, r.len))
        .collect()
}

/// Routes through `tunnel` that name a next hop.
pub fn tunnel_routes(tunnel: &str) -> Vec<(Ipv4Addr, u8, Ipv4Addr)> {
    let Ok(tun) = rtnl::ifindex(tunnel) else {
        return Vec::new();
    };
    via_tunnel(&main_table(), tun)
}

fn via_tunnel(table: &[Route], tunnel: u32) -> Vec<(Ipv4Addr, u8, Ipv4Addr)> {
    table
        .iter()
        .filter(|r| r.oif == Some(tunnel))
        .filter_map(|r| r.gateway.map(|g| (r.prefix, r.len, g)))
        .collect()
}

fn contains(p: Ipv4Addr, l: u8, a: Ipv4Addr) -> bool {
    Prefix::new(IpAddr::V4(p), l).contains_addr(IpAddr::V4(a))
}
