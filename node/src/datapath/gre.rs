//! GRE encapsulation and decapsulation (RFC 2784, key and sequence
//! extensions of RFC 2890) into caller buffers.
//!
//! The header is 4 bytes, plus 4 for a checksum, 4 for a key and 4 for a
//! sequence number when their flags are set. We send only the key (Cisco
//! sends no checksum and no sequence number); on input we accept a checksum
//! (and verify it) and skip a sequence number.

use thiserror::Error;

/// Protocol type of an IPv4 payload.
pub const PROTO_IPV4: u16 = 0x0800;
/// Protocol type of an IPv6 payload.
pub const PROTO_IPV6: u16 = 0x86DD;
/// Protocol type of an NHRP payload (Cisco and RFC 2332 over GRE).
pub const PROTO_NHRP: u16 = 0x2001;

const FLAG_CSUM: u16 = 0x8000;
const FLAG_ROUTING: u16 = 0x4000;
const FLAG_KEY: u16 = 0x2000;
const FLAG_SEQ: u16 = 0x1000;
/// Strict source route and recursion control bits; must be zero (RFC 2784).
const FLAG_RESERVED0: u16 = 0x0ff8;
const VERSION_MASK: u16 = 0x0007;

/// Why a received GRE packet was dropped. Each reason has its own counter.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Error)]
pub enum GreDrop {
    #[error("packet shorter than its GRE header")]
    Truncated,
    #[error("GRE version is not 0")]
    BadVersion,
    #[error("GRE routing present or reserved flags set")]
    BadFlags,
    #[error("GRE checksum does not match")]
    BadChecksum,
    #[error("GRE key expected but missing")]
    KeyMissing,
    #[error("GRE key present but the tunnel has none")]
    KeyUnexpected,
    #[error("GRE key does not match the tunnel key")]
    KeyMismatch,
    #[error("GRE protocol type not handled")]
    UnknownProtocol,
}

impl GreDrop {
    /// Every reason, in counter order.
    pub const ALL: [GreDrop; 8] = [
        GreDrop::Truncated,
        GreDrop::BadVersion,
        GreDrop::BadFlags,
        GreDrop::BadChecksum,
        GreDrop::KeyMissing,
        GreDrop::KeyUnexpected,
        GreDrop::KeyMismatch,
        GreDrop::UnknownProtocol,
    ];

    fn index(self) -> usize {
        self as usize
    }
}

/// Error of the encapsulation side: the caller's buffer is too small.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Error)]
#[error("output buffer too small: need {need} bytes, have {have}")]
pub struct BufferTooSmall {
    pub need: usize,
    pub have: usize,
}

/// Length of the GRE header we emit.
pub const fn header_len(key: Option<u32>) -> usize {
    if key.is_some() { 8 } else { 4 }
}

/// Writes a GRE header (no checksum, optional key) at the start of `out`
/// and returns its length. Use it when the payload already sits after
/// `header_len(key)` bytes of headroom.
pub fn write_header(
    out: &mut [u8],
    protocol: u16,
    key: Option<u32>,
) -> Result<usize, BufferTooSmall> {
    let len = header_len(key);
    if out.len() < len {
        return Err(BufferTooSmall {
            need: len,
            have: out.len(),
        });
    }
    let flags: u16 = if key.is_some() { FLAG_KEY } else { 0 };
    out[0..2].copy_from_slice(&flags.to_be_bytes());
    out[2..4].copy_from_slice(&protocol.to_be_bytes());
    if let Some(k) = key {
        out[4..8].copy_from_slice(&k.to_be_bytes());
    }
    Ok(len)
}

/// Encapsulates `payload` into `out` (header + copy); returns the length.
pub fn encap(
    out: &mut [u8],
    protocol: u16,
    key: Option<u32>,
    payload: &[u8],
) -> Result<usize, BufferTooSmall> {
    let hl = header_len(key);
    let total = hl + payload.len();
    if out.len() < total {
        return Err(BufferTooSmall {
            need: total,
            have: out.len(),
        });
    }
    write_header(out, protocol, key)?;
    out[hl..total].copy_from_slice(payload);
    Ok(total)
}

