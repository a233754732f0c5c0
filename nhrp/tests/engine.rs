//! Engine-to-engine tests in memory: a hub and spokes exchanging real
//! NHRP bytes on virtual time (no sleeps).

mod common;

use dmvpn_nhrp::engine::Password;
use std::time::Duration;

use common::sim::*;
use dmvpn_nhrp::cache::EntryType;
use dmvpn_nhrp::ext::ExtBody;
use dmvpn_nhrp::wire::{error_code, ip_to_addr};
use dmvpn_nhrp::{
    Body, Cie, Config, Engine, Event, Extension, Instant, NhsConfig, Packet, PacketType,
};

#[test]
fn spokes_register_with_hub() {
    let mut net = Net::new(vec![hub_cfg(), spoke_cfg(2), spoke_cfg(3)]);
    net.secs(1);
    for s in [1, 2] {
        let ev = net.take_events(s);
        assert!(
            ev.contains(&Event::NhsUp {
                nhs: ip(HUB_TUN),
                nbma: ip(HUB_NBMA)
            }),
            "{ev:?}"
        );
        assert!(net.nodes[s].nhs_status()[0].up);
    }
    let hub_ev = net.take_events(0);
    assert_eq!(
        hub_ev
            .iter()
            .filter(|e| matches!(e, Event::PeerRegistered { .. }))
            .count(),
        2
    );
    let e = net.nodes[0].cache().get(ip("192.168.1.2"), 32).unwrap();
    assert_eq!(e.kind, EntryType::Dynamic);
    assert_eq!(e.nbma, Some(ip("172.16.0.2")));
    assert!(e.unique);
    assert_eq!(
        net.nodes[0].multicast_nbmas(),
        vec![ip("172.16.0.2"), ip("172.16.0.3")]
    );
    // Cisco's shape: flags U|NAT, hop 255, one CIE pl 32 holdtime 7200,
    // extensions in the order 8003 8004 8005 8007 0009 8000.
    let req = net.sent(PacketType::RegistrationRequest)[0].packet.clone();
    assert_eq!(req.flags, 0x8002);
    assert_eq!(req.hop_count, 255);
    assert_eq!(req.cies()[0].prefix_len, 32);
    assert_eq!(req.cies()[0].holding_time, 7200);
    let types: Vec<(u16, bool)> = req
        .extensions
        .iter()
        .map(|e| (e.ty(), e.compulsory))
        .collect();
    assert_eq!(
        types,
        [
            (3, true),
            (4, true),
            (5, true),
            (7, true),
            (9, false),
            (0, true)
        ]
    );
    let reply = &net.sent(PacketType::RegistrationReply)[0].packet;
    assert_eq!(reply.request_id(), req.request_id());
    assert_eq!(
        reply.extensions[0].cies()[0].proto,
        ip_to_addr(ip(HUB_TUN)),
        "responder address filled"
    );
    // Re-registration at holdtime/3 with a fresh request id.
    let before = net.sent(PacketType::RegistrationRequest).len();
    net.secs(2398);
    assert_eq!(net.sent(PacketType::RegistrationRequest).len(), before);
    net.secs(2);
    let regs = net.sent(PacketType::RegistrationRequest);
    assert_eq!(regs.len(), before + 2);
    assert_ne!(regs[before].packet.request_id(), req.request_id());
    assert_eq!(regs[before].at, Instant::from_secs(2400));
    // IOS `req-sent` / `req-failed` / `repl-recv`, cumulative.
    let st = &net.nodes[1].nhs_status()[0];
    assert_eq!(
        (st.requests_sent, st.requests_failed, st.replies_received),
        (2, 0, 2)
    );
}

#[test]
fn resolution_forwarded_via_hub_and_answered() {
    let mut net = Net::new(vec![hub_cfg(), spoke_cfg(2), spoke_cfg(3)]);
    net.secs(1);
    net.events.clear();
    // Spoke 2 wants a LAN behind spoke 3; the hub knows it by route.
    net.nodes[0].add_route(ip("10.3.0.0"), 16, ip("192.168.1.3"));
    let now = net.now;
    net.nodes[1].resolve(now, ip("10.3.4.5"));
    assert_eq!(
        net.nodes[1].cache().get(ip("10.3.4.5"), 32).unwrap().kind,
        EntryType::Incomplete
    );
    net.pump();
    let reqs = net.sent(PacketType::ResolutionRequest);
    assert_eq!(reqs.len(), 2, "request and the hub's forwarded copy");
    assert_eq!(reqs[0].to, ip(HUB_NBMA));
    assert_eq!(reqs[0].packet.flags, 0xc802);
    let fwd = &reqs[1].packet;
    assert_eq!(reqs[1].to, ip("172.16.0.3"));
    assert_eq!(fwd.hop_count, 254);
    assert_eq!(fwd.request_id(), reqs[0].packet.request_id());
    let transit = fwd
        .extensions
        .iter()
        .find(|e| matches!(e.body, ExtBody::ForwardTransit(_)))
        .unwrap();
    assert_eq!(transit.cies()[0].proto, ip_to_addr(ip(HUB_TUN)));
    // Spoke 3 answered directly to spoke 2.
    let rep = net.sent(PacketType::ResolutionReply);
    assert_eq!(rep.len(), 1);
    assert_eq!(
        (rep[0].from, rep[0].to),
        (ip("172.16.0.3"), ip("172.16.0.2"))
    );
    assert_eq!(rep[0].packet.flags, 0xf802);
    let c = &rep[0].packet.cies()[0];
    assert_eq!(
        (c.prefix_len, c.nbma_ip(), c.proto_ip()),
        (16, Some(ip("172.16.0.3")), Some(ip("192.168.1.3")))
    );
    let ev = net.take_events(1);
    assert!(
        ev.contains(&Event::ShortcutUp {
            prefix: ip("10.3.0.0"),
            prefix_len: 16,
            next_hop: ip("192.168.1.3"),
            nbma: ip("172.16.0.3")
        }),
        "{ev:?}"
    );
    let nh = net.nodes[1].lookup(ip("10.3.9.9")).unwrap();
    assert_eq!((nh.nbma, nh.kind), (ip("172.16.0.3"), EntryType::Cached));
    assert!(
        net.nodes[1].cache().get(ip("10.3.4.5"), 32).is_none(),
        "incomplete removed"
    );
    // The responder installed the requester as a shortcut too.
    let ev3 = net.take_events(2);
    assert!(
        ev3.iter()
            .any(|e| matches!(e, Event::ShortcutUp { nbma, .. } if *nbma == ip("172.16.0.2")))
    );
}

