//! Who may change an NHRP cache: forged registrations, purges, resolution
//! replies and requests from an attacker's NBMA address, in memory against
//! a hub and spokes on virtual time. `from` is the NBMA address the packet
//! came from (on a protected tunnel, the peer of the ESP SA it came in).

mod common;

use std::net::IpAddr;

use common::sim::*;
use dmvpn_nhrp::cache::EntryType;
use dmvpn_nhrp::ext::{AUTH_TYPE_CLEARTEXT, ExtBody};
use dmvpn_nhrp::wire::{Body, code, error_code, flags, ip_to_addr};
use dmvpn_nhrp::{Cie, Event, Extension, Packet, PacketType};

const ATTACKER: &str = "172.16.0.97";

fn auth() -> Extension {
    Extension::new(ExtBody::Authentication {
        auth_type: AUTH_TYPE_CLEARTEXT,
        data: b"cisco123".to_vec(),
    })
}

fn cie(proto: &str, prefix_len: u8) -> Cie {
    Cie {
        prefix_len,
        mtu: 1514,
        holding_time: 7200,
        proto: ip_to_addr(ip(proto)),
        ..Cie::default()
    }
}

/// A Registration Request from `nbma` (tunnel address `src`) to the hub.
fn registration(nbma: &str, src: &str, cies: Vec<Cie>, unique: bool) -> Vec<u8> {
    let mut p = Packet::new(
        PacketType::RegistrationRequest,
        ip(nbma),
        ip(src),
        ip(HUB_TUN),
        Body::Cies {
            request_id: 4242,
            cies,
        },
    );
    p.flags = flags::CISCO_NAT | if unique { flags::REG_U } else { 0 };
    p.extensions = vec![auth(), Extension::new(ExtBody::End)];
    p.emit()
}

fn purge(nbma: &str, src: &str, dst: &str, cies: Vec<Cie>) -> Vec<u8> {
    let mut p = Packet::new(
        PacketType::PurgeRequest,
        ip(nbma),
        ip(src),
        ip(dst),
        Body::Cies {
            request_id: 77,
            cies,
        },
    );
    p.extensions = vec![auth(), Extension::new(ExtBody::End)];
    p.emit()
}

/// Delivers `bytes` from `from` to node `to` now, and returns the codes of
/// the Registration Reply it sent back, if any.
fn deliver(net: &mut Net, to: usize, from: &str, bytes: &[u8]) -> Option<Vec<u8>> {
    let before = net.sent(PacketType::RegistrationReply).len();
    let now = net.now;
    net.nodes[to].handle(now, ip(from), bytes);
    net.pump();
    let replies = net.sent(PacketType::RegistrationReply);
    replies[before..]
        .iter()
        .find(|s| s.to == ip(from))
        .map(|s| s.packet.cies().iter().map(|c| c.code).collect())
}

fn hub_nbma_of(net: &mut Net, addr: &str) -> Option<IpAddr> {
    net.nodes[0].lookup(ip(addr)).map(|n| n.nbma)
}

/// Hub with spokes 2 and 3 registered (unique, as by default), and the
/// hub's route to spoke 3's LAN.
fn registered() -> Net {
    let mut net = Net::new(vec![hub_cfg(), spoke_cfg(2), spoke_cfg(3)]);
    net.secs(1);
    net.nodes[0].add_route(ip("10.3.0.0"), 16, ip("192.168.1.3"));
    net.events.clear();
    assert_eq!(hub_nbma_of(&mut net, "192.168.1.2"), Some(ip("172.16.0.2")));
    assert_eq!(hub_nbma_of(&mut net, "192.168.1.3"), Some(ip("172.16.0.3")));
    net
}

fn assert_spokes_intact(net: &mut Net) {
    assert_eq!(hub_nbma_of(net, "192.168.1.2"), Some(ip("172.16.0.2")));
    assert_eq!(hub_nbma_of(net, "192.168.1.3"), Some(ip("172.16.0.3")));
    let foreign: Vec<String> = net.nodes[0]
        .cache()
        .entries()
        .iter()
        .filter(|e| e.nbma == Some(ip(ATTACKER)))
        .map(|e| format!("{}/{}", e.prefix, e.prefix_len))
        .collect();
    assert!(foreign.is_empty(), "attacker entries: {foreign:?}");
    assert!(
        !net.events.iter().any(|(n, e)| *n == 0
            && matches!(e, Event::PeerExpired { .. } | Event::PeerRegistered { .. })),
        "{:?}",
        net.events
    );
}

// ----- purge -----------------------------------------------------------