/// A parsed GRE header: where the payload starts and what it is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct GreHeader {
    pub protocol: u16,
    pub key: Option<u32>,
    pub sequence: Option<u32>,
    pub checksum_present: bool,
    /// Offset of the payload in the packet.
    pub payload_offset: usize,
}

/// Parses a GRE header without policy checks (key, protocol).
pub fn parse(pkt: &[u8]) -> Result<GreHeader, GreDrop> {
    if pkt.len() < 4 {
        return Err(GreDrop::Truncated);
    }
    let flags = u16::from_be_bytes([pkt[0], pkt[1]]);
    if flags & VERSION_MASK != 0 {
        return Err(GreDrop::BadVersion);
    }
    if flags & (FLAG_ROUTING | FLAG_RESERVED0) != 0 {
        return Err(GreDrop::BadFlags);
    }
    let protocol = u16::from_be_bytes([pkt[2], pkt[3]]);
    let mut off = 4;
    let checksum_present = flags & FLAG_CSUM != 0;
    if checksum_present {
        if pkt.len() < off + 4 {
            return Err(GreDrop::Truncated);
        }
        // The checksum covers the GRE header and payload; a correct packet sums to 0.
        if internet_checksum(pkt) != 0 {
            return Err(GreDrop::BadChecksum);
        }
        off += 4;
    }
    let key = if flags & FLAG_KEY != 0 {
        if pkt.len() < off + 4 {
            return Err(GreDrop::Truncated);
        }
        let k = u32::from_be_bytes([pkt[off], pkt[off + 1], pkt[off + 2], pkt[off + 3]]);
        off += 4;
        Some(k)
    } else {
        None
    };
    let sequence = if flags & FLAG_SEQ != 0 {
        if pkt.len() < off + 4 {
            return Err(GreDrop::Truncated);
        }
        let s = u32::from_be_bytes([pkt[off], pkt[off + 1], pkt[off + 2], pkt[off + 3]]);
        off += 4;
        Some(s)
    } else {
        None
    };
    Ok(GreHeader {
        protocol,
        key,
        sequence,
        checksum_present,
        payload_offset: off,
    })
}

/// Parses and checks a received GRE packet against the tunnel's key;
/// accepts IPv4, IPv6 and NHRP payloads.
pub fn decap(pkt: &[u8], tunnel_key: Option<u32>) -> Result<GreHeader, GreDrop> {
    let h = parse(pkt)?;
    match (tunnel_key, h.key) {
        (Some(_), None) => return Err(GreDrop::KeyMissing),
        (None, Some(_)) => return Err(GreDrop::KeyUnexpected),
        (Some(a), Some(b)) if a != b => return Err(GreDrop::KeyMismatch),
        _ => {}
    }
    match h.protocol {
        PROTO_IPV4 | PROTO_IPV6 | PROTO_NHRP => Ok(h),
        _ => Err(GreDrop::UnknownProtocol),
    }
}

/// One's-complement Internet checksum (RFC 1071) of `data`; an odd tail
/// byte is the high byte of a final 16-bit word.
pub fn internet_checksum(data: &[u8]) -> u16 {
    let mut sum: u32 = 0;
    let mut chunks = data.chunks_exact(2);
    for c in &mut chunks {
        sum += u32::from(u16::from_be_bytes([c[0], c[1]]));
    }
    if let [b] = chunks.remainder() {
        sum += u32::from(*b) << 8;
    }
    while sum >> 16 != 0 {
        sum = (sum & 0xffff) + (sum >> 16);
    }
    !(sum as u16)
}

/// Per-reason drop counters plus packet counts for one GRE tunnel.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct GreCounters {
    pub encapsulated: u64,
    pub decapsulated: u64,
    drops: [u64; GreDrop::ALL.len()],
}

impl GreCounters {
    pub fn count_drop(&mut self, reason: GreDrop) {
        self.drops[reason.index()] += 1;
    }

    pub fn drops(&self, reason: GreDrop) -> u64 {
        self.drops[reason.index()]
    }

