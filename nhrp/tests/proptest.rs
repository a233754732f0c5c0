//! Property tests: emit→parse→emit round-trips for arbitrary packets, and
//! parsing arbitrary bytes never panics.

use dmvpn_nhrp::capture::{LINKTYPE_ETHERNET, LINKTYPE_LINUX_SLL, LINKTYPE_RAW, extract_nhrp};
use dmvpn_nhrp::ext::ExtBody;
use dmvpn_nhrp::{Body, Cie, Extension, Packet, PacketType};
use dmvpn_wire::gre::GreRepr;
use dmvpn_wire::ipv4::Ipv4Packet;
use proptest::prelude::*;

fn addr() -> impl Strategy<Value = Vec<u8>> {
    prop_oneof![
        Just(Vec::new()),
        prop::collection::vec(any::<u8>(), 4),
        prop::collection::vec(any::<u8>(), 16),
        prop::collection::vec(any::<u8>(), 0..=63),
    ]
}

fn cie() -> impl Strategy<Value = Cie> {
    (
        any::<(u8, u8, u16, u16, u16, u8)>(),
        addr(),
        prop::collection::vec(any::<u8>(), 0..3),
        addr(),
    )
        .prop_map(
            |((code, pl, unused, mtu, ht, pref), nbma, sub, proto)| Cie {
                code,
                prefix_len: pl,
                unused,
                mtu,
                holding_time: ht,
                preference: pref,
                nbma,
                nbma_subaddr: sub,
                proto,
            },
        )
}

fn cies() -> impl Strategy<Value = Vec<Cie>> {
    prop::collection::vec(cie(), 0..3)
}

fn ext_body() -> impl Strategy<Value = ExtBody> {
    prop_oneof![
        prop::option::of(cie()).prop_map(ExtBody::ResponderAddress),
        cies().prop_map(ExtBody::ForwardTransit),
        cies().prop_map(ExtBody::ReverseTransit),
        (any::<u32>(), prop::collection::vec(any::<u8>(), 0..12))
            .prop_map(|(auth_type, data)| ExtBody::Authentication { auth_type, data }),
        prop::collection::vec(any::<u8>(), 0..12).prop_map(ExtBody::VendorPrivate),
        cies().prop_map(ExtBody::NatAddress),
        (10u16..0x7fff, prop::collection::vec(any::<u8>(), 0..12))
            .prop_map(|(ty, data)| ExtBody::Unknown { ty, data }),
    ]
}

fn extensions() -> impl Strategy<Value = (Vec<Extension>, Vec<u8>)> {
    (
        prop::collection::vec((any::<bool>(), ext_body()), 0..6),
        any::<bool>(),
        prop::collection::vec(any::<u8>(), 0..6),
    )
        .prop_map(|(v, end, trailer)| {
            let mut exts: Vec<Extension> = v
                .into_iter()
                .map(|(compulsory, body)| Extension { compulsory, body })
                .collect();
            if end || !trailer.is_empty() {
                exts.push(Extension {
                    compulsory: true,
                    body: ExtBody::End,
                });
                (exts, trailer)
            } else {
                (exts, Vec::new())
            }
        })
}