/// The attack: one Purge Request naming the tunnel subnet removed every
/// spoke's registration. Only the NBMA address that registered an entry
/// may purge it.
#[test]
fn forged_purge_cannot_remove_registrations_of_others() {
    let mut net = registered();
    let p = purge(
        ATTACKER,
        "192.168.1.97",
        HUB_TUN,
        vec![cie("192.168.1.0", 24)],
    );
    deliver(&mut net, 0, ATTACKER, &p);
    assert_spokes_intact(&mut net);
    assert_eq!(net.nodes[0].stats().purge_refused, 2);
    // The owner may purge its own registration.
    let own = purge(
        "172.16.0.2",
        "192.168.1.2",
        HUB_TUN,
        vec![cie("192.168.1.2", 32)],
    );
    deliver(&mut net, 0, "172.16.0.2", &own);
    assert_eq!(hub_nbma_of(&mut net, "192.168.1.2"), None);
    assert_eq!(hub_nbma_of(&mut net, "192.168.1.3"), Some(ip("172.16.0.3")));
}

/// The attack's second step: after the purge, a registration of the
/// victim's address (not unique, so the victim's refresh replaces it)
/// took its traffic. With the purge refused it is refused too.
#[test]
fn purge_then_register_cannot_take_over() {
    let mut net = registered();
    let p = purge(
        ATTACKER,
        "192.168.1.97",
        HUB_TUN,
        vec![cie("192.168.1.2", 32)],
    );
    deliver(&mut net, 0, ATTACKER, &p);
    let r = registration(ATTACKER, "192.168.1.2", vec![cie("192.168.1.2", 32)], false);
    assert_eq!(
        deliver(&mut net, 0, ATTACKER, &r),
        Some(vec![code::ALREADY_REGISTERED])
    );
    assert_spokes_intact(&mut net);
}

/// A spoke's shortcut can be purged by the peer it leads to and by its
/// NHS, not by a third party.
#[test]
fn spoke_shortcut_purged_only_by_its_owner_or_nhs() {
    let mut net = registered();
    let now = net.now;
    net.nodes[1].resolve(now, ip("192.168.1.3"));
    net.pump();
    assert!(net.nodes[1].lookup(ip("192.168.1.3")).is_some());
    let p = purge(
        ATTACKER,
        "192.168.1.97",
        "192.168.1.2",
        vec![cie("192.168.1.3", 32)],
    );
    deliver(&mut net, 1, ATTACKER, &p);
    assert!(
        net.nodes[1].lookup(ip("192.168.1.3")).is_some(),
        "third party"
    );
    assert_eq!(net.nodes[1].stats().purge_refused, 1);
    let p = purge(
        HUB_NBMA,
        HUB_TUN,
        "192.168.1.2",
        vec![cie("192.168.1.3", 32)],
    );
    deliver(&mut net, 1, HUB_NBMA, &p);
    assert!(net.nodes[1].lookup(ip("192.168.1.3")).is_none(), "the NHS");
}

// ----- registrations -------------------------------------------------

/// Prefix-length variants that overlap live registrations of other NBMA
/// addresses (a /31 covering both spokes, the tunnel subnet, which also
/// holds the hub's own address) are refused with code 14, as the
/// identical /32 always was.
#[test]
fn registration_overlapping_a_live_registration_is_refused() {
    let mut net = registered();
    for (p, l) in [
        ("192.168.1.2", 32),
        ("192.168.1.2", 31),
        ("192.168.1.0", 24),
        ("192.168.1.0", 30),
    ] {
        let r = registration(ATTACKER, "192.168.1.97", vec![cie(p, l)], true);
        assert_eq!(
            deliver(&mut net, 0, ATTACKER, &r),
            Some(vec![code::ALREADY_REGISTERED]),
            "{p}/{l}"
        );
    }
    assert_eq!(net.nodes[0].stats().reg_refused_unique, 4);
    assert_spokes_intact(&mut net);
    // A free address in the subnet is still the attacker's to take.
    let r = registration(
        ATTACKER,
        "192.168.1.97",
        vec![cie("192.168.1.97", 32)],
        true,
    );
    assert_eq!(deliver(&mut net, 0, ATTACKER, &r), Some(vec![0]));
}

/// A registration may not claim the hub's own tunnel address (inside the
/// tunnel subnet it registers), even with no spoke registered.
#[test]
fn registration_covering_the_hubs_own_address_is_refused() {
    let mut net = Net::new(vec![hub_cfg()]);
    let r = registration(
        ATTACKER,
        "192.168.1.97",
        vec![cie("192.168.1.0", 24)],
        false,
    );
    assert_eq!(
        deliver(&mut net, 0, ATTACKER, &r),
        Some(vec![code::ALREADY_REGISTERED])
    );
    assert_eq!(hub_nbma_of(&mut net, "192.168.1.50"), None);
}

