//! Golden tests on tcpdump's NHRP captures: every packet decodes to the
//! fields tcpdump's `-v` output shows and re-encodes byte for byte.

mod common;

use common::pcapread::read_frames;
use dmvpn_nhrp::capture::extract_nhrp;
use dmvpn_nhrp::ext::ExtBody;
use dmvpn_nhrp::wire::addr_to_string;
use dmvpn_nhrp::{Body, Packet};
use dmvpn_wire::ipv4::Ipv4Repr;

const DATA: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/data/");

/// A CIE as tcpdump prints it: code, pl, mtu, htime, pref, nbma, proto.
type TcpdumpCie = (u8, u8, u16, u16, u8, Option<String>, Option<String>);

/// What tcpdump printed for one packet.
#[derive(Debug, Default)]
struct Expected {
    key: Option<u32>,
    ty: String,
    id: Option<u32>,
    traffic_code: Option<String>,
    hop: u8,
    src_nbma: String,
    src_proto: String,
    dst_proto: String,
    cie: Option<TcpdumpCie>,
}

fn field<'a>(s: &'a str, name: &str) -> Option<&'a str> {
    let at = s.find(name)? + name.len();
    let rest = &s[at..];
    let end = rest.find([',', ')', ' ']).unwrap_or(rest.len());
    Some(&rest[..end])
}

fn parse_out(path: &str) -> Vec<Expected> {
    let text = std::fs::read_to_string(path).unwrap();
    let mut v = Vec::new();
    let mut key = None;
    for line in text.lines() {
        if line.contains("GREv0") {
            key = field(line, "key=0x").map(|k| u32::from_str_radix(k, 16).unwrap());
        }
        let Some(at) = line.find("NHRP: ") else {
            continue;
        };
        let n = &line[at + 6..];
        let mut e = Expected {
            key: key.take(),
            ..Default::default()
        };
        e.ty = n.split(',').next().unwrap().to_string();
        e.id = field(n, ", id ").map(|x| x.parse().unwrap());
        e.traffic_code = n
            .find("code <")
            .filter(|_| e.ty == "traffic indication")
            .map(|i| n[i + 6..].split('>').next().unwrap().to_string());
        e.hop = field(n, "hopcnt ").unwrap().parse().unwrap();
        e.src_nbma = field(n, "src nbma ").unwrap().to_string();
        let after = &n[n.find("src nbma ").unwrap()..];
        let addrs = after.split(", ").nth(1).unwrap();
        let mut it = addrs.split(' ');
        e.src_proto = it.next().unwrap().to_string();
        assert_eq!(it.next(), Some("->"));
        e.dst_proto = it.next().unwrap().to_string();
        if let Some(ci) = n.find("(code ") {
            let c = &n[ci..];
            e.cie = Some((
                field(c, "(code ").unwrap().parse().unwrap(),
                field(c, "pl ").unwrap().parse().unwrap(),
                field(c, "mtu ").unwrap().parse().unwrap(),
                field(c, "htime ").unwrap().parse().unwrap(),
                field(c, "pref ").unwrap().parse().unwrap(),
                field(c, "nbma ").map(String::from),
                field(c, "proto ").map(String::from),
            ));
        }
        v.push(e);
    }
    v
}

fn tcpdump_type(p: &Packet) -> &'static str {
    use dmvpn_nhrp::PacketType::*;
    match p.packet_type {
        ResolutionRequest => "res request",
        ResolutionReply => "res reply",
        RegistrationRequest => "reg request",
        RegistrationReply => "reg reply",
        PurgeRequest => "purge request",
        PurgeReply => "purge reply",
        ErrorIndication => "error indication",
        TrafficIndication => "traffic indication",
    }
}

/// Checks one capture against its `.out`; returns the parsed packets.
fn check_capture(file: &str, out: &str) -> Vec<Packet> {
    let frames = read_frames(&format!("{DATA}{file}")).unwrap();
    let expected = parse_out(&format!("{DATA}{out}"));
    assert_eq!(frames.len(), expected.len(), "{file}: frame count");
    let mut pkts = Vec::new();
    for (i, (f, e)) in frames.iter().zip(&expected).enumerate() {
        let ctx = format!("{file} frame {}", i + 1);
        let nf = extract_nhrp(f.linktype, &f.data)
            .unwrap_or_else(|err| panic!("{ctx}: {err}"))
            .unwrap_or_else(|| panic!("{ctx}: no NHRP"));
        let gre = nf.gre.expect("GRE");
        assert_eq!(gre.key, e.key, "{ctx}: GRE key");
        assert_eq!(nf.ip.tos(), 0xc0, "{ctx}: outer TOS");
        let p = Packet::parse(nf.nhrp).unwrap_or_else(|err| panic!("{ctx}: {err}"));
        assert_eq!(tcpdump_type(&p), e.ty, "{ctx}: type");
        assert_eq!(p.request_id(), e.id, "{ctx}: request id");
        if let Some(tc) = &e.traffic_code {
            assert_eq!(tc, "NHRP traffic redirect/indirection");
            assert!(matches!(p.body, Body::Traffic { code: 0, .. }), "{ctx}");
        }
        assert_eq!(p.hop_count, e.hop, "{ctx}: hop count");
        assert_eq!(addr_to_string(&p.src_nbma), e.src_nbma, "{ctx}: src nbma");
        assert_eq!(
            addr_to_string(&p.src_proto),
            e.src_proto,
            "{ctx}: src proto"
        );
        assert_eq!(
            addr_to_string(&p.dst_proto),
            e.dst_proto,
            "{ctx}: dst proto"
        );
        match &e.cie {
            Some((code, pl, mtu, ht, pref, nbma, proto)) => {
                assert_eq!(p.cies().len(), 1, "{ctx}: one CIE");
                let c = &p.cies()[0];
                assert_eq!(
                    (c.code, c.prefix_len, c.mtu, c.holding_time, c.preference),
                    (*code, *pl, *mtu, *ht, *pref),
                    "{ctx}: CIE fields"
                );
                let show = |b: &[u8]| (!b.is_empty()).then(|| addr_to_string(b));
                assert_eq!(&show(&c.nbma), nbma, "{ctx}: CIE nbma");
                assert_eq!(&show(&c.proto), proto, "{ctx}: CIE proto");
            }
            None => assert!(p.cies().is_empty(), "{ctx}: no CIE"),
        }
        // Byte-exact re-encoding of NHRP, GRE and the outer IPv4 header.
        let emitted = p.emit();
        assert_eq!(emitted, nf.nhrp[..emitted.len()], "{ctx}: NHRP re-encode");
        let gre_bytes = gre.to_packet(&emitted);
        let ip_bytes = Ipv4Repr::parse(&nf.ip)
            .to_packet(nf.ip.options(), &gre_bytes)
            .unwrap();
        assert!(
            f.data.windows(ip_bytes.len()).any(|w| w == ip_bytes),
            "{ctx}: IPv4/GRE re-encode"
        );
        pkts.push(p);
    }
    pkts
}

