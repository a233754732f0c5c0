//! A dual-stack tunnel in memory: a hub and two spokes over plain GRE,
//! each with an IPv4 and an IPv6 tunnel address. Spokes register both
//! with the hub's two NHRP instances; an IPv6 packet for the other
//! spoke's IPv6 address is resolved through the hub (IPv6 NHRP, protocol
//! type 0x86dd) and then goes straight to that spoke, GRE protocol
//! 0x86dd; the IPv4 overlay is unchanged beside it.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};
use std::time::Duration;

use dmvpn_nhrp::Instant;

use super::KernelRoute;
use crate::router::{Datagram, Options, Router};

fn config(n: u8) -> dmvpn_config::Config {
    let (role, nhs) = if n == 1 {
        ("hub", String::new())
    } else {
        (
            "spoke",
            "[[tunnel.nhrp.nhs]]\naddress = \"192.168.1.1\"\nnbma = \"172.16.0.1\"\n\
             [[tunnel.nhrp.nhs]]\naddress = \"2001:db8:100::1\"\nnbma = \"172.16.0.1\"\n"
                .to_string(),
        )
    };
    let text = format!(
        "[node]\nname = \"n{n}\"\nrole = \"{role}\"\n[[tunnel]]\nname = \"Tunnel0\"\n\
         address = \"192.168.1.{n}/24\"\naddress6 = \"2001:db8:100::{n}/64\"\nmtu = 1400\n\
         source = \"172.16.0.{n}\"\nmode = \"gre-multipoint\"\n[tunnel.nhrp]\nnetwork_id = 1\n\
         holdtime = 600\nauthentication = \"cisco123\"\n\
         allowed_nbma = [\"172.16.0.0/24\"]\n{nhs}"
    );
    dmvpn_config::Config::from_str(&text, "t.toml")
        .expect("valid config")
        .config
}

/// Node `n` of an IPv6-only overlay: its `address` is IPv6.
fn config_v6_only(n: u8) -> dmvpn_config::Config {
    let nhs = if n == 1 {
        ""
    } else {
        "[[tunnel.nhrp.nhs]]\naddress = \"2001:db8:100::1\"\nnbma = \"172.16.0.1\"\n"
    };
    let role = if n == 1 { "hub" } else { "spoke" };
    let text = format!(
        "[node]\nname = \"n{n}\"\nrole = \"{role}\"\n[[tunnel]]\nname = \"Tunnel0\"\n\
         address = \"2001:db8:100::{n}/64\"\nmtu = 1400\n\
         source = \"172.16.0.{n}\"\nmode = \"gre-multipoint\"\n[tunnel.nhrp]\nnetwork_id = 1\n\
         holdtime = 600\nauthentication = \"cisco123\"\n\
         allowed_nbma = [\"172.16.0.0/24\"]\n{nhs}"
    );
    dmvpn_config::Config::from_str(&text, "t.toml")
        .expect("valid config")
        .config
}

fn cloud() -> Vec<Router> {
    cloud_of(config)
}

fn cloud_of(config: fn(u8) -> dmvpn_config::Config) -> Vec<Router> {
    (1..=3u8)
        .map(|n| {
            let opts = Options {
                kernel_routes: true,
                ..Options::default()
            };
            let seed = super::Seed::for_lab_node(0, u64::from(n));
            Router::from_config(&config(n), seed, Instant::ZERO, opts).unwrap()
        })
        .collect()
}

fn v6(n: u16) -> Ipv6Addr {
    Ipv6Addr::new(0x2001, 0xdb8, 0x100, 0, 0, 0, 0, n)
}

