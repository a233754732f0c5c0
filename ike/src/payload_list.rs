//! Typed look-ups on a parsed payload list: the first payload of a kind,
//! with the byte range it occupied (for hashes over raw bodies such as
//! SAi_b and IDii_b).

use crate::wire::{IdPayload, Identity, NotifyPayload, Payload, SaPayload};
use std::net::IpAddr;
use std::ops::Range;

/// Payloads in message order, each with its byte range in the body.
pub(crate) type Spanned = Vec<(Payload, Range<usize>)>;

/// The body of the payload at `r` in `buf` (after its 4-byte generic
/// header), as SAi_b and IDii_b hash it.
pub(crate) fn body_of<'a>(buf: &'a [u8], r: &Range<usize>) -> &'a [u8] {
    buf.get(r.start + 4..r.end).unwrap_or_default()
}

pub(crate) trait PayloadList {
    fn find_sa(&self) -> Option<(&SaPayload, Range<usize>)>;
    fn find_ke(&self) -> Option<&[u8]>;
    fn find_nonce(&self) -> Option<&[u8]>;
    fn find_hash(&self) -> Option<&[u8]>;
    fn find_id(&self) -> Option<(&IdPayload, Range<usize>)>;
    /// All ID payloads (Quick Mode: IDci then IDcr).
    fn ids(&self) -> impl DoubleEndedIterator<Item = &IdPayload>;
    /// NAT-OA addresses in order (IPv4/IPv6 identities only).
    fn nat_oa_addrs(&self) -> impl DoubleEndedIterator<Item = IpAddr>;
    fn notifies(&self) -> impl Iterator<Item = &NotifyPayload>;
}

impl PayloadList for [(Payload, Range<usize>)] {
    fn find_sa(&self) -> Option<(&SaPayload, Range<usize>)> {
        self.iter().find_map(|(x, r)| match x {
            Payload::Sa(s) => Some((s, r.clone())),
            _ => None,
        })
    }

    fn find_ke(&self) -> Option<&[u8]> {
        self.iter().find_map(|(x, _)| match x {
            Payload::Ke(k) => Some(k.as_slice()),
            _ => None,
        })
    }

    fn find_nonce(&self) -> Option<&[u8]> {
        self.iter().find_map(|(x, _)| match x {
            Payload::Nonce(n) => Some(n.as_slice()),
            _ => None,
        })
    }

    fn find_hash(&self) -> Option<&[u8]> {
        self.iter().find_map(|(x, _)| match x {
            Payload::Hash(h) => Some(h.as_slice()),
            _ => None,
        })
    }

    fn find_id(&self) -> Option<(&IdPayload, Range<usize>)> {
        self.iter().find_map(|(x, r)| match x {
            Payload::Id(i) => Some((i, r.clone())),
            _ => None,
        })
    }

    fn ids(&self) -> impl DoubleEndedIterator<Item = &IdPayload> {
        self.iter().filter_map(|(x, _)| match x {
            Payload::Id(i) => Some(i),
            _ => None,
        })
    }

    fn nat_oa_addrs(&self) -> impl DoubleEndedIterator<Item = IpAddr> {
        self.iter().filter_map(|(x, _)| match x {
            Payload::NatOa { addr, .. } => match addr.id {
                Identity::Ipv4(a) => Some(IpAddr::V4(a)),
                Identity::Ipv6(a) => Some(IpAddr::V6(a)),
                _ => None,
            },
            _ => None,
        })
    }

    fn notifies(&self) -> impl Iterator<Item = &NotifyPayload> {
        self.iter().filter_map(|(x, _)| match x {
            Payload::Notify(n) => Some(n),
            _ => None,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn first_of_each_kind_with_its_range() {
        let id = |a: [u8; 4]| IdPayload {
            protocol: 47,
            port: 0,
            id: Identity::Ipv4(a.into()),
        };
        let p: Spanned = vec![
            (Payload::Hash(vec![1]), 0..5),
            (Payload::Nonce(vec![2; 8]), 5..17),
            (Payload::Id(id([10, 0, 0, 1])), 17..29),
            (Payload::Id(id([10, 0, 0, 2])), 29..41),
            (
                Payload::NatOa {
                    draft: false,
                    addr: id([192, 0, 2, 1]),
                },
                41..53,
            ),
        ];
        assert_eq!(p.find_hash(), Some(&[1u8][..]));
        assert_eq!(p.find_nonce().map(<[u8]>::len), Some(8));
        assert_eq!(p.find_ke(), None);
        assert!(p.find_sa().is_none());
        assert_eq!(p.find_id().map(|(_, r)| r), Some(17..29));
        assert_eq!(p.ids().count(), 2);
        assert_eq!(p.ids().next_back(), Some(&id([10, 0, 0, 2])));
        assert_eq!(
            p.nat_oa_addrs().collect::<Vec<_>>(),
            ["192.0.2.1".parse::<IpAddr>().unwrap()]
        );
        assert_eq!(p.notifies().count(), 0);
    }
}
