//! What the data plane puts on the wire, dissected by tshark: GRE with a
//! key, GRE in ESP transport and tunnel mode (AES-CBC + HMAC-SHA1-96 and
//! AES-GCM-16), and ESP-in-UDP. tshark gets the ESP keys and must decrypt
//! every packet down to the inner ICMP echo, with no malformed packet and
//! no ICV error. Packets are built in memory by the engine and written to
//! a pcap file, so nothing here depends on timing.
//!
//! Needs tshark (Debian `tshark`); fails, rather than skips, without it.

use std::net::{IpAddr, Ipv4Addr};
use std::process::Command;

use dmvpn_node::datapath::esp::{AuthAlg, EncAlg};
use dmvpn_node::datapath::sadb::{Mode, OutboundSa, SaParams, Sadb};
use dmvpn_node::engine::{DataplaneConfig, Engine, Peer, PeerMap, Protection};
use dmvpn_wire::Ipv4Repr;
use dmvpn_wire::checksum::checksum;

const A: Ipv4Addr = Ipv4Addr::new(172, 16, 0, 1);
const B: Ipv4Addr = Ipv4Addr::new(172, 16, 0, 2);
const TUN_A: Ipv4Addr = Ipv4Addr::new(192, 168, 1, 1);
const TUN_B: Ipv4Addr = Ipv4Addr::new(192, 168, 1, 2);

/// ICMP echo request from TUN_A to TUN_B with a valid checksum.
fn echo(seq: u16) -> Vec<u8> {
    let mut p = vec![0u8; 20 + 8 + 32];
    Ipv4Repr {
        src: TUN_A,
        dst: TUN_B,
        protocol: 1,
        tos: 0,
        ttl: 64,
        ident: seq,
        flags_frag: 0,
        payload_len: 40,
    }
    .emit(&mut p)
    .unwrap();
    p[20] = 8;
    p[24..26].copy_from_slice(&0x1234u16.to_be_bytes());
    p[26..28].copy_from_slice(&seq.to_be_bytes());
    for (i, b) in p[28..].iter_mut().enumerate() {
        *b = i as u8;
    }
    let c = checksum(&p[20..]);
    p[22..24].copy_from_slice(&c.to_be_bytes());
    p
}

struct Case {
    spi: u32,
    enc: EncAlg,
    enc_key: Vec<u8>,
    auth: AuthAlg,
    auth_key: Vec<u8>,
    mode: Mode,
    protection: Protection,
}

/// Packets the engine sends for one echo under `case` (None: plain GRE).
fn packets(case: Option<&Case>) -> Vec<Vec<u8>> {
    let protection = case.map_or(Protection::None, |c| c.protection);
    let mut map = PeerMap::new();
    map.insert(
        TUN_B,
        32,
        Peer {
            nbma: B,
            protection,
        },
    );
    let mut sadb = Sadb::new();
    if let Some(c) = case {
        let p = SaParams {
            spi: c.spi,
            peer: IpAddr::V4(B),
            mode: c.mode,
            enc: c.enc,
            enc_key: &c.enc_key,
            auth: c.auth,
            auth_key: &c.auth_key,
            lifetime_kb: None,
        };
        sadb.insert_outbound(OutboundSa::new(&p, &[7; 24]).unwrap());
    }
    let cfg = DataplaneConfig {
        local_nbma: A,
        tunnel_addr: TUN_A,
        tunnel_addr_v6: None,
        mtu: 1400,
        gre_key: Some(1001),
        outer_ttl: 255,
        natt_port: Some(4500),
        require_protection: true,
    };
    let mut e = Engine::new(cfg, sadb, map);
    for seq in 1..=2 {
        e.outbound(&echo(seq));
    }
    let mut out = Vec::new();
    for i in 0..e.gre_out().len() {
        out.push(e.gre_out().get(i).to_vec());
    }
    for i in 0..e.esp_out().len() {
        out.push(e.esp_out().get(i).to_vec());
    }
    for i in 0..e.udp_out().len() {
        // The UDP socket adds these headers in real life.
        let d = e.udp_out().get(i);
        let mut p = vec![0u8; 28 + d.len()];
        Ipv4Repr {
            src: A,
            dst: B,
            protocol: 17,
            tos: 0,
            ttl: 64,
            ident: 9,
            flags_frag: 0,
            payload_len: 8 + d.len(),
        }
        .emit(&mut p)
        .unwrap();
        p[20..22].copy_from_slice(&4500u16.to_be_bytes());
        p[22..24].copy_from_slice(&4500u16.to_be_bytes());
        p[24..26].copy_from_slice(&((8 + d.len()) as u16).to_be_bytes());
        p[28..].copy_from_slice(d);
        out.push(p);
    }
    assert_eq!(out.len(), 2, "engine did not send both echoes");
    out
}

