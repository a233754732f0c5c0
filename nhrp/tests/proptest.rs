//! Property tests: emit→parse→emit round-trips for arbitrary packets, and
//! parsing arbitrary bytes never panics.

use dmvpn_nhrp::capture::{LINKTYPE_ETHERNET, LINKTYPE_LINUX_SLL, LINKTYPE_RAW, extract_nhrp};
use dmvpn_nhrp::ext::ExtBody;
use dmvpn_nhrp::gre::GreHeader;
use dmvpn_nhrp::ipv4::Ipv4Header;
use dmvpn_nhrp::{Body, Cie, Extension, Packet, PacketType};
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
        let _ = GreHeader::parse(&b);
        let _ = Ipv4Header::parse(&b);
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

    #[test]
    fn gre_round_trip(c in prop::option::of(any::<u16>()), key in prop::option::of(any::<u32>()),
                      seq in prop::option::of(any::<u32>()), r0 in any::<u16>(), proto in any::<u16>(),
                      payload in prop::collection::vec(any::<u8>(), 0..30)) {
        let h = GreHeader { checksum: c.map(|r| (0, r)), key, seq, reserved0: r0 & 0x0ff8, protocol: proto };
        let b = h.emit(&payload);
        let (g, pl) = GreHeader::parse(&b).expect("parses");
        prop_assert_eq!(pl, &payload[..]);
        prop_assert_eq!(g.emit(pl), b.clone());
        prop_assert_eq!(g.key, key);
    }

    #[test]
    fn ipv4_round_trip(tos in any::<u8>(), ttl in any::<u8>(), proto in any::<u8>(), id in any::<u16>(),
                       opts in prop::collection::vec(any::<u8>(), 0..3).prop_map(|v| { let mut v = v; v.resize(v.len() * 4, 1); v }),
                       payload in prop::collection::vec(any::<u8>(), 0..30)) {
        let mut h = Ipv4Header::new([10, 0, 0, 1].into(), [10, 0, 0, 2].into(), proto, tos, ttl);
        h.id = id;
        h.options = opts;
        let b = h.emit(&payload);
        let (g, pl) = Ipv4Header::parse(&b).expect("parses");
        prop_assert_eq!(pl, &payload[..]);
        prop_assert_eq!(g.emit(pl), b);
    }
}

#[test]
fn odd_length_checksum_pads_tail() {
    // 0x01 alone is summed as 0x0100.
    assert_eq!(dmvpn_nhrp::wire::checksum(&[0x01]), !0x0100);
    assert_eq!(dmvpn_nhrp::wire::checksum(&[0x00, 0x01, 0xf2]), !0xf201);
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