/// The attack: `10.3.0.0/25 -> attacker` beat the hub's route to spoke 3's
/// LAN. Registrations may only claim prefixes inside the configured list
/// (by default the tunnel subnet): code 4.
#[test]
fn lan_prefix_outside_registration_prefixes_is_refused() {
    let mut net = registered();
    let r = registration(ATTACKER, "192.168.1.97", vec![cie("10.3.0.0", 25)], true);
    assert_eq!(
        deliver(&mut net, 0, ATTACKER, &r),
        Some(vec![code::ADMIN_PROHIBITED])
    );
    assert_eq!(net.nodes[0].stats().reg_refused_prefix, 1);
    assert_eq!(net.nodes[0].lookup(ip("10.3.0.1")), None, "no entry at all");
    assert_spokes_intact(&mut net);
}

/// With LANs allowed, a spoke registers its LAN, and a more specific
/// prefix inside it from another NBMA address is refused while it lives.
#[test]
fn allowed_lan_registration_is_unique_against_more_specifics() {
    let mut hub = hub_cfg();
    hub.registration_prefixes = Some(vec![(ip("192.168.1.0"), 24), (ip("10.0.0.0"), 8)]);
    let mut net = Net::new(vec![hub]);
    let lan = registration("172.16.0.3", "192.168.1.3", vec![cie("10.3.0.0", 16)], true);
    assert_eq!(deliver(&mut net, 0, "172.16.0.3", &lan), Some(vec![0]));
    let r = registration(ATTACKER, "192.168.1.97", vec![cie("10.3.0.0", 25)], true);
    assert_eq!(
        deliver(&mut net, 0, ATTACKER, &r),
        Some(vec![code::ALREADY_REGISTERED])
    );
    assert_eq!(hub_nbma_of(&mut net, "10.3.0.1"), Some(ip("172.16.0.3")));
    let r = registration(ATTACKER, "192.168.1.97", vec![cie("11.0.0.0", 8)], true);
    assert_eq!(
        deliver(&mut net, 0, ATTACKER, &r),
        Some(vec![code::ADMIN_PROHIBITED])
    );
}

/// A spoke that registered without the unique flag (`ip nhrp registration
/// no-unique`) can be replaced by another NBMA address: the old mapping is
/// purged, with an event, and the new one takes its place.
#[test]
fn registration_without_unique_flag_is_taken_over_with_events() {
    let mut s2 = spoke_cfg(2);
    s2.unique = false;
    let mut net = Net::new(vec![hub_cfg(), s2]);
    net.secs(1);
    net.events.clear();
    let r = registration(
        "172.16.0.33",
        "192.168.1.2",
        vec![cie("192.168.1.2", 32)],
        true,
    );
    assert_eq!(deliver(&mut net, 0, "172.16.0.33", &r), Some(vec![0]));
    assert_eq!(
        hub_nbma_of(&mut net, "192.168.1.2"),
        Some(ip("172.16.0.33"))
    );
    let ev = net.take_events(0);
    assert_eq!(
        ev,
        [
            Event::PeerExpired {
                protocol: ip("192.168.1.2"),
                prefix_len: 32,
                nbma: Some(ip("172.16.0.2"))
            },
            Event::PeerRegistered {
                protocol: ip("192.168.1.2"),
                prefix_len: 32,
                nbma: ip("172.16.0.33"),
                claimed_nbma: None,
                holding_time: 7200
            }
        ]
    );
    assert_eq!(net.nodes[0].stats().reg_takeovers, 1);
}