/// Writes raw IPv4 packets as a pcap file (LINKTYPE_RAW).
fn write_pcap(path: &std::path::Path, pkts: &[Vec<u8>]) {
    let mut f = Vec::new();
    for v in [
        0xa1b2_c3d4u32.to_le_bytes().as_slice(),
        &2u16.to_le_bytes(),
        &4u16.to_le_bytes(),
    ] {
        f.extend_from_slice(v);
    }
    f.extend_from_slice(&[0; 8]);
    f.extend_from_slice(&65535u32.to_le_bytes());
    f.extend_from_slice(&101u32.to_le_bytes());
    for (i, p) in pkts.iter().enumerate() {
        f.extend_from_slice(&(1_700_000_000u32 + i as u32).to_le_bytes());
        f.extend_from_slice(&0u32.to_le_bytes());
        f.extend_from_slice(&(p.len() as u32).to_le_bytes());
        f.extend_from_slice(&(p.len() as u32).to_le_bytes());
        f.extend_from_slice(p);
    }
    std::fs::write(path, f).unwrap();
}

fn tshark(pcap: &std::path::Path, extra: &[String]) -> String {
    let mut args: Vec<String> = vec![
        "-n".into(),
        "-r".into(),
        pcap.display().to_string(),
        "-V".into(),
    ];
    args.extend_from_slice(extra);
    let out = Command::new("tshark")
        .args(&args)
        .output()
        .unwrap_or_else(|e| panic!("cannot run tshark ({e}); install Debian package tshark"));
    assert!(
        out.status.success(),
        "tshark failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

fn check_clean(text: &str) {
    assert!(!text.contains("Malformed"), "malformed packet:\n{text}");
    assert!(
        !text.contains("[Expert Info (Error"),
        "expert error:\n{text}"
    );
    assert!(
        !text.contains("[Expert Info (Warning"),
        "expert warning:\n{text}"
    );
}

#[test]
fn plain_gre_with_key() {
    let dir = tempfile::tempdir().unwrap();
    let pcap = dir.path().join("gre.pcap");
    write_pcap(&pcap, &packets(None));
    let t = tshark(&pcap, &[]);
    check_clean(&t);
    assert!(t.contains("Generic Routing Encapsulation (IP)"), "{t}");
    assert!(t.contains("Key: 0x000003e9"), "{t}");
    assert_eq!(t.matches("Type: 8 (Echo (ping) request)").count(), 2, "{t}");
}

fn esp_case(case: Case, enc_name: &str, auth_name: &str) {
    let dir = tempfile::tempdir().unwrap();
    let pcap = dir.path().join("esp.pcap");
    write_pcap(&pcap, &packets(Some(&case)));
    let sa = format!(
        "uat:esp_sa:\"IPv4\",\"{A}\",\"{B}\",\"{:#010x}\",\"{enc_name}\",\"0x{}\",\"{auth_name}\",\"0x{}\"",
        case.spi,
        hex::encode(&case.enc_key),
        hex::encode(&case.auth_key)
    );
    let prefs = [
        "-o".to_string(),
        "esp.enable_encryption_decode:TRUE".into(),
        "-o".into(),
        "esp.enable_authentication_check:TRUE".into(),
        "-o".into(),
        sa,
    ];
    let t = tshark(&pcap, &prefs);
    check_clean(&t);
    assert_eq!(
        t.matches("Type: 8 (Echo (ping) request)").count(),
        2,
        "inner ICMP not decrypted:\n{t}"
    );
    if case.auth != AuthAlg::None || case.enc.is_aead() {
        assert_eq!(
            t.matches("> [correct]").count(),
            2,
            "ICV not verified:\n{t}"
        );
    }
    if case.mode == Mode::Transport {
        assert!(t.contains("Key: 0x000003e9"), "{t}");
    }
}

#[test]
fn esp_transport_aes_cbc_sha1() {
    esp_case(
        Case {
            spi: 0xa001,
            enc: EncAlg::AesCbc128,
            enc_key: vec![0x11; 16],
            auth: AuthAlg::HmacSha1_96,
            auth_key: vec![0x22; 20],
            mode: Mode::Transport,
            protection: Protection::Esp,
        },
        "AES-CBC [RFC3602]",
        "HMAC-SHA-1-96 [RFC2404]",
    );
}

#[test]
fn esp_tunnel_3des_md5() {
    esp_case(
        Case {
            spi: 0xa002,
            enc: EncAlg::Des3Cbc,
            enc_key: (1..=24).collect(),
            auth: AuthAlg::HmacMd5_96,
            auth_key: vec![0x33; 16],
            mode: Mode::Tunnel,
            protection: Protection::Esp,
        },
        "TripleDES-CBC [RFC2451]",
        "HMAC-MD5-96 [RFC2403]",
    );
}

#[test]
fn esp_in_udp_aes_gcm() {
    esp_case(
        Case {
            spi: 0xa003,
            enc: EncAlg::AesGcm128,
            enc_key: (1..=20).collect(),
            auth: AuthAlg::None,
            auth_key: vec![],
            mode: Mode::Transport,
            protection: Protection::EspUdp { port: 4500 },
        },
        "AES-GCM with 16 octet ICV [RFC4106]",
        "NULL",
    );
}

#[test]
fn esp_transport_aes256_sha256() {
    esp_case(
        Case {
            spi: 0xa004,
            enc: EncAlg::AesCbc256,
            enc_key: vec![0x44; 32],
            auth: AuthAlg::HmacSha256_128,
            auth_key: vec![0x55; 32],
            mode: Mode::Transport,
            protection: Protection::Esp,
        },
        "AES-CBC [RFC3602]",
        "HMAC-SHA-256-128 [RFC4868]",
    );
}
