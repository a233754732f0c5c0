//! What the node asks the driver to install in and remove from the
//! kernel's routing table: a hub and two spokes over plain GRE, in
//! memory. Registrations on the hub and shortcuts on a spoke go in;
//! `clear ip nhrp [ADDR]`, expiry and a purged registration take them out;
//! configured routes, NHS entries and routes covering an NBMA address
//! never go in.

use std::net::{IpAddr, Ipv4Addr};
use std::time::Duration;

use dmvpn_ctl::proto::{Request, Response};
use dmvpn_nhrp::Instant;

use super::{KernelRoute, Node, Output};
use crate::router::{Datagram, Options, Router};

const HOLDTIME: u64 = 600;

fn config(n: u8) -> dmvpn_config::Config {
    let (role, nhs) = if n == 1 {
        ("hub", String::new())
    } else {
        (
            "spoke",
            "[[tunnel.nhrp.nhs]]\naddress = \"192.168.1.1\"\nnbma = \"172.16.0.1\"\n".to_string(),
        )
    };
    let routes = if n == 1 { "[]" } else { "[\"10.1.0.0/24\"]" };
    let text = format!(
        "[node]\nname = \"n{n}\"\nrole = \"{role}\"\n[[tunnel]]\nname = \"Tunnel0\"\n\
         address = \"192.168.1.{n}/24\"\nmtu = 1400\nsource = \"172.16.0.{n}\"\n\
         mode = \"gre-multipoint\"\nroutes = {routes}\n[tunnel.nhrp]\nnetwork_id = 1\n\
         holdtime = {HOLDTIME}\nauthentication = \"cisco123\"\n\
         allowed_nbma = [\"172.16.0.0/24\"]\n{nhs}"
    );
    dmvpn_config::Config::from_str(&text, "t.toml")
        .expect("valid config")
        .config
}