/// A unique registration is refused to a new NBMA address until the node
/// reports the old address's peer gone (last SA deleted, DPD dead); then
/// the old mapping is purged and the new one accepted. A peer that comes
/// back (SA up again, or a refresh) is protected again.
#[test]
fn peer_gone_lets_a_new_nbma_take_over_a_unique_registration() {
    let mut net = registered();
    let moved = registration(
        "172.16.0.33",
        "192.168.1.2",
        vec![cie("192.168.1.2", 32)],
        true,
    );
    assert_eq!(
        deliver(&mut net, 0, "172.16.0.33", &moved),
        Some(vec![code::ALREADY_REGISTERED])
    );
    // Back again before anyone took its place: still protected.
    net.nodes[0].peer_gone(ip("172.16.0.2"));
    let now = net.now;
    net.nodes[0].ipsec_up(now, ip("172.16.0.2"));
    assert_eq!(
        deliver(&mut net, 0, "172.16.0.33", &moved),
        Some(vec![code::ALREADY_REGISTERED])
    );
    net.nodes[0].peer_gone(ip("172.16.0.2"));
    net.events.clear();
    assert_eq!(deliver(&mut net, 0, "172.16.0.33", &moved), Some(vec![0]));
    assert_eq!(
        hub_nbma_of(&mut net, "192.168.1.2"),
        Some(ip("172.16.0.33"))
    );
    assert!(net.take_events(0).contains(&Event::PeerExpired {
        protocol: ip("192.168.1.2"),
        prefix_len: 32,
        nbma: Some(ip("172.16.0.2"))
    }));
    assert_eq!(net.nodes[0].stats().reg_takeovers, 1);
    // Spoke 3 is untouched, and a gone mark does not outlive its peer's
    // registrations' takeover for others.
    assert_eq!(hub_nbma_of(&mut net, "192.168.1.3"), Some(ip("172.16.0.3")));
    let r = registration(
        "172.16.0.2",
        "192.168.1.2",
        vec![cie("192.168.1.2", 32)],
        true,
    );
    assert_eq!(
        deliver(&mut net, 0, "172.16.0.2", &r),
        Some(vec![code::ALREADY_REGISTERED]),
        "the new owner is protected in turn"
    );
}

/// A peer marked gone that registers again is protected again.
#[test]
fn peer_gone_is_undone_by_a_refresh() {
    let mut net = registered();
    net.nodes[0].peer_gone(ip("172.16.0.2"));
    let refresh = registration(
        "172.16.0.2",
        "192.168.1.2",
        vec![cie("192.168.1.2", 32)],
        true,
    );
    assert_eq!(deliver(&mut net, 0, "172.16.0.2", &refresh), Some(vec![0]));
    let moved = registration(
        "172.16.0.33",
        "192.168.1.2",
        vec![cie("192.168.1.2", 32)],
        true,
    );
    assert_eq!(
        deliver(&mut net, 0, "172.16.0.33", &moved),
        Some(vec![code::ALREADY_REGISTERED])
    );
}

// ----- bounds ------------------------------------------------------------

/// The attack: 300 requests with many CIEs created 25,503 entries. CIEs
/// beyond the per-request bound are refused unread (code 5).
#[test]
fn cies_beyond_the_per_request_bound_are_refused() {
    let mut hub = hub_cfg();
    hub.max_registrations_per_nbma = 1000;
    let mut net = Net::new(vec![hub]);
    let cies: Vec<Cie> = (10..40)
        .map(|i| cie(&format!("192.168.1.{i}"), 32))
        .collect();
    let r = registration(ATTACKER, "192.168.1.97", cies, true);
    let codes = deliver(&mut net, 0, ATTACKER, &r).unwrap();
    assert_eq!(codes.len(), 30);
    assert!(codes[..16].iter().all(|c| *c == 0), "{codes:?}");
    assert!(
        codes[16..]
            .iter()
            .all(|c| *c == code::INSUFFICIENT_RESOURCES)
    );
    assert_eq!(net.nodes[0].cache().registrations_from(ip(ATTACKER)), 16);
    assert_eq!(net.nodes[0].stats().reg_refused_too_many_cies, 14);
}

/// One NBMA address holds a bounded number of registrations; its
/// refreshes still succeed at the bound.
#[test]
fn registrations_per_nbma_are_bounded_but_refreshes_succeed() {
    let mut hub = hub_cfg();
    hub.max_registrations_per_nbma = 2;
    let mut net = Net::new(vec![hub]);
    for i in [10, 11] {
        let a = format!("192.168.1.{i}");
        let r = registration(ATTACKER, &a, vec![cie(&a, 32)], true);
        assert_eq!(deliver(&mut net, 0, ATTACKER, &r), Some(vec![0]));
    }
    let r = registration(
        ATTACKER,
        "192.168.1.12",
        vec![cie("192.168.1.12", 32)],
        true,
    );
    assert_eq!(
        deliver(&mut net, 0, ATTACKER, &r),
        Some(vec![code::INSUFFICIENT_RESOURCES])
    );
    let r = registration(
        ATTACKER,
        "192.168.1.10",
        vec![cie("192.168.1.10", 32)],
        true,
    );
    assert_eq!(deliver(&mut net, 0, ATTACKER, &r), Some(vec![0]), "refresh");
    assert_eq!(net.nodes[0].stats().reg_refused_nbma_limit, 1);
    // Others are not affected by one address's bound.
    let r = registration(
        "172.16.0.5",
        "192.168.1.5",
        vec![cie("192.168.1.5", 32)],
        true,
    );
    assert_eq!(deliver(&mut net, 0, "172.16.0.5", &r), Some(vec![0]));
}