#[test]
fn registration_expires_on_hub_and_nhs_goes_down() {
    let mut s2 = spoke_cfg(2);
    s2.holding_time = 30;
    let mut net = Net::new(vec![hub_cfg(), s2]);
    net.secs(1);
    net.events.clear();
    net.down.insert(ip("172.16.0.2"));
    net.secs(28);
    assert!(net.take_events(0).is_empty());
    net.secs(3);
    let ev = net.take_events(0);
    assert_eq!(
        ev,
        [Event::PeerExpired {
            protocol: ip("192.168.1.2"),
            prefix_len: 32,
            nbma: Some(ip("172.16.0.2"))
        }]
    );
    assert!(net.nodes[0].multicast_nbmas().is_empty());
    let ev = net.take_events(1);
    assert!(ev.contains(&Event::NhsDown {
        nhs: ip(HUB_TUN),
        nbma: ip(HUB_NBMA)
    }));
}

#[test]
fn registration_retransmits_with_backoff_and_same_id() {
    let mut net = Net::new(vec![spoke_cfg(2)]); // no hub at all
    net.secs(300);
    let regs = net.sent(PacketType::RegistrationRequest);
    let times: Vec<u64> = regs.iter().map(|s| s.at.0.as_secs()).collect();
    assert_eq!(times, [0, 1, 3, 7, 15, 31, 63, 127, 191, 255]);
    let id = regs[0].packet.request_id();
    assert!(regs.iter().all(|s| s.packet.request_id() == id));
    assert!(net.take_events(0).is_empty(), "never up, so never down");
    let st = &net.nodes[0].nhs_status()[0];
    assert_eq!(
        (st.requests_sent, st.requests_failed, st.replies_received),
        (10, 9, 0),
        "the last request is still pending"
    );
    assert_eq!(st.request_id, id);
}

#[test]
fn unique_conflict_is_rejected_with_code_14() {
    let mut intruder = spoke_cfg(2);
    intruder.nbma = ip("172.16.0.99");
    let mut net = Net::new(vec![hub_cfg(), spoke_cfg(2)]);
    net.secs(1);
    net.nodes.push(Engine::new(intruder, net.now));
    net.secs(1);
    let ev = net.take_events(2);
    assert!(
        ev.contains(&Event::RegistrationRejected {
            nhs: ip(HUB_TUN),
            code: 14
        }),
        "{ev:?}"
    );
    let st = &net.nodes[2].nhs_status()[0];
    assert!(!st.up);
    assert_eq!(
        (st.requests_sent, st.requests_failed, st.replies_received),
        (1, 1, 1),
        "a rejection is a reply and a failed request"
    );
    let e = net.nodes[0].cache().get(ip("192.168.1.2"), 32).unwrap();
    assert_eq!(e.nbma, Some(ip("172.16.0.2")), "original kept");
}

#[test]
fn non_unique_registration_is_replaced() {
    let mut a = spoke_cfg(2);
    a.unique = false;
    let mut b = a.clone();
    b.nbma = ip("172.16.0.99");
    let mut net = Net::new(vec![hub_cfg(), a]);
    net.secs(1);
    net.nodes.push(Engine::new(b, net.now));
    net.secs(1);
    assert!(net.nodes[2].nhs_status()[0].up);
    let e = net.nodes[0].cache().get(ip("192.168.1.2"), 32).unwrap();
    assert_eq!(e.nbma, Some(ip("172.16.0.99")));
}

#[test]
fn authentication_mismatch_gets_error_indication() {
    let mut bad = spoke_cfg(2);
    bad.authentication = Some(Password::new("wrong"));
    let mut net = Net::new(vec![hub_cfg(), bad]);
    net.secs(1);
    let errs = net.sent(PacketType::ErrorIndication);
    assert!(!errs.is_empty());
    match &errs[0].packet.body {
        Body::Error { code, contents, .. } => {
            assert_eq!(*code, error_code::AUTHENTICATION_FAILURE);
            let orig = Packet::parse(contents).unwrap();
            assert_eq!(orig.packet_type, PacketType::RegistrationRequest);
        }
        b => panic!("{b:?}"),
    }
    assert!(errs[0].packet.extensions.is_empty(), "RFC 2332 5.2.7");
    assert!(net.sent(PacketType::RegistrationReply).is_empty());
    assert_eq!(net.nodes[0].stats().rx_auth_failed, 1);
    let ev = net.take_events(1);
    assert!(ev.contains(&Event::ErrorIndication {
        from: ip(HUB_NBMA),
        code: 11
    }));
    assert!(!net.nodes[1].nhs_status()[0].up);
}

/// Spoke 3 reports an error about a packet spoke 2 sent through the hub:
/// the hub passes the Error Indication on to spoke 2, unchanged but for
/// the hop count, and does not act on it itself.
#[test]
fn error_indication_in_transit_reaches_the_offending_station() {
    let mut net = Net::new(vec![hub_cfg(), spoke_cfg(2), spoke_cfg(3)]);
    net.secs(1);
    net.events.clear();
    let offending = Packet::new(
        PacketType::ResolutionRequest,
        ip("172.16.0.2"),
        ip("192.168.1.2"),
        ip("192.168.1.3"),
        Body::Cies {
            request_id: 77,
            cies: vec![],
        },
    );
    let mut ei = Packet::new(
        PacketType::ErrorIndication,
        ip("172.16.0.3"),
        ip("192.168.1.3"),
        ip("192.168.1.2"),
        Body::Error {
            code: error_code::PROTOCOL_ERROR,
            offset: 0,
            contents: offending.emit(),
        },
    );
    ei.hop_count = 5;
    let now = net.now;
    net.nodes[0].handle(now, ip("172.16.0.3"), &ei.emit());
    net.pump();
    let errs = net.sent(PacketType::ErrorIndication);
    assert_eq!(errs.len(), 1, "{errs:?}");
    assert_eq!((errs[0].from, errs[0].to), (ip(HUB_NBMA), ip("172.16.0.2")));
    let mut want = ei.clone();
    want.hop_count = 4;
    assert_eq!(errs[0].packet, want);
    assert!(
        net.events.iter().all(|(n, _)| *n != 0),
        "hub acted on it: {:?}",
        net.events
    );
    assert!(net.events.contains(&(
        1,
        Event::ErrorIndication {
            from: ip(HUB_NBMA),
            code: error_code::PROTOCOL_ERROR
        }
    )));

    // One the hub issued itself that comes back, one with no hops left and
    // one for a station it knows no way to (handled by the hub itself) go
    // nowhere.
    let mut own = ei.clone();
    own.src_nbma = ip_to_addr(ip(HUB_NBMA));
    own.src_proto = ip_to_addr(ip(HUB_TUN));
    let mut spent = ei.clone();
    spent.hop_count = 1;
    let mut unknown = ei.clone();
    unknown.dst_proto = ip_to_addr(ip("192.168.1.99"));
    net.events.clear();
    for p in [own, spent, unknown] {
        net.nodes[0].handle(now, ip("172.16.0.3"), &p.emit());
    }
    net.pump();
    assert_eq!(net.sent(PacketType::ErrorIndication).len(), 1);
    let at_hub: Vec<_> = net.events.iter().filter(|(n, _)| *n == 0).collect();
    assert_eq!(at_hub.len(), 1, "only the unroutable one: {at_hub:?}");
}