    pub fn total_drops(&self) -> u64 {
        self.drops.iter().sum()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn encap_without_key_is_four_bytes() {
        let mut out = [0u8; 64];
        let n = encap(&mut out, PROTO_NHRP, None, &[1, 2, 3]).unwrap();
        assert_eq!(&out[..n], &[0, 0, 0x20, 0x01, 1, 2, 3]);
        let h = decap(&out[..n], None).unwrap();
        assert_eq!(h.protocol, PROTO_NHRP);
        assert_eq!(h.payload_offset, 4);
    }

    #[test]
    fn encap_with_key_sets_k_bit() {
        let mut out = [0u8; 64];
        let n = encap(&mut out, PROTO_IPV4, Some(0x0001_e240), &[0x45]).unwrap();
        assert_eq!(&out[..n], &[0x20, 0, 0x08, 0, 0, 0x01, 0xe2, 0x40, 0x45]);
        assert_eq!(decap(&out[..n], Some(123456)).unwrap().key, Some(123456));
    }

    #[test]
    fn key_policy_is_enforced() {
        let mut out = [0u8; 64];
        let n = encap(&mut out, PROTO_IPV4, Some(7), &[0x45]).unwrap();
        assert_eq!(decap(&out[..n], Some(8)), Err(GreDrop::KeyMismatch));
        assert_eq!(decap(&out[..n], None), Err(GreDrop::KeyUnexpected));
        let n = encap(&mut out, PROTO_IPV4, None, &[0x45]).unwrap();
        assert_eq!(decap(&out[..n], Some(7)), Err(GreDrop::KeyMissing));
    }

    #[test]
    fn checksum_and_sequence_are_accepted() {
        // C + K + S flags, protocol IPv4, checksum filled in below.
        let mut pkt = vec![
            0xb0, 0x00, 0x08, 0x00, 0, 0, 0, 0, 0, 0, 0, 5, 0, 0, 0, 9, 0x45, 0, 0,
        ];
        let c = internet_checksum(&pkt);
        pkt[4..6].copy_from_slice(&c.to_be_bytes());
        let h = decap(&pkt, Some(5)).unwrap();
        assert!(h.checksum_present);
        assert_eq!(h.sequence, Some(9));
        assert_eq!(h.payload_offset, 16);
        pkt[18] ^= 1;
        assert_eq!(decap(&pkt, Some(5)), Err(GreDrop::BadChecksum));
    }

    #[test]
    fn rejects_bad_headers() {
        assert_eq!(decap(&[0, 0, 8], None), Err(GreDrop::Truncated));
        assert_eq!(decap(&[0, 1, 8, 0], None), Err(GreDrop::BadVersion));
        assert_eq!(decap(&[0x40, 0, 8, 0], None), Err(GreDrop::BadFlags));
        assert_eq!(
            decap(&[0, 0, 0x88, 0x0b], None),
            Err(GreDrop::UnknownProtocol)
        );
        assert_eq!(decap(&[0x20, 0, 8, 0, 1], Some(1)), Err(GreDrop::Truncated));
    }

    #[test]
    fn counters_count_per_reason() {
        let mut c = GreCounters::default();
        c.count_drop(GreDrop::KeyMismatch);
        c.count_drop(GreDrop::KeyMismatch);
        c.count_drop(GreDrop::Truncated);
        assert_eq!(c.drops(GreDrop::KeyMismatch), 2);
        assert_eq!(c.total_drops(), 3);
    }

    proptest! {
        #[test]
        fn round_trip(key in proptest::option::of(any::<u32>()),
                      proto in prop_oneof![Just(PROTO_IPV4), Just(PROTO_IPV6), Just(PROTO_NHRP)],
                      payload in proptest::collection::vec(any::<u8>(), 0..200)) {
            let mut out = vec![0u8; 256];
            let n = encap(&mut out, proto, key, &payload).unwrap();
            let h = decap(&out[..n], key).unwrap();
            prop_assert_eq!(h.protocol, proto);
            prop_assert_eq!(&out[h.payload_offset..n], &payload[..]);
        }

        #[test]
        fn decap_never_panics(pkt in proptest::collection::vec(any::<u8>(), 0..64), key in proptest::option::of(any::<u32>())) {
            if let Ok(h) = decap(&pkt, key) {
                prop_assert!(h.payload_offset <= pkt.len());
            }
        }
    }
}