/// When the cache is full a new registration is refused (code 5) while a
/// registered spoke's refresh still gets through, and the hub keeps
/// working once entries expire.
#[test]
fn full_cache_refuses_new_registrations_but_not_refreshes() {
    let mut hub = hub_cfg();
    hub.max_cache_entries = 2;
    let mut net = Net::new(vec![hub, spoke_cfg(2), spoke_cfg(3)]);
    net.secs(1);
    // The flood: new addresses from many sources.
    for i in 100..110 {
        let (n, a) = (format!("172.16.1.{i}"), format!("192.168.1.{i}"));
        let r = registration(&n, &a, vec![cie(&a, 32)], true);
        assert_eq!(
            deliver(&mut net, 0, &n, &r),
            Some(vec![code::INSUFFICIENT_RESOURCES])
        );
    }
    assert_eq!(net.nodes[0].stats().reg_refused_cache_full, 10);
    assert_eq!(net.nodes[0].cache().learned(), 2);
    // The spokes' refreshes at holdtime/3 succeed.
    net.secs(2400);
    for s in [1, 2] {
        let st = &net.nodes[s].nhs_status()[0];
        assert!(st.up, "spoke {s}");
        assert_eq!((st.replies_received, st.requests_failed), (2, 0));
    }
}

// ----- resolution ----------------------------------------------------------

/// Spoke 2's resolution request for spoke 3 (the hub does not answer:
/// the reply under test is forged). Returns its request ID.
fn pending_resolution(net: &mut Net) -> u32 {
    net.blocked.insert((ip(HUB_NBMA), ip("172.16.0.3")));
    let now = net.now;
    net.nodes[1].resolve(now, ip("192.168.1.3"));
    net.pump();
    net.sent(PacketType::ResolutionRequest)
        .last()
        .unwrap()
        .packet
        .request_id()
        .unwrap()
}

fn reply(id: u32, nbma: &str, nat: Option<&str>, c: u8) -> Vec<u8> {
    let mut p = Packet::new(
        PacketType::ResolutionReply,
        ip("172.16.0.2"),
        ip("192.168.1.2"),
        ip("192.168.1.3"),
        Body::Cies {
            request_id: id,
            cies: vec![Cie {
                code: c,
                nbma: ip_to_addr(ip(nbma)),
                ..cie("192.168.1.3", 32)
            }],
        },
    );
    p.flags = 0xf802;
    p.extensions = vec![auth()];
    if let Some(n) = nat {
        p.extensions
            .push(Extension::new(ExtBody::NatAddress(vec![Cie {
                nbma: ip_to_addr(ip(n)),
                ..cie("192.168.1.3", 32)
            }])));
    }
    p.extensions.push(Extension::new(ExtBody::End));
    p.emit()
}

/// A Resolution Reply that neither comes from an NHS nor from the NBMA
/// address it names (in its CIE or its NAT extension) installs nothing
/// and leaves the resolution pending for the real answer.
#[test]
fn resolution_reply_from_a_third_party_is_ignored() {
    let mut net = registered();
    let id = pending_resolution(&mut net);
    let now = net.now;
    for forged in [
        reply(id, "172.16.0.66", None, 0),
        reply(id, ATTACKER, Some("172.16.0.66"), 0),
        reply(id, ATTACKER, None, code::NO_BINDING),
    ] {
        net.nodes[1].handle(now, ip(ATTACKER), &forged);
    }
    assert_eq!(net.nodes[1].stats().res_reply_refused, 3);
    let e = net.nodes[1].cache().get(ip("192.168.1.3"), 32).unwrap();
    assert_eq!(e.kind, EntryType::Incomplete, "still resolving");
    // The real responder, answering from the address it names (here its
    // post-NAT one, named in the NAT extension), is believed.
    net.nodes[1].handle(
        now,
        ip("172.16.0.33"),
        &reply(id, "10.9.9.3", Some("172.16.0.33"), 0),
    );
    let nh = net.nodes[1].lookup(ip("192.168.1.3")).unwrap();
    assert_eq!((nh.kind, nh.nbma), (EntryType::Cached, ip("172.16.0.33")));
}

