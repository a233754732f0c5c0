//! Wireshark as an independent checker: a full Main Mode + Quick Mode
//! (forced NAT-T, so UDP 4500 with the non-ESP marker is covered) written
//! to a pcap and dissected by tshark with our IKE key-log line. Every
//! message must dissect without malformed/expert errors, and the encrypted
//! ones must decrypt to the payloads we sent. Fails loudly without tshark.

use dmvpn_ike::Instant;
use dmvpn_ike::crypto::{EncrAlg, GroupId, HashAlg};
use dmvpn_ike::policy::gre_proxy;
use dmvpn_ike::*;
use pcap_file::DataLink;
use pcap_file::pcap::{PcapHeader, PcapPacket, PcapWriter};
use rand_chacha::ChaCha20Rng;
use rand_core::SeedableRng;
use std::net::{IpAddr, SocketAddr};
use std::process::Command;
use std::time::Duration;
use zeroize::Zeroizing;

fn cfg() -> EngineConfig {
    EngineConfig {
        policies: vec![IkePolicy {
            priority: 10,
            encr: EncrAlg::Aes128,
            hash: HashAlg::Sha1,
            group: GroupId::Modp1024,
            lifetime: 86400,
        }],
        transform_sets: vec![TransformSet {
            name: "t".into(),
            esp: EspTransform {
                encr: EspEncr::AesCbc(128),
                integ: Some(HashAlg::Sha1),
            },
            mode: Mode::Transport,
        }],
        psks: vec![PskEntry {
            prefix: "0.0.0.0".parse().unwrap(),
            len: 0,
            key: Zeroizing::new(b"wireshark".to_vec()),
            initiate: InitiateMode::Main,
        }],
        nat_t: NatTMode::Force,
        ..Default::default()
    }
}

fn ep(seed: u64, base: u32) -> Endpoint<ChaCha20Rng> {
    let mut n = base;
    Endpoint::new(
        cfg(),
        ChaCha20Rng::seed_from_u64(seed),
        Box::new(move || {
            n += 1;
            n
        }),
    )
}

/// IPv4 + UDP framing for a datagram (raw-IP link type).
fn ipv4_udp(src: SocketAddr, dst: SocketAddr, payload: &[u8]) -> Vec<u8> {
    let (IpAddr::V4(s), IpAddr::V4(d)) = (src.ip(), dst.ip()) else {
        panic!("IPv4 only")
    };
    let total = 20 + 8 + payload.len();
    let mut p = vec![
        0x45,
        0,
        (total >> 8) as u8,
        total as u8,
        0,
        0,
        0x40,
        0,
        64,
        17,
        0,
        0,
    ];
    p.extend_from_slice(&s.octets());
    p.extend_from_slice(&d.octets());
    let mut sum = 0u32;
    for w in p.chunks(2) {
        sum += u16::from_be_bytes([w[0], w[1]]) as u32;
    }
    while sum > 0xffff {
        sum = (sum & 0xffff) + (sum >> 16);
    }
    let ck = !(sum as u16);
    p[10..12].copy_from_slice(&ck.to_be_bytes());
    let ulen = (8 + payload.len()) as u16;
    p.extend_from_slice(&src.port().to_be_bytes());
    p.extend_from_slice(&dst.port().to_be_bytes());
    p.extend_from_slice(&ulen.to_be_bytes());
    p.extend_from_slice(&[0, 0]);
    p.extend_from_slice(payload);
    p
}

#[test]
fn tshark_dissects_and_decrypts_our_exchange() {
    assert!(
        Command::new("tshark")
            .arg("-v")
            .output()
            .is_ok_and(|o| o.status.success()),
        "tshark missing: apt-get install tshark"
    );
    let (mut a, mut b) = (ep(11, 0x1000), ep(12, 0x2000));
    let now = Instant::from_secs(1);
    let (la, lb): (SocketAddr, SocketAddr) = (
        "172.16.0.1:500".parse().unwrap(),
        "172.16.0.2:500".parse().unwrap(),
    );
    let req = Phase2Request {
        local_proxy: Some(gre_proxy(la.ip())),
        remote_proxy: Some(gre_proxy(lb.ip())),
    };
    a.initiate_phase2(now, la, lb, req).unwrap();
    let mut wire = vec![];
    loop {
        let mut moved = false;
        while let Some(t) = a.poll_transmit() {
            moved = true;
            b.handle(now, t.remote, t.local, &t.payload).unwrap();
            wire.push(t);
        }
        while let Some(t) = b.poll_transmit() {
            moved = true;
            a.handle(now, t.remote, t.local, &t.payload).unwrap();
            wire.push(t);
        }
        if !moved {
            break;
        }
    }
    assert_eq!(b.child_spis().len(), 1);
    assert_eq!(wire.len(), 9);
    let child = std::iter::from_fn(|| a.poll_event())
        .find_map(|e| match e {
            Event::ChildSaInstalled(c) => Some(c),
            _ => None,
        })
        .unwrap();
    let id = a.isakmp_sas()[0].id;
    let keyline = a.ike_keylog_line(id).unwrap();

    let dir = tempfile::tempdir().unwrap();
    let pcap = dir.path().join("ike.pcap");
    let hdr = PcapHeader {
        datalink: DataLink::RAW,
        ..Default::default()
    };
    let mut w = PcapWriter::with_header(std::fs::File::create(&pcap).unwrap(), hdr).unwrap();
    for (i, t) in wire.iter().enumerate() {
        let pkt = ipv4_udp(t.local, t.remote, &t.payload);
        w.write_packet(&PcapPacket::new(
            Duration::from_millis(i as u64),
            pkt.len() as u32,
            &pkt,
        ))
        .unwrap();
    }
    drop(w);

    let out = Command::new("tshark")
        .arg("-r")
        .arg(&pcap)
        .args(["-o", &format!("uat:ikev1_decryption_table:{keyline}")])
        .args(["-V", "-z", "expert,warn"])
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(!text.contains("Malformed"), "{text}");
    assert!(!text.to_lowercase().contains("expert info (warn"), "{text}");
    // Forced NAT-T: from MM5 on, UDP 4500 behind the non-ESP marker.
    assert!(text.contains("Src Port: 4500"), "{text}");
    // MM5/MM6 decrypted: identification and hash payloads with our addresses.
    assert!(text.contains("Payload: Identification (5)"), "{text}");
    assert!(text.contains("ID type: IPV4_ADDR (1)"), "{text}");
    assert!(
        text.contains("Protocol ID: Generic Routing Encapsulation (47)"),
        "{text}"
    );
    assert!(
        text.contains("Notify Message Type: INITIAL-CONTACT (24578)"),
        "{text}"
    );
    // Quick Mode decrypted: ESP proposal with UDP-encapsulated transport.
    assert!(text.contains("Protocol ID: IPSEC_ESP (3)"), "{text}");
    assert!(
        text.contains("Encapsulation Mode: UDP-Encapsulated-Transport (4)"),
        "{text}"
    );
    assert!(text.contains("Payload: NAT-OA (RFC 3947) (21)"), "{text}");

    // Our esp_sa key-log lines are accepted by Wireshark's UAT parser.
    for line in dmvpn_ike::keylog::esp_sa_lines(&child) {
        let out = Command::new("tshark")
            .arg("-r")
            .arg(&pcap)
            .args(["-o", "esp.enable_encryption_decode:TRUE"])
            .args(["-o", &format!("uat:esp_sa:{line}")])
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "{line}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
    }
}

