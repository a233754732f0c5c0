//! Inner packets larger than the tunnel MTU: with DF set, an ICMP
//! "fragmentation needed" (IPv4 type 3 code 4, RFC 1191) or ICMPv6
//! "packet too big" goes back into the TUN; without DF the IPv4 packet is
//! fragmented before encapsulation (the outer packet then never needs
//! fragmenting, as Cisco does with `ip mtu` on the tunnel).

use std::net::{Ipv4Addr, Ipv6Addr};

use thiserror::Error;

use dmvpn_wire::checksum::{Checksum, checksum};
use dmvpn_wire::ipv4::{
    FLAG_MF, HEADER_LEN, Ipv4Packet, Ipv4Repr, PROTO_ICMP, PROTO_ICMPV6, fill_checksum,
};

/// What to do with an inner packet for a given tunnel MTU.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum MtuAction {
    /// Fits: encapsulate as is.
    Fits,
    /// Too big, DF set (or IPv6): answer with an ICMP error.
    TooBig,
    /// Too big, IPv4 without DF: fragment, then encapsulate each piece.
    Fragment,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Error)]
pub enum MtuError {
    #[error("not a well-formed IP packet")]
    Malformed,
    #[error("no ICMP error is sent about this packet")]
    NoIcmp,
    #[error("output buffer too small")]
    BufferTooSmall,
    #[error("MTU too small to fragment this packet")]
    MtuTooSmall,
    #[error("packet has DF set and may not be fragmented")]
    DontFragment,
}

/// Decides what to do with `pkt` (an IPv4 or IPv6 packet) for `mtu`.
pub fn classify(pkt: &[u8], mtu: usize) -> Result<MtuAction, MtuError> {
    match pkt.first().map(|b| b >> 4) {
        Some(4) => {
            let i = Ipv4Packet::new_checked(pkt).map_err(|_| MtuError::Malformed)?;
            Ok(if i.total_len() <= mtu {
                MtuAction::Fits
            } else if i.dont_fragment() {
                MtuAction::TooBig
            } else {
                MtuAction::Fragment
            })
        }
        Some(6) if pkt.len() >= 40 => Ok(if pkt.len() <= mtu {
            MtuAction::Fits
        } else {
            MtuAction::TooBig
        }),
        _ => Err(MtuError::Malformed),
    }
}

/// Builds, into `out`, an ICMP "fragmentation needed" from `router` (the
/// tunnel's own address) to the sender of `pkt`, carrying `mtu` and the
/// offending header + 8 bytes. Returns its length.
pub fn icmp_frag_needed(
    pkt: &[u8],
    mtu: u16,
    router: Ipv4Addr,
    out: &mut [u8],
) -> Result<usize, MtuError> {
    let i = Ipv4Packet::new_checked(pkt).map_err(|_| MtuError::Malformed)?;
    let src = i.src();
    // Never about non-first fragments, or ICMP errors (RFC 1812 §4.3.2.7).
    if i.frag_offset() != 0 || src.is_unspecified() || src.is_broadcast() || src.is_multicast() {
        return Err(MtuError::NoIcmp);
    }
    if i.protocol() == PROTO_ICMP {
        let t = i.payload().first().copied().unwrap_or(0);
        if !matches!(t, 0 | 8 | 13 | 14 | 15 | 16 | 17 | 18) {
            return Err(MtuError::NoIcmp);
        }
    }
    let quoted = &pkt[..(i.header_len() + 8).min(i.total_len())];
    let icmp_len = 8 + quoted.len();
    let total = HEADER_LEN + icmp_len;
    if out.len() < total {
        return Err(MtuError::BufferTooSmall);
    }
    Ipv4Repr {
        src: router,
        dst: src,
        protocol: PROTO_ICMP,
        tos: i.tos() & 0xfc,
        ttl: 64,
        ident: 0,
        flags_frag: 0,
        payload_len: icmp_len,
    }
    .emit(out)
    .map_err(|_| MtuError::BufferTooSmall)?;
    let icmp = &mut out[HEADER_LEN..total];
    icmp[..4].copy_from_slice(&[3, 4, 0, 0]);
    icmp[4..6].copy_from_slice(&[0, 0]);
    icmp[6..8].copy_from_slice(&mtu.to_be_bytes());
    icmp[8..].copy_from_slice(quoted);
    let c = checksum(icmp);
    icmp[2..4].copy_from_slice(&c.to_be_bytes());
    Ok(total)
}