fn ext_names(p: &Packet) -> Vec<String> {
    p.extensions.iter().map(|e| e.name()).collect()
}

fn password(p: &Packet) -> Option<Vec<u8>> {
    p.extensions.iter().find_map(|e| match &e.body {
        ExtBody::Authentication { auth_type: 1, data } => Some(data.clone()),
        _ => None,
    })
}

const CISCO_EXTS: [&str; 6] = [
    "responder-address",
    "forward-transit",
    "reverse-transit",
    "authentication",
    "nat-address",
    "end",
];

#[test]
fn ios_old_registration_prefix_255_password_cisco() {
    let p = check_capture("ios_nhrp.pcap", "ios_nhrp.out");
    assert_eq!(p[0].flags, 0x8000);
    assert_eq!(p[0].cies()[0].prefix_len, 0xff);
    assert_eq!(password(&p[0]).as_deref(), Some(&b"CISCO"[..]));
    assert_eq!(
        ext_names(&p[0]),
        [
            "responder-address",
            "forward-transit",
            "reverse-transit",
            "authentication",
            "end"
        ]
    );
    // Odd total length: the checksum tail byte is padded.
    assert_eq!(p[0].emit().len() % 2, 1);
}

#[test]
fn registration_with_key() {
    let p = check_capture("NHRP_registration.pcap", "NHRP_registration.out");
    for q in &p {
        assert_eq!(ext_names(q), CISCO_EXTS);
        assert_eq!(q.flags, 0x8002);
    }
    // The reply carries the responder's address and the NAT extension the
    // server's view of the client.
    let resp = p[1].extensions[0].cies();
    assert_eq!(addr_to_string(&resp[0].nbma), "169.254.100.5");
    assert_eq!(addr_to_string(&resp[0].proto), "155.1.0.5");
}

#[test]
fn responder_address() {
    let p = check_capture("NHRP-responder-address.pcap", "NHRP-responder-address.out");
    assert!(p[0].extensions[0].cies().is_empty());
    let r = &p[1].extensions[0].cies()[0];
    assert_eq!(addr_to_string(&r.nbma), "6.6.6.6");
    assert_eq!(addr_to_string(&r.proto), "155.1.146.6");
}

#[test]
fn phase3_trace() {
    let p = check_capture("nhrp-trace.pcap", "nhrp-trace.out");
    // Traffic indication carries the triggering IP header + 8 bytes.
    match &p[0].body {
        Body::Traffic { contents, .. } => {
            assert_eq!(contents.len(), 28);
            assert_eq!(contents[0], 0x45);
            assert_eq!(&contents[12..16], &[10, 255, 255, 3]);
            assert_eq!(&contents[16..20], &[10, 255, 255, 2]);
        }
        b => panic!("{b:?}"),
    }
    assert_eq!(p[1].flags, 0xc802);
    assert_eq!(p[3].flags, 0xf802);
    assert_eq!(password(&p[1]).as_deref(), Some(&b"secret"[..]));
    // The hub's forwarded copy: hop count decremented, its own record in
    // the forward transit extension; the rest identical.
    assert_eq!(p[2].hop_count, 254);
    let fwd = p[2].extensions[1].cies();
    assert_eq!(addr_to_string(&fwd[0].nbma), "192.168.200.1");
    assert_eq!(addr_to_string(&fwd[0].proto), "10.255.255.1");
    let mut orig = p[1].clone();
    orig.hop_count = 254;
    if let ExtBody::ForwardTransit(v) = &mut orig.extensions[1].body {
        v.push(fwd[0].clone());
    }
    assert_eq!(orig, p[2]);
    for q in &p[1..] {
        assert_eq!(ext_names(q), CISCO_EXTS);
    }
}

#[test]
fn pcapng_two_nhs_with_retries() {
    let p = check_capture("nhrp.pcapng", "nhrp.out");
    assert_eq!(p.len(), 25);
    assert!(p.iter().all(|q| q.cies()[0].mtu == 17916));
}

#[test]
fn malformed_capture_is_rejected_with_reason() {
    let frames = read_frames(&format!("{DATA}pb_nhrp_1.pcap")).unwrap();
    assert_eq!(frames.len(), 1);
    let err = match extract_nhrp(frames[0].linktype, &frames[0].data) {
        Err(e) => e,
        Ok(None) => panic!("not recognised as NHRP"),
        Ok(Some(f)) => Packet::parse(f.nhrp).expect_err("must be rejected"),
    };
    assert!(!err.to_string().is_empty());
}
