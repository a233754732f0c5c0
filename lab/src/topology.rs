//! Lab addressing: NBMA 172.16.0.0/15, tunnel 100.64.0.0/10, LANs 10.0.0.0/8.
//!
//! Hub `h`: NBMA 172.16.0.(1+h), tunnel 100.64.0.(1+h); all hubs front one
//! data-centre LAN, 10.255.0.0/24 (as dual-hub designs do).
//! Spoke `k`: NBMA 172.17.0.0 + 1 + k, tunnel 100.65.0.0 + 1 + k,
//! LAN 10.0.0.0 + 256·(k+1) /24. Room for 65,000 spokes.

use std::net::Ipv4Addr;

use crate::node::{NodeSpec, Role};

/// Most spokes the addressing plan holds.
pub const MAX_SPOKES: usize = 65_000;
/// Most hubs.
pub const MAX_HUBS: usize = 200;
/// Prefix length of the tunnel network.
pub const TUNNEL_PREFIX_LEN: u8 = 10;
/// Host on each LAN that sends and receives the lab traffic.
pub const LAN_HOST: u8 = 10;

pub fn hub(h: usize) -> NodeSpec {
    NodeSpec {
        role: Role::Hub,
        index: h,
        nbma: Ipv4Addr::new(172, 16, 0, 1 + h as u8),
        tunnel: Ipv4Addr::new(100, 64, 0, 1 + h as u8),
        lan: Ipv4Addr::new(10, 255, 0, 0),
    }
}

pub fn spoke(k: usize) -> NodeSpec {
    let n = k as u32 + 1;
    NodeSpec {
        role: Role::Spoke,
        index: k,
        nbma: Ipv4Addr::from(u32::from(Ipv4Addr::new(172, 17, 0, 0)) + n),
        tunnel: Ipv4Addr::from(u32::from(Ipv4Addr::new(100, 65, 0, 0)) + n),
        lan: Ipv4Addr::from(u32::from(Ipv4Addr::new(10, 0, 0, 0)) + 256 * n),
    }
}

/// The traffic host on a LAN.
pub fn lan_host(spec: &NodeSpec) -> Ipv4Addr {
    let o = spec.lan.octets();
    Ipv4Addr::new(o[0], o[1], o[2], LAN_HOST)
}

/// Which node owns an NBMA address: `(role, index)`.
pub fn owner_of_nbma(a: Ipv4Addr) -> Option<(Role, usize)> {
    let o = a.octets();
    if o[0] == 172 && o[1] == 16 && o[2] == 0 && o[3] >= 1 {
        return Some((Role::Hub, o[3] as usize - 1));
    }
    let base = u32::from(Ipv4Addr::new(172, 17, 0, 0));
    let v = u32::from(a);
    if v > base && v - base <= MAX_SPOKES as u32 {
        return Some((Role::Spoke, (v - base - 1) as usize));
    }
    None
}

/// Which node's LAN holds `a`: `(role, index)`.
pub fn owner_of_lan(a: Ipv4Addr) -> Option<(Role, usize)> {
    let o = a.octets();
    if o[0] != 10 {
        return None;
    }
    if o[1] == 255 {
        return (o[2] == 0).then_some((Role::Hub, 0));
    }
    let n = (u32::from(a) - u32::from(Ipv4Addr::new(10, 0, 0, 0))) / 256;
    if n >= 1 && n as usize <= MAX_SPOKES {
        Some((Role::Spoke, n as usize - 1))
    } else {
        None
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trip() {
        for k in [0, 1, 254, 255, 256, 9_999, MAX_SPOKES - 1] {
            let s = spoke(k);
            assert_eq!(owner_of_nbma(s.nbma), Some((Role::Spoke, k)));
            assert_eq!(owner_of_lan(lan_host(&s)), Some((Role::Spoke, k)));
        }
        for h in [0, 3] {
            let s = hub(h);
            assert_eq!(owner_of_nbma(s.nbma), Some((Role::Hub, h)));
            assert_eq!(owner_of_lan(lan_host(&s)), Some((Role::Hub, 0)));
        }
    }
}