fn icmp(src: &str, dst: &str) -> Vec<u8> {
    common::ipv4(
        src.parse().unwrap(),
        dst.parse().unwrap(),
        1,
        0,
        63,
        &[8, 0, 0, 0, 0, 1, 0, 1, 0xaa, 0xbb, 0xcc, 0xdd],
    )
}

#[test]
fn traffic_indication_triggers_resolution() {
    let mut net = Net::new(vec![hub_cfg(), spoke_cfg(2), spoke_cfg(3)]);
    net.secs(1);
    net.events.clear();
    net.nodes[0].add_route(ip("10.3.0.0"), 16, ip("192.168.1.3"));
    let pkt = icmp("10.2.0.1", "10.3.0.1");
    let now = net.now;
    net.nodes[0].traffic_relayed(now, ip("172.16.0.2"), &pkt);
    // Rate limit: the same flow right after is not indicated again.
    net.nodes[0].traffic_relayed(now, ip("172.16.0.2"), &pkt);
    assert_eq!(net.nodes[0].stats().traffic_indications_holddown, 1);
    assert_eq!(net.nodes[0].stats().traffic_indications_max_send, 0);
    net.pump();
    let ti = net.sent(PacketType::TrafficIndication);
    assert_eq!(ti.len(), 1);
    assert_eq!(ti[0].to, ip("172.16.0.2"));
    let p = &ti[0].packet;
    assert_eq!(p.src_proto_ip(), Some(ip(HUB_TUN)));
    assert_eq!(p.dst_proto_ip(), Some(ip("10.2.0.1")));
    match &p.body {
        Body::Traffic { contents, .. } => assert_eq!(contents[..], pkt[..28]),
        b => panic!("{b:?}"),
    }
    let ext: Vec<u16> = p.extensions.iter().map(|e| e.ty()).collect();
    assert_eq!(ext, [4, 5, 7, 9, 0], "Cisco's order");
    // Spoke 2 resolved 10.3.0.1 and got a shortcut to spoke 3.
    assert_eq!(net.sent(PacketType::ResolutionReply).len(), 1);
    let nh = net.nodes[1].lookup(ip("10.3.0.1")).unwrap();
    assert_eq!(nh.nbma, ip("172.16.0.3"));
    // After the hold-down the hub may indicate again.
    net.secs(2);
    let now = net.now;
    net.nodes[0].traffic_relayed(now, ip("172.16.0.2"), &pkt);
    net.pump();
    assert_eq!(net.sent(PacketType::TrafficIndication).len(), 2);
    // ...but the spoke has its shortcut and does not resolve again.
    assert_eq!(net.sent(PacketType::ResolutionRequest).len(), 2);
}

/// `max_send` Traffic Indications per window, whatever the flows; the
/// ones held back are counted apart from the per-flow holddown, and a new
/// window sends again.
#[test]
fn max_send_limits_traffic_indications_per_window() {
    let mut hub = hub_cfg();
    hub.max_send = 2;
    hub.max_send_interval = Duration::from_secs(10);
    let mut net = Net::new(vec![hub, spoke_cfg(2), spoke_cfg(3)]);
    net.secs(1);
    net.events.clear();
    let now = net.now;
    for host in 1..=5 {
        let pkt = icmp(&format!("10.2.0.{host}"), "10.3.0.1");
        net.nodes[0].traffic_relayed(now, ip("172.16.0.2"), &pkt);
    }
    assert_eq!(net.nodes[0].stats().tx_traffic_indications, 2);
    assert_eq!(net.nodes[0].stats().traffic_indications_max_send, 3);
    assert_eq!(net.nodes[0].stats().traffic_indications_holddown, 0);
    assert_eq!(net.nodes[0].max_send_used(now), 2);
    net.secs(10);
    let now = net.now;
    net.nodes[0].traffic_relayed(now, ip("172.16.0.2"), &icmp("10.2.0.9", "10.3.0.1"));
    assert_eq!(net.nodes[0].stats().tx_traffic_indications, 3);
    assert_eq!(net.nodes[0].stats().traffic_indications_max_send, 3);
}

#[test]
fn purge_removes_shortcut_and_is_answered() {
    let mut net = Net::new(vec![hub_cfg(), spoke_cfg(2), spoke_cfg(3)]);
    net.secs(1);
    let now = net.now;
    net.nodes[1].resolve(now, ip("192.168.1.3"));
    net.pump();
    assert!(net.nodes[1].lookup(ip("192.168.1.3")).is_some());
    net.events.clear();
    net.nodes[2].purge(now, ip("172.16.0.2"), ip("192.168.1.3"), 32);
    net.pump();
    assert!(net.nodes[1].lookup(ip("192.168.1.3")).is_none());
    assert_eq!(
        net.take_events(1),
        [Event::ShortcutDown {
            prefix: ip("192.168.1.3"),
            prefix_len: 32,
            nbma: Some(ip("172.16.0.3"))
        }]
    );
    let rep = net.sent(PacketType::PurgeReply);
    assert_eq!(rep.len(), 1);
    assert_eq!(rep[0].to, ip("172.16.0.3"));
}

#[test]
fn loop_is_detected_with_error_code_3() {
    let mut net = Net::new(vec![hub_cfg(), spoke_cfg(2)]);
    net.secs(1);
    // A request that already crossed this hub.
    let hub_cie = Cie {
        prefix_len: 32,
        nbma: ip_to_addr(ip(HUB_NBMA)),
        proto: ip_to_addr(ip(HUB_TUN)),
        ..Cie::default()
    };
    let mut p = Packet::new(
        PacketType::ResolutionRequest,
        ip("172.16.0.2"),
        ip("192.168.1.2"),
        ip("192.168.1.77"),
        Body::Cies {
            request_id: 4242,
            cies: vec![Cie::default()],
        },
    );
    p.extensions = vec![
        Extension::new(ExtBody::ForwardTransit(vec![hub_cie])),
        Extension::new(ExtBody::Authentication {
            auth_type: 1,
            data: b"cisco123".to_vec(),
        }),
        Extension::new(ExtBody::End),
    ];
    let now = net.now;
    net.nodes[0].handle(now, ip("172.16.0.2"), &p.emit());
    net.pump();
    let errs = net.sent(PacketType::ErrorIndication);
    assert_eq!(errs.len(), 1);
    assert!(matches!(errs[0].packet.body, Body::Error { code: 3, .. }));
    assert_eq!(errs[0].to, ip("172.16.0.2"));
}

