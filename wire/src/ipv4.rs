//! IPv4 headers (RFC 791): a checked read-only view of a received packet
//! ([`Ipv4Packet`]) and the fields to write a header ([`Ipv4Repr`]).

use std::net::Ipv4Addr;

use crate::checksum::checksum;
use crate::{EmitError, room};

/// Length of a header without options.
pub const HEADER_LEN: usize = 20;
/// Longest header (15 words).
pub const MAX_HEADER_LEN: usize = 60;

/// IP protocol number of ICMP.
pub const PROTO_ICMP: u8 = 1;
/// IP protocol number of TCP.
pub const PROTO_TCP: u8 = 6;
/// IP protocol number of UDP.
pub const PROTO_UDP: u8 = 17;
/// IP protocol number of GRE.
pub const PROTO_GRE: u8 = 47;
/// IP protocol number of ESP.
pub const PROTO_ESP: u8 = 50;
/// IP protocol number of NHRP carried directly on IP.
pub const PROTO_NHRP: u8 = 54;
/// IP protocol number of ICMPv6.
pub const PROTO_ICMPV6: u8 = 58;

/// Don't Fragment flag in the flags/fragment-offset word.
pub const FLAG_DF: u16 = 0x4000;
/// More Fragments flag in the flags/fragment-offset word.
pub const FLAG_MF: u16 = 0x2000;
/// Fragment offset bits (in 8-byte units) of the flags/fragment-offset word.
pub const FRAG_OFFSET_MASK: u16 = 0x1fff;

/// Why bytes are not an IPv4 packet.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum Ipv4Error {
    /// Shorter than 20 bytes.
    #[error("shorter than an IPv4 header")]
    Truncated,
    /// The version nibble is not 4.
    #[error("IP version is not 4")]
    BadVersion,
    /// The header length is below 20 bytes.
    #[error("IPv4 header length below 20")]
    BadHeaderLen,
    /// The total length is below the header length or beyond the buffer.
    #[error("IPv4 total length below the header length or beyond the data")]
    BadTotalLen,
}

/// A received IPv4 packet whose version, header length and total length
/// have been checked against the buffer, so every accessor is infallible.
/// Bytes past the total length (link padding) are not part of it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Ipv4Packet<'a> {
    buf: &'a [u8],
    header_len: usize,
}

impl<'a> Ipv4Packet<'a> {
    /// Checks `buf` and returns the view.
    pub fn new_checked(buf: &'a [u8]) -> Result<Ipv4Packet<'a>, Ipv4Error> {
        if buf.len() < HEADER_LEN {
            return Err(Ipv4Error::Truncated);
        }
        if buf[0] >> 4 != 4 {
            return Err(Ipv4Error::BadVersion);
        }
        let header_len = usize::from(buf[0] & 0x0f) * 4;
        if header_len < HEADER_LEN {
            return Err(Ipv4Error::BadHeaderLen);
        }
        let total = usize::from(u16::from_be_bytes([buf[2], buf[3]]));
        if total < header_len || total > buf.len() {
            return Err(Ipv4Error::BadTotalLen);
        }
        Ok(Ipv4Packet {
            buf: &buf[..total],
            header_len,
        })
    }

    /// Header length in bytes, options included.
    pub fn header_len(&self) -> usize {
        self.header_len
    }

    /// Total length in bytes (header and payload).
    pub fn total_len(&self) -> usize {
        self.buf.len()
    }

    /// Type of service (DSCP and ECN).
    pub fn tos(&self) -> u8 {
        self.buf[1]
    }

    /// Identification.
    pub fn ident(&self) -> u16 {
        u16::from_be_bytes([self.buf[4], self.buf[5]])
    }

    /// The flags/fragment-offset word.
    pub fn flags_frag(&self) -> u16 {
        u16::from_be_bytes([self.buf[6], self.buf[7]])
    }

    /// Don't Fragment is set.
    pub fn dont_fragment(&self) -> bool {
        self.flags_frag() & FLAG_DF != 0
    }

    /// More Fragments is set.
    pub fn more_fragments(&self) -> bool {
        self.flags_frag() & FLAG_MF != 0
    }

    /// Fragment offset in bytes.
    pub fn frag_offset(&self) -> usize {
        usize::from(self.flags_frag() & FRAG_OFFSET_MASK) * 8
    }

    /// Time to live.
    pub fn ttl(&self) -> u8 {
        self.buf[8]
    }

    /// Payload protocol.
    pub fn protocol(&self) -> u8 {
        self.buf[9]
    }

    /// Header checksum as found.
    pub fn checksum(&self) -> u16 {
        u16::from_be_bytes([self.buf[10], self.buf[11]])
    }

    /// The header checksum is correct.
    pub fn verify_checksum(&self) -> bool {
        checksum(self.header()) == 0
    }

    /// Source address.
    pub fn src(&self) -> Ipv4Addr {
        Ipv4Addr::new(self.buf[12], self.buf[13], self.buf[14], self.buf[15])
    }

    /// Destination address.
    pub fn dst(&self) -> Ipv4Addr {
        Ipv4Addr::new(self.buf[16], self.buf[17], self.buf[18], self.buf[19])
    }

    /// The header, options included.
    pub fn header(&self) -> &'a [u8] {
        &self.buf[..self.header_len]
    }