/// A Resolution Request sent straight to a spoke (not relayed by its NHS)
/// is answered where it came from, not to the address it names, and does
/// not make the spoke cache the requester's claimed address.
#[test]
fn direct_resolution_request_cannot_redirect_the_reply_or_the_cache() {
    let mut net = registered();
    let mut p = Packet::new(
        PacketType::ResolutionRequest,
        ip("172.16.0.66"),
        ip("192.168.1.2"),
        ip("192.168.1.3"),
        Body::Cies {
            request_id: 5,
            cies: vec![cie("0.0.0.0", 0)],
        },
    );
    p.flags = 0xc802;
    p.extensions = vec![auth(), Extension::new(ExtBody::End)];
    let now = net.now;
    net.nodes[2].handle(now, ip(ATTACKER), &p.emit());
    let t = net.nodes[2].poll_transmit().unwrap();
    assert_eq!(t.dst_nbma, ip(ATTACKER), "answered to its sender");
    assert_eq!(
        Packet::parse(&t.payload).unwrap().packet_type,
        PacketType::ResolutionReply
    );
    assert!(net.nodes[2].cache().get(ip("192.168.1.2"), 32).is_none());
}

/// An Error Indication about a pending resolution from a third party does
/// not cancel it.
#[test]
fn forged_error_indication_does_not_cancel_a_resolution() {
    let mut net = registered();
    let id = pending_resolution(&mut net);
    let req = net
        .sent(PacketType::ResolutionRequest)
        .last()
        .unwrap()
        .packet
        .clone();
    assert_eq!(req.request_id(), Some(id));
    let ei = Packet::new(
        PacketType::ErrorIndication,
        ip(ATTACKER),
        ip("192.168.1.97"),
        ip("192.168.1.2"),
        Body::Error {
            code: error_code::PROTOCOL_ADDRESS_UNREACHABLE,
            offset: 0,
            contents: req.emit(),
        },
    );
    let now = net.now;
    net.nodes[1].handle(now, ip(ATTACKER), &ei.emit());
    let e = net.nodes[1].cache().get(ip("192.168.1.3"), 32).unwrap();
    assert_eq!(e.kind, EntryType::Incomplete, "not negative");
}

/// The NAT extension a requester names in its Resolution Request: the hub
/// replaces it with the address the request came from, so the responder
/// answers the requester and not whoever it named.
#[test]
fn hub_names_the_requesters_real_address_when_relaying_a_request() {
    let mut net = registered();
    let r = registration(
        ATTACKER,
        "192.168.1.97",
        vec![cie("192.168.1.97", 32)],
        true,
    );
    assert_eq!(deliver(&mut net, 0, ATTACKER, &r), Some(vec![0]));
    let mut p = Packet::new(
        PacketType::ResolutionRequest,
        ip(ATTACKER),
        ip("192.168.1.97"),
        ip("192.168.1.3"),
        Body::Cies {
            request_id: 5,
            cies: vec![cie("0.0.0.0", 0)],
        },
    );
    p.flags = 0xc802;
    p.extensions = vec![
        Extension::new(ExtBody::ForwardTransit(vec![])),
        auth(),
        Extension::new(ExtBody::NatAddress(vec![Cie {
            nbma: ip_to_addr(ip("172.16.0.66")),
            ..cie("192.168.1.97", 32)
        }])),
        Extension::new(ExtBody::End),
    ];
    net.wire.clear();
    let now = net.now;
    net.nodes[0].handle(now, ip(ATTACKER), &p.emit());
    net.pump();
    let fwd = net.sent(PacketType::ResolutionRequest);
    assert_eq!(fwd.len(), 1);
    assert_eq!(fwd[0].to, ip("172.16.0.3"));
    let answers = net.sent(PacketType::ResolutionReply);
    assert_eq!(answers.len(), 1);
    assert_eq!(answers[0].to, ip(ATTACKER), "not 172.16.0.66");
}

fn resolution_request(nbma: &str, src: &str, dst: &str) -> Vec<u8> {
    let mut p = Packet::new(
        PacketType::ResolutionRequest,
        ip(nbma),
        ip(src),
        ip(dst),
        Body::Cies {
            request_id: 6,
            cies: vec![cie("0.0.0.0", 0)],
        },
    );
    p.flags = 0xc802;
    p.extensions = vec![auth(), Extension::new(ExtBody::End)];
    p.emit()
}