#[test]
fn unknown_compulsory_extension_is_rejected_not_copied() {
    let mut net = Net::new(vec![hub_cfg(), spoke_cfg(2)]);
    net.secs(1);
    let mut p = Packet::new(
        PacketType::ResolutionRequest,
        ip("172.16.0.2"),
        ip("192.168.1.2"),
        ip("192.168.1.1"),
        Body::Cies {
            request_id: 77,
            cies: vec![Cie::default()],
        },
    );
    p.extensions = vec![
        Extension {
            compulsory: true,
            body: ExtBody::Unknown {
                ty: 0x1234,
                data: vec![1, 2],
            },
        },
        Extension::new(ExtBody::End),
    ];
    let now = net.now;
    net.nodes[0].handle(now, ip("172.16.0.2"), &p.emit());
    net.pump();
    let errs = net.sent(PacketType::ErrorIndication);
    assert!(matches!(errs[0].packet.body, Body::Error { code: 1, .. }));
    assert!(net.sent(PacketType::ResolutionReply).is_empty());
}

#[test]
fn hop_count_exhausted_is_not_forwarded() {
    let mut net = Net::new(vec![hub_cfg(), spoke_cfg(2), spoke_cfg(3)]);
    net.secs(1);
    let mut p = Packet::new(
        PacketType::ResolutionRequest,
        ip("172.16.0.2"),
        ip("192.168.1.2"),
        ip("192.168.1.3"),
        Body::Cies {
            request_id: 5,
            cies: vec![Cie::default()],
        },
    );
    p.hop_count = 1;
    p.extensions = vec![
        Extension::new(ExtBody::Authentication {
            auth_type: 1,
            data: b"cisco123".to_vec(),
        }),
        Extension::new(ExtBody::End),
    ];
    let now = net.now;
    net.nodes[0].handle(now, ip("172.16.0.2"), &p.emit());
    net.pump();
    assert!(matches!(
        net.sent(PacketType::ErrorIndication)[0].packet.body,
        Body::Error { code: 15, .. }
    ));
    assert!(net.sent(PacketType::ResolutionRequest).is_empty());
}

#[test]
fn nat_extension_gives_post_nat_addresses() {
    let mut net = Net::new(vec![hub_cfg(), spoke_cfg(2), spoke_cfg(3)]);
    // Spoke 2 sits behind NAT: 172.16.0.2 leaves as 203.0.113.2.
    net.nat.insert(ip("172.16.0.2"), ip("203.0.113.2"));
    net.secs(1);
    assert!(net.take_events(1).contains(&Event::NatDetected {
        nat_nbma: ip("203.0.113.2")
    }));
    assert_eq!(net.nodes[1].nat_nbma(), Some(ip("203.0.113.2")));
    let e = net.nodes[0].cache().get(ip("192.168.1.2"), 32).unwrap();
    assert_eq!(e.nbma, Some(ip("203.0.113.2")));
    assert_eq!(e.claimed_nbma, Some(ip("172.16.0.2")));
    assert!(net.take_events(0).iter().any(|e| matches!(
        e,
        Event::PeerRegistered { claimed_nbma: Some(c), nbma, .. }
            if *c == ip("172.16.0.2") && *nbma == ip("203.0.113.2")
    )));
    // Spoke 3 resolves spoke 2: the answer carries the post-NAT address.
    let now = net.now;
    net.nodes[2].resolve(now, ip("192.168.1.2"));
    net.pump();
    assert_eq!(
        net.nodes[2].lookup(ip("192.168.1.2")).unwrap().nbma,
        ip("203.0.113.2")
    );
    // ... and keeps the address spoke 2 claimed, shown as IOS shows a
    // peer behind NAT (`Claimed NBMA address`, the `N` flag).
    let e = net.nodes[2].cache().get(ip("192.168.1.2"), 32).unwrap();
    assert_eq!(e.claimed_nbma, Some(ip("172.16.0.2")));
    // Spoke 2 resolves a LAN behind spoke 3: the hub names spoke 2's
    // post-NAT address so spoke 3 answers (and installs its shortcut)
    // there.
    net.nodes[0].add_route(ip("10.3.0.0"), 16, ip("192.168.1.3"));
    net.nodes[1].resolve(now, ip("10.3.0.1"));
    net.pump();
    let fwd = net.sent(PacketType::ResolutionRequest);
    let nat = fwd
        .last()
        .unwrap()
        .packet
        .extensions
        .iter()
        .find(|e| e.ty() == 9)
        .unwrap();
    assert_eq!(nat.cies()[0].nbma_ip(), Some(ip("203.0.113.2")));
    let rep = net.sent(PacketType::ResolutionReply);
    assert_eq!(rep.last().unwrap().to, ip("203.0.113.2"));
    // Spoke 3 learned spoke 2 from the relayed request: behind NAT too.
    let e = net.nodes[2].cache().get(ip("192.168.1.2"), 32).unwrap();
    assert_eq!(
        (e.nbma, e.claimed_nbma),
        (Some(ip("203.0.113.2")), Some(ip("172.16.0.2")))
    );
    assert_eq!(
        net.nodes[1].lookup(ip("10.3.0.1")).unwrap().nbma,
        ip("172.16.0.3")
    );
}

#[test]
fn resolution_reply_waits_for_ipsec() {
    let mut s3 = spoke_cfg(3);
    s3.wait_for_ipsec = true;
    let mut net = Net::new(vec![hub_cfg(), spoke_cfg(2), s3]);
    net.secs(1);
    net.events.clear();
    let now = net.now;
    net.nodes[1].resolve(now, ip("192.168.1.3"));
    net.pump();
    assert!(net.sent(PacketType::ResolutionReply).is_empty());
    assert!(net.take_events(2).contains(&Event::NeedIpsec {
        nbma: ip("172.16.0.2")
    }));
    // The requester retransmits; the duplicate is not queued twice.
    net.secs(1);
    assert_eq!(net.sent(PacketType::ResolutionRequest).len(), 4);
    let now = net.now;
    net.nodes[2].ipsec_up(now, ip("172.16.0.2"));
    net.pump();
    assert_eq!(net.sent(PacketType::ResolutionReply).len(), 1);
    assert!(net.nodes[1].lookup(ip("192.168.1.3")).is_some());
}