/// Builds an ICMPv6 "packet too big" (RFC 4443 §3.2) from `router` to the
/// sender of the IPv6 packet `pkt`, quoting as much of it as fits in the
/// IPv6 minimum MTU. Returns its length.
pub fn icmpv6_packet_too_big(
    pkt: &[u8],
    mtu: u32,
    router: Ipv6Addr,
    out: &mut [u8],
) -> Result<usize, MtuError> {
    if pkt.len() < 40 || pkt[0] >> 4 != 6 {
        return Err(MtuError::Malformed);
    }
    let mut s = [0u8; 16];
    s.copy_from_slice(&pkt[8..24]);
    let src = Ipv6Addr::from(s);
    if src.is_unspecified() || src.is_multicast() {
        return Err(MtuError::NoIcmp);
    }
    // An ICMPv6 error message (type < 128) is never answered with another.
    if pkt[6] == PROTO_ICMPV6 && pkt.get(40).is_some_and(|t| *t < 128) {
        return Err(MtuError::NoIcmp);
    }
    let quoted = &pkt[..pkt.len().min(1280 - 48)];
    let icmp_len = 8 + quoted.len();
    let total = 40 + icmp_len;
    if out.len() < total {
        return Err(MtuError::BufferTooSmall);
    }
    out[..4].copy_from_slice(&[0x60, 0, 0, 0]);
    out[4..6].copy_from_slice(&(icmp_len as u16).to_be_bytes());
    out[6] = PROTO_ICMPV6;
    out[7] = 64;
    out[8..24].copy_from_slice(&router.octets());
    out[24..40].copy_from_slice(&s);
    let icmp = &mut out[40..total];
    icmp[..4].copy_from_slice(&[2, 0, 0, 0]);
    icmp[4..8].copy_from_slice(&mtu.to_be_bytes());
    icmp[8..].copy_from_slice(quoted);
    // Checksum over the pseudo-header (src, dst, length, next header) and the message.
    let c = Checksum::new()
        .add_bytes(&out[8..40])
        .add_u32(icmp_len as u32)
        .add_u32(u32::from(PROTO_ICMPV6))
        .add_bytes(&out[40..total])
        .finish();
    out[42..44].copy_from_slice(&c.to_be_bytes());
    Ok(total)
}

/// Splits the IPv4 packet `pkt` into fragments of at most `mtu` bytes,
/// built one at a time in `scratch` and handed to `emit`. Options marked
/// "copied" are repeated in every fragment, the rest stay in the first.
/// Returns the number of fragments.
pub fn fragment_ipv4(
    pkt: &[u8],
    mtu: usize,
    scratch: &mut [u8],
    mut emit: impl FnMut(&[u8]),
) -> Result<usize, MtuError> {
    let i = Ipv4Packet::new_checked(pkt).map_err(|_| MtuError::Malformed)?;
    if i.dont_fragment() {
        return Err(MtuError::DontFragment);
    }
    let opts = i.options();
    let mut copied = [0u8; 40];
    let copied_len = copied_options(opts, &mut copied);
    let later_hl = (HEADER_LEN + copied_len).div_ceil(4) * 4;
    if mtu < later_hl.max(i.header_len()) + 8 {
        return Err(MtuError::MtuTooSmall);
    }
    if scratch.len() < mtu {
        return Err(MtuError::BufferTooSmall);
    }
    let data = i.payload();
    let base = i.frag_offset();
    let mut off = 0;
    let mut count = 0;
    while off < data.len() || (off == 0 && data.is_empty()) {
        let hl = if off == 0 { i.header_len() } else { later_hl };
        let room = (mtu - hl) & !7;
        let n = room.min(data.len() - off);
        let last = off + n == data.len();
        let mut frag = ((base + off) / 8) as u16;
        if !last || i.more_fragments() {
            frag |= FLAG_MF;
        }
        let f = &mut scratch[..hl + n];
        f[..HEADER_LEN].copy_from_slice(&pkt[..HEADER_LEN]);
        if off == 0 {
            f[HEADER_LEN..hl].copy_from_slice(opts);
        } else {
            f[HEADER_LEN..hl].fill(0);
            f[HEADER_LEN..HEADER_LEN + copied_len].copy_from_slice(&copied[..copied_len]);
        }
        f[0] = 0x40 | (hl / 4) as u8;
        f[2..4].copy_from_slice(&((hl + n) as u16).to_be_bytes());
        f[6..8].copy_from_slice(&frag.to_be_bytes());
        f[hl..].copy_from_slice(&data[off..off + n]);
        fill_checksum(f);
        emit(f);
        count += 1;
        off += n;
        if data.is_empty() {
            break;
        }
    }
    Ok(count)
}