fn packet() -> impl Strategy<Value = Packet> {
    (
        (any::<u16>(), any::<u16>(), any::<[u8; 5]>(), any::<u8>()),
        1u8..=8,
        any::<u16>(),
        (
            addr(),
            prop::collection::vec(any::<u8>(), 0..3),
            addr(),
            addr(),
        ),
        (
            any::<u32>(),
            cies(),
            prop::collection::vec(any::<u8>(), 0..40),
        ),
        extensions(),
    )
        .prop_map(
            |(
                (afn, pt, snap, hop),
                ty,
                flags,
                (sn, ss, sp, dp),
                (word, cies, contents),
                (e, t),
            )| {
                let packet_type = PacketType::from_u8(ty).unwrap();
                let body = match packet_type {
                    PacketType::ErrorIndication => Body::Error {
                        code: (word >> 16) as u16,
                        offset: word as u16,
                        contents,
                    },
                    PacketType::TrafficIndication => Body::Traffic {
                        code: (word >> 16) as u16,
                        unused: word as u16,
                        contents,
                    },
                    _ => Body::Cies {
                        request_id: word,
                        cies,
                    },
                };
                Packet {
                    afn,
                    protocol_type: pt,
                    snap,
                    hop_count: hop,
                    version: 1,
                    packet_type,
                    flags,
                    src_nbma: sn,
                    src_nbma_subaddr: ss,
                    src_proto: sp,
                    dst_proto: dp,
                    body,
                    extensions: e,
                    trailer: t,
                }
            },
        )
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(2000))]

    #[test]
    fn packet_round_trip(p in packet()) {
        let bytes = p.emit();
        let q = Packet::parse(&bytes).expect("emitted packet parses");
        prop_assert_eq!(&q, &p);
        prop_assert_eq!(q.emit(), bytes);
    }

    #[test]
    fn parse_arbitrary_never_panics(b in prop::collection::vec(any::<u8>(), 0..200)) {
        if let Ok(p) = Packet::parse(&b) {
            // Whatever parses re-emits to the same bytes.
            let e = p.emit();
            prop_assert_eq!(&e[..], &b[..e.len()]);
        }
        let _ = Packet::parse_unchecked(&b);
        let _ = GreRepr::parse(&b);
        let _ = Ipv4Packet::new_checked(&b);
        for lt in [LINKTYPE_ETHERNET, LINKTYPE_RAW, LINKTYPE_LINUX_SLL] {
            let _ = extract_nhrp(lt, &b);
        }
    }

    #[test]
    fn mutated_valid_packet_never_panics(p in packet(), at in any::<prop::sample::Index>(), v in any::<u8>()) {
        let mut b = p.emit();
        let i = at.index(b.len());
        b[i] = v;
        let _ = Packet::parse(&b);
        let _ = Packet::parse_unchecked(&b);
        if let Ok(q) = Packet::parse_unchecked(&b) {
            let _ = q.emit();
        }
    }
}

#[test]
fn unknown_compulsory_extension_is_reported() {
    let mut p = Packet::new(
        PacketType::ResolutionRequest,
        [1, 1, 1, 1].into(),
        [2, 2, 2, 2].into(),
        [3, 3, 3, 3].into(),
        Body::Cies {
            request_id: 1,
            cies: vec![],
        },
    );
    p.extensions.push(Extension {
        compulsory: false,
        body: ExtBody::Unknown {
            ty: 0x20,
            data: vec![1],
        },
    });
    assert_eq!(
        Packet::parse(&p.emit())
            .unwrap()
            .unknown_compulsory_extension(),
        None
    );
    p.extensions.push(Extension {
        compulsory: true,
        body: ExtBody::Unknown {
            ty: 0x21,
            data: vec![],
        },
    });
    let q = Packet::parse(&p.emit()).unwrap();
    assert_eq!(q.unknown_compulsory_extension(), Some(0x21));
}

#[test]
fn bad_checksum_is_rejected() {
    let p = Packet::new(
        PacketType::PurgeRequest,
        [1, 1, 1, 1].into(),
        [2, 2, 2, 2].into(),
        [3, 3, 3, 3].into(),
        Body::Cies {
            request_id: 7,
            cies: vec![],
        },
    );
    let mut b = p.emit();
    b[25] ^= 1;
    assert!(matches!(
        Packet::parse(&b),
        Err(dmvpn_nhrp::ParseError::BadChecksum { .. })
    ));
}

mod engine_fuzz {
    //! Hostile but well-formed packets into a hub and a spoke: the engine
    //! never panics, and everything it sends parses.

    use std::net::IpAddr;
    use std::time::Duration;

    use dmvpn_nhrp::ext::ExtBody;
    use dmvpn_nhrp::{
        Body, Cie, Config, Engine, Extension, Instant, NhsConfig, Packet, PacketType,
    };
    use proptest::prelude::*;

    const POOL: [[u8; 4]; 6] = [
        [172, 16, 0, 1],
        [172, 16, 0, 2],
        [192, 168, 1, 1],
        [192, 168, 1, 2],
        [192, 168, 1, 3],
        [10, 3, 0, 1],
    ];

    fn addr() -> impl Strategy<Value = Vec<u8>> {
        prop_oneof![
            4 => (0..POOL.len()).prop_map(|i| POOL[i].to_vec()),
            1 => Just(Vec::new()),
            1 => prop::collection::vec(any::<u8>(), 0..17),
        ]
    }

    fn cie() -> impl Strategy<Value = Cie> {
        (
            any::<u8>(),
            prop_oneof![Just(32u8), any::<u8>()],
            any::<u16>(),
            addr(),
            addr(),
        )
            .prop_map(|(code, prefix_len, holding_time, nbma, proto)| Cie {
                code: code % 16,
                prefix_len,
                holding_time,
                nbma,
                proto,
                ..Cie::default()
            })
    }