#[test]
fn used_shortcut_is_refreshed_unused_one_expires() {
    let mut s3 = spoke_cfg(3);
    s3.holding_time = 30;
    let mut net = Net::new(vec![hub_cfg(), spoke_cfg(2), s3]);
    net.nodes[0].add_route(ip("10.3.0.0"), 16, ip("192.168.1.3"));
    net.secs(1);
    let now = net.now;
    net.nodes[1].resolve(now, ip("192.168.1.3"));
    net.nodes[1].resolve(now, ip("10.3.1.1"));
    net.pump();
    net.events.clear();
    let before = net.sent(PacketType::ResolutionRequest).len();
    // Use only the host entry.
    assert!(net.nodes[1].lookup(ip("192.168.1.3")).is_some());
    net.secs(19);
    assert_eq!(net.sent(PacketType::ResolutionRequest).len(), before);
    net.secs(1); // 2/3 of 30 s after the reply
    let reqs = net.sent(PacketType::ResolutionRequest);
    assert_eq!(reqs.len(), before + 2, "refresh request and forwarded copy");
    assert_eq!(reqs[before].packet.dst_proto_ip(), Some(ip("192.168.1.3")));
    net.secs(11);
    let ev = net.take_events(1);
    // The unused LAN shortcut expired; the used one was refreshed.
    assert!(
        ev.contains(&Event::ShortcutDown {
            prefix: ip("10.3.0.0"),
            prefix_len: 16,
            nbma: Some(ip("172.16.0.3"))
        }),
        "{ev:?}"
    );
    assert!(net.nodes[1].lookup(ip("192.168.1.3")).is_some());
}

#[test]
fn failed_resolution_becomes_negative_entry() {
    let mut net = Net::new(vec![hub_cfg(), spoke_cfg(2)]);
    net.secs(1);
    let now = net.now;
    // Nobody owns 192.168.1.50: the hub answers with a NAK (code 12).
    net.nodes[1].resolve(now, ip("192.168.1.50"));
    net.pump();
    let ev = net.take_events(1);
    assert!(
        ev.contains(&Event::ResolutionFailed {
            dst: ip("192.168.1.50"),
            code: Some(12)
        }),
        "{ev:?}"
    );
    assert_eq!(
        net.nodes[1]
            .cache()
            .get(ip("192.168.1.50"), 32)
            .unwrap()
            .kind,
        EntryType::Negative
    );
    net.secs(16);
    assert!(net.nodes[1].cache().get(ip("192.168.1.50"), 32).is_none());
    // With the hub gone, the request is retried, then given up.
    net.down.insert(ip(HUB_NBMA));
    net.events.clear();
    let now = net.now;
    net.nodes[1].resolve(now, ip("192.168.1.51"));
    net.secs(20);
    let tries = net
        .sent(PacketType::ResolutionRequest)
        .iter()
        .filter(|s| s.packet.dst_proto_ip() == Some(ip("192.168.1.51")))
        .count();
    assert_eq!(tries, 4);
    assert!(net.take_events(1).contains(&Event::ResolutionFailed {
        dst: ip("192.168.1.51"),
        code: None
    }));
}

/// A reply reports how long after the request's first transmission it
/// came (the metrics' resolution latency), retransmissions included.
#[test]
fn resolution_answer_reports_its_latency() {
    let mut net = Net::new(vec![hub_cfg(), spoke_cfg(2), spoke_cfg(3)]);
    net.secs(1);
    net.events.clear();
    let now = net.now;
    net.nodes[1].resolve(now, ip("192.168.1.3"));
    net.pump();
    let answered = |ev: &[Event], d: &str| {
        ev.iter()
            .filter_map(|e| match e {
                Event::ResolutionAnswered { dst, after } if *dst == ip(d) => Some(*after),
                _ => None,
            })
            .collect::<Vec<_>>()
    };
    let ev = net.take_events(1);
    assert_eq!(
        answered(&ev, "192.168.1.3"),
        vec![std::time::Duration::ZERO],
        "{ev:?}"
    );
    // The first request is lost; the answer to its retransmission 1 s
    // later counts from the first one. A NAK is an answer too.
    net.down.insert(ip(HUB_NBMA));
    let now = net.now;
    net.nodes[1].resolve(now, ip("192.168.1.50"));
    net.pump();
    net.down.remove(&ip(HUB_NBMA));
    net.secs(3);
    let ev = net.take_events(1);
    assert_eq!(
        answered(&ev, "192.168.1.50"),
        vec![std::time::Duration::from_secs(1)],
        "{ev:?}"
    );
}

#[test]
fn two_nhs_both_registered_priority_picks_resolver() {
    let mut hub2 = hub_cfg();
    hub2.nbma = ip("172.16.0.101");
    hub2.protocol = ip("192.168.1.101");
    let mut s = spoke_cfg(2);
    s.nhs = vec![
        NhsConfig {
            protocol: ip(HUB_TUN),
            nbma: ip(HUB_NBMA),
            priority: 5,
        },
        NhsConfig {
            protocol: ip("192.168.1.101"),
            nbma: ip("172.16.0.101"),
            priority: 1,
        },
    ];
    let mut net = Net::new(vec![hub_cfg(), hub2, s]);
    net.secs(1);
    assert!(net.nodes[2].nhs_status().iter().all(|n| n.up));
    assert_eq!(
        net.nodes[2].preferred_nhs().unwrap().nbma,
        ip("172.16.0.101")
    );
    net.down.insert(ip("172.16.0.101"));
    net.secs(2400 + 8);
    assert_eq!(net.nodes[2].preferred_nhs().unwrap().nbma, ip(HUB_NBMA));
}

#[test]
fn ipv6_nbma_and_overlay() {
    let hub = {
        let mut c = Config::new(ip("2001:db8::1"), ip("fd00::1"));
        c.tunnel_prefix_len = 64;
        c.server = true;
        c
    };
    let spoke = |n: u16| {
        let mut c = Config::new(ip(&format!("2001:db8::{n}")), ip(&format!("fd00::{n}")));
        c.nhs = vec![NhsConfig {
            protocol: ip("fd00::1"),
            nbma: ip("2001:db8::1"),
            priority: 0,
        }];
        c
    };
    let mut net = Net::new(vec![hub, spoke(2), spoke(3)]);
    net.secs(1);
    assert!(net.nodes[1].nhs_status()[0].up && net.nodes[2].nhs_status()[0].up);
    let req = &net.sent(PacketType::RegistrationRequest)[0].packet;
    assert_eq!((req.afn, req.protocol_type), (2, 0x86dd));
    assert_eq!(req.cies()[0].prefix_len, 128);
    let now = net.now;
    net.nodes[1].resolve(now, ip("fd00::3"));
    net.pump();
    let nh = net.nodes[1].lookup(ip("fd00::3")).unwrap();
    assert_eq!(nh.nbma, ip("2001:db8::3"));
    assert_eq!(nh.prefix_len, 128);
}