    /// The options (may be empty).
    pub fn options(&self) -> &'a [u8] {
        &self.buf[HEADER_LEN..self.header_len]
    }

    /// The payload, up to the total length.
    pub fn payload(&self) -> &'a [u8] {
        &self.buf[self.header_len..]
    }

    /// The whole packet, up to the total length.
    pub fn as_bytes(&self) -> &'a [u8] {
        self.buf
    }
}

/// The fields of an IPv4 header without options: what is parsed from a
/// packet and what [`Ipv4Repr::emit`] writes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Ipv4Repr {
    /// Source address.
    pub src: Ipv4Addr,
    /// Destination address.
    pub dst: Ipv4Addr,
    /// Payload protocol.
    pub protocol: u8,
    /// Type of service (DSCP and ECN).
    pub tos: u8,
    /// Time to live.
    pub ttl: u8,
    /// Identification.
    pub ident: u16,
    /// Flags and fragment offset word (e.g. [`FLAG_DF`]).
    pub flags_frag: u16,
    /// Payload length in bytes.
    pub payload_len: usize,
}

impl Ipv4Repr {
    /// The header fields of a checked packet (its options are left out:
    /// [`Ipv4Repr::emit`] writes a 20-byte header).
    pub fn parse(p: &Ipv4Packet<'_>) -> Ipv4Repr {
        Ipv4Repr {
            src: p.src(),
            dst: p.dst(),
            protocol: p.protocol(),
            tos: p.tos(),
            ttl: p.ttl(),
            ident: p.ident(),
            flags_frag: p.flags_frag(),
            payload_len: p.total_len() - p.header_len(),
        }
    }

    /// Length of the header `emit` writes.
    pub const fn header_len(&self) -> usize {
        HEADER_LEN
    }

    /// Header and payload length.
    pub const fn total_len(&self) -> usize {
        HEADER_LEN + self.payload_len
    }

    /// Don't Fragment is set.
    pub fn dont_fragment(&self) -> bool {
        self.flags_frag & FLAG_DF != 0
    }

    /// Writes the 20-byte header with its checksum into `out[..20]`; the
    /// payload, if any, goes after it. Returns the header length.
    pub fn emit(&self, out: &mut [u8]) -> Result<usize, EmitError> {
        self.emit_with_options(&[], out)
    }

