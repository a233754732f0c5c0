//! The multicast list reaches the data plane: a spoke replicates to its
//! NHS, a hub to each spoke once it registers and no longer once its
//! entry is gone (plain GRE, in memory).

use std::net::Ipv4Addr;

use dmvpn_nhrp::Instant;

use crate::router::{Change, Datagram, Options, Router};

fn node(role: &str, n: u8) -> Router {
    let nhs = if role == "hub" {
        String::new()
    } else {
        "[[tunnel.nhrp.nhs]]\naddress = \"192.168.1.1\"\nnbma = \"172.16.0.1\"\nmulticast = true\n"
            .to_string()
    };
    node_with(role, n, "map_multicast_dynamic = true\n", &nhs)
}

/// A node with `mcast` lines in `[tunnel.nhrp]` and `nhs` tables after them.
fn node_with(role: &str, n: u8, mcast: &str, nhs: &str) -> Router {
    let text = format!(
        "[node]\nname = \"n{n}\"\nrole = \"{role}\"\n[[tunnel]]\nname = \"Tunnel0\"\n\
         address = \"192.168.1.{n}/24\"\nmtu = 1400\nsource = \"172.16.0.{n}\"\n\
         mode = \"gre-multipoint\"\n[tunnel.nhrp]\nnetwork_id = 1\nholdtime = 600\n\
         authentication = \"cisco123\"\nallowed_nbma = [\"172.16.0.0/24\"]\n{mcast}{nhs}"
    );
    let cfg = dmvpn_config::Config::from_str(&text, "t.toml")
        .expect("valid config")
        .config;
    let opts = Options {
        record_changes: true,
        ..Options::default()
    };
    let seed = super::Seed::for_lab_node(0, u64::from(n));
    Router::from_config(&cfg, seed, Instant::ZERO, opts).unwrap()
}

/// The multicast lists the router set since the last call.
fn drain(r: &mut Router) -> Vec<Vec<Ipv4Addr>> {
    let mut lists = Vec::new();
    while let Some(c) = r.poll_change() {
        if let Change::Multicast { peers, broadcast } = c {
            assert_eq!(broadcast, Some(Ipv4Addr::new(192, 168, 1, 255)));
            lists.push(peers);
        }
    }
    lists
}

/// Moves the plain GRE packets `from` sent into `to`.
fn carry(from: &mut Router, to: &mut Router, t: Instant) {
    let b = from.batches();
    let pkts: Vec<Vec<u8>> = (0..b.gre.len()).map(|i| b.gre.get(i).to_vec()).collect();
    b.gre.clear();
    to.handle_underlay_burst(t, pkts.iter().map(|p| Datagram::Gre(p)));
}

fn gre_count(r: &Router) -> usize {
    r.engine().gre_out().len()
}

fn hello(dst: Ipv4Addr) -> Vec<u8> {
    let mut p = vec![0u8; 48];
    dmvpn_wire::Ipv4Repr {
        src: Ipv4Addr::new(192, 168, 1, 1),
        dst,
        protocol: 89,
        tos: 0xc0,
        ttl: 1,
        ident: 7,
        flags_frag: 0,
        payload_len: 28,
    }
    .emit(&mut p)
    .unwrap();
    p
}

#[test]
fn multicast_list_follows_registrations() {
    let mut hub = node("hub", 1);
    let mut spoke = node("spoke", 2);
    let hub_nbma = Ipv4Addr::new(172, 16, 0, 1);
    let spoke_nbma = Ipv4Addr::new(172, 16, 0, 2);
    assert_eq!(drain(&mut hub), vec![Vec::<Ipv4Addr>::new()]);
    assert_eq!(drain(&mut spoke), vec![vec![hub_nbma]]);
    assert_eq!(spoke.engine().multicast().len(), 1);

    // Before any registration the hub has nobody to replicate to.
    let t0 = Instant::ZERO;
    hub.handle_tun(t0, &hello(Ipv4Addr::new(224, 0, 0, 5)));
    assert_eq!(gre_count(&hub), 0);
    assert_eq!(hub.stats().counters.mcast_no_peer, 1);

    // The spoke's registration crosses the two routers.
    let t = spoke.node().poll_timeout().expect("registration scheduled");
    spoke.handle_timeout(t);
    drain(&mut spoke);
    assert!(gre_count(&spoke) > 0, "registration request sent");
    let mut lists = Vec::new();
    for _ in 0..4 {
        carry(&mut spoke, &mut hub, t);
        lists.extend(drain(&mut hub));
        carry(&mut hub, &mut spoke, t);
        drain(&mut spoke);
    }
    assert_eq!(
        lists,
        vec![vec![spoke_nbma]],
        "set once, when the spoke registered"
    );

    // Now a hello from the hub goes to the spoke, and arrives on its TUN.
    let h = hello(Ipv4Addr::new(224, 0, 0, 5));
    hub.handle_tun(t, &h);
    assert_eq!(gre_count(&hub), 1);
    carry(&mut hub, &mut spoke, t);
    assert_eq!(spoke.engine().tun_out().get(0), &h[..]);
    assert_eq!(hub.stats().counters.mcast_tx, 1);

    // Clearing the hub's cache (as an expiry would) empties the list.
    let r = hub.request(t, dmvpn_ctl::proto::Request::ClearNhrp);
    assert!(matches!(r, dmvpn_ctl::proto::Response::Ok(_)), "{r:?}");
    assert_eq!(drain(&mut hub), vec![Vec::<Ipv4Addr>::new()]);
}