#[test]
fn register_now_skips_backoff_and_forget_peer_drops_shortcuts() {
    let mut net = Net::new(vec![hub_cfg(), spoke_cfg(2), spoke_cfg(3)]);
    net.down.insert(ip(HUB_NBMA));
    net.secs(40); // spoke back-off is now 32 s
    net.down.clear();
    let now = net.now;
    net.nodes[1].register_now(now);
    net.pump();
    assert!(net.nodes[1].nhs_status()[0].up);
    assert!(!net.nodes[2].nhs_status()[0].up, "still backing off");
    net.secs(30);
    assert!(net.nodes[2].nhs_status()[0].up);
    let now = net.now;
    net.nodes[1].resolve(now, ip("192.168.1.3"));
    net.pump();
    net.events.clear();
    net.nodes[1].forget_peer(ip("172.16.0.3"));
    assert!(net.nodes[1].lookup(ip("192.168.1.3")).is_none());
    net.pump();
    assert_eq!(
        net.take_events(1),
        [Event::ShortcutDown {
            prefix: ip("192.168.1.3"),
            prefix_len: 32,
            nbma: Some(ip("172.16.0.3"))
        }]
    );
}

#[test]
fn hub_relays_reply_sent_back_through_it() {
    let mut net = Net::new(vec![hub_cfg(), spoke_cfg(2), spoke_cfg(3)]);
    net.secs(1);
    let now = net.now;
    net.nodes[1].resolve(now, ip("192.168.1.3"));
    // Capture spoke 3's direct reply and send it via the hub instead, as
    // a responder routing replies through its NHS would.
    net.blocked.insert((ip("172.16.0.3"), ip("172.16.0.2")));
    net.pump();
    net.blocked.clear();
    assert!(net.nodes[1].lookup(ip("192.168.1.3")).is_none());
    let reply = net
        .sent(PacketType::ResolutionReply)
        .last()
        .unwrap()
        .packet
        .emit();
    net.nodes[0].handle(now, ip("172.16.0.3"), &reply);
    net.pump();
    let relayed = net.sent(PacketType::ResolutionReply);
    let last = (*relayed.last().unwrap()).clone();
    assert_eq!((last.from, last.to), (ip(HUB_NBMA), ip("172.16.0.2")));
    assert_eq!(last.packet.hop_count, 254);
    let rev = last
        .packet
        .extensions
        .iter()
        .find(|e| matches!(e.body, ExtBody::ReverseTransit(_)))
        .unwrap();
    assert_eq!(rev.cies()[0].proto, ip_to_addr(ip(HUB_TUN)));
    assert_eq!(
        net.nodes[1].lookup(ip("192.168.1.3")).unwrap().nbma,
        ip("172.16.0.3")
    );
    // The same reply coming back to the hub again is a loop.
    net.nodes[0].handle(now, ip("172.16.0.2"), &last.packet.emit());
    net.pump();
    assert!(matches!(
        net.sent(PacketType::ErrorIndication)
            .last()
            .unwrap()
            .packet
            .body,
        Body::Error { code: 3, .. }
    ));
}

/// Registrations held by a hub.
fn dynamic(e: &Engine) -> usize {
    e.cache()
        .iter()
        .filter(|c| c.kind == EntryType::Dynamic)
        .count()
}

#[test]
fn hub_restart_spokes_detect_and_reregister() {
    let mut net = Net::new(vec![hub_cfg(), spoke_cfg(2), spoke_cfg(3)]);
    net.secs(1);
    assert_eq!(dynamic(&net.nodes[0]), 2);
    net.events.clear();
    // The hub dies at t=1 and comes back at t=2410 with empty state.
    net.down.insert(ip(HUB_NBMA));
    let now = net.now;
    net.nodes[0] = Engine::new(hub_cfg(), now);
    assert_eq!(dynamic(&net.nodes[0]), 0);
    // Refresh at 2400 s, retransmissions at 2401, 2403, 2407: the third
    // unanswered one takes the NHS down, on both spokes.
    net.secs(2405);
    assert!(net.take_events(1).is_empty());
    net.secs(3);
    for s in [1, 2] {
        assert_eq!(
            net.take_events(s),
            [Event::NhsDown {
                nhs: ip(HUB_TUN),
                nbma: ip(HUB_NBMA)
            }]
        );
        assert!(!net.nodes[s].nhs_status()[0].up);
    }
    let sent_by_2: Vec<_> = net
        .sent(PacketType::RegistrationRequest)
        .into_iter()
        .filter(|s| s.from == ip("172.16.0.2") && s.at.0.as_secs() >= 2400)
        .map(|s| (s.at.0.as_secs(), s.packet.request_id()))
        .collect();
    let id = sent_by_2[0].1;
    assert_eq!(sent_by_2, [(2400, id), (2401, id), (2403, id), (2407, id)]);
    // Back up: the next retransmission (2415 s) registers both again.
    net.down.remove(&ip(HUB_NBMA));
    net.secs(2);
    assert_eq!(dynamic(&net.nodes[0]), 0, "nothing before 2415 s");
    net.secs(6);
    for s in [1, 2] {
        assert!(net.take_events(s).contains(&Event::NhsUp {
            nhs: ip(HUB_TUN),
            nbma: ip(HUB_NBMA)
        }));
        assert!(net.nodes[s].nhs_status()[0].up);
        assert_eq!(net.nodes[s].nhs_status()[0].unanswered, 0);
    }
    assert_eq!(
        net.nodes[0].multicast_nbmas(),
        vec![ip("172.16.0.2"), ip("172.16.0.3")]
    );
    // Resolution through the restarted hub works again.
    let now = net.now;
    net.nodes[1].resolve(now, ip("192.168.1.3"));
    net.pump();
    let nh = net.nodes[1].lookup(ip("192.168.1.3")).unwrap();
    assert_eq!((nh.nbma, nh.kind), (ip("172.16.0.3"), EntryType::Cached));
    // And the spokes are back on the normal refresh schedule: registered
    // at 2415 s, next refresh at 2415 + 2400 s.
    let before = net.sent(PacketType::RegistrationRequest).len();
    net.secs(3000);
    let later: Vec<u64> = net.sent(PacketType::RegistrationRequest)[before..]
        .iter()
        .map(|s| s.at.0.as_secs())
        .collect();
    assert_eq!(later, [4815, 4815]);
}

