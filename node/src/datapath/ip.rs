//! Minimal IPv4 header handling for the data plane: reading inner packet
//! fields, building outer headers (copied TOS, chosen TTL, DF) and the
//! Internet checksum.

use std::net::Ipv4Addr;

pub use super::gre::internet_checksum;

/// Length of an IPv4 header without options.
pub const IPV4_HEADER_LEN: usize = 20;
pub const PROTO_ICMP: u8 = 1;
pub const PROTO_GRE: u8 = 47;
pub const PROTO_ESP: u8 = 50;
pub const PROTO_UDP: u8 = 17;
pub const PROTO_ICMPV6: u8 = 58;

/// Don't Fragment flag in the flags/fragment-offset word.
pub const FLAG_DF: u16 = 0x4000;
/// More Fragments flag.
pub const FLAG_MF: u16 = 0x2000;

/// The fields of a received IPv4 header the data plane needs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Ipv4Info {
    pub header_len: usize,
    pub total_len: usize,
    pub tos: u8,
    pub ident: u16,
    /// Flags and fragment offset word.
    pub frag: u16,
    pub ttl: u8,
    pub protocol: u8,
    pub src: Ipv4Addr,
    pub dst: Ipv4Addr,
}

impl Ipv4Info {
    pub fn dont_fragment(&self) -> bool {
        self.frag & FLAG_DF != 0
    }

    /// Fragment offset in bytes.
    pub fn frag_offset(&self) -> usize {
        usize::from(self.frag & 0x1fff) * 8
    }

    pub fn more_fragments(&self) -> bool {
        self.frag & FLAG_MF != 0
    }
}

/// Parses an IPv4 header; `None` if `pkt` is not a well-formed IPv4 packet
/// (version, header length, total length within the buffer).
pub fn parse_ipv4(pkt: &[u8]) -> Option<Ipv4Info> {
    if pkt.len() < IPV4_HEADER_LEN || pkt[0] >> 4 != 4 {
        return None;
    }
    let header_len = usize::from(pkt[0] & 0x0f) * 4;
    let total_len = usize::from(u16::from_be_bytes([pkt[2], pkt[3]]));
    if header_len < IPV4_HEADER_LEN || total_len < header_len || total_len > pkt.len() {
        return None;
    }
    Some(Ipv4Info {
        header_len,
        total_len,
        tos: pkt[1],
        ident: u16::from_be_bytes([pkt[4], pkt[5]]),
        frag: u16::from_be_bytes([pkt[6], pkt[7]]),
        ttl: pkt[8],
        protocol: pkt[9],
        src: Ipv4Addr::new(pkt[12], pkt[13], pkt[14], pkt[15]),
        dst: Ipv4Addr::new(pkt[16], pkt[17], pkt[18], pkt[19]),
    })
}

/// Fields of an IPv4 header to emit (no options).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Ipv4Repr {
    pub src: Ipv4Addr,
    pub dst: Ipv4Addr,
    pub protocol: u8,
    pub tos: u8,
    pub ttl: u8,
    pub ident: u16,
    /// Flags and fragment offset word (e.g. [`FLAG_DF`]).
    pub frag: u16,
    pub payload_len: usize,
}

impl Ipv4Repr {
    /// Writes the 20-byte header with its checksum into `out[..20]`.
    /// Panics only if `out` is shorter than 20 bytes (a caller bug).
    pub fn emit(&self, out: &mut [u8]) {
        let h = &mut out[..IPV4_HEADER_LEN];
        let total = (IPV4_HEADER_LEN + self.payload_len) as u16;
        h[0] = 0x45;
        h[1] = self.tos;
        h[2..4].copy_from_slice(&total.to_be_bytes());
        h[4..6].copy_from_slice(&self.ident.to_be_bytes());
        h[6..8].copy_from_slice(&self.frag.to_be_bytes());
        h[8] = self.ttl;
        h[9] = self.protocol;
        h[10..12].copy_from_slice(&[0, 0]);
        h[12..16].copy_from_slice(&self.src.octets());
        h[16..20].copy_from_slice(&self.dst.octets());
        let c = internet_checksum(h);
        h[10..12].copy_from_slice(&c.to_be_bytes());
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn emit_then_parse() {
        let r = Ipv4Repr {
            src: Ipv4Addr::new(172, 16, 0, 1),
            dst: Ipv4Addr::new(172, 16, 0, 2),
            protocol: PROTO_GRE,
            tos: 0xc0,
            ttl: 255,
            ident: 7,
            frag: FLAG_DF,
            payload_len: 10,
        };
        let mut b = [0u8; 30];
        r.emit(&mut b);
        assert_eq!(internet_checksum(&b[..20]), 0);
        let i = parse_ipv4(&b).unwrap();
        assert_eq!(
            (i.src, i.dst, i.protocol, i.tos, i.ttl),
            (r.src, r.dst, PROTO_GRE, 0xc0, 255)
        );
        assert!(i.dont_fragment());
        assert_eq!(i.total_len, 30);
    }

    proptest! {
        #[test]
        fn parse_never_panics(b in proptest::collection::vec(any::<u8>(), 0..80)) {
            if let Some(i) = parse_ipv4(&b) {
                prop_assert!(i.header_len <= i.total_len && i.total_len <= b.len());
            }
        }
    }
}