/// GRE packets each router sent, as (outer destination, GRE protocol),
/// carried to their routers until nobody sends.
fn exchange(rs: &mut [Router], t: Instant) -> Vec<(usize, Ipv4Addr, u16)> {
    let mut seen = Vec::new();
    for _ in 0..32 {
        let mut moved = false;
        for i in 0..rs.len() {
            let b = rs[i].batches();
            let pkts: Vec<Vec<u8>> = (0..b.gre.len()).map(|k| b.gre.get(k).to_vec()).collect();
            b.gre.clear();
            b.tun.clear();
            for p in pkts {
                moved = true;
                let dst = Ipv4Addr::new(p[16], p[17], p[18], p[19]);
                let ihl = usize::from(p[0] & 0xf) * 4;
                seen.push((i, dst, u16::from_be_bytes([p[ihl + 2], p[ihl + 3]])));
                rs[usize::from(p[19]) - 1].handle_underlay(t, Datagram::Gre(&p));
            }
        }
        if !moved {
            return seen;
        }
    }
    panic!("the routers never went quiet");
}

fn run(rs: &mut [Router], to: Duration) -> Instant {
    let mut t = Instant::ZERO;
    while t <= Instant(to) {
        for r in rs.iter_mut() {
            r.handle_timeout(t);
        }
        exchange(rs, t);
        t += Duration::from_secs(5);
    }
    t
}

fn installed(r: &mut Router) -> Vec<(IpAddr, u8)> {
    let mut v: Vec<(IpAddr, u8)> = std::iter::from_fn(|| r.poll_kernel_route())
        .filter_map(|k| match k {
            KernelRoute::Install { prefix, len } => Some((prefix, len)),
            KernelRoute::Remove { .. } => None,
        })
        .collect();
    v.sort();
    v
}

/// An ICMPv6 echo request of 64 bytes from `src` to `dst`.
fn packet6(src: Ipv6Addr, dst: Ipv6Addr) -> Vec<u8> {
    let mut p = vec![0u8; 40 + 64];
    p[0] = 0x60;
    p[4..6].copy_from_slice(&64u16.to_be_bytes());
    p[6] = 58;
    p[7] = 64;
    p[8..24].copy_from_slice(&src.octets());
    p[24..40].copy_from_slice(&dst.octets());
    p[40] = 128;
    p
}

