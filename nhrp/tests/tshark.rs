//! Packets our encoder builds, for every type and extension, wrapped in
//! GRE/IPv4 as Cisco sends them (TOS 0xc0, TTL 255), are dissected by
//! tshark without malformed/expert errors and with the field values we
//! encoded. Fails (does not skip) when tshark is not installed.

use std::collections::HashMap;
use std::net::IpAddr;
use std::process::Command;

use dmvpn_nhrp::ext::{AUTH_TYPE_CLEARTEXT, ExtBody};
use dmvpn_nhrp::wire::{GRE_PROTO_NHRP, addr_to_string, error_code, flags, ip_to_addr};
use dmvpn_nhrp::{Body, Cie, Extension, Packet, PacketType};
use dmvpn_wire::gre::GreRepr;
use dmvpn_wire::ipv4::{Ipv4Repr, PROTO_GRE};
use pcap_file::DataLink;
use pcap_file::pcap::{PcapHeader, PcapPacket, PcapWriter};

mod common;

fn ip(s: &str) -> IpAddr {
    s.parse().unwrap()
}

fn cie(nbma: &str, proto: &str, pl: u8) -> Cie {
    Cie {
        prefix_len: pl,
        mtu: 1514,
        holding_time: 7200,
        nbma: if nbma.is_empty() {
            vec![]
        } else {
            ip_to_addr(ip(nbma))
        },
        proto: if proto.is_empty() {
            vec![]
        } else {
            ip_to_addr(ip(proto))
        },
        ..Cie::default()
    }
}

fn cisco_exts(responder: Option<Cie>, fwd: Vec<Cie>, nat: Vec<Cie>) -> Vec<Extension> {
    vec![
        Extension::new(ExtBody::ResponderAddress(responder)),
        Extension::new(ExtBody::ForwardTransit(fwd)),
        Extension::new(ExtBody::ReverseTransit(vec![])),
        Extension::new(ExtBody::Authentication {
            auth_type: AUTH_TYPE_CLEARTEXT,
            data: b"cisco12".to_vec(),
        }),
        Extension::new(ExtBody::VendorPrivate(vec![0x00, 0x00, 0x0c, 1, 2, 3])),
        Extension::new(ExtBody::NatAddress(nat)),
        Extension::new(ExtBody::End),
    ]
}

fn packets() -> Vec<Packet> {
    let (spoke, hub) = (ip("172.16.0.2"), ip("172.16.0.1"));
    let (t_spoke, t_hub, t_other) = (ip("192.168.1.2"), ip("192.168.1.1"), ip("192.168.1.3"));
    let cies = |request_id, cies| Body::Cies { request_id, cies };
    let mut v = Vec::new();

    let mut p = Packet::new(
        PacketType::RegistrationRequest,
        spoke,
        t_spoke,
        t_hub,
        cies(1, vec![cie("", "", 32)]),
    );
    p.flags = flags::REG_U | flags::CISCO_NAT;
    p.extensions = cisco_exts(None, vec![], vec![cie("172.16.0.1", "192.168.1.1", 32)]);
    v.push(p.clone());

    p.packet_type = PacketType::RegistrationReply;
    p.extensions = cisco_exts(
        Some(cie("172.16.0.1", "192.168.1.1", 32)),
        vec![],
        vec![cie("172.16.0.2", "192.168.1.2", 32)],
    );
    v.push(p);

    let mut p = Packet::new(
        PacketType::ResolutionRequest,
        spoke,
        t_spoke,
        t_other,
        cies(7, vec![cie("", "", 0)]),
    );
    p.flags = 0xc802;
    p.hop_count = 254;
    p.extensions = cisco_exts(None, vec![cie("172.16.0.1", "192.168.1.1", 32)], vec![]);
    v.push(p.clone());

    p.packet_type = PacketType::ResolutionReply;
    p.flags = 0xf802;
    p.body = cies(7, vec![cie("172.16.0.3", "192.168.1.3", 32)]);
    p.extensions = cisco_exts(
        Some(cie("172.16.0.3", "192.168.1.3", 32)),
        vec![cie("172.16.0.1", "192.168.1.1", 32)],
        vec![],
    );
    v.push(p);

    let mut p = Packet::new(
        PacketType::PurgeRequest,
        hub,
        t_hub,
        t_spoke,
        cies(9, vec![cie("", "192.168.1.3", 32)]),
    );
    p.extensions = vec![Extension::new(ExtBody::End)];
    v.push(p.clone());
    p.packet_type = PacketType::PurgeReply;
    v.push(p.clone());

    let offending = p.emit();
    let p = Packet::new(
        PacketType::ErrorIndication,
        hub,
        t_hub,
        t_spoke,
        Body::Error {
            code: error_code::LOOP_DETECTED,
            offset: 0,
            contents: offending,
        },
    );
    // RFC 2332 5.2.7: no extensions in an Error Indication.
    v.push(p);

    // Triggering packet: ICMP from 192.168.1.2 to a LAN behind .3.
    let trig = common::ipv4(
        [192, 168, 1, 2].into(),
        [10, 3, 0, 1].into(),
        1,
        0,
        64,
        &[8, 0, 0xf7, 0xff, 0, 0, 0, 0],
    );
    let mut p = Packet::new(
        PacketType::TrafficIndication,
        hub,
        t_hub,
        t_spoke,
        Body::Traffic {
            code: 0,
            unused: 0,
            contents: trig,
        },
    );
    p.extensions = cisco_exts(None, vec![], vec![]);
    v.push(p);

    // IPv6 overlay over an IPv4 NBMA.
    let mut p = Packet::new(
        PacketType::ResolutionRequest,
        spoke,
        ip("2001:db8::2"),
        ip("2001:db8::3"),
        cies(11, vec![cie("", "", 0)]),
    );
    p.flags = 0xc802;
    p.extensions = vec![Extension::new(ExtBody::End)];
    v.push(p);
    v
}