/// Hub (index 0, 172.16.0.1) and spokes 172.16.0.2 and .3, reporting
/// kernel routes.
fn cloud() -> Vec<Router> {
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

/// Carries GRE between the routers (by the last byte of the outer
/// destination) until nobody sends; inner packets for the TUNs are dropped.
fn exchange(rs: &mut [Router], t: Instant) {
    for _ in 0..32 {
        let mut moved = false;
        for i in 0..rs.len() {
            let b = rs[i].batches();
            let pkts: Vec<Vec<u8>> = (0..b.gre.len()).map(|k| b.gre.get(k).to_vec()).collect();
            b.gre.clear();
            b.tun.clear();
            for p in pkts {
                moved = true;
                let to = usize::from(p[19]) - 1;
                rs[to].handle_underlay(t, Datagram::Gre(&p));
            }
        }
        if !moved {
            return;
        }
    }
    panic!("the routers never went quiet");
}

/// Runs every router's timers from `from` to `to` in 5 s steps.
fn run(rs: &mut [Router], from: Instant, to: Instant) -> Instant {
    let mut t = from;
    while t <= to {
        for r in rs.iter_mut() {
            r.handle_timeout(t);
        }
        exchange(rs, t);
        t += Duration::from_secs(5);
    }
    t
}

fn drain(r: &mut Router) -> Vec<KernelRoute> {
    let mut v: Vec<KernelRoute> = std::iter::from_fn(|| r.poll_kernel_route()).collect();
    v.sort();
    v
}

fn install(prefix: [u8; 4], len: u8) -> KernelRoute {
    KernelRoute::Install {
        prefix: Ipv4Addr::from(prefix).into(),
        len,
    }
}

fn remove(prefix: [u8; 4], len: u8) -> KernelRoute {
    KernelRoute::Remove {
        prefix: Ipv4Addr::from(prefix).into(),
        len,
    }
}

/// An ICMP-sized packet from spoke 2's tunnel address to `dst`.
fn packet(dst: Ipv4Addr) -> Vec<u8> {
    let mut p = vec![0u8; 84];
    dmvpn_wire::Ipv4Repr {
        src: Ipv4Addr::new(192, 168, 1, 2),
        dst,
        protocol: 1,
        tos: 0,
        ttl: 64,
        ident: 1,
        flags_frag: 0,
        payload_len: 64,
    }
    .emit(&mut p)
    .unwrap();
    p
}

/// Spoke 2 sends to spoke 3's tunnel address; the resolution (phase 2)
/// crosses the hub and spoke 3 answers.
fn resolve(rs: &mut [Router], t: Instant) {
    rs[1].handle_tun(t, &packet(Ipv4Addr::new(192, 168, 1, 3)));
    exchange(rs, t);
}

fn registered(rs: &mut [Router]) -> Instant {
    let t = run(rs, Instant::ZERO, Instant(Duration::from_secs(30)));
    assert_eq!(
        drain(&mut rs[0]),
        [install([192, 168, 1, 2], 32), install([192, 168, 1, 3], 32)],
        "the hub shows its registered spokes"
    );
    for s in [1, 2] {
        assert_eq!(
            drain(&mut rs[s]),
            [],
            "a spoke's NHS entry and configured routes are not learned"
        );
    }
    t
}

#[test]
fn shortcuts_go_in_and_leave_with_clear_ip_nhrp() {
    let mut rs = cloud();
    let t = registered(&mut rs);
    resolve(&mut rs, t);
    assert_eq!(drain(&mut rs[1]), [install([192, 168, 1, 3], 32)]);
    assert_eq!(
        rs[1].node().kernel_routes(),
        [(Ipv4Addr::new(192, 168, 1, 3).into(), 32)]
    );
    assert_eq!(drain(&mut rs[0]), [], "the hub only relayed");

    // `clear ip nhrp 192.168.1.3`
    let r = rs[1].request(
        t,
        Request::ClearNhrpEntry {
            address: IpAddr::V4(Ipv4Addr::new(192, 168, 1, 3)),
            prefix_len: None,
        },
    );
    assert!(matches!(r, Response::Ok(_)), "{r:?}");
    assert_eq!(drain(&mut rs[1]), [remove([192, 168, 1, 3], 32)]);
    assert!(rs[1].node().kernel_routes().is_empty());

    // Resolved again, then `clear ip nhrp`.
    let t = t + Duration::from_secs(1);
    resolve(&mut rs, t);
    assert_eq!(drain(&mut rs[1]), [install([192, 168, 1, 3], 32)]);
    let r = rs[1].request(t, Request::ClearNhrp);
    assert!(matches!(r, Response::Ok(_)), "{r:?}");
    assert_eq!(drain(&mut rs[1]), [remove([192, 168, 1, 3], 32)]);
}

#[test]
fn an_unused_shortcut_leaves_when_it_expires() {
    let mut rs = cloud();
    let t = registered(&mut rs);
    resolve(&mut rs, t);
    assert_eq!(drain(&mut rs[1]), [install([192, 168, 1, 3], 32)]);
    // Registrations are refreshed meanwhile; the unused shortcut is not.
    let end = t + Duration::from_secs(HOLDTIME + 30);
    run(&mut rs, t, end);
    assert_eq!(drain(&mut rs[1]), [remove([192, 168, 1, 3], 32)]);
    assert_eq!(drain(&mut rs[0]), [], "registrations stay");
}

#[test]
fn a_cleared_registration_leaves_the_hubs_table() {
    let mut rs = cloud();
    let t = registered(&mut rs);
    let r = rs[0].request(t, Request::ClearNhrp);
    assert!(matches!(r, Response::Ok(_)), "{r:?}");
    assert_eq!(
        drain(&mut rs[0]),
        [remove([192, 168, 1, 2], 32), remove([192, 168, 1, 3], 32)]
    );
    assert!(rs[0].node().kernel_routes().is_empty());
}

#[test]
fn a_router_without_the_option_queues_nothing() {
    let seed = super::Seed::for_lab_node(0, 1);
    let mut r = Router::from_config(&config(1), seed, Instant::ZERO, Options::default()).unwrap();
    let mut rs = vec![r];
    rs.extend(cloud().into_iter().skip(1));
    run(&mut rs, Instant::ZERO, Instant(Duration::from_secs(30)));
    r = rs.remove(0);
    assert_eq!(r.node().kernel_routes().len(), 2, "decided all the same");
    assert_eq!(r.poll_kernel_route(), None);
}

/// The node's outputs of kind [`Output::Kernel`].
fn kernel_outputs(n: &mut Node) -> Vec<KernelRoute> {
    std::iter::from_fn(|| n.poll_output())
        .filter_map(|o| match o {
            Output::Kernel(k) => Some(k),
            _ => None,
        })
        .collect()
}

#[test]
fn shortcuts_covering_an_nbma_address_stay_out_of_the_kernel() {
    let cfg = super::config_map::map(&config(2)).unwrap();
    let mut n = Node::from_node_config(cfg, super::Seed([2; 32]), Instant::ZERO);
    kernel_outputs(&mut n);
    let t = Instant::ZERO;
    let shortcut = |prefix: [u8; 4], len: u8| dmvpn_nhrp::Event::ShortcutUp {
        prefix: IpAddr::V4(Ipv4Addr::from(prefix)),
        prefix_len: len,
        next_hop: IpAddr::V4(Ipv4Addr::new(192, 168, 1, 3)),
        nbma: IpAddr::V4(Ipv4Addr::new(172, 16, 0, 3)),
    };
    // A LAN behind spoke 3 goes in (masked).
    n.on_nhrp_event(t, shortcut([10, 3, 0, 7], 24));
    assert_eq!(kernel_outputs(&mut n), [install([10, 3, 0, 0], 24)]);
    // Ours, the NHS's or spoke 3's own NBMA address inside: the kernel
    // would send the tunnel's outer packets into the tunnel.
    for (p, l) in [
        ([172, 16, 0, 0], 16),
        ([0, 0, 0, 0], 0),
        ([172, 16, 0, 3], 32),
    ] {
        n.on_nhrp_event(t, shortcut(p, l));
        assert_eq!(kernel_outputs(&mut n), [], "{p:?}/{l}");
    }
    // The shortcut goes: so does its route.
    n.on_nhrp_event(
        t,
        dmvpn_nhrp::Event::ShortcutDown {
            prefix: IpAddr::V4(Ipv4Addr::new(10, 3, 0, 0)),
            prefix_len: 24,
            nbma: Some(IpAddr::V4(Ipv4Addr::new(172, 16, 0, 3))),
        },
    );
    assert_eq!(kernel_outputs(&mut n), [remove([10, 3, 0, 0], 24)]);
}