/// Relaying a request vouches for its requester: the hub passes one on
/// only for a requester registered at the address it came from, so an
/// attacker cannot make spoke 3 learn spoke 2's address at its own NBMA
/// address. A spoke does not pass on a request sent to it directly.
#[test]
fn request_for_a_requester_registered_elsewhere_is_not_relayed() {
    let mut net = registered();
    net.wire.clear();
    let req = resolution_request(ATTACKER, "192.168.1.2", "192.168.1.3");
    deliver(&mut net, 0, ATTACKER, &req);
    assert!(net.sent(PacketType::ResolutionReply).is_empty());
    assert_eq!(
        net.sent(PacketType::ResolutionRequest).len(),
        0,
        "not forwarded"
    );
    assert_eq!(net.nodes[0].stats().res_request_refused, 1);
    assert!(net.nodes[2].cache().get(ip("192.168.1.2"), 32).is_none());
    // Sent to spoke 2 for a destination behind spoke 3: not passed on to
    // the hub on the attacker's behalf.
    let req = resolution_request(ATTACKER, "192.168.1.97", "192.168.1.3");
    deliver(&mut net, 1, ATTACKER, &req);
    assert_eq!(net.sent(PacketType::ResolutionRequest).len(), 0);
    assert_eq!(net.nodes[1].stats().res_request_refused, 1);
}

/// A reply a responder routes back through the hub: the hub names the
/// address it came from when the responder claims another one, and the
/// requester, trusting its NHS, installs that.
#[test]
fn hub_names_the_responders_real_address_when_relaying_a_reply() {
    let mut net = registered();
    let now = net.now;
    net.blocked.insert((ip("172.16.0.3"), ip("172.16.0.2")));
    net.nodes[1].resolve(now, ip("192.168.1.3"));
    net.pump();
    net.blocked.clear();
    let mut reply = net
        .sent(PacketType::ResolutionReply)
        .last()
        .unwrap()
        .packet
        .clone();
    if let Some(c) = reply.cies_mut() {
        c[0].nbma = ip_to_addr(ip("172.16.0.66"));
    }
    net.nodes[0].handle(now, ip("172.16.0.3"), &reply.emit());
    net.pump();
    assert_eq!(
        net.nodes[1].lookup(ip("192.168.1.3")).unwrap().nbma,
        ip("172.16.0.3")
    );
}

// ----- unprotected tunnels ----------------------------------------------

/// With `allowed_nbma`, an NHS drops NHRP from other sources unanswered
/// (no reply, no Error Indication) and counts it; allowed sources
/// register as before. A spoke's NHS is always allowed.
#[test]
fn allowed_nbma_drops_other_sources() {
    let mut hub = hub_cfg();
    hub.allowed_nbma = Some(vec![(ip("172.16.0.0"), 28)]);
    let mut s2 = spoke_cfg(2);
    s2.allowed_nbma = Some(vec![]);
    let mut net = Net::new(vec![hub, s2]);
    net.secs(1);
    assert!(
        net.nodes[1].nhs_status()[0].up,
        "registered via an allowed source"
    );
    let wire = net.wire.len();
    let r = registration(
        ATTACKER,
        "192.168.1.97",
        vec![cie("192.168.1.97", 32)],
        true,
    );
    assert_eq!(deliver(&mut net, 0, ATTACKER, &r), None);
    assert_eq!(net.wire.len(), wire, "nothing sent back");
    assert_eq!(net.nodes[0].stats().rx_nbma_refused, 1);
    assert_eq!(hub_nbma_of(&mut net, "192.168.1.97"), None);
    let p = purge(ATTACKER, "192.168.1.97", "192.168.1.2", vec![]);
    deliver(&mut net, 1, ATTACKER, &p);
    assert_eq!(net.nodes[1].stats().rx_nbma_refused, 1);
}

// ----- spoke side ------------------------------------------------------

/// A registration the NHS refuses shows in `nhs_status` (not up, with the
/// code) and is reported once per change, not for every retry; an NHS
/// that was up goes down.
#[test]
fn refused_registration_shows_in_nhs_status_once_per_change() {
    let mut s2 = spoke_cfg(2);
    s2.registration_interval = Some(std::time::Duration::from_secs(60));
    let mut net = Net::new(vec![hub_cfg(), s2]);
    net.secs(1);
    let st = &net.nodes[1].nhs_status()[0];
    assert_eq!((st.up, st.last_code), (true, Some(0)));
    // The hub loses spoke 2's registration (spoke 2 purges it) and another
    // NBMA address registers the address in between.
    let p = purge(
        "172.16.0.2",
        "192.168.1.2",
        HUB_TUN,
        vec![cie("192.168.1.2", 32)],
    );
    deliver(&mut net, 0, "172.16.0.2", &p);
    let r = registration(
        "172.16.0.33",
        "192.168.1.2",
        vec![cie("192.168.1.2", 32)],
        true,
    );
    assert_eq!(deliver(&mut net, 0, "172.16.0.33", &r), Some(vec![0]));
    net.events.clear();
    net.secs(600);
    let st = &net.nodes[1].nhs_status()[0];
    assert_eq!((st.up, st.last_code), (false, Some(14)));
    assert!(st.requests_failed >= 3, "{st:?}");
    let ev = net.take_events(1);
    let rejected = ev
        .iter()
        .filter(|e| matches!(e, Event::RegistrationRejected { code: 14, .. }))
        .count();
    assert_eq!(rejected, 1, "{ev:?}");
    assert!(ev.contains(&Event::NhsDown {
        nhs: ip(HUB_TUN),
        nbma: ip(HUB_NBMA)
    }));
}

