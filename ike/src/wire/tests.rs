use super::consts::*;
use super::vendor::Vendor;
use super::*;
use proptest::prelude::*;
use std::net::{Ipv4Addr, Ipv6Addr};

fn h(s: &str) -> Vec<u8> {
    hex::decode(s.split_whitespace().collect::<String>()).unwrap()
}

/// The IOS phase 1 proposal from the seeds: DES, MD5, group 1, PSK,
/// life 86400 s as a 4-byte variable attribute "0x0 0x1 0x51 0x80".
fn seed_p1_transform() -> Transform {
    Transform {
        number: 1,
        transform_id: 1,
        attributes: vec![
            Attribute::basic(p1attr::ENCRYPTION, 1),
            Attribute::basic(p1attr::HASH, 1),
            Attribute::basic(p1attr::AUTH, 1),
            Attribute::basic(p1attr::GROUP, 1),
            Attribute::basic(p1attr::LIFE_TYPE, life::SECONDS),
            Attribute::number(p1attr::LIFE_DURATION, 86400),
        ],
    }
}

#[test]
fn golden_seed_life_duration_is_four_byte_vpi() {
    let a = Attribute::number(p1attr::LIFE_DURATION, 86400);
    assert_eq!(a.value, AttrValue::Variable(vec![0x0, 0x1, 0x51, 0x80]));
    // Phase 2 kilobytes from the seed: "SA life duration (VPI) of 0x0 0x46 0x50 0x0"
    let kb = Attribute::number(p2attr::LIFE_DURATION, 4_608_000);
    assert_eq!(kb.value, AttrValue::Variable(vec![0x0, 0x46, 0x50, 0x0]));
    // and "SA life duration (basic) of 120"
    assert_eq!(
        Attribute::number(p2attr::LIFE_DURATION, 120).value,
        AttrValue::Basic(120)
    );
}