    /// Writes the header followed by `options` (padded with zeros to a
    /// multiple of 4 bytes, at most 40) into `out`; returns the header
    /// length, which the total length field counts before the payload.
    pub fn emit_with_options(&self, options: &[u8], out: &mut [u8]) -> Result<usize, EmitError> {
        let hl = HEADER_LEN + options.len().div_ceil(4) * 4;
        if hl > MAX_HEADER_LEN {
            return Err(EmitError::TooLong { len: hl });
        }
        let total = hl + self.payload_len;
        let total16 = u16::try_from(total).map_err(|_| EmitError::TooLong { len: total })?;
        room(hl, out.len())?;
        let h = &mut out[..hl];
        h[0] = 0x40 | (hl / 4) as u8;
        h[1] = self.tos;
        h[2..4].copy_from_slice(&total16.to_be_bytes());
        h[4..6].copy_from_slice(&self.ident.to_be_bytes());
        h[6..8].copy_from_slice(&self.flags_frag.to_be_bytes());
        h[8] = self.ttl;
        h[9] = self.protocol;
        h[10..12].fill(0);
        h[12..16].copy_from_slice(&self.src.octets());
        h[16..20].copy_from_slice(&self.dst.octets());
        h[HEADER_LEN..HEADER_LEN + options.len()].copy_from_slice(options);
        h[HEADER_LEN + options.len()..].fill(0);
        let c = checksum(h);
        h[10..12].copy_from_slice(&c.to_be_bytes());
        Ok(hl)
    }
}

impl Ipv4Repr {
    /// A new packet of header, `options` and `payload`, its payload length
    /// taken from `payload`: for control-plane and test code (the
    /// forwarding path writes into its own buffers with [`Ipv4Repr::emit`]).
    pub fn to_packet(&self, options: &[u8], payload: &[u8]) -> Result<Vec<u8>, EmitError> {
        let r = Ipv4Repr {
            payload_len: payload.len(),
            ..*self
        };
        let mut out = vec![0; MAX_HEADER_LEN + payload.len()];
        let hl = r.emit_with_options(options, &mut out)?;
        out.truncate(hl);
        out.extend_from_slice(payload);
        Ok(out)
    }
}

