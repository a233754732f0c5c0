//! The tunnel's GRE policy on top of [`dmvpn_wire::gre`]: what a received
//! packet must carry to be accepted (version 0, no routing, no reserved
//! bits, a correct checksum if present, the tunnel's key, a payload we
//! handle) and per-reason drop counters. We send only the key (Cisco
//! sends no checksum and no sequence number); on input a checksum is
//! verified and a sequence number skipped.

use dmvpn_wire::gre::{GreError, GreRepr};
use thiserror::Error;

pub use dmvpn_wire::gre::{PROTO_IPV4, PROTO_IPV6, PROTO_NHRP};

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

impl From<GreError> for GreDrop {
    fn from(e: GreError) -> GreDrop {
        match e {
            GreError::Truncated => GreDrop::Truncated,
            GreError::BadVersion => GreDrop::BadVersion,
            GreError::Routing => GreDrop::BadFlags,
            GreError::BadChecksum => GreDrop::BadChecksum,
        }
    }
}

/// Parses a received GRE packet and checks it against the tunnel's key;
/// accepts IPv4, IPv6 and NHRP payloads, which start at
/// [`GreRepr::header_len`].
pub fn decap(pkt: &[u8], tunnel_key: Option<u32>) -> Result<GreRepr, GreDrop> {
    let (h, _) = GreRepr::parse(pkt)?;
    if h.reserved0 != 0 {
        return Err(GreDrop::BadFlags);
    }
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

    /// Adds `other`'s counts (another forwarding thread's) to these.
    pub fn add(&mut self, other: &GreCounters) {
        self.encapsulated += other.encapsulated;
        self.decapsulated += other.decapsulated;
        for (a, b) in self.drops.iter_mut().zip(other.drops) {
            *a += b;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use dmvpn_wire::checksum::checksum;
    use proptest::prelude::*;

    fn packet(protocol: u16, key: Option<u32>, payload: &[u8]) -> Vec<u8> {
        GreRepr::new(protocol, key).to_packet(payload)
    }

    #[test]
    fn key_policy_is_enforced() {
        let p = packet(PROTO_IPV4, Some(7), &[0x45]);
        assert_eq!(decap(&p, Some(8)), Err(GreDrop::KeyMismatch));
        assert_eq!(decap(&p, None), Err(GreDrop::KeyUnexpected));
        assert_eq!(decap(&p, Some(7)).unwrap().key, Some(7));
        let p = packet(PROTO_IPV4, None, &[0x45]);
        assert_eq!(decap(&p, Some(7)), Err(GreDrop::KeyMissing));
    }

    #[test]
    fn checksum_and_sequence_are_accepted() {
        // C + K + S flags, protocol IPv4, checksum filled in below.
        let mut pkt = vec![
            0xb0, 0x00, 0x08, 0x00, 0, 0, 0, 0, 0, 0, 0, 5, 0, 0, 0, 9, 0x45, 0, 0,
        ];
        let c = checksum(&pkt);
        pkt[4..6].copy_from_slice(&c.to_be_bytes());
        let h = decap(&pkt, Some(5)).unwrap();
        assert!(h.checksum.is_some());
        assert_eq!(h.sequence, Some(9));
        assert_eq!(h.header_len(), 16);
        pkt[18] ^= 1;
        assert_eq!(decap(&pkt, Some(5)), Err(GreDrop::BadChecksum));
    }

    #[test]
    fn rejects_bad_headers() {
        assert_eq!(decap(&[0, 0, 8], None), Err(GreDrop::Truncated));
        assert_eq!(decap(&[0, 1, 8, 0], None), Err(GreDrop::BadVersion));
        assert_eq!(decap(&[0x40, 0, 8, 0], None), Err(GreDrop::BadFlags));
        // Reserved0 bits the codec carries, the tunnel refuses.
        assert_eq!(decap(&[0x08, 0, 8, 0], None), Err(GreDrop::BadFlags));
        assert_eq!(decap(&[0, 0x08, 8, 0], None), Err(GreDrop::BadFlags));
        assert_eq!(
            decap(&[0, 0, 0x88, 0x0b], None),
            Err(GreDrop::UnknownProtocol)
        );
        assert_eq!(decap(&[0x20, 0, 8, 0, 1], Some(1)), Err(GreDrop::Truncated));
        assert_eq!(decap(&[0x80, 0, 8, 0], None), Err(GreDrop::Truncated));
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
            let out = packet(proto, key, &payload);
            let h = decap(&out, key).unwrap();
            prop_assert_eq!(h.protocol, proto);
            prop_assert_eq!(&out[h.header_len()..], &payload[..]);
        }

        #[test]
        fn decap_never_panics(pkt in proptest::collection::vec(any::<u8>(), 0..64), key in proptest::option::of(any::<u32>())) {
            if let Ok(h) = decap(&pkt, key) {
                prop_assert!(h.header_len() <= pkt.len());
            }
        }
    }
}