#[test]
fn ipv6_registers_resolves_and_goes_direct_beside_ipv4() {
    let mut rs = cloud();
    let t = run(&mut rs, Duration::from_secs(30));
    let hub = installed(&mut rs[0]);
    for want in [
        (IpAddr::V4(Ipv4Addr::new(192, 168, 1, 2)), 32),
        (IpAddr::V4(Ipv4Addr::new(192, 168, 1, 3)), 32),
        (IpAddr::V6(v6(2)), 128),
        (IpAddr::V6(v6(3)), 128),
    ] {
        assert!(hub.contains(&want), "the hub shows {want:?}: {hub:?}");
    }
    let shown = rs[0].node().show_nhrp(t, true);
    assert_eq!(shown.len(), 2, "show ipv6 nhrp on the hub: {shown:?}");
    assert!(
        rs[0]
            .node()
            .show_nhrp(t, false)
            .iter()
            .all(|e| e.prefix.is_ipv4()),
        "show ip nhrp lists IPv4 entries only"
    );

    // Spoke 2 → spoke 3's IPv6 address: relayed by the hub while spoke 2
    // resolves it (phase 2), direct afterwards.
    rs[1].handle_tun(t, &packet6(v6(2), v6(3)));
    let first = exchange(&mut rs, t);
    assert!(
        first.contains(&(1, Ipv4Addr::new(172, 16, 0, 1), 0x86dd)),
        "the first IPv6 packet goes to the hub: {first:?}"
    );
    assert!(
        first.contains(&(1, Ipv4Addr::new(172, 16, 0, 1), 0x2001)),
        "with an NHRP request: {first:?}"
    );
    assert_eq!(
        installed(&mut rs[1]),
        [(IpAddr::V6(v6(3)), 128)],
        "spoke 2 installs the IPv6 shortcut"
    );
    rs[1].handle_tun(t, &packet6(v6(2), v6(3)));
    let then = exchange(&mut rs, t);
    assert_eq!(
        then.first(),
        Some(&(1, Ipv4Addr::new(172, 16, 0, 3), 0x86dd)),
        "the next IPv6 packet goes straight to spoke 3: {then:?}"
    );
    // The IPv4 overlay is resolved on its own: its first packet still
    // goes through the hub.
    let mut p4 = vec![0u8; 84];
    dmvpn_wire::Ipv4Repr {
        src: Ipv4Addr::new(192, 168, 1, 2),
        dst: Ipv4Addr::new(192, 168, 1, 3),
        protocol: 1,
        tos: 0,
        ttl: 64,
        ident: 1,
        flags_frag: 0,
        payload_len: 64,
    }
    .emit(&mut p4)
    .unwrap();
    rs[1].handle_tun(t, &p4);
    let v4 = exchange(&mut rs, t);
    assert!(
        v4.contains(&(1, Ipv4Addr::new(172, 16, 0, 1), 0x0800))
            && !v4.contains(&(1, Ipv4Addr::new(172, 16, 0, 3), 0x0800)),
        "IPv4 to spoke 3 still goes through the hub (its own resolution starts): {v4:?}"
    );

    // `clear ip nhrp 2001:db8:100::3` takes that entry and its route.
    let r = rs[1].request(
        t,
        dmvpn_ctl::proto::Request::ClearNhrpEntry {
            address: IpAddr::V6(v6(3)),
            prefix_len: None,
        },
    );
    assert!(matches!(r, dmvpn_ctl::proto::Response::Ok(_)), "{r:?}");
    let gone: Vec<KernelRoute> = std::iter::from_fn(|| rs[1].poll_kernel_route()).collect();
    assert!(
        gone.contains(&KernelRoute::Remove {
            prefix: IpAddr::V6(v6(3)),
            len: 128
        }),
        "{gone:?}"
    );
    rs[1].handle_tun(t, &packet6(v6(2), v6(3)));
    exchange(&mut rs, t);
    assert_eq!(
        installed(&mut rs[1]),
        [(IpAddr::V6(v6(3)), 128)],
        "resolved again"
    );

    // `clear ip nhrp` takes the IPv6 shortcut away too.
    let r = rs[1].request(t, dmvpn_ctl::proto::Request::ClearNhrp);
    assert!(matches!(r, dmvpn_ctl::proto::Response::Ok(_)), "{r:?}");
    let gone: Vec<KernelRoute> = std::iter::from_fn(|| rs[1].poll_kernel_route()).collect();
    assert!(
        gone.contains(&KernelRoute::Remove {
            prefix: IpAddr::V6(v6(3)),
            len: 128
        }),
        "{gone:?}"
    );
}

#[test]
fn an_ipv6_only_overlay_registers_resolves_and_goes_direct() {
    let mut rs = cloud_of(config_v6_only);
    let t = run(&mut rs, Duration::from_secs(30));
    assert_eq!(
        installed(&mut rs[0]),
        [(IpAddr::V6(v6(2)), 128), (IpAddr::V6(v6(3)), 128)],
        "the hub shows its IPv6 registrations, nothing IPv4"
    );
    assert!(rs[0].node().show_nhrp(t, false).is_empty());
    rs[1].handle_tun(t, &packet6(v6(2), v6(3)));
    let first = exchange(&mut rs, t);
    assert!(
        first.contains(&(1, Ipv4Addr::new(172, 16, 0, 1), 0x86dd))
            && first.contains(&(1, Ipv4Addr::new(172, 16, 0, 1), 0x2001)),
        "{first:?}"
    );
    assert_eq!(installed(&mut rs[1]), [(IpAddr::V6(v6(3)), 128)]);
    rs[1].handle_tun(t, &packet6(v6(2), v6(3)));
    let then = exchange(&mut rs, t);
    assert_eq!(
        then.first(),
        Some(&(1, Ipv4Addr::new(172, 16, 0, 3), 0x86dd)),
        "{then:?}"
    );
    // The NHRP counters are the IPv6 instance's.
    let stats = rs[1].node().nhrp_stats().expect("an NHRP instance");
    assert!(stats.rx > 0, "{stats:?}");
}
