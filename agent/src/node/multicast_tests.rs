//! The multicast list reaches the data plane: a spoke replicates to its
//! NHS, a hub to each spoke once it registers and no longer once its
//! entry is gone (plain GRE, in memory).

use std::net::Ipv4Addr;

use dmvpn_nhrp::Instant;

use super::{DpCmd, Node, Output, apply};
use crate::datapath::sadb::Sadb;
use crate::runtime::dataplane::{Command, Engine, Event, PeerMap};

fn node(role: &str, n: u8) -> (Node, Engine) {
    let nhs = if role == "hub" {
        String::new()
    } else {
        "[[tunnel.nhrp.nhs]]\naddress = \"192.168.1.1\"\nnbma = \"172.16.0.1\"\nmulticast = true\n"
            .to_string()
    };
    node_with(role, n, "map_multicast_dynamic = true\n", &nhs)
}

/// A node with `mcast` lines in `[tunnel.nhrp]` and `nhs` tables after them.
fn node_with(role: &str, n: u8, mcast: &str, nhs: &str) -> (Node, Engine) {
    let text = format!(
        "[node]\nname = \"n{n}\"\nrole = \"{role}\"\n[[tunnel]]\nname = \"Tunnel0\"\n\
         address = \"192.168.1.{n}/24\"\nmtu = 1400\nsource = \"172.16.0.{n}\"\n\
         mode = \"gre-multipoint\"\n[tunnel.nhrp]\nnetwork_id = 1\nholdtime = 600\n\
         authentication = \"cisco123\"\nallowed_nbma = [\"172.16.0.0/24\"]\n{mcast}{nhs}"
    );
    let cfg = dmvpn_config::Config::from_str(&text, "t.toml")
        .expect("valid config")
        .config;
    let node = Node::new(
        &cfg,
        std::time::Instant::now(),
        super::Seed::for_lab_node(0, u64::from(n)),
        Instant::ZERO,
    )
    .unwrap();
    let dp = Engine::new(node.dataplane_config(), Sadb::new(), PeerMap::new());
    (node, dp)
}

/// Applies a node's outputs; returns the multicast lists it set.
fn drain(node: &mut Node, dp: &mut Engine) -> Vec<Vec<Ipv4Addr>> {
    let mut lists = Vec::new();
    while let Some(o) = node.poll_output() {
        if let Output::Dataplane(c) = o {
            if let DpCmd::Command(Command::SetMulticast { peers, broadcast }) = &c {
                assert_eq!(*broadcast, Some(Ipv4Addr::new(192, 168, 1, 255)));
                lists.push(peers.iter().map(|p| p.nbma).collect());
            }
            apply(dp, c);
        }
    }
    lists
}

fn hello(dst: Ipv4Addr) -> Vec<u8> {
    let mut p = vec![0u8; 48];
    crate::datapath::ip::Ipv4Repr {
        src: Ipv4Addr::new(192, 168, 1, 1),
        dst,
        protocol: 89,
        tos: 0xc0,
        ttl: 1,
        ident: 7,
        frag: 0,
        payload_len: 28,
    }
    .emit(&mut p);
    p
}