/// A spoke whose NBMA address changed registers at once from the new
/// address; the hub takes it once the old address's peer is gone.
#[test]
fn moved_spoke_reregisters_at_once_and_hub_accepts_when_old_peer_gone() {
    let mut net = registered();
    net.wire.clear();
    let now = net.now;
    net.nodes[1].set_nbma(now, ip("172.16.0.33"));
    net.pump();
    let regs = net.sent(PacketType::RegistrationRequest);
    assert_eq!(regs.len(), 1, "at once");
    assert_eq!(regs[0].from, ip("172.16.0.33"));
    assert_eq!(regs[0].packet.src_nbma_ip(), Some(ip("172.16.0.33")));
    assert_eq!(net.nodes[1].nhs_status()[0].last_code, Some(14));
    assert_eq!(hub_nbma_of(&mut net, "192.168.1.2"), Some(ip("172.16.0.2")));
    // The hub's last SA with 172.16.0.2 goes away.
    net.nodes[0].peer_gone(ip("172.16.0.2"));
    net.secs(70);
    assert_eq!(
        hub_nbma_of(&mut net, "192.168.1.2"),
        Some(ip("172.16.0.33"))
    );
    let st = &net.nodes[1].nhs_status()[0];
    assert_eq!((st.up, st.last_code), (true, Some(0)));
    assert_eq!(
        net.nodes[1]
            .cache()
            .get(ip("192.168.1.2"), 32)
            .unwrap()
            .nbma,
        Some(ip("172.16.0.33"))
    );
}

/// A Registration Reply for the spoke's request (IDs are counters, easy to
/// guess) from anyone but the NHS asked, and a Traffic Indication from
/// anyone but an NHS, are ignored.
#[test]
fn replies_and_traffic_indications_count_only_from_the_nhs() {
    let mut s2 = spoke_cfg(2);
    s2.registration_interval = Some(std::time::Duration::from_secs(60));
    let mut net = Net::new(vec![hub_cfg(), s2]);
    net.secs(1);
    // The next refresh goes unanswered for now.
    net.down.insert(ip(HUB_NBMA));
    net.secs(60);
    let req = net
        .sent(PacketType::RegistrationRequest)
        .last()
        .unwrap()
        .packet
        .clone();
    let mut forged = req.clone();
    forged.packet_type = PacketType::RegistrationReply;
    if let Some(c) = forged.cies_mut() {
        c[0].code = code::ALREADY_REGISTERED;
    }
    let now = net.now;
    net.nodes[1].handle(now, ip(ATTACKER), &forged.emit());
    let st = &net.nodes[1].nhs_status()[0];
    assert_eq!((st.up, st.last_code), (true, Some(0)), "{st:?}");
    assert_eq!(st.request_id, req.request_id(), "still waiting");
    assert_eq!(net.nodes[1].stats().reg_reply_refused, 1);

    let ti = Packet::new(
        PacketType::TrafficIndication,
        ip(ATTACKER),
        ip("192.168.1.97"),
        ip("10.2.0.1"),
        Body::Traffic {
            code: 0,
            unused: 0,
            contents: common::ipv4(
                "10.2.0.1".parse().unwrap(),
                "10.77.0.1".parse().unwrap(),
                1,
                0,
                63,
                &[8, 0, 0, 0, 0, 0, 0, 0],
            ),
        },
    );
    let mut ti = ti;
    ti.extensions = vec![auth(), Extension::new(ExtBody::End)];
    net.nodes[1].handle(now, ip(ATTACKER), &ti.emit());
    assert!(
        net.nodes[1].cache().get(ip("10.77.0.1"), 32).is_none(),
        "no resolution"
    );
    assert_eq!(net.nodes[1].stats().traffic_indications_refused, 1);
}