#[test]
fn hub_restart_without_outage_recovers_at_next_refresh() {
    let mut net = Net::new(vec![hub_cfg(), spoke_cfg(2), spoke_cfg(3)]);
    net.secs(1);
    let now = net.now;
    net.nodes[0] = Engine::new(hub_cfg(), now);
    net.events.clear();
    // Until spoke 3 refreshes, the restarted hub does not know it: the
    // resolution is refused (NAK, code 12), never answered with stale data.
    net.nodes[1].resolve(now, ip("192.168.1.3"));
    net.pump();
    assert!(net.nodes[1].lookup(ip("192.168.1.3")).is_none());
    assert!(net.take_events(1).contains(&Event::ResolutionFailed {
        dst: ip("192.168.1.3"),
        code: Some(12)
    }));
    // The refresh at 2400 s repopulates the hub without the NHS going down.
    net.secs(2400);
    assert_eq!(dynamic(&net.nodes[0]), 2);
    for s in [1, 2] {
        assert!(
            !net.take_events(s)
                .iter()
                .any(|e| matches!(e, Event::NhsDown { .. }))
        );
    }
    // The negative entry has aged out; a new resolution succeeds.
    let now = net.now;
    net.nodes[1].resolve(now, ip("192.168.1.3"));
    net.pump();
    assert_eq!(
        net.nodes[1].lookup(ip("192.168.1.3")).unwrap().nbma,
        ip("172.16.0.3")
    );
}

#[test]
fn hop_count_boundary_forwarding_nhs() {
    // Hop count 2 reaches the owner with 1; hop count 1 stops at the NHS
    // (it would go out with 0) with Error Indication code 15 (RFC 2332
    // 5.2.7, Hop Count Exceeded) sent back to the requester.
    for (hop, forwarded) in [(2u8, true), (1, false)] {
        let mut net = Net::new(vec![hub_cfg(), spoke_cfg(2), spoke_cfg(3)]);
        net.secs(1);
        let mut p = Packet::new(
            PacketType::ResolutionRequest,
            ip("172.16.0.2"),
            ip("192.168.1.2"),
            ip("192.168.1.3"),
            Body::Cies {
                request_id: 9,
                cies: vec![Cie::default()],
            },
        );
        p.hop_count = hop;
        p.extensions = vec![
            Extension::new(ExtBody::Authentication {
                auth_type: 1,
                data: b"cisco123".to_vec(),
            }),
            Extension::new(ExtBody::End),
        ];
        let now = net.now;
        net.nodes[0].handle(now, ip("172.16.0.2"), &p.emit());
        net.pump();
        let fwd = net.sent(PacketType::ResolutionRequest);
        let errs = net.sent(PacketType::ErrorIndication);
        if forwarded {
            assert_eq!(fwd.len(), 1);
            assert_eq!(fwd[0].packet.hop_count, 1);
            assert_eq!(fwd[0].to, ip("172.16.0.3"));
            assert!(errs.is_empty(), "{errs:?}");
            let rep = net.sent(PacketType::ResolutionReply);
            assert_eq!(rep.len(), 1, "the owner answers");
            assert_eq!(
                (rep[0].from, rep[0].to),
                (ip("172.16.0.3"), ip("172.16.0.2"))
            );
        } else {
            assert!(fwd.is_empty());
            assert_eq!(errs.len(), 1);
            assert_eq!(errs[0].to, ip("172.16.0.2"));
            match &errs[0].packet.body {
                Body::Error { code, contents, .. } => {
                    assert_eq!(*code, error_code::HOP_COUNT_EXCEEDED);
                    assert_eq!(*code, 15);
                    assert_eq!(Packet::parse(contents).unwrap().request_id(), Some(9));
                }
                b => panic!("{b:?}"),
            }
            assert_eq!(net.nodes[0].stats().tx_errors, 1);
        }
    }
}

#[test]
fn registration_does_not_replace_static_mapping() {
    // The hub maps spoke 2 statically; spoke 2 registers anyway. The
    // registration succeeds but the static entry stays, so it does not
    // expire with the registration.
    let mut hub = hub_cfg();
    hub.static_maps = vec![(ip("192.168.1.2"), ip("172.16.0.2"))];
    let mut s2 = spoke_cfg(2);
    s2.holding_time = 30;
    let mut net = Net::new(vec![hub, s2, spoke_cfg(3)]);
    net.secs(1);
    assert!(net.nodes[1].nhs_status()[0].up);
    let e = net.nodes[0].cache().get(ip("192.168.1.2"), 32).unwrap();
    assert_eq!(
        (e.kind, e.nbma),
        (EntryType::Static, Some(ip("172.16.0.2")))
    );
    net.down.insert(ip("172.16.0.2"));
    net.events.clear();
    net.secs(60);
    assert!(
        !net.take_events(0)
            .iter()
            .any(|e| matches!(e, Event::PeerExpired { .. }))
    );
    let e = net.nodes[0].cache().get(ip("192.168.1.2"), 32).unwrap();
    assert_eq!((e.kind, e.expires), (EntryType::Static, None));
    // Spoke 3 still resolves it through the hub.
    net.down.remove(&ip("172.16.0.2"));
    let now = net.now;
    net.nodes[2].resolve(now, ip("192.168.1.2"));
    net.pump();
    assert_eq!(
        net.nodes[2].lookup(ip("192.168.1.2")).unwrap().nbma,
        ip("172.16.0.2")
    );
}

/// The multicast list follows the configuration: registered clients only
/// with `map multicast dynamic`, plus the static `map multicast` entries.
#[test]
fn multicast_list_follows_the_configuration() {
    let mut hub = hub_cfg();
    hub.multicast_dynamic = false;
    hub.multicast_static = vec![ip("172.16.0.9")];
    let mut s2 = spoke_cfg(2);
    s2.multicast_static = vec![ip(HUB_NBMA)];
    let mut net = Net::new(vec![hub, s2, spoke_cfg(3)]);
    net.secs(1);
    assert!(net.nodes[1].nhs_status()[0].up && net.nodes[2].nhs_status()[0].up);
    assert_eq!(
        net.nodes[0].multicast_nbmas(),
        vec![ip("172.16.0.9")],
        "registered spokes only with map multicast dynamic"
    );
    assert_eq!(net.nodes[1].multicast_nbmas(), vec![ip(HUB_NBMA)]);
    assert!(
        net.nodes[2].multicast_nbmas().is_empty(),
        "an NHS is not a multicast destination unless configured"
    );
    let mut dynamic = hub_cfg();
    dynamic.multicast_static = vec![ip("172.16.0.9"), ip("172.16.0.2")];
    let mut net = Net::new(vec![dynamic, spoke_cfg(2), spoke_cfg(3)]);
    net.secs(1);
    assert_eq!(
        net.nodes[0].multicast_nbmas(),
        vec![ip("172.16.0.2"), ip("172.16.0.3"), ip("172.16.0.9")],
        "static and registered, each once"
    );
}