#[test]
fn multicast_list_follows_registrations() {
    let (mut hub, mut hdp) = node("hub", 1);
    let (mut spoke, mut sdp) = node("spoke", 2);
    let hub_nbma = Ipv4Addr::new(172, 16, 0, 1);
    let spoke_nbma = Ipv4Addr::new(172, 16, 0, 2);
    assert_eq!(drain(&mut hub, &mut hdp), vec![Vec::<Ipv4Addr>::new()]);
    assert_eq!(drain(&mut spoke, &mut sdp), vec![vec![hub_nbma]]);
    assert_eq!(sdp.multicast().len(), 1);

    // Before any registration the hub has nobody to replicate to.
    hdp.outbound(&hello(Ipv4Addr::new(224, 0, 0, 5)));
    assert_eq!(hdp.gre_out.len(), 0);
    assert_eq!(hdp.stats().counters.mcast_no_peer, 1);

    // The spoke's registration crosses the two data planes.
    let t = spoke.poll_timeout().expect("registration scheduled");
    spoke.handle_timeout(t);
    drain(&mut spoke, &mut sdp);
    assert!(!sdp.gre_out.is_empty(), "registration request sent");
    let mut lists = Vec::new();
    for _ in 0..4 {
        for i in 0..sdp.gre_out.len() {
            hdp.inbound_gre_ip(sdp.gre_out.get(i));
        }
        sdp.gre_out.clear();
        while let Some((src, packet)) = hdp.nhrp_in.pop_front() {
            hub.handle_dataplane_event(t, Event::Nhrp { src, packet });
        }
        lists.extend(drain(&mut hub, &mut hdp));
        for i in 0..hdp.gre_out.len() {
            sdp.inbound_gre_ip(hdp.gre_out.get(i));
        }
        hdp.gre_out.clear();
        while let Some((src, packet)) = sdp.nhrp_in.pop_front() {
            spoke.handle_dataplane_event(t, Event::Nhrp { src, packet });
        }
        drain(&mut spoke, &mut sdp);
    }
    assert_eq!(
        lists,
        vec![vec![spoke_nbma]],
        "set once, when the spoke registered"
    );

    // Now a hello from the hub goes to the spoke, and arrives on its TUN.
    let h = hello(Ipv4Addr::new(224, 0, 0, 5));
    hdp.outbound(&h);
    assert_eq!(hdp.gre_out.len(), 1);
    sdp.inbound_gre_ip(hdp.gre_out.get(0));
    assert_eq!(sdp.tun_out.get(0), &h[..]);
    assert_eq!(hdp.stats().counters.mcast_tx, 1);

    // Clearing the hub's cache (as an expiry would) empties the list.
    hub.clear_nhrp(t);
    assert_eq!(drain(&mut hub, &mut hdp), vec![Vec::<Ipv4Addr>::new()]);
}

/// Registers `spoke` with `hub` through their data planes (plain GRE).
fn register(
    spoke: &mut Node,
    sdp: &mut Engine,
    hub: &mut Node,
    hdp: &mut Engine,
) -> Vec<Vec<Ipv4Addr>> {
    let t = spoke.poll_timeout().expect("registration scheduled");
    spoke.handle_timeout(t);
    drain(spoke, sdp);
    let mut lists = Vec::new();
    for _ in 0..4 {
        for i in 0..sdp.gre_out.len() {
            hdp.inbound_gre_ip(sdp.gre_out.get(i));
        }
        sdp.gre_out.clear();
        while let Some((src, packet)) = hdp.nhrp_in.pop_front() {
            hub.handle_dataplane_event(t, Event::Nhrp { src, packet });
        }
        lists.extend(drain(hub, hdp));
        for i in 0..hdp.gre_out.len() {
            sdp.inbound_gre_ip(hdp.gre_out.get(i));
        }
        hdp.gre_out.clear();
        while let Some((src, packet)) = sdp.nhrp_in.pop_front() {
            spoke.handle_dataplane_event(t, Event::Nhrp { src, packet });
        }
        drain(spoke, sdp);
    }
    lists
}

#[test]
fn multicast_list_follows_the_configuration() {
    // A hub without `map multicast dynamic` does not replicate to the
    // spokes that register; its static `map multicast` entry stays.
    let (mut hub, mut hdp) = node_with("hub", 1, "multicast = [\"172.16.0.9\"]\n", "");
    let nhs = "[[tunnel.nhrp.nhs]]\naddress = \"192.168.1.1\"\nnbma = \"172.16.0.1\"\n";
    // A spoke whose NHS is not marked `multicast` sends it none.
    let (mut spoke, mut sdp) = node_with("spoke", 2, "", nhs);
    assert_eq!(
        drain(&mut hub, &mut hdp),
        vec![vec![Ipv4Addr::new(172, 16, 0, 9)]]
    );
    assert_eq!(drain(&mut spoke, &mut sdp), vec![Vec::<Ipv4Addr>::new()]);
    let lists = register(&mut spoke, &mut sdp, &mut hub, &mut hdp);
    assert!(spoke.show_nhrp_nhs(Instant::ZERO)[0].state.responding);
    assert!(lists.is_empty(), "unchanged by the registration: {lists:?}");
    assert_eq!(
        hub.multicast_nbmas(),
        vec![std::net::IpAddr::V4(Ipv4Addr::new(172, 16, 0, 9))]
    );
    assert!(spoke.multicast_nbmas().is_empty());

    // The older form on a spoke: `ip nhrp map multicast <hub NBMA>`.
    let (mut spoke, mut sdp) = node_with("spoke", 3, "multicast = [\"172.16.0.1\"]\n", nhs);
    assert_eq!(
        drain(&mut spoke, &mut sdp),
        vec![vec![Ipv4Addr::new(172, 16, 0, 1)]]
    );
}