    fn ext() -> impl Strategy<Value = Extension> {
        prop_oneof![
            prop::option::of(cie()).prop_map(ExtBody::ResponderAddress),
            prop::collection::vec(cie(), 0..3).prop_map(ExtBody::ForwardTransit),
            prop::collection::vec(cie(), 0..2).prop_map(ExtBody::ReverseTransit),
            prop::collection::vec(cie(), 0..2).prop_map(ExtBody::NatAddress),
            (0u16..0x30, prop::collection::vec(any::<u8>(), 0..4))
                .prop_map(|(ty, data)| ExtBody::Unknown { ty: ty + 10, data }),
        ]
        .prop_flat_map(|body| {
            any::<bool>().prop_map(move |c| Extension {
                compulsory: c,
                body: body.clone(),
            })
        })
    }

    fn packet() -> impl Strategy<Value = Packet> {
        (
            1u8..=8,
            any::<u16>(),
            any::<u8>(),
            (addr(), addr(), addr()),
            any::<u32>(),
            prop::collection::vec(cie(), 0..3),
            prop::collection::vec(any::<u8>(), 0..48),
            prop::collection::vec(ext(), 0..5),
        )
            .prop_map(|(ty, flags, hop, (sn, sp, dp), id, cies, contents, exts)| {
                let packet_type = PacketType::from_u8(ty).unwrap();
                let body = match packet_type {
                    PacketType::ErrorIndication => Body::Error {
                        code: (id % 20) as u16,
                        offset: 0,
                        contents,
                    },
                    PacketType::TrafficIndication => Body::Traffic {
                        code: 0,
                        unused: 0,
                        contents,
                    },
                    _ => Body::Cies {
                        request_id: id % 8,
                        cies,
                    },
                };
                let mut p = Packet::new(
                    packet_type,
                    [0, 0, 0, 0].into(),
                    [0, 0, 0, 0].into(),
                    [0, 0, 0, 0].into(),
                    body,
                );
                p.flags = flags;
                p.hop_count = hop;
                p.src_nbma = sn;
                p.src_proto = sp;
                p.dst_proto = dp;
                p.extensions = exts;
                p
            })
    }

    fn ip(a: [u8; 4]) -> IpAddr {
        a.into()
    }

    fn drain(e: &mut Engine) {
        while let Some(t) = e.poll_transmit() {
            assert!(
                Packet::parse(&t.payload).is_ok(),
                "engine sent an unparsable packet"
            );
        }
        while e.poll_event().is_some() {}
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(300))]

        #[test]
        fn engines_survive_hostile_packets(
            pkts in prop::collection::vec((packet(), 0..POOL.len(), 0u64..5000), 1..25),
        ) {
            let mut hub_cfg = Config::new(ip(POOL[0]), ip(POOL[2]));
            hub_cfg.tunnel_prefix_len = 8;
            hub_cfg.server = true;
            hub_cfg.redirect = true;
            let mut spoke_cfg = Config::new(ip(POOL[1]), ip(POOL[3]));
            spoke_cfg.nhs = vec![NhsConfig { protocol: ip(POOL[2]), nbma: ip(POOL[0]), priority: 0 }];
            spoke_cfg.shortcut = true;
            spoke_cfg.wait_for_ipsec = true;
            spoke_cfg.local_prefixes = vec![(ip([10, 3, 0, 0]), 16)];
            let mut hub = Engine::new(hub_cfg, Instant::ZERO);
            let mut spoke = Engine::new(spoke_cfg, Instant::ZERO);
            hub.add_route(ip([10, 3, 0, 0]), 16, ip(POOL[4]));
            let mut now = Instant::ZERO;
            for (p, from, dt) in pkts {
                now += Duration::from_millis(dt);
                let bytes = p.emit();
                for e in [&mut hub, &mut spoke] {
                    e.handle(now, ip(POOL[from]), &bytes);
                    e.handle_timeout(now);
                    drain(e);
                }
                spoke.resolve(now, ip(POOL[from]));
                spoke.ipsec_up(now, ip(POOL[from]));
                hub.traffic_relayed(now, ip(POOL[from]), &bytes);
                let _ = spoke.lookup(ip(POOL[5]));
                drain(&mut hub);
                drain(&mut spoke);
            }
            for e in [&mut hub, &mut spoke] {
                let t = now + Duration::from_secs(100_000);
                e.handle_timeout(t);
                drain(e);
                if let Some(x) = e.poll_timeout() {
                    prop_assert!(x > t, "timers due in the past after handle_timeout");
                }
            }
        }
    }
}
