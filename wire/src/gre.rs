//! GRE headers (RFC 2784, with the key and sequence number of RFC 2890).
//!
//! The header is 4 bytes, plus 4 for a checksum, 4 for a key and 4 for a
//! sequence number when their flags are set. Version 0 only; source
//! routing (RFC 1701) is refused. The reserved bits are carried so a
//! received header re-emits byte for byte; a receiver that must refuse
//! them checks [`GreRepr::reserved0`].

use crate::checksum::checksum;
use crate::{EmitError, room};

/// Protocol type of an IPv4 payload.
pub const PROTO_IPV4: u16 = 0x0800;
/// Protocol type of an IPv6 payload.
pub const PROTO_IPV6: u16 = 0x86DD;
/// Protocol type of an NHRP payload (Cisco and RFC 2332 over GRE).
pub const PROTO_NHRP: u16 = 0x2001;

const FLAG_CHECKSUM: u16 = 0x8000;
const FLAG_ROUTING: u16 = 0x4000;
const FLAG_KEY: u16 = 0x2000;
const FLAG_SEQ: u16 = 0x1000;
/// Strict source route, recursion control and flag bits RFC 2784 reserves.
pub const RESERVED0_MASK: u16 = 0x0ff8;
const VERSION_MASK: u16 = 0x0007;

/// Why bytes are not a GRE packet.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum GreError {
    /// Shorter than the header its flags announce.
    #[error("packet shorter than its GRE header")]
    Truncated,
    /// Version is not 0.
    #[error("GRE version is not 0")]
    BadVersion,
    /// The routing flag is set.
    #[error("GRE source routing is not supported")]
    Routing,
    /// A present checksum does not verify.
    #[error("GRE checksum does not match")]
    BadChecksum,
}

/// The fields of a GRE header.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
pub struct GreRepr {
    /// Payload protocol type ([`PROTO_IPV4`], [`PROTO_IPV6`], [`PROTO_NHRP`]).
    pub protocol: u16,
    /// Key (K bit).
    pub key: Option<u32>,
    /// Sequence number (S bit).
    pub sequence: Option<u32>,
    /// Checksum present (C bit), with the Reserved1 word that follows it.
    /// The checksum itself is verified on parse and computed on emit.
    pub checksum: Option<u16>,
    /// Reserved0 bits ([`RESERVED0_MASK`]); zero in what we send.
    pub reserved0: u16,
}

impl GreRepr {
    /// A header with an optional key, no checksum, no sequence number:
    /// what a DMVPN tunnel sends.
    pub const fn new(protocol: u16, key: Option<u32>) -> GreRepr {
        GreRepr {
            protocol,
            key,
            sequence: None,
            checksum: None,
            reserved0: 0,
        }
    }

    /// Parses the header at the start of `packet` (version 0, no routing;
    /// a present checksum is verified over the whole of `packet`) and
    /// returns it with the payload, which starts at
    /// [`GreRepr::header_len`].
    pub fn parse(packet: &[u8]) -> Result<(GreRepr, &[u8]), GreError> {
        if packet.len() < 4 {
            return Err(GreError::Truncated);
        }
        let flags = u16::from_be_bytes([packet[0], packet[1]]);
        if flags & VERSION_MASK != 0 {
            return Err(GreError::BadVersion);
        }
        if flags & FLAG_ROUTING != 0 {
            return Err(GreError::Routing);
        }
        let word = |i: usize| {
            packet
                .get(i..i + 4)
                .map(|w| u32::from_be_bytes([w[0], w[1], w[2], w[3]]))
                .ok_or(GreError::Truncated)
        };
        let mut at = 4;
        let mut repr = GreRepr {
            protocol: u16::from_be_bytes([packet[2], packet[3]]),
            reserved0: flags & RESERVED0_MASK,
            ..GreRepr::default()
        };
        if flags & FLAG_CHECKSUM != 0 {
            repr.checksum = Some(word(at)? as u16);
            if checksum(packet) != 0 {
                return Err(GreError::BadChecksum);
            }
            at += 4;
        }
        if flags & FLAG_KEY != 0 {
            repr.key = Some(word(at)?);
            at += 4;
        }
        if flags & FLAG_SEQ != 0 {
            repr.sequence = Some(word(at)?);
            at += 4;
        }
        Ok((repr, &packet[at..]))
    }

    /// Header length on the wire.
    pub const fn header_len(&self) -> usize {
        4 + 4
            * (self.checksum.is_some() as usize
                + self.key.is_some() as usize
                + self.sequence.is_some() as usize)
    }

    /// Writes the header at the start of `packet`, whose payload already
    /// sits after [`GreRepr::header_len`] bytes of headroom. With the C
    /// bit the checksum covers all of `packet`. Returns the header length.
    pub fn emit(&self, packet: &mut [u8]) -> Result<usize, EmitError> {
        let hl = self.header_len();
        room(hl, packet.len())?;
        let mut flags = self.reserved0 & RESERVED0_MASK;
        for (present, bit) in [
            (self.checksum.is_some(), FLAG_CHECKSUM),
            (self.key.is_some(), FLAG_KEY),
            (self.sequence.is_some(), FLAG_SEQ),
        ] {
            if present {
                flags |= bit;
            }
        }
        packet[0..2].copy_from_slice(&flags.to_be_bytes());
        packet[2..4].copy_from_slice(&self.protocol.to_be_bytes());
        let mut at = 4;
        if let Some(r1) = self.checksum {
            packet[at..at + 2].fill(0);
            packet[at + 2..at + 4].copy_from_slice(&r1.to_be_bytes());
            at += 4;
        }
        for w in [self.key, self.sequence].into_iter().flatten() {
            packet[at..at + 4].copy_from_slice(&w.to_be_bytes());
            at += 4;
        }
        if self.checksum.is_some() {
            let c = checksum(packet);
            packet[4..6].copy_from_slice(&c.to_be_bytes());
        }
        Ok(hl)
    }