/// An IPsec SA coming up sends unanswered resolution requests again at
/// once (same ID): a reply that overtook the SA's installation was lost.
#[test]
fn ipsec_up_resends_pending_resolutions() {
    let mut net = Net::new(vec![hub_cfg(), spoke_cfg(2)]);
    net.secs(1);
    // The hub stops answering: the request stays pending.
    net.down.insert(ip(HUB_NBMA));
    let now = net.now;
    net.nodes[1].resolve(now, ip("10.3.4.5"));
    net.pump();
    let first: Vec<_> = net
        .sent(PacketType::ResolutionRequest)
        .iter()
        .map(|s| s.packet.request_id())
        .collect();
    assert_eq!(first.len(), 1);
    net.nodes[1].ipsec_up(now, ip("172.16.0.3"));
    net.pump();
    let again = net.sent(PacketType::ResolutionRequest);
    assert_eq!(again.len(), 2, "sent again at once");
    assert_eq!(again[1].at, now);
    assert_eq!(again[1].packet.request_id(), first[0]);
    // The retransmission schedule is unchanged (first one 1 s later).
    net.run_until(now + std::time::Duration::from_millis(999));
    assert_eq!(net.sent(PacketType::ResolutionRequest).len(), 2);
    net.run_until(now + std::time::Duration::from_millis(1000));
    assert_eq!(net.sent(PacketType::ResolutionRequest).len(), 3);
}

/// A hub route sends a resolution to a spoke that has nothing behind it
/// for the destination: the spoke's refusal goes back through the hub, and
/// the requester believes it (a negative entry, no more retries).
#[test]
fn a_refusal_from_the_spoke_the_hub_asked_reaches_the_requester() {
    let mut owner = spoke_cfg(3);
    owner.local_prefixes.clear();
    let mut net = Net::new(vec![hub_cfg(), spoke_cfg(2), owner]);
    net.secs(1);
    net.nodes[0].add_route(ip("10.3.0.0"), 16, ip("192.168.1.3"));
    net.events.clear();
    let now = net.now;
    net.nodes[1].resolve(now, ip("10.3.0.5"));
    net.pump();
    assert!(
        net.take_events(1).contains(&Event::ResolutionFailed {
            dst: ip("10.3.0.5"),
            code: Some(12)
        }),
        "the refusal is believed"
    );
    assert_eq!(net.nodes[1].stats().res_reply_refused, 0);
    let e = net.nodes[1].cache().get(ip("10.3.0.5"), 32).unwrap();
    assert_eq!(e.kind, EntryType::Negative);
    let nak = net
        .sent(PacketType::ResolutionReply)
        .into_iter()
        .find(|s| s.from == ip("172.16.0.3"))
        .expect("the spoke answered");
    assert_eq!(nak.to, ip(HUB_NBMA), "back the way the request came");
    net.secs(5);
    let tries = net
        .sent(PacketType::ResolutionRequest)
        .iter()
        .filter(|s| s.from == ip("172.16.0.2") && s.packet.dst_proto_ip() == Some(ip("10.3.0.5")))
        .count();
    assert_eq!(tries, 1, "not retried");
}

/// A network that appears behind a spoke after it started is answered
/// for; one that goes is refused from then on.
#[test]
fn networks_behind_a_spoke_follow_its_interfaces() {
    let mut owner = spoke_cfg(3);
    owner.local_prefixes.clear();
    let mut net = Net::new(vec![hub_cfg(), spoke_cfg(2), owner, spoke_cfg(4)]);
    net.secs(1);
    net.nodes[0].add_route(ip("10.3.0.0"), 16, ip("192.168.1.3"));
    let now = net.now;
    net.nodes[2].set_local_prefixes(now, vec![(ip("10.3.7.9"), 16)]);
    assert_eq!(net.nodes[2].config().local_prefixes, [(ip("10.3.0.0"), 16)]);
    net.events.clear();
    net.nodes[1].resolve(now, ip("10.3.0.5"));
    net.pump();
    let e = net.nodes[1].lookup(ip("10.3.0.5")).expect("resolved");
    assert_eq!((e.kind, e.nbma), (EntryType::Cached, ip("172.16.0.3")));
    // Gone again: the next resolution (from a spoke without the
    // shortcut) is refused.
    let now = net.now;
    net.nodes[2].set_local_prefixes(now, Vec::new());
    assert!(net.nodes[2].cache().get(ip("10.3.0.0"), 16).is_none());
    assert!(
        net.nodes[2].cache().get(ip("192.168.1.3"), 32).is_some(),
        "the tunnel address stays"
    );
    net.events.clear();
    net.nodes[3].resolve(now, ip("10.3.9.9"));
    net.pump();
    assert!(net.take_events(3).contains(&Event::ResolutionFailed {
        dst: ip("10.3.9.9"),
        code: Some(12)
    }));
}

/// A resolution under way is shown with the time it gives up at, and a
/// negative entry takes its place then.
#[test]
fn an_unanswered_resolution_shows_when_it_gives_up() {
    let mut net = Net::new(vec![hub_cfg(), spoke_cfg(2)]);
    net.secs(1);
    net.down.insert(ip(HUB_NBMA));
    let start = net.now;
    net.nodes[1].resolve(start, ip("192.168.1.51"));
    let e = net.nodes[1].cache().get(ip("192.168.1.51"), 32).unwrap();
    assert_eq!(e.kind, EntryType::Incomplete);
    // Sent, then again after 1, 2, 4 and 8 s: given up 15 s after the first.
    let shown = e.expires.expect("an expiry is shown");
    assert_eq!(shown - start, Duration::from_secs(16));
    net.run_until(start + Duration::from_secs(15));
    let e = net.nodes[1].cache().get(ip("192.168.1.51"), 32).unwrap();
    assert_eq!(e.kind, EntryType::Negative, "given up at 15 s");
    assert!(e.expires.is_some());
}
