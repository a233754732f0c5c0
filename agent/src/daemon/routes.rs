//! What the kernel routing table says about the overlay: networks behind
//! this node (answered in NHRP resolutions) and routes through the tunnel
//! with a next hop (installed by an operator or a routing daemon such as
//! FRR), which tell a hub which spoke owns a LAN.
//!
//! dmvpnd's own routes ([`ROUTE_PROTOCOL`]: shortcuts, registered
//! clients) are left out of both: the node must not learn back what it
//! taught the kernel.

use dmvpn_wire::Prefix;
use std::net::{IpAddr, Ipv4Addr};

use crate::runtime::rtnl::{self, ROUTE_PROTOCOL, Route};

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
        .filter(|r| r.protocol != ROUTE_PROTOCOL)
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
    let table = rtnl::routes_through(tun).unwrap_or_else(|e| {
        tracing::warn!("cannot read the routing table: {e}");
        Vec::new()
    });
    via_tunnel(&table, tun)
}

fn via_tunnel(table: &[Route], tunnel: u32) -> Vec<(Ipv4Addr, u8, Ipv4Addr)> {
    table
        .iter()
        .filter(|r| r.protocol != ROUTE_PROTOCOL && r.oif == Some(tunnel))
        .filter_map(|r| r.gateway.map(|g| (r.prefix, r.len, g)))
        .collect()
}

fn contains(p: Ipv4Addr, l: u8, a: Ipv4Addr) -> bool {
    Prefix::new(IpAddr::V4(p), l).contains_addr(IpAddr::V4(a))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn route(p: &str, len: u8, gw: Option<&str>, oif: u32, protocol: u8) -> Route {
        Route {
            prefix: p.parse().unwrap(),
            len,
            gateway: gw.map(|g| g.parse().unwrap()),
            oif: Some(oif),
            link_scope: gw.is_none(),
            protocol,
            metric: 0,
        }
    }

    #[test]
    fn dmvpnds_own_routes_are_not_read_back() {
        let tun = 7;
        let table = [
            route("10.3.0.0", 24, Some("192.168.1.3"), tun, 12),
            route("10.4.0.0", 24, None, tun, ROUTE_PROTOCOL),
            route("10.5.0.0", 24, Some("192.168.1.5"), tun, ROUTE_PROTOCOL),
            route("10.2.0.0", 24, None, 3, 2),
            route("10.6.0.0", 24, None, 3, ROUTE_PROTOCOL),
        ];
        let a = |s: &str| s.parse::<Ipv4Addr>().unwrap();
        assert_eq!(
            via_tunnel(&table, tun),
            [(a("10.3.0.0"), 24, a("192.168.1.3"))]
        );
        assert_eq!(
            lan_prefixes(&table, Some(tun), a("172.16.0.2")),
            [(a("10.2.0.0"), 24)]
        );
    }
}