/// `name → [show values in order]` of one PDML packet.
type Fields = HashMap<String, Vec<String>>;

fn attr<'a>(tag: &'a str, name: &str) -> Option<&'a str> {
    let key = format!(" {name}=\"");
    let at = tag.find(&key)? + key.len();
    let rest = &tag[at..];
    Some(&rest[..rest.find('"')?])
}

fn pdml_packets(pdml: &str) -> Vec<Fields> {
    pdml.split("<packet>")
        .skip(1)
        .map(|pkt| {
            let mut m: Fields = HashMap::new();
            for tag in pkt.split("<field").skip(1) {
                let tag = &tag[..tag.find('>').unwrap_or(tag.len())];
                if let (Some(n), Some(s)) = (attr(tag, "name"), attr(tag, "show")) {
                    m.entry(n.to_string()).or_default().push(s.to_string());
                }
            }
            m
        })
        .collect()
}

/// Writes NHRP packets wrapped in GRE (key 1000) and IPv4 (TOS 0xc0,
/// TTL 255) to a LINKTYPE_RAW pcap and returns tshark's PDML per packet.
fn dissect(pkts: &[(IpAddr, IpAddr, Vec<u8>)]) -> Vec<Fields> {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("ours.pcap");
    {
        let f = std::fs::File::create(&path).unwrap();
        let hdr = PcapHeader {
            datalink: DataLink::RAW,
            ..PcapHeader::default()
        };
        let mut w = PcapWriter::with_header(f, hdr).unwrap();
        for (i, (src, dst, nhrp)) in pkts.iter().enumerate() {
            let (IpAddr::V4(src), IpAddr::V4(dst)) = (src, dst) else {
                panic!("IPv4 NBMA only");
            };
            let gre = GreRepr::new(GRE_PROTO_NHRP, Some(1000)).to_packet(nhrp);
            let iph = Ipv4Repr {
                src: *src,
                dst: *dst,
                protocol: PROTO_GRE,
                tos: 0xc0,
                ttl: 255,
                ident: i as u16,
                flags_frag: 0,
                payload_len: gre.len(),
            };
            let bytes = iph.to_packet(&[], &gre).unwrap();
            let ts = std::time::Duration::from_secs(i as u64);
            w.write_packet(&PcapPacket::new(ts, bytes.len() as u32, &bytes))
                .unwrap();
        }
    }
    let out = match Command::new("tshark")
        .arg("-r")
        .arg(&path)
        .args(["-T", "pdml"])
        .output()
    {
        Ok(o) => o,
        Err(e) => panic!("tshark is required for this test (apt-get install tshark): {e}"),
    };
    assert!(
        out.status.success(),
        "tshark failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let pdml = String::from_utf8(out.stdout).unwrap();
    let d = pdml_packets(&pdml);
    assert_eq!(d.len(), pkts.len());
    d
}

/// No malformed field and no expert info of severity error (0x00800000).
fn assert_clean(f: &Fields, ctx: &str) {
    let get = |n: &str| f.get(n).cloned().unwrap_or_default();
    assert!(get("_ws.malformed").is_empty(), "{ctx}: malformed");
    assert!(
        !get("_ws.expert.severity").iter().any(|s| s == "8388608"),
        "{ctx}: expert error {:?}",
        get("_ws.expert.message")
    );
}

#[test]
fn tshark_dissects_our_packets() {
    let pkts = packets();
    let wire: Vec<(IpAddr, IpAddr, Vec<u8>)> = pkts
        .iter()
        .map(|p| (ip("172.16.0.2"), ip("172.16.0.1"), p.emit()))
        .collect();
    let dissected = dissect(&wire);
    for (i, (p, f)) in pkts.iter().zip(&dissected).enumerate() {
        let ctx = format!("packet {i} ({:?})", p.packet_type);
        let get = |n: &str| f.get(n).cloned().unwrap_or_default();
        assert_clean(f, &ctx);
        // Traffic indications embed the triggering IP packet: the outer
        // header's fields come first.
        assert!(
            get("frame.protocols")[0].starts_with("raw:ip:gre:nhrp"),
            "{ctx}"
        );
        assert_eq!(get("ip.dsfield")[0], "0xc0", "{ctx}: TOS");
        assert_eq!(get("ip.ttl")[0], "255", "{ctx}: TTL");
        assert_eq!(get("gre.key"), ["0x000003e8"], "{ctx}: GRE key");
        // An Error Indication embeds the offending packet, which tshark
        // dissects too: its fields come after ours.
        let first = |n: &str| get(n).first().cloned().unwrap_or_default();
        assert_eq!(
            first("nhrp.hdr.op.type"),
            p.packet_type.to_u8().to_string(),
            "{ctx}"
        );
        assert_eq!(first("nhrp.hdr.hopcnt"), p.hop_count.to_string(), "{ctx}");
        assert_eq!(first("nhrp.hdr.pktsz"), p.emit().len().to_string(), "{ctx}");
        assert_eq!(first("nhrp.hdr.chksum.status"), "1", "{ctx}: checksum good");
        assert_eq!(
            first("nhrp.src.nbma.addr"),
            addr_to_string(&p.src_nbma),
            "{ctx}"
        );
        // tshark 4.0 shows non-IPv4 protocol addresses only as bytes
        // (and spells the destination field "addr_byets").
        let proto = |field: &str, bytes_field: &str, a: &[u8]| {
            if a.len() == 4 {
                assert_eq!(first(field), addr_to_string(a), "{ctx}: {field}");
            } else {
                let hex: Vec<String> = a.iter().map(|b| format!("{b:02x}")).collect();
                assert_eq!(first(bytes_field), hex.join(":"), "{ctx}: {bytes_field}");
            }
        };
        proto(
            "nhrp.src.prot.addr",
            "nhrp.src.prot.addr_bytes",
            &p.src_proto,
        );
        proto(
            "nhrp.dst.prot.addr",
            "nhrp.dst.prot.addr_byets",
            &p.dst_proto,
        );
        // tshark 4.0 shows no flags (nor traffic code) for type 8.
        if p.packet_type != PacketType::TrafficIndication {
            assert_eq!(first("nhrp.flags"), format!("{:#06x}", p.flags), "{ctx}");
        }
        match &p.body {
            Body::Cies { request_id, .. } => {
                assert_eq!(get("nhrp.reqid"), [format!("{request_id:#010x}")], "{ctx}")
            }
            Body::Error {
                code,
                offset,
                contents,
            } => {
                assert_eq!(get("nhrp.err.code"), [code.to_string()], "{ctx}");
                assert_eq!(get("nhrp.err.offset"), [offset.to_string()], "{ctx}");
                let inner = Packet::parse(contents).unwrap();
                assert_eq!(
                    get("nhrp.hdr.op.type"),
                    [
                        p.packet_type.to_u8().to_string(),
                        inner.packet_type.to_u8().to_string()
                    ],
                    "{ctx}: embedded packet"
                );
                assert_eq!(get("nhrp.hdr.chksum.status"), ["1", "1"], "{ctx}");
                continue;
            }
            Body::Traffic { .. } => {}
        }
        let ext_types: Vec<String> = p
            .extensions
            .iter()
            .map(|e| format!("{:#06x}", e.ty()))
            .collect();
        assert_eq!(get("nhrp.ext.type"), ext_types, "{ctx}: extension types");
        let ext_c: Vec<String> = p
            .extensions
            .iter()
            .map(|e| u8::from(e.compulsory).to_string())
            .collect();
        assert_eq!(get("nhrp.ext.c"), ext_c, "{ctx}: compulsory bits");
        // CIEs in mandatory part then extensions, in wire order.
        let all: Vec<&Cie> = p
            .cies()
            .iter()
            .chain(p.extensions.iter().flat_map(|e| e.cies()))
            .collect();
        let col = |g: &dyn Fn(&Cie) -> String| all.iter().map(|c| g(c)).collect::<Vec<_>>();
        assert_eq!(
            get("nhrp.code"),
            col(&|c| c.code.to_string()),
            "{ctx}: CIE codes"
        );
        assert_eq!(
            get("nhrp.prefix"),
            col(&|c| c.prefix_len.to_string()),
            "{ctx}"
        );
        assert_eq!(get("nhrp.mtu"), col(&|c| c.mtu.to_string()), "{ctx}: MTU");
        assert_eq!(
            get("nhrp.htime"),
            col(&|c| c.holding_time.to_string()),
            "{ctx}"
        );
        let nbmas: Vec<String> = all
            .iter()
            .filter(|c| !c.nbma.is_empty())
            .map(|c| addr_to_string(&c.nbma))
            .collect();
        assert_eq!(get("nhrp.client.nbma.addr"), nbmas, "{ctx}: CIE NBMA");
        let protos: Vec<String> = all
            .iter()
            .filter(|c| !c.proto.is_empty())
            .map(|c| addr_to_string(&c.proto))
            .collect();
        assert_eq!(get("nhrp.client.prot.addr"), protos, "{ctx}: CIE protocol");
    }
}

/// Everything the engines put on the wire in a hub-and-spokes scenario
/// (registrations, forwarded resolution, replies, traffic indication,
/// purge, error indication, NAT) dissects cleanly and as sent.
#[test]
fn tshark_dissects_engine_traffic() {
    use common::sim::{HUB_NBMA, Net, hub_cfg, spoke_cfg};
    use dmvpn_nhrp::engine::Password;
    let mut bad = spoke_cfg(4);
    bad.authentication = Some(Password::new("badpass"));
    let mut net = Net::new(vec![hub_cfg(), spoke_cfg(2), spoke_cfg(3), bad]);
    net.nat.insert(ip("172.16.0.3"), ip("172.16.9.3"));
    net.nodes[0].add_route(ip("10.3.0.0"), 16, ip("192.168.1.3"));
    net.secs(1);
    let now = net.now;
    let trig = common::ipv4(
        [10, 2, 0, 1].into(),
        [10, 3, 0, 1].into(),
        6,
        0,
        64,
        &[0; 20],
    );
    net.nodes[0].traffic_relayed(now, ip("172.16.0.2"), &trig);
    net.pump();
    net.nodes[2].purge(now, ip("172.16.0.2"), ip("10.3.0.0"), 16);
    net.pump();
    let wire: Vec<(IpAddr, IpAddr, Vec<u8>)> = net
        .wire
        .iter()
        .map(|s| (s.from, s.to, s.packet.emit()))
        .collect();
    let types: std::collections::BTreeSet<u8> = net
        .wire
        .iter()
        .map(|s| s.packet.packet_type.to_u8())
        .collect();
    assert_eq!(
        types.into_iter().collect::<Vec<_>>(),
        [1, 2, 3, 4, 5, 6, 7, 8]
    );
    assert!(net.wire.iter().any(|s| s.to == ip(HUB_NBMA)));
    let dissected = dissect(&wire);
    for (i, (s, f)) in net.wire.iter().zip(&dissected).enumerate() {
        let ctx = format!("packet {i} ({:?})", s.packet.packet_type);
        assert_clean(f, &ctx);
        let first = |n: &str| {
            f.get(n)
                .and_then(|v| v.first().cloned())
                .unwrap_or_default()
        };
        assert_eq!(
            first("nhrp.hdr.op.type"),
            s.packet.packet_type.to_u8().to_string(),
            "{ctx}"
        );
        assert_eq!(first("nhrp.hdr.chksum.status"), "1", "{ctx}");
        assert_eq!(
            first("nhrp.hdr.hopcnt"),
            s.packet.hop_count.to_string(),
            "{ctx}"
        );
        assert_eq!(
            first("nhrp.src.prot.addr"),
            addr_to_string(&s.packet.src_proto),
            "{ctx}"
        );
        assert_eq!(
            first("nhrp.dst.prot.addr"),
            addr_to_string(&s.packet.dst_proto),
            "{ctx}"
        );
        if let Some(id) = s.packet.request_id() {
            assert_eq!(first("nhrp.reqid"), format!("{id:#010x}"), "{ctx}");
        }
    }
}
