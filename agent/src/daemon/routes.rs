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
use std::sync::Mutex;

use crate::runtime::rtnl::{self, ROUTE_PROTOCOL, Route};

/// The main table, or nothing (logged) when the kernel does not answer.
fn main_table() -> Vec<Route> {
    rtnl::main_table().unwrap_or_else(|e| {
        tracing::warn!("cannot read the routing table: {e}");
        Vec::new()
    })
}

/// The tunnel interfaces (by index) and NBMA addresses of every tunnel
/// this dmvpnd runs: with several tunnels, no tunnel counts another's
/// subnet or underlay network among the LANs behind the node.
static TUNNELS: Mutex<(Vec<u32>, Vec<Ipv4Addr>)> = Mutex::new((Vec::new(), Vec::new()));

/// Whether another tunnel of this dmvpnd has `nbma` as its source.
pub fn is_own_nbma(nbma: Ipv4Addr) -> bool {
    TUNNELS
        .lock()
        .unwrap_or_else(|e| e.into_inner())
        .1
        .contains(&nbma)
}

/// Another tunnel of this dmvpnd uses `nbma`.
pub fn own_nbma(nbma: Ipv4Addr) {
    TUNNELS
        .lock()
        .unwrap_or_else(|e| e.into_inner())
        .1
        .push(nbma);
}

/// Another tunnel of this dmvpnd is the interface `ifindex`.
pub fn own_tunnel(ifindex: u32) {
    TUNNELS
        .lock()
        .unwrap_or_else(|e| e.into_inner())
        .0
        .push(ifindex);
}

/// The metric of dmvpnd's IPv6 routes with one tunnel: one below the
/// kernel's default (1024), which the tunnel's configured routes get.
pub const IPV6_METRIC: u32 = 1023;

/// A tunnel of this dmvpnd follows the address of interface `ifindex`
/// (an interface source beside other tunnels): the networks on it are
/// underlay, never LANs behind the node, whatever its address becomes.
pub fn own_underlay(ifindex: u32) {
    own_tunnel(ifindex);
}

/// The metric for dmvpnd's route `prefix/len` through `oif`. With one
/// tunnel, 0 (IPv4) or [`IPV6_METRIC`]. With several, that of the most
/// specific route through the same tunnel that covers it (the
/// operator's or a routing daemon's), so a shortcut ranks as the route
/// it shortcuts and the preference between tunnels (e.g. metric 10
/// through Tunnel0, 20 through Tunnel1) holds. A hub runs one tunnel: it
/// is not read a table per registration.
///
/// IPv6 has no `prepend`: a route of the same prefix and metric as one
/// already there is refused, so dmvpnd's IPv6 routes take one less than
/// the route they would sit beside, which also puts them in front.
pub fn metric_for(oif: u32, prefix: IpAddr, len: u8) -> u32 {
    let several = !TUNNELS
        .lock()
        .unwrap_or_else(|e| e.into_inner())
        .0
        .is_empty();
    match prefix {
        IpAddr::V4(_) if !several => 0,
        IpAddr::V6(_) if !several => IPV6_METRIC,
        IpAddr::V4(p) => match rtnl::routes_through(oif) {
            Ok(table) => covering_metric(&table, p, len),
            Err(_) => 0,
        },
        IpAddr::V6(p) => match rtnl::routes_through_v6(oif) {
            Ok(table) => covering_metric_v6(&table, p, len),
            Err(_) => IPV6_METRIC,
        },
    }
}

/// One below the metric of the most specific IPv6 route through the
/// tunnel covering `prefix/len` (1024, the kernel's default, when none).
fn covering_metric_v6(table: &[rtnl::Route6], prefix: std::net::Ipv6Addr, len: u8) -> u32 {
    let covering = table
        .iter()
        .filter(|r| {
            r.protocol != ROUTE_PROTOCOL
                && r.len <= len
                && Prefix::new(IpAddr::V6(r.prefix), r.len).contains_addr(IpAddr::V6(prefix))
        })
        .max_by_key(|r| (r.len, std::cmp::Reverse(r.metric)))
        .map_or(IPV6_METRIC + 1, |r| r.metric);
    covering.saturating_sub(1).max(1)
}

fn covering_metric(table: &[Route], prefix: Ipv4Addr, len: u8) -> u32 {
    table
        .iter()
        .filter(|r| {
            r.protocol != ROUTE_PROTOCOL && r.len <= len && contains(r.prefix, r.len, prefix)
        })
        .max_by_key(|r| (r.len, std::cmp::Reverse(r.metric)))
        .map_or(0, |r| r.metric)
}