/// Recomputes the checksum of the header at the start of `packet` (its
/// length taken from the IHL field) after fields were edited in place.
/// Returns `false`, writing nothing, if `packet` is shorter than that.
pub fn fill_checksum(packet: &mut [u8]) -> bool {
    let Some(&b0) = packet.first() else {
        return false;
    };
    let hl = usize::from(b0 & 0x0f) * 4;
    if hl < HEADER_LEN || packet.len() < hl {
        return false;
    }
    packet[10..12].fill(0);
    let c = checksum(&packet[..hl]);
    packet[10..12].copy_from_slice(&c.to_be_bytes());
    true
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    /// A UDP packet header from 192.168.0.1 to 192.168.0.199, DF, TTL 64,
    /// total length 0x73, checksum 0xb861.
    const GOLDEN: [u8; 20] = [
        0x45, 0x00, 0x00, 0x73, 0x00, 0x00, 0x40, 0x00, 0x40, 0x11, 0xb8, 0x61, 0xc0, 0xa8, 0x00,
        0x01, 0xc0, 0xa8, 0x00, 0xc7,
    ];

    fn golden_repr() -> Ipv4Repr {
        Ipv4Repr {
            src: Ipv4Addr::new(192, 168, 0, 1),
            dst: Ipv4Addr::new(192, 168, 0, 199),
            protocol: PROTO_UDP,
            tos: 0,
            ttl: 64,
            ident: 0,
            flags_frag: FLAG_DF,
            payload_len: 0x73 - 20,
        }
    }

    #[test]
    fn golden_bytes_parse_and_emit() {
        let mut pkt = GOLDEN.to_vec();
        pkt.resize(0x73 + 6, 0xee); // link padding beyond the total length
        let p = Ipv4Packet::new_checked(&pkt).unwrap();
        assert!(p.verify_checksum());
        assert_eq!(p.total_len(), 0x73);
        assert_eq!(p.payload().len(), 0x73 - 20);
        assert!(p.dont_fragment() && !p.more_fragments());
        assert_eq!(
            (p.ttl(), p.protocol(), p.checksum()),
            (64, PROTO_UDP, 0xb861)
        );
        assert_eq!(Ipv4Repr::parse(&p), golden_repr());
        let mut out = [0u8; 20];
        assert_eq!(golden_repr().emit(&mut out), Ok(20));
        assert_eq!(out, GOLDEN);
    }

    #[test]
    fn rejects_what_is_not_ipv4() {
        let g = &GOLDEN;
        assert_eq!(Ipv4Packet::new_checked(&g[..19]), Err(Ipv4Error::Truncated));
        let mut b = *g;
        b[0] = 0x65;
        assert_eq!(Ipv4Packet::new_checked(&b), Err(Ipv4Error::BadVersion));
        b[0] = 0x44;
        assert_eq!(Ipv4Packet::new_checked(&b), Err(Ipv4Error::BadHeaderLen));
        // Total length 0x73 but only 20 bytes present.
        assert_eq!(Ipv4Packet::new_checked(g), Err(Ipv4Error::BadTotalLen));
        b = *g;
        b[2..4].copy_from_slice(&19u16.to_be_bytes());
        assert_eq!(Ipv4Packet::new_checked(&b), Err(Ipv4Error::BadTotalLen));
    }

    #[test]
    fn options_are_padded_and_counted() {
        let r = Ipv4Repr {
            payload_len: 3,
            ..golden_repr()
        };
        let mut out = [0u8; 64];
        let hl = r.emit_with_options(&[1, 1, 1, 1, 7], &mut out).unwrap();
        assert_eq!(hl, 28);
        out[hl..hl + 3].copy_from_slice(&[9, 9, 9]);
        let p = Ipv4Packet::new_checked(&out[..31]).unwrap();
        assert!(p.verify_checksum());
        assert_eq!(p.options(), &[1, 1, 1, 1, 7, 0, 0, 0]);
        assert_eq!(p.payload(), &[9, 9, 9]);
    }

    #[test]
    fn emit_reports_small_buffers_and_long_packets() {
        let mut out = [0u8; 19];
        assert_eq!(
            golden_repr().emit(&mut out),
            Err(EmitError::BufferTooSmall { need: 20, have: 19 })
        );
        let r = Ipv4Repr {
            payload_len: 65_516,
            ..golden_repr()
        };
        assert_eq!(
            r.emit(&mut [0u8; 20]),
            Err(EmitError::TooLong { len: 65_536 })
        );
    }

    #[test]
    fn fill_checksum_after_editing_the_ttl() {
        let mut pkt = GOLDEN;
        pkt[8] -= 1;
        assert!(fill_checksum(&mut pkt));
        assert_eq!(checksum(&pkt), 0);
        assert!(!fill_checksum(&mut pkt[..10]));
    }

    fn any_repr() -> impl Strategy<Value = Ipv4Repr> {
        (
            any::<[u8; 4]>(),
            any::<[u8; 4]>(),
            any::<(u8, u8, u8, u16, u16)>(),
            0usize..100,
        )
            .prop_map(
                |(s, d, (protocol, tos, ttl, ident, flags_frag), payload_len)| Ipv4Repr {
                    src: s.into(),
                    dst: d.into(),
                    protocol,
                    tos,
                    ttl,
                    ident,
                    flags_frag,
                    payload_len,
                },
            )
    }

    proptest! {
        #[test]
        fn parse_of_emit_is_identity(r in any_repr(), opts in proptest::collection::vec(any::<u8>(), 0..=40)) {
            let mut buf = vec![0u8; 60 + r.payload_len];
            let hl = r.emit_with_options(&opts, &mut buf).unwrap();
            let p = Ipv4Packet::new_checked(&buf).unwrap();
            prop_assert!(p.verify_checksum());
            prop_assert_eq!(p.header_len(), hl);
            prop_assert_eq!(&p.options()[..opts.len()], &opts[..]);
            prop_assert_eq!(Ipv4Repr::parse(&p), r);
            let v = r.to_packet(&opts, &buf[hl..hl + r.payload_len]).unwrap();
            prop_assert_eq!(&v[..], &buf[..hl + r.payload_len]);
        }

        #[test]
        fn arbitrary_bytes_never_panic(b in proptest::collection::vec(any::<u8>(), 0..100)) {
            if let Ok(p) = Ipv4Packet::new_checked(&b) {
                prop_assert!(p.header_len() <= p.total_len() && p.total_len() <= b.len());
                let r = Ipv4Repr::parse(&p);
                prop_assert_eq!(r.total_len(), p.total_len() - p.header_len() + HEADER_LEN);
                let _ = (p.options(), p.payload(), p.verify_checksum(), p.frag_offset());
            }
        }
    }
}