#[test]
fn golden_transform_bytes() {
    let sa = SaPayload {
        doi: 1,
        situation: 1,
        proposals: vec![Proposal {
            number: 1,
            protocol: proto::ISAKMP,
            spi: vec![],
            transforms: vec![seed_p1_transform()],
        }],
    };
    let (first, bytes) = emit_payloads(&[Payload::Sa(sa.clone())]);
    assert_eq!(first, payload::SA);
    // Hand-assembled per RFC 2408 3.4-3.6.
    let want = h("0000 0038 00000001 00000001
                  0000 002c 01 01 00 01
                  0000 0024 01 01 0000
                  8001 0001 8002 0001 8003 0001 8004 0001 800b 0001
                  000c 0004 00015180");
    assert_eq!(bytes, want);
    let back = parse_payloads(first, &bytes).unwrap();
    assert_eq!(back, vec![Payload::Sa(sa)]);
    let t = match &back[0] {
        Payload::Sa(s) => &s.proposals[0].transforms[0],
        _ => unreachable!(),
    };
    assert_eq!(t.attr(p1attr::LIFE_DURATION), Some(86400));
}

#[test]
fn golden_vendor_ids() {
    assert_eq!(
        Vendor::NatTRfc.bytes(),
        h("4a131c81070358455c5728f20e95452f")
    );
    assert_eq!(
        Vendor::NatTDraft02.bytes(),
        h("cd60464335df21f87cfdb2fc68b6a448")
    );
    assert_eq!(
        Vendor::NatTDraft02N.bytes(),
        h("90cb80913ebb696e086381b5ec427b1f")
    );
    assert_eq!(
        Vendor::NatTDraft03.bytes(),
        h("7d9419a65310ca6f2c179d9215529d56")
    );
    assert_eq!(
        Vendor::CiscoUnity.bytes(),
        h("12f5f28c457168a9702d9fe274cc0100")
    );
    assert_eq!(Vendor::Xauth.bytes(), h("09002689dfd6b712"));
    assert_eq!(
        Vendor::Fragmentation.bytes(),
        h("4048b7d56ebce88525e7de7f00d6c2d3")
    );
    assert_eq!(Vendor::Dpd.bytes(), h("afcad71368a1f1c96b8696fc77570100"));
    // Cisco sends fragmentation with a capability suffix.
    assert_eq!(
        Vendor::classify(&h("4048b7d56ebce88525e7de7f00d6c2d380000000")),
        Vendor::Fragmentation
    );
    assert_eq!(
        Vendor::classify(&h("12f5f28c457168a9702d9fe274cc0100")),
        Vendor::CiscoUnity
    );
    assert_eq!(Vendor::classify(b"random"), Vendor::Unknown);
}

#[test]
fn gre_proxy_id_text() {
    let id = IdPayload {
        protocol: 47,
        port: 0,
        id: Identity::Ipv4(Ipv4Addr::new(172, 16, 0, 1)),
    };
    assert_eq!(id.proxy_text(), "172.16.0.1/255.255.255.255/47/0");
    assert_eq!(id.body(), h("012f0000ac100001"));
}

#[test]
fn header_rejects() {
    assert!(matches!(
        Header::parse(&[0u8; 10]),
        Err(WireError::Truncated { .. })
    ));
    let mut b = vec![0u8; 28];
    b[17] = 0x20;
    assert_eq!(Header::parse(&b), Err(WireError::Version(0x20)));
    b[17] = 0x10;
    b[27] = 200;
    assert!(matches!(
        Header::parse(&b),
        Err(WireError::BadLength { .. })
    ));
}

fn arb_attr() -> impl Strategy<Value = Attribute> {
    prop_oneof![
        (0u16..0x8000, any::<u16>()).prop_map(|(t, v)| Attribute::basic(t, v)),
        (0u16..0x8000, proptest::collection::vec(any::<u8>(), 0..12)).prop_map(|(t, v)| {
            Attribute {
                ty: t,
                value: AttrValue::Variable(v),
            }
        }),
    ]
}

fn arb_sa() -> impl Strategy<Value = SaPayload> {
    let tr = (
        any::<u8>(),
        any::<u8>(),
        proptest::collection::vec(arb_attr(), 0..6),
    )
        .prop_map(|(number, transform_id, attributes)| Transform {
            number,
            transform_id,
            attributes,
        });
    let prop = (
        any::<u8>(),
        any::<u8>(),
        proptest::collection::vec(any::<u8>(), 0..8),
        proptest::collection::vec(tr, 0..4),
    )
        .prop_map(|(number, protocol, spi, transforms)| Proposal {
            number,
            protocol,
            spi,
            transforms,
        });
    (
        any::<u32>(),
        any::<u32>(),
        proptest::collection::vec(prop, 0..3),
    )
        .prop_map(|(doi, situation, proposals)| SaPayload {
            doi,
            situation,
            proposals,
        })
}

fn arb_identity() -> impl Strategy<Value = Identity> + Clone {
    let v4 = any::<[u8; 4]>().prop_map(Ipv4Addr::from);
    let v6 = any::<[u8; 16]>().prop_map(Ipv6Addr::from);
    let bytes = proptest::collection::vec(any::<u8>(), 0..20);
    prop_oneof![
        v4.clone().prop_map(Identity::Ipv4),
        v6.clone().prop_map(Identity::Ipv6),
        bytes.clone().prop_map(Identity::Fqdn),
        bytes.clone().prop_map(Identity::UserFqdn),
        (v4.clone(), v4.clone()).prop_map(|(a, b)| Identity::Ipv4Subnet(a, b)),
        (v4.clone(), v4).prop_map(|(a, b)| Identity::Ipv4Range(a, b)),
        (v6.clone(), v6.clone()).prop_map(|(a, b)| Identity::Ipv6Subnet(a, b)),
        (v6.clone(), v6).prop_map(|(a, b)| Identity::Ipv6Range(a, b)),
        bytes.clone().prop_map(Identity::KeyId),
        (12u8..=255, bytes).prop_map(|(ty, data)| Identity::Other { ty, data }),
    ]
}

fn arb_payload() -> impl Strategy<Value = Payload> {
    let bytes = proptest::collection::vec(any::<u8>(), 0..40);
    let id = || {
        (any::<u8>(), any::<u16>(), arb_identity()).prop_map(|(protocol, port, id)| IdPayload {
            protocol,
            port,
            id,
        })
    };
    prop_oneof![
        arb_sa().prop_map(Payload::Sa),
        bytes.clone().prop_map(Payload::Ke),
        id().prop_map(Payload::Id),
        bytes.clone().prop_map(Payload::Hash),
        bytes.clone().prop_map(Payload::Nonce),
        bytes.clone().prop_map(Payload::VendorId),
        (any::<bool>(), bytes.clone()).prop_map(|(draft, hash)| Payload::NatD { draft, hash }),
        (any::<bool>(), id()).prop_map(|(draft, addr)| Payload::NatOa { draft, addr }),
        (
            any::<u32>(),
            any::<u8>(),
            proptest::collection::vec(any::<u8>(), 0..16),
            any::<u16>(),
            bytes.clone()
        )
            .prop_map(|(doi, protocol, spi, msg_type, data)| Payload::Notify(
                NotifyPayload {
                    doi,
                    protocol,
                    spi,
                    msg_type,
                    data
                }
            )),
        (any::<u32>(), any::<u8>(), 1u8..17, 0usize..4).prop_map(|(doi, protocol, sz, n)| {
            Payload::Delete(DeletePayload {
                doi,
                protocol,
                spi_size: sz,
                spis: (0..n).map(|i| vec![i as u8; sz as usize]).collect(),
            })
        }),
        (prop_oneof![14u8..20, 22u8..130, 132u8..=255], bytes)
            .prop_map(|(ty, body)| Payload::Unknown { ty, body }),
    ]
}

proptest! {
    #[test]
    fn message_round_trip(
        ic in any::<[u8; 8]>(), rc in any::<[u8; 8]>(), ex in any::<u8>(), fl in any::<u8>(),
        mid in any::<u32>(), payloads in proptest::collection::vec(arb_payload(), 0..6)
    ) {
        let m = Message {
            header: Header { icookie: ic, rcookie: rc, next_payload: 0, version: 0x10,
                exchange: ex, flags: fl, message_id: mid, length: 0 },
            payloads,
        };
        let bytes = m.emit();
        let back = Message::parse(&bytes).unwrap();
        prop_assert_eq!(&back.payloads, &m.payloads);
        // Byte-exact re-emit.
        prop_assert_eq!(back.emit(), bytes);
    }

    #[test]
    fn arbitrary_bytes_never_panic(b in proptest::collection::vec(any::<u8>(), 0..400)) {
        let _ = Message::parse(&b);
        for first in [1u8, 2, 5, 11, 12, 20, 131] {
            let _ = parse_payloads(first, &b);
        }
    }

    #[test]
    fn mutated_messages_never_panic(
        payloads in proptest::collection::vec(arb_payload(), 1..5),
        pos in any::<usize>(), val in any::<u8>()
    ) {
        let m = Message { header: Header { icookie: [1; 8], rcookie: [2; 8], next_payload: 0,
            version: 0x10, exchange: 2, flags: 0, message_id: 0, length: 0 }, payloads };
        let mut bytes = m.emit();
        let i = pos % bytes.len();
        bytes[i] = val;
        let _ = Message::parse(&bytes);
    }
}
