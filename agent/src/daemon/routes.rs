//! What the kernel routing table says about the overlay: networks behind
//! this node (answered in NHRP resolutions) and routes through the tunnel
//! with a next hop (installed by an operator or a routing daemon such as
//! FRR), which tell a hub which spoke owns a LAN.

use std::net::Ipv4Addr;
use std::process::Command;

/// `ip -4 -o route show …` output lines → (prefix, len, via, dev).
fn parse(out: &str) -> Vec<(Ipv4Addr, u8, Option<Ipv4Addr>, String)> {
    let mut v = Vec::new();
    for line in out.lines() {
        let mut w = line.split_whitespace();
        let Some(dst) = w.next() else { continue };
        let (p, l) = match dst.split_once('/') {
            Some((p, l)) => (p.parse().ok(), l.parse().ok()),
            None if dst == "default" => (Some(Ipv4Addr::UNSPECIFIED), Some(0)),
            None => (dst.parse().ok(), Some(32)),
        };
        let (Some(p), Some(l)) = (p, l) else { continue };
        let mut via = None;
        let mut dev = String::new();
        let rest: Vec<&str> = w.collect();
        for i in 0..rest.len().saturating_sub(1) {
            match rest[i] {
                "via" => via = rest[i + 1].parse().ok(),
                "dev" => dev = rest[i + 1].to_string(),
                _ => {}
            }
        }
        v.push((p, l, via, dev));
    }
    v
}

fn ip_route(args: &[&str]) -> String {
    Command::new("ip")
        .args(["-4", "-o", "route", "show"])
        .args(args)
        .output()
        .map(|o| String::from_utf8_lossy(&o.stdout).into_owned())
        .unwrap_or_default()
}

/// Directly connected networks on other interfaces than the tunnel,
/// except the one holding the NBMA address: the LANs behind this node.
pub fn local_prefixes(tunnel: &str, nbma: Ipv4Addr) -> Vec<(Ipv4Addr, u8)> {
    parse(&ip_route(&["scope", "link"]))
        .into_iter()
        .filter(|(p, l, via, dev)| {
            via.is_none() && dev != tunnel && *l > 0 && !contains(*p, *l, nbma) && !p.is_loopback()
        })
        .map(|(p, l, _, _)| (p, l))
        .collect()
}

/// Routes through `tunnel` that name a next hop.
pub fn tunnel_routes(tunnel: &str) -> Vec<(Ipv4Addr, u8, Ipv4Addr)> {
    parse(&ip_route(&["dev", tunnel]))
        .into_iter()
        .filter_map(|(p, l, via, _)| via.map(|v| (p, l, v)))
        .collect()
}

fn contains(p: Ipv4Addr, l: u8, a: Ipv4Addr) -> bool {
    let m = if l == 0 {
        0
    } else {
        u32::MAX << (32 - u32::from(l.min(32)))
    };
    u32::from(p) & m == u32::from(a) & m
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_ip_route_output() {
        let out = "10.3.0.0/24 via 192.168.1.3 dev Tunnel0 \n192.168.1.0/24 dev Tunnel0 proto kernel scope link src 192.168.1.1 \n";
        let r = parse(out);
        assert_eq!(r.len(), 2);
        assert_eq!(
            r[0],
            (
                "10.3.0.0".parse().unwrap(),
                24,
                Some("192.168.1.3".parse().unwrap()),
                "Tunnel0".into()
            )
        );
        assert_eq!(r[1].2, None);
    }
}
