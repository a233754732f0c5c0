//! What the operator commands read from and do to the engine:
//! `show ip nhrp traffic` counts, the `implicit` flag of an entry learned
//! from a request we answered, and `clear ip nhrp ADDRESS`.

mod common;

use common::sim::*;
use dmvpn_nhrp::cache::EntryType;
use dmvpn_nhrp::{Event, PacketType};

/// Every packet on the wire is counted once as sent by its sender and
/// once as received by its receiver, by type.
#[test]
fn traffic_counts_match_the_wire() {
    let mut net = Net::new(vec![hub_cfg(), spoke_cfg(2), spoke_cfg(3)]);
    net.secs(1);
    net.nodes[0].add_route(ip("10.3.0.0"), 16, ip("192.168.1.3"));
    let now = net.now;
    net.nodes[1].resolve(now, ip("10.3.4.5"));
    net.pump();
    for ty in PacketType::ALL {
        let seen = net.sent(ty);
        for (i, node) in net.nodes.iter().enumerate() {
            let nbma = ip(&format!("172.16.0.{}", i + 1));
            let sent = seen.iter().filter(|s| s.from == nbma).count() as u64;
            let rcvd = seen.iter().filter(|s| s.to == nbma).count() as u64;
            assert_eq!(node.traffic().sent.get(ty), sent, "node {i} sent {ty:?}");
            assert_eq!(
                node.traffic().received.get(ty),
                rcvd,
                "node {i} received {ty:?}"
            );
        }
    }
    let hub = net.nodes[0].traffic();
    assert_eq!(hub.received.get(PacketType::RegistrationRequest), 2);
    assert_eq!(hub.sent.get(PacketType::ResolutionRequest), 1, "forwarded");
    assert_eq!(
        net.nodes[2].traffic().sent.get(PacketType::ResolutionReply),
        1
    );
}

/// The responder's entry for the requester is `implicit`; the
/// requester's shortcut is not.
#[test]
fn entry_learned_from_a_request_is_implicit() {
    let mut net = Net::new(vec![hub_cfg(), spoke_cfg(2), spoke_cfg(3)]);
    net.secs(1);
    let now = net.now;
    // The hub forwards resolutions only for registered requesters: spoke
    // 1 registers again after its entry was cleared there.
    net.nodes[1].register_now(now);
    net.pump();
    net.nodes[1].resolve(now, ip("192.168.1.3"));
    net.pump();
    let requester = net.nodes[1].cache().get(ip("192.168.1.3"), 32).unwrap();
    assert_eq!(requester.kind, EntryType::Cached);
    assert!(!requester.implicit);
    let responder = net.nodes[2].cache().get(ip("192.168.1.2"), 32).unwrap();
    assert_eq!(responder.kind, EntryType::Cached);
    assert!(responder.implicit);
}

/// `clear ip nhrp ADDRESS` removes that one entry (with the event the
/// node reacts to) and never a configured one.
#[test]
fn clear_one_entry() {
    let mut net = Net::new(vec![hub_cfg(), spoke_cfg(2), spoke_cfg(3)]);
    net.secs(1);
    let hub = &mut net.nodes[0];
    let before = hub.cache().len();
    assert_eq!(hub.clear_entry(ip("192.168.1.9"), 32), 0, "no such entry");
    assert_eq!(hub.clear_entry(ip("192.168.1.2"), 32), 1);
    assert_eq!(hub.cache().len(), before - 1);
    assert!(
        hub.cache().get(ip("192.168.1.3"), 32).is_some(),
        "the other stays"
    );
    net.take_events(0);
    let spoke = &mut net.nodes[1];
    // The NHS entry is configuration: it stays.
    assert_eq!(spoke.clear_entry(ip(HUB_TUN), 32), 0);
    assert!(spoke.cache().get(ip(HUB_TUN), 32).is_some());
    let now = net.now;
    // The hub forwards resolutions only for registered requesters: spoke
    // 1 registers again after its entry was cleared there.
    net.nodes[1].register_now(now);
    net.pump();
    net.nodes[1].resolve(now, ip("192.168.1.3"));
    net.pump();
    net.take_events(1);
    assert_eq!(net.nodes[1].clear_entry(ip("192.168.1.3"), 32), 1);
    net.pump();
    assert_eq!(
        net.take_events(1),
        vec![Event::ShortcutDown {
            prefix: ip("192.168.1.3"),
            prefix_len: 32,
            nbma: Some(ip("172.16.0.3")),
        }]
    );
}