/// Copies the options with the "copied" bit into `out`; returns their length.
fn copied_options(opts: &[u8], out: &mut [u8; 40]) -> usize {
    let mut i = 0;
    let mut n = 0;
    while i < opts.len() {
        let t = opts[i];
        match t {
            0 => break,
            1 => {
                i += 1;
                continue;
            }
            _ => {}
        }
        let Some(&l) = opts.get(i + 1) else { break };
        let l = usize::from(l);
        if l < 2 || i + l > opts.len() {
            break;
        }
        if t & 0x80 != 0 {
            out[n..n + l].copy_from_slice(&opts[i..i + l]);
            n += l;
        }
        i += l;
    }
    n
}

/// DF of an inner IPv4 packet, to copy to the outer header (`None` for IPv6).
pub fn inner_df(pkt: &[u8]) -> Option<bool> {
    Ipv4Packet::new_checked(pkt).ok().map(|i| i.dont_fragment())
}

#[cfg(test)]
mod tests {
    use super::*;
    use dmvpn_wire::ipv4::FLAG_DF;
    use proptest::prelude::*;

    fn ipv4(len: usize, df: bool, proto: u8) -> Vec<u8> {
        let mut p = vec![0u8; len];
        Ipv4Repr {
            src: Ipv4Addr::new(10, 1, 0, 1),
            dst: Ipv4Addr::new(10, 2, 0, 1),
            protocol: proto,
            tos: 0xb8,
            ttl: 63,
            ident: 0x1234,
            flags_frag: if df { FLAG_DF } else { 0 },
            payload_len: len - 20,
        }
        .emit(&mut p)
        .unwrap();
        for (k, b) in p[20..].iter_mut().enumerate() {
            *b = k as u8;
        }
        p
    }

    #[test]
    fn classify_by_size_and_df() {
        assert_eq!(classify(&ipv4(1400, true, 6), 1400), Ok(MtuAction::Fits));
        assert_eq!(classify(&ipv4(1401, true, 6), 1400), Ok(MtuAction::TooBig));
        assert_eq!(
            classify(&ipv4(1401, false, 6), 1400),
            Ok(MtuAction::Fragment)
        );
        assert_eq!(classify(&[0x60; 1500], 1400), Ok(MtuAction::TooBig));
        assert_eq!(classify(&[0x10; 30], 1400), Err(MtuError::Malformed));
    }