/// A phase 1 rekey on the wire: the new Main Mode on port 4500 and the
/// DELETE for the old ISAKMP SA (16-byte SPI = the two cookies) dissect
/// cleanly, decrypted with both SAs' keys.
#[test]
fn tshark_dissects_a_phase1_rekey() {
    let (mut a, mut b) = (ep(21, 0x1000), ep(22, 0x2000));
    let now = Instant::from_secs(1);
    let (la, lb): (SocketAddr, SocketAddr) = (
        "172.16.0.1:500".parse().unwrap(),
        "172.16.0.2:500".parse().unwrap(),
    );
    let req = Phase2Request {
        local_proxy: Some(gre_proxy(la.ip())),
        remote_proxy: Some(gre_proxy(lb.ip())),
    };
    a.initiate_phase2(now, la, lb, req).unwrap();
    let mut wire = vec![];
    let mut shuttle = |a: &mut Endpoint<ChaCha20Rng>, b: &mut Endpoint<ChaCha20Rng>| loop {
        let mut moved = false;
        while let Some(t) = a.poll_transmit() {
            moved = true;
            b.handle(now, t.remote, t.local, &t.payload).unwrap();
            wire.push(t);
        }
        while let Some(t) = b.poll_transmit() {
            moved = true;
            a.handle(now, t.remote, t.local, &t.payload).unwrap();
            wire.push(t);
        }
        if !moved {
            break;
        }
    };
    shuttle(&mut a, &mut b);
    let old = a.isakmp_sas()[0].id;
    let old_key = a.ike_keylog_line(old).unwrap();
    assert!(a.rekey_isakmp(now, lb.ip()));
    shuttle(&mut a, &mut b);
    let sas = a.isakmp_sas();
    assert_eq!(sas.len(), 1);
    assert_ne!(sas[0].id, old);
    let new_key = a.ike_keylog_line(sas[0].id).unwrap();
    // Main Mode (6) and the DELETE.
    assert_eq!(wire.len(), 9 + 7);

    let dir = tempfile::tempdir().unwrap();
    let pcap = dir.path().join("rekey.pcap");
    let hdr = PcapHeader {
        datalink: DataLink::RAW,
        ..Default::default()
    };
    let mut w = PcapWriter::with_header(std::fs::File::create(&pcap).unwrap(), hdr).unwrap();
    for (i, t) in wire.iter().enumerate() {
        let pkt = ipv4_udp(t.local, t.remote, &t.payload);
        w.write_packet(&PcapPacket::new(
            Duration::from_millis(i as u64),
            pkt.len() as u32,
            &pkt,
        ))
        .unwrap();
    }
    drop(w);
    let out = Command::new("tshark")
        .arg("-r")
        .arg(&pcap)
        .args(["-o", &format!("uat:ikev1_decryption_table:{old_key}")])
        .args(["-o", &format!("uat:ikev1_decryption_table:{new_key}")])
        .args(["-V", "-z", "expert,warn"])
        .output()
        .expect("tshark missing: apt-get install tshark");
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(!text.contains("Malformed"), "{text}");
    assert!(!text.to_lowercase().contains("expert info (warn"), "{text}");
    // The new Main Mode starts where the old one floated to.
    let frames: Vec<&str> = text.split("\nFrame ").collect();
    assert!(frames[9].contains("Dst Port: 4500"), "{}", frames[9]);
    assert!(frames[9].contains("Exchange type: Identity Protection (Main Mode) (2)"));
    // The last frame: DELETE for the old ISAKMP SA, decrypted.
    let last = frames.last().unwrap();
    assert!(last.contains("Payload: Delete (12)"), "{last}");
    assert!(last.contains("SPI Size: 16"), "{last}");
    assert!(last.contains("Protocol ID: ISAKMP (1)"), "{last}");
}
