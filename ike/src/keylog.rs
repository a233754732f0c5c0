//! Wireshark `esp_sa` UAT lines for a child SA (one per direction), so a
//! capture can be decrypted. Only written when the operator asks for it.

use crate::crypto::HashAlg;
use crate::endpoint::ChildSa;
use crate::policy::EspEncr;
use std::net::IpAddr;

fn enc_name(e: EspEncr) -> &'static str {
    match e {
        EspEncr::Null => "NULL",
        EspEncr::Des => "DES-CBC [RFC2405]",
        EspEncr::TripleDes => "TripleDES-CBC [RFC2451]",
        EspEncr::AesCbc(_) => "AES-CBC [RFC3602]",
        EspEncr::AesGcm16(_) => "AES-GCM with 16 octet ICV [RFC4106]",
    }
}

fn auth_name(h: Option<HashAlg>) -> &'static str {
    match h {
        None => "NULL",
        Some(HashAlg::Md5) => "HMAC-MD5-96 [RFC2403]",
        Some(HashAlg::Sha1) => "HMAC-SHA-1-96 [RFC2404]",
        Some(HashAlg::Sha256) => "HMAC-SHA-256-128 [RFC4868]",
        Some(HashAlg::Sha384) => "HMAC-SHA-384-192 [RFC4868]",
        Some(HashAlg::Sha512) => "HMAC-SHA-512-256 [RFC4868]",
    }
}

fn proto(ip: IpAddr) -> &'static str {
    if ip.is_ipv4() { "IPv4" } else { "IPv6" }
}

fn hexkey(k: &[u8]) -> String {
    if k.is_empty() {
        String::new()
    } else {
        format!(
            "0x{}",
            k.iter().map(|b| format!("{b:02x}")).collect::<String>()
        )
    }
}

/// Two `esp_sa` lines: outbound (local -> remote) and inbound.
pub fn esp_sa_lines(c: &ChildSa) -> [String; 2] {
    let line = |src: IpAddr, dst: IpAddr, spi: u32, k: &crate::endpoint::EspKeys| {
        format!(
            "\"{}\",\"{}\",\"{}\",\"0x{:08x}\",\"{}\",\"{}\",\"{}\",\"{}\"",
            proto(src),
            src,
            dst,
            spi,
            enc_name(c.transform.encr),
            hexkey(&k.encryption),
            auth_name(c.transform.integ),
            hexkey(&k.integrity)
        )
    };
    [
        line(c.local.ip(), c.remote.ip(), c.outbound_spi, &c.outbound),
        line(c.remote.ip(), c.local.ip(), c.inbound_spi, &c.inbound),
    ]
}

/// One line of Wireshark's `ikev1_decryption_table` UAT (hex fields are
/// unquoted there): initiator cookie, phase 1 encryption key.
pub fn ikev1_line(icookie: &[u8; 8], enc_key: &[u8]) -> String {
    let h = |b: &[u8]| b.iter().map(|x| format!("{x:02x}")).collect::<String>();
    format!("{},{}", h(icookie), h(enc_key))
}