    /// A new packet of header and `payload`: for control-plane and test
    /// code (the forwarding path writes into its own buffers with
    /// [`GreRepr::emit`]).
    pub fn to_packet(&self, payload: &[u8]) -> Vec<u8> {
        let mut out = vec![0; self.header_len() + payload.len()];
        // The buffer is sized for the header and the payload.
        let _ = self.emit_packet(payload, &mut out);
        out
    }

    /// Writes header and a copy of `payload` into `out`; returns the
    /// packet length.
    pub fn emit_packet(&self, payload: &[u8], out: &mut [u8]) -> Result<usize, EmitError> {
        let hl = self.header_len();
        let total = hl + payload.len();
        room(total, out.len())?;
        out[hl..total].copy_from_slice(payload);
        self.emit(&mut out[..total])?;
        Ok(total)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn golden_without_key() {
        let mut out = [0u8; 16];
        let n = GreRepr::new(PROTO_NHRP, None)
            .emit_packet(&[1, 2, 3], &mut out)
            .unwrap();
        assert_eq!(&out[..n], &[0, 0, 0x20, 0x01, 1, 2, 3]);
        let (h, p) = GreRepr::parse(&out[..n]).unwrap();
        assert_eq!((h, p), (GreRepr::new(PROTO_NHRP, None), &[1u8, 2, 3][..]));
    }

    #[test]
    fn golden_with_key() {
        let mut out = [0u8; 16];
        let n = GreRepr::new(PROTO_IPV4, Some(123_456))
            .emit_packet(&[0x45], &mut out)
            .unwrap();
        assert_eq!(&out[..n], &[0x20, 0, 0x08, 0, 0, 0x01, 0xe2, 0x40, 0x45]);
        assert_eq!(GreRepr::parse(&out[..n]).unwrap().0.key, Some(123_456));
    }

    #[test]
    fn checksum_and_sequence() {
        // C + K + S flags, protocol IPv4, checksum filled in below.
        let mut pkt = vec![
            0xb0, 0x00, 0x08, 0x00, 0, 0, 0, 0, 0, 0, 0, 5, 0, 0, 0, 9, 0x45, 0, 0,
        ];
        let c = checksum(&pkt);
        pkt[4..6].copy_from_slice(&c.to_be_bytes());
        let (h, p) = GreRepr::parse(&pkt).unwrap();
        assert_eq!(h.checksum, Some(0));
        assert_eq!((h.key, h.sequence), (Some(5), Some(9)));
        assert_eq!((h.header_len(), p), (16, &[0x45u8, 0, 0][..]));
        let mut again = pkt.clone();
        again[..16].fill(0);
        assert_eq!(h.emit(&mut again), Ok(16));
        assert_eq!(again, pkt);
        pkt[18] ^= 1;
        assert_eq!(GreRepr::parse(&pkt), Err(GreError::BadChecksum));
    }

    #[test]
    fn rejects_bad_headers() {
        assert_eq!(GreRepr::parse(&[0, 0, 8]), Err(GreError::Truncated));
        assert_eq!(GreRepr::parse(&[0, 1, 8, 0]), Err(GreError::BadVersion));
        assert_eq!(GreRepr::parse(&[0x40, 0, 8, 0]), Err(GreError::Routing));
        assert_eq!(
            GreRepr::parse(&[0x20, 0, 8, 0, 1]),
            Err(GreError::Truncated)
        );
        assert_eq!(GreRepr::parse(&[0x80, 0, 8, 0]), Err(GreError::Truncated));
        // Reserved bits are carried, not refused.
        assert_eq!(
            GreRepr::parse(&[0x08, 0, 8, 0]).unwrap().0.reserved0,
            0x0800
        );
    }

    #[test]
    fn emit_reports_small_buffers() {
        let r = GreRepr::new(PROTO_IPV4, Some(1));
        assert_eq!(
            r.emit(&mut [0u8; 7]),
            Err(EmitError::BufferTooSmall { need: 8, have: 7 })
        );
        assert_eq!(
            r.emit_packet(&[0; 4], &mut [0u8; 11]),
            Err(EmitError::BufferTooSmall { need: 12, have: 11 })
        );
    }

    fn any_repr() -> impl Strategy<Value = GreRepr> {
        (
            any::<u16>(),
            proptest::option::of(any::<u32>()),
            proptest::option::of(any::<u32>()),
            proptest::option::of(any::<u16>()),
            any::<u16>(),
        )
            .prop_map(|(protocol, key, sequence, checksum, r0)| GreRepr {
                protocol,
                key,
                sequence,
                checksum,
                reserved0: r0 & RESERVED0_MASK,
            })
    }

    proptest! {
        #[test]
        fn parse_of_emit_is_identity(r in any_repr(), payload in proptest::collection::vec(any::<u8>(), 0..64)) {
            let mut out = vec![0u8; 16 + payload.len()];
            let n = r.emit_packet(&payload, &mut out).unwrap();
            let (h, p) = GreRepr::parse(&out[..n]).unwrap();
            prop_assert_eq!(h, r);
            prop_assert_eq!(p, &payload[..]);
            prop_assert_eq!(r.to_packet(&payload), &out[..n]);
        }

        #[test]
        fn arbitrary_bytes_never_panic(b in proptest::collection::vec(any::<u8>(), 0..40)) {
            if let Ok((h, p)) = GreRepr::parse(&b) {
                prop_assert_eq!(h.header_len() + p.len(), b.len());
            }
        }
    }
}