/// Registers `spoke` with `hub` through their routers (plain GRE).
fn register(spoke: &mut Router, hub: &mut Router) -> Vec<Vec<Ipv4Addr>> {
    let t = spoke.node().poll_timeout().expect("registration scheduled");
    spoke.handle_timeout(t);
    drain(spoke);
    let mut lists = Vec::new();
    for _ in 0..4 {
        carry(spoke, hub, t);
        lists.extend(drain(hub));
        carry(hub, spoke, t);
        drain(spoke);
    }
    lists
}

#[test]
fn multicast_list_follows_the_configuration() {
    // A hub without `map multicast dynamic` does not replicate to the
    // spokes that register; its static `map multicast` entry stays.
    let mut hub = node_with("hub", 1, "multicast = [\"172.16.0.9\"]\n", "");
    let nhs = "[[tunnel.nhrp.nhs]]\naddress = \"192.168.1.1\"\nnbma = \"172.16.0.1\"\n";
    // A spoke whose NHS is not marked `multicast` sends it none.
    let mut spoke = node_with("spoke", 2, "", nhs);
    assert_eq!(drain(&mut hub), vec![vec![Ipv4Addr::new(172, 16, 0, 9)]]);
    assert_eq!(drain(&mut spoke), vec![Vec::<Ipv4Addr>::new()]);
    let lists = register(&mut spoke, &mut hub);
    assert!(
        spoke.node().show_nhrp_nhs(Instant::ZERO)[0]
            .state
            .responding
    );
    assert!(lists.is_empty(), "unchanged by the registration: {lists:?}");
    assert_eq!(
        hub.node().multicast_nbmas(),
        vec![std::net::IpAddr::V4(Ipv4Addr::new(172, 16, 0, 9))]
    );
    assert!(spoke.node().multicast_nbmas().is_empty());

    // The older form on a spoke: `ip nhrp map multicast <hub NBMA>`.
    let mut spoke = node_with("spoke", 3, "multicast = [\"172.16.0.1\"]\n", nhs);
    assert_eq!(drain(&mut spoke), vec![vec![Ipv4Addr::new(172, 16, 0, 1)]]);
}

#[test]
fn a_reload_marking_the_nhs_multicast_sets_the_list() {
    let plain = "[[tunnel.nhrp.nhs]]\naddress = \"192.168.1.1\"\nnbma = \"172.16.0.1\"\n";
    let mut spoke = node_with("spoke", 2, "", plain);
    assert_eq!(drain(&mut spoke), vec![Vec::<Ipv4Addr>::new()]);
    let marked = node_with("spoke", 2, "", &format!("{plain}multicast = true\n"));
    let cfg = marked.node().config().origin.clone();
    let changes = spoke.reconfigure(Instant::ZERO, &cfg).expect("applied");
    assert_eq!(changes.changes.len(), 1, "{changes:?}");
    assert_eq!(drain(&mut spoke), vec![vec![Ipv4Addr::new(172, 16, 0, 1)]]);
    // And unmarked again: the list empties.
    let cfg = node_with("spoke", 2, "", plain)
        .node()
        .config()
        .origin
        .clone();
    spoke.reconfigure(Instant::ZERO, &cfg).expect("applied");
    assert_eq!(drain(&mut spoke), vec![Vec::<Ipv4Addr>::new()]);
}