    #[test]
    fn frag_needed_quotes_header_and_carries_mtu() {
        let p = ipv4(1500, true, 6);
        let mut out = [0u8; 128];
        let n = icmp_frag_needed(&p, 1400, Ipv4Addr::new(192, 168, 1, 1), &mut out).unwrap();
        assert_eq!(n, 20 + 8 + 28);
        let i = Ipv4Packet::new_checked(&out[..n]).unwrap();
        assert_eq!(
            (i.src(), i.dst(), i.protocol()),
            (Ipv4Addr::new(192, 168, 1, 1), Ipv4Addr::new(10, 1, 0, 1), 1)
        );
        assert_eq!(&out[20..22], &[3, 4]);
        assert_eq!(u16::from_be_bytes([out[26], out[27]]), 1400);
        assert_eq!(checksum(&out[20..n]), 0);
        assert_eq!(&out[28..n], &p[..28]);
        // Never about an ICMP error.
        let mut e = ipv4(1500, true, 1);
        e[20] = 3;
        assert_eq!(
            icmp_frag_needed(&e, 1400, Ipv4Addr::LOCALHOST, &mut out),
            Err(MtuError::NoIcmp)
        );
    }

    #[test]
    fn packet_too_big_v6_checksum() {
        let mut p = vec![0u8; 1500];
        p[0] = 0x60;
        p[6] = 6;
        p[8..24].copy_from_slice(&Ipv6Addr::new(0xfd00, 0, 0, 0, 0, 0, 0, 1).octets());
        let mut out = vec![0u8; 1400];
        let router = Ipv6Addr::new(0xfd00, 0, 0, 0, 0, 0, 0, 0xfe);
        let n = icmpv6_packet_too_big(&p, 1400, router, &mut out).unwrap();
        assert_eq!(n, 1280);
        // Verify: pseudo-header + message sums to 0xffff.
        let mut v = Vec::new();
        v.extend_from_slice(&out[8..40]);
        v.extend_from_slice(&((n - 40) as u32).to_be_bytes());
        v.extend_from_slice(&[0, 0, 0, 58]);
        v.extend_from_slice(&out[40..n]);
        assert_eq!(checksum(&v), 0);
    }

    #[test]
    fn fragments_reassemble() {
        let p = ipv4(3000, false, 17);
        let mut scratch = [0u8; 1500];
        let mut frags = Vec::new();
        let n = fragment_ipv4(&p, 1400, &mut scratch, |f| frags.push(f.to_vec())).unwrap();
        assert_eq!(n, 3);
        let mut data = Vec::new();
        for (k, f) in frags.iter().enumerate() {
            let i = Ipv4Packet::new_checked(f).unwrap();
            assert!(f.len() <= 1400);
            assert_eq!(checksum(&f[..20]), 0);
            assert_eq!((i.tos(), i.ttl(), i.ident()), (0xb8, 63, 0x1234));
            assert_eq!(i.more_fragments(), k < 2);
            assert_eq!(i.frag_offset(), data.len());
            data.extend_from_slice(&f[20..]);
        }
        assert_eq!(&data[..], &p[20..]);
    }

    proptest! {
        #[test]
        fn fragmentation_round_trip(len in 21usize..4000, mtu in 68usize..1500) {
            let p = ipv4(len, false, 17);
            let mut scratch = vec![0u8; 1500];
            let mut data = Vec::new();
            let mut next_off = 0;
            fragment_ipv4(&p, mtu, &mut scratch, |f| {
                let i = Ipv4Packet::new_checked(f).unwrap();
                assert!(f.len() <= mtu);
                assert_eq!(i.frag_offset(), next_off);
                next_off += f.len() - 20;
                data.extend_from_slice(&f[20..]);
            }).unwrap();
            prop_assert_eq!(&data[..], &p[20..]);
        }

        #[test]
        fn hostile_input_never_panics(b in proptest::collection::vec(any::<u8>(), 0..200), mtu in 0usize..300) {
            let mut out = vec![0u8; 400];
            let _ = classify(&b, mtu);
            let _ = icmp_frag_needed(&b, 1400, Ipv4Addr::LOCALHOST, &mut out);
            let _ = icmpv6_packet_too_big(&b, 1400, Ipv6Addr::LOCALHOST, &mut out);
            let _ = fragment_ipv4(&b, mtu, &mut out, |_| {});
        }
    }
}