/// Directly connected networks on other interfaces than the tunnel (and
/// this dmvpnd's other tunnels), except those holding the NBMA address
/// (or the other tunnels'): the LANs behind this node.
pub fn local_prefixes(tunnel: &str, nbma: Ipv4Addr) -> Vec<(IpAddr, u8)> {
    let (mut tunnels, mut nbmas) = TUNNELS.lock().unwrap_or_else(|e| e.into_inner()).clone();
    tunnels.extend(rtnl::ifindex(tunnel).ok());
    nbmas.push(nbma);
    let mut v: Vec<(IpAddr, u8)> = lan_prefixes(&main_table(), &tunnels, &nbmas)
        .into_iter()
        .map(|(p, l)| (IpAddr::V4(p), l))
        .collect();
    let table6 = rtnl::main_table_v6().unwrap_or_else(|e| {
        tracing::warn!("cannot read the IPv6 routing table: {e}");
        Vec::new()
    });
    v.extend(lan_prefixes_v6(&table6, &tunnels));
    v
}

/// `rtm_protocol` of the routes the kernel adds for an interface's
/// addresses.
const KERNEL_PROTOCOL: u8 = 2;

/// The IPv6 LANs: connected prefixes (the kernel's, no next hop) on
/// other interfaces than the tunnels.
fn lan_prefixes_v6(table: &[rtnl::Route6], tunnels: &[u32]) -> Vec<(IpAddr, u8)> {
    table
        .iter()
        .filter(|r| {
            r.protocol == KERNEL_PROTOCOL
                && r.gateway.is_none()
                && !r.oif.is_some_and(|i| tunnels.contains(&i))
                && r.len > 0
                && !r.prefix.is_loopback()
        })
        .map(|r| (IpAddr::V6(r.prefix), r.len))
        .collect()
}

fn lan_prefixes(table: &[Route], tunnels: &[u32], nbmas: &[Ipv4Addr]) -> Vec<(Ipv4Addr, u8)> {
    table
        .iter()
        .filter(|r| r.protocol != ROUTE_PROTOCOL)
        .filter(|r| {
            r.link_scope
                && r.gateway.is_none()
                && !r.oif.is_some_and(|i| tunnels.contains(&i))
                && r.len > 0
                && !nbmas.iter().any(|a| contains(r.prefix, r.len, *a))
                && !r.prefix.is_loopback()
        })
        .map(|r| (r.prefix, r.len))
        .collect()
}

/// Routes through `tunnel` that name a next hop.
pub fn tunnel_routes(tunnel: &str) -> Vec<(IpAddr, u8, IpAddr)> {
    let Ok(tun) = rtnl::ifindex(tunnel) else {
        return Vec::new();
    };
    let table = rtnl::routes_through(tun).unwrap_or_else(|e| {
        tracing::warn!("cannot read the routing table: {e}");
        Vec::new()
    });
    let mut v: Vec<(IpAddr, u8, IpAddr)> = via_tunnel(&table, tun)
        .into_iter()
        .map(|(p, l, g)| (IpAddr::V4(p), l, IpAddr::V4(g)))
        .collect();
    let table6 = rtnl::routes_through_v6(tun).unwrap_or_else(|e| {
        tracing::warn!("cannot read the IPv6 routing table: {e}");
        Vec::new()
    });
    v.extend(
        table6
            .iter()
            .filter(|r| r.protocol != ROUTE_PROTOCOL && r.oif == Some(tun))
            .filter_map(|r| {
                r.gateway
                    .map(|g| (IpAddr::V6(r.prefix), r.len, IpAddr::V6(g)))
            }),
    );
    v
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
            lan_prefixes(&table, &[tun], &[a("172.16.0.2")]),
            [(a("10.2.0.0"), 24)]
        );
    }

    #[test]
    fn a_shortcut_ranks_as_the_route_it_shortcuts() {
        let tun = 7;
        let via = |p: &str, len: u8, metric: u32| {
            let mut r = route(p, len, Some("192.168.1.3"), tun, 4);
            r.metric = metric;
            r
        };
        let table = [
            via("10.0.0.0", 8, 30),
            via("10.12.0.0", 24, 10),
            via("10.12.0.0", 24, 15),
            route("10.12.0.0", 24, None, tun, ROUTE_PROTOCOL),
        ];
        let a = |s: &str| s.parse::<Ipv4Addr>().unwrap();
        assert_eq!(covering_metric(&table, a("10.12.0.0"), 24), 10);
        assert_eq!(covering_metric(&table, a("10.13.0.0"), 24), 30);
        assert_eq!(covering_metric(&table, a("172.16.0.0"), 24), 0);
    }

    #[test]
    fn other_tunnels_and_their_underlay_are_not_lans() {
        let (t0, t1) = (7, 8);
        let table = [
            route("192.168.2.0", 24, None, t1, 2),
            route("172.16.1.0", 24, None, 3, 2),
            route("172.16.0.0", 24, None, 3, 2),
            route("10.2.0.0", 24, None, 4, 2),
        ];
        let a = |s: &str| s.parse::<Ipv4Addr>().unwrap();
        assert_eq!(
            lan_prefixes(&table, &[t0, t1], &[a("172.16.0.2"), a("172.16.1.2")]),
            [(a("10.2.0.0"), 24)]
        );
        // One tunnel alone counts them.
        assert_eq!(lan_prefixes(&table, &[t0], &[a("172.16.0.2")]).len(), 3);
    }
}
